"""Opt-in training speed-ups that leave the paper's model and its results alone."""

from __future__ import annotations

import lightning as L
import torch


class SpeedUps(L.Callback):
    """Speed-ups switched on for one run, without touching the model's arguments (so a config
    with the paper defaults stays the paper's): NHWC memory layout for every convolution, and
    ``torch.compile`` of G and D. Mixed precision is the Trainer's own flag
    (``--trainer.precision bf16-mixed``). Measured side by side with the plain loop in
    ``benchmarks/speed.py`` (docs/results.md, Training loop speed).

    ``compile`` uses ``nn.Module.compile``, in place: parameter names, and so checkpoints, are
    those of the uncompiled model. The first batches of a compiled run are slow (compilation).
    ``fused_adam`` runs G's and D's Adam as one fused kernel per step (``Adam(fused=True)``: the
    same update to float rounding; a resumed run follows this flag, not the saved run's).

    Args:
        channels_last: put G and D (and each batch's images) in ``torch.channels_last``.
        compile: ``torch.compile`` the generator and the discriminator.
        fused_adam: fused Adam for the GAN's two optimisers (GPU, or CPU on current PyTorch).
    """

    def __init__(self, channels_last: bool = False, compile: bool = False,
                 fused_adam: bool = False) -> None:  # fmt: skip
        self.channels_last = channels_last
        self.compile = compile
        self.fused_adam = fused_adam

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.fused_adam:
            if not hasattr(pl_module, "fused_adam"):
                raise ValueError(f"SpeedUps(fused_adam=True): {type(pl_module).__name__} does not "
                                 "train with the GAN engine's Adam pair")  # fmt: skip
            pl_module.fused_adam = True
        if self.channels_last:
            pl_module.to(memory_format=torch.channels_last)
        if self.compile:
            for net in (pl_module.generator, pl_module.discriminator):
                net.compile()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.channels_last:
            for key in ("images", "wrong_images"):
                if key in batch and batch[key].dim() == 4:
                    batch[key] = batch[key].contiguous(memory_format=torch.channels_last)
