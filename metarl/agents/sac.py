"""Soft actor-critic as PEARL uses it (Haarnoja et al. 2018, the V-function version; oyster's sac.py).

Networks: a tanh-Gaussian policy ``pi(a | s, z)``, two Q networks ``Q_i(s, a, z)``, a value network ``V(s, z)`` and
its Polyak-averaged target. The entropy weight is fixed at 1 and the rewards are multiplied by ``reward_scale``
(oyster's formulation: a larger scale is a smaller entropy bonus). The losses, per transition:

    Q:      (Q_i(s, a, z) - (reward_scale * r + (1 - d) * gamma * V_target(s', z)))^2      for i = 1, 2
    V:      (V(s, z) - (min_i Q_i(s, a~, z) - log pi(a~ | s, z)))^2                       a~ ~ pi(. | s, z)
    policy: log pi(a~ | s, z) - min_i Q_i(s, a~, z)  (+ small penalties on the Gaussian's mean and log-std)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # oyster's clamp of the policy's log-std
TANH_EPSILON = 1e-6  # inside log(1 - tanh(u)^2 + eps), as oyster's TanhNormal
HIDDEN_BIAS = 0.1  # rlkit's initial bias of hidden layers
OUTPUT_INIT = 3e-3  # rlkit's uniform range of the output layer's initial weights and biases
POLICY_OUTPUT_INIT = 1e-3  # ... of the policy's output layers


def hidden_layers(input_size: int, hidden_sizes: Sequence[int]) -> nn.Sequential:
    """Linear + ReLU layers initialised as rlkit's: weights U(+-1/sqrt(fan_in)), biases 0.1."""
    layers: list[nn.Module] = []
    width = int(input_size)
    for hidden in hidden_sizes:
        layer = nn.Linear(width, int(hidden))
        bound = 1.0 / math.sqrt(width)
        nn.init.uniform_(layer.weight, -bound, bound)
        nn.init.constant_(layer.bias, HIDDEN_BIAS)
        layers += [layer, nn.ReLU()]
        width = int(hidden)
    return nn.Sequential(*layers)


def output_layer(input_size: int, output_size: int, init: float = OUTPUT_INIT) -> nn.Linear:
    """A linear output layer with weights and biases U(+-init), as rlkit's."""
    layer = nn.Linear(int(input_size), int(output_size))
    nn.init.uniform_(layer.weight, -init, init)
    nn.init.uniform_(layer.bias, -init, init)
    return layer


def mlp(input_size: int, hidden_sizes: Sequence[int], output_size: int) -> nn.Sequential:
    """ReLU MLP initialised as rlkit's (:func:`hidden_layers`, then :func:`output_layer`)."""
    width = int(hidden_sizes[-1]) if hidden_sizes else int(input_size)
    return nn.Sequential(*hidden_layers(input_size, hidden_sizes), output_layer(width, output_size))


class QNetwork(nn.Module):
    """``Q(s, a, z)`` or, without actions, ``V(s, z)``: an MLP over the concatenated inputs."""

    def __init__(self, input_size: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(input_size, hidden_sizes, 1)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The value ``(N,)`` of ``N`` concatenated inputs."""
        return self.net(torch.cat(inputs, dim=-1)).squeeze(-1)


class TanhGaussianPolicy(nn.Module):
    """``a = tanh(u)``, ``u ~ N(mean(x), std(x)^2)``: actions in ``[-1, 1]`` per dimension.

    Args:
        input_size: width of the input (observation and ``z``).
        hidden_sizes: hidden widths (ReLU).
        action_size: action dimension.
    """

    def __init__(self, input_size: int, hidden_sizes: Sequence[int], action_size: int) -> None:
        super().__init__()
        self.trunk = hidden_layers(input_size, hidden_sizes)
        width = int(hidden_sizes[-1]) if hidden_sizes else int(input_size)
        self.mean = output_layer(width, action_size, POLICY_OUTPUT_INIT)
        self.log_std = output_layer(width, action_size, POLICY_OUTPUT_INIT)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, log_std)`` of the Gaussian before the tanh."""
        hidden = self.trunk(inputs)
        return self.mean(hidden), self.log_std(hidden).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(
        self, inputs: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A reparameterised action and its log-probability.

        Returns:
            ``(action, log_prob, mean, log_std)``: ``action (N, A)``, ``log_prob (N,)``.
        """
        mean, log_std = self(inputs)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        pre_tanh = mean + log_std.exp() * noise
        return torch.tanh(pre_tanh), tanh_gaussian_log_prob(pre_tanh, mean, log_std), mean, log_std

    def deterministic(self, inputs: torch.Tensor) -> torch.Tensor:
        """``tanh(mean)``: the action evaluation plays (oyster's eval_deterministic)."""
        return torch.tanh(self(inputs)[0])


def tanh_gaussian_log_prob(pre_tanh: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """``log pi(tanh(u))`` summed over action dimensions: the Gaussian's log-density of ``u`` minus
    ``log(1 - tanh(u)^2 + eps)`` (the change of variables)."""
    gaussian = -0.5 * ((pre_tanh - mean) / log_std.exp()).square() - log_std - 0.5 * math.log(2 * math.pi)
    return (gaussian - torch.log(1.0 - torch.tanh(pre_tanh).square() + TANH_EPSILON)).sum(dim=-1)


def q_targets(
    rewards: torch.Tensor,
    terminals: torch.Tensor,
    next_values: torch.Tensor,
    reward_scale: float,
    gamma: float,
) -> torch.Tensor:
    """``reward_scale * r + (1 - d) * gamma * V_target(s', z)``: the Bellman target of both Q networks."""
    return reward_scale * rewards + (1.0 - terminals) * gamma * next_values


def value_targets(min_q_new_actions: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """``min_i Q_i(s, a~, z) - log pi(a~ | s, z)``: the soft value target (entropy weight 1)."""
    return min_q_new_actions - log_probs


def policy_loss(
    log_probs: torch.Tensor,
    min_q_new_actions: torch.Tensor,
    mean: torch.Tensor,
    log_std: torch.Tensor,
    regularization: float,
) -> torch.Tensor:
    """``E[log pi(a~ | s, z) - min_i Q_i(s, a~, z)]`` plus ``regularization * (E[mean^2] + E[log_std^2])``."""
    penalty = regularization * (mean.square().mean() + log_std.square().mean())
    return (log_probs - min_q_new_actions).mean() + penalty


@torch.no_grad()
def soft_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) * target + tau * source``, parameter by parameter."""
    for target_param, param in zip(target.parameters(), source.parameters(), strict=True):
        target_param.mul_(1.0 - tau).add_(param, alpha=tau)
