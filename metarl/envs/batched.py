"""Batched form of a task distribution: all ``num_tasks x episodes_per_task`` copies in one call.

Each copy runs exactly one episode. Copy ``(i, j)`` (task ``i``, episode ``j``) is seeded with
``seed + i * episodes_per_task + j``, so it reproduces the single env after ``reset(seed=that)``.
Once a copy has terminated or been truncated it is frozen: later steps return its last observation,
reward 0 and the same flags. ``done`` tells which copies have ended.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.envs.actions import check_batched_actions
from metarl.envs.base import Task, TaskEnv
from metarl.envs.registration import check_registered
from metarl.errors import UserError


def _check_seed(seed: Any) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0):
        raise UserError(f"seed must be a non-negative integer or None, got {seed!r}")


class BatchedEnv(ABC):
    """Steps ``num_tasks x episodes_per_task`` episodes at once; arrays are shaped ``(tasks, episodes, ...)``.

    Subclasses implement :meth:`_reset` and :meth:`_step`; this class handles seeding, truncation at the
    horizon and freezing of finished copies.
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        episodes_per_task: int,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        horizon: int,
        seed: int | None = None,
    ) -> None:
        if isinstance(episodes_per_task, bool) or not isinstance(episodes_per_task, int | np.integer):
            raise UserError(f"episodes_per_task must be an integer >= 1, got {episodes_per_task!r}")
        if episodes_per_task < 1:
            raise UserError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
        if len(tasks) == 0:
            raise UserError("a batched env needs at least one task")
        _check_seed(seed)
        self.tasks = list(tasks)
        self.num_tasks = len(self.tasks)
        self.episodes_per_task = int(episodes_per_task)
        self.observation_space = observation_space
        self.action_space = action_space
        self.horizon = int(horizon)
        self.seed = seed
        self.elapsed_steps = 0
        self.done = np.zeros(self.batch_shape, dtype=bool)
        self._last_obs: np.ndarray | None = None
        self._terminated = np.zeros(self.batch_shape, dtype=bool)
        self._truncated = np.zeros(self.batch_shape, dtype=bool)

    @property
    def batch_shape(self) -> tuple[int, int]:
        """``(num_tasks, episodes_per_task)``."""
        return (self.num_tasks, self.episodes_per_task)

    @property
    def num_copies(self) -> int:
        """Total number of episodes stepped together."""
        return self.num_tasks * self.episodes_per_task

    def copy_seeds(self, seed: int | None) -> list[int | None]:
        """Seed of every copy in row-major ``(task, episode)`` order."""
        if seed is None:
            return [None] * self.num_copies
        return [int(seed) + k for k in range(self.num_copies)]

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start one episode in every copy; returns observations ``(tasks, episodes, *obs_shape)``.

        Args:
            seed: base seed for this round of episodes (defaults to the constructor's seed on the first
                reset, then continues each copy's own random stream).
        """
        if seed is None and self._last_obs is None:
            seed = self.seed
        _check_seed(seed)
        self.elapsed_steps = 0
        self.done[:] = False
        self._terminated[:] = False
        self._truncated[:] = False
        obs = self._reset(self.copy_seeds(seed))
        self._last_obs = obs.copy()
        return obs

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every running copy by one step.

        Returns:
            ``obs (T, E, *obs_shape)``, ``reward (T, E)``, ``terminated (T, E)``, ``truncated (T, E)``, ``info``
            (``info["active"]`` marks the copies that were running before this step).
        """
        if self._last_obs is None:
            raise RuntimeError("call reset() before step()")
        actions = check_batched_actions(actions, self.action_space, self.batch_shape)
        active = ~self.done
        obs, reward, terminated, info = self._step(actions, active)
        info = dict(info)
        self.elapsed_steps += 1
        truncated = np.asarray(info.pop("truncated", False), dtype=bool) | (
            self.elapsed_steps >= self.horizon
        )
        obs = np.where(active.reshape(active.shape + (1,) * (obs.ndim - 2)), obs, self._last_obs)
        reward = np.where(active, reward, 0.0)
        self._terminated |= active & terminated
        self._truncated |= active & truncated
        self.done = self._terminated | self._truncated
        self._last_obs = obs.copy()
        info["active"] = active
        return obs, reward, self._terminated.copy(), self._truncated.copy(), info

    def close(self) -> None:
        """Release resources (threads, models)."""

    @abstractmethod
    def _reset(self, seeds: list[int | None]) -> np.ndarray:
        """Reset all copies with per-copy seeds; return observations ``(T, E, *obs_shape)``."""

    @abstractmethod
    def _step(
        self, actions: np.ndarray, active: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step the copies marked ``active``; return ``obs``, ``reward``, ``terminated``, ``info``.

        Entries of inactive copies are ignored by the caller. Truncation at the horizon is the caller's; an
        engine whose copies may also be truncated earlier puts a ``(T, E)`` bool array in ``info["truncated"]``.
        """


class GenericBatchedEnv(BatchedEnv):
    """The fallback: one single env per copy, stepped in a Python loop. Works for any :class:`TaskEnv`."""

    def __init__(
        self,
        env_factory: Callable[[], gym.Env],
        tasks: Sequence[Task],
        episodes_per_task: int,
        seed: int | None = None,
    ) -> None:
        if episodes_per_task < 1 or len(tasks) == 0:
            raise ValueError(
                f"a batched env needs at least one task and one episode per task, got {len(tasks)} tasks "
                f"and episodes_per_task={episodes_per_task}"
            )
        envs = [env_factory() for _ in range(len(tasks) * episodes_per_task)]
        first = envs[0]
        horizon = _horizon_of(first)
        super().__init__(tasks, episodes_per_task, first.observation_space, first.action_space, horizon, seed)
        self.envs = envs
        for k, env in enumerate(self.envs):
            env.unwrapped.set_task(self.tasks[k // self.episodes_per_task])

    def _reset(self, seeds: list[int | None]) -> np.ndarray:
        obs = [env.reset(seed=s)[0] for env, s in zip(self.envs, seeds, strict=True)]
        return np.stack(obs).reshape(self.batch_shape + np.shape(obs[0]))

    def _step(self, actions, active):
        flat_actions = actions.reshape((self.num_copies,) + actions.shape[2:])
        flat_active = active.reshape(-1)
        obs = self._last_obs.reshape((self.num_copies,) + self._last_obs.shape[2:]).copy()
        reward = np.zeros(self.num_copies)
        terminated = np.zeros(self.num_copies, dtype=bool)
        truncated = np.zeros(self.num_copies, dtype=bool)
        for k in np.flatnonzero(flat_active):
            obs[k], reward[k], terminated[k], truncated[k], _ = self.envs[k].step(flat_actions[k])
        return (
            obs.reshape(self._last_obs.shape),
            reward.reshape(self.batch_shape),
            terminated.reshape(self.batch_shape),
            {"truncated": truncated.reshape(self.batch_shape)},
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _horizon_of(env: gym.Env) -> int:
    horizon = getattr(env.unwrapped, "horizon", None)
    if horizon is None and env.spec is not None:
        horizon = env.spec.max_episode_steps
    if horizon is None:
        raise ValueError(f"{type(env.unwrapped).__name__} has no horizon: set `horizon` or max_episode_steps")
    return int(horizon)


EnvSource = str | Callable[..., gym.Env]


def make_batched(
    env: EnvSource,
    tasks: Sequence[Task],
    episodes_per_task: int = 1,
    seed: int | None = None,
    *,
    generic: bool = False,
    **env_kwargs: Any,
) -> BatchedEnv:
    """Build the batched form of a task distribution.

    Args:
        env: a registered id (``"MetaRL/Navigation2D-v0"``) or a callable returning a :class:`TaskEnv`.
        tasks: one task per row of the batch.
        episodes_per_task: episodes run in parallel for each task.
        seed: base seed; copy ``(i, j)`` gets ``seed + i * episodes_per_task + j``.
        generic: force the generic per-env fallback even when a fast engine exists.
        **env_kwargs: constructor arguments of the env (e.g. ``horizon=50``).

    Returns:
        The env's own fast engine when it has one, else :class:`GenericBatchedEnv`.
    """
    if isinstance(env, str):
        check_registered(env)

        def factory() -> gym.Env:
            return gym.make(env, **env_kwargs)
    elif callable(env):

        def factory() -> gym.Env:
            return env(**env_kwargs)
    else:
        raise TypeError(
            f"env must be a registered id or a callable returning an env, got {type(env).__name__}"
        )

    probe = factory()
    base = getattr(probe, "unwrapped", probe)
    if not isinstance(base, TaskEnv):
        raise TypeError(
            f"{type(base).__name__} does not follow the task API: subclass metarl.envs.TaskEnv "
            "(sample_tasks / set_task / get_task)"
        )
    for task in tasks:
        base.validate_task(task)
    if not generic:
        fast = base.make_batched(tasks, episodes_per_task, seed)
        if fast is not None:
            probe.close()
            return fast
    probe.close()
    return GenericBatchedEnv(factory, tasks, episodes_per_task, seed)
