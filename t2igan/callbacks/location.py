"""GAWWN's figures (Reed et al., NIPS 2016): "where" (fixed caption and noise, the box or the
keypoints moved along each row) and "what" (fixed location, the captions changed along each row),
for every model that takes boxes or keypoints (``model.takes``). The location asked for is drawn
on a copy of each image (box outline, keypoint dots) in the row below it. Generated keypoints
(:class:`GeneratedKeypointsGrid`): for fixed captions, keypoint samples of the conditional
keypoint generator and the images drawn from them."""

from __future__ import annotations

import colorsys

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image, ImageDraw

from t2igan.callbacks.figures import FixedInputFigure
from t2igan.data.contract import CUB_PARTS

#: The conditioning names (batch contract keys) that say where to draw.
LOCATIONS = ("boxes", "keypoints")


def part_colours(num_parts: int) -> list[tuple[int, int, int]]:
    """One RGB colour per keypoint, hues spread around the circle, so that a reader can tell
    the ``num_parts`` parts apart (CUB's 15 and MPII's 17 alike: no colour repeats)."""
    return [tuple(round(255 * c) for c in colorsys.hsv_to_rgb(k / num_parts, 0.9, 1.0))
            for k in range(num_parts)]  # fmt: skip


def drawable(keypoints: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Generated keypoints (B, K, 3) with visibility above ``threshold`` set to 1 and the others
    to (0, 0, 0): what the keypoint GAWWN is given (the authors' demo: visibility > 0.5)."""
    visible = (keypoints[..., 2:3] > threshold).to(keypoints)
    return torch.cat([keypoints[..., :2], torch.ones_like(visible)], -1) * visible


def location_of(model) -> str | None:
    """Which location conditioning ``model`` takes (``"boxes"``, ``"keypoints"``) or None."""
    return next((k for k in getattr(model, "takes", ()) if k in LOCATIONS), None)


def fixed_location(model, examples: dict, n: int | None = None) -> dict:
    """The location of the first ``n`` caption examples, for a figure's fixed inputs:
    ``{"key": "boxes" | "keypoints", "where": (n, ...)}``, or ``{}`` for a model that takes
    none."""
    key = location_of(model)
    return {"key": key, "where": examples[key][:n]} if key else {}


def location_kwargs(fixed: dict, repeats: int) -> dict:
    """The ``sample`` keyword of :func:`fixed_location`'s location, each row repeated
    ``repeats`` times (one per column of the figure), or ``{}``."""
    if not fixed.get("key"):
        return {}
    return {fixed["key"]: fixed["where"].repeat_interleave(repeats, 0)}


def draw_location(images: torch.Tensor, key: str, where: torch.Tensor) -> torch.Tensor:
    """Copies of ``images`` (N, 3, H, W) in [-1, 1] with the location drawn on: each box
    (N, 4) normalised (x, y, w, h) as a red outline, or each visible keypoint (N, K, 3) as a
    dot in its part's colour (:func:`part_colours`)."""
    out = []
    for img, loc in zip(images.float().cpu(), where.float().cpu()):
        pil = Image.fromarray(
            ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        )
        draw = ImageDraw.Draw(pil)
        w, h = pil.size
        if key == "boxes":
            x, y, bw, bh = loc.tolist()
            draw.rectangle([x * w, y * h, (x + bw) * w - 1, (y + bh) * h - 1], outline=(255, 0, 0))
        else:
            r = max(1.5, 1.5 * w / 64)
            for (x, y, v), colour in zip(loc.tolist(), part_colours(len(loc))):
                if v > 0:
                    draw.ellipse([x * w - r, y * h - r, x * w + r, y * h + r], fill=colour)
        out.append(torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float() / 127.5 - 1)
    return torch.stack(out)


def _inside(lo: torch.Tensor, hi: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` shifts from the one that moves [lo, hi] to 0 to the one that moves it to 1."""
    return torch.linspace(-float(lo) + 0.02, 0.98 - float(hi), steps)


def move_box(box: torch.Tensor, steps: int) -> list[tuple[str, torch.Tensor]]:
    """The rows of the box "where" figure for one (4,) box: ``(label, (steps, 4) boxes)``: moved
    left to right, top to bottom, and shrunk to stretched (width and height scaled 0.5 to 1.5
    about the box centre), every box inside the image."""
    x, y, w, h = box.tolist()
    rows = []
    for axis, name in ((0, "box moved left to right"), (1, "box moved top to bottom")):
        shifts = _inside(box[axis], box[axis] + box[axis + 2], steps)
        moved = box.repeat(steps, 1)
        moved[:, axis] += shifts
        rows.append((name, moved))
    scale = torch.linspace(0.5, 1.5, steps)
    sw, sh = (w * scale).clamp(max=0.96), (h * scale).clamp(max=0.96)
    sx = (x + w / 2 - sw / 2).clamp(0.02, None).minimum(0.98 - sw)
    sy = (y + h / 2 - sh / 2).clamp(0.02, None).minimum(0.98 - sh)
    rows.append(("box shrunk to stretched (0.5 to 1.5 times)", torch.stack([sx, sy, sw, sh], 1)))
    return rows


def move_keypoints(kp: torch.Tensor, steps: int,
                   names: tuple[str, ...] = CUB_PARTS) -> list[tuple[str, torch.Tensor]]:  # fmt: skip
    """The rows of the keypoint "where" figure for one (K, 3) set of the parts ``names``:
    ``(label, (steps, K, 3))``: all visible keypoints shifted together left to right and top to
    bottom, then the beak alone and the tail alone moved left to right (each where visible)."""
    vis = kp[:, 2] > 0
    rows = []
    for axis, name in ((0, "all keypoints moved left to right"),
                       (1, "all keypoints moved top to bottom")):  # fmt: skip
        pos = kp[vis, axis]
        shifts = _inside(pos.min(), pos.max(), steps) if vis.any() else torch.zeros(steps)
        moved = kp.repeat(steps, 1, 1)
        moved[:, vis, axis] += shifts[:, None]
        rows.append((name, moved))
    for part in ("beak", "tail"):
        if part in names:
            k = names.index(part)
            if kp[k, 2] <= 0:
                continue
            moved = kp.repeat(steps, 1, 1)
            moved[:, k, 0] = torch.linspace(0.05, 0.95, steps)
            rows.append((f"{part} alone moved left to right", moved))
    return rows


class _LocationFigure(FixedInputFigure):
    """A figure for models that take boxes or keypoints; others get one warning and none."""

    def supports(self, pl_module) -> bool:
        if location_of(pl_module) is not None:
            return True
        if not self._warned:
            rank_zero_warn(
                f"{type(self).__name__}: {type(pl_module).__name__} takes no boxes or keypoints; "
                f"no {self.key} figure is drawn"
            )
            self._warned = True
        return False

    def example(self, trainer: L.Trainer, pl_module, n: int) -> dict:
        """``n`` validation examples with their location (the model's key) as shown."""
        ex = trainer.datamodule.caption_examples("val", n)
        key = location_of(pl_module)
        return {"captions": ex["captions"], "text_emb": ex["text_emb"], "key": key,
                "where": ex[key]}  # fmt: skip


class WhereGrid(_LocationFigure):
    """ "Where": one fixed caption and noise; along each row the box is moved across the image,
    down it, and shrunk to stretched (box models, the paper's Figure 4), or all keypoints are
    moved together and the beak and the tail alone (keypoint models, Figure 6). Under each row,
    the same images with the location asked for drawn on. ``<run>/where/epoch_XXXX.png``.

    Args:
        every_n_epochs: epochs between figures.
        steps: images per row.
        seed: seed of the fixed noise.
    """

    key = "where"

    def __init__(self, every_n_epochs: int = 1, steps: int = 6, seed: int = 0) -> None:
        super().__init__(every_n_epochs, seed)
        self.steps = steps

    def choose(self, trainer: L.Trainer, pl_module) -> dict:
        ex = self.example(trainer, pl_module, 1)
        if ex["key"] == "boxes":
            rows = move_box(ex["where"][0], self.steps)
        else:  # the model names its parts
            rows = move_keypoints(ex["where"][0], self.steps, pl_module.part_names)
        return {**ex, "noise": self.noise(pl_module, 1), "labels": [r[0] for r in rows],
                "rows": torch.stack([r[1] for r in rows])}  # fmt: skip

    def draw(self, pl_module) -> tuple[torch.Tensor, int, list[str]]:
        f = self.fixed
        self.layout = f"caption: {f['captions'][0]}"
        where = f["rows"].flatten(0, 1)  # (rows * steps, ...)
        n = len(where)
        images = pl_module.sample(f["text_emb"].expand(n, -1), f["noise"].expand(n, -1),
                                  **{f["key"]: where})  # fmt: skip
        shown = draw_location(images, f["key"], where)
        grid, labels = [], []
        for r, label in enumerate(f["labels"]):
            rows = slice(r * self.steps, (r + 1) * self.steps)
            grid += [images[rows].cpu(), shown[rows]]
            labels += [label, f"{label}: asked for"]
        return torch.cat(grid), self.steps, labels


class WhatGrid(_LocationFigure):
    """ "What": one fixed box or set of keypoints (a validation image's), the captions changed
    along each row (column c: caption c, named in the logged caption), one fixed noise vector
    per row; the last row shows the first row with the location drawn on.
    ``<run>/what/epoch_XXXX.png``.

    Args:
        every_n_epochs: epochs between figures.
        num_captions: columns.
        num_samples: rows (noise vectors).
        seed: seed of the fixed noise.
    """

    key = "what"

    def __init__(self, every_n_epochs: int = 1, num_captions: int = 6, num_samples: int = 3,
                 seed: int = 0) -> None:  # fmt: skip
        super().__init__(every_n_epochs, seed)
        self.num_captions = num_captions
        self.num_samples = num_samples

    def choose(self, trainer: L.Trainer, pl_module) -> dict:
        ex = self.example(trainer, pl_module, self.num_captions)
        ex["where"] = ex["where"][:1]  # the first image's location for every caption
        return {**ex, "noise": self.noise(pl_module, self.num_samples)}

    def draw(self, pl_module) -> tuple[torch.Tensor, int, list[str]]:
        f = self.fixed
        self.layout = "columns: " + "; ".join(f"{c + 1}: {t}" for c, t in enumerate(f["captions"]))
        cols, rows = len(f["captions"]), len(f["noise"])
        where = f["where"].expand(rows * cols, *f["where"].shape[1:])
        images = pl_module.sample(f["text_emb"].repeat(rows, 1),
                                  f["noise"].repeat_interleave(cols, 0), **{f["key"]: where})  # fmt: skip
        shown = draw_location(images[:cols], f["key"], where[:cols])
        labels = [f"noise {r + 1}" for r in range(rows)] + ["noise 1: location asked for"]
        return torch.cat([images.cpu(), shown]), cols, labels


class GeneratedKeypointsGrid(FixedInputFigure):
    """Generated keypoints: for fixed validation captions, ``num_samples`` keypoint sets drawn by
    the conditional keypoint generator G_k from text alone (fixed noise, one column each) and,
    with an image model, the images the keypoint GAWWN draws from them (the same noise), as the
    authors' ``demo_cub_keypoints_gen.lua``. Per caption: a row of the keypoints as dots on
    grey, then the images, then the images with the dots. ``<run>/generated_keypoints/``.

    It runs while either model trains: on a ``GAWWNKeypointGenerator`` (the images need
    ``image_model``), or on a ``GAWWNKeypoints`` given ``keypoint_generator``.

    Args:
        every_n_epochs: epochs between figures.
        num_captions: rows of captions.
        num_samples: keypoint samples per caption.
        seed: seed of the fixed noise.
        image_model: a ``GAWWNKeypoints`` checkpoint to draw the images with (while G_k trains).
        keypoint_generator: a ``GAWWNKeypointGenerator`` checkpoint (while the image model
            trains).
    """

    key = "generated_keypoints"

    def __init__(self, every_n_epochs: int = 1, num_captions: int = 3, num_samples: int = 6,
                 seed: int = 0, image_model: str | None = None,
                 keypoint_generator: str | None = None) -> None:  # fmt: skip
        super().__init__(every_n_epochs, seed)
        self.num_captions, self.num_samples = num_captions, num_samples
        self.image_model, self.keypoint_generator = image_model, keypoint_generator
        self._loaded: dict = {}

    def _models(self, pl_module) -> tuple:
        """(G_k, image model or None) for the module being trained, loading a checkpoint once."""
        from t2igan.models.loading import load_keypoint_generator, load_model

        if hasattr(pl_module, "complete"):
            kg, path, load = pl_module, self.image_model, load_model
        else:
            kg, path, load = None, self.keypoint_generator, load_keypoint_generator
        other = None
        if path is not None:
            if path not in self._loaded:
                self._loaded[path] = load(path)
            other = self._loaded[path].to(pl_module.device)
        return (kg, other) if kg is not None else (other, pl_module)

    def supports(self, pl_module) -> bool:
        if hasattr(pl_module, "complete") or (
            location_of(pl_module) == "keypoints" and self.keypoint_generator
        ):
            return True
        if not self._warned:
            rank_zero_warn(f"{type(self).__name__}: {type(pl_module).__name__} is not a "
                           "keypoint generator, nor a keypoint model given keypoint_generator; "
                           "no generated-keypoints figure is drawn")  # fmt: skip
            self._warned = True
        return False

    def choose(self, trainer: L.Trainer, pl_module) -> dict:
        ex = trainer.datamodule.caption_examples("val", self.num_captions)
        kg, _ = self._models(pl_module)
        return {"captions": ex["captions"], "text_emb": ex["text_emb"],
                "noise": self.noise(kg, self.num_samples)}  # fmt: skip

    def draw(self, pl_module) -> tuple[torch.Tensor, int, list[str]]:
        f = self.fixed
        kg, image_model = self._models(pl_module)
        side = image_model.image_size if image_model is not None else 64
        grid, labels = [], []
        n = self.num_samples
        for caption, text in zip(f["captions"], f["text_emb"]):
            kp = drawable(kg.complete(text.expand(n, -1), f["noise"])).cpu()
            grid.append(draw_location(torch.zeros(n, 3, side, side), "keypoints", kp))
            caption = caption.rstrip(". ")  # the label goes on with ": ..."
            labels.append(f"{caption}: keypoints drawn")
            if image_model is not None:
                same = image_model.z_dim == kg.z_dim
                noise = f["noise"] if same else self.noise(image_model, n)
                images = image_model.sample(text.expand(n, -1), noise, keypoints=kp).cpu()
                grid += [images, draw_location(images, "keypoints", kp)]
                labels += [f"{caption}: images", f"{caption}: images with the keypoints"]
        return torch.cat(grid), n, labels
