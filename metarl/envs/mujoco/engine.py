"""Batched MuJoCo engine: ``num_tasks x episodes_per_task`` ``MjData`` copies stepped by a thread pool.

Each thread steps a slice of the copies in one compiled call that holds no GIL
(:mod:`metarl.envs.mujoco.native_step`: MuJoCo's C API on the raw pointers, bit for bit ``mujoco.mj_step``), so
the physics runs on all cores; without ``libmujoco`` next to the bindings, the slice is stepped through them
(``mujoco.mj_step`` releases the GIL, but setting ``ctrl`` and copying arrays out of ``MjData`` hold it).
Observations, rewards and terminations are then computed for all copies at once by the env's own
vectorised hooks (:class:`metarl.envs.mujoco.locomotion.LocomotionTaskEnv`), and reset noise comes from
per-copy generators seeded like ``env.reset(seed=...)``, so the engine reproduces the single env.

We use our own pool rather than ``mujoco.rollout``: rollout runs open-loop control sequences from a
given state, while here a policy chooses every action from the last observation, Ant and Humanoid need
``cfrc_ext`` (``mj_rnePostConstraint``) after each step, and keeping each copy's ``MjData`` alive keeps
the solver's warm start exactly as in the single env. It also works on every mujoco >= 3.3.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mujoco
import numpy as np
from gymnasium.utils import seeding

from metarl.envs.base import Task, TaskEnv
from metarl.envs.batched import BatchedEnv, available_cores
from metarl.envs.mujoco.native_step import CopyAddresses, native_stepper, step_copies
from metarl.memory import release_freed_memory


class MujocoBatchedEnv(BatchedEnv):
    """Steps every copy of a MuJoCo task distribution in one call (see the module docstring).

    Args:
        env: a single env of the distribution (a ``LocomotionTaskEnv``); it supplies the models,
            spaces and the vectorised observation / reward / termination; it is not stepped.
        tasks: one task per row of the batch.
        episodes_per_task: copies per task.
        seed: base seed; copy ``(i, j)`` is reset like ``env.reset(seed=seed + i * episodes_per_task + j)``.
        num_threads: worker threads (default: the number of usable cores).
        native: step through MuJoCo's C API without the GIL where ``libmujoco`` is found (``False``: through the
            Python bindings, the reference the tests compare with).
    """

    def __init__(
        self,
        env: TaskEnv,
        tasks: Sequence[Task],
        episodes_per_task: int,
        seed: int | None = None,
        num_threads: int | None = None,
        native: bool = True,
    ) -> None:
        super().__init__(tasks, episodes_per_task, env.observation_space, env.action_space, env.horizon, seed)
        for task in self.tasks:
            env.validate_task(task)
        self._env = env
        self._models: list[mujoco.MjModel | None] = [None] * self.num_copies
        self._datas: list[mujoco.MjData | None] = [None] * self.num_copies
        self._params = np.zeros((self.num_copies, len(env.reward_params(self.tasks[0]))))
        self._addresses: CopyAddresses | None = None
        self._load_tasks(range(self.num_tasks))
        self._frame_skip = int(env.frame_skip)
        self._post_constraint = bool(env.uses_contact_forces)
        self._state = {
            name: np.zeros((self.num_copies,) + np.shape(getattr(self._datas[0], name)))
            for name in env.gathered_fields
        }
        self._stepper = native_stepper() if native else None
        if self._stepper is not None:
            self._addresses = CopyAddresses(self.num_copies, self._state)
            for k in range(self.num_copies):
                self._addresses.set_copy(k, self._models[k], self._datas[k])
        self._position = np.zeros((self.num_copies,) + env.position(env.gather()).shape[1:])
        self._rngs: list[np.random.Generator | None] = [None] * self.num_copies
        self.num_threads = max(1, min(int(num_threads or available_cores()), self.num_copies))
        self._pool = ThreadPoolExecutor(self.num_threads) if self.num_threads > 1 else None

    # --- per-copy work (runs in the pool, without the GIL: native_step, or mj_* calls release it) ---------
    def _gather(self, k: int) -> None:
        data = self._datas[k]
        for name, buffer in self._state.items():
            buffer[k] = getattr(data, name)

    def _advance(self, indices: np.ndarray, ctrl: np.ndarray) -> None:
        frame_skip, post_constraint = self._frame_skip, self._post_constraint
        if self._stepper is not None:
            step_copies(self._stepper, self._addresses, indices, ctrl, frame_skip, post_constraint)
            return
        for k in indices:
            model, data = self._models[k], self._datas[k]
            data.ctrl[:] = ctrl[k]
            mujoco.mj_step(model, data, nstep=frame_skip)
            if post_constraint:
                mujoco.mj_rnePostConstraint(model, data)
            self._gather(k)

    def _run(self, indices: np.ndarray, ctrl: np.ndarray) -> None:
        if self._pool is None or len(indices) < 2:
            self._advance(indices, ctrl)
            return
        chunks = np.array_split(indices, min(self.num_threads, len(indices)))
        for future in [self._pool.submit(self._advance, chunk, ctrl) for chunk in chunks]:
            future.result()

    # --- BatchedEnv hooks ------------------------------------------------------------------------
    def _load_tasks(self, rows: Sequence[int]) -> None:
        for row in rows:
            task = self.tasks[row]
            model = self._env.model_for_task(task)  # shared by the copies of a task
            for k in self.copies_of_row(row):
                if self._models[k] is not model:
                    self._models[k], self._datas[k] = model, mujoco.MjData(model)
                    if self._addresses is not None:
                        self._addresses.set_copy(k, model, self._datas[k])
                self._params[k] = self._env.reward_params(task)

    def _reset(self, seeds: list[int | None], mask: np.ndarray) -> np.ndarray:
        self._check_open()
        env = self._env
        for k in np.flatnonzero(mask):
            seed = seeds[k]
            if seed is not None or self._rngs[k] is None:
                self._rngs[k], _ = seeding.np_random(seed)
            model, data = self._models[k], self._datas[k]
            mujoco.mj_resetData(model, data)
            data.qpos[:], data.qvel[:] = env.initial_state(self._rngs[k])
            mujoco.mj_forward(model, data)
            self._gather(k)
        self._position = np.array(env.position(self._state))
        return self._shape(env.observe(self._state))

    def _step(
        self, actions: np.ndarray, active: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self._check_open()
        env = self._env
        flat_actions = actions.reshape((self.num_copies, -1)).astype(np.float64)
        ctrl = np.ascontiguousarray(env.to_ctrl(flat_actions), dtype=np.float64)
        self._run(np.flatnonzero(active.reshape(-1)), ctrl)
        obs, reward, terminated, self._position, info = env.outcome(
            self._position, self._state, flat_actions, self._params
        )
        return (
            self._shape(obs),
            self._shape(reward),
            self._shape(terminated),
            {name: self._shape(value) for name, value in info.items()},
        )

    def _shape(self, array: np.ndarray) -> np.ndarray:
        return array.reshape(self.batch_shape + array.shape[1:])

    def close(self) -> None:
        """Stop the threads and free the copies' ``MjData`` (the engine cannot be stepped afterwards)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._datas:
            self._datas, self._models, self._addresses = [], [], None
            release_freed_memory()

    def _check_open(self) -> None:
        if not self._datas:
            raise RuntimeError(
                "this batched engine was closed; build a new one with metarl.envs.make_batched"
            )
