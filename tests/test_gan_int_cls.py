"""GAN-INT-CLS specifics: the authors' network sizes, the loss variants, the 1.5 B generator
step and the learning-rate schedule of the Lua code."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from t2igan.losses import d_loss_matching_aware
from t2igan.models import GANINTCLS
from t2igan.models.gan_int_cls import interpolate_text

from .conftest import tiny_datamodule


def bn(c):  # BatchNorm: weight and bias
    return 2 * c


def conv(i, o, k):  # bias-free (de)convolution
    return i * o * k * k


def residual(c):  # 1x1 c->c/4, 3x3 c/4->c/4, 3x3 c/4->c, each with BN
    m = c // 4
    return conv(c, m, 1) + bn(m) + conv(m, m, 3) + bn(m) + conv(m, c, 3) + bn(c)


def test_parameter_counts_match_the_authors_cub_network():
    """Counted by hand from architectures.md tables 1.3 and 1.4 (main_cls_int.lua, ngf 128,
    ndf 64, 1024-d text, nt 128, nz 100)."""
    g = (
        1024 * 128 + 128  # fcG Linear(1024 -> 128)
        + conv(228, 1024, 4) + bn(1024) + residual(1024)
        + conv(1024, 512, 4) + bn(512) + residual(512)
        + conv(512, 256, 4) + bn(256)
        + conv(256, 128, 4) + bn(128)
        + conv(128, 3, 4)
    )  # fmt: skip
    d = (
        conv(3, 64, 4)
        + conv(64, 128, 4) + bn(128)
        + conv(128, 256, 4) + bn(256)
        + conv(256, 512, 4) + bn(512) + residual(512)
        + 1024 * 128 + 128 + bn(128)  # fcD Linear + BatchNorm1d
        + conv(640, 512, 1) + bn(512)
        + conv(512, 1, 4)
    )  # fmt: skip
    model = GANINTCLS(text_dim=1024, image_size=64)
    assert sum(p.numel() for p in model.generator.parameters()) == g
    assert sum(p.numel() for p in model.discriminator.parameters()) == d
    assert (g, d) == (18_905_472, 4_030_080)


def test_d_loss_weights():
    real, wrong, fake = torch.tensor([2.0]), torch.tensor([-1.0]), torch.tensor([0.5])
    sp = torch.nn.functional.softplus
    expected = sp(-real) + 0.5 * sp(wrong) + 0.5 * sp(fake)
    assert torch.allclose(d_loss_matching_aware(real, wrong, fake, 0.5), expected)
    # cls_weight 0: plain GAN, the fake term gets weight 1 and wrong is ignored
    assert torch.allclose(d_loss_matching_aware(real, None, fake, 0.0), sp(-real) + sp(fake))


def test_interpolation_pairs_halves():
    t = torch.arange(8.0)[:, None]
    assert interpolate_text(t, 0.5).flatten().tolist() == [2.0, 3.0, 4.0, 5.0]
    assert interpolate_text(t, 1.0).flatten().tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "cls_weight,interp_weight", [(0.0, 0.0), (0.5, 0.0), (0.0, 1.0), (0.5, 1.0)]
)
def test_variants_by_flags(cls_weight, interp_weight, tiny_dm):
    """GAN, GAN-CLS, GAN-INT, GAN-INT-CLS: the wrong pair is used exactly when its flag is on;
    G's step always runs on B real + B/2 interpolated texts (main_cls_int.lua), whose weight is
    ``interp_weight`` (0 for GAN and GAN-CLS)."""
    model = GANINTCLS(text_dim=tiny_dm.text_dim, image_size=32, ngf=8, ndf=8,
                      cls_weight=cls_weight, interp_weight=interp_weight)  # fmt: skip
    batch = next(iter(tiny_dm.train_dataloader()))
    seen = []
    model.discriminator.register_forward_hook(lambda m, i, o: seen.append(len(o)))
    _, logs = model.discriminator_loss(batch)
    assert len(seen) == (3 if cls_weight else 2) and ("train/d_wrong" in logs) == bool(cls_weight)
    seen.clear()
    loss, _ = model.generator_loss(batch)
    assert seen == [12]  # B real + B/2 interpolated texts, in every variant


@pytest.mark.parametrize("interp_weight", [0.0, 1.0])
def test_generator_step_weights_the_interpolated_half_as_the_lua_code(interp_weight, tiny_dm):
    """nn.BCECriterion(weights) with sizeAverage: sum_i w_i l_i / (1.5 B), w = 1 on the B real
    texts and interp_weight on the B/2 interpolated ones; with interp_weight = 0 the B real
    terms weigh 2/3 of their plain mean."""
    model = GANINTCLS(text_dim=tiny_dm.text_dim, image_size=32, ngf=8, ndf=8,
                      interp_weight=interp_weight)  # fmt: skip
    batch = next(iter(tiny_dm.train_dataloader()))
    logits = []
    model.discriminator.register_forward_hook(lambda m, i, o: logits.append(o.detach()))
    loss, _ = model.generator_loss(batch)
    (out,) = logits
    per_sample = F.softplus(-out)  # BCE(sigmoid(logit), 1)
    b = len(batch["text_emb"])
    expected = (per_sample[:b].sum() + interp_weight * per_sample[b:].sum()) / (1.5 * b)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


class _LearningRates(L.Callback):
    """G's and D's learning rate in every training epoch (as the batches see it)."""

    def __init__(self) -> None:
        self.lrs: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.lrs.append(tuple(o.param_groups[0]["lr"] for o in trainer.optimizers))


def test_learning_rate_halves_at_the_start_of_every_kth_epoch_across_a_resume(data_root, tmp_path):
    """main_cls_int.lua: ``for epoch = 1, niter`` with ``if epoch % decay_every == 0`` halving
    before the epoch's batches. With decay_every 2 and 7 epochs (counted from 1), the rate is
    written out by hand below; the run stops after epoch 3 and resumes for the rest."""
    by_hand = [1, 1 / 2, 1 / 2, 1 / 4, 1 / 4, 1 / 8, 1 / 8]  # epochs 1..7
    dm = tiny_datamodule(data_root, num_images=16)

    def fit(epochs, ckpt_path=None):
        rates = _LearningRates()
        trainer = L.Trainer(
            max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
            enable_model_summary=False, limit_val_batches=0, limit_train_batches=1,
            default_root_dir=tmp_path, callbacks=[rates, L.pytorch.callbacks.ModelCheckpoint(
                dirpath=tmp_path, save_last=True)],
        )  # fmt: skip
        model = GANINTCLS(text_dim=dm.text_dim, image_size=32, ngf=4, ndf=4, lr=1.0,
                          lr_decay_every=2)  # fmt: skip
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        return rates.lrs

    first = fit(3)
    rest = fit(7, tmp_path / "last.ckpt")
    assert [d for d, g in first + rest] == by_hand
    assert [g for d, g in first + rest] == by_hand
    # 600 epochs of decay_every 100: the last runs at 1/64 (Lua), not 1/32
    model = GANINTCLS(text_dim=8, image_size=32, ngf=4, ndf=4, lr=1.0)
    (_, opt_g), (_, sched_g) = model.configure_optimizers()
    for _ in range(599):
        sched_g.step()
    assert opt_g.param_groups[0]["lr"] == 1 / 64


@pytest.mark.parametrize("beta,extrapolate", [(0.25, False), (0.5, True)])
def test_generator_loss_draws_the_configured_interpolations(beta, extrapolate, tiny_dm):
    """Through the model: the B/2 extra texts G receives lie on the line through each pair of
    captions (first half with second half), at ``interp_beta``; with ``interp_extrapolate``
    the effective beta spreads over [beta - 1, beta + 1] and leaves [0, 1]."""
    torch.manual_seed(0)
    model = GANINTCLS(text_dim=tiny_dm.text_dim, image_size=32, ngf=8, ndf=8,
                      interp_beta=beta, interp_extrapolate=extrapolate)  # fmt: skip
    batch = next(iter(tiny_dm.train_dataloader()))
    seen = []
    model.generator.register_forward_pre_hook(lambda m, args: seen.append(args[1]))
    model.generator_loss(batch)
    (text,) = seen
    real = batch["text_emb"]
    h = len(real) // 2
    t1, t2 = real[:h], real[h : 2 * h]
    assert torch.equal(text[: len(real)], real)
    interp = text[len(real) :]
    assert len(interp) == h
    diff = t1 - t2
    eff = ((interp - t2) * diff).sum(1) / diff.pow(2).sum(1)  # effective beta of each pair
    assert torch.allclose(interp, t2 + eff[:, None] * diff, atol=1e-5)  # on the line
    if not extrapolate:
        assert torch.allclose(eff, torch.full_like(eff, beta), atol=1e-5)
    else:
        assert (eff >= beta - 1 - 1e-5).all() and (eff <= beta + 1 + 1e-5).all()
        assert ((eff < 0) | (eff > 1)).any() and eff.std() > 0.1
