"""Sample grids from fixed captions and fixed noise, drawn during training."""

from __future__ import annotations

import lightning as L
import torch

from t2igan.callbacks.figures import FixedInputFigure


class SampleGrid(FixedInputFigure):
    """One row per fixed caption and one column per fixed noise vector (so a column shares its
    "style"), drawn every ``every_n_epochs`` epochs to ``<run>/samples/epoch_XXXX.png`` and every
    image logger. The captions come half from the validation split, half from the held-out test
    split (whose classes are never trained on); like the noise, they are chosen once and kept in
    the checkpoint (:class:`~t2igan.callbacks.figures.FixedInputFigure`).

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

    def choose(self, trainer: L.Trainer, pl_module) -> dict:
        per_split = -(-self.num_captions // len(self.splits))
        ex = [trainer.datamodule.caption_examples(split, per_split) for split in self.splits]
        return {
            "captions": [c for e in ex for c in e["captions"]][: self.num_captions],
            "text_emb": torch.cat([e["text_emb"] for e in ex])[: self.num_captions],
            "noise": self.noise(pl_module, self.num_samples),
        }

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every fixed caption with every fixed noise: (rows * cols, D) text, (rows * cols, z)."""
        f = self.fixed
        rows, cols = len(f["captions"]), len(f["noise"])
        return f["text_emb"].repeat_interleave(cols, 0), f["noise"].repeat(rows, 1)

    def draw(self, pl_module) -> tuple[torch.Tensor, int, list[str]]:
        return pl_module.sample(*self.inputs()), len(self.fixed["noise"]), self.fixed["captions"]
