"""Every output of a fit follows its run directory, whatever the config file names."""

from __future__ import annotations

import pytest
import torch

from t2igan.cli.fit import cli

from .conftest import ROOT, TINY_DATA

QUICKSTART = str(ROOT / "experiments" / "quickstart.yaml")


def _fit(data_root, *extra: str):
    return cli(["fit", "--config", QUICKSTART, *TINY_DATA, "--data.root", str(data_root),
                "--model.init_args.ngf", "8", "--model.init_args.ndf", "8",
                "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
                "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                "--trainer.check_val_every_n_epoch", "1", *extra])  # fmt: skip


def test_default_root_dir_moves_every_output_and_loggers_share_one_version(data_root, tmp_path):
    run = tmp_path / "elsewhere"
    for _ in range(2):
        _fit(data_root, "--trainer.default_root_dir", str(run))
    assert not (tmp_path / "runs").exists()  # nothing went where the YAML's own folder is
    for version in ("version_0", "version_1"):
        files = {p.name.split(".")[0] for p in (run / "logs" / version).iterdir()}
        assert {"events", "metrics", "hparams", "config"} <= files  # TensorBoard and CSV together
    assert not (run / "logs" / "version_2").exists()
    assert (run / "config.yaml").is_file()  # where the README says
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run / "checkpoints").glob("previous-*/last.ckpt"))) == 1
    assert (run / "samples" / "epoch_0000.png").is_file()


def test_ckpt_path_last_without_a_checkpoint_is_an_error(data_root, tmp_path):
    run = tmp_path / "new"
    with pytest.raises(FileNotFoundError, match=f"no checkpoint in {run / 'checkpoints'}/"):
        _fit(data_root, "--trainer.default_root_dir", str(run), "--ckpt_path", "last")
    assert not (run / "samples").exists()  # nothing was trained or drawn


def test_ckpt_path_last_resumes_the_run(data_root, tmp_path):
    run = tmp_path / "run"
    _fit(data_root, "--trainer.default_root_dir", str(run))
    resumed = _fit(data_root, "--trainer.default_root_dir", str(run), "--ckpt_path", "last",
                   "--trainer.max_epochs", "2")  # fmt: skip
    assert resumed.trainer.current_epoch == 2
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    assert not list((run / "checkpoints").glob("previous-*"))  # a resume moves nothing aside
