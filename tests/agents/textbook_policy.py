"""The tiny problem and the written-out Gaussian policy that the textbook tests of MAML-TRPO and ProMP share: they
check the agents against independent code, so nothing here comes from ``metarl.agents``' policies or losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Normal

from metarl.agents.episodes import Episodes

TASKS, EPISODES, HORIZON = 3, 4, 6


def random_episodes(gen: torch.Generator) -> Episodes:
    shape = (TASKS, EPISODES, HORIZON)
    mask = torch.ones(shape, dtype=torch.float64)
    mask[0, 1, 4:] = 0.0  # one episode reached its goal early
    rewards = -torch.rand(shape, generator=gen, dtype=torch.float64) * mask
    return Episodes(
        observations=0.3 * torch.randn(*shape, 2, generator=gen, dtype=torch.float64),
        actions=torch.randn(*shape, 2, generator=gen, dtype=torch.float64),
        rewards=rewards,
        mask=mask,
    )


def gaussian_policy(params: list[torch.Tensor], obs: torch.Tensor) -> Normal:
    """The agents' policy written out: tanh hidden layers, linear mean, state-independent log-std."""
    *layers, log_std = params
    x = obs
    for i in range(0, len(layers), 2):
        x = F.linear(x, layers[i], layers[i + 1])
        if i + 2 < len(layers):
            x = torch.tanh(x)
    return Normal(x, log_std.exp().expand_as(x))


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum()
