"""Shared fixtures: tiny synthetic data with the instant hashing text encoder."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from t2igan.data import HashingEncoder, T2IDataModule

ROOT = Path(__file__).resolve().parents[1]
#: The real-data subset beside the checkout (tests that need it skip when it is absent).
SHARED_DATA = Path(os.environ.get("T2IGAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
#: CLI flags that make any experiment config tiny and fast on CPU.
TINY_DATA = [
    "--data.dataset", "synthetic", "--data.text_encoder", "t2igan.data.HashingEncoder",
    "--data.num_images", "64", "--data.num_eval_images", "32", "--data.batch_size", "8",
]  # fmt: skip


def eventually(check, timeout: float = 30.0) -> bool:
    """Poll ``check`` until true or ``timeout`` s (W&B's service may still be writing an offline
    run after ``wandb.finish``); returns its last answer."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.2)
    return check()


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """Every test runs in its own folder: the experiment configs write to relative paths
    (``runs/...``), which must never land in the checkout (a stale ``runs/quickstart`` there
    would be picked up by ``make demo``)."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """One data root per test session, so embedding and evaluator caches are shared."""
    return tmp_path_factory.mktemp("data")


def tiny_datamodule(root: Path, image_size: int = 32, **kwargs) -> T2IDataModule:
    args = dict(
        dataset="synthetic", root=str(root), image_size=image_size, batch_size=8,
        text_encoder=HashingEncoder(dim=64), num_images=64, num_eval_images=32,
    )  # fmt: skip
    args.update(kwargs)
    dm = T2IDataModule(**args)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def fit_briefly(model, dm, steps: int = 2):
    """Train ``model`` on ``dm`` for ``steps`` optimiser steps (no logger, checkpoint or
    validation); returns the trainer, e.g. to ``save_checkpoint``."""
    import lightning as L

    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    return trainer


@pytest.fixture
def tiny_dm(data_root) -> T2IDataModule:
    return tiny_datamodule(data_root)
