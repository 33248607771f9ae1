"""What t2igan's training loop costs: images/s of ``t2igan fit``'s loop (Lightning Trainer,
manual optimisation, ``toggled_optimizer``, logging) against a bare PyTorch loop over the same
networks, losses and optimisers, side by side in one process, interleaved (fit, bare, fit,
bare, ...) so both see the same machine load; plus the data loader's images/s.

The bare loop is as lean as the work allows: per batch, G's parameters frozen, the D loss,
zero_grad, backward, Adam step, then the same for G with D frozen (what ``toggled_optimizer``
does), the models' own ``discriminator_loss`` / ``generator_loss``. Both loops train on one
fixed random batch (data loading is measured apart). A fit round's time runs from the end of
its first batch to the end of its last (every hook, logging call and loader fetch in between
counts); a bare round's likewise.

    python benchmarks/speed.py                                   # both models, fp32, CPU or GPU
    python benchmarks/speed.py --model gan_int_cls --rounds 3 --steps 4
    python benchmarks/speed.py --precision bf16-mixed --channels-last --compile

The speed-ups (``--channels-last``, ``--compile``: :class:`t2igan.callbacks.SpeedUps`;
``--precision bf16-mixed``: the Trainer's, and autocast in the bare loop) apply to both loops.
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch
from torch.utils.data import DataLoader

from t2igan.callbacks import SpeedUps
from t2igan.models import GANINTCLS, StackGANStage1

TEXT_DIM = 1024  # the authors' char-CNN-RNN embeddings


def build(name: str) -> L.LightningModule:
    """The paper's networks at 64 x 64."""
    if name == "gan_int_cls":
        return GANINTCLS(text_dim=TEXT_DIM, image_size=64)
    return StackGANStage1(text_dim=TEXT_DIM, image_size=64)


def fixed_batch(batch_size: int, side: int, device, channels_last: bool) -> dict:
    g = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    batch = {
        "images": torch.rand(batch_size, 3, side, side, generator=g) * 2 - 1,
        "wrong_images": torch.rand(batch_size, 3, side, side, generator=g) * 2 - 1,
        "text_emb": torch.randn(batch_size, TEXT_DIM, generator=g),
    }
    return {k: v.to(device, memory_format=fmt) if v.dim() == 4 else v.to(device)
            for k, v in batch.items()}  # fmt: skip


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class BatchEnds(L.Callback):
    """Time at the end of every training batch."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sync()
        self.ends.append(time.perf_counter())


def fit_round(model, batch: dict, steps: int, precision: str, device: str,
              profiler=None) -> float:  # fmt: skip
    """Seconds for ``steps`` batches of ``Trainer.fit`` after one untimed batch."""
    ends = BatchEnds()
    trainer = L.Trainer(
        profiler=profiler,
        max_steps=2 * (steps + 1), precision=precision, logger=False, callbacks=[ends],
        accelerator=device, devices=1, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        log_every_n_steps=1,  # every batch logs, as t2igan's configs do at least every 10
    )  # fmt: skip
    loader = DataLoader([batch] * (steps + 1), batch_size=None)
    trainer.fit(model, train_dataloaders=loader)
    return ends.ends[-1] - ends.ends[0]


def bare_round(model, opts, batch: dict, steps: int, precision: str, device: str) -> float:
    """Seconds for ``steps`` batches of the bare loop after one untimed batch."""
    opt_d, opt_g = opts
    g_params, d_params = list(model.generator.parameters()), list(model.discriminator.parameters())
    bf16 = precision == "bf16-mixed"
    kind = "cuda" if device == "gpu" else "cpu"
    start = None
    for step in range(steps + 1):
        steps_of_batch = ((opt_d, model.discriminator_loss, g_params),
                          (opt_g, model.generator_loss, d_params))  # fmt: skip
        for opt, loss_fn, frozen in steps_of_batch:
            for p in frozen:
                p.requires_grad_(False)
            with torch.autocast(kind, dtype=torch.bfloat16, enabled=bf16):
                loss, _ = loss_fn(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for p in frozen:
                p.requires_grad_(True)
        if step == 0:
            sync()
            start = time.perf_counter()
    sync()
    return time.perf_counter() - start


def loader_speed(batch_size: int, batches: int, workers: int) -> float:
    """Images/s of the synthetic birds' training loader at 64 x 64 (in-memory images: the
    synthetic birds have no cache file), hashing caption embeddings precomputed."""
    from t2igan.data import HashingEncoder, T2IDataModule

    dm = T2IDataModule("synthetic", "data", image_size=64, load_size=76, flip=True,
                       num_images=batch_size * (batches + 1), batch_size=batch_size,
                       num_workers=workers, text_encoder=HashingEncoder(TEXT_DIM))  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    next(it)
    t = time.perf_counter()
    n = sum(len(b["images"]) for b in it)
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", choices=("gan_int_cls", "stackgan_stage1"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each loop")
    p.add_argument("--steps", type=int, default=4, help="timed batches per round")
    p.add_argument("--precision", default="32-true", choices=("32-true", "bf16-mixed"))
    p.add_argument("--channels-last", action="store_true", help="networks and images NHWC")
    p.add_argument("--compile", action="store_true", help="torch.compile G and D (both loops)")
    p.add_argument("--fused-adam", action="store_true", help="fused Adam (both loops)")
    p.add_argument("--workers", type=int, default=0, help="loader workers for the data figure")
    p.add_argument("--profile", action="store_true",
                   help="then one more fit round under Lightning's SimpleProfiler: where the "
                   "time of a step goes (hooks, logging, optimiser steps, data fetch)")  # fmt: skip
    a = p.parse_args()
    device = "gpu" if torch.cuda.is_available() else "cpu"
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    print(f"device {torch.cuda.get_device_name() if device == 'gpu' else 'cpu'}, "
          f"{torch.get_num_threads()} threads, {a.precision}, channels_last={a.channels_last}, "
          f"compile={a.compile}, fused_adam={a.fused_adam}, "
          f"batch {a.batch_size}, {a.rounds} rounds x {a.steps} timed batches per loop")  # fmt: skip
    print("model            fit img/s  bare img/s  fit/bare  (per round: fit s, bare s)")
    for name in a.model or ["gan_int_cls", "stackgan_stage1"]:
        torch.manual_seed(0)
        fit_model = build(name).to(dev)
        bare_model = build(name).to(dev)
        speed_ups = SpeedUps(channels_last=a.channels_last, compile=a.compile,
                             fused_adam=a.fused_adam)  # fmt: skip
        for model in (fit_model, bare_model):  # the fixed batch is already in that layout
            speed_ups.setup(None, model, "fit")
        batch = fixed_batch(a.batch_size, 64, dev, a.channels_last)
        opts, _ = bare_model.configure_optimizers()
        fit_s, bare_s = [], []
        for _ in range(a.rounds):
            fit_s.append(fit_round(fit_model, batch, a.steps, a.precision, device))
            bare_s.append(bare_round(bare_model, opts, batch, a.steps, a.precision, device))
        n = a.batch_size * a.steps * a.rounds
        fit_ips, bare_ips = n / sum(fit_s), n / sum(bare_s)
        rounds = ", ".join(f"{f:.1f}/{b:.1f}" for f, b in zip(fit_s, bare_s))
        print(f"{name:<16} {fit_ips:>9.2f} {bare_ips:>11.2f} {fit_ips / bare_ips:>9.3f}  ({rounds})",
              flush=True)  # fmt: skip
        if a.profile:
            import tempfile

            from lightning.pytorch.profilers import SimpleProfiler

            # to a file, not the log, so the report is printed once, here
            profiler = SimpleProfiler(dirpath=tempfile.mkdtemp(), filename="profile")
            fit_round(fit_model, batch, a.steps, a.precision, device, profiler)
            print(profiler.summary(), flush=True)
    print(
        f"data loader (synthetic, 64 px from 76, flips, {a.workers} workers): "
        f"{loader_speed(a.batch_size, 10, a.workers):.0f} images/s"
    )


if __name__ == "__main__":
    main()
