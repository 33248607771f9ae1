"""Sample grids from fixed captions and fixed noise, drawn during training."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from t2igan.callbacks.figures import FixedInputFigure
from t2igan.callbacks.location import LOCATIONS, fixed_location, location_kwargs


class SampleGrid(FixedInputFigure):
    """One row per fixed caption and one column per fixed noise vector (so a column shares its
    "style"), drawn every ``every_n_epochs`` epochs to ``<run>/samples/epoch_XXXX.png`` and every
    image logger. The captions come half from the validation split, half from the held-out test
    split (whose classes are never trained on); where the two are one split (CUB, MHP), all rows
    come from it and none repeats. The logged caption starts with which rows come from which
    split. Like the noise, the captions are chosen once and kept in the checkpoint
    (:class:`~t2igan.callbacks.figures.FixedInputFigure`). A model that takes boxes or keypoints
    (GAWWN) draws each row at the location of the image its caption comes from; one that reads
    the caption's words (alignDRAW) gets them too.

    Args:
        every_n_epochs: epochs between grids.
        num_captions: rows.
        num_samples: columns (noise vectors).
        splits: splits the captions come from.
        seed: seed of the fixed noise.
    """

    key = "samples"

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_captions: int = 8,
        num_samples: int = 8,
        splits: tuple[str, ...] = ("val", "test"),
        seed: int = 0,
    ) -> None:
        super().__init__(every_n_epochs, seed)
        self.num_captions = num_captions
        self.num_samples = num_samples
        self.splits = splits

    #: What the columns show, if they need saying (the start of the logged caption).
    columns = ""

    @property
    def layout(self) -> str:
        """The columns note and which rows come from which split (starts the logged caption)."""
        rows = self.fixed.get("rows", "") if self.fixed else ""
        return "; ".join(note for note in (self.columns, rows) if note)

    def choose(self, trainer: L.Trainer, pl_module) -> dict:
        dm = trainer.datamodule
        splits: list[str] = []  # a split holding the same images as an earlier one adds no rows
        for split in self.splits:
            if not any(dm.same_images(split, s) for s in splits):
                splits.append(split)
        counts = [len(c) for c in np.array_split(range(self.num_captions), len(splits))]
        ex = [dm.caption_examples(split, n) for split, n in zip(splits, counts) if n]
        rows, start = [], 1
        for split, n in zip(splits, counts):
            rows.append(f"rows {start}-{start + n - 1}: {split}")
            start += n
        shared = [s for s in self.splits if s not in splits]
        note = f" ({', '.join(shared)} is the same split here)" if shared else ""
        where = fixed_location(pl_module, {k: torch.cat([e[k] for e in ex]) for k in LOCATIONS
                                           if k in ex[0]})  # fmt: skip
        if "tokens" in getattr(pl_module, "takes", ()):  # a model that reads the words
            where["tokens"] = torch.cat([e["tokens"] for e in ex])
        return {
            **where,
            "captions": [c for e in ex for c in e["captions"]],
            "text_emb": torch.cat([e["text_emb"] for e in ex]),
            "noise": self.noise(pl_module, self.num_samples),
            "rows": "; ".join(rows) + note,
        }

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every fixed caption with every fixed noise: (rows * cols, D) text, (rows * cols, z)."""
        f = self.fixed
        rows, cols = len(f["captions"]), len(f["noise"])
        return f["text_emb"].repeat_interleave(cols, 0), f["noise"].repeat(rows, 1)

    def conditioning(self) -> dict:
        """The fixed location of every image (by the model's name for it) and the captions'
        word ids for a model that reads them, or nothing."""
        cols = len(self.fixed["noise"])
        out = location_kwargs(self.fixed, cols)
        if "tokens" in self.fixed:
            out["tokens"] = self.fixed["tokens"].repeat_interleave(cols, 0)
        return out

    def draw(self, pl_module) -> tuple[torch.Tensor, int, list[str]]:
        images = pl_module.sample(*self.inputs(), **self.conditioning())
        return images, len(self.fixed["noise"]), self.fixed["captions"]
