"""Rolls out a recurrent policy over trials on a task distribution's batched engine: every trial of every task
in one loop over time steps (one engine call and one compiled policy step per step,
:class:`~metarl.agents.recurrent_step.RecurrentStep`; no loop over envs), the hidden state carried across the
episodes of a trial (:mod:`metarl.envs.trials`). The round's action noise is drawn at its start."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metarl.agents.recurrent import RecurrentActorCritic
from metarl.agents.recurrent_step import RecurrentStep
from metarl.agents.sampler import EnvActions
from metarl.envs import Task, make_batched_trials
from metarl.errors import TrainingDiverged
from metarl.fast_math import one_blas_thread


@dataclass
class Trials:
    """Trials collected in one batched rollout; arrays are ``(trials, steps, ...)``, trials in task-major order
    (``trials_per_task`` consecutive trials per task), steps padded to the longest trial.

    Attributes:
        observations: augmented observations before each action, float32 ``(N, L, D)``.
        actions: the policy's actions, ``(N, L, A)`` float32 or ``(N, L)`` int64.
        log_probs: their log-probabilities under the sampling policy, ``(N, L)``.
        values: the value function's estimates, ``(N, L)``.
        rewards: rewards, ``(N, L)`` (0 after a trial ended).
        mask: 1.0 where the step was taken, ``(N, L)``.
        episode: the trial episode (0-based) of each step, int64 ``(N, L)``.
        episodes_per_trial: ``k``.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor
    episode: torch.Tensor
    episodes_per_trial: int

    @property
    def num_trials(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def num_steps(self) -> int:
        """Environment steps actually taken."""
        return int(self.mask.sum().item())

    def episode_returns(self) -> torch.Tensor:
        """Undiscounted return of every episode of every trial, float64 ``(N, k)``."""
        out = torch.zeros(self.num_trials, self.episodes_per_trial, dtype=torch.float64)
        index = self.episode.clamp_max(self.episodes_per_trial - 1)
        return out.scatter_add_(1, index, (self.rewards * self.mask).double())


@torch.no_grad()
def sample_trials(
    policy: RecurrentActorCritic,
    env_actions: EnvActions,
    env_id: str,
    env_kwargs: Mapping[str, Any],
    tasks: Sequence[Task],
    trials_per_task: int,
    episodes_per_trial: int,
    seed: int,
    generator: torch.Generator,
) -> Trials:
    """Play ``trials_per_task`` trials of ``episodes_per_trial`` episodes on every task.

    Args:
        policy: the recurrent policy (its state starts at zero in every trial).
        env_actions: maps the policy's actions to the env's.
        env_id, env_kwargs: the task distribution.
        tasks: the tasks, one engine row each.
        trials_per_task: trials played in parallel per task.
        episodes_per_trial: ``k``.
        seed: base seed of the env copies (copy ``(i, j)``: ``seed + i * trials_per_task + j``).
        generator: source of the action noise.
    """
    trials = make_batched_trials(env_id, tasks, episodes_per_trial, trials_per_task, int(seed), **env_kwargs)
    count = trials.batch_shape[0] * trials.batch_shape[1]
    horizon = trials.horizon
    noise = policy.head.action_noise((horizon, count), generator).numpy()
    step = RecurrentStep(policy)
    columns = {
        "observations": np.zeros((count, horizon, trials.layout.space.shape[0]), np.float32),
        "actions": np.zeros((count, horizon, *step.action_shape), step.action_dtype),
        "log_probs": np.zeros((count, horizon), np.float32),
        "values": np.zeros((count, horizon), np.float32),
        "rewards": np.zeros((count, horizon), np.float32),
        "mask": np.zeros((count, horizon), np.float32),
        "episode": np.zeros((count, horizon), np.int64),
    }
    steps = 0
    try:
        obs = trials.reset(seed=int(seed)).reshape(count, -1)
        state = policy.initial_state(count).numpy()
        with one_blas_thread():
            for t in range(horizon):
                actions, log_probs, values, state = step(obs, state, noise[t])
                if not np.isfinite(actions).all():
                    raise TrainingDiverged(
                        "the policy's actions are not finite: its parameters diverged (a learning rate too large?)"
                    )
                env_action = env_actions(torch.from_numpy(actions))
                next_obs, reward, _, _, info = trials.step(
                    env_action.reshape(trials.batch_shape + env_action.shape[1:])
                )
                for name, value in (
                    ("observations", obs),
                    ("actions", actions),
                    ("log_probs", log_probs),
                    ("values", values),
                    ("rewards", reward.reshape(count)),
                    ("mask", info["active"].reshape(count)),
                    ("episode", info["episode"].reshape(count)),
                ):
                    columns[name][:, t] = value
                obs = next_obs.reshape(count, -1)
                steps = t + 1
                if trials.done.all():
                    break
    finally:
        trials.close()
    return Trials(
        **{name: torch.from_numpy(np.ascontiguousarray(array[:, :steps])) for name, array in columns.items()},
        episodes_per_trial=int(episodes_per_trial),
    )
