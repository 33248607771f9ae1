"""Synthetic birds: a procedurally drawn text-to-image dataset that needs no download.

Each image shows one bird glyph (body, head, beak, eye, wing, tail, leg) on a plain background,
at a random position and size, facing left or right, with a bounding box and the 15 CUB part
keypoints (CUB's names and order; the far eye, wing and leg are hidden because every bird is seen
from the side). Each image gets six captions from varied templates that always name the body and
head colours (the "class" is the (body, head) pair) and sometimes the wing colour, size, facing and
background. Everything is a pure function of ``(seed, split, index)``, so image ``i`` is the same
whatever the dataset size.

The test split holds out 16 of the 64 (body, head) combinations, never seen in training, as the
papers hold out classes; every body colour and every head colour still appears in training.
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image, ImageDraw

from t2igan.data.contract import CUB_PARTS, Split

#: Colours of body, head and wings (RGB).
PALETTE = {
    "red": (200, 30, 30),
    "orange": (235, 130, 25),
    "yellow": (240, 210, 40),
    "green": (40, 150, 60),
    "blue": (35, 75, 200),
    "purple": (120, 50, 160),
    "black": (25, 25, 25),
    "white": (235, 235, 235),
}
#: Backgrounds (not from the palette).
BACKGROUNDS = {
    "sky": (170, 200, 230),
    "sand": (210, 195, 160),
    "grass": (150, 180, 130),
    "grey": (180, 180, 180),
}
COLOURS = tuple(PALETTE)
FACINGS = ("left", "right")
SIZES = ("small", "large")
#: The attributes each image carries, in the column order of ``Split.attributes``.
ATTRIBUTES = ("body", "head", "wing", "background", "facing", "size")
#: How many values each attribute takes.
ATTRIBUTE_CLASSES = (8, 8, 8, 4, 2, 2)
SPLITS = ("train", "val", "test")
#: Held-out (body, head) pairs: for every body colour b, heads (b + 3) % 8 and (b + 6) % 8.
HELD_OUT = frozenset((b, (b + k) % 8) for b in range(8) for k in (3, 6))

_BG_PHRASES = {
    "sky": "against the sky",
    "sand": "on sand",
    "grass": "on the grass",
    "grey": "on a grey background",
}
_LEG_BEAK = (70, 60, 50)
_EYE = (10, 10, 10)

# (template, names) where names lists the attributes the template mentions.
_TEMPLATES = (
    ("this bird has a {body} body and a {head} head.", ("body", "head")),
    ("a bird with a {body} body, a {head} head and {wing} wings.", ("body", "head", "wing")),
    (
        "a {size} bird with {wing} wings, a {head} head and a {body} belly.",
        ("body", "head", "wing", "size"),
    ),
    ("this {size} bird is mostly {body} with a {head} crown.", ("body", "head", "size")),
    (
        "the bird has a {head} head and a {body} breast, and it faces {facing}.",
        ("body", "head", "facing"),
    ),
    (
        "a {body} bird with a {head} head and {wing} wings, {background}.",
        ("body", "head", "wing", "background"),
    ),
    (
        "a {size} bird facing {facing} with a {body} body and a {head} head.",
        ("body", "head", "facing", "size"),
    ),
    ("{background}, a bird with a {head} head and a {body} body.", ("body", "head", "background")),
    (
        "this bird is {body} with a {head} head and {wing} wing feathers.",
        ("body", "head", "wing"),
    ),
    (
        "a bird with a {body} breast and belly, a {head} crown and {wing} wings.",
        ("body", "head", "wing"),
    ),
)
CAPTIONS_PER_IMAGE = 6


def caption(attrs: dict[str, str], template: int) -> str:
    """Fill caption template ``template`` with attribute words (``background`` as a phrase)."""
    words = dict(attrs)
    words["background"] = _BG_PHRASES[attrs["background"]]
    text = re.sub(r"\ba orange\b", "an orange", _TEMPLATES[template][0].format(**words))
    return text[0].lower() + text[1:]


def combos(split: str) -> list[tuple[int, int]]:
    """The (body, head) colour pairs a split draws from."""
    every = [(b, h) for b in range(8) for h in range(8)]
    if split == "test":
        return [c for c in every if c in HELD_OUT]
    return [c for c in every if c not in HELD_OUT]


def _layout(rng: np.random.Generator, facing: int, large: bool) -> dict:
    """Part geometry in normalised image coordinates (x right, y down)."""
    s = rng.uniform(0.62, 0.78) if large else rng.uniform(0.42, 0.54)
    d = 1.0 if facing == 1 else -1.0
    # Horizontal extent of the drawing: tail tip at cx - 0.5 s, beak tip at cx + 0.6 s (facing
    # right); vertical: head top at cy - 0.33 s, foot at cy + 0.36 s.
    back, front = (0.52 * s, 0.62 * s) if d > 0 else (0.62 * s, 0.52 * s)
    cx = rng.uniform(back + 0.02, 1 - front - 0.02)
    cy = rng.uniform(0.36 * s + 0.02, 1 - 0.38 * s - 0.02)
    a, b = 0.32 * s, 0.2 * s
    hx, hy, r = cx + d * 0.33 * s, cy - 0.2 * s, 0.13 * s
    beak = [(hx + d * 0.85 * r, hy - 0.35 * r), (hx + d * 0.85 * r, hy + 0.35 * r),
            (hx + d * (r + 0.14 * s), hy + 0.1 * r)]  # fmt: skip
    tail = [(cx - d * 0.26 * s, cy - 0.06 * s), (cx - d * 0.26 * s, cy + 0.05 * s),
            (cx - d * 0.5 * s, cy - 0.14 * s)]  # fmt: skip
    wing = (cx - d * 0.06 * s, cy - 0.01 * s, 0.19 * s, 0.1 * s)
    leg = [(cx + d * 0.04 * s, cy + 0.9 * b), (cx + d * 0.04 * s, cy + b + 0.16 * s)]
    eye = (hx + d * 0.4 * r, hy - 0.25 * r, 0.22 * r)
    parts = {
        "back": (cx - d * 0.1 * s, cy - 0.9 * b),
        "beak": beak[2],
        "belly": (cx, cy + 0.8 * b),
        "breast": (cx + d * 0.22 * s, cy + 0.3 * b),
        "crown": (hx, hy - 0.9 * r),
        "forehead": (hx + d * 0.6 * r, hy - 0.6 * r),
        "eye": eye[:2],
        "leg": leg[1],
        "wing": wing[:2],
        "nape": (hx - d * 0.8 * r, hy + 0.3 * r),
        "tail": tail[2],
        "throat": (hx + d * 0.4 * r, hy + 0.85 * r),
    }
    xs = [cx - a, cx + a, hx - r, hx + r, *(p[0] for p in beak + tail + leg)]
    ys = [cy - b, cy + b, hy - r, hy + r, *(p[1] for p in beak + tail + leg)]
    box = (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
    return dict(body=(cx, cy, a, b), head=(hx, hy, r), beak=beak, tail=tail, wing=wing,
                leg=leg, eye=eye, parts=parts, box=box)  # fmt: skip


def keypoints(layout: dict, facing: int) -> np.ndarray:
    """(15, 3) CUB-ordered keypoints; the side turned away from the viewer is invisible.

    A bird facing right (beak towards +x) shows the viewer its right side.
    """
    near = "right" if facing == 1 else "left"
    kp = np.zeros((len(CUB_PARTS), 3), dtype=np.float32)
    for k, name in enumerate(CUB_PARTS):
        side, _, part = name.partition(" ")
        if part:  # a sided part: "left eye" ...
            if side != near:
                continue
            x, y = layout["parts"][part]
        else:
            x, y = layout["parts"][name]
        kp[k] = (x, y, 1.0)
    return kp


def render(layout: dict, colours: dict[str, tuple], size: int) -> np.ndarray:
    """Draw the bird at ``size`` x ``size`` (supersampled 2x, then downsampled)."""
    big = 2 * size
    img = Image.new("RGB", (big, big), colours["background"])
    draw = ImageDraw.Draw(img)

    def px(p):
        return (p[0] * big, p[1] * big)

    def ellipse(cx, cy, a, b, fill):
        draw.ellipse([px((cx - a, cy - b)), px((cx + a, cy + b))], fill=fill)

    (x0, y0), (x1, y1) = layout["leg"]
    draw.line([px((x0, y0)), px((x1, y1))], fill=_LEG_BEAK, width=max(1, round(0.012 * big)))
    draw.polygon([px(p) for p in layout["tail"]], fill=colours["wing"])
    ellipse(*layout["body"], colours["body"])
    ellipse(*layout["wing"], colours["wing"])
    hx, hy, r = layout["head"]
    ellipse(hx, hy, r, r, colours["head"])
    draw.polygon([px(p) for p in layout["beak"]], fill=_LEG_BEAK)
    ex, ey, er = layout["eye"]
    ellipse(ex, ey, er, er, _EYE)
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def make_example(seed: int, split: str, index: int, size: int) -> dict:
    """Draw example ``index`` of ``split``: image, captions and annotations."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    allowed = combos(split)
    body, head = allowed[rng.integers(len(allowed))]
    wing = int(rng.integers(8))
    background = int(rng.integers(4))
    facing = int(rng.integers(2))
    large = bool(rng.integers(2))
    layout = _layout(rng, facing, large)
    words = {
        "body": COLOURS[body], "head": COLOURS[head], "wing": COLOURS[wing],
        "background": tuple(BACKGROUNDS)[background], "facing": FACINGS[facing],
        "size": SIZES[int(large)],
    }  # fmt: skip
    colours = {k: PALETTE[words[k]] for k in ("body", "head", "wing")}
    colours["background"] = BACKGROUNDS[words["background"]]
    chosen = rng.choice(len(_TEMPLATES), size=CAPTIONS_PER_IMAGE, replace=False)
    named = np.array([[a in _TEMPLATES[t][1] for a in ATTRIBUTES] for t in chosen])
    return {
        "image": render(layout, colours, size),
        "captions": [caption(words, int(t)) for t in chosen],
        "caption_attributes": named,
        "attributes": np.array([body, head, wing, background, facing, int(large)]),
        "label": body * 8 + head,
        "box": np.array(layout["box"], dtype=np.float32),
        "keypoints": keypoints(layout, facing),
    }


class SyntheticBirds:
    """Reader for the built-in synthetic birds.

    Args:
        image_size: side of the square images (any size from 32 to 256 works; 64 to 256 are the
            papers' resolutions).
        num_images: number of training images; validation and test get ``num_eval_images`` each.
        num_eval_images: images in the validation and in the test split.
        seed: the dataset seed; the same seed gives the same dataset.
    """

    name = "synthetic"

    def __init__(
        self,
        image_size: int = 64,
        num_images: int = 6000,
        num_eval_images: int = 512,
        seed: int = 0,
    ) -> None:
        if not 16 <= image_size <= 512:
            raise ValueError(f"synthetic birds are drawn at 16..512 pixels, got {image_size}")
        self.image_size = image_size
        self.num_images = num_images
        self.num_eval_images = num_eval_images
        self.seed = seed

    def load(self, split: str) -> Split:
        n = self.num_images if split == "train" else self.num_eval_images
        examples = [make_example(self.seed, split, i, self.image_size) for i in range(n)]
        return Split(
            images=np.stack([e["image"] for e in examples]),
            captions=[e["captions"] for e in examples],
            labels=np.array([e["label"] for e in examples]),
            names=[f"synthetic-{self.seed}-{split}-{i:06d}" for i in range(n)],
            boxes=np.stack([e["box"] for e in examples]),
            keypoints=np.stack([e["keypoints"] for e in examples]),
            part_names=CUB_PARTS,
            attributes=np.stack([e["attributes"] for e in examples]),
            caption_attributes=[e["caption_attributes"] for e in examples],
        )
