"""t2igan's Python API: a trained model that draws images for captions.

    import t2igan

    pipe = t2igan.load("runs/quickstart/checkpoints/last.ckpt")
    images = pipe("a bird with a red body and a blue head", num=8, seed=0)   # 8 PIL images
    pipe = t2igan.load("runs/gawwn_box/checkpoints/last.ckpt")
    images = pipe(["a small yellow bird"], boxes=[(0.1, 0.2, 0.5, 0.4)])
    pipe = t2igan.load("runs/gawwn_keypoints/checkpoints/last.ckpt",
                       keypoint_generator="runs/gawwn_keypoint_generator/checkpoints/last.ckpt")
    images = pipe("a red bird", keypoints={"beak": (0.7, 0.3)})   # G_k draws the other parts

:class:`Pipeline` is the one object behind ``t2igan generate`` and ``t2igan app``: it loads a
checkpoint with the model loader (:mod:`t2igan.models.loading`), embeds captions with the text
encoder the run recorded (and, for a model that reads word ids, prepares those), checks boxes
and keypoints, and draws. Bad input raises the same one-line ``ValueError`` the command line
prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from t2igan.callbacks.location import drawable
from t2igan.command import warn
from t2igan.data.contract import CUB_PARTS
from t2igan.data.text import TextEncoder, encoder_from_spec
from t2igan.models.base import TextToImageModel
from t2igan.models.gawwn_keypoints import DRAW_VISIBLE
from t2igan.models.loading import (
    check_keypoint_generator,
    load_keypoint_generator,
    load_model,
    torch_device,
)

#: Images drawn per forward pass of :meth:`Pipeline.draw` (memory stays flat for any number).
BATCH = 64


def box_tensor(values: Sequence[float], what: str) -> torch.Tensor:
    """A normalised ``(x, y, w, h)`` box (top-left origin) as a (4,) tensor; a ValueError led
    by ``what`` says what is wrong with it (not finite, zero area, outside the image)."""
    try:
        x, y, w, h = (float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: give four numbers x,y,w,h (normalised, e.g. 0.1,0.2,0.5,0.4)"
                         ) from None  # fmt: skip
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"{what}: x, y, w and h must be finite numbers (normalised, e.g. "
                         "0.1,0.2,0.5,0.4)")  # fmt: skip
    if w <= 0 or h <= 0:
        raise ValueError(f"{what} has no area (width {w:g}, height {h:g}): w and h must be > 0")
    if x < 0 or y < 0 or x + w > 1 or y + h > 1:
        raise ValueError(f"{what} reaches outside the image: need 0 <= x, y and x + w, "
                         f"y + h <= 1 (here x + w = {x + w:g}, y + h = {y + h:g})")  # fmt: skip
    return torch.tensor([x, y, w, h])


def keypoints_tensor(parts: object, names: tuple[str, ...], what: str) -> torch.Tensor:
    """Part name -> normalised ``(x, y)`` as a (K, 3) tensor (x, y, visible) in ``names``'
    order; parts left out are invisible. A ValueError led by ``what`` names a wrong part or
    point."""
    if not isinstance(parts, dict):
        raise ValueError(f'{what}: give an object of part -> [x, y], e.g. '
                         f'{{"beak": [0.7, 0.3], "tail": [0.2, 0.6]}}')  # fmt: skip
    kp = torch.zeros(len(names), 3)
    for name, xy in parts.items():
        if name not in names:
            raise ValueError(f"{what}: unknown part {name!r}; the parts are " + ", ".join(names))
        ok = isinstance(xy, list | tuple) and len(xy) == 2 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in xy)  # fmt: skip
        if not ok:
            raise ValueError(f"{what}: part {name!r} must be [x, y], got {xy!r}")
        if not all(math.isfinite(v) for v in xy):  # JSON as Python reads it allows NaN, Infinity
            raise ValueError(f"{what}: part {name!r} at {list(xy)} is not a finite point "
                             "(x and y are numbers in [0, 1])")  # fmt: skip
        if not all(0 <= v <= 1 for v in xy):
            raise ValueError(f"{what}: part {name!r} at {list(xy)} is outside the image "
                             "(x and y are normalised to [0, 1])")  # fmt: skip
        kp[names.index(name)] = torch.tensor([*xy, 1.0])
    return kp


def to_pil(images: torch.Tensor) -> list:
    """(N, 3, H, W) images in [-1, 1] as N RGB PIL images."""
    from torchvision.transforms.functional import to_pil_image

    return [to_pil_image(((img.float().clamp(-1, 1) + 1) / 2).cpu()) for img in images]


class Pipeline:
    """A trained t2igan model ready to draw from captions (see the module docstring).

    Args:
        model: the image model (any :class:`~t2igan.models.base.TextToImageModel`).
        encoder: the text encoder its captions are embedded with (the run's own).
        keypoint_generator: a ``GAWWNKeypointGenerator`` that draws the keypoints not given,
            for a keypoint model.
        name: how messages name the model (its checkpoint).
    """

    def __init__(self, model: TextToImageModel, encoder: TextEncoder, keypoint_generator=None,
                 name: str | None = None) -> None:  # fmt: skip
        self.model, self.encoder, self.keypoint_generator = model, encoder, keypoint_generator
        self.name = name or type(model).__name__
        if encoder.dim != model.text_dim:
            raise ValueError(f"{self.name} takes {model.text_dim}-d text embeddings but its text "
                             f"encoder ({encoder.spec()['class_path']}) gives {encoder.dim}-d "
                             "ones")  # fmt: skip

    @classmethod
    def from_checkpoint(cls, ckpt: str | Path, device: str = "cpu",
                        text_encoder: str | Path | None = None,
                        keypoint_generator: str | Path | None = None) -> Pipeline:  # fmt: skip
        """Load ``ckpt`` (a checkpoint ``t2igan fit`` wrote) onto ``device``.

        Args:
            ckpt: the checkpoint.
            device: a torch device (``cpu``, ``cuda``, ``cuda:1``, ...).
            text_encoder: a char-CNN-RNN encoder checkpoint to embed captions with instead of
                the recorded encoder (for a model trained on the papers' precomputed
                embeddings: the authors' matching encoder, converted).
            keypoint_generator: a ``GAWWNKeypointGenerator`` checkpoint, for a keypoint model.
        """
        dev = torch_device(device)
        model = load_model(ckpt, dev)
        kg = None
        if keypoint_generator is not None:
            kg = load_keypoint_generator(keypoint_generator, dev)
            check_keypoint_generator(str(ckpt), model, str(keypoint_generator), kg)
        spec, source = model.hparams.get("text_encoder"), f"checkpoint {ckpt} (its text encoder)"
        if text_encoder is not None:
            from t2igan.models.char_cnn_rnn import CharCNNEncoder

            spec, source = (
                CharCNNEncoder(str(text_encoder)).spec(),
                f"--text-encoder {text_encoder}",
            )
        if spec is None:
            raise ValueError(f"{ckpt} does not record its text encoder; cannot embed new captions")
        return cls(model, encoder_from_spec(spec, source), kg, str(ckpt))

    # ------------------------------------------------------------------ what it takes
    @property
    def location(self) -> str | None:
        """``boxes`` or ``keypoints`` for a model told where to draw, else None."""
        return next((k for k in self.model.takes[1:] if k in ("boxes", "keypoints")), None)

    @property
    def part_names(self) -> tuple[str, ...]:
        """The keypoint model's part names, in order (CUB's for other models)."""
        return self.model.part_names if "keypoints" in self.model.takes else CUB_PARTS

    # ---------------------------------------------------------------- the steps
    def embed(self, captions: list[str]) -> dict[str, torch.Tensor]:
        """The per-caption inputs: ``text`` (C, D) embeddings with the run's encoder, and for
        a model that reads word ids its ``tokens``. Empty captions are refused; captions longer
        than the encoder (or the model) reads are cut, with a warning."""
        fitted = []
        for i, caption in enumerate(captions, 1):
            if not caption.strip():
                raise ValueError(f"caption {i} is empty: give every --caption some text")
            short = self.encoder.truncate(caption)
            if short != caption:
                warn("generate", f"caption {i} is longer than the {self.encoder.max_tokens} "
                     f"tokens the text encoder reads: it is cut after ...{short[-40:]!r}")  # fmt: skip
            fitted.append(short)
        inputs, cut = self.model.prepare_captions(captions)  # e.g. word ids, read uncut
        for i in cut:
            warn("generate", f"caption {i + 1} is longer than {type(self.model).__name__} reads: "
                 "it is cut")  # fmt: skip
        inputs["text"] = torch.from_numpy(self.encoder.encode(fitted))
        return inputs

    def noise(self, num: int, seed: int = 0) -> torch.Tensor:
        """``num`` noise vectors (num, z_dim) from ``seed``."""
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"--num (num) is the number of images per caption: a whole number, "
                             f"at least 1, got {num!r}")  # fmt: skip
        return self.model.sample_noise(num, generator=torch.Generator().manual_seed(seed))

    def draw(self, text: torch.Tensor, noise: torch.Tensor, generator=None,
             **conditioning) -> tuple[torch.Tensor, dict]:  # fmt: skip
        """Images (N, 3, H, W) in [-1, 1] for N rows of inputs, and the conditioning they were
        drawn with. With a keypoint generator, the keypoints' invisible parts are drawn by it
        first (from the caption and noise; ``generator`` seeds its own noise when its size
        differs from the model's)."""
        kg = self.keypoint_generator
        if kg is not None and "keypoints" in conditioning:
            kz = noise if kg.z_dim == self.model.z_dim else kg.sample_noise(len(noise),
                                                                          generator=generator)  # fmt: skip
            drawn = kg.complete(text, kz, conditioning["keypoints"]).cpu()
            conditioning = {**conditioning, "keypoints": drawable(drawn, DRAW_VISIBLE)}
        return self.model.sample(text, noise, **conditioning).cpu(), conditioning

    # ------------------------------------------------------------------- all at once
    def sample(self, captions: str | list[str], num: int = 8, seed: int = 0,
               boxes: Sequence[Sequence[float]] | None = None,
               keypoints: dict | list[dict] | None = None) -> torch.Tensor:  # fmt: skip
        """Images as a (rows, num, 3, H, W) tensor in [-1, 1]: one row per caption, or per
        (caption, box) / (caption, keypoints) pair in that order, the same ``num`` noise vectors
        (``seed``) in every row. See :meth:`__call__` for the arguments."""
        captions = [captions] if isinstance(captions, str) else captions
        if not isinstance(captions, list | tuple) or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"captions must be a string or a list of strings, not "
                             f"{type(captions).__name__}")  # fmt: skip
        if not captions:
            raise ValueError("give at least one caption")
        captions = list(captions)
        where = self.locations(boxes, keypoints)
        inputs, noise = self.embed(captions), self.noise(num, seed)
        rows = {k: v.repeat_interleave(max(len(where), 1), 0) for k, v in inputs.items()}
        if where:
            rows[self.location] = torch.stack(where).repeat(len(captions), *[1] * where[0].dim())
        n = len(rows["text"]) * num
        kg_noise = torch.Generator().manual_seed(seed + 1)
        out = []
        for first in range(0, n, BATCH):
            k = torch.arange(first, min(first + BATCH, n))
            r, c = k // num, k % num  # image k: row k // num, column k % num
            cond = {name: v[r] for name, v in rows.items() if name != "text"}
            out.append(self.draw(rows["text"][r], noise[c], kg_noise, **cond)[0])
        return torch.cat(out).view(len(rows["text"]), num, *out[0].shape[1:])

    def locations(self, boxes=None, keypoints=None) -> list[torch.Tensor]:
        """The given boxes or keypoint dicts as tensors, checked against what the model takes
        (a model told where to draw needs them; one that is not takes none)."""
        keypoints = [keypoints] if isinstance(keypoints, dict) else list(keypoints or [])
        asked = {"boxes": [box_tensor(b, f"box {tuple(b)}") for b in boxes or []],
                 "keypoints": [keypoints_tensor(kp, self.part_names, "keypoints")
                               for kp in keypoints]}  # fmt: skip
        if self.keypoint_generator is not None and not asked["keypoints"]:
            asked["keypoints"] = [torch.zeros(self.model.num_parts, 3)]  # all drawn by G_k
        for key, values in asked.items():
            if values and key not in self.model.takes:
                raise ValueError(f"{self.name} ({type(self.model).__name__}) takes "
                                 f"{' and '.join(self.model.takes)} only, not {key}")  # fmt: skip
        if self.location and not asked[self.location]:
            raise ValueError(f"{self.name} ({type(self.model).__name__}) draws where it is told: "
                             f"give {self.location}")  # fmt: skip
        return asked[self.location] if self.location else []

    def __call__(self, captions: str | list[str], num: int = 8, seed: int = 0,
                 boxes: Sequence[Sequence[float]] | None = None,
                 keypoints: dict | list[dict] | None = None) -> list:  # fmt: skip
        """RGB PIL images, ``num`` per row, rows in order: one per caption, or per
        (caption, box) / (caption, keypoints) pair.

        Args:
            captions: a caption or a list of them.
            num: images per row (one noise vector each, shared by every row).
            seed: seed of the noise.
            boxes: for a box model (GAWWN): normalised ``(x, y, w, h)`` boxes, top-left origin.
            keypoints: for a keypoint model: part name -> normalised ``(x, y)``, or a list of
                such dicts; parts left out are invisible, or drawn by the keypoint generator.
        """
        images = self.sample(captions, num, seed, boxes, keypoints)
        return to_pil(images.flatten(0, 1))
