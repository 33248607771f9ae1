"""The GAN base: it trains with what it is given, one optimiser pair per stage (callbacks see
them all), the EMA only in its stage, and what Lightning's step-based settings count under its
two-optimiser manual optimisation (documented in the README)."""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch

from t2igan.models import GANINTCLS, StackGAN
from t2igan.models.base import TextToImageGAN, TextToImageModel
from t2igan.models.gan_int_cls import Discriminator, Generator

from .conftest import tiny_datamodule


class _RecordsLate(TextToImageGAN):
    """A subclass that records its hyper-parameters only after building its networks."""

    def __init__(self, ema_decay: float | None = 0.9, lr: float = 1e-3) -> None:
        super().__init__(text_dim=64, image_size=32, z_dim=8, lr=lr, ema_decay=ema_decay)
        self.set_networks(Generator(8, 64, 8, 4, 32), Discriminator(64, 8, 4, 32))
        self.save_hyperparameters()


class _NeverRecords(TextToImageGAN):
    def __init__(self) -> None:
        super().__init__(text_dim=64, image_size=32, z_dim=8, lr=3e-3, beta1=0.1, ema_decay=0.5)
        self.set_networks(Generator(8, 64, 8, 4, 32), Discriminator(64, 8, 4, 32))


@pytest.mark.parametrize("cls", [_RecordsLate, _NeverRecords])
def test_base_keeps_ema_and_optimiser_settings_whatever_a_subclass_records(cls):
    model = cls()
    assert model.generator_ema is not None
    (opt_d, opt_g), _ = model.configure_optimizers()
    expected = (1e-3, (0.5, 0.999)) if cls is _RecordsLate else (3e-3, (0.1, 0.999))
    for opt in (opt_d, opt_g):
        assert (opt.param_groups[0]["lr"], opt.param_groups[0]["betas"]) == expected


class _SeesOptimisers(L.Callback):
    """What a callback sees through the module's public accessors, per batch."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen.append((int(pl_module.stage), len(pl_module.optimizers()),
                          len(pl_module.lr_schedulers())))  # fmt: skip


def test_one_run_stackgan_shows_callbacks_all_optimisers_and_updates_ema_only_in_stage2(
    data_root, tmp_path
):
    dm = tiny_datamodule(data_root, image_size=64, num_images=16)
    model = StackGAN(text_dim=dm.text_dim, image_size=64, z_dim=4, condition_dim=4, stage1_ngf=2,
                     stage1_ndf=2, ngf=4, ndf=2, num_residual=1, stage1_epochs=1,
                     ema_decay=0.9)  # fmt: skip
    ema0 = {k: v.clone() for k, v in model.generator_ema.module.state_dict().items()}
    sees = _SeesOptimisers()
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, accelerator="cpu", logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, limit_val_batches=0, callbacks=[sees])  # fmt: skip
    trainer.fit(model, datamodule=dm)
    # Stage-I: Stage-II's G is idle, so is its EMA (AveragedModel counts its updates too)
    assert int(model.generator_ema.n_averaged) == 0
    for k, v in model.generator_ema.module.state_dict().items():
        assert torch.equal(v, ema0[k]), k
    trainer.fit_loop.max_epochs = 2
    trainer.fit(model, datamodule=dm)
    assert int(model.stage) == 2 and int(model.generator_ema.n_averaged) == 2
    assert sees.seen == [(1, 4, 4)] * 2 + [(2, 4, 4)] * 2


def _fit_counting(data_root, tmp_path, **trainer_args):
    """A tiny GAN-INT-CLS fit; returns (batches trained, trainer)."""
    dm = tiny_datamodule(data_root)  # 64 images, batch 8: 8 batches per epoch
    model = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=4, ndf=4)
    batches = []
    model.on_train_batch_end = lambda *a, **k: batches.append(1)
    trainer = L.Trainer(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, default_root_dir=tmp_path,
                        **{"logger": False, "enable_checkpointing": False, **trainer_args})  # fmt: skip
    trainer.fit(model, datamodule=dm)
    return len(batches), trainer


def test_max_steps_and_every_n_train_steps_count_optimiser_steps_two_per_batch(data_root, tmp_path):
    """As the README says: with a D and a G step per batch, ``global_step`` (hence
    ``max_steps`` and ``ModelCheckpoint(every_n_train_steps)``) grows by 2 per batch."""
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=4,
                                               save_top_k=-1)  # fmt: skip
    batches, trainer = _fit_counting(data_root, tmp_path, max_steps=10, limit_val_batches=0,
                                     enable_checkpointing=True, callbacks=[ckpt])  # fmt: skip
    assert batches == 5 and trainer.global_step == 10
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == [
        "epoch=0-step=4.ckpt", "epoch=0-step=8.ckpt"]  # after batches 2 and 4  # fmt: skip


class _CountsValidations(L.Callback):
    count = 0

    def on_validation_end(self, trainer, pl_module) -> None:
        self.count += 1


def test_val_check_interval_and_log_every_n_steps_count_batches(data_root, tmp_path):
    """...while an integer ``val_check_interval`` and ``log_every_n_steps`` count batches."""
    validations = _CountsValidations()
    batches, trainer = _fit_counting(
        data_root, tmp_path, max_epochs=1, val_check_interval=4, limit_val_batches=1,
        log_every_n_steps=2, logger=L.pytorch.loggers.CSVLogger(tmp_path),
        callbacks=[validations],
    )  # fmt: skip
    assert batches == 8 and trainer.global_step == 16
    assert validations.count == 2  # after batches 4 and 8
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    steps = sorted({int(r["step"]) for r in rows if r.get("train/d_loss")})
    assert steps == [1, 3, 5, 7]  # every 2nd batch, on a batch axis (0-based step)


class _LinearModel(TextToImageModel):
    """The smallest non-GAN text-to-image model: images a linear map of text and noise, trained
    with automatic optimisation on an L2 loss (not a GAN: no discriminator, no manual steps)."""

    def __init__(self, text_dim: int = 64, image_size: int = 32, text_encoder=None) -> None:
        super().__init__(text_dim=text_dim, image_size=image_size, z_dim=4,
                         text_encoder=text_encoder)  # fmt: skip
        self.save_hyperparameters()
        self.net = torch.nn.Linear(text_dim + 4, 3 * image_size**2)

    def render(self, text_emb, noise):
        out = self.net(torch.cat([text_emb, noise], 1))
        return out.view(len(out), 3, self.image_size, self.image_size)

    def training_step(self, batch, batch_idx):
        fake = self.render(batch["text_emb"], self.sample_noise(len(batch["images"])))
        return (fake - batch["images"]).pow(2).mean()

    def evaluation_step(self, batch, stage):
        fake = self.sample(batch["text_emb"])
        self.log(f"{stage}/l2", (fake - batch["images"]).pow(2).mean(), batch_size=len(fake))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_model_that_is_not_a_gan_trains_tests_and_loads_through_the_shared_base(
    data_root, tmp_path
):
    """The split: checkpoint record (class, text encoder, RNG), evaluation steps, the sampling
    interface and its conditioning checks come from TextToImageModel, not from the GAN engine."""
    from t2igan.models.loading import load_model

    dm = tiny_datamodule(data_root, image_size=32, num_images=16, num_eval_images=8)
    model = _LinearModel(dm.text_dim, text_encoder=dm.text_encoder_spec)
    assert not isinstance(model, TextToImageGAN) and model.automatic_optimization
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    (scores,) = trainer.test(model, datamodule=dm, verbose=False)
    assert scores["test/l2"] > 0
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["t2igan"]["class_path"] == f"{__name__}._LinearModel"
    assert set(ckpt["t2igan"]["rng"]) == {"torch", "numpy", "python", "cuda"}
    loaded = load_model(path)
    assert loaded.hparams["text_encoder"] == dm.text_encoder_spec
    text, noise = torch.randn(2, dm.text_dim), torch.randn(2, 4)
    out = loaded.sample(text, noise)
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1
    assert torch.equal(out, model.sample(text, noise))
    with pytest.raises(ValueError, match="takes text only, not boxes"):
        loaded.sample(text, noise, boxes=torch.rand(2, 4))
