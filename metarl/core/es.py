"""Evolution strategies' gradient estimate, shared by meta-RL (ES-MAML, OpenAI-ES) and few-shot learning.

The search distribution is an isotropic Gaussian ``N(theta, sigma^2 I)`` sampled antithetically (Salimans et
al. 2017, "Evolution Strategies as a Scalable Alternative to Reinforcement Learning"; Song et al. 2020,
"ES-MAML: Simple Hessian-Free Meta Learning"): for ``n`` directions ``eps_i ~ N(0, I)`` the population is
``[theta + sigma eps_1, ..., theta + sigma eps_n, theta - sigma eps_1, ..., theta - sigma eps_n]`` and the
gradient of ``E[F(theta + sigma eps)]`` is estimated by

    g = sum_i (F(theta + sigma eps_i) - F(theta - sigma eps_i)) eps_i / (2 n sigma)

with the fitnesses optionally replaced by their centered ranks (fitness shaping). Everything is a function of
flat parameter vectors and an explicit ``torch.Generator``; evaluating the population is the caller's job (one
batched call), so that a distributed backend can evaluate it instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

FitnessShaping = Literal["centered_ranks", "none"]


def antithetic_directions(num_pairs: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """``(num_pairs, dim)`` standard-normal directions ``eps_i`` drawn from ``generator``."""
    if num_pairs < 1:
        raise ValueError(f"ES needs at least one pair of perturbations, got num_pairs={num_pairs}")
    return torch.randn(int(num_pairs), int(dim), generator=generator)


def antithetic_population(center: torch.Tensor, directions: torch.Tensor, sigma: float) -> torch.Tensor:
    """``(2 n, ..., dim)``: ``center + sigma eps_i`` for every direction, then ``center - sigma eps_i``.

    ``center`` is ``(dim,)`` or batched ``(B, dim)`` with ``directions`` ``(n, B, dim)`` (one population per row).
    """
    return torch.cat([center + sigma * directions, center - sigma * directions], dim=0)


def centered_ranks(values: torch.Tensor) -> torch.Tensor:
    """Fitness shaping of Salimans et al.: the ranks of ``values`` along the first axis scaled to
    ``[-0.5, 0.5]`` (lowest -> -0.5, highest -> 0.5), ties broken by position. Other axes are independent."""
    n = values.shape[0]
    if n < 2:
        return torch.zeros_like(values)
    ranks = torch.empty_like(values)
    order = torch.argsort(values, dim=0, stable=True)
    ranks.scatter_(
        0, order, torch.arange(n, dtype=values.dtype).reshape(-1, *[1] * (values.dim() - 1)).expand_as(values)
    )
    return ranks / (n - 1) - 0.5


def antithetic_gradient(
    directions: torch.Tensor,
    fitness: torch.Tensor,
    sigma: float,
    shaping: FitnessShaping = "centered_ranks",
) -> torch.Tensor:
    """The ES estimate of ``grad E[F(theta + sigma eps)]`` (ascent direction) from an antithetic population.

    Args:
        directions: ``(n, ..., dim)`` the directions ``eps_i`` of :func:`antithetic_population`.
        fitness: ``(2 n, ...)`` the fitness of each population member, in the population's order.
        sigma: the perturbation scale.
        shaping: ``"centered_ranks"`` replaces the fitnesses by :func:`centered_ranks` (over the whole
            population of each row) before the estimate; ``"none"`` uses them as they are.

    Returns:
        ``(..., dim)``: ``sum_i (F_i+ - F_i-) eps_i / (2 n sigma)``.
    """
    n = directions.shape[0]
    if fitness.shape[0] != 2 * n:
        raise ValueError(f"{n} directions need {2 * n} fitness values, got {fitness.shape[0]}")
    shaped = centered_ranks(fitness) if shaping == "centered_ranks" else fitness
    weights = (shaped[:n] - shaped[n:]).to(directions.dtype)
    return (weights.unsqueeze(-1) * directions).sum(0) / (2 * n * sigma)


def es_gradient(
    center: torch.Tensor,
    fitness_fn: Callable[[torch.Tensor], torch.Tensor],
    num_pairs: int,
    sigma: float,
    generator: torch.Generator,
    shaping: FitnessShaping = "centered_ranks",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ES gradient estimate at ``center`` (``(dim,)``): draw directions, evaluate the whole population with
    one call ``fitness_fn((2 n, dim)) -> (2 n,)``, return ``(gradient, fitness)``."""
    directions = antithetic_directions(num_pairs, center.numel(), generator).to(center.dtype)
    fitness = fitness_fn(antithetic_population(center.detach().reshape(-1), directions, sigma))
    return antithetic_gradient(directions, fitness, sigma, shaping).view_as(center), fitness
