"""The recurrent actor-critic of RL^2: a GRU over a trial's augmented observations, an action head (the
Gaussian or categorical policy of :mod:`metarl.agents.policies` with no hidden layer: a linear map of the GRU's
state) and a value head.

The same module runs a trial one step at a time while sampling (:meth:`RecurrentActorCritic.act`, the hidden
state carried by the caller) and whole trials at once while learning (:meth:`RecurrentActorCritic.forward`, from
the zero state: full-trial recurrence, so the hidden states are recomputed with the current weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution

from metarl.agents.policies import MLPPolicy, make_policy


@dataclass
class StepOutput:
    """One step of :meth:`RecurrentActorCritic.act` for a batch of trials."""

    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    state: torch.Tensor


class RecurrentActorCritic(nn.Module):
    """GRU policy and value function over trials.

    Args:
        input_size: width of the augmented observation (:class:`metarl.envs.trials.TrialLayout`).
        action_space: ``Box`` (diagonal Gaussian head, state-independent log-std) or ``Discrete`` (categorical).
        hidden_size: GRU units.
        shared_gru: the value head reads the policy's GRU; otherwise it has its own GRU (the default of
            ``RL2Config``: the value loss cannot disturb the policy's memory).
        init_std: initial action std of a Gaussian head.
        min_std: floor of that std.
    """

    def __init__(
        self,
        input_size: int,
        action_space: gym.spaces.Space,
        hidden_size: int,
        shared_gru: bool = False,
        init_std: float = 1.0,
        min_std: float = 1e-6,
    ) -> None:
        super().__init__()
        self.hidden_size = int(hidden_size)
        self.gru = nn.GRU(int(input_size), self.hidden_size, batch_first=True)
        self.value_gru = None if shared_gru else nn.GRU(int(input_size), self.hidden_size, batch_first=True)
        hidden = gym.spaces.Box(-1.0, 1.0, shape=(self.hidden_size,), dtype=np.float32)
        self.head: MLPPolicy = make_policy(hidden, action_space, [], "tanh", init_std, min_std=min_std)
        self.value_head = nn.Linear(self.hidden_size, 1)
        # Running mean and std of the value targets: the head predicts standardised values, so returns of any
        # scale (Navigation2D's trials sum hundreds of rewards) are fitted at the pace of Adam's unit steps.
        self.register_buffer("value_mean", torch.zeros(()))
        self.register_buffer("value_var", torch.ones(()))
        self.register_buffer("value_count", torch.zeros((), dtype=torch.float64))

    @property
    def num_grus(self) -> int:
        return 1 if self.value_gru is None else 2

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """The zero state of ``batch_size`` trials, ``(num_grus, batch, hidden)``."""
        return torch.zeros(self.num_grus, int(batch_size), self.hidden_size)

    def _run(
        self, obs: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """GRU outputs of the policy and value sides for ``obs (B, L, D)``, and the new state."""
        policy_out, policy_state = self.gru(obs, None if state is None else state[:1].contiguous())
        if self.value_gru is None:
            return policy_out, policy_out, policy_state
        value_out, value_state = self.value_gru(obs, None if state is None else state[1:].contiguous())
        return policy_out, value_out, torch.cat([policy_state, value_state])

    def _value(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.value_head(hidden).squeeze(-1) * self.value_var.sqrt() + self.value_mean

    def value_scale(self) -> torch.Tensor:
        """The running std of the value targets (the value loss is measured in its units)."""
        return self.value_var.sqrt()

    @torch.no_grad()
    def update_value_statistics(self, targets: torch.Tensor, mask: torch.Tensor) -> None:
        """Merge the value targets where ``mask`` is 1 into the running mean and variance (Chan et al.'s
        parallel update); called once per iteration before the PPO epochs."""
        count = mask.sum().double()
        if count == 0:
            return
        mean = ((targets * mask).sum() / count).double()
        var = (((targets - mean) ** 2 * mask).sum() / count).double()
        total = self.value_count + count
        delta = mean - self.value_mean.double()
        new_mean = self.value_mean.double() + delta * count / total
        moment = (
            self.value_var.double() * self.value_count
            + var * count
            + delta**2 * self.value_count * count / total
        )
        self.value_mean.copy_(new_mean)
        self.value_var.copy_((moment / total).clamp_min(1e-8))
        self.value_count.copy_(total)

    def forward(self, obs: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        """The action distributions and values at every step of whole trials ``obs (B, L, D)`` from the zero
        state; returns the distribution over ``(B, L)`` and values ``(B, L)``."""
        policy_out, value_out, _ = self._run(obs, None)
        return self.head.distribution(policy_out), self._value(value_out)

    def act(self, obs: torch.Tensor, state: torch.Tensor, generator: torch.Generator) -> StepOutput:
        """One step of ``B`` trials: actions drawn with ``generator`` at ``obs (B, D)`` given ``state``."""
        policy_out, value_out, state = self._run(obs.unsqueeze(1), state)
        dist = self.head.distribution(policy_out.squeeze(1))
        actions = self.head.sample(dist, generator)
        values = self._value(value_out.squeeze(1))
        return StepOutput(actions, dist.log_prob(actions), values, state)
