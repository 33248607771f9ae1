"""StackGAN: Zhang et al., "StackGAN: Text to Photo-realistic Image Synthesis with Stacked
Generative Adversarial Networks", ICCV 2017 (arXiv:1612.03242).

Implements Conditioning Augmentation with its KL term (Sec. 3.1, Eq. 3-6), the Stage-I GAN that
draws 64 x 64 images from text and noise (Sec. 3.2, Eq. 3-4) and the Stage-II GAN that refines
them to 256 x 256 with the text again, Stage-I fixed (Sec. 3.3, Eq. 5-6). The networks are those
of the authors' PyTorch code (hanzhanggit/StackGAN-Pytorch ``model.py``, architectures.md 3.3-3.4):
with the birds/flowers widths (``ngf=128, ndf=64``, condition 128, z 100, 4 residual blocks,
1024-d text) the parameter counts are the authors'. Training settings follow the authors'
CUB / Oxford-102 configs (the TensorFlow repository's ``stageI/cfg/birds.yml`` and
``stageII/cfg/birds.yml``): batch 64, Adam 2e-4 / 0.5, 600 + 600 epochs, the learning rate halved
every 50 epochs in Stage-I and every 100 in Stage-II, KL weight 2.0. Where paper and code differ,
the default follows the code (docs/stackgan.md lists every difference).

Three LightningModules:

* :class:`StackGANStage1` trains Stage-I.
* :class:`StackGANStage2` trains Stage-II on a frozen Stage-I loaded from a Stage-I checkpoint.
* :class:`StackGAN` trains both in one run: Stage-I for ``stage1_epochs`` epochs, then Stage-II.

The noise of one sample is all of its randomness: ``z`` and the conditioning-augmentation draws
``eps`` (one per stage), so ``sample(text_emb, noise)`` is deterministic and a fixed noise vector
fixes the whole picture. ``noise = [z, eps_1]`` (Stage-I) or ``[z, eps_1, eps_2]`` (Stage-II);
``z_dim`` of the sampling interface is that total length.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from t2igan.losses import bce, d_loss_matching_aware, kl_divergence
from t2igan.models.base import TextToImageGAN, read_checkpoint
from t2igan.nn import doublings_from_4x4, init_dcgan_weights


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


# ----------------------------------------------------------------------------- objectives
def stackgan_d_loss(
    discriminator: nn.Module,
    real: torch.Tensor,
    wrong: torch.Tensor,
    fake: torch.Tensor,
    condition: torch.Tensor,
) -> tuple[torch.Tensor, dict]:
    """Matching-aware D loss of either stage (StackGAN-Pytorch ``compute_discriminator_loss``).

    Positives: real images with their condition; negatives: wrong (real, other class) images and
    fakes with it. Three separate D passes, so each normalises with its own batch statistics.
    Stage-I: ``r + (w + f) / 2``. Stage-II (with its unconditional head u):
    ``(r_c + r_u) / 2 + (f_c + w_c + f_u) / 3``.
    """
    real_c, real_u = discriminator(real, condition)
    wrong_c, _ = discriminator(wrong, condition)
    fake_c, fake_u = discriminator(fake, condition)
    if real_u is None:
        loss = d_loss_matching_aware(real_c, wrong_c, fake_c, cls_weight=0.5)
    else:
        loss = (bce(real_c, 1.0) + bce(real_u, 1.0)) / 2 + (
            bce(fake_c, 0.0) + bce(wrong_c, 0.0) + bce(fake_u, 0.0)
        ) / 3
    logs = {f"train/d_{k}": torch.sigmoid(v.float()).mean()
            for k, v in (("real", real_c), ("wrong", wrong_c), ("fake", fake_c))}  # fmt: skip
    return loss, logs


def stackgan_g_loss(
    discriminator: nn.Module,
    fake: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    kl_weight: float,
) -> tuple[torch.Tensor, dict]:
    """``BCE(D_c(fake), 1) [+ BCE(D_u(fake), 1)] + kl_weight * KL``; D sees the CA mean
    detached, as in the authors' code, so only the KL term and c reach the CA through mu."""
    fake_c, fake_u = discriminator(fake, mu.detach())
    adversarial = bce(fake_c, 1.0)
    if fake_u is not None:
        adversarial = adversarial + bce(fake_u, 1.0)
    kl = kl_divergence(mu, logvar)
    return adversarial + kl_weight * kl, {"train/kl": kl}


@contextmanager
def _eval_mode(module: nn.Module):
    """Run ``module`` in eval mode (running BatchNorm statistics), then restore its mode."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


# ----------------------------------------------------------------------------- Stage-I
def _same_size(images: torch.Tensor) -> torch.Tensor:
    return images


class _Phase(NamedTuple):
    """What a StackGAN model trains now: one phase for each stage model, two in succession
    (Stage-I, then Stage-II) for :class:`StackGAN`."""

    generator: nn.Module  # the G being trained
    discriminator: nn.Module  # its D, conditioned on this G's CA mean
    run: Callable  # (G, text_emb, noise) -> (images, mu, logvar) at the phase's side
    resize: Callable[[torch.Tensor], torch.Tensor]  # data images -> the phase's side
    optimisers: slice = slice(0, 2)  # the phase's [D, G] pair in configure_optimizers' list


class _CAConditioned(TextToImageGAN):
    """What every StackGAN stage shares: D is conditioned on G's CA mean, and the losses of
    :func:`stackgan_d_loss` / :func:`stackgan_g_loss` on the networks of :meth:`_phase`."""

    def _phase(self) -> _Phase:
        """The networks being trained and how they draw (one phase here)."""
        return _Phase(self.generator, self.discriminator, self._run, _same_size)

    def generate(self, generator: nn.Module, text_emb: torch.Tensor, noise: torch.Tensor):
        return self._run(generator, text_emb, noise)[0]

    def discriminate(self, images: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """Conditional logits (B,); D is conditioned on the trained G's CA mean of ``text_emb``."""
        phase = self._phase()
        mu, _ = phase.generator.ca.encode(text_emb)
        return phase.discriminator(phase.resize(images), mu)[0]

    def discriminator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        phase = self._phase()
        text = batch["text_emb"]
        fake, mu, _ = phase.run(phase.generator, text, self.sample_noise(len(text)))
        return stackgan_d_loss(
            phase.discriminator, phase.resize(batch["images"]),
            phase.resize(batch["wrong_images"]), fake.detach(), mu.detach(),
        )  # fmt: skip

    def generator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        phase = self._phase()
        text = batch["text_emb"]
        fake, mu, logvar = phase.run(phase.generator, text, self.sample_noise(len(text)))
        return stackgan_g_loss(phase.discriminator, fake, mu, logvar, self.hparams.kl_weight)


class StackGANStage1(_CAConditioned):
    """StackGAN Stage-I: 64 x 64 images from text (Zhang et al. 2017, Sec. 3.2).

    Sampling noise: ``[z, eps]`` of size ``z_dim + condition_dim`` (``self.z_dim``).

    Args:
        text_dim: text embedding size (linked from the data module).
        image_size: image side (linked from the data module; the paper's 64).
        z_dim: size of z (N_z = 100).
        condition_dim: size of the CA condition (N_g = 128).
        ngf: generator width, the authors' GF_DIM (128): 4 x 4 features have ``8 * ngf``
            channels.
        ndf: discriminator width, the authors' DF_DIM (64).
        kl_weight: weight of the CA's KL term in G's loss (the authors' code: 2.0).
        ca_activation: after CA's linear layer: ``relu`` (StackGAN-Pytorch, the default) or
            ``leaky_relu`` (StackGAN TF).
        lr: Adam learning rate for G and D.
        beta1: Adam beta1.
        beta2: Adam beta2.
        lr_decay_every: epochs between learning-rate halvings (birds/flowers configs: 50; the
            paper says 100).
        lr_decay: learning-rate factor at each decay.
        ema_decay: if set, keep an EMA of G with this decay and sample from it (not in the paper).
        text_encoder: set by the CLI from the data module: how captions were embedded, so
            ``t2igan generate`` embeds new captions the same way.
    """

    def __init__(
        self,
        text_dim: int = 1024,
        image_size: int = 64,
        z_dim: int = 100,
        condition_dim: int = 128,
        ngf: int = 128,
        ndf: int = 64,
        kl_weight: float = 2.0,
        ca_activation: str = "relu",
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lr_decay_every: int = 50,
        lr_decay: float = 0.5,
        ema_decay: float | None = None,
        text_encoder: dict | None = None,
    ) -> None:
        super().__init__(
            text_dim=text_dim, image_size=image_size, z_dim=z_dim + condition_dim, lr=lr,
            beta1=beta1, beta2=beta2, lr_decay_every=lr_decay_every, lr_decay=lr_decay,
            ema_decay=ema_decay, text_encoder=text_encoder,
        )  # fmt: skip
        self.save_hyperparameters()
        self.set_networks(
            Stage1Generator(z_dim, text_dim, condition_dim, ngf, image_size, ca_activation),
            Stage1Discriminator(condition_dim, ndf, image_size),
            init_linear=True,  # the authors' weights_init draws Linear weights from N(0, 0.02)
        )

    def _run(self, generator: nn.Module, text_emb: torch.Tensor, noise: torch.Tensor):
        z, eps = noise.split([self.hparams.z_dim, self.hparams.condition_dim], 1)
        return generator(z, text_emb, eps)


# ----------------------------------------------------------------------------- Stage-II
def read_stage1_checkpoint(path: str | Path) -> tuple[dict, dict, dict | None]:
    """``(generator args, generator state dict, text encoder spec)`` of a
    :class:`StackGANStage1` checkpoint (its EMA generator when it kept one: the one it samples
    with)."""
    how = ("train Stage-I first (t2igan fit --config experiments/stackgan_stage1.yaml) and pass "
           "its checkpoint, e.g. --model.init_args.stage1_ckpt "
           "runs/stackgan_stage1/checkpoints/last.ckpt")  # fmt: skip
    ckpt, class_path = read_checkpoint(path, "stage1_ckpt", how)
    if not class_path.endswith(".StackGANStage1"):
        raise ValueError(
            f"{path} is a {class_path} checkpoint; Stage-II needs a StackGANStage1 checkpoint "
            "(experiments/stackgan_stage1.yaml)"
        )
    hp = ckpt["hyper_parameters"]
    args = {k: hp[k] for k in ("z_dim", "text_dim", "condition_dim", "ngf", "image_size",
                               "ca_activation")}  # fmt: skip
    state = ckpt["state_dict"]
    prefix = "generator_ema.module." if hp.get("ema_decay") else "generator."
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return args, weights, hp.get("text_encoder")


class _StackedGAN(_CAConditioned):
    """What :class:`StackGANStage2` and :class:`StackGAN` share: Stage-II's networks on top of a
    Stage-I generator, sampling through both stages, and Stage-II's losses. Subclasses build
    the networks with :meth:`_set_stage2_networks`."""

    def _set_stage2_networks(self, stage1_generator: Stage1Generator) -> None:
        hp = self.hparams
        self.set_networks(
            Stage2Generator(hp.text_dim, hp.condition_dim, hp.ngf, hp.num_residual,
                            hp.ca_activation),
            Stage2Discriminator(hp.condition_dim, hp.ndf, hp.image_size),
            init_linear=True,
        )  # fmt: skip
        # StackGAN trains Stage-I from this init; StackGANStage2 then loads Stage-I's checkpoint
        init_dcgan_weights(stage1_generator, linear=True)
        self.stage1_generator = stage1_generator
        # noise = [z, eps_1, eps_2]: Stage-I's z and CA draw, then Stage-II's CA draw
        self._noise_split = [stage1_generator.z_dim, stage1_generator.ca.condition_dim,
                             hp.condition_dim]  # fmt: skip
        if self.stage1_frozen():
            self.stage1_generator.requires_grad_(False).eval()

    def stage1_frozen(self) -> bool:
        """Whether Stage-I is fixed (always here; :class:`StackGAN` trains it first)."""
        return True

    def train(self, mode: bool = True):
        super().train(mode)
        if self.stage1_frozen():  # the frozen Stage-I runs as at test time, whatever Lightning asks
            self.stage1_generator.eval()
        return self

    # ------------------------------------------------------------------- sampling
    def _stage1_images(self, text_emb: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        z, eps1, _ = noise.split(self._noise_split, 1)
        with torch.no_grad():  # Stage-I is fixed: its images reach Stage-II detached
            return self.stage1_generator(z, text_emb, eps1)[0]

    def _run(self, generator: nn.Module, text_emb: torch.Tensor, noise: torch.Tensor):
        eps2 = noise[:, -self._noise_split[2] :]
        return generator(self._stage1_images(text_emb, noise), text_emb, eps2)

    @torch.no_grad()
    def sample_stages(
        self, text_emb: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Stage-I images, Stage-II images)`` for the same text and noise, in [-1, 1]."""
        text_emb = text_emb.to(self.device, torch.float32)
        if noise is None:
            noise = self.sample_noise(len(text_emb))
        noise = noise.to(self.device, torch.float32)
        with _eval_mode(self.stage1_generator):
            low = self._stage1_images(text_emb, noise)
        return low.float().clamp(-1, 1), self.sample(text_emb, noise)


class StackGANStage2(_StackedGAN):
    """StackGAN Stage-II: 256 x 256 images refined from a frozen Stage-I (Sec. 3.3).

    The Stage-I generator is loaded once from ``stage1_ckpt``; its architecture then lives in
    this module's hyper-parameters (``stage1``) and its weights in this module's checkpoint, so
    ``t2igan generate`` and resuming need only the Stage-II checkpoint. It is frozen
    (``requires_grad=False`` before any DDP wrapping, so never synchronised, and not in G's
    optimiser) and always runs in eval mode (running BatchNorm statistics, as at test time);
    its images reach Stage-II detached. ``sample()`` returns Stage-II images;
    :meth:`sample_stages` returns both stages for the same noise.

    Sampling noise: ``[z, eps_1, eps_2]`` (Stage-I's z and CA draw, then Stage-II's CA draw).

    Args:
        stage1_ckpt: checkpoint of a trained :class:`StackGANStage1`.
        text_dim: text embedding size (linked from the data module; must be Stage-I's).
        image_size: image side (linked from the data module; 4x Stage-I's: the paper's 256).
        condition_dim: size of Stage-II's own CA condition (128).
        ngf: generator width, the authors' GF_DIM (128).
        ndf: discriminator width, the authors' DF_DIM (64).
        num_residual: residual blocks in G (the authors' R_NUM: 4 at 256 x 256).
        kl_weight: weight of the KL term of Stage-II's CA (the authors' code: 2.0).
        ca_activation: after CA's linear layer: ``relu`` (StackGAN-Pytorch) or ``leaky_relu``.
        lr: Adam learning rate for G and D.
        beta1: Adam beta1.
        beta2: Adam beta2.
        lr_decay_every: epochs between learning-rate halvings (authors' configs: 100).
        lr_decay: learning-rate factor at each decay.
        ema_decay: if set, keep an EMA of Stage-II's G and sample from it (not in the paper).
        text_encoder: set by the CLI from the data module (must be Stage-I's).
        stage1: filled in from ``stage1_ckpt`` (Stage-I generator's arguments) and stored in
            the checkpoint; leave it unset.
    """

    def __init__(
        self,
        stage1_ckpt: str | None = None,
        text_dim: int = 1024,
        image_size: int = 256,
        condition_dim: int = 128,
        ngf: int = 128,
        ndf: int = 64,
        num_residual: int = 4,
        kl_weight: float = 2.0,
        ca_activation: str = "relu",
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lr_decay_every: int = 100,
        lr_decay: float = 0.5,
        ema_decay: float | None = None,
        text_encoder: dict | None = None,
        stage1: dict | None = None,
    ) -> None:
        weights = None
        if stage1 is None:
            if stage1_ckpt is None:
                raise ValueError(
                    "StackGANStage2 needs the trained Stage-I: set stage1_ckpt "
                    "(--model.init_args.stage1_ckpt runs/stackgan_stage1/checkpoints/last.ckpt)"
                )
            stage1, weights, stage1_encoder = read_stage1_checkpoint(stage1_ckpt)
            if text_encoder is not None and stage1_encoder not in (None, text_encoder):
                raise ValueError(
                    f"the data's text encoder {text_encoder} differs from Stage-I's "
                    f"{stage1_encoder} ({stage1_ckpt}): train Stage-II on the captions Stage-I "
                    "was trained with"
                )
        if text_dim != stage1["text_dim"]:
            raise ValueError(
                f"text_dim {text_dim} differs from Stage-I's {stage1['text_dim']}: use the text "
                "embeddings Stage-I was trained with"
            )
        if image_size != 4 * stage1["image_size"]:
            raise ValueError(
                f"Stage-II draws 4x Stage-I's side: Stage-I is {stage1['image_size']} px, so "
                f"image_size must be {4 * stage1['image_size']}, got {image_size} "
                "(--data.image_size)"
            )
        super().__init__(
            text_dim=text_dim, image_size=image_size,
            z_dim=stage1["z_dim"] + stage1["condition_dim"] + condition_dim, lr=lr, beta1=beta1,
            beta2=beta2, lr_decay_every=lr_decay_every, lr_decay=lr_decay, ema_decay=ema_decay,
            text_encoder=text_encoder,
        )  # fmt: skip
        self.save_hyperparameters(ignore=["stage1"])
        self.hparams["stage1"] = stage1
        self._set_stage2_networks(Stage1Generator(**stage1))
        if weights is not None:
            self.stage1_generator.load_state_dict(weights)


# ----------------------------------------------------------------------------- both stages
class StackGAN(_StackedGAN):
    """Both StackGAN stages in one run: Stage-I for ``stage1_epochs`` epochs, then Stage-II on
    the frozen Stage-I for the remaining epochs (``trainer.max_epochs`` = 600 + 600 in the
    paper). One checkpoint holds both stages; it resumes in either phase.

    Data come at Stage-II's ``image_size`` (256); Stage-I trains on them area-downsampled to
    ``image_size / 4``. Each phase has its own pair of Adam optimisers and its own halving
    schedule, counted from the phase's first epoch. At the switch Stage-I is frozen
    (``requires_grad=False``, eval mode); a run resumed in Stage-II freezes it before DDP wraps
    the module, but one that crosses the switch under DDP keeps Stage-I registered for gradient
    sync (it gets no gradients; use ``ddp_find_unused_parameters_true``, as for every t2igan
    GAN), so for multi-GPU runs prefer the two stage configs.

    ``sample()`` draws from the phase being trained: Stage-I's images upsampled (nearest) to
    ``image_size`` during Stage-I, Stage-II's after.

    Args:
        text_dim: text embedding size (linked from the data module).
        image_size: Stage-II image side (linked from the data module; 256).
        stage1_epochs: epochs of Stage-I before Stage-II starts (600).
        z_dim: size of z (100).
        condition_dim: size of both stages' CA conditions (128).
        stage1_ngf: Stage-I generator width, GF_DIM (128).
        stage1_ndf: Stage-I discriminator width, DF_DIM (64).
        ngf: Stage-II generator width, GF_DIM (128).
        ndf: Stage-II discriminator width, DF_DIM (64).
        num_residual: residual blocks in Stage-II's G (4).
        kl_weight: weight of the KL terms (2.0).
        ca_activation: after CA's linear layers: ``relu`` (StackGAN-Pytorch) or ``leaky_relu``.
        lr: Adam learning rate for every network.
        beta1: Adam beta1.
        beta2: Adam beta2.
        stage1_lr_decay_every: Stage-I epochs between halvings (birds/flowers configs: 50; the
            paper says 100).
        lr_decay_every: Stage-II epochs between halvings (100).
        lr_decay: learning-rate factor at each decay.
        ema_decay: if set, keep an EMA of Stage-II's G and sample from it (not in the paper).
        text_encoder: set by the CLI from the data module.
    """

    def __init__(
        self,
        text_dim: int = 1024,
        image_size: int = 256,
        stage1_epochs: int = 600,
        z_dim: int = 100,
        condition_dim: int = 128,
        stage1_ngf: int = 128,
        stage1_ndf: int = 64,
        ngf: int = 128,
        ndf: int = 64,
        num_residual: int = 4,
        kl_weight: float = 2.0,
        ca_activation: str = "relu",
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        stage1_lr_decay_every: int = 50,
        lr_decay_every: int = 100,
        lr_decay: float = 0.5,
        ema_decay: float | None = None,
        text_encoder: dict | None = None,
    ) -> None:
        if image_size % 4:
            raise ValueError(f"image_size must be 4x Stage-I's side, got {image_size}")
        super().__init__(
            text_dim=text_dim, image_size=image_size, z_dim=z_dim + 2 * condition_dim,
            lr=lr, beta1=beta1, beta2=beta2, lr_decay_every=lr_decay_every, lr_decay=lr_decay,
            ema_decay=ema_decay, text_encoder=text_encoder,
        )  # fmt: skip
        self.save_hyperparameters()
        # Which phase the run is in: a buffer, so checkpoints (and DDP ranks) carry it.
        self.register_buffer("stage", torch.tensor(1))
        s1 = image_size // 4
        self._set_stage2_networks(
            Stage1Generator(z_dim, text_dim, condition_dim, stage1_ngf, s1, ca_activation)
        )
        self.stage1_discriminator = Stage1Discriminator(condition_dim, stage1_ndf, s1)
        init_dcgan_weights(self.stage1_discriminator, linear=True)

    def stage1_frozen(self) -> bool:
        return int(self.stage) == 2

    def start_stage2(self) -> None:
        """Switch to Stage-II: Stage-I (G and D) is frozen from here on."""
        self.stage.fill_(2)
        self.stage1_generator.requires_grad_(False).eval()
        self.stage1_discriminator.requires_grad_(False)

    def on_train_epoch_start(self) -> None:
        if not self.stage1_frozen() and self.current_epoch >= self.hparams.stage1_epochs:
            self.start_stage2()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        # Runs before DDP wraps the module: a run resumed in Stage-II never syncs Stage-I.
        if int(checkpoint["state_dict"].get("stage", 1)) == 2:
            self.start_stage2()

    def _phase(self) -> _Phase:
        """Stage-II's networks and optimisers once Stage-I is frozen; before, Stage-I's, on the
        data area-downsampled to Stage-I's side."""
        if self.stage1_frozen():
            return super()._phase()
        return _Phase(self.stage1_generator, self.stage1_discriminator, self._stage1_run,
                      self._downsample, optimisers=slice(2, 4))  # fmt: skip

    # The engine's training step and epoch end take "the" two optimisers and schedulers: give
    # them the current phase's ([D-II, G-II] in Stage-II, [D-I, G-I] in Stage-I).
    def optimizers(self, use_pl_optimizer: bool = True):
        return super().optimizers(use_pl_optimizer)[self._phase().optimisers]

    def lr_schedulers(self):
        return super().lr_schedulers()[self._phase().optimisers]

    def configure_optimizers(self):
        (opt_d, opt_g), schedulers = super().configure_optimizers()
        hp = self.hparams
        betas = (hp.beta1, hp.beta2)
        opt_d1 = torch.optim.Adam(self.stage1_discriminator.parameters(), lr=hp.lr, betas=betas)
        opt_g1 = torch.optim.Adam(self.stage1_generator.parameters(), lr=hp.lr, betas=betas)
        schedulers += [
            torch.optim.lr_scheduler.StepLR(opt, hp.stage1_lr_decay_every, gamma=hp.lr_decay)
            for opt in (opt_d1, opt_g1)
        ]
        return [opt_d, opt_g, opt_d1, opt_g1], schedulers

    # ------------------------------------------------------------------- Stage-I phase
    def _stage1_run(self, generator: nn.Module, text_emb: torch.Tensor, noise: torch.Tensor):
        z, eps1, _ = noise.split(self._noise_split, 1)
        return generator(z, text_emb, eps1)

    def _downsample(self, images: torch.Tensor) -> torch.Tensor:
        return F.interpolate(images, size=self.image_size // 4, mode="area")

    def generate(self, generator: nn.Module, text_emb: torch.Tensor, noise: torch.Tensor):
        if self.stage1_frozen():  # sample() hands over G-II or its EMA copy
            return super().generate(generator, text_emb, noise)
        # Stage-I phase: Stage-I's images (eval mode, as sample() runs G), upsampled to the side
        # of the data so that every sample of the run has one size
        with _eval_mode(self.stage1_generator):
            low = self._stage1_run(self.stage1_generator, text_emb, noise)[0]
        return F.interpolate(low, size=self.image_size, mode="nearest")
