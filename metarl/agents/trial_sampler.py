"""Rolls out a recurrent policy over trials on a task distribution's batched engine: every trial of every task
in one loop over time steps (one engine call and one batched GRU step per step, no loop over envs), the hidden
state carried across the episodes of a trial (:mod:`metarl.envs.trials`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from metarl.agents.recurrent import RecurrentActorCritic
from metarl.agents.sampler import EnvActions
from metarl.envs import Task, make_batched_trials
from metarl.errors import TrainingDiverged


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
    columns: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("observations", "actions", "log_probs", "values", "rewards", "mask", "episode")
    }
    try:
        obs = trials.reset(seed=int(seed))
        state = policy.initial_state(count)
        for _ in range(trials.horizon):
            observation = torch.from_numpy(obs.reshape(count, -1))
            step = policy.act(observation, state, generator)
            if not bool(torch.isfinite(step.actions).all()):
                raise TrainingDiverged(
                    "the policy's actions are not finite: its parameters diverged (a learning rate too large?)"
                )
            env_action = env_actions(step.actions)
            obs, reward, _, _, info = trials.step(
                env_action.reshape(trials.batch_shape + env_action.shape[1:])
            )
            state = step.state
            columns["observations"].append(observation)
            columns["actions"].append(step.actions)
            columns["log_probs"].append(step.log_probs)
            columns["values"].append(step.values)
            columns["rewards"].append(torch.as_tensor(reward.reshape(count), dtype=torch.float32))
            columns["mask"].append(torch.as_tensor(info["active"].reshape(count), dtype=torch.float32))
            columns["episode"].append(torch.as_tensor(info["episode"].reshape(count)))
            if trials.done.all():
                break
    finally:
        trials.close()
    stacked = {k: torch.stack(v, dim=1) for k, v in columns.items()}
    return Trials(**stacked, episodes_per_trial=int(episodes_per_trial))
