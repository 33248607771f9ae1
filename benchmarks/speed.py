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
NUM_PARTS = 15  # CUB's parts, GAWWN's keypoints

#: The papers' settings: model -> (image side, batch size).
PAPER = {
    "gan_int_cls": (64, 64),
    "stackgan_stage1": (64, 64),
    "stackgan_stage2": (256, 64),
    "gawwn_box": (128, 16),
    "gawwn_keypoints": (128, 16),
}
#: ``--tiny``: small widths and sides, so every model runs in seconds on a CPU.
TINY = {"gan_int_cls": 32, "stackgan_stage1": 32, "stackgan_stage2": 128, "gawwn_box": 64,
        "gawwn_keypoints": 64}  # fmt: skip


def build(name: str, tiny: bool = False) -> L.LightningModule:
    """The paper's networks at the paper's side (``tiny``: width 8 or 16, small sides)."""
    from t2igan.models import GAWWNBox, GAWWNKeypoints, StackGANStage2

    side = TINY[name] if tiny else PAPER[name][0]
    width = {"ngf": 8, "ndf": 8} if tiny else {}
    if name == "gan_int_cls":
        return GANINTCLS(text_dim=TEXT_DIM, image_size=side, **width)
    if name == "stackgan_stage1":
        return StackGANStage1(text_dim=TEXT_DIM, image_size=side, **width)
    if name == "stackgan_stage2":  # on an untrained Stage-I of the authors' widths
        stage1 = dict(z_dim=100, text_dim=TEXT_DIM, condition_dim=128, ngf=16 if tiny else 128,
                      image_size=side // 4, ca_activation="relu")  # fmt: skip
        return StackGANStage2(text_dim=TEXT_DIM, image_size=side, stage1=stage1, **width)
    if name == "gawwn_box":
        return GAWWNBox(text_dim=TEXT_DIM, image_size=side, **width)
    return GAWWNKeypoints(text_dim=TEXT_DIM, image_size=side, num_parts=NUM_PARTS, **width)


def fixed_batch(batch_size: int, side: int, device, channels_last: bool) -> dict:
    """A random batch of the data contract, boxes and keypoints included (models that take
    neither ignore them)."""
    g = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    xy = torch.rand(batch_size, 2, generator=g) * 0.5
    keypoints = torch.rand(batch_size, NUM_PARTS, 3, generator=g)
    keypoints[..., 2] = (keypoints[..., 2] > 0.3).float()
    keypoints[..., :2] *= keypoints[..., 2:]
    batch = {
        "images": torch.rand(batch_size, 3, side, side, generator=g) * 2 - 1,
        "wrong_images": torch.rand(batch_size, 3, side, side, generator=g) * 2 - 1,
        "text_emb": torch.randn(batch_size, TEXT_DIM, generator=g),
        "boxes": torch.cat([xy, 0.2 + torch.rand(batch_size, 2, generator=g) * 0.3], 1),
        "keypoints": keypoints,
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
    return loader_images_per_s(dm)


def loader_images_per_s(dm) -> float:
    """Images/s of ``dm``'s training loader over one epoch, after its first batch."""
    dm.prepare_data()
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    next(it)
    t = time.perf_counter()
    n = sum(len(b["images"]) for b in it)
    return n / (time.perf_counter() - t)


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float | None:
    """Peak GPU memory allocated since :func:`reset_peak` (None on the CPU)."""
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


@torch.no_grad()
def sample_difference(name: str, tiny: bool, precision: str, speed_ups, device) -> float:
    """Relative difference ``|got - want| / |want|`` (L2 norms over the batch) between G's
    samples with ``precision`` and ``speed_ups`` and in eager fp32, for the same weights, noise
    and batch (eval mode): what the speed-ups change in the results. Relative, since an
    untrained G's samples are small."""
    torch.manual_seed(0)
    plain = build(name, tiny).to(device).eval()
    fast = build(name, tiny).to(device).eval()
    fast.load_state_dict(plain.state_dict())
    speed_ups.setup(None, fast, "fit")
    batch = fixed_batch(8, plain.image_size, device, speed_ups.channels_last)
    noise = plain.sample_noise(8, generator=torch.Generator().manual_seed(1)).to(device)
    cond = plain.conditioning_of(batch)
    want = plain.sample(batch["text_emb"], noise, **cond).float()
    kind = "cuda" if device.type == "cuda" else "cpu"
    with torch.autocast(kind, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
        got = fast.sample(batch["text_emb"], noise, **cond).float()
    return float((got - want).norm() / want.norm())


def measure(name: str, batch_size: int, rounds: int, steps: int, precision: str = "32-true",
            channels_last: bool = False, compile: bool = False, fused_adam: bool = False,
            tiny: bool = False) -> dict:  # fmt: skip
    """t2igan's loop against the bare loop for one model and setting, interleaved rounds;
    images/s of each, their ratio, each loop's peak GPU memory and the relative sample
    difference from eager fp32 (:func:`sample_difference`)."""
    device = "gpu" if torch.cuda.is_available() else "cpu"
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    torch.manual_seed(0)
    fit_model, bare_model = build(name, tiny).to(dev), build(name, tiny).to(dev)
    speed_ups = SpeedUps(channels_last=channels_last, compile=compile, fused_adam=fused_adam)
    for model in (fit_model, bare_model):  # the fixed batch is already in that layout
        speed_ups.setup(None, model, "fit")
    batch = fixed_batch(batch_size, fit_model.image_size, dev, channels_last)
    opts, _ = bare_model.configure_optimizers()
    fit_s, bare_s, fit_peak, bare_peak = [], [], None, None
    for _ in range(rounds):
        reset_peak()
        fit_s.append(fit_round(fit_model, batch, steps, precision, device))
        fit_peak = max(fit_peak or 0, peak_gib() or 0) if dev.type == "cuda" else None
        reset_peak()
        bare_s.append(bare_round(bare_model, opts, batch, steps, precision, device))
        bare_peak = max(bare_peak or 0, peak_gib() or 0) if dev.type == "cuda" else None
    n = batch_size * steps * rounds
    fit_ips, bare_ips = n / sum(fit_s), n / sum(bare_s)
    return {
        "model": name, "image_size": fit_model.image_size, "batch_size": batch_size,
        "precision": precision, "channels_last": channels_last, "compile": compile,
        "fused_adam": fused_adam, "rounds": rounds, "steps": steps,
        "fit_images_per_s": fit_ips, "bare_images_per_s": bare_ips,
        "fit_over_bare": fit_ips / bare_ips, "fit_round_s": fit_s, "bare_round_s": bare_s,
        "fit_peak_gib": fit_peak, "bare_peak_gib": bare_peak,
        "sample_difference": sample_difference(name, tiny, precision, speed_ups, dev),
    }  # fmt: skip


def profile(name: str, batch_size: int, steps: int, precision: str = "32-true",
            channels_last: bool = False, compile: bool = False, fused_adam: bool = False,
            tiny: bool = False) -> str:  # fmt: skip
    """Lightning's SimpleProfiler report of one fit round: where the time of a step goes
    (hooks, logging, optimiser steps, data fetch)."""
    import tempfile

    from lightning.pytorch.profilers import SimpleProfiler

    device = "gpu" if torch.cuda.is_available() else "cpu"
    model = build(name, tiny).to("cuda" if device == "gpu" else "cpu")
    SpeedUps(channels_last, compile, fused_adam).setup(None, model, "fit")
    batch = fixed_batch(batch_size, model.image_size, model.device, channels_last)
    # to a file, not the log, so the report is returned once
    profiler = SimpleProfiler(dirpath=tempfile.mkdtemp(), filename="profile")
    fit_round(model, batch, steps, precision, device, profiler)
    return profiler.summary()


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", choices=tuple(PAPER),
                   help="repeat for several; default gan_int_cls and stackgan_stage1")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=None,
                   help="default: the paper's (64; GAWWN 16)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each loop")
    p.add_argument("--steps", type=int, default=4, help="timed batches per round")
    p.add_argument("--precision", default="32-true", choices=("32-true", "bf16-mixed"))
    p.add_argument("--channels-last", action="store_true", help="networks and images NHWC")
    p.add_argument("--compile", action="store_true", help="torch.compile G and D (both loops)")
    p.add_argument("--fused-adam", action="store_true", help="fused Adam (both loops)")
    p.add_argument("--tiny", action="store_true", help="small widths and sides (a quick check)")
    p.add_argument("--workers", type=int, default=0, help="loader workers for the data figure")
    p.add_argument("--profile", action="store_true",
                   help="then one more fit round under Lightning's SimpleProfiler: where the "
                   "time of a step goes (hooks, logging, optimiser steps, data fetch)")  # fmt: skip
    a = p.parse_args()
    print(f"device {device_name()}, {torch.get_num_threads()} threads, {a.precision}, "
          f"channels_last={a.channels_last}, compile={a.compile}, fused_adam={a.fused_adam}, "
          f"{a.rounds} rounds x {a.steps} timed batches per loop")  # fmt: skip
    print("model            batch  fit img/s  bare img/s  fit/bare  peak GiB fit/bare")
    for name in a.model or ["gan_int_cls", "stackgan_stage1"]:
        batch_size = a.batch_size or PAPER[name][1]
        r = measure(name, batch_size, a.rounds, a.steps, a.precision, a.channels_last,
                    a.compile, a.fused_adam, a.tiny)  # fmt: skip
        peaks = "/".join("-" if v is None else f"{v:.2f}"
                         for v in (r["fit_peak_gib"], r["bare_peak_gib"]))  # fmt: skip
        print(f"{name:<16} {batch_size:>5} {r['fit_images_per_s']:>10.2f} "
              f"{r['bare_images_per_s']:>11.2f} {r['fit_over_bare']:>9.3f}  {peaks}",
              flush=True)  # fmt: skip
        if a.profile:
            print(profile(name, batch_size, a.steps, a.precision, a.channels_last, a.compile,
                          a.fused_adam, a.tiny), flush=True)  # fmt: skip
    print(
        f"data loader (synthetic, 64 px from 76, flips, {a.workers} workers): "
        f"{loader_speed(64, 10, a.workers):.0f} images/s"
    )


if __name__ == "__main__":
    main()
