"""Conditioning Augmentation (Zhang et al., "StackGAN", ICCV 2017, arXiv:1612.03242, Sec. 3.1).

The text embedding is mapped to the mean and log-variance of a diagonal Gaussian, and the
condition is a sample ``c = mu + eps * sigma``: small changes of the text then cover a
neighbourhood of conditions instead of a point. The KL term that keeps the Gaussian near N(0, I)
is :func:`t2igan.losses.kl_divergence`.
"""

from __future__ import annotations

import torch
from torch import nn

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
        activation: ``relu`` (StackGAN-Pytorch, the default) or ``leaky_relu`` (StackGAN TF).
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
