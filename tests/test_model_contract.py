"""The contract every paper model honours, run over each model class.

Add a model by adding a factory to ``MODELS``: ``name -> factory(datamodule) -> model``.
"""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from t2igan.models import (
    DRAW,
    GANINTCLS,
    AlignDRAW,
    GAWWNBox,
    GAWWNKeypoints,
    StackGAN,
    StackGANStage1,
    StackGANStage2,
)
from t2igan.models.loading import load_model

from .conftest import tiny_datamodule

MODELS = {
    "gan_int_cls": lambda dm: GANINTCLS(
        text_dim=dm.text_dim, image_size=dm.image_size, ngf=8, ndf=8,
        text_encoder=dm.text_encoder_spec,
    ),
    "gan_int_cls_ema": lambda dm: GANINTCLS(
        text_dim=dm.text_dim, image_size=dm.image_size, ngf=8, ndf=8, ema_decay=0.9,
        text_encoder=dm.text_encoder_spec,
    ),
    "stackgan_stage1": lambda dm: StackGANStage1(
        text_dim=dm.text_dim, image_size=dm.image_size, z_dim=16, condition_dim=8, ngf=4, ndf=8,
        text_encoder=dm.text_encoder_spec,
    ),
    # Stage-II on an untrained Stage-I built from its arguments (no checkpoint needed here).
    "stackgan_stage2": lambda dm: StackGANStage2(
        text_dim=dm.text_dim, image_size=dm.image_size, condition_dim=8, ngf=8, ndf=4,
        num_residual=1, text_encoder=dm.text_encoder_spec,
        stage1=dict(z_dim=16, text_dim=dm.text_dim, condition_dim=8, ngf=4,
                    image_size=dm.image_size // 4, ca_activation="relu"),
    ),
    # Both stages in one module, once in each phase: Stage-I (the first stage1_epochs epochs,
    # on the data downsampled to image_size / 4), then Stage-II on the frozen Stage-I (with the
    # EMA of Stage-II's G, which only Stage-II trains).
    "stackgan": lambda dm: _tiny_stackgan(dm),
    "stackgan_in_stage2": lambda dm: _in_stage2(_tiny_stackgan(dm, ema_decay=0.9)),
    # GAWWN at 64 x 64 (8 x 8 maps), conditioned on boxes / keypoints as well as text
    "gawwn_box": lambda dm: GAWWNBox(text_dim=dm.text_dim, image_size=dm.image_size, ngf=4,
                                     ndf=4, ema_decay=0.9, text_encoder=dm.text_encoder_spec),
    "gawwn_keypoints": lambda dm: GAWWNKeypoints(
        text_dim=dm.text_dim, image_size=dm.image_size, ngf=4, ndf=4,
        text_encoder=dm.text_encoder_spec,
    ),
    # the MHP variant (main_mhp.lua's G, ELU + Dropout D, fake-score threshold) on birds' parts
    "gawwn_mhp": lambda dm: GAWWNKeypoints(
        text_dim=dm.text_dim, image_size=dm.image_size, ngf=4, ndf=4, g_variant="mhp",
        d_activation="elu", d_dropout=0.2, fake_score_threshold=0.2, ema_decay=0.9,
        text_encoder=dm.text_encoder_spec,
    ),
    # The recurrent VAEs (not GANs): see VAES for the contract points adapted to them.
    "draw": lambda dm: DRAW(dm.text_dim, dm.image_size, steps=3, enc_dim=16, dec_dim=16, z_dim=4,
                            read_n=3, write_n=3, text_encoder=dm.text_encoder_spec),
    "aligndraw": lambda dm: AlignDRAW(
        dm.text_dim, dm.image_size, steps=3, enc_dim=16, dec_dim=16, z_dim=4, read_n=3,
        write_n=3, lang_dim=8, align_dim=8, vocabulary=dm.vocabulary.itos,
        text_encoder=dm.text_encoder_spec,
    ),
}  # fmt: skip
#: Models that are not GANs (one loss, one optimiser): "both networks" are the generative
#: (decoder) and inference (encoder) LSTMs; the D-step / G-step separation and the EMA points
#: are GAN-specific and skipped.
VAES = {"draw", "aligndraw"}
#: Image size each model trains at in the contract run (default 32).
IMAGE_SIZE: dict[str, int] = {"stackgan_stage2": 64, "stackgan": 64, "stackgan_in_stage2": 64,
                              "gawwn_box": 64, "gawwn_keypoints": 64, "gawwn_mhp": 64}  # fmt: skip
#: The networks a case trains when they are not ``generator`` / ``discriminator``: the one-run
#: StackGAN trains Stage-I's pair during its Stage-I phase (its ``generator`` is Stage-II's).
TRAINED: dict[str, tuple[str, str]] = {"stackgan": ("stage1_generator", "stage1_discriminator")}


def _tiny_stackgan(dm, **kwargs) -> StackGAN:
    return StackGAN(
        text_dim=dm.text_dim, image_size=dm.image_size, z_dim=16, condition_dim=8, stage1_ngf=4,
        stage1_ndf=8, ngf=8, ndf=4, num_residual=1, text_encoder=dm.text_encoder_spec, **kwargs,
    )  # fmt: skip


def _in_stage2(model: StackGAN) -> StackGAN:
    model.start_stage2()
    return model


@pytest.fixture(params=list(MODELS))
def setup(request, data_root):
    name = request.param
    dm = tiny_datamodule(data_root, image_size=IMAGE_SIZE.get(name, 32))
    L.seed_everything(0)
    return name, MODELS[name](dm), dm


def _networks(name: str, model) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The generator and discriminator that ``model`` trains now."""
    if name in VAES:
        return model.net.decoder, model.net.encoder
    g, d = TRAINED.get(name, ("generator", "discriminator"))
    return getattr(model, g), getattr(model, d)


def _optimiser_of(network: torch.nn.Module, optimisers) -> torch.optim.Optimizer:
    """The one optimiser that steps exactly ``network``'s parameters."""
    params = {id(p) for p in network.parameters()}
    (opt,) = [o for o in optimisers
              if {id(p) for g in o.param_groups for p in g["params"]} == params]  # fmt: skip
    return opt


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict, module: torch.nn.Module) -> bool:
    """Whether any *parameter* moved (BatchNorm running stats may move in any forward)."""
    params = dict(module.named_parameters())
    return any(not torch.equal(before[k], p) for k, p in params.items())


def _where(model, dm, n: int) -> dict:
    """The conditioning beyond text that ``model`` takes (``model.takes``), from n validation
    images (nothing for text-only models)."""
    ex = dm.caption_examples("val", n)
    return {k: ex[k] for k in model.takes[1:]}


def _fit(model, dm, steps: int, tmp_path, **kwargs) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=2 * steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=0, default_root_dir=tmp_path, **kwargs,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    return trainer


def test_sample_shape_range_finite(setup):
    name, model, dm = setup
    text = torch.from_numpy(dm.text_encoder.encode(["a bird with a red body", "a blue bird"]))
    images = model.sample(text, **_where(model, dm, 2))
    assert images.shape == (2, 3, dm.image_size, dm.image_size)
    assert torch.isfinite(images).all()
    assert images.min() >= -1 and images.max() <= 1
    assert images.std() > 0  # not a constant image


def test_one_training_step_moves_both_networks(setup, tmp_path):
    name, model, dm = setup
    generator, discriminator = _networks(name, model)
    g0, d0 = _snapshot(generator), _snapshot(discriminator)
    _fit(model, dm, 1, tmp_path)
    assert _changed(g0, generator) and _changed(d0, discriminator)


def test_d_step_leaves_g_and_g_step_leaves_d(setup):
    name, model, dm = setup
    if name in VAES:
        pytest.skip("one loss and one optimiser: no D and G steps to keep apart")
    batch = next(iter(dm.train_dataloader()))
    generator, discriminator = _networks(name, model)
    optimisers = model.configure_optimizers()[0]
    opt_d, opt_g = _optimiser_of(discriminator, optimisers), _optimiser_of(generator, optimisers)
    g0, d0 = _snapshot(generator), _snapshot(discriminator)
    # D step: only D's optimiser steps; G's parameters must not move.
    opt_d.zero_grad()
    model.discriminator_loss(batch)[0].backward()
    opt_d.step()
    assert not _changed(g0, generator) and _changed(d0, discriminator)
    # G step: only G's optimiser steps; D's parameters must not move.
    d1 = _snapshot(discriminator)
    opt_g.zero_grad()
    model.generator_loss(batch)[0].backward()
    opt_g.step()
    assert _changed(g0, generator) and not _changed(d1, discriminator)


def test_ema_is_frozen_and_follows_g(setup, tmp_path):
    name, model, dm = setup
    if getattr(model, "generator_ema", None) is None:
        pytest.skip("model trained without EMA")
    assert not any(p.requires_grad for p in model.generator_ema.parameters())
    ema0 = _snapshot(model.generator_ema.module)
    _fit(model, dm, 2, tmp_path)
    assert not any(p.requires_grad for p in model.generator_ema.parameters())
    assert _changed(ema0, model.generator_ema.module)
    # the EMA lags G: after training they differ
    assert any(
        not torch.equal(a, b)
        for a, b in zip(model.generator.parameters(), model.generator_ema.module.parameters())
    )


def test_checkpoint_round_trip_same_samples(setup, tmp_path):
    name, model, dm = setup
    trainer = _fit(copy.deepcopy(model), dm, 1, tmp_path)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    trained = trainer.lightning_module
    loaded = load_model(path)
    assert type(loaded) is type(trained)
    text = torch.from_numpy(dm.text_encoder.encode(["a bird with a red body"] * 3))
    noise = trained.sample_noise(3, generator=torch.Generator().manual_seed(1))
    where = _where(trained, dm, 3)
    assert torch.equal(trained.sample(text, noise, **where), loaded.sample(text, noise, **where))
    # seeded determinism: the same seed gives the same noise, hence the same images
    n1 = loaded.sample_noise(3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded.sample(text, n1, **where), loaded.sample(text, noise, **where))
