"""GAN objectives shared by the papers, as plain functions on discriminator logits.

The authors' code applies a sigmoid in D and ``nn.BCECriterion``; here D returns logits and the
losses use ``binary_cross_entropy_with_logits`` (same optimum, numerically safer, and allowed
under autocast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def bce(logits: torch.Tensor, target: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean binary cross-entropy of ``logits`` against a constant label."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target), weight)


def d_loss_matching_aware(
    real_logits: torch.Tensor,
    wrong_logits: torch.Tensor | None,
    fake_logits: torch.Tensor,
    cls_weight: float = 0.5,
) -> torch.Tensor:
    """Matching-aware discriminator loss (GAN-CLS, Reed et al. 2016, Algorithm 1).

    ``BCE(real, 1) + cls_weight * BCE(wrong, 0) + (1 - cls_weight) * BCE(fake, 0)``: with the
    default 0.5 this is the paper's ``real + (wrong + fake) / 2``; ``cls_weight = 0`` is a plain
    conditional GAN (the wrong pair is not scored).
    """
    loss = bce(real_logits, 1.0) + (1.0 - cls_weight) * bce(fake_logits, 0.0)
    if cls_weight > 0:
        loss = loss + cls_weight * bce(wrong_logits, 0.0)
    return loss


def g_loss_nonsaturating(
    fake_logits: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Non-saturating generator loss ``BCE(D(G(z, t)), 1)``, optionally weighted per sample."""
    return bce(fake_logits, 1.0, weight)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` of conditioning augmentation, averaged over the
    batch *and* the condition dimensions, as StackGAN's code does (not summed over dimensions):
    ``mean(-(1 + logvar - mu^2 - exp(logvar)) / 2)``. Always >= 0."""
    mu, logvar = mu.float(), logvar.float()
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean()


# ------------------------------------------------------------------------ StackGAN (Zhang et al.)
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
