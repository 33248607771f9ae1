"""A callback for the multi-process tests: what each rank's random streams do, written to
``<out>/rank<r>.json`` (imported by the ``t2igan fit`` processes through its class path)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning as L
import torch


def rng_digest() -> str:
    """A short fingerprint of this process's torch RNG state (reading it draws nothing)."""
    return hashlib.sha1(torch.get_rng_state().numpy().tobytes()).hexdigest()[:12]


class RngRecorder(L.Callback):
    """Per rank: the RNG fingerprint at every checkpoint save and once a resumed run has restored
    the checkpoint (Lightning restores callbacks after the model), and the sum of every noise
    batch the model draws in training (recorded without drawing more)."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.record: dict = {"loaded": None, "saved": [], "noise": []}

    def setup(self, trainer, pl_module, stage: str) -> None:
        draw = pl_module.sample_noise

        def recorded(n, generator=None):
            noise = draw(n, generator)
            if generator is None and pl_module.training:
                self.record["noise"].append(round(float(noise.double().sum()), 6))
            return noise

        pl_module.sample_noise = recorded

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.record["loaded"] = rng_digest()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.record["saved"].append(rng_digest())

    def on_train_end(self, trainer, pl_module) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.record))
