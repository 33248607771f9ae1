"""The recurrent VAEs' figures (DRAW, alignDRAW): the canvas over time, with the write window
drawn as a box, and alignDRAW's attention over the caption's words at every step. Both use the
public ``sample_steps(text_emb, noise, **conditioning)`` of :class:`~t2igan.models.draw.RecurrentVAE`
and the conditioning the model names in ``takes``."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from t2igan.callbacks.figures import FixedInputFigure
from t2igan.callbacks.location import draw_location


def shown_steps(total: int, every: int) -> list[int]:
    """0-based steps every ``every``-th one, counted from 1 (t = every, 2 every, ...), always
    ending with the last (the sample)."""
    steps = list(range(every - 1, total, every))
    return steps if steps and steps[-1] == total - 1 else [*steps, total - 1]


class _StepFigure(FixedInputFigure):
    """Fixed validation captions (one noise vector each), drawn step by step."""

    needs = "sample_steps"

    def __init__(self, every_n_epochs: int = 1, num_captions: int = 4, seed: int = 0) -> None:
        super().__init__(every_n_epochs, seed)
        self.num_captions = num_captions

    def choose(self, trainer: L.Trainer, pl_module) -> dict:
        ex = trainer.datamodule.caption_examples("val", self.num_captions)
        fixed = {"captions": ex["captions"], "text_emb": ex["text_emb"],
                 "noise": self.noise(pl_module, self.num_captions)}  # fmt: skip
        if "tokens" in pl_module.takes:
            fixed["tokens"] = ex["tokens"]
        return fixed

    def steps(self, pl_module) -> dict:
        f = self.fixed
        cond = {"tokens": f["tokens"]} if "tokens" in f else {}
        return pl_module.sample_steps(f["text_emb"], f["noise"], **cond)


class CanvasSteps(_StepFigure):
    """sigma(c_t) for t = k, 2k, ..., T along each row (one row per fixed caption), with the
    write window of that step drawn as a red box (without write attention, the canvases
    alone). Saved to ``<run>/canvas/epoch_XXXX.png`` and logged to every image logger.

    Args:
        every_n_epochs: epochs between figures.
        num_captions: rows.
        every_k_steps: k: show every k-th step (and the last).
        seed: seed of the fixed noise.
    """

    key = "canvas"

    def __init__(self, every_n_epochs: int = 1, num_captions: int = 4, every_k_steps: int = 4,
                 seed: int = 0) -> None:  # fmt: skip
        super().__init__(every_n_epochs, num_captions, seed)
        if every_k_steps < 1:
            raise ValueError(f"every_k_steps must be at least 1, got {every_k_steps}")
        self.every_k_steps = every_k_steps

    @property
    def layout(self) -> str:
        return f"columns: canvas at every {self.every_k_steps}-th step (red: the write window)"

    def draw(self, pl_module) -> tuple[torch.Tensor, int, list[str]]:
        out = self.steps(pl_module)
        idx = shown_steps(len(out["canvases"]), self.every_k_steps)
        canvases = out["canvases"][idx].transpose(0, 1).cpu()  # (B, S, 3, H, W)
        images = canvases.flatten(0, 1)
        if out["boxes"] is not None:
            boxes = out["boxes"][idx].transpose(0, 1).flatten(0, 1).cpu()
            scale = max(1, 64 // images.shape[-1])  # a readable box on a 32 px canvas
            big = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
            images = draw_location(big, "boxes", boxes)
        labels = [f"{c} (t = {', '.join(str(t + 1) for t in idx)})" if i == 0 else c
                  for i, c in enumerate(self.fixed["captions"])]  # fmt: skip
        return images, len(idx), labels


def alignment_map(weights: np.ndarray, words: list[str], title: str, cell: int = 14) -> Image.Image:
    """A heat map of ``weights`` (T, L): one row per step, one column per word (labelled on
    top), white at 0 and black at the map's largest weight, or at twice the uniform weight
    2 / L if that is larger, so a uniform alignment shows mid-grey, not black (the title gives
    both)."""
    weights = np.asarray(weights)[:, : len(words)]
    uniform = 1 / max(len(words), 1)
    top_weight = max(float(weights.max()) if weights.size else 0.0, 2 * uniform)
    title = f"{title}  [black: {top_weight:.2f}; uniform 1/L: {uniform:.2f}]"
    font = ImageFont.load_default()
    word_w = max([int(font.getlength(w)) for w in words] + [cell]) + 4
    left, top = 36, 18
    width, height = left + word_w * len(words) + 4, top + 14 + cell * len(weights) + 4
    img = Image.new("RGB", (max(width, int(font.getlength(title)) + 8), height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((4, 2), title, fill="black", font=font)
    for k, w in enumerate(words):
        draw.text((left + k * word_w + 2, top), w, fill="black", font=font)
    for t, row in enumerate(weights):
        y = top + 14 + t * cell
        if t % 4 == 0 or t == len(weights) - 1:
            draw.text((4, y + 1), f"t={t + 1}", fill="black", font=font)
        for k, a in enumerate(row):
            shade = int(round(255 * (1 - float(a) / max(top_weight, 1e-12))))
            draw.rectangle([left + k * word_w, y, left + (k + 1) * word_w - 2, y + cell - 2],
                           fill=(shade, shade, shade))  # fmt: skip
    return img


class WordAlignment(_StepFigure):
    """alignDRAW's alignment: for each fixed caption, the attention weights over its words at
    every step t = 1..T (a heat map, words as column labels, darker = more weight; black at the
    map's largest weight or at twice the uniform weight, mid-grey at uniform, as its title
    says). Saved to
    ``<run>/alignment/epoch_XXXX.png`` and logged to every image logger. On a model without
    word alignment it warns once and draws nothing.

    Args:
        every_n_epochs: epochs between figures.
        num_captions: captions (one map each).
        seed: seed of the fixed noise.
    """

    key = "alignment"

    def supports(self, pl_module) -> bool:
        if "tokens" in getattr(pl_module, "takes", ()):
            return super().supports(pl_module)
        if not self._warned:
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(f"WordAlignment: {type(pl_module).__name__} does not align words; "
                           "no alignment figure is drawn")  # fmt: skip
            self._warned = True
        return False

    def figure(self, pl_module) -> tuple[Image.Image, str]:
        out = self.steps(pl_module)
        alphas = out["alignments"].transpose(0, 1).cpu().numpy()  # (B, T, L)
        vocab = pl_module.vocabulary
        maps = [alignment_map(a, vocab.decode(ids), cap)
                for a, ids, cap in zip(alphas, self.fixed["tokens"], self.fixed["captions"])]  # fmt: skip
        width = max(m.width for m in maps)
        figure = Image.new("RGB", (width, sum(m.height for m in maps)), "white")
        y = 0
        for m in maps:
            figure.paste(m, (0, y))
            y += m.height
        caption = "rows: steps t = 1..T; columns: the caption's words; darker: more attention"
        return figure, caption + ": " + " | ".join(self.fixed["captions"])
