"""The CLI end to end: every experiment config, exact resume, generate, DDP and bf16."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image

from t2igan.cli.fit import cli
from t2igan.cli.generate import generate_main
from t2igan.data import HashingEncoder
from t2igan.models import GANINTCLS
from t2igan.models.loading import load_model

from .conftest import ROOT, TINY_DATA, fit_briefly, tiny_datamodule

EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))
_TINY_STACK = ["--data.image_size", "64", "--data.load_size", "76", "--model.init_args.ngf", "8",
               "--model.init_args.ndf", "4", "--model.init_args.num_residual", "1"]  # fmt: skip
#: Extra flags some configs need to stay tiny in the fast_dev_run test.
EXTRA_ARGS: dict[str, list[str]] = {
    # the recurrent VAEs at their configs' widths, over 4 steps instead of 32
    "draw.yaml": ["--model.init_args.steps", "4"],
    "aligndraw.yaml": ["--model.init_args.steps", "4"],
    "stackgan.yaml": [*_TINY_STACK, "--model.init_args.stage1_ngf", "4",
                      "--model.init_args.stage1_ndf", "4"],
    "stackgan_stage1.yaml": ["--model.init_args.ngf", "8", "--model.init_args.ndf", "8"],
    "stackgan_stage2.yaml": [*_TINY_STACK, "--model.init_args.condition_dim", "8"],
    **{f"gawwn_{kind}.yaml": ["--data.image_size", "64", "--data.load_size", "76",
                              "--model.init_args.ngf", "4", "--model.init_args.ndf", "4"]
       for kind in ("box", "keypoints")},
    # the MHP settings with the built-in birds' 15 parts (the 17-part configs on MPII: see
    # tests/test_gawwn_keypoints.py)
    **{f"gawwn_{kind}.yaml": ["--data.image_size", "64", "--data.load_size", "70",
                              "--model.init_args.num_parts", "15", "--model.init_args.ngf", "4",
                              "--model.init_args.ndf", "4"]
       for kind in ("mhp", "mhp_keypoint_generator")},
    "gawwn_keypoint_generator.yaml": ["--data.image_size", "64", "--data.load_size", "76",
                                      "--model.init_args.ngf", "8", "--model.init_args.ndf", "8"],
}  # fmt: skip
T2IGAN = str(Path(sys.executable).parent / "t2igan")


def tiny_args(data_root, run_dir) -> list[str]:
    return [*TINY_DATA, "--data.root", str(data_root), "--trainer.default_root_dir", str(run_dir)]


@pytest.fixture(scope="module")
def tiny_gan_ckpt(data_root, tmp_path_factory) -> Path:
    """A GAN-INT-CLS checkpoint matching TINY_DATA (32 px, 256-d hashing encoder)."""
    dm = tiny_datamodule(data_root, text_encoder=HashingEncoder())
    model = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=8, ndf=8,
                      text_encoder=dm.text_encoder_spec)  # fmt: skip
    trainer = fit_briefly(model, dm)
    path = tmp_path_factory.mktemp("gan") / "gan.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def tiny_stage1_ckpt(data_root, tmp_path_factory) -> Path:
    """A StackGAN Stage-I checkpoint matching TINY_DATA (256-d hashing encoder)."""
    from t2igan.models import StackGANStage1

    dm = tiny_datamodule(data_root, text_encoder=HashingEncoder())
    model = StackGANStage1(text_dim=dm.text_dim, image_size=16, z_dim=8, condition_dim=8,
                           ngf=4, ndf=4, text_encoder=dm.text_encoder_spec)  # fmt: skip
    trainer = fit_briefly(model, tiny_datamodule(data_root, image_size=16,
                                                 text_encoder=HashingEncoder()))  # fmt: skip
    path = tmp_path_factory.mktemp("stage1") / "stage1.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_runs_fast_dev_run_on_synthetic(config, data_root, tmp_path, request):
    extra = list(EXTRA_ARGS.get(config.name, []))
    if config.name == "style_encoder.yaml":  # trains S for an existing GAN
        gan = request.getfixturevalue("tiny_gan_ckpt")
        extra += ["--model.init_args.generator_ckpt", str(gan), "--data.image_size", "32"]
    if config.name == "stackgan_stage2.yaml":  # trains Stage-II on an existing Stage-I
        extra += ["--model.init_args.stage1_ckpt", str(request.getfixturevalue("tiny_stage1_ckpt"))]
    run = cli(["fit", "--config", str(config), *tiny_args(data_root, tmp_path),
               "--trainer.fast_dev_run", "1", *extra])  # fmt: skip
    assert run.trainer.state.finished and run.trainer.global_step > 0
    assert all(torch.isfinite(p).all() for p in run.model.parameters())


def test_links_fill_model_from_data(data_root, tmp_path):
    run = cli(["fit", "--config", str(ROOT / "experiments/quickstart.yaml"),
               *tiny_args(data_root, tmp_path), "--data.image_size", "64",
               "--trainer.fast_dev_run", "1"])  # fmt: skip
    assert run.model.hparams.image_size == 64 and run.model.hparams.text_dim == 256
    assert run.model.hparams.text_encoder["class_path"] == "t2igan.data.text.HashingEncoder"


def test_validate_test_predict_subcommands(data_root, tmp_path):
    args = [*tiny_args(data_root, tmp_path), "--model.init_args.ngf", "8", "--model.init_args.ndf",
            "8", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
            "--trainer.limit_predict_batches", "1", "--trainer.logger", "false"]  # fmt: skip
    config = ["--config", str(ROOT / "experiments/quickstart.yaml")]
    assert "val/d_real" in cli(["validate", *config, *args]).trainer.callback_metrics
    assert "test/caption_acc" in cli(["test", *config, *args]).trainer.callback_metrics
    run = cli(["predict", *config, *args, "--return_predictions", "true"])
    (pred,) = run.trainer.predict_loop.predictions
    assert pred["images"].shape == (8, 3, 32, 32) and len(pred["captions"]) == 8


def test_optimizer_flag_cannot_replace_the_two_gan_optimizers(data_root, tmp_path):
    with pytest.raises(SystemExit):
        cli(["fit", "--config", str(ROOT / "experiments/quickstart.yaml"),
             *tiny_args(data_root, tmp_path), "--optimizer", "torch.optim.SGD"])  # fmt: skip


def test_generate_writes_the_images_it_says(data_root, tmp_path, capsys):
    dm = tiny_datamodule(data_root)
    model = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=8, ndf=8,
                      text_encoder=dm.text_encoder_spec)  # fmt: skip
    trainer = fit_briefly(model, dm)
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    out = tmp_path / "out"
    generate_main(["--ckpt", str(ckpt), "--caption", "a bird with a red body and a blue head",
                   "--caption", "a yellow bird", "--num", "3", "--seed", "0", "--out", str(out)])  # fmt: skip
    singles = sorted(out.glob("c*_i*.png"))
    assert len(singles) == 6 and (out / "grid.png").exists()
    assert Image.open(singles[0]).size == (128, 128)  # 32 px upscaled 4x to a readable size
    assert "wrote 6 images" in capsys.readouterr().out
    # same seed, same pictures
    generate_main(["--ckpt", str(ckpt), "--caption", "a yellow bird", "--num", "3",
                   "--out", str(tmp_path / "again")])  # fmt: skip
    for i in range(3):
        a = Image.open(out / f"c01_i{i:02d}.png").tobytes()
        assert a == Image.open(tmp_path / "again" / f"c00_i{i:02d}.png").tobytes()


def test_demo_tests_the_checkpoint_it_just_trained(data_root, tmp_path, capsys):
    """A second ``make demo`` beside an earlier run's last.ckpt (here an unloadable one) moves
    that one aside, then tests and points to the new last.ckpt."""
    from t2igan.cli.demo import main

    stale = tmp_path / "runs" / "quickstart" / "checkpoints" / "last.ckpt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier run")
    main([*TINY_DATA, "--data.root", str(data_root), "--trainer.max_epochs", "1",
          "--model.init_args.ngf", "8", "--model.init_args.ndf", "8"])  # fmt: skip
    out = capsys.readouterr().out
    assert "held-out colour pairs: caption_acc" in out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("checkpoint: ")]
    assert line.endswith(str(Path("runs", "quickstart", "checkpoints", "last.ckpt")))
    (kept,) = stale.parent.glob("previous-*/last.ckpt")
    assert kept.read_bytes() == b"an earlier run"


def test_load_model_names_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt does not exist: pass a checkpoint"):
        load_model(tmp_path / "nope.ckpt")
    bad = {
        "plain.ckpt": ({"state_dict": {}}, "plain.ckpt is not a t2igan checkpoint"),
        "encoder.ckpt": ({"t2igan": {"class_path": "t2igan.data.HashingEncoder"}},
                         "HashingEncoder is not a TextToImageModel subclass"),
        "gone.ckpt": ({"t2igan": {"class_path": "t2igan.models.NoSuchGAN"}},
                      "'t2igan.models.NoSuchGAN' does not name an importable class"),
    }  # fmt: skip
    for name, (content, message) in bad.items():
        torch.save(content, tmp_path / name)
        with pytest.raises(ValueError, match=message):
            load_model(tmp_path / name)
    # Checkpoints load with weights_only=True: one that would run code when unpickled is refused.
    torch.save({"t2igan": {"class_path": "t2igan.models.GANINTCLS"}, "x": Path}, tmp_path / "c")
    with pytest.raises(ValueError, match="holds pickled Python objects") as err:
        load_model(tmp_path / "c")
    assert "weights_only" not in str(err.value)  # no advice to load it unsafely


def test_bf16_mixed_fit(data_root):
    dm = tiny_datamodule(data_root)
    model = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=8, ndf=8)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = L.Trainer(max_steps=4, precision="bf16-mixed", logger=False, limit_val_batches=0,
                        enable_checkpointing=False, enable_progress_bar=False)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert torch.isfinite(trainer.callback_metrics["train/g_loss"])


def test_ddp_two_processes_on_cpu(data_root, tmp_path):
    """A 2-process gloo DDP fit through the real CLI (the unused-parameter trap of GANs)."""
    config = tmp_path / "ddp.yaml"
    config.write_text(
        "model:\n  class_path: t2igan.models.GANINTCLS\n"
        "  init_args: {ngf: 8, ndf: 8}\n"
        f"trainer:\n  default_root_dir: {tmp_path}\n  enable_progress_bar: false\n"
        f"  logger: false\n"
        "  callbacks:\n  - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
        f"    init_args: {{dirpath: {tmp_path}/ckpt, save_last: true}}\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [T2IGAN, "fit", "--config", str(config), *tiny_args(data_root, tmp_path),
           "--data.image_size", "32", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
           "--trainer.strategy", "ddp_find_unused_parameters_true", "--trainer.max_steps", "6",
           "--trainer.limit_val_batches", "0"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 6  # 3 batches x (D + G) steps, in sync on both ranks
