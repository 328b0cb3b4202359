"""Wrappers that give a task distribution to any RL library: a new task at every reset, seeded.

* :class:`RandomTaskWrapper`: every reset draws a task from the env's own distribution (or uniformly from a
  given list), like Meta-World's ``RandomTaskSelectWrapper``;
* :class:`TaskCycleWrapper`: every reset takes the next task of a fixed list, visiting the list in a random
  order that is reshuffled after each pass, like Meta-World's ``PseudoRandomTaskSelectWrapper``.

Both draw from their own generator: ``reset(seed=s)`` reseeds it with :func:`metarl.envs.seeding.task_generator`
``(s)``, an independent child of the seed (so the episode's own random numbers are those of the unwrapped env
reset with ``s``); ``reset()`` continues it. A wrapped env reset with seed ``s + k`` sees the same tasks as copy
``k`` of a :class:`metarl.envs.vector.TaskVectorEnv` reset with seed ``s``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.envs.base import Task, TaskEnv
from metarl.envs.seeding import task_generator
from metarl.envs.task_options import coerce_task
from metarl.errors import UserError


def task_env(env: gym.Env) -> TaskEnv:
    """The :class:`TaskEnv` under ``env``'s wrappers, or a ``UserError`` saying what is needed."""
    base = env.unwrapped
    if not isinstance(base, TaskEnv):
        raise UserError(
            f"{type(base).__name__} does not follow the task API: subclass metarl.envs.TaskEnv "
            "(sample_tasks / set_task / get_task)"
        )
    return base


def draw_task(env: TaskEnv, rng: np.random.Generator) -> Task:
    """One task of ``env``'s distribution drawn from ``rng`` (not from the env's ``np_random``)."""
    return env._sample_task(rng)  # the distribution's documented hook of TaskEnv


class _TaskSelectWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Sets the task chosen by :meth:`_next_task` before every reset; ``options["task"]`` still wins.

    The constructor's arguments are recorded in the env's spec, so ``gym.make(env.spec)`` rebuilds it.
    """

    def __init__(self, env: gym.Env, seed: int | None, **recorded: Any) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, seed=seed, **recorded)
        gym.Wrapper.__init__(self, env)
        self._task_env = task_env(env)
        self._rng = task_generator(seed) if seed is not None else None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is not None or self._rng is None:
            self._rng = task_generator(seed)
            self._restart(self._rng)
        if options is None or options.get("task") is None:
            self._task_env.set_task(self._next_task(self._rng))
        return self.env.reset(seed=seed, options=options)

    def _restart(self, rng: np.random.Generator) -> None:
        """Called when the generator is (re)seeded."""

    def _next_task(self, rng: np.random.Generator) -> Task:
        raise NotImplementedError


class RandomTaskWrapper(_TaskSelectWrapper):
    """Draws a new task at every reset, from the env's own distribution or uniformly from ``tasks``.

    Args:
        env: an env whose ``unwrapped`` is a :class:`TaskEnv`.
        tasks: a fixed list of tasks (or their dict forms) to choose from; ``None`` samples the distribution.
        seed: seeds the task generator until a ``reset(seed=...)`` reseeds it.
    """

    def __init__(
        self,
        env: gym.Env,
        tasks: Sequence[Task | Mapping[str, Any]] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(env, seed, tasks=tasks)
        self.tasks = None if tasks is None else _checked_tasks(self._task_env, tasks)

    def _next_task(self, rng: np.random.Generator) -> Task:
        if self.tasks is None:
            return draw_task(self._task_env, rng)
        return self.tasks[int(rng.integers(len(self.tasks)))]


class TaskCycleWrapper(_TaskSelectWrapper):
    """Takes the tasks of a fixed list in turn, in a random order reshuffled after each pass.

    Every task is visited once per ``len(tasks)`` resets, so a short run sees the list evenly.

    Args:
        env: an env whose ``unwrapped`` is a :class:`TaskEnv`.
        tasks: the tasks (or their dict forms) to cycle through.
        seed: seeds the shuffling until a ``reset(seed=...)`` reseeds it (and restarts the cycle).
    """

    def __init__(
        self, env: gym.Env, tasks: Sequence[Task | Mapping[str, Any]], seed: int | None = None
    ) -> None:
        super().__init__(env, seed, tasks=tasks)
        self.tasks = _checked_tasks(self._task_env, tasks)
        self._order = np.arange(0)
        self._position = 0

    def _restart(self, rng: np.random.Generator) -> None:
        self._order = np.arange(0)
        self._position = 0

    def _next_task(self, rng: np.random.Generator) -> Task:
        if self._position == len(self._order):
            self._order = rng.permutation(len(self.tasks))
            self._position = 0
        task = self.tasks[int(self._order[self._position])]
        self._position += 1
        return task


def _checked_tasks(env: TaskEnv, tasks: Sequence[Task | Mapping[str, Any]]) -> list[Task]:
    checked = [coerce_task(env, task) for task in tasks]
    if not checked:
        raise UserError("the task list is empty: give at least one task")
    return checked
