"""GAN-CLS, GAN-INT and GAN-INT-CLS: Reed et al., "Generative Adversarial Text to Image
Synthesis", ICML 2016 (arXiv:1605.05396).

Implements Algorithm 1 (the matching-aware discriminator, GAN-CLS) and the manifold-interpolation
term of Section 4.3 (GAN-INT), with the networks of the authors' Torch code
(reedscot/icml2016 ``main_cls_int.lua``), which differ from the paper's text in places
(architectures.md section 1.10): residual bottleneck blocks in G (at 4x4 and 8x8) and D (at 4x4),
BatchNorm on D's text projection, no activation after D's 8x8 convolution, bias-free convolutions,
"wrong" pairs made of a real image of another class with the right text, and the learning rate
halved at the start of epochs 100, 200, ... counted from 1 (so the last of 600 epochs runs at
1/64 of the initial rate). The defaults follow the code; ``ngf=128, ndf=64, text_dim=1024`` gives
the authors' CUB network exactly.

Two more ways the authors' training differs from Algorithm 1, both followed here:

* G's step runs on 1.5 B samples in every variant: B with the batch's texts and B/2 with
  interpolated ones, the latter weighted ``interp_weight``. With ``interp_weight=0`` (GAN,
  GAN-CLS) the extra half has zero weight, yet it is drawn: it enters G's and D's BatchNorm
  statistics, and the loss is the mean over all 1.5 B (so the B real-text terms weigh 2/3 of a
  plain mean), as ``main_cls_int.lua`` computes it.
* The Lua loader draws a class uniformly, then an image of it; the data module shuffles images
  by default (``--data.sampler class_uniform`` draws as the authors do), and resizes bicubic
  where the Lua loader resizes bilinear (docs/reed2016.md).

One class covers the four variants by flags: GAN (``cls_weight=0, interp_weight=0``), GAN-CLS
(``interp_weight=0``), GAN-INT (``cls_weight=0``) and GAN-INT-CLS (the defaults); GAN-INT can also
extrapolate beyond the two captions (the authors' ``interp_type=2``).

Section 4.4's style encoder, which the authors did not release, is in
:mod:`t2igan.models.style_encoder`.
"""

from __future__ import annotations

import torch
from torch import nn

from t2igan.losses import d_loss_matching_aware, g_loss_nonsaturating
from t2igan.models.base import TextToImageGAN
from t2igan.nn import doublings_from_4x4


def _levels(image_size: int) -> int:
    """Number of stride-2 (de)convolutions between 4x4 and ``image_size`` (>= 32)."""
    return doublings_from_4x4(image_size, smallest=32)


class ResidualBottleneck(nn.Module):
    """``act(x + [1x1 C->C/4, BN, act, 3x3, BN, act, 3x3 C/4->C, BN](x))`` (icml2016 code)."""

    def __init__(self, channels: int, act: nn.Module) -> None:
        super().__init__()
        mid = channels // 4
        self.branch = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=False), nn.BatchNorm2d(mid), act,
            nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), act,
            nn.Conv2d(mid, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
        )  # fmt: skip
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.branch(x))


class Generator(nn.Module):
    """G(z, phi(t)): text projected to ``proj_dim`` (Linear + LeakyReLU 0.2), joined to z at 1x1,
    then a DCGAN deconvolution stack with residual blocks at 4x4 and 8x8 (table 1.3).

    Args:
        z_dim: noise size.
        text_dim: text embedding size.
        proj_dim: size the text is compressed to.
        ngf: width; 4x4 features have ``ngf * image_size / 8`` channels (1024 at 64 x 64).
        image_size: output side (a power of two >= 32).
    """

    def __init__(self, z_dim=100, text_dim=1024, proj_dim=128, ngf=128, image_size=64) -> None:
        super().__init__()
        n = _levels(image_size)
        self.project = nn.Sequential(nn.Linear(text_dim, proj_dim), nn.LeakyReLU(0.2))
        c = ngf * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim + proj_dim, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c),
            ResidualBottleneck(c, nn.ReLU()),
        ]  # fmt: skip
        for level in range(1, n):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2)]
            c //= 2
            layers.append(ResidualBottleneck(c, nn.ReLU()) if level == 1 else nn.ReLU())
        layers += [nn.ConvTranspose2d(c, 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.project(text_emb)], 1)[:, :, None, None]  # (B, z + proj, 1, 1)
        return self.net(h)


def image_trunk(image_size: int = 64, ndf: int = 64) -> nn.Sequential:
    """D's image encoder down to 4x4 (table 1.4 rows 1-4 and R): (B, 3, S, S) -> (B, C, 4, 4).

    As in ``main_cls_int.lua`` the convolution that outputs 8x8 has BatchNorm but no activation.
    """
    n = _levels(image_size)
    layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
    c, side = ndf, image_size // 2
    for _ in range(1, n):
        layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c)]
        c, side = 2 * c, side // 2
        if side > 8:
            layers.append(nn.LeakyReLU(0.2))
    layers.append(ResidualBottleneck(c, nn.LeakyReLU(0.2)))
    return nn.Sequential(*layers)


class Discriminator(nn.Module):
    """D(x, phi(t)) -> logit: image trunk to 4x4, text projected (Linear + BN + LeakyReLU) and
    replicated 4x4, depth concatenation, 1x1 conv + BN + LeakyReLU, 4x4 conv (table 1.4).

    Args:
        text_dim: text embedding size.
        proj_dim: size the text is compressed to.
        ndf: width of the first convolution.
        image_size: input side (a power of two >= 32).
    """

    def __init__(self, text_dim=1024, proj_dim=128, ndf=64, image_size=64) -> None:
        super().__init__()
        self.trunk = image_trunk(image_size, ndf)
        c = ndf * 2 ** (_levels(image_size) - 1)
        self.project = nn.Sequential(
            nn.Linear(text_dim, proj_dim), nn.BatchNorm1d(proj_dim), nn.LeakyReLU(0.2)
        )
        self.head = nn.Sequential(
            nn.Conv2d(c + proj_dim, c, 1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.2),
            nn.Conv2d(c, 1, 4, 1, 0, bias=False),
        )  # fmt: skip

    def forward(self, images: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        feat = self.trunk(images)  # (B, C, 4, 4)
        text = self.project(text_emb)[:, :, None, None].expand(-1, -1, *feat.shape[2:])
        return self.head(torch.cat([feat, text], 1)).flatten()  # (B,)


def interpolate_text(
    text_emb: torch.Tensor,
    beta: float,
    extrapolate: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """GAN-INT text: ``beta * t1 + (1 - beta) * t2`` pairing the first half of the batch with
    the second half, as the authors' code does (B -> B // 2 embeddings).

    Args:
        text_emb: (B, D) text embeddings of one batch.
        beta: weight of the first half (paper: 0.5).
        extrapolate: the authors' ``interp_type=2``: also add ``alpha * (t2 - t1)`` with
            ``alpha ~ U(-1, 1)`` drawn per pair, so the effective beta ranges over
            ``[beta - 1, beta + 1]`` and leaves the segment between the two captions.
        generator: random-number generator for ``alpha`` (None: the global one).
    """
    h = len(text_emb) // 2
    t1, t2 = text_emb[:h], text_emb[h : 2 * h]
    out = beta * t1 + (1 - beta) * t2
    if extrapolate:
        alpha = torch.rand(h, 1, generator=generator).to(text_emb) * 2 - 1  # (B/2, 1)
        out = out + alpha * (t2 - t1)
    return out


class GANINTCLS(TextToImageGAN):
    """GAN-INT-CLS of Reed et al. 2016 (GAN, GAN-CLS and GAN-INT by flags).

    Args:
        text_dim: text embedding size (linked from the data module).
        image_size: image side (linked from the data module).
        z_dim: noise size.
        proj_dim: text projection size in G and D.
        ngf: generator width (authors' CUB/Flowers: 128).
        ndf: discriminator width (authors': 64).
        cls_weight: weight of the wrong-pair term in D's loss; the fake term gets
            ``1 - cls_weight``. 0.5 = GAN-CLS; 0 = no matching-aware term.
        interp_weight: weight of the GAN-INT term in G's loss (authors' scripts: 1.0); 0 = off
            (the B/2 interpolated samples are still drawn, with zero weight, as the authors'
            code does: see the module docstring).
        interp_beta: beta of the interpolated text ``beta * t1 + (1 - beta) * t2`` (paper: 0.5).
        interp_extrapolate: also add ``alpha * (t2 - t1)``, ``alpha ~ U(-1, 1)`` per pair (the
            authors' ``interp_type=2``, unused by their scripts), so GAN-INT also trains on
            texts beyond the two captions (effective beta in ``[beta - 1, beta + 1]``).
        lr: Adam learning rate for G and D.
        beta1: Adam beta1.
        beta2: Adam beta2.
        lr_decay_every: the learning rate decays at the start of epochs ``lr_decay_every``,
            ``2 lr_decay_every``, ... counted from 1 (authors' code: 100).
        lr_decay: learning-rate factor at each decay (authors' code: 0.5).
        ema_decay: if set, keep an EMA of G with this decay and sample from it (not in the paper).
        text_encoder: set by the CLI from the data module: how captions were embedded, so
            ``t2igan generate`` embeds new captions the same way.
    """

    lr_decay_offset = 1  # main_cls_int.lua: `if epoch % decay_every == 0` at an epoch's start

    def __init__(
        self,
        text_dim: int = 1024,
        image_size: int = 64,
        z_dim: int = 100,
        proj_dim: int = 128,
        ngf: int = 128,
        ndf: int = 64,
        cls_weight: float = 0.5,
        interp_weight: float = 1.0,
        interp_beta: float = 0.5,
        interp_extrapolate: bool = False,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lr_decay_every: int = 100,
        lr_decay: float = 0.5,
        ema_decay: float | None = None,
        text_encoder: dict | None = None,
    ) -> None:
        super().__init__(
            text_dim=text_dim, image_size=image_size, z_dim=z_dim, lr=lr, beta1=beta1,
            beta2=beta2, lr_decay_every=lr_decay_every, lr_decay=lr_decay, ema_decay=ema_decay,
            text_encoder=text_encoder,
        )  # fmt: skip
        self.save_hyperparameters()
        self.set_networks(
            Generator(z_dim, text_dim, proj_dim, ngf, image_size),
            Discriminator(text_dim, proj_dim, ndf, image_size),
        )

    def discriminator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        text = batch["text_emb"]
        fake = self.generator(self.sample_noise(len(text)), text).detach()
        # Three separate D passes, as the authors' code: each normalises with its own batch stats.
        real_logits = self.discriminator(batch["images"], text)
        wrong_logits = None
        if self.hparams.cls_weight > 0:
            wrong_logits = self.discriminator(batch["wrong_images"], text)
        fake_logits = self.discriminator(fake, text)
        loss = d_loss_matching_aware(
            real_logits, wrong_logits, fake_logits, self.hparams.cls_weight
        )
        logs = {"train/d_real": torch.sigmoid(real_logits.float()).mean(),
                "train/d_fake": torch.sigmoid(fake_logits.float()).mean()}  # fmt: skip
        if wrong_logits is not None:
            logs["train/d_wrong"] = torch.sigmoid(wrong_logits.float()).mean()
        return loss, logs

    def generator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        # Fresh noise for B real + B/2 interpolated texts, the latter weighted interp_weight
        # (also when it is 0: main_cls_int.lua always draws them). D never sees them as real.
        text = batch["text_emb"]
        interp = interpolate_text(text, self.hparams.interp_beta, self.hparams.interp_extrapolate)
        weight = torch.cat([torch.ones(len(text), device=text.device),
                            text.new_full((len(interp),), self.hparams.interp_weight)])  # fmt: skip
        text = torch.cat([text, interp])
        fake_logits = self.discriminator(self.generator(self.sample_noise(len(text)), text), text)
        return g_loss_nonsaturating(fake_logits, weight.float()), {}
