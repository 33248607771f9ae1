"""StackGAN specifics: the authors' network sizes, conditioning augmentation, the losses against
hand-computed values, the frozen Stage-I, both stages through the CLI, and resuming in the middle
of Stage-II."""

from __future__ import annotations

import inspect
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch import nn

from t2igan.callbacks import CaptionInterpolation, NoiseInterpolation, SampleGrid, StageSamples
from t2igan.callbacks import figures as figures_module
from t2igan.cli.fit import cli
from t2igan.cli.generate import generate_main
from t2igan.losses import kl_divergence, stackgan_d_loss, stackgan_g_loss
from t2igan.models import StackGAN, StackGANStage1, StackGANStage2
from t2igan.models.stackgan import read_stage1_checkpoint
from t2igan.models.stackgan_networks import ConditioningAugmentation, Stage2Discriminator

from .conftest import ROOT, TINY_DATA, tiny_datamodule

#: Tiny Stage-I: z 8, condition 8, 4 x 4 features of 8 * 4 = 32 channels.
TINY_STAGE1 = dict(z_dim=8, condition_dim=8, ngf=4, ndf=4)
TINY_STAGE2 = dict(condition_dim=8, ngf=8, ndf=4, num_residual=1)


# --------------------------------------------------------------------- parameter counts
def bn(c):  # BatchNorm: weight and bias
    return 2 * c


def conv(i, o, k):  # bias-free convolution
    return i * o * k * k


def test_parameter_counts_match_the_authors_networks():
    """Counted by hand from architectures.md tables 3.2-3.4 (StackGAN-Pytorch model.py with the
    birds/flowers values GF_DIM 128, DF_DIM 64, CONDITION_DIM 128, Z_DIM 100, R_NUM 4 and
    1024-d text). Only the last 4 x 4 stride-4 logit convolutions have a bias."""
    ca = 1024 * 256 + 256  # Linear(1024 -> 2 * 128)
    up = lambda i, o: conv(i, o, 3) + bn(o)  # noqa: E731
    cond_head = conv(512 + 128, 512, 3) + bn(512) + 512 * 16 + 1
    g1 = (
        ca + 228 * 1024 * 16 + bn(1024 * 16)  # Linear(z + c -> 1024 * 4 * 4, no bias) + BN1d
        + up(1024, 512) + up(512, 256) + up(256, 128) + up(128, 64)
        + conv(64, 3, 3)
    )  # fmt: skip
    d1 = (
        conv(3, 64, 4) + conv(64, 128, 4) + bn(128) + conv(128, 256, 4) + bn(256)
        + conv(256, 512, 4) + bn(512)
        + cond_head
    )  # fmt: skip
    g2 = (
        ca + conv(3, 128, 3) + conv(128, 256, 4) + bn(256) + conv(256, 512, 4) + bn(512)
        + conv(512 + 128, 512, 3) + bn(512)  # hr_joint
        + 4 * 2 * (conv(512, 512, 3) + bn(512))  # 4 residual blocks
        + up(512, 256) + up(256, 128) + up(128, 64) + up(64, 32)
        + conv(32, 3, 3)
    )  # fmt: skip
    d2 = (
        conv(3, 64, 4) + conv(64, 128, 4) + bn(128) + conv(128, 256, 4) + bn(256)
        + conv(256, 512, 4) + bn(512) + conv(512, 1024, 4) + bn(1024)
        + conv(1024, 2048, 4) + bn(2048)
        + conv(2048, 1024, 3) + bn(1024) + conv(1024, 512, 3) + bn(512)
        + cond_head + 512 * 16 + 1  # conditional and unconditional heads
    )  # fmt: skip
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        stage1 = StackGANStage1(text_dim=1024, image_size=64)
        args = dict(z_dim=100, text_dim=1024, condition_dim=128, ngf=128, image_size=64,
                    ca_activation="relu")  # fmt: skip
        stage2 = StackGANStage2(text_dim=1024, image_size=256, stage1=args)
    assert (count(stage1.generator), count(stage1.discriminator)) == (g1, d1)
    assert (count(stage2.generator), count(stage2.discriminator)) == (g2, d2)
    assert (g1, d1, g2, d2) == (10_301_248, 5_715_713, 26_290_080, 71_269_122)
    # the frozen Stage-I is not Stage-II's G and is never trained
    assert count(stage2.stage1_generator) == g1
    assert not any(p.requires_grad for p in stage2.stage1_generator.parameters())


# ------------------------------------------------------------ conditioning augmentation
def test_conditioning_augmentation_statistics():
    torch.manual_seed(0)
    ca = ConditioningAugmentation(text_dim=32, condition_dim=4, activation="leaky_relu")
    text = torch.randn(1, 32).expand(20000, -1)  # one text, many draws of eps
    with torch.no_grad():
        c, mu, logvar = ca(text)
    assert c.shape == mu.shape == logvar.shape == (20000, 4)
    assert torch.allclose(c.mean(0), mu[0], atol=0.05 * logvar[0].exp().sqrt().max())
    assert torch.allclose(c.std(0), (0.5 * logvar[0]).exp(), rtol=0.03)
    # a given eps makes c a deterministic function: mu + eps * sigma
    eps = torch.randn(3, 4)
    c1, mu1, logvar1 = ca(text[:3], eps)
    assert torch.allclose(c1, mu1 + eps * (0.5 * logvar1).exp())
    # the authors' PyTorch CA (ReLU) has mu >= 0 and sigma >= 1
    _, mu, logvar = ConditioningAugmentation(32, 4, "relu")(torch.randn(64, 32))
    assert (mu >= 0).all() and (logvar >= 0).all()
    with pytest.raises(ValueError, match="unknown CA activation"):
        ConditioningAugmentation(32, 4, "gelu")


def test_kl_divergence_is_the_mean_gaussian_kl_and_nonnegative():
    torch.manual_seed(0)
    mu, logvar = torch.randn(16, 8) * 2, torch.randn(16, 8) * 2
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).mean()  # mean over batch and dims
    assert torch.allclose(kl_divergence(mu, logvar), expected, atol=1e-5)
    assert kl_divergence(mu, logvar) >= 0
    assert kl_divergence(torch.zeros(4, 8), torch.zeros(4, 8)) == 0
    for _ in range(20):
        assert kl_divergence(torch.randn(4, 8) * 3, torch.randn(4, 8) * 3) >= 0


# ------------------------------------------------------------------ losses by hand
# architectures.md 3.5 (StackGAN-Pytorch utils.py): with BCE on probabilities p = sigmoid(logit),
#   Stage-I  errD = real + (wrong + fake) / 2
#   Stage-II errD = (real_c + real_u) / 2 + (fake_c + wrong_c + fake_u) / 3   (no wrong_u)
#   errG = BCE(D_c(fake), 1) [+ BCE(D_u(fake), 1)] + 2.0 KL,
#   KL = mean over batch and dims of -(1 + logvar - mu^2 - exp(logvar)) / 2   (3.2)
# A stand-in D outputs chosen probabilities, so each BCE term is -log p or -log(1 - p). They are
# all different, so that a wrong weight, a missing or extra term, or a swapped label changes
# the loss.
P_COND = {"real": 0.8, "wrong": 0.3, "fake": 0.4}  # BCE: -log .8 (r), -log .7 (w), -log .6 (f)
P_UNCOND = {"real": 0.9, "wrong": 0.99, "fake": 0.25}  # -log .9 (r_u), -log .75 (f_u)
LOG = math.log
D1_BY_HAND = -LOG(0.8) + (-LOG(0.7) - LOG(0.6)) / 2
D2_BY_HAND = (-LOG(0.8) - LOG(0.9)) / 2 + (-LOG(0.6) - LOG(0.7) - LOG(0.75)) / 3
G1_ADVERSARIAL, G2_ADVERSARIAL = -LOG(0.4), -LOG(0.4) - LOG(0.25)
# KL elements: (mu 1, logvar 0) 1/2; (0, log 2) (1 - log 2)/2; (0, -log 2) (log 2 - 1/2)/2; (0, 0)
# 0: they sum to 3/4, so the mean over the 2 x 2 entries is 3/16.
MU = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
LOGVAR = torch.tensor([[0.0, LOG(2)], [-LOG(2), 0.0]])
KL_BY_HAND = 3 / 16


class FixedD(nn.Module):
    """A stand-in discriminator that recognises the real and the wrong images it is given and
    answers the probabilities of ``P_COND`` (and of ``P_UNCOND`` with an unconditional head) as
    logits; any other input is a fake. It records what it was called with."""

    def __init__(self, real: torch.Tensor, wrong: torch.Tensor, unconditional: bool) -> None:
        super().__init__()
        self.real, self.wrong, self.unconditional = real, wrong, unconditional
        self.calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []

    def forward(self, images: torch.Tensor, condition: torch.Tensor):
        kind = ("real" if torch.equal(images, self.real)
                else "wrong" if torch.equal(images, self.wrong) else "fake")  # fmt: skip
        self.calls.append((kind, images, condition))
        logits = {k: torch.full((len(images),), LOG(p / (1 - p))) for k, p in P_COND.items()}
        uncond = {k: torch.full((len(images),), LOG(p / (1 - p))) for k, p in P_UNCOND.items()}
        return logits[kind], uncond[kind] if self.unconditional else None


@pytest.mark.parametrize("unconditional", [False, True], ids=["stage1", "stage2"])
def test_d_loss_is_the_authors_weighting(unconditional):
    real, wrong, fake = torch.randn(3, 4, 3, 8, 8)  # three batches of four images
    condition = torch.randn(4, 8)
    d = FixedD(real, wrong, unconditional)
    loss, logs = stackgan_d_loss(d, real, wrong, fake, condition)
    assert loss.item() == pytest.approx(D2_BY_HAND if unconditional else D1_BY_HAND, rel=1e-6)
    assert [kind for kind, _, _ in d.calls] == ["real", "wrong", "fake"]  # three separate passes
    assert all(c is condition for _, _, c in d.calls)
    assert {k: v.item() for k, v in logs.items()} == pytest.approx(
        {"train/d_real": 0.8, "train/d_wrong": 0.3, "train/d_fake": 0.4}
    )


def test_kl_by_hand():
    assert kl_divergence(MU, LOGVAR).item() == pytest.approx(KL_BY_HAND, rel=1e-6)


@pytest.mark.parametrize("unconditional", [False, True], ids=["stage1", "stage2"])
def test_g_loss_adds_the_weighted_kl_and_sees_mu_detached(unconditional):
    fake = torch.randn(2, 3, 8, 8)
    mu, logvar = MU.clone().requires_grad_(), LOGVAR.clone().requires_grad_()
    d = FixedD(torch.zeros(0), torch.zeros(0), unconditional)
    loss, logs = stackgan_g_loss(d, fake, mu, logvar, kl_weight=2.0)
    adversarial = G2_ADVERSARIAL if unconditional else G1_ADVERSARIAL
    assert loss.item() == pytest.approx(adversarial + 2.0 * KL_BY_HAND, rel=1e-6)
    assert logs["train/kl"].item() == pytest.approx(KL_BY_HAND, rel=1e-6)
    ((_, _, condition),) = d.calls
    assert torch.equal(condition, MU) and not condition.requires_grad  # D sees mu.detach()
    # only the KL reaches the CA statistics: d(2 KL)/d mu = 2 mu / 4, d/d logvar = (e^lv - 1) / 4
    loss.backward()
    assert torch.allclose(mu.grad, MU / 2)
    assert torch.allclose(logvar.grad, (LOGVAR.exp() - 1) / 4)


def test_kl_weight_defaults_to_the_authors_coefficient():
    for cls in (StackGANStage1, StackGANStage2, StackGAN):
        assert inspect.signature(cls).parameters["kl_weight"].default == 2.0, cls.__name__


def _stackgan_case(case: str):
    """``(model, trained G, name of trained D, data side, side D sees)`` for each phase of each
    class, on 32-d text, with KL weight 3 (so the loss must read it from the model)."""
    stage1 = dict(z_dim=8, text_dim=32, condition_dim=8, ngf=4, image_size=16,
                  ca_activation="relu")  # fmt: skip
    if case == "stage1":
        model = StackGANStage1(text_dim=32, image_size=16, kl_weight=3.0, **TINY_STAGE1)
        return model, model.generator, "discriminator", 16, 16
    if case == "stage2":
        model = StackGANStage2(text_dim=32, image_size=64, kl_weight=3.0, stage1=stage1,
                               **TINY_STAGE2)  # fmt: skip
        return model, model.generator, "discriminator", 64, 64
    model = StackGAN(text_dim=32, image_size=64, z_dim=8, condition_dim=8, stage1_ngf=4,
                     stage1_ndf=4, ngf=8, ndf=4, num_residual=1, kl_weight=3.0)  # fmt: skip
    if case == "one_run_stage1":
        return model, model.stage1_generator, "stage1_discriminator", 64, 16
    model.start_stage2()
    return model, model.generator, "discriminator", 64, 64


@pytest.mark.parametrize("case", ["stage1", "stage2", "one_run_stage1", "one_run_stage2"])
def test_models_feed_the_losses_their_batch(case):
    """Each model's D and G losses on a batch are the hand values: D sees the batch's real and
    wrong images (area-downsampled in the one-run model's Stage-I), the fakes detached and the
    trained G's CA mean; G's loss adds ``kl_weight`` times the KL of that G's CA."""
    torch.manual_seed(0)
    model, generator, d_name, data_side, side = _stackgan_case(case)
    unconditional = isinstance(getattr(model, d_name), Stage2Discriminator)  # Stage-II's D
    batch = {"text_emb": torch.randn(4, 32),
             "images": torch.rand(4, 3, data_side, data_side) * 2 - 1,
             "wrong_images": torch.rand(4, 3, data_side, data_side) * 2 - 1}  # fmt: skip
    seen = {k: F.interpolate(batch[k], size=side, mode="area") for k in ("images", "wrong_images")}
    d = FixedD(seen["images"], seen["wrong_images"], unconditional)
    old = getattr(model, d_name)
    setattr(model, d_name, d)
    model.stages = tuple(s._replace(discriminator=d) if s.discriminator is old else s
                         for s in model.stages)  # fmt: skip
    mu, logvar = generator.ca.encode(batch["text_emb"])

    d_loss, _ = model.discriminator_loss(batch)
    assert d_loss.item() == pytest.approx(D2_BY_HAND if unconditional else D1_BY_HAND, rel=1e-6)
    assert [kind for kind, _, _ in d.calls] == ["real", "wrong", "fake"]
    _, fake, _ = d.calls[2]
    assert fake.shape == (4, 3, side, side) and not fake.requires_grad
    assert all(torch.equal(c, mu) and not c.requires_grad for _, _, c in d.calls)

    d.calls.clear()
    g_loss, _ = model.generator_loss(batch)
    adversarial = G2_ADVERSARIAL if unconditional else G1_ADVERSARIAL
    expected = adversarial + 3.0 * kl_divergence(mu, logvar).item()
    assert g_loss.item() == pytest.approx(expected, rel=1e-6)
    ((kind, fake, _),) = d.calls
    assert kind == "fake" and fake.requires_grad  # G's loss reaches G through its images


# ------------------------------------------------------------------- stage-by-stage
def _trainer(root, **kwargs) -> L.Trainer:
    args = dict(accelerator="cpu", logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                limit_val_batches=0, default_root_dir=root)  # fmt: skip
    return L.Trainer(**{**args, **kwargs})


@pytest.fixture(scope="module")
def stage1_ckpt(data_root, tmp_path_factory):
    """A tiny Stage-I (16 x 16) trained for a few steps, saved as a checkpoint."""
    root = tmp_path_factory.mktemp("stage1")
    dm = tiny_datamodule(data_root, image_size=16)
    L.seed_everything(0)
    model = StackGANStage1(text_dim=dm.text_dim, image_size=16,
                           text_encoder=dm.text_encoder_spec, **TINY_STAGE1)  # fmt: skip
    trainer = _trainer(root, max_steps=2 * 2)  # two optimiser steps per batch
    trainer.fit(model, datamodule=dm)
    path = root / "stage1.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_stage2_never_changes_the_frozen_stage1(stage1_ckpt, data_root, tmp_path):
    dm = tiny_datamodule(data_root, image_size=64)
    model = StackGANStage2(str(stage1_ckpt), dm.text_dim, 64, text_encoder=dm.text_encoder_spec,
                           **TINY_STAGE2)  # fmt: skip
    _, weights, _ = read_stage1_checkpoint(stage1_ckpt)
    assert weights.keys() == model.stage1_generator.state_dict().keys()
    modes = []
    model.stage1_generator.register_forward_hook(lambda m, i, o: modes.append(m.training))
    g0 = {k: v.clone() for k, v in model.generator.state_dict().items()}
    trainer = _trainer(tmp_path, max_steps=2 * 1)
    trainer.fit(model, datamodule=dm)
    # weights *and* BatchNorm running statistics are the checkpoint's, bit for bit
    for k, v in model.stage1_generator.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert not any(p.requires_grad for p in model.stage1_generator.parameters())
    optimised = {id(p) for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]}
    assert not optimised & {id(p) for p in model.stage1_generator.parameters()}
    assert modes and not any(modes)  # always run in eval mode, training steps included
    assert any(not torch.equal(v, g0[k]) for k, v in model.generator.state_dict().items())


def test_stage2_trains_in_bf16_mixed(stage1_ckpt, data_root, tmp_path):
    dm = tiny_datamodule(data_root, image_size=64)
    model = StackGANStage2(str(stage1_ckpt), dm.text_dim, 64, **TINY_STAGE2)
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    trainer = _trainer(tmp_path, max_steps=2, precision="bf16-mixed")
    trainer.fit(model, datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["train/g_loss"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(g0, model.generator.parameters()))


def test_stage2_samples_refine_the_stage1_it_was_given(stage1_ckpt, data_root):
    dm = tiny_datamodule(data_root, image_size=64)
    model = StackGANStage2(str(stage1_ckpt), dm.text_dim, 64, **TINY_STAGE2)
    stage1 = StackGANStage1.load_from_checkpoint(stage1_ckpt, weights_only=True)
    text = torch.from_numpy(dm.text_encoder.encode(["a red bird", "a blue bird with a red head"]))
    noise = model.sample_noise(2, generator=torch.Generator().manual_seed(0))
    assert noise.shape == (2, 8 + 8 + 8)  # [z, eps_1, eps_2]
    low, high = model.sample_stages(text, noise)
    assert low.shape == (2, 3, 16, 16) and high.shape == (2, 3, 64, 64)
    assert torch.equal(low, stage1.sample(text, noise[:, : stage1.z_dim]))
    assert torch.equal(high, model.sample(text, noise))
    # Stage-II's own randomness (its CA draw) changes the refinement, not the Stage-I image
    other = noise.clone()
    other[:, -8:] += 1
    low2, high2 = model.sample_stages(text, other)
    assert torch.equal(low, low2) and not torch.equal(high, high2)


def test_stage2_rejects_a_mismatched_stage1(stage1_ckpt, tmp_path):
    with pytest.raises(ValueError, match="needs the trained Stage-I"):
        StackGANStage2(text_dim=64)
    with pytest.raises(FileNotFoundError, match="train Stage-I first"):
        StackGANStage2(str(tmp_path / "missing.ckpt"), text_dim=64)
    torch.save({"t2igan": {"class_path": "t2igan.models.GANINTCLS"}}, tmp_path / "gan.ckpt")
    with pytest.raises(ValueError, match="is a t2igan.models.GANINTCLS checkpoint; Stage-II"):
        StackGANStage2(str(tmp_path / "gan.ckpt"), text_dim=64)
    with pytest.raises(ValueError, match="image_size must be 64"):
        StackGANStage2(str(stage1_ckpt), text_dim=64, image_size=256)
    with pytest.raises(ValueError, match="text_dim 32 differs"):
        StackGANStage2(str(stage1_ckpt), text_dim=32, image_size=64)


def test_stage_samples_and_the_common_figures_work_on_stage2(
    stage1_ckpt, data_root, tmp_path, monkeypatch
):
    """StageSamples pairs Stage-I and Stage-II for the same caption and noise, and says so in
    the logged caption; the figures of the other papers, written against ``sample``/``z_dim``
    only, draw Stage-II images."""
    logged = {}
    real_save = figures_module.save_and_log

    def save_and_log(trainer, key, image, caption, name):
        logged[key] = caption
        return real_save(trainer, key, image, caption, name)

    monkeypatch.setattr(figures_module, "save_and_log", save_and_log)
    dm = tiny_datamodule(data_root, image_size=64)
    model = StackGANStage2(str(stage1_ckpt), dm.text_dim, 64, **TINY_STAGE2)
    grid = StageSamples(num_captions=2, num_samples=3)
    figures = [SampleGrid(num_captions=2, num_samples=2),
               CaptionInterpolation(num_pairs=1, num_steps=3),
               NoiseInterpolation(num_captions=2, num_steps=3)]  # fmt: skip
    _trainer(tmp_path, max_steps=2, callbacks=[grid, *figures]).fit(model, datamodule=dm)
    pairs, nrow, labels = grid.draw(model)  # (rows * cols * 2, 3, 64, 64): Stage-I, Stage-II, ...
    assert pairs.shape == (2 * 3 * 2, 3, 64, 64) and nrow == 6 and labels == grid.fixed["captions"]
    text = grid.fixed["text_emb"].repeat_interleave(3, 0)
    low, high = model.sample_stages(text, grid.fixed["noise"].repeat(2, 1))
    assert torch.equal(pairs[1::2], high)
    assert torch.equal(pairs[0::2], low.repeat_interleave(4, 2).repeat_interleave(4, 3))
    rows = "rows 1-1: val; rows 2-2: test"
    assert logged["stages"] == f"Stage-I | Stage-II pairs; {rows}: " + " | ".join(labels)
    assert logged["samples"] == f"{rows}: " + " | ".join(figures[0].fixed["captions"])
    image = Image.open(tmp_path / "stages" / "epoch_0000.png")
    assert image.height == 2 * (64 + 2) + 2 and image.width > 6 * (64 + 2)
    for key, rows in (("samples", 2), ("caption_interpolation", 1), ("noise_interpolation", 2)):
        assert Image.open(tmp_path / key / "epoch_0000.png").height == rows * (64 + 2) + 2, key


# --------------------------------------------------------------- both stages, one run
def _tiny_stackgan(dm, **kwargs) -> StackGAN:
    L.seed_everything(0)
    return StackGAN(text_dim=dm.text_dim, image_size=dm.image_size, z_dim=8, condition_dim=8,
                    stage1_ngf=4, stage1_ndf=4, ngf=8, ndf=4, num_residual=1,
                    text_encoder=dm.text_encoder_spec, **kwargs)  # fmt: skip


def test_one_run_trains_stage1_then_resumes_exactly_in_stage2(data_root, tmp_path):
    """Three epochs in one go (one of Stage-I, two of Stage-II) == resuming from the checkpoint
    after the first Stage-II epoch; Stage-II leaves Stage-I as it ended."""
    dm = tiny_datamodule(data_root, image_size=64)

    def trainer(epochs):
        ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_top_k=-1)
        return _trainer(tmp_path, max_epochs=epochs, limit_train_batches=1, callbacks=[ckpt],
                        enable_checkpointing=True)  # fmt: skip

    kwargs = dict(stage1_epochs=1, lr_decay_every=1, stage1_lr_decay_every=1)
    straight = _tiny_stackgan(dm, **kwargs)
    L.seed_everything(0)
    trainer(3).fit(straight, datamodule=dm)
    assert int(straight.stage) == 2
    # Stage-I's rate halved once in its one epoch, Stage-II's twice in its two
    lrs = [o.param_groups[0]["lr"] for o in straight.trainer.optimizers]  # D-II, G-II, D-I, G-I
    assert lrs == pytest.approx([5e-5, 5e-5, 1e-4, 1e-4])
    assert not any(p.requires_grad for p in straight.stage1_generator.parameters())
    end_of_stage1 = torch.load(tmp_path / "epoch=0-step=2.ckpt", weights_only=True)
    assert int(end_of_stage1["state_dict"]["stage"]) == 1
    for k, v in straight.stage1_generator.state_dict().items():
        assert torch.equal(v, end_of_stage1["state_dict"][f"stage1_generator.{k}"]), k

    resumed = _tiny_stackgan(dm, **kwargs)
    L.seed_everything(0)  # what the CLI does at start; the checkpoint's RNG states win
    t2 = trainer(3)
    t2.fit(resumed, datamodule=dm, ckpt_path=tmp_path / "epoch=1-step=4.ckpt", weights_only=True)
    assert t2.current_epoch == 3 and int(resumed.stage) == 2
    assert not any(p.requires_grad for p in resumed.stage1_generator.parameters())
    after, expected = resumed.state_dict(), straight.state_dict()
    assert after.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(value, after[name]), name


def _tiny_config(config: str, run_dir, every_n_epochs: int = 1) -> str:
    """The experiment config with its run folder moved to ``run_dir`` and grids every epoch."""
    cfg = yaml.safe_load((ROOT / "experiments" / config).read_text())
    cfg["trainer"]["default_root_dir"] = str(run_dir)
    cfg["trainer"]["logger"] = False
    for cb in cfg["trainer"]["callbacks"]:
        if cb["class_path"].endswith("RunCheckpoint"):  # last.ckpt every epoch already
            continue
        cb["init_args"]["every_n_epochs"] = every_n_epochs
        if cb["class_path"].endswith(("SampleGrid", "StageSamples")):
            cb["init_args"].update(num_captions=2, num_samples=2)
    path = run_dir / config
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _tiny_args(data_root, val_batches: int = 0) -> list[str]:
    return [*TINY_DATA, "--data.root", str(data_root), "--trainer.limit_train_batches", "1",
            "--trainer.limit_val_batches", str(val_batches),
            "--trainer.enable_progress_bar", "false"]  # fmt: skip


def test_stackgan_yaml_trains_both_stages_and_generates_256(data_root, tmp_path, capsys):
    run = tmp_path / "run"
    config = _tiny_config("stackgan.yaml", run, every_n_epochs=2)  # grids after epoch 2
    tiny = ["--model.init_args.stage1_epochs", "1", "--trainer.max_epochs", "2",
            "--model.init_args.z_dim", "8", "--model.init_args.condition_dim", "8",
            "--model.init_args.stage1_ngf", "4", "--model.init_args.stage1_ndf", "4",
            "--model.init_args.ngf", "8", "--model.init_args.ndf", "4",
            "--model.init_args.num_residual", "1"]  # fmt: skip
    out = cli(["fit", "--config", config, *_tiny_args(data_root, val_batches=1), *tiny])
    assert out.trainer.current_epoch == 2 and int(out.model.stage) == 2
    assert (run / "samples" / "epoch_0001.png").exists()
    assert (run / "stages" / "epoch_0001.png").exists()
    ckpt = run / "checkpoints" / "last.ckpt"
    images = tmp_path / "images"
    generate_main(["--ckpt", str(ckpt), "--caption", "a small red bird with a blue head",
                   "--num", "2", "--out", str(images)])  # fmt: skip
    width, height = Image.open(images / "c00_i00.png").size
    assert (width, height) == (256, 256)
    assert "wrote 2 images" in capsys.readouterr().out


def test_stage_configs_train_stage1_then_stage2_from_its_checkpoint(data_root, tmp_path):
    run1, run2 = tmp_path / "stage1", tmp_path / "stage2"
    s1 = cli(["fit", "--config", _tiny_config("stackgan_stage1.yaml", run1),
              *_tiny_args(data_root), "--data.image_size", "16", "--data.load_size", "19",
              "--trainer.max_epochs", "1", "--model.init_args.z_dim", "8",
              "--model.init_args.condition_dim", "8", "--model.init_args.ngf", "4",
              "--model.init_args.ndf", "4"])  # fmt: skip
    ckpt1 = run1 / "checkpoints" / "last.ckpt"
    assert s1.trainer.current_epoch == 1 and ckpt1.exists()
    s2 = cli(["fit", "--config", _tiny_config("stackgan_stage2.yaml", run2),
              *_tiny_args(data_root), "--data.image_size", "64", "--data.load_size", "76",
              "--trainer.max_epochs", "1", "--model.init_args.stage1_ckpt", str(ckpt1),
              "--model.init_args.condition_dim", "8", "--model.init_args.ngf", "8",
              "--model.init_args.ndf", "4", "--model.init_args.num_residual", "1"])  # fmt: skip
    assert s2.trainer.current_epoch == 1
    assert s2.model.hparams.stage1["image_size"] == 16
    stage1 = s1.model.generator.state_dict()
    for k, v in s2.model.stage1_generator.state_dict().items():
        assert torch.equal(v, stage1[k]), k
    assert (run2 / "stages" / "epoch_0000.png").exists()
