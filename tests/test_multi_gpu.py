"""Multi-process training on 2 CPU processes (gloo DDP through the real CLI): each rank draws its
own noise, a resumed run continues each rank's stream exactly, and a 2-rank checkpoint resumes on
1 rank with a note. Two DDP runs in all (they take a while on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from t2igan.models import GANINTCLS

from .conftest import ROOT, TINY_DATA, tiny_datamodule
from .rng_recorder import RngRecorder

T2IGAN = str(Path(sys.executable).parent / "t2igan")


def _ddp_fit(data_root, run: Path, record: Path, epochs: int, ckpt_path: Path | None = None):
    config = run / "ddp.yaml"
    run.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "seed_everything: 0\n"
        "model:\n  class_path: t2igan.models.GANINTCLS\n  init_args: {ngf: 4, ndf: 4}\n"
        f"trainer:\n  default_root_dir: {run}\n  enable_progress_bar: false\n  logger: false\n"
        "  callbacks:\n  - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
        f"    init_args: {{dirpath: {run}/ckpt, save_top_k: -1, save_last: true}}\n"
        f"  - class_path: tests.rng_recorder.RngRecorder\n    init_args: {{out: {record}}}\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    cmd = [T2IGAN, "fit", "--config", str(config), *TINY_DATA, "--data.root", str(data_root),
           "--data.image_size", "32", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
           "--trainer.strategy", "ddp_find_unused_parameters_true", "--trainer.max_epochs",
           str(epochs), "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "0"]  # fmt: skip
    if ckpt_path is not None:
        cmd += ["--ckpt_path", str(ckpt_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((record / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(scope="module")
def straight(data_root, tmp_path_factory):
    """Two epochs on two ranks in one go, a checkpoint after each."""
    run = tmp_path_factory.mktemp("straight")
    return run, _ddp_fit(data_root, run, run / "record", epochs=2)


def test_ranks_draw_different_noise_and_resume_continues_each_rank(straight, data_root, tmp_path):
    run, ranks = straight
    for rank in ranks:  # 2 batches x 2 epochs x (D step + G step) noise draws
        assert len(rank["noise"]) == 8 and len(rank["saved"]) == 4  # epoch=N and last, twice
    assert not set(ranks[0]["noise"]) & set(ranks[1]["noise"])
    # the checkpoint holds each rank's state; rank 0's is also the classic "rng" entry
    ckpt = torch.load(run / "ckpt" / "epoch=0-step=4.ckpt", weights_only=True)["t2igan"]
    assert len(ckpt["rng_per_rank"]) == 2 and torch.equal(ckpt["rng"]["torch"],
                                                          ckpt["rng_per_rank"][0]["torch"])  # fmt: skip

    resumed = _ddp_fit(data_root, tmp_path, tmp_path / "record", epochs=2,
                       ckpt_path=run / "ckpt" / "epoch=0-step=4.ckpt")  # fmt: skip
    for before, after in zip(ranks, resumed):
        assert after["loaded"] == before["saved"][0]  # each rank where it was saved
        assert after["noise"] == before["noise"][4:]  # ... and then the same draws
    end = torch.load(run / "ckpt" / "epoch=1-step=8.ckpt", weights_only=True)["state_dict"]
    again = torch.load(tmp_path / "ckpt" / "epoch=1-step=8.ckpt", weights_only=True)["state_dict"]
    for k, v in end.items():
        assert torch.equal(v, again[k]), k


def test_two_rank_checkpoint_resumes_on_one_rank_with_a_note(straight, data_root, tmp_path):
    run, ranks = straight
    ckpt = run / "ckpt" / "epoch=0-step=4.ckpt"
    recorder = RngRecorder(str(tmp_path / "record"))
    model = GANINTCLS(text_dim=256, image_size=32, ngf=4, ndf=4)
    dm = tiny_datamodule(data_root, text_encoder=TINY_ENCODER())
    trainer = L.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0,
                        accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, callbacks=[recorder])  # fmt: skip
    note = (r"epoch=0-step=4.ckpt holds the random-number states of 2 rank\(s\) and resumes on 1: "
            r"rank 0 continues where it was, the states of rank 1 are dropped\.")  # fmt: skip
    with pytest.warns(UserWarning, match=note):
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt, weights_only=True)
    assert recorder.record["loaded"] == ranks[0]["saved"][0]  # rank 0's stream goes on


def TINY_ENCODER():  # noqa: N802  the encoder TINY_DATA names
    from t2igan.data import HashingEncoder

    return HashingEncoder()
