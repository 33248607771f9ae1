"""Caption consistency on synthetic birds: do generated images show what their captions say?

The synthetic dataset knows which attributes each caption names. :func:`read_birds` reads the
attributes back from any image of a bird by parsing it, with no training: the background is the
colour of the image border; the bird is every pixel far from it; each bird pixel takes the nearest
palette colour; the **body** colour is the one covering most of the bird, the **head** colour the
one at the top of the bird (the crown is the bird's highest point), the **wing** colour the one
around the middle of the bird (the wing covers the body's centre; a wing of the body colour reads as
the body colour, which is right), **facing** is the side of the bird the head is on, and **size**
comes from the bird's width.

We chose a parser over a learned classifier because it needs no training time (a small CNN took
minutes of CPU to reach 0.9 on head colour) and does not depend on the layout of the real image the
caption came from: a generated bird's position is its own, carried by the noise. It reads real
synthetic birds almost perfectly (tests assert >= 0.95), and it reads a blurry or half-formed bird
as the colours it shows, which is the question asked.

``caption_acc`` is the fraction of (image, named colour attribute) pairs whose colour is read back;
per-attribute scores cover all six attributes. Chance is 1/8 for colours.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

from t2igan.data.synthetic import ATTRIBUTES, BACKGROUNDS, PALETTE

#: The attributes ``caption_acc`` averages over.
COLOUR_ATTRIBUTES = ("body", "head", "wing")
_PALETTE = np.array(list(PALETTE.values()), dtype=np.float32)
_BACKGROUNDS = np.array(list(BACKGROUNDS.values()), dtype=np.float32)
#: Beak, legs and eye are drawn in these non-palette colours: pixels nearest them are ignored.
_OTHER = np.array([(70, 60, 50), (10, 10, 10)], dtype=np.float32)
_SIZE_THRESHOLD = 0.64  # bird width / image width between small (<= 0.60) and large (>= 0.68)


def read_bird(img: np.ndarray) -> np.ndarray:
    """Attributes (body, head, wing, background, facing, size) read from one (H, W, 3) image
    with values in 0..255; see the module docstring."""
    img = img.astype(np.float32)
    h, w, _ = img.shape
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg_colour = np.median(border, axis=0)
    background = int(np.argmin(((_BACKGROUNDS - bg_colour) ** 2).sum(1)))
    bird = np.sqrt(((img - bg_colour) ** 2).sum(-1)) > 40
    if bird.sum() < 4:  # no bird drawn: guess the most common values
        return np.array([0, 0, 0, background, 0, 0])
    # nearest palette colour of each bird pixel; beak/leg/eye-coloured pixels are left out
    colours = np.concatenate([_PALETTE, _OTHER])
    dist = ((img[:, :, None, :] - colours) ** 2).sum(-1)  # (H, W, colours)
    nearest = dist.argmin(-1)
    # Edge pixels blend bird and background into colours of neither: leave out pixels far from
    # every colour, unless that leaves almost nothing (a very blurry sample).
    clear = bird & (nearest < len(_PALETTE)) & (np.sqrt(dist.min(-1)) < 60)
    ys, xs = np.nonzero(clear if clear.sum() >= 4 else bird & (nearest < len(_PALETTE)))
    if len(ys) < 4:
        ys, xs = np.nonzero(bird)
    labels = nearest[ys, xs].clip(max=len(_PALETTE) - 1)
    body = int(np.bincount(labels, minlength=8).argmax())
    top, bottom = ys.min(), ys.max()
    crown = labels[ys <= top + 0.12 * (bottom - top + 1)]
    head = int(np.bincount(crown, minlength=8).argmax())
    head_x = xs[ys <= top + 0.12 * (bottom - top + 1)].mean()
    facing = int(head_x > xs.mean())
    # The wing sits at the middle of the body ellipse, slightly towards the tail: find the body
    # ellipse's box from the body-coloured pixels (the wing hole does not change the box).
    bx, by = xs[labels == body], ys[labels == body]
    x0, x1 = np.percentile(bx, [2, 98])
    y0, y1 = np.percentile(by, [2, 98])
    s = (x1 - x0 + 1) / 0.64  # body width is 0.64 s
    wx = (x0 + x1) / 2 - (1 if facing else -1) * 0.06 * s
    wy = (y0 + y1) / 2 - 0.01 * s
    near = (np.abs(xs - wx) <= max(0.08 * s, 1.0)) & (np.abs(ys - wy) <= max(0.05 * s, 1.0))
    wing = int(np.bincount(labels[near] if near.any() else labels, minlength=8).argmax())
    cols = np.nonzero(bird.any(0))[0]  # the whole bird, beak and tail tips included
    width = (cols.max() - cols.min() + 1) / w
    return np.array([body, head, wing, background, facing, int(width > _SIZE_THRESHOLD)])


def read_birds(images: torch.Tensor) -> torch.Tensor:
    """(B, 6) attributes read from a batch of images in [-1, 1], shape (B, 3, H, W)."""
    arr = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy()
    return torch.as_tensor(np.stack([read_bird(a) for a in arr]), dtype=torch.long)


class CaptionAccuracy(Metric):
    """Accumulates per-attribute hits over the attributes the captions name. Images that are
    not finite (a diverged generator) have no score: once one is seen, every value is NaN."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("hits", torch.zeros(len(ATTRIBUTES)), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(len(ATTRIBUTES)), dist_reduce_fx="sum")
        self.add_state("non_finite", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, targets: torch.Tensor, named: torch.Tensor,
               images: torch.Tensor | None = None) -> None:  # fmt: skip
        """``preds``: what :func:`read_birds` read from ``images`` (given, they are checked)."""
        if images is not None:
            self.non_finite += (~torch.isfinite(images).flatten(1).all(1)).sum().to(self.hits)
        named = named.bool().to(self.hits.device)
        hits = (preds.to(self.hits.device) == targets.to(self.hits.device)) & named
        self.hits += hits.sum(0).float()
        self.count += named.sum(0).float()

    def compute(self) -> dict[str, torch.Tensor]:
        out = {}
        for a, name in enumerate(ATTRIBUTES):
            if self.count[a] > 0:
                out[name] = self.hits[a] / self.count[a]
        colour = [ATTRIBUTES.index(a) for a in COLOUR_ATTRIBUTES]
        out["caption_acc"] = self.hits[colour].sum() / self.count[colour].sum().clamp(min=1)
        if self.non_finite > 0:
            out = {k: torch.full_like(v, float("nan")) for k, v in out.items()}
        return out


def read_bird_layout(img: np.ndarray) -> dict[str, np.ndarray | None]:
    """Where the bird of one (H, W, 3) image (values 0..255) is, in normalised image
    coordinates. The bird is the largest 8-connected region of pixels far from the border
    colour: a generator's stray specks of off-background colour elsewhere are not part of it
    (on generated images they are dozens of small regions, and a box around every off-colour
    pixel would span the image). Returns ``box`` (x, y, w, h) of that region (the box the
    synthetic birds record: beak, tail and foot tips included), ``beak`` (x, y), the tip of the
    beak: the beak/leg-coloured pixel of the bird's upper half farthest out horizontally, and
    ``tail`` (x, y), the bird's extreme column on the other side (the tail tip; the mean row of
    its pixels). Each is None when no bird, or no beak, is drawn. GAWWN's location benchmark
    reads it."""
    from scipy import ndimage

    img = img.astype(np.float32)
    h, w, _ = img.shape
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    off = np.sqrt(((img - np.median(border, axis=0)) ** 2).sum(-1)) > 40
    out: dict[str, np.ndarray | None] = {"box": None, "beak": None, "tail": None}
    regions, n = ndimage.label(off, structure=np.ones((3, 3)))
    if n == 0:
        return out
    bird = regions == 1 + int(np.argmax(np.bincount(regions.ravel())[1:]))
    ys, xs = np.nonzero(bird)
    if len(ys) < 4:
        return out
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    out["box"] = np.array([x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h])
    beak_like = bird & (np.sqrt(((img - _OTHER[0]) ** 2).sum(-1)) < 40)
    beak_like[int(round((y0 + y1) / 2)) :] = False  # the legs are in the lower half
    by, bx = np.nonzero(beak_like)
    if len(by) == 0:
        return out
    right = bx.mean() > xs.mean()  # the beak is on the side the bird faces
    tip = bx.argmax() if right else bx.argmin()
    out["beak"] = np.array([(bx[tip] + 0.5) / w, (by[tip] + 0.5) / h])
    col = x0 if right else x1 - 1  # the tail tip: the far column on the other side
    out["tail"] = np.array([(col + 0.5) / w, (ys[xs == col].mean() + 0.5) / h])
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def swapped_caption_cosine(encoder, centre_on: list[str] | None = None) -> float:
    """Mean cosine between "a bird with a X body and a Y head" and "a bird with a Y body and a
    X head" over all ordered pairs of distinct synthetic-bird colours (56): how well a text
    encoder binds each colour to its part (1: not at all; all-MiniLM-L6-v2 gives 0.99).
    ``centre_on``: captions whose mean embedding is subtracted first (the cosine then ignores a
    direction every caption shares)."""
    from t2igan.data.synthetic import COLOURS

    pairs = [(x, y) for x in COLOURS for y in COLOURS if x != y]
    mean = encoder.encode(centre_on).mean(0) if centre_on else 0.0
    a = encoder.encode([f"a bird with a {x} body and a {y} head" for x, y in pairs]) - mean
    b = encoder.encode([f"a bird with a {y} body and a {x} head" for x, y in pairs]) - mean
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.mean())
