"""GAN-INT-CLS fits (fast_dev_run) through the real CLI on a prepared real CUB subset."""

from __future__ import annotations

import pytest

from t2igan.cli.commands import SUBCOMMANDS
from t2igan.cli.fit import cli
from t2igan.data import prepare as cache

from .conftest import ROOT, SHARED_DATA

REAL = SHARED_DATA / "birds" / "CUB_200_2011"


@pytest.mark.skipif(not REAL.exists(), reason="shared real data not present")
def test_fit_gan_int_cls_on_prepared_real_cub(tmp_path):
    # The subset holds 62 images of StackGAN test classes only: use the official image split.
    flags = ["--split", "official", "--skip-missing"]
    SUBCOMMANDS["prepare"](["--dataset", "cub", "--root", str(tmp_path), "--source", str(REAL),
                            "--load-size", "76", *flags])  # fmt: skip
    run = cli(args=[
        "fit", "--config", str(ROOT / "experiments" / "gan_int_cls.yaml"),
        "--data.root", str(tmp_path), "--data.source", str(REAL), "--data.split", "official",
        "--data.skip_missing", "true", "--data.text_encoder", "t2igan.data.HashingEncoder",
        "--data.batch_size", "8", "--model.init_args.ngf", "8", "--model.init_args.ndf", "8",
        "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(tmp_path / "run"),
    ])  # fmt: skip
    dm = run.datamodule
    assert isinstance(dm._cache, cache.CachedReader)  # read from the prepared cache
    assert len(dm.datasets["train"]) == 33 and dm.image_size == 64 and dm.load_size == 76
    assert run.trainer.state.finished and run.trainer.global_step > 0
