"""Sample grids from fixed captions and fixed noise, drawn during training."""

from __future__ import annotations

import lightning as L
import torch

from t2igan.callbacks.figures import labelled_grid, save_and_log


class SampleGrid(L.Callback):
    """Every ``every_n_epochs`` epochs, draw one row per fixed caption and one column per fixed
    noise vector (so a column shares its "style"), save it as
    ``<run>/samples/epoch_XXXX.png`` and log it to every logger that takes images.

    The captions (half from the validation split, half from the held-out test split, whose
    classes are never trained on) and the noise are chosen once and kept in the callback's
    checkpoint state, so a resumed run continues the same figure. Runs on rank 0 only.

    Args:
        every_n_epochs: epochs between grids.
        num_captions: rows.
        num_samples: columns (noise vectors).
        splits: splits the captions come from.
        seed: seed of the fixed noise.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_captions: int = 8,
        num_samples: int = 8,
        splits: tuple[str, ...] = ("val", "test"),
        seed: int = 0,
    ) -> None:
        self.every_n_epochs = every_n_epochs
        self.num_captions = num_captions
        self.num_samples = num_samples
        self.splits = splits
        self.seed = seed
        self.fixed: dict | None = None

    def _choose(self, trainer: L.Trainer, pl_module) -> dict:
        per_split = -(-self.num_captions // len(self.splits))
        captions, text = [], []
        for split in self.splits:
            ex = trainer.datamodule.caption_examples(split, per_split)
            captions += ex["captions"]
            text.append(ex["text_emb"])
        captions = captions[: self.num_captions]
        g = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(self.num_samples, pl_module.z_dim, generator=g)
        return {"captions": captions, "text_emb": torch.cat(text)[: self.num_captions],
                "noise": noise}  # fmt: skip

    def draw(self, pl_module) -> torch.Tensor:
        """(rows * cols, 3, H, W) samples for the fixed captions and noise."""
        f = self.fixed
        rows, cols = len(f["captions"]), len(f["noise"])
        text = f["text_emb"].repeat_interleave(cols, 0)
        noise = f["noise"].repeat(rows, 1)
        return pl_module.sample(text, noise)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs or not trainer.is_global_zero:
            return
        if self.fixed is None:
            self.fixed = self._choose(trainer, pl_module)
        grid = labelled_grid(self.draw(pl_module), len(self.fixed["noise"]), self.fixed["captions"])
        caption = " | ".join(self.fixed["captions"])
        save_and_log(trainer, "samples", grid, caption, f"epoch_{trainer.current_epoch:04d}")

    def state_dict(self) -> dict:
        return {"fixed": self.fixed}

    def load_state_dict(self, state_dict: dict) -> None:
        self.fixed = state_dict["fixed"]
