"""A crash never loses a run, and resume is exact: for every moment a checkpoint can be written
(each epoch's end, validation every k epochs, mid-epoch), after an exception and after kill -9,
the resumed run ends with the same weights and logs the same values as an unbroken one."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from t2igan.callbacks import RunCheckpoint, SampleGrid
from t2igan.callbacks.checkpoint import AtomicCheckpointIO, resume_path
from t2igan.models import GANINTCLS

from .conftest import ROOT, TINY_DATA, tiny_datamodule


class Crash(L.Callback):
    """Raises at batch ``batch`` of epoch ``epoch``: a crash in the middle of training."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.at = (epoch, batch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == self.at:
            raise RuntimeError("simulated crash")


def _model() -> GANINTCLS:
    L.seed_everything(0)
    return GANINTCLS(text_dim=64, image_size=32, ngf=8, ndf=8, lr_decay_every=2)


def _fit(run: Path, dm, epochs: int, ckpt_path=None, crash=None, **kwargs) -> GANINTCLS:
    model = _model()
    if "plain" in kwargs:  # Lightning's own ModelCheckpoint, with its own saving moments
        saver = ModelCheckpoint(dirpath=run / "checkpoints", save_last=True, **kwargs.pop("plain"))
    else:
        saver = RunCheckpoint(every_n_batches=kwargs.pop("every_n_batches", 0))
    callbacks = [saver, SampleGrid(num_captions=2, num_samples=2)]
    if crash is not None:
        callbacks.append(Crash(*crash))
    logger = CSVLogger(run, name="logs", flush_logs_every_n_steps=1)
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=logger, log_every_n_steps=1,
        limit_train_batches=5,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        default_root_dir=run, callbacks=callbacks, **kwargs,
    )  # fmt: skip
    L.seed_everything(0)  # what the CLI does at start; a checkpoint's RNG states win
    if crash is None:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    else:
        with pytest.raises(RuntimeError, match="simulated crash"):
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model


def _logged(run: Path) -> dict[tuple[str, str], str]:
    """Every (step, key) -> value of every fit in ``run`` (a later fit overrides an earlier)."""
    out = {}
    for path in sorted((run / "logs").glob("version_*/metrics.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    if key not in ("step", "epoch") and value != "":
                        out[(row["epoch"], row["step"], key)] = value
    return out


CASES = {
    # name: (trainer options, crash at (epoch, batch))
    "epoch_end": ({"limit_val_batches": 0}, (1, 3)),
    "val_every_2_epochs": ({"check_val_every_n_epoch": 2, "limit_val_batches": 2}, (2, 3)),
    "mid_epoch": ({"limit_val_batches": 0, "every_n_batches": 2}, (1, 3)),
    # Lightning's ModelCheckpoint: at validation end (validation every 2 epochs), and every 4
    # optimiser steps (2 batches), mid-epoch
    "lightning_at_val_end": ({"check_val_every_n_epoch": 2, "limit_val_batches": 2,
                              "plain": {}}, (2, 3)),
    "lightning_every_n_steps": ({"limit_val_batches": 0,
                                 "plain": {"every_n_train_steps": 4}}, (1, 3)),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_resume_after_a_crash_is_exact(case, data_root, tmp_path):
    options, crash = CASES[case]
    dm = tiny_datamodule(data_root)
    straight = _fit(tmp_path / "a", dm, 3, **options)
    _fit(tmp_path / "b", dm, 3, crash=crash, **options)
    resumed = _fit(tmp_path / "b", dm, 3, ckpt_path=tmp_path / "b/checkpoints/last.ckpt",
                   **options)  # fmt: skip
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    expected, got = _logged(tmp_path / "a"), _logged(tmp_path / "b")
    assert len(expected) > 20
    assert {k: v for k, v in got.items() if expected.get(k) != v} == {}
    assert got.keys() == expected.keys()
    # the epoch-end figures were drawn once each, as in the unbroken run; the last one after
    # the resume, from the fixed captions and noise the checkpoint kept, is the same picture
    grids = sorted(p.name for p in (tmp_path / "a/samples").glob("*.png"))
    assert sorted(p.name for p in (tmp_path / "b/samples").glob("*.png")) == grids
    last = grids[-1]
    assert (tmp_path / "a/samples" / last).read_bytes() == (
        tmp_path / "b/samples" / last
    ).read_bytes()


def test_checkpoint_every_epoch_and_kept_copies(data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    model = _model()
    trainer = L.Trainer(max_epochs=3, logger=False, enable_progress_bar=False,
                        limit_val_batches=0, default_root_dir=tmp_path,
                        callbacks=[RunCheckpoint(keep_every_n_epochs=2), Crash(2, 1)])  # fmt: skip
    with pytest.raises(RuntimeError):
        trainer.fit(model, datamodule=dm)
    files = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert files == ["epoch=0001.ckpt", "last.ckpt"]  # kept epoch 2 (index 1); last = epoch 2
    ckpt = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 2 * 2 * 8  # 2 epochs of 8 batches


def test_fast_dev_run_writes_no_checkpoint(data_root, tmp_path):
    trainer = L.Trainer(fast_dev_run=2, logger=False, enable_progress_bar=False,
                        default_root_dir=tmp_path, callbacks=[RunCheckpoint()])  # fmt: skip
    trainer.fit(_model(), datamodule=tiny_datamodule(data_root))
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_a_fresh_fit_keeps_the_earlier_runs_checkpoints(data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    for epochs in (1, 2):
        trainer = L.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False,
                            limit_val_batches=0, default_root_dir=tmp_path,
                            callbacks=[RunCheckpoint()])  # fmt: skip
        trainer.fit(_model(), datamodule=dm)
    (previous,) = (tmp_path / "checkpoints").glob("previous-*/last.ckpt")
    assert torch.load(previous, weights_only=True)["epoch"] == 0
    assert torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 1


def test_non_finite_weights_are_never_saved(data_root, tmp_path):
    class Poison(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                with torch.no_grad():
                    next(pl_module.generator.parameters()).fill_(float("nan"))

    trainer = L.Trainer(max_epochs=3, logger=False, enable_progress_bar=False,
                        limit_val_batches=0, default_root_dir=tmp_path,
                        callbacks=[Poison(), RunCheckpoint()])  # fmt: skip
    with pytest.raises(RuntimeError, match=r"weights are not finite at epoch 1 .*last finite"):
        trainer.fit(_model(), datamodule=tiny_datamodule(data_root))
    ckpt = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0
    assert all(
        torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point()
    )


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"a": torch.ones(3)}, path)

    def broken(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"a": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_resume_path_checks_before_a_fit_starts(tmp_path):
    folder = tmp_path / "checkpoints"
    with pytest.raises(FileNotFoundError, match=f"no checkpoint in {folder}/ to resume from"):
        resume_path(folder, "last")
    folder.mkdir()
    torch.save({"epoch": 3}, folder / "epoch=0003.ckpt")
    time.sleep(0.01)
    (folder / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"last.ckpt is not a checkpoint \(torch.save's zip "
                       r"format\) or is cut short; resume from .*epoch=0003.ckpt instead"):  # fmt: skip
        resume_path(folder, "last")
    assert resume_path(folder, str(folder / "epoch=0003.ckpt")) == str(folder / "epoch=0003.ckpt")
    assert resume_path(folder, None) is None


def test_kill_9_then_resume_is_exact(data_root, tmp_path):
    """The real CLI, killed with SIGKILL after its second epoch's checkpoint, then resumed with
    ``--ckpt_path last``: the same final weights as an unbroken run."""
    t2igan = str(Path(sys.executable).parent / "t2igan")
    config = str(ROOT / "experiments" / "quickstart.yaml")
    common = [t2igan, "fit", "--config", config, *TINY_DATA, "--data.root", str(data_root),
              "--model.init_args.ngf", "8", "--model.init_args.ndf", "8",
              "--trainer.max_epochs", "6", "--trainer.enable_progress_bar", "false"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    a, b = tmp_path / "a", tmp_path / "b"
    straight = subprocess.Popen([*common, "--trainer.default_root_dir", str(a)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    victim = subprocess.Popen([*common, "--trainer.default_root_dir", str(b)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (b / "samples" / "epoch_0002.png").exists():
        assert victim.poll() is None and time.monotonic() < deadline, "run ended before the kill"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert straight.wait(timeout=300) == 0
    epoch = torch.load(b / "checkpoints/last.ckpt", weights_only=True)["epoch"]
    assert epoch < 5  # killed before the end
    resumed = subprocess.run([*common, "--trainer.default_root_dir", str(b), "--ckpt_path",
                              "last"], env=env, capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = [
        torch.load(d / "checkpoints/last.ckpt", weights_only=True)["state_dict"] for d in (a, b)
    ]
    for name, value in final[0].items():
        assert torch.equal(value, final[1][name]), name
    assert not list((b / "checkpoints").glob(".*.tmp"))


def test_a_killed_save_leaves_no_temporary_file_behind(data_root, tmp_path):
    """A checkpoint write killed half-way leaves ``.last.ckpt.<pid>.tmp``; the next fit in that
    folder removes it (a file of a process still running is left alone)."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale, alive = folder / f".last.ckpt.{dead}.tmp", folder / f".last.ckpt.{os.getppid()}.tmp"
    stale.write_bytes(b"half")
    alive.write_bytes(b"being written")
    trainer = L.Trainer(max_epochs=1, limit_train_batches=1, logger=False, limit_val_batches=0,
                        enable_progress_bar=False, default_root_dir=tmp_path,
                        callbacks=[RunCheckpoint()])  # fmt: skip
    trainer.fit(_model(), datamodule=tiny_datamodule(data_root))
    assert not stale.exists() and alive.exists()
