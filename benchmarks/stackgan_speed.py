"""Training speed of StackGAN Stage-I and Stage-II with the authors' widths: images/s and peak
memory, fp32 and bf16-mixed, on the current machine (the GPU if there is one, else the CPU).

Each measurement runs the real engine (Lightning Trainer, manual optimisation: one D step and one
G step per batch) on a fixed random batch, so data loading is not counted. The first batch is a
warm-up and is not timed. Each (stage, precision) runs in its own process, so the peak memory is
its own: ``torch.cuda.max_memory_allocated`` on a GPU, the process's peak resident set size on
the CPU (model, optimiser states, activations and the Python runtime).

    python benchmarks/stackgan_speed.py                          # both stages, fp32 and bf16
    python benchmarks/stackgan_speed.py --stage 2 --precision bf16-mixed --steps 10
    python benchmarks/stackgan_speed.py --batch-size 8           # a quicker look on a CPU
    python benchmarks/stackgan_speed.py --stage 2 --steps 0      # peak memory only

The default (batch 64, one timed batch per measurement) takes seconds on a GPU; on a 2-core CPU
one Stage-II batch of 64 takes minutes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import lightning as L
import torch
from torch.utils.data import DataLoader

from t2igan.models import StackGANStage1, StackGANStage2

TEXT_DIM = 1024  # the authors' char-CNN-RNN embeddings
STAGE1 = dict(z_dim=100, text_dim=TEXT_DIM, condition_dim=128, ngf=128, image_size=64,
              ca_activation="relu")  # fmt: skip


def build(stage: int) -> L.LightningModule:
    """The paper's networks (birds/flowers widths); Stage-II on an untrained Stage-I."""
    if stage == 1:
        return StackGANStage1(text_dim=TEXT_DIM, image_size=64)
    return StackGANStage2(text_dim=TEXT_DIM, image_size=256, stage1=STAGE1)


class StepTimer(L.Callback):
    """Wall time of every training batch (one D step and one G step)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync()
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync()
        self.times.append(time.perf_counter() - self.start)


def measure(stage: int, precision: str, batch_size: int, steps: int) -> dict:
    """Train ``steps + 1`` batches; images/s over all but the first."""
    torch.manual_seed(0)
    model = build(stage)
    side = model.image_size
    batch = {
        "images": torch.rand(batch_size, 3, side, side) * 2 - 1,
        "wrong_images": torch.rand(batch_size, 3, side, side) * 2 - 1,
        "text_emb": torch.randn(batch_size, TEXT_DIM),
    }
    loader = DataLoader([batch] * (steps + 1), batch_size=None)  # the same batch every step
    timer = StepTimer()
    trainer = L.Trainer(
        max_steps=2 * (steps + 1), precision=precision, logger=False, callbacks=[timer],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0,
    )  # fmt: skip
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(model, train_dataloaders=loader)
    timed = timer.times[1:]  # the first batch is a warm-up
    if torch.cuda.is_available():
        peak, kind = torch.cuda.max_memory_allocated(), "GPU allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "CPU peak RSS"
    return {
        "stage": stage, "precision": precision, "batch_size": batch_size, "steps": len(timed),
        "images_per_s": batch_size * len(timed) / sum(timed) if timed else float("nan"),
        "s_per_step": sum(timed) / len(timed) if timed else float("nan"),
        "peak_gib": peak / 2**30, "memory": kind,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", type=int, choices=(1, 2), action="append",
                        help="stage to measure (repeat for both; default both)")  # fmt: skip
    parser.add_argument("--precision", action="append", choices=("32-true", "bf16-mixed"),
                        help="precision (repeat; default both)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (paper: 64)")
    parser.add_argument("--steps", type=int, default=1,
                        help="timed batches after the warm-up (0: peak memory only)")  # fmt: skip
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child process
    a = parser.parse_args()
    stages, precisions = a.stage or [1, 2], a.precision or ["32-true", "bf16-mixed"]
    if a.one:
        print(json.dumps(measure(stages[0], precisions[0], a.batch_size, a.steps)))
        return
    print(f"{'stage':>5} {'precision':>10} {'batch':>5} {'images/s':>9} {'s/step':>7} "
          f"{'peak GiB':>8}  memory, device")  # fmt: skip
    for stage in stages:
        for precision in precisions:
            cmd = [sys.executable, __file__, "--one", "--stage", str(stage), "--precision",
                   precision, "--batch-size", str(a.batch_size), "--steps", str(a.steps)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                print(f"{stage:>5} {precision:>10} failed:\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{stage:>5} {precision:>10} {r['batch_size']:>5} {r['images_per_s']:>9.2f} "
                  f"{r['s_per_step']:>7.2f} {r['peak_gib']:>8.2f}  {r['memory']}, {r['device']} "
                  f"({r['threads']} threads)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
