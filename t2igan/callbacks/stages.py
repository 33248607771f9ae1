"""Stage-I | Stage-II sample pairs for two-stage models (StackGAN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from t2igan.callbacks.samples import SampleGrid


class StageSamples(SampleGrid):
    """:class:`~t2igan.callbacks.SampleGrid` for two-stage models (anything with
    ``sample_stages``): each fixed caption and noise drawn by Stage-I (upsampled) and, beside it,
    by Stage-II; saved as ``<run>/stages/epoch_XXXX.png``. On other models it warns once and
    draws nothing.

    Args:
        every_n_epochs: epochs between grids.
        num_captions: rows.
        num_samples: noise vectors per row (two images each).
        splits: splits the captions come from.
        seed: seed of the fixed noise.
    """

    key = "stages"
    needs = "sample_stages"
    columns = "Stage-I | Stage-II pairs"

    def __init__(self, every_n_epochs: int = 1, num_captions: int = 8, num_samples: int = 4,
                 splits: tuple[str, ...] = ("val", "test"), seed: int = 0) -> None:  # fmt: skip
        super().__init__(every_n_epochs, num_captions, num_samples, splits, seed)

    def draw(self, pl_module) -> tuple[torch.Tensor, int, list[str]]:
        """Stage-I, Stage-II pairs for the fixed captions and noise, two images per noise."""
        low, high = pl_module.sample_stages(*self.inputs())
        low = F.interpolate(low, size=high.shape[-1], mode="nearest")
        pairs = torch.stack([low, high], 1).flatten(0, 1)  # (R * C, 2, 3, H, W) -> pairs in a row
        return pairs, 2 * len(self.fixed["noise"]), self.fixed["captions"]
