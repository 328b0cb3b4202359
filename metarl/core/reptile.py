"""The Reptile meta-update (Nichol et al. 2018): move the meta-parameters toward the adapted ones."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from metarl.core.params import Params


def _check_same_keys(meta: Mapping[str, torch.Tensor], adapted: Sequence[Mapping[str, torch.Tensor]]) -> None:
    if not adapted:
        raise ValueError("reptile needs at least one adapted parameter set")
    for i, phi in enumerate(adapted):
        if set(phi) != set(meta):
            raise ValueError(f"adapted set {i} has parameters {sorted(phi)}, expected {sorted(meta)}")


def reptile_direction(
    meta: Mapping[str, torch.Tensor], adapted: Sequence[Mapping[str, torch.Tensor]]
) -> Params:
    """``mean_i(phi_i) - theta`` per parameter (detached)."""
    _check_same_keys(meta, adapted)
    return {n: torch.stack([phi[n].detach() for phi in adapted]).mean(0) - meta[n].detach() for n in meta}


def reptile_update(
    meta: Mapping[str, torch.Tensor], adapted: Sequence[Mapping[str, torch.Tensor]], step_size: float
) -> Params:
    """Return ``theta + step_size * (mean_i(phi_i) - theta)``; the inputs are left untouched."""
    direction = reptile_direction(meta, adapted)
    return {n: meta[n].detach() + step_size * direction[n] for n in meta}


def reptile_gradient(
    meta: Mapping[str, torch.Tensor], adapted: Sequence[Mapping[str, torch.Tensor]]
) -> Params:
    """The Reptile update as a pseudo-gradient ``theta - mean(phi)``, to hand to any torch optimizer."""
    return {n: -d for n, d in reptile_direction(meta, adapted).items()}


def linear_anneal(step_size: float, iteration: int, total_iterations: int, final: float = 0.0) -> float:
    """Linearly anneal the outer step size from ``step_size`` to ``final`` over the run (Reptile paper)."""
    frac = min(max(iteration / max(total_iterations, 1), 0.0), 1.0)
    return step_size + frac * (final - step_size)
