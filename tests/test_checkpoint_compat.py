"""Checkpoints written before issue 13 (the GAN base and StackGAN refactor, the style encoder
moved to its own file) still load, sample exactly as they did, and resume.

``tests/checkpoints/pre13_*.ckpt`` are tiny models trained for a few steps by the code of
commit 2d5bc6b; ``pre13_samples.pt`` holds what that code sampled from each for a fixed text and
noise. They record the old class paths (``t2igan.models.gan_int_cls.StyleEncoderGAN``, ...).
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from t2igan.models import StackGAN
from t2igan.models.loading import load_model

from .conftest import ROOT, tiny_datamodule

CHECKPOINTS = ROOT / "tests" / "checkpoints"
MODELS = ["gan_int_cls", "style_encoder", "stackgan_stage1", "stackgan_stage2", "stackgan"]


@pytest.mark.parametrize("name", MODELS)
def test_pre13_checkpoint_loads_and_samples_as_before(name):
    path = CHECKPOINTS / f"pre13_{name}.ckpt"
    recorded = torch.load(path, weights_only=True)["t2igan"]["class_path"]
    model = load_model(path)
    assert (
        f"{type(model).__module__}.{type(model).__name__}".rsplit(".", 1)[1]
        == (recorded.rsplit(".", 1)[1])
    )
    expected = torch.load(CHECKPOINTS / "pre13_samples.pt", weights_only=True)[name]
    images = model.sample(expected["text"], expected["noise"])
    assert torch.allclose(images, expected["images"], atol=1e-6)


def test_pre13_stackgan_checkpoint_resumes_in_stage2(data_root, tmp_path):
    """The one-run model's checkpoint (StepLR states, four optimisers) resumes: Stage-II goes
    on, Stage-I stays frozen, and the rates keep their place in each schedule."""
    dm = tiny_datamodule(data_root, image_size=64, num_images=16, num_eval_images=8)
    model = StackGAN(text_dim=64, image_size=64, z_dim=4, condition_dim=4, stage1_ngf=2,
                     stage1_ndf=2, ngf=4, ndf=2, num_residual=1, stage1_epochs=1,
                     ema_decay=0.9, text_encoder=dm.text_encoder_spec)  # fmt: skip
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0,
                        enable_checkpointing=False, default_root_dir=tmp_path)  # fmt: skip
    stage1_before = {k: v.clone() for k, v in model.stage1_generator.state_dict().items()}
    trainer.fit(model, datamodule=dm, ckpt_path=CHECKPOINTS / "pre13_stackgan.ckpt",
                weights_only=True)  # fmt: skip
    assert int(model.stage) == 2 and trainer.current_epoch == 3
    saved = torch.load(CHECKPOINTS / "pre13_stackgan.ckpt", weights_only=True)["state_dict"]
    for k, v in model.stage1_generator.state_dict().items():
        assert torch.equal(v, saved[f"stage1_generator.{k}"]), k
    assert not torch.equal(stage1_before["fc.0.weight"], saved["stage1_generator.fc.0.weight"])
    # each schedule counted the epochs of its own stage: Stage-II's 1 and 2, Stage-I's 0
    epochs = [c.scheduler.last_epoch for c in trainer.lr_scheduler_configs]  # D-II, G-II, D-I, G-I
    assert epochs == [2, 2, 1, 1]
    assert [o.param_groups[0]["lr"] for o in trainer.optimizers] == [2e-4] * 4  # every 100 / 50
