"""A NaN stops the run: a non-finite loss ends training with a clear error before the
optimiser applies it, the checkpoint on disk stays finite, and no score is reported for
non-finite images."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from t2igan.callbacks import CaptionConsistency, RunCheckpoint
from t2igan.metrics import CaptionAccuracy, read_birds
from t2igan.models import GANINTCLS
from t2igan.models.base import NonFiniteLossError

from .conftest import fit_briefly, tiny_datamodule


class NaNLossAt(L.Callback):
    """Makes the discriminator's loss NaN from batch ``batch`` of epoch ``epoch`` on (as a
    diverged run's would be)."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.at = (epoch, batch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) >= self.at:
            batch["images"].fill_(float("nan"))


def test_a_nan_loss_stops_training_and_keeps_the_finite_checkpoint(data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    model = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=8, ndf=8)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_progress_bar=False,
                        limit_val_batches=0, default_root_dir=tmp_path,
                        callbacks=[RunCheckpoint(), NaNLossAt(1, 2)])  # fmt: skip
    message = (r"^train/d_loss is nan at epoch 1, batch 2 \(global step 20\): training stopped; "
               r"the last checkpoint, .*last.ckpt, is finite")  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=message):
        trainer.fit(model, datamodule=dm)
    # the NaN step was never applied: every weight in memory and on disk is finite
    assert all(torch.isfinite(p).all() for p in model.parameters())
    ckpt = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0
    assert all(
        torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point()
    )


def test_a_diverging_learning_rate_stops_the_run(data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    model = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=8, ndf=8, lr=1e30)
    trainer = L.Trainer(max_epochs=50, logger=False, enable_progress_bar=False,
                        limit_val_batches=0, default_root_dir=tmp_path,
                        callbacks=[RunCheckpoint()])  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"^train/[dg]_loss is (nan|inf)"):
        trainer.fit(model, datamodule=dm)
    assert trainer.current_epoch < 49


def test_caption_accuracy_is_nan_for_non_finite_images(data_root):
    dm = tiny_datamodule(data_root)
    batch = next(iter(dm.val_dataloader()))
    images = batch["images"]
    metric = CaptionAccuracy()
    metric.update(read_birds(images), batch["attributes"], batch["attributes_named"], images)
    assert float(metric.compute()["caption_acc"]) > 0.9  # real birds read back
    images = images.clone()
    images[3, :, 0, 0] = float("nan")
    metric.update(read_birds(images), batch["attributes"], batch["attributes_named"], images)
    scores = metric.compute()
    assert scores and all(torch.isnan(v) for v in scores.values())


def test_caption_consistency_logs_nan_for_a_nan_generator(data_root):
    dm = tiny_datamodule(data_root)
    model = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=8, ndf=8)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.fill_(float("nan"))
    trainer = L.Trainer(logger=False, enable_progress_bar=False, limit_val_batches=2,
                        callbacks=[CaptionConsistency()])  # fmt: skip
    (scores,) = trainer.validate(model, datamodule=dm)
    assert torch.isnan(torch.tensor(scores["val/caption_acc"]))


def test_a_checkpoint_with_non_finite_weights_is_refused(data_root, tmp_path):
    """What a diverged run saved before this guard existed: `generate` refuses it, rather than
    writing black images."""
    from t2igan.models.loading import load_model

    dm = tiny_datamodule(data_root)
    model = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=8, ndf=8,
                      text_encoder=dm.text_encoder_spec)  # fmt: skip
    trainer = fit_briefly(model, dm, 1)
    with torch.no_grad():
        next(model.generator.parameters()).fill_(float("nan"))
    trainer.save_checkpoint(tmp_path / "diverged.ckpt")
    with pytest.raises(ValueError, match=r"diverged.ckpt holds 1 non-finite weights \(e\.g\. "
                       r"generator\.[\w.]+\): its run diverged"):  # fmt: skip
        load_model(tmp_path / "diverged.ckpt")
