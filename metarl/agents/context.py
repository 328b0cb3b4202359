"""PEARL's probabilistic context encoder: a permutation-invariant posterior q(z | c) over the task variable.

Rakelly et al. 2019, section 4.1: each transition ``c_n = (s, a, r[, s'])`` of a task's context is encoded by
one MLP into a Gaussian factor ``Psi(z | c_n) = N(mu_n, sigma_n^2)``; the posterior is their product,

    sigma^2 = 1 / sum_n (1 / sigma_n^2),      mu = sigma^2 * sum_n (mu_n / sigma_n^2),

which does not depend on the order of the transitions. It is trained through the critic's loss plus
``kl_lambda * KL(q(z | c) || N(0, I))`` (the information bottleneck).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from metarl.agents.sac import mlp

MIN_VARIANCE = 1e-7  # oyster's clamp of each factor's variance, so that no factor has infinite precision


def product_of_gaussians(
    means: torch.Tensor, variances: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the normalised product of diagonal Gaussian factors.

    Args:
        means: ``(..., N, L)`` the factors' means.
        variances: ``(..., N, L)`` their variances (clamped below at :data:`MIN_VARIANCE`).
        mask: ``(..., N)``: 1 for the factors that exist, 0 for padding (default: all exist).

    Returns:
        ``(mean, variance)``, each ``(..., L)``.
    """
    precisions = 1.0 / variances.clamp(min=MIN_VARIANCE)
    if mask is not None:
        precisions = precisions * mask.unsqueeze(-1).to(precisions.dtype)
    variance = 1.0 / precisions.sum(dim=-2)
    return variance * (means * precisions).sum(dim=-2), variance


def kl_to_standard_normal(mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, diag(variance)) || N(0, I))`` summed over the last axis."""
    return 0.5 * (variance + mean.square() - 1.0 - variance.log()).sum(dim=-1)


class ContextEncoder(nn.Module):
    """Maps a set of transitions per task to the Gaussian posterior ``q(z | c)``.

    Args:
        input_size: width of one context transition.
        hidden_sizes: hidden widths of the per-transition MLP (ReLU).
        latent_size: dimension of ``z``.
    """

    def __init__(self, input_size: int, hidden_sizes: Sequence[int], latent_size: int) -> None:
        super().__init__()
        self.latent_size = int(latent_size)
        self.net = mlp(input_size, hidden_sizes, 2 * self.latent_size)

    def forward(
        self, context: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, variance)`` of ``q(z | c)``, each ``(T, L)``, from ``context`` ``(T, N, input_size)`` (and a
        ``(T, N)`` mask of the transitions that exist)."""
        out = self.net(context)
        means, variances = out[..., : self.latent_size], F.softplus(out[..., self.latent_size :])
        return product_of_gaussians(means, variances, mask)


def sample_latent(mean: torch.Tensor, variance: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A reparameterised sample ``z = mean + sqrt(variance) * eps`` (gradients flow to mean and variance)."""
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
    return mean + variance.sqrt() * noise
