"""StackGAN's networks (Zhang et al., ICCV 2017, arXiv:1612.03242): conditioning augmentation
(Sec. 3.1) and the Stage-I and Stage-II generators and discriminators of the authors' PyTorch code
(hanzhanggit/StackGAN-Pytorch ``model.py``, architectures.md 3.3-3.4). Plain ``nn.Module``s; the
LightningModules that train them are in :mod:`t2igan.models.stackgan`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from t2igan.nn import doublings_from_4x4


def _levels(image_size: int) -> int:
    """Number of factor-2 steps between 4 x 4 and ``image_size`` (>= 16)."""
    return doublings_from_4x4(image_size, smallest=16)


# ------------------------------------------------------------- conditioning augmentation (Sec. 3.1)
# The text embedding is mapped to the mean and log-variance of a diagonal Gaussian, and the
# condition is a sample c = mu + eps * sigma: small changes of the text then cover a
# neighbourhood of conditions instead of a point. Its KL term is t2igan.losses.kl_divergence.

#: Activation after the linear layer: ``relu`` is StackGAN-Pytorch's (so ``mu >= 0`` and
#: ``sigma >= 1``, a quirk of that code); ``leaky_relu`` (slope 0.2) the TensorFlow code's.
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}


class ConditioningAugmentation(nn.Module):
    """Text embedding -> ``(c, mu, logvar)`` with ``c = mu + eps * exp(logvar / 2)``.

    One ``Linear(text_dim, 2 * condition_dim)`` and an activation; its output is split into
    ``mu`` (first half) and ``logvar`` (second half), as in the authors' code.

    Args:
        text_dim: text embedding size.
        condition_dim: size of the condition c (the paper's N_g; 128).
        activation: ``relu`` (StackGAN-Pytorch, the default) or ``leaky_relu`` (the StackGAN TF
            code's activation only: the second half is still read as the log-variance and eps is
            an untruncated normal, where the TF code reads log sigma and truncates).
    """

    def __init__(self, text_dim: int = 1024, condition_dim: int = 128, activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown CA activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}"
            )
        self.condition_dim = condition_dim
        self.fc = nn.Linear(text_dim, 2 * condition_dim)
        self.act = ACTIVATIONS[activation]()

    def encode(self, text_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each (B, condition_dim)."""
        mu, logvar = self.act(self.fc(text_emb)).chunk(2, dim=1)
        return mu, logvar

    def forward(
        self, text_emb: torch.Tensor, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(c, mu, logvar)``; ``eps`` (B, condition_dim) ~ N(0, I) is drawn when not given
        (pass it to make a sample reproducible)."""
        mu, logvar = self.encode(text_emb)
        if eps is None:
            eps = torch.randn_like(mu)
        return mu + eps.to(mu) * torch.exp(0.5 * logvar), mu, logvar


# ----------------------------------------------------------------------------- building blocks
def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3 x 3 stride-1 convolution without bias (BatchNorm follows, or Tanh at the output)."""
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)


def up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """x2 nearest-neighbour upsampling, 3 x 3 convolution, BatchNorm, ReLU (paper Sec. 3.4)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"), conv3x3(in_channels, out_channels),
        nn.BatchNorm2d(out_channels), nn.ReLU(),
    )  # fmt: skip


def down_block(in_channels: int, out_channels: int, batch_norm: bool = True) -> nn.Sequential:
    """4 x 4 stride-2 convolution, BatchNorm (not on the first block), LeakyReLU 0.2."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=False)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """``ReLU(x + [3x3, BN, ReLU, 3x3, BN](x))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            conv3x3(channels, channels), nn.BatchNorm2d(channels), nn.ReLU(),
            conv3x3(channels, channels), nn.BatchNorm2d(channels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.branch(x))


def image_encoder(image_size: int, ndf: int) -> tuple[nn.Sequential, int]:
    """D's image trunk down to 4 x 4: stride-2 blocks doubling the width from ``ndf`` (the first
    without BatchNorm). Returns the trunk and its output width ``ndf * image_size / 8``."""
    layers = [down_block(3, ndf, batch_norm=False)]
    c = ndf
    for _ in range(1, _levels(image_size)):
        layers.append(down_block(c, 2 * c))
        c *= 2
    return nn.Sequential(*layers), c


class ConditionalLogits(nn.Module):
    """D's text-conditioned head: the condition replicated 4 x 4 and joined to the image
    features, 3 x 3 convolution + BN + LeakyReLU, then a 4 x 4 stride-4 convolution (with bias,
    as in the authors' code) to one logit.

    Args:
        channels: width of the 4 x 4 image features.
        condition_dim: size of the condition (the generator's CA mean).
    """

    def __init__(self, channels: int, condition_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            conv3x3(channels + condition_dim, channels), nn.BatchNorm2d(channels),
            nn.LeakyReLU(0.2), nn.Conv2d(channels, 1, 4, 4),
        )  # fmt: skip

    def forward(self, features: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        cond = condition[:, :, None, None].expand(-1, -1, *features.shape[2:])  # (B, C_c, 4, 4)
        return self.net(torch.cat([features, cond], 1)).flatten()  # (B,)


# ----------------------------------------------------------------------------- networks
class Stage1Generator(nn.Module):
    """G-I(z, phi_t) (architectures.md table 3.3): c = CA(phi_t); [z, c] -> Linear (no bias) +
    BN1d + ReLU to ``8 * ngf`` channels at 4 x 4, then up-blocks halving the width up to
    ``image_size``, then 3 x 3 convolution + Tanh.

    Args:
        z_dim: noise size.
        text_dim: text embedding size.
        condition_dim: size of the CA condition c.
        ngf: the authors' GF_DIM; 4 x 4 features have ``8 * ngf`` channels.
        image_size: output side (a power of two >= 16; 64 in the paper).
        ca_activation: ``relu`` (StackGAN-Pytorch) or ``leaky_relu`` (StackGAN TF).
    """

    def __init__(
        self, z_dim: int = 100, text_dim: int = 1024, condition_dim: int = 128, ngf: int = 128,
        image_size: int = 64, ca_activation: str = "relu",
    ) -> None:  # fmt: skip
        super().__init__()
        n = _levels(image_size)
        c = 8 * ngf
        if c >> n < 1:
            raise ValueError(f"ngf={ngf} is too narrow for {n} up-blocks (8 * ngf / 2^{n} < 1)")
        self.z_dim = z_dim
        self.ca = ConditioningAugmentation(text_dim, condition_dim, ca_activation)
        self.fc = nn.Sequential(
            nn.Linear(z_dim + condition_dim, c * 16, bias=False), nn.BatchNorm1d(c * 16),
            nn.ReLU(),
        )  # fmt: skip
        self.width = c
        self.up = nn.Sequential(*[up_block(c >> i, c >> (i + 1)) for i in range(n)])
        self.to_image = nn.Sequential(conv3x3(c >> n, 3), nn.Tanh())

    def forward(
        self, z: torch.Tensor, text_emb: torch.Tensor, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(images, mu, logvar)``: images (B, 3, S, S) in [-1, 1] and the CA statistics."""
        c, mu, logvar = self.ca(text_emb, eps)
        h = self.fc(torch.cat([z, c], 1)).view(-1, self.width, 4, 4)  # (B, 8 ngf, 4, 4)
        return self.to_image(self.up(h)), mu, logvar


class Stage1Discriminator(nn.Module):
    """D-I(x, mu) (table 3.3): image trunk to 4 x 4 and the conditional head; the condition is
    the generator's CA mean (detached), as in the authors' PyTorch code.

    Args:
        condition_dim: size of the condition.
        ndf: width of the first convolution (DF_DIM).
        image_size: input side (a power of two >= 16).
    """

    def __init__(self, condition_dim: int = 128, ndf: int = 64, image_size: int = 64) -> None:
        super().__init__()
        self.encode, c = image_encoder(image_size, ndf)
        self.cond_logits = ConditionalLogits(c, condition_dim)

    def forward(self, images: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, None]:
        """``(conditional logits (B,), None)``: Stage-I has no unconditional head."""
        return self.cond_logits(self.encode(images), condition), None


class Stage2Generator(nn.Module):
    """G-II(s_0, phi_t) (table 3.4): encode the Stage-I image to 1/4 of its side, join the
    Stage-II condition replicated spatially, 3 x 3 joint convolution, residual blocks, four
    up-blocks (x16) and 3 x 3 convolution + Tanh: the output side is 4x the input's.

    Args:
        text_dim: text embedding size.
        condition_dim: size of its own CA condition.
        ngf: the authors' GF_DIM (128): the widths are ngf, 2 ngf, 4 ngf, then 2 ngf ... ngf / 4.
        num_residual: residual blocks (the authors' R_NUM: 4 for 256 x 256).
        ca_activation: ``relu`` (StackGAN-Pytorch) or ``leaky_relu`` (StackGAN TF).
    """

    def __init__(
        self, text_dim: int = 1024, condition_dim: int = 128, ngf: int = 128,
        num_residual: int = 4, ca_activation: str = "relu",
    ) -> None:  # fmt: skip
        super().__init__()
        if ngf < 4 or ngf % 4:
            raise ValueError(
                f"Stage-II ngf must be a multiple of 4 (its last width is ngf / 4), got {ngf}"
            )
        self.ca = ConditioningAugmentation(text_dim, condition_dim, ca_activation)
        self.encode = nn.Sequential(
            conv3x3(3, ngf), nn.ReLU(),  # no BatchNorm on the first convolution
            nn.Conv2d(ngf, 2 * ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * ngf), nn.ReLU(),
            nn.Conv2d(2 * ngf, 4 * ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * ngf), nn.ReLU(),
        )  # fmt: skip
        self.joint = nn.Sequential(
            conv3x3(4 * ngf + condition_dim, 4 * ngf), nn.BatchNorm2d(4 * ngf), nn.ReLU()
        )
        self.residual = nn.Sequential(*[ResBlock(4 * ngf) for _ in range(num_residual)])
        self.up = nn.Sequential(
            up_block(4 * ngf, 2 * ngf), up_block(2 * ngf, ngf),
            up_block(ngf, ngf // 2), up_block(ngf // 2, ngf // 4),
        )  # fmt: skip
        self.to_image = nn.Sequential(conv3x3(ngf // 4, 3), nn.Tanh())

    def forward(
        self, stage1_images: torch.Tensor, text_emb: torch.Tensor, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(images, mu, logvar)``: images (B, 3, 4S, 4S) from Stage-I images (B, 3, S, S)."""
        h = self.encode(stage1_images)  # (B, 4 ngf, S/4, S/4)
        c, mu, logvar = self.ca(text_emb, eps)
        c = c[:, :, None, None].expand(-1, -1, *h.shape[2:])  # (B, condition_dim, S/4, S/4)
        h = self.residual(self.joint(torch.cat([h, c], 1)))
        return self.to_image(self.up(h)), mu, logvar


class Stage2Discriminator(nn.Module):
    """D-II(x, mu) (table 3.4): image trunk to 4 x 4 (up to ``32 ndf`` channels at 256 x 256),
    3 x 3 convolutions + BN + LeakyReLU halving the width back to ``8 ndf``, then a conditional
    and an unconditional head (4 x 4 stride-4 convolution with bias).

    Args:
        condition_dim: size of the condition.
        ndf: width of the first convolution (DF_DIM).
        image_size: input side (a power of two >= 16; 256 in the paper).
    """

    def __init__(self, condition_dim: int = 128, ndf: int = 64, image_size: int = 256) -> None:
        super().__init__()
        trunk, c = image_encoder(image_size, ndf)
        layers = list(trunk)
        while c > 8 * ndf:  # 32 ndf -> 16 ndf -> 8 ndf at 256 x 256
            layers += [conv3x3(c, c // 2), nn.BatchNorm2d(c // 2), nn.LeakyReLU(0.2)]
            c //= 2
        self.encode = nn.Sequential(*layers)
        self.cond_logits = ConditionalLogits(c, condition_dim)
        self.uncond_logits = nn.Conv2d(c, 1, 4, 4)

    def forward(
        self, images: torch.Tensor, condition: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(conditional logits (B,), unconditional logits (B,))`` from one pass of the trunk."""
        h = self.encode(images)  # (B, C, 4, 4)
        return self.cond_logits(h, condition), self.uncond_logits(h).flatten()
