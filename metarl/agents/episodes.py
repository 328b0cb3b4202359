"""A batch of episodes for many tasks at once, and the return / advantage estimators.

Every array is shaped ``(tasks, episodes, horizon, ...)``. ``mask`` is 1 for the steps an episode really
took and 0 after it terminated (the batched env freezes finished copies), so every estimator below is a
masked one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Episodes:
    """Episodes of ``num_tasks x episodes_per_task`` copies collected in one batched rollout.

    Attributes:
        observations: encoded observations before each action, ``(T, E, H, obs_size)`` float32.
        actions: the actions taken, ``(T, E, H, action_dim)`` float32 or ``(T, E, H)`` int64.
        rewards: rewards, ``(T, E, H)`` float32 (0 after an episode ended).
        mask: 1.0 where the step was taken, ``(T, E, H)`` float32.
        task_feature_size: how many trailing observation columns are the task's features (the oracle's extra
            inputs, the same at every step of a task); 0 when the policy sees only the env's observation.
        successes: the env's per-step success flag ``info["success"]``, ``(T, E, H)`` float32, or ``None`` for an
            env that reports none.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor
    task_feature_size: int = 0
    successes: torch.Tensor | None = None

    def env_observations(self) -> torch.Tensor:
        """The observations without the appended task features, ``(T, E, H, obs_size - task_feature_size)``."""
        return self.observations[..., : self.observations.shape[-1] - self.task_feature_size]

    @property
    def num_tasks(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def num_steps(self) -> int:
        """Environment steps actually taken (masked steps excluded)."""
        return int(self.mask.sum().item())

    def episode_returns(self) -> torch.Tensor:
        """Undiscounted return of each episode, ``(T, E)``."""
        return (self.rewards * self.mask).sum(-1)

    def task_returns(self) -> torch.Tensor:
        """Mean undiscounted episode return of each task, ``(T,)``."""
        return self.episode_returns().mean(-1)

    def episode_successes(self) -> torch.Tensor | None:
        """1.0 for the episodes that succeeded at any step, as Meta-World's evaluation counts them, ``(T, E)``
        (``None`` when the env reports no success)."""
        if self.successes is None:
            return None
        return ((self.successes * self.mask) > 0).any(-1).float()

    def task_success_rates(self) -> torch.Tensor | None:
        """Fraction of each task's episodes that succeeded, ``(T,)`` (``None`` when the env reports none)."""
        successes = self.episode_successes()
        return None if successes is None else successes.mean(-1)


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Reward-to-go ``G_t = sum_k gamma^k r_{t+k}`` along the last axis, zero where ``mask`` is 0."""
    rewards = rewards * mask
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + gamma * running
        out[..., t] = running
    return out * mask


def generalized_advantages(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, gae_lambda: float
) -> torch.Tensor:
    """GAE(gamma, lambda) along the last axis (Schulman et al. 2016), zero where ``mask`` is 0.

    The value after the last step (terminal or horizon) is taken as 0, as in the MAML-RL references; with
    ``gae_lambda=1`` this is the discounted return minus the baseline.
    """
    values = values * mask
    rewards = rewards * mask
    next_values = torch.cat([values[..., 1:], torch.zeros_like(values[..., :1])], dim=-1)
    deltas = rewards + gamma * next_values - values
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = deltas[..., t] + gamma * gae_lambda * running
        out[..., t] = running
    return out * mask


def normalize_per_task(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Standardise ``(T, ...)`` values over the valid entries of each task separately."""
    dims = tuple(range(1, values.dim()))
    count = mask.sum(dims, keepdim=True).clamp_min(1.0)
    mean = (values * mask).sum(dims, keepdim=True) / count
    var = (((values - mean) * mask) ** 2).sum(dims, keepdim=True) / count
    return (values - mean) / (var.sqrt() + eps) * mask


def discount_matrix(horizon: int, discount: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Lower-triangular ``(H, H)`` matrix ``L[t, s] = discount^(t - s)`` for ``s <= t``, else 0: ``x @ L.T`` is the
    discounted cumulative sum ``sum_{s <= t} discount^(t - s) x_s`` along the last axis (``discount=0``: identity)."""
    steps = torch.arange(horizon, dtype=dtype)
    lags = steps.unsqueeze(1) - steps.unsqueeze(0)
    return torch.where(lags >= 0, torch.tensor(discount, dtype=dtype).pow(lags.clamp_min(0)), 0.0)


def masked_task_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``(T, ...)`` values over the valid entries of each task, ``(T,)``."""
    dims = tuple(range(1, values.dim()))
    return (values * mask).sum(dims) / mask.sum(dims).clamp_min(1.0)
