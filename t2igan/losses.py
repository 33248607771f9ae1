"""GAN objectives shared by the papers, as plain functions on discriminator logits.

The authors' code applies a sigmoid in D and ``nn.BCECriterion``; here D returns logits and the
losses use ``binary_cross_entropy_with_logits`` (same optimum, numerically safer, and allowed
under autocast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
