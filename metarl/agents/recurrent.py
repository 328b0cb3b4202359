"""The recurrent actor-critic of RL^2: a GRU over a trial's augmented observations, an action head (the
Gaussian or categorical policy of :mod:`metarl.agents.policies` with no hidden layer: a linear map of the GRU's
state) and a value head.

Learning runs whole trials at once (:meth:`RecurrentActorCritic.forward`, from the zero state: full-trial
recurrence, so the hidden states are recomputed with the current weights), the GRUs' recurrence in
:func:`metarl.agents.fused_gru.stacked_gru` (compiled, with its own backward pass) on ``torch.nn.GRU``
parameters. Sampling runs a trial one step at a time, the hidden state carried by the caller, in
:class:`metarl.agents.recurrent_step.RecurrentStep` (the same cell, one compiled call per step).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution

from metarl.agents.fused_gru import stacked_gru
from metarl.agents.policies import MLPPolicy, make_policy

OBSERVATION_CLIP = 10.0  # standardised inputs are clipped to +-10, as SB3's VecNormalize does


class RunningMoments(nn.Module):
    """Running mean and variance of values of a fixed trailing shape (buffers, so they are checkpointed), merged
    batch by batch with Chan et al.'s parallel update; mean 0 and variance 1 before the first batch.

    Args:
        shape: the trailing shape of the values (``()`` for scalars, ``(D,)`` for features).
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def std(self) -> torch.Tensor:
        return self.var.sqrt()

    def standardize(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / self.std()

    @torch.no_grad()
    def update(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        """Merge the entries of ``values`` where ``mask`` (their leading shape) is 1."""
        count = mask.sum().double()
        if count == 0:
            return
        weights = mask.reshape(mask.shape + (1,) * (values.dim() - mask.dim())).double()
        dims = tuple(range(mask.dim()))
        values = values.double()
        mean = (values * weights).sum(dims) / count
        var = (((values - mean) ** 2) * weights).sum(dims) / count
        total = self.count + count
        delta = mean - self.mean.double()
        moment = self.var.double() * self.count + var * count + delta**2 * self.count * count / total
        self.mean.copy_(self.mean.double() + delta * count / total)
        self.var.copy_((moment / total).clamp_min(1e-8))
        self.count.copy_(total)


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
        normalized_features: bool mask over the inputs: standardise these features by their running mean and
            std (updated by the caller with :meth:`update_observation_statistics` between rounds of sampling and
            learning); ``None``: no standardisation. RL^2 passes
            :meth:`metarl.envs.trials.TrialLayout.continuous_features`.
    """

    def __init__(
        self,
        input_size: int,
        action_space: gym.spaces.Space,
        hidden_size: int,
        shared_gru: bool = False,
        init_std: float = 1.0,
        min_std: float = 1e-6,
        normalized_features: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.hidden_size = int(hidden_size)
        self.gru = nn.GRU(int(input_size), self.hidden_size, batch_first=True)
        self.value_gru = None if shared_gru else nn.GRU(int(input_size), self.hidden_size, batch_first=True)
        hidden = gym.spaces.Box(-1.0, 1.0, shape=(self.hidden_size,), dtype=np.float32)
        self.head: MLPPolicy = make_policy(hidden, action_space, [], "tanh", init_std, min_std=min_std)
        self.value_head = nn.Linear(self.hidden_size, 1)
        # The head predicts standardised values, so returns of any scale (Navigation2D's trials sum hundreds of
        # rewards) are fitted at the pace of Adam's unit steps.
        self.value_moments = RunningMoments(())
        # Inputs standardised per feature (Navigation2D's previous action spans +-0.1, its reward differences less).
        self.observation_moments: RunningMoments | None = None
        if normalized_features is not None:
            mask = torch.as_tensor(np.asarray(normalized_features, dtype=bool).reshape(int(input_size)))
            self.register_buffer("normalized_features", mask, persistent=False)
            self.observation_moments = RunningMoments((int(input_size),))

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
        if self.observation_moments is not None:
            standardized = self.observation_moments.standardize(obs).clamp(
                -OBSERVATION_CLIP, OBSERVATION_CLIP
            )
            obs = torch.where(self.normalized_features, standardized, obs)
        grus = [self.gru] if self.value_gru is None else [self.gru, self.value_gru]
        out = stacked_gru(obs, grus, state)
        return out[0], out[-1], out[:, :, -1]

    def _value(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.value_head(hidden).squeeze(-1) * self.value_moments.std() + self.value_moments.mean

    def value_scale(self) -> torch.Tensor:
        """The running std of the value targets (the value loss is measured in its units)."""
        return self.value_moments.std()

    def update_value_statistics(self, targets: torch.Tensor, mask: torch.Tensor) -> None:
        """Merge the value targets ``(N, L)`` where ``mask`` is 1 into their running moments (once per iteration,
        before the PPO epochs)."""
        self.value_moments.update(targets, mask)

    def update_observation_statistics(self, obs: torch.Tensor, mask: torch.Tensor) -> None:
        """Merge the observations ``(N, L, D)`` where ``mask`` is 1 into their running moments. Call it after the
        PPO epochs, so that each round is sampled and learned from with the same standardisation (PPO's ratio
        starts at 1)."""
        if self.observation_moments is not None:
            self.observation_moments.update(obs, mask)

    def forward(self, obs: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        """The action distributions and values at every step of whole trials ``obs (B, L, D)`` from the zero
        state; returns the distribution over ``(B, L)`` and values ``(B, L)``."""
        policy_out, value_out, _ = self._run(obs, None)
        return self.head.distribution(policy_out), self._value(value_out)
