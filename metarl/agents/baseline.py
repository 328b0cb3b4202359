"""The linear feature baseline of rllab / MAML, fitted per task by regularised least squares.

Features of the step at time ``t`` with observation ``o``: ``[o, o^2, a, a^2, a^3, 1]`` with
``a = t / 100`` (observations clipped to [-10, 10]), as in rllab's ``LinearFeatureBaseline`` used by
cbfinn/maml_rl and pytorch-maml-rl. All tasks are fitted at once with a batched Cholesky solve in float64;
the ridge term grows tenfold until every task's system is positive definite with a finite solution, and a
task that still fails gets a zero baseline, so the fit never returns NaN.
"""

from __future__ import annotations

import torch

from metarl.agents.episodes import Episodes, discounted_returns


def baseline_features(observations: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Features ``(T, E, H, 2 * obs_size + 4)`` of every step, zero where ``mask`` is 0."""
    obs = observations.to(torch.float64).clamp(-10.0, 10.0)
    horizon = obs.shape[2]
    time = (
        (torch.arange(horizon, dtype=torch.float64) / 100.0)
        .reshape(1, 1, horizon, 1)
        .expand(*obs.shape[:3], 1)
    )
    ones = torch.ones_like(time)
    features = torch.cat([obs, obs**2, time, time**2, time**3, ones], dim=-1)
    return features * mask.to(torch.float64).unsqueeze(-1)


def fit_linear(
    features: torch.Tensor,
    targets: torch.Tensor,
    reg_coeff: float = 1e-5,
    max_attempts: int = 10,
) -> torch.Tensor:
    """Per-task ridge regression: coefficients ``(T, F)`` minimising ``||X w - y||^2 + reg ||w||^2``.

    Args:
        features: ``(T, N, F)`` design matrices (masked rows are zero and do not count).
        targets: ``(T, N)`` regression targets.
        reg_coeff: initial ridge coefficient; multiplied by 10 for the tasks whose system is not positive
            definite or whose solution is not finite.
        max_attempts: number of ridge increases before a task falls back to zero coefficients.
    """
    features = features.to(torch.float64)
    targets = targets.to(torch.float64)
    num_features = features.shape[-1]
    gram = features.transpose(1, 2) @ features
    rhs = (features.transpose(1, 2) @ targets.unsqueeze(-1)).squeeze(-1)
    eye = torch.eye(num_features, dtype=torch.float64)
    coeffs = torch.zeros(features.shape[0], num_features, dtype=torch.float64)
    pending = torch.ones(features.shape[0], dtype=torch.bool)
    reg = float(reg_coeff)
    for _ in range(max_attempts):
        idx = pending.nonzero().squeeze(-1)
        # The ridge system is symmetric positive definite: Cholesky. (Also, torch's batched LU returns invalid
        # pivots for systems of about 400+ features once torch.set_num_threads(2+) is called, as with
        # torch_threads=2; TabularMDP's oracle has 1124 features.)
        cholesky, info = torch.linalg.cholesky_ex(gram[idx] + reg * eye)
        solution = torch.cholesky_solve(rhs[idx].unsqueeze(-1), cholesky).squeeze(-1)
        ok = (info == 0) & torch.isfinite(solution).all(-1)
        coeffs[idx[ok]] = solution[ok]
        pending[idx[ok]] = False
        if not pending.any():
            break
        reg *= 10.0
    return coeffs


class LinearFeatureBaseline:
    """State-value estimate linear in hand-made features, refitted on every batch of episodes.

    Args:
        reg_coeff: initial ridge coefficient (rllab: 1e-5).
    """

    def __init__(self, reg_coeff: float = 1e-5) -> None:
        self.reg_coeff = float(reg_coeff)

    def fit_predict(self, episodes: Episodes, gamma: float) -> torch.Tensor:
        """Fit one baseline per task on its discounted returns and return the values ``(T, E, H)`` (float32).

        The features are those of the env's own observation (:meth:`Episodes.env_observations`).
        """
        # A task's features are constant within the task, so they add nothing to its own fit: leave them out
        # (TabularMDP's 550 of them would grow the oracle's system from 24 to 1124 features).
        features = baseline_features(episodes.env_observations(), episodes.mask)
        returns = discounted_returns(
            episodes.rewards.to(torch.float64), episodes.mask.to(torch.float64), gamma
        )
        num_tasks = features.shape[0]
        flat_features = features.reshape(num_tasks, -1, features.shape[-1])
        coeffs = fit_linear(flat_features, returns.reshape(num_tasks, -1), self.reg_coeff)
        values = (features @ coeffs.reshape(num_tasks, 1, -1, 1)).squeeze(-1)
        return values.to(torch.float32) * episodes.mask
