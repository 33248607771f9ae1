"""Stage-I | Stage-II sample pairs for two-stage models (StackGAN)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from t2igan.callbacks.figures import labelled_grid, save_and_log
from t2igan.callbacks.samples import SampleGrid


class StageSamples(SampleGrid):
    """:class:`~t2igan.callbacks.SampleGrid` for two-stage models (anything with
    ``sample_stages``): each fixed caption and noise drawn by Stage-I (upsampled) and, beside it,
    by Stage-II; saved as ``<run>/stages/epoch_XXXX.png``.

    Args:
        every_n_epochs: epochs between grids.
        num_captions: rows.
        num_samples: noise vectors per row (two images each).
        splits: splits the captions come from.
        seed: seed of the fixed noise.
    """

    def __init__(self, every_n_epochs: int = 1, num_captions: int = 8, num_samples: int = 4,
                 splits: tuple[str, ...] = ("val", "test"), seed: int = 0) -> None:  # fmt: skip
        super().__init__(every_n_epochs, num_captions, num_samples, splits, seed)

    def draw(self, pl_module) -> torch.Tensor:
        """(rows * cols * 2, 3, H, W): Stage-I, Stage-II pairs for the fixed captions and noise."""
        f = self.fixed
        rows, cols = len(f["captions"]), len(f["noise"])
        low, high = pl_module.sample_stages(
            f["text_emb"].repeat_interleave(cols, 0), f["noise"].repeat(rows, 1)
        )
        low = F.interpolate(low, size=high.shape[-1], mode="nearest")
        return torch.stack([low, high], 1).flatten(0, 1)  # (R * C, 2, 3, H, W) -> pairs in a row

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs or not trainer.is_global_zero:
            return
        if self.fixed is None:
            self.fixed = self._choose(trainer, pl_module)
        grid = labelled_grid(self.draw(pl_module), 2 * len(self.fixed["noise"]),
                             self.fixed["captions"])  # fmt: skip
        caption = "Stage-I | Stage-II pairs: " + " | ".join(self.fixed["captions"])
        save_and_log(trainer, "stages", grid, caption, f"epoch_{trainer.current_epoch:04d}")
