"""Batched Meta-World engine: one Meta-World env per copy, stepped by a thread pool.

Meta-World computes its observations and rewards in Python, per env, so the engine runs Meta-World's own
``reset`` and ``step`` on every copy (the single env's numbers by construction) and parallelises what can be:
the physics (``mj_step`` releases the GIL) of the copies of different threads overlaps. The copies of one task
share one ``MjModel`` (see :func:`metarl.envs.metaworld.env.make_metaworld_env`) and own an ``MjData``, so a
meta-batch of 20 tasks x 10 episodes holds 20 models, not 200 (:mod:`metarl.envs.metaworld.sim`). There is
one worker thread per usable core, as in :class:`metarl.envs.mujoco.engine.MujocoBatchedEnv`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from metarl.envs.base import TaskEnv
from metarl.envs.batched import BatchedEnv
from metarl.envs.metaworld.sim import class_name, make_metaworld_env, native_task, new_model
from metarl.envs.metaworld.tasks import MetaWorldTask
from metarl.envs.mujoco.engine import available_cores
from metarl.memory import release_freed_memory


class MetaWorldBatchedEnv(BatchedEnv):
    """Steps every copy of a Meta-World task distribution in one call (see the module docstring).

    ``info["success"]`` of :meth:`step` is Meta-World's per-step success flag, ``(tasks, episodes)`` floats.

    Args:
        env: a :class:`~metarl.envs.metaworld.env.MetaWorldEnv` of the benchmark (validates the tasks; it is
            not stepped).
        tasks: one task per row of the batch.
        episodes_per_task: copies per task.
        seed: base seed (Meta-World's episodes are deterministic given task and actions; kept for the contract).
        num_threads: worker threads (default: the number of usable cores).
    """

    def __init__(
        self,
        env: TaskEnv,
        tasks: Sequence[MetaWorldTask],
        episodes_per_task: int,
        seed: int | None = None,
        num_threads: int | None = None,
    ) -> None:
        super().__init__(tasks, episodes_per_task, env.observation_space, env.action_space, env.horizon, seed)
        for task in self.tasks:
            env.validate_task(task)
        self._copies: list[Any] = [None] * self.num_copies
        self._obs = np.zeros((self.num_copies, *env.observation_space.shape))
        self._reward = np.zeros(self.num_copies)
        self._success = np.zeros(self.num_copies)
        self.num_threads = max(1, min(int(num_threads or available_cores()), self.num_copies))
        self._pool = ThreadPoolExecutor(self.num_threads) if self.num_threads > 1 else None
        self._open = True
        self._load_tasks(range(self.num_tasks))

    # --- BatchedEnv hooks --------------------------------------------------------------------------
    def _load_tasks(self, rows: Sequence[int]) -> None:
        for row in rows:
            task = self.tasks[row]
            copies = self.copies_of_row(row)
            first = self._copies[copies[0]]
            if first is None or first.task_name != class_name(
                task.env_name
            ):  # a new family: new model and envs
                model = new_model(task.env_name)
                for k in copies:
                    self._copies[k] = make_metaworld_env(task.env_name, model)
            native = native_task(task)
            for k in copies:
                self._copies[k].set_task(native)

    def _reset(self, seeds: list[int | None], mask: np.ndarray) -> np.ndarray:
        self._check_open()

        def reset(k: int) -> None:
            self._obs[k] = self._copies[k].reset()[0]

        self._run(reset, np.flatnonzero(mask))
        return self._obs.reshape(self.batch_shape + self._obs.shape[1:]).copy()

    def _step(
        self, actions: np.ndarray, active: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self._check_open()
        flat_actions = actions.reshape((self.num_copies, -1)).astype(np.float64)

        def step(k: int) -> None:
            obs, reward, _, _, info = self._copies[k].step(flat_actions[k])
            self._obs[k], self._reward[k], self._success[k] = obs, reward, info["success"]

        self._run(step, np.flatnonzero(active.reshape(-1)))
        return (
            self._obs.reshape(self.batch_shape + self._obs.shape[1:]).copy(),
            self._reward.reshape(self.batch_shape).copy(),
            np.zeros(self.batch_shape, dtype=bool),  # Meta-World never terminates an episode
            {"success": self._success.reshape(self.batch_shape).copy()},
        )

    # --- threads -------------------------------------------------------------------------------------
    def _run(self, work: Callable[[int], None], indices: np.ndarray) -> None:
        if self._pool is None or len(indices) < 2:
            for k in indices:
                work(k)
            return

        def chunk(part: np.ndarray) -> None:
            for k in part:
                work(k)

        parts = np.array_split(indices, min(self.num_threads, len(indices)))
        for future in [self._pool.submit(chunk, part) for part in parts]:
            future.result()

    def close(self) -> None:
        """Stop the threads and free the Meta-World envs (the engine cannot be stepped afterwards)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._open:
            for env in self._copies:
                if env is not None:
                    env.close()
            self._copies = []
            self._open = False
            release_freed_memory()

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError(
                "this batched engine was closed; build a new one with metarl.envs.make_batched"
            )
