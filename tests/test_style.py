"""The style encoder of Reed et al. 2016 (Section 4.4), style transfer and GAN-INT options."""

from __future__ import annotations

import importlib.util
import json

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from t2igan.cli.fit import cli
from t2igan.cli.generate import generate, generate_main
from t2igan.models import GANINTCLS
from t2igan.models.base import TextToImageGAN
from t2igan.models.gan_int_cls import interpolate_text
from t2igan.models.loading import load_model
from t2igan.models.style_encoder import (
    StyleEncoder,
    StyleEncoderGAN,
    reconstruction_loss,
    style_loss,
)

from .conftest import ROOT, TINY_DATA, eventually, tiny_datamodule

Z_DIM = 16


def _fit(model, dm, steps: int, root) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=0, default_root_dir=root,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    return trainer


@pytest.fixture(scope="module")
def gan_ckpt(data_root, tmp_path_factory):
    """A tiny GAN-INT-CLS trained for a few dozen steps, saved as a checkpoint."""
    root = tmp_path_factory.mktemp("gan")
    dm = tiny_datamodule(data_root)
    L.seed_everything(0)
    gan = GANINTCLS(text_dim=dm.text_dim, image_size=32, z_dim=Z_DIM, ngf=8, ndf=8,
                    text_encoder=dm.text_encoder_spec)  # fmt: skip
    trainer = _fit(gan, dm, 2 * 20, root)  # two optimiser steps per batch
    path = root / "gan.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def style_ckpt(gan_ckpt, data_root, tmp_path_factory):
    """The style encoder trained on the frozen GAN, saved as a checkpoint."""
    root = tmp_path_factory.mktemp("style")
    dm = tiny_datamodule(data_root)
    L.seed_everything(0)
    model = StyleEncoderGAN(str(gan_ckpt), dm.text_dim, 32, dm.text_encoder_spec, lr=1e-3)
    trainer = _fit(model, dm, 120, root)
    path = root / "style.ckpt"
    trainer.save_checkpoint(path)
    return path


def _fixed_pairs(model, dm, n: int = 32, seed: int = 1):
    """Held-out (z, G(z, t)) pairs on validation captions."""
    text = dm.caption_examples("val", n)["text_emb"]
    z = model.sample_noise(n, generator=torch.Generator().manual_seed(seed))
    return z, model.sample(text, z)


def test_extrapolation_leaves_the_segment_between_captions():
    t = torch.stack([torch.zeros(3), torch.ones(3)] * 1)[[0] * 64 + [1] * 64]  # t1 = 0, t2 = 1
    plain = interpolate_text(t, 0.5)
    assert torch.allclose(plain, torch.full_like(plain, 0.5))
    out = interpolate_text(t, 0.5, extrapolate=True, generator=torch.Generator().manual_seed(0))
    # coefficient of t2 is 1 - beta + alpha with alpha ~ U(-1, 1): spans [-0.5, 1.5]
    assert out.min() < 0 and out.max() > 1
    assert out.min() >= -0.5 and out.max() <= 1.5
    assert torch.equal(out[:, 0], out[:, 1])  # one alpha per pair, shared by every dimension


def test_style_training_step_reduces_the_loss(gan_ckpt, data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    torch.manual_seed(0)
    model = StyleEncoderGAN(str(gan_ckpt), dm.text_dim, 32, dm.text_encoder_spec, lr=1e-3)
    z, fake = _fixed_pairs(model, dm)  # held-out pairs, not the batches it trains on

    def held_out_loss() -> float:
        # S in train mode (batch statistics): after 15 steps BatchNorm's running statistics
        # still lag; eval mode is checked after full training (the recovery test below)
        with torch.no_grad():
            return style_loss(z, model.style_encoder.train()(fake)).item()

    before = held_out_loss()
    _fit(model, dm, 15, tmp_path)  # Lightning runs the module's own training_step
    assert held_out_loss() < 0.7 * before


def test_generator_is_frozen_and_not_optimised(gan_ckpt, data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    model = StyleEncoderGAN(str(gan_ckpt), dm.text_dim, 32, dm.text_encoder_spec)
    assert not any(p.requires_grad for p in model.gan.parameters())
    optimised = {id(p) for g in model.configure_optimizers().param_groups for p in g["params"]}
    assert optimised == {id(p) for p in model.style_encoder.parameters()}
    g0 = {k: v.clone() for k, v in model.gan.state_dict().items()}
    _fit(model, dm, 3, tmp_path)
    # BatchNorm running statistics included: G stays in eval mode, nothing in it moves
    assert all(torch.equal(g0[k], v) for k, v in model.gan.state_dict().items())
    assert not model.gan.training


def test_reconstruction_term_is_off_by_default_and_adds_its_weighted_loss(gan_ckpt, data_root):
    dm = tiny_datamodule(data_root)
    batch = next(iter(dm.train_dataloader()))
    paper = StyleEncoderGAN(str(gan_ckpt), dm.text_dim, 32, dm.text_encoder_spec)
    assert paper.hparams.recon_weight == 0
    model = StyleEncoderGAN(str(gan_ckpt), dm.text_dim, 32, dm.text_encoder_spec, recon_weight=3.0)
    model.style_encoder.load_state_dict(paper.style_encoder.state_dict())
    images, text = batch["images"], batch["text_emb"]
    # by hand: G (eval mode, no EMA here) redraws x from S(x) and x's own caption
    g = model.gan.generator
    assert not g.training
    redrawn = g(model.style_encoder(images), text)
    by_hand = (redrawn - images).pow(2).mean()
    assert torch.allclose(reconstruction_loss(images, redrawn), by_hand)
    assert torch.allclose(model.reconstruction_step(images, text), by_hand)
    # the same fresh z in both models: the paper's loss is L_style alone, the other adds 3x
    torch.manual_seed(1)
    style_only = paper._losses(batch, "train")
    torch.manual_seed(1)
    both = model._losses(batch, "train")
    assert torch.allclose(both, style_only + 3.0 * by_hand, rtol=1e-4)


class _FillGenerator(nn.Module):
    """A generator that fills the image with one colour, a linear function of z (no text, no
    BatchNorm): every real image has a best redrawing, its mean colour, for S to find."""

    def __init__(self, z_dim: int, image_size: int) -> None:
        super().__init__()
        self.size = image_size
        self.fc = nn.Linear(z_dim, 3)

    def forward(self, noise: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        colour = torch.tanh(self.fc(noise))[:, :, None, None]
        return colour.expand(-1, 3, self.size, self.size)


class FillGAN(TextToImageGAN):
    """A t2igan GAN (found by class_path) with :class:`_FillGenerator`; D is unused here."""

    def __init__(self, text_dim: int, image_size: int, z_dim: int = 8, text_encoder=None):
        super().__init__(text_dim=text_dim, image_size=image_size, z_dim=z_dim,
                         text_encoder=text_encoder)  # fmt: skip
        self.save_hyperparameters()
        self.generator, self.discriminator = _FillGenerator(z_dim, image_size), nn.Identity()


def test_reconstruction_term_trains_s_through_the_frozen_generator(data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    torch.manual_seed(0)
    gan = FillGAN(dm.text_dim, 32, text_encoder=dm.text_encoder_spec)
    checkpoint = {"hyper_parameters": dict(gan.hparams), "state_dict": gan.state_dict()}
    gan.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "gan.ckpt")
    ex = dm.caption_examples("val", 32)  # real images S does not train on
    images = ex["images"]
    best = (images.mean((2, 3), keepdim=True) - images).pow(2).mean().item()  # mean colours

    def excess_error(model: StyleEncoderGAN) -> float:
        with torch.no_grad():
            model.style_encoder.train()  # batch statistics, as in the loss test above
            return model.reconstruction_step(images, ex["text_emb"]).item() - best

    errors = {}
    for weight in (0.0, 100.0):  # the paper's S (G's samples only), then with real images
        torch.manual_seed(0)
        model = StyleEncoderGAN(str(tmp_path / "gan.ckpt"), dm.text_dim, 32, ndf=8, lr=1e-3,
                                recon_weight=weight)  # fmt: skip
        before = excess_error(model)
        _fit(model, dm, 30, tmp_path)
        errors[weight] = excess_error(model)
    # measured: 0.215 before, 0.092 for the paper's S, 0.032 with the real-image term
    assert errors[100.0] < 0.5 * errors[0.0] and errors[100.0] < 0.3 * before
    # the gradient went through G into S only: nothing of the GAN moved
    assert all(torch.equal(v, model.gan.state_dict()[k]) for k, v in gan.state_dict().items())


def test_data_that_differs_from_the_gan_is_refused(gan_ckpt, data_root):
    with pytest.raises(ValueError, match="text_dim"):
        StyleEncoderGAN(str(gan_ckpt), text_dim=7)
    with pytest.raises(ValueError, match="image_size"):
        StyleEncoderGAN(str(gan_ckpt), image_size=64)
    with pytest.raises(FileNotFoundError, match="generator_ckpt"):
        StyleEncoderGAN("no/such.ckpt")


def test_trained_encoder_recovers_z_better_than_a_random_one(style_ckpt, data_root):
    dm = tiny_datamodule(data_root)
    trained = load_model(style_ckpt)
    assert isinstance(trained, StyleEncoderGAN)
    z, fake = _fixed_pairs(trained, dm)
    torch.manual_seed(0)
    random = StyleEncoder(Z_DIM, 8, 32).eval()
    with torch.no_grad():
        random_loss = style_loss(z, random(fake)).item()
    trained_loss = style_loss(z, trained.encode_style(fake)).item()
    # A style encoder that knows nothing predicts 0 at best: loss E||z||^2 = Z_DIM.
    assert trained_loss < 0.6 * Z_DIM
    assert trained_loss < 0.5 * random_loss


def test_style_checkpoint_is_self_contained(style_ckpt, gan_ckpt, data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    model = load_model(style_ckpt)
    gan = load_model(gan_ckpt)
    text = dm.caption_examples("val", 4)["text_emb"]
    noise = gan.sample_noise(4, generator=torch.Generator().manual_seed(0))
    # the style model samples exactly as the GAN it was trained on
    assert torch.equal(model.sample(text, noise), gan.sample(text, noise))
    assert model.hparams.text_encoder == dm.text_encoder_spec
    # it loads without the GAN checkpoint on disk
    gan_ckpt.rename(tmp_path / "moved.ckpt")
    try:
        assert torch.equal(load_model(style_ckpt).sample(text, noise), model.sample(text, noise))
    finally:
        (tmp_path / "moved.ckpt").rename(gan_ckpt)


def test_style_transfer_shapes(style_ckpt, data_root):
    dm = tiny_datamodule(data_root)
    model = load_model(style_ckpt)
    images = dm.caption_examples("test", 5)["images"]
    styles = model.encode_style(images)
    assert styles.shape == (5, Z_DIM)
    text = torch.from_numpy(dm.text_encoder.encode(["a bird with a red body and a blue head."]))
    out = model.sample(text.expand(5, -1), styles)
    assert out.shape == (5, 3, 32, 32) and out.min() >= -1 and out.max() <= 1


def test_style_rescale_gives_each_style_the_noise_length(style_ckpt, data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    model = load_model(style_ckpt)
    images = dm.caption_examples("test", 6)["images"]
    raw = model.encode_style(images)  # the paper's S(x): the default
    assert torch.equal(raw, model.encode_style(images, rescale=False))
    scaled = model.encode_style(images, rescale=True)
    noise_length = model.sample_noise(4096).norm(dim=1).mean()  # an independent estimate
    assert torch.allclose(scaled.norm(dim=1), noise_length.expand(6), rtol=0.02)
    assert scaled.norm(dim=1).std() < 1e-4  # one length for all
    assert torch.allclose(torch.cosine_similarity(raw, scaled), torch.ones(6), atol=1e-5)
    model.hparams.style_rescale = True  # the hyper-parameter sets the default
    assert torch.equal(model.encode_style(images), scaled)
    # and `t2igan generate --style-rescale` draws G(rescaled S(x), t)
    bird = tmp_path / "bird.png"
    _save_png(images[0], bird)
    caption = "a bird with a red body and a blue head."
    generate_main(["--ckpt", str(style_ckpt), "--style-image", str(bird), "--style-rescale",
                   "--caption", caption, "--out", str(tmp_path / "out")])  # fmt: skip
    text = torch.from_numpy(dm.text_encoder.encode([caption]))
    expected = model.sample(text, model.encode_style(_load(bird)[None], rescale=True))[0]
    written = np.asarray(Image.open(tmp_path / "out" / "c00_i00.png"))[::4, ::4].astype(float)
    assert np.abs(written - ((expected.permute(1, 2, 0) + 1) * 127.5).round().numpy()).max() <= 1


def _save_png(tensor: torch.Tensor, path) -> None:
    arr = ((tensor.permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    Image.fromarray(arr).resize((50, 40)).save(path)  # not square, not 32 px: generate adapts


def test_generate_style_transfer_and_interpolation(style_ckpt, data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    images = dm.caption_examples("test", 2)["images"]
    paths = []
    for k, img in enumerate(images):
        paths.append(tmp_path / f"bird{k}.png")
        _save_png(img, paths[-1])
    captions = ["a bird with a red body and a blue head.", "this bird has a green body."]
    # style transfer: a row of the 2 query images, then one row per caption
    written = generate(str(style_ckpt), captions, out=str(tmp_path / "st"),
                       style_images=[str(p) for p in paths])  # fmt: skip
    grid = Image.open(written[0])
    assert grid.height == 3 * 130 + 2  # 3 rows of 32 px upscaled to 128, 2 px padding
    assert len(written) == 1 + 2 * 2
    # style interpolation: 5 steps from bird0's style to bird1's, one row per caption
    written = generate(str(style_ckpt), captions, out=str(tmp_path / "si"),
                       style_images=[str(p) for p in paths], style_steps=5)  # fmt: skip
    grid = np.asarray(Image.open(written[0]))
    assert grid.shape[0] == 3 * 130 + 2 and len(written) == 1 + 2 * 5
    # the first and last columns of a caption row are the two images' style transfers
    model = load_model(style_ckpt)
    styles = model.encode_style(torch.stack([_load(p) for p in paths]))
    text = torch.from_numpy(dm.text_encoder.encode(captions[:1]))
    ends = model.sample(text.expand(2, -1), styles)
    first = np.asarray(Image.open(written[1]))[::4, ::4].astype(float)  # the 32 px drawn
    expected = ((ends[0].permute(1, 2, 0) + 1) * 127.5).round().numpy()
    assert np.abs(first - expected).max() <= 1


def test_generate_command_line_style_flags(style_ckpt, gan_ckpt, data_root, tmp_path, capsys):
    dm = tiny_datamodule(data_root)
    bird = tmp_path / "bird.png"
    _save_png(dm.caption_examples("test", 1)["images"][0], bird)
    generate_main(["--ckpt", str(style_ckpt), "--style-image", str(bird), "--style-image",
                   str(bird), "--style-steps", "3", "--caption", "a bird with a red body.",
                   "--out", str(tmp_path / "out")])  # fmt: skip
    assert "wrote 3 images" in capsys.readouterr().out
    with pytest.raises(ValueError, match="style_encoder.yaml"):  # a GAN without S says what to do
        generate(str(gan_ckpt), ["a bird."], out=str(tmp_path / "x"), style_images=[str(bird)])


def _load(path) -> torch.Tensor:
    from t2igan.cli.generate import load_image

    return load_image(path, 32)


def test_style_encoder_config_through_the_cli_with_wandb_offline(gan_ckpt, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = ROOT / "experiments" / "style_encoder.yaml"
    encoder = '{"class_path": "t2igan.data.HashingEncoder", "init_args": {"dim": 64}}'
    try:
        cli(["fit", "--config", str(config), "--config", str(ROOT / "experiments/loggers/wandb.yaml"),
             *TINY_DATA, "--data.text_encoder", encoder, "--trainer.max_epochs", "1",
             "--model.init_args.generator_ckpt", str(gan_ckpt)])  # fmt: skip
    finally:
        import wandb

        wandb.finish()
        wandb.teardown()  # end W&B's process-wide service, so the next test starts clean
    ckpt = tmp_path / "runs" / "style_encoder" / "checkpoints" / "last.ckpt"
    model = load_model(ckpt)
    assert isinstance(model, StyleEncoderGAN) and model.hparams.gan["init_args"]["z_dim"] == Z_DIM
    assert model.hparams.gan["init_args"]["ndf"] == 8  # the GAN's own hparams, not the CLI's
    assert (tmp_path / "runs" / "style_encoder" / "style_transfer" / "epoch_0000.png").is_file()
    # W&B offline run: metrics, the style-transfer figure and the full run config
    (run_dir,) = (tmp_path / "runs" / "style_encoder" / "wandb").glob("offline-run-*")
    assert list((run_dir / "files" / "media" / "images").glob("style_transfer_*.png"))
    # wandb-core writes the offline log in its own process: poll until it holds the metrics
    # and the run config
    wanted = (b"train/style_loss", b"val/style_loss", b"seed_everything", b"StyleTransferGrid")

    def records() -> bytes:
        return b"".join(p.read_bytes() for p in run_dir.glob("run-*.wandb"))

    assert eventually(lambda: all(w in records() for w in wanted)), [
        w for w in wanted if w not in records()
    ]
    # the text encoder check: the GAN was trained on 64-d hashing, not the 256-d default
    with pytest.raises(ValueError, match="text_dim"):
        cli(["fit", "--config", str(config), *TINY_DATA, "--trainer.max_epochs", "1",
             "--model.init_args.generator_ckpt", str(gan_ckpt)])  # fmt: skip


def test_style_encoder_inverts_the_ema_generator_when_the_gan_has_one(data_root, tmp_path):
    dm = tiny_datamodule(data_root)
    gan = GANINTCLS(text_dim=dm.text_dim, image_size=32, z_dim=Z_DIM, ngf=8, ndf=8,
                    ema_decay=0.5, text_encoder=dm.text_encoder_spec)  # fmt: skip
    with torch.no_grad():  # make the EMA copy differ from G
        for p in gan.generator_ema.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "ema.ckpt"
    torch.save({"t2igan": {"class_path": "t2igan.models.gan_int_cls.GANINTCLS"},
                "hyper_parameters": dict(gan.hparams), "state_dict": gan.state_dict()}, path)  # fmt: skip
    model = StyleEncoderGAN(str(path))
    assert model.gan.generator_ema is not None
    text = dm.caption_examples("val", 3)["text_emb"]
    z = gan.sample_noise(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.sample(text, z), gan.sample(text, z))
    plain = gan.generator.eval()(z, text).clamp(-1, 1)
    assert not torch.allclose(model.sample(text, z), plain)


def test_style_transfer_benchmark_runs_end_to_end(tmp_path):
    """benchmarks/style_transfer.py at smoke size: trains both networks with one caption per
    image (its documented default), then writes every rate it prints and both figures."""
    spec = importlib.util.spec_from_file_location(
        "style_transfer_bench", ROOT / "benchmarks" / "style_transfer.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench"
    printed = bench.main(["--smoke", "--out", str(out), "--data-root", str(tmp_path / "data")])

    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["num_captions"] == 1
    assert saved["style_transfer"] == printed["style_transfer"]
    # the paper's S and, side by side on the same G, S with the real-image term
    assert saved["config"]["recon_weight"] == bench.RECON_WEIGHT > 0
    keys = ("style_transfer", "style_transfer_rescaled", "style_transfer_recon", "random_noise")
    for key in keys:
        assert set(saved[key]) == {"background_kept", "facing_kept", "body_of_caption"}
        assert all(0.0 <= rate <= 1.0 for rate in saved[key].values())
    # The reader is exact on real birds, so the rates measure G, not the reading.
    assert saved["reader_on_real"] == {"background": 1.0, "facing": 1.0}
    for name in ("style_transfer.png", "style_transfer_rescaled.png", "style_transfer_recon.png"):
        grid = Image.open(out / name)
        assert grid.height == 5 * (32 + 2) + 2  # the query row and four caption rows


def test_the_gan_inside_keeps_its_own_hparams_and_ema_under_the_cli(data_root, tmp_path):
    """LightningCLI hands the outer model's config to every save_hyperparameters() called while
    it builds the outer model (emulated here with the context it uses): the inner GAN still
    gets its EMA (the base keeps what it is given) and records its own arguments."""
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters_context

    dm = tiny_datamodule(data_root)
    gan = GANINTCLS(text_dim=dm.text_dim, image_size=32, z_dim=Z_DIM, ngf=8, ndf=8,
                    ema_decay=0.5, text_encoder=dm.text_encoder_spec)  # fmt: skip
    path = tmp_path / "ema.ckpt"
    torch.save({"t2igan": {"class_path": "t2igan.models.gan_int_cls.GANINTCLS"},
                "hyper_parameters": dict(gan.hparams), "state_dict": gan.state_dict()}, path)  # fmt: skip
    outer = {"generator_ckpt": str(path), "ndf": 4, "lr": 1e-3}
    with _given_hyperparameters_context(outer, "lightning.pytorch.cli.instantiate_module"):
        model = StyleEncoderGAN(str(path), ndf=4, lr=1e-3)
    assert model.gan.generator_ema is not None
    assert dict(model.gan.hparams) == model.hparams.gan["init_args"] == dict(gan.hparams)
    assert model.hparams.lr == 1e-3 and model.hparams.ndf == 4
