"""Batched form of a task distribution: all ``num_tasks x episodes_per_task`` copies in one call.

Each copy runs one episode per reset. Copy ``(i, j)`` (task ``i``, episode ``j``) is seeded with
``seed + i * episodes_per_task + j``, so it reproduces the single env after ``reset(seed=that)``.
Once a copy has terminated or been truncated it is frozen: later steps return its last observation,
reward 0 and the same flags. ``done`` tells which copies have ended. ``reset(mask=...)`` starts a new
episode in some copies only (optionally on new tasks) while the others keep running, which is what a
vector env's autoreset needs (:mod:`metarl.envs.vector`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
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


ENGINE_CORES_ENV_VAR = "METARL_ENGINE_CORES"


def available_cores() -> int:
    """CPU cores a batched engine of this process may use (its threads or worker processes):
    ``$METARL_ENGINE_CORES`` when set (to share a machine between runs), else the cores the process may run on.

    Raises:
        UserError: ``METARL_ENGINE_CORES`` is set but not a positive integer.
    """
    limit = os.environ.get(ENGINE_CORES_ENV_VAR, "").strip()
    if limit:
        if not limit.isdigit() or int(limit) < 1:
            raise UserError(
                f"{ENGINE_CORES_ENV_VAR} must be a positive integer (cores per engine), got {limit!r}"
            )
        return int(limit)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class BatchedEnv(ABC):
    """Steps ``num_tasks x episodes_per_task`` episodes at once; arrays are shaped ``(tasks, episodes, ...)``.

    Subclasses implement :meth:`_load_tasks`, :meth:`_reset` and :meth:`_step`; this class handles seeding,
    per-copy step counts, truncation at the horizon and freezing of finished copies.
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
        self.copy_steps = np.zeros(self.batch_shape, dtype=np.int64)
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

    def reset(
        self,
        seed: int | None = None,
        *,
        mask: np.ndarray | None = None,
        tasks: Mapping[int, Task] | None = None,
    ) -> np.ndarray:
        """Start one episode in every copy (or in the copies of ``mask``); returns observations
        ``(tasks, episodes, *obs_shape)``.

        Args:
            seed: base seed for this round of episodes (defaults to the constructor's seed on the first
                reset, then continues each copy's own random stream).
            mask: bool ``(tasks, episodes)``: reset only these copies; the others keep their episode, step
                count and observation. The first reset must reset every copy.
            tasks: ``{row: task}``: new tasks for some rows, set before their copies reset (every copy of
                such a row must be in ``mask``). The caller validates them, as :func:`make_batched` does.
        """
        if mask is None:
            mask = np.ones(self.batch_shape, dtype=bool)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.batch_shape:
            raise ValueError(f"mask must have shape {self.batch_shape}, got {mask.shape}")
        if self._last_obs is None:
            if not mask.all():
                raise RuntimeError("the first reset() must reset every copy")
            if seed is None:
                seed = self.seed
        _check_seed(seed)
        if tasks:
            rows = sorted(tasks)
            if not all(mask[row].all() for row in rows):
                raise ValueError("a row whose task changes must have all its copies in the reset mask")
            for row in rows:
                self.tasks[row] = tasks[row]
            self._load_tasks(rows)
        if not mask.any():
            return self._last_obs.copy()
        if mask.all():
            self.elapsed_steps = 0
        self.copy_steps[mask] = 0
        self.done &= ~mask
        self._terminated &= ~mask
        self._truncated &= ~mask
        flat_mask = mask.reshape(-1)
        seeds = [s if reset else None for s, reset in zip(self.copy_seeds(seed), flat_mask, strict=True)]
        obs = self._reset(seeds, flat_mask)
        if self._last_obs is not None:
            obs = np.where(mask.reshape(mask.shape + (1,) * (obs.ndim - 2)), obs, self._last_obs)
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
        self.copy_steps += active
        truncated = np.asarray(info.pop("truncated", False), dtype=bool) | (self.copy_steps >= self.horizon)
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

    def copies_of_row(self, row: int) -> range:
        """Flat (row-major) indices of the copies of task row ``row``."""
        return range(row * self.episodes_per_task, (row + 1) * self.episodes_per_task)

    @abstractmethod
    def _load_tasks(self, rows: Sequence[int]) -> None:
        """Read ``self.tasks[row]`` of each row into the engine's per-task state (constructor and reset)."""

    @abstractmethod
    def _reset(self, seeds: list[int | None], mask: np.ndarray) -> np.ndarray:
        """Reset the copies where the flat ``mask`` is set, with their seeds; return observations
        ``(T, E, *obs_shape)`` (entries of the other copies are ignored)."""

    @abstractmethod
    def _step(
        self, actions: np.ndarray, active: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step the copies marked ``active``; return ``obs``, ``reward``, ``terminated``, ``info``.

        Entries of inactive copies are ignored by the caller. Truncation at the horizon is the caller's; an
        engine whose copies may also be truncated earlier puts a ``(T, E)`` bool array in ``info["truncated"]``.
        """


def step_values(per_copy: np.ndarray, copy_steps: np.ndarray) -> np.ndarray:
    """``per_copy[k, t_k]`` for every copy ``k`` at its own step ``t_k`` (finished copies read their last)."""
    steps = np.minimum(copy_steps.reshape(-1), per_copy.shape[1] - 1)
    return per_copy[np.arange(len(per_copy)), steps]


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
        self._load_tasks(range(self.num_tasks))

    def _load_tasks(self, rows: Sequence[int]) -> None:
        for row in rows:
            for k in self.copies_of_row(row):
                self.envs[k].unwrapped.set_task(self.tasks[row])

    def _reset(self, seeds: list[int | None], mask: np.ndarray) -> np.ndarray:
        fresh = {k: self.envs[k].reset(seed=seeds[k])[0] for k in np.flatnonzero(mask)}
        filler = next(iter(fresh.values()))  # stands in for the copies that keep running
        obs = [fresh.get(k, filler) for k in range(self.num_copies)]
        return np.stack(obs).reshape(self.batch_shape + np.shape(filler))

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
