"""A ``gymnasium.vector.VectorEnv`` over a task distribution's batched engine.

``gym.make_vec("MetaRL/Navigation2D-v0", num_envs=64)`` builds a :class:`TaskVectorEnv`: the ``num_envs``
sub-envs are the copies of one :func:`metarl.envs.make_batched` engine (numpy arrays, or the threaded MuJoCo
stepper), so any library written for Gymnasium's vector API steps them in one call. Each sub-env behaves
exactly like the single env in a ``SyncVectorEnv`` (same seeds, same actions: same observations, rewards,
flags and infos):

* tasks: with ``tasks=None`` (the default) every sub-env draws a new task from the distribution at each of
  its resets, like a single env under :class:`metarl.envs.wrappers.RandomTaskWrapper` (``resample_tasks=False``
  keeps each sub-env's task over autoresets and redraws it at ``reset()`` only); with ``tasks=[...]`` the
  sub-envs are laid out task-major over the fixed tasks, ``num_envs // len(tasks)`` per task.
* autoreset: Gymnasium's default ``AutoresetMode.NEXT_STEP`` (the step after an episode ends returns the
  reset observation, reward 0 and no flags, ignoring that sub-env's action) or ``SAME_STEP`` (the ending
  step returns the reset observation, with ``info["final_obs"]`` / ``info["final_info"]``), declared in
  ``metadata["autoreset_mode"]``.
* seeding: ``reset(seed=s)`` resets sub-env ``k`` as ``env.reset(seed=s + k)`` and seeds its task draws with
  :func:`metarl.envs.seeding.task_generator` ``(s + k)``.
* infos: ``info["task"]`` (with mask ``info["_task"]``) holds the task of every sub-env that was reset, and
  the engine's per-step arrays (e.g. MuJoCo reward terms) are masked to the sub-envs that stepped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from metarl.envs.base import Task
from metarl.envs.batched import BatchedEnv, make_batched
from metarl.envs.registration import unknown_env_message
from metarl.envs.seeding import task_generator
from metarl.envs.task_options import coerce_task
from metarl.envs.wrappers import draw_task, task_env
from metarl.errors import UserError


class TaskVectorEnv(VectorEnv):
    """``num_envs`` sub-envs of a task distribution stepped together by its batched engine.

    Args:
        env_id: a registered id whose env follows the task API.
        num_envs: number of sub-envs.
        tasks: fixed tasks (or their dict forms); ``num_envs`` must be a multiple of their number.
            ``None`` draws tasks from the distribution.
        task: one fixed task for every sub-env (``gym.make_vec(id, task=...)``, as ``gym.make(id, task=...)``).
        resample_tasks: with drawn tasks, draw a new one at every reset of a sub-env (autoresets included);
            ``False`` draws them at ``reset()`` only.
        autoreset_mode: ``AutoresetMode.NEXT_STEP`` (Gymnasium's default) or ``AutoresetMode.SAME_STEP``.
        generic: step the copies with the generic per-env fallback instead of the fast engine.
        **env_kwargs: constructor arguments of the single env (e.g. ``horizon=50``).
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int = 1,
        *,
        tasks: Sequence[Task | Mapping[str, Any]] | None = None,
        task: Task | Mapping[str, Any] | None = None,
        resample_tasks: bool = True,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        generic: bool = False,
        **env_kwargs: Any,
    ) -> None:
        if env_id not in gym.registry:
            raise UserError(unknown_env_message(env_id))
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise UserError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        if self.autoreset_mode == AutoresetMode.DISABLED:
            raise UserError("autoreset_mode must be NEXT_STEP or SAME_STEP; reset finished sub-envs yourself")
        self.env_id = env_id
        self.num_envs = int(num_envs)
        self._env_kwargs = env_kwargs
        self._generic = bool(generic)
        self._template = gym.make(env_id, **env_kwargs)
        self._task_env = task_env(self._template)
        self._fixed_tasks = self._fixed_task_list(tasks, task)
        self.resample_tasks = bool(resample_tasks) and self._fixed_tasks is None
        self.single_observation_space = self._template.observation_space
        self.single_action_space = self._template.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {**self._template.metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = None
        self._engine: BatchedEnv | None = None
        self._task_rngs: list[np.random.Generator] = []
        self._autoreset = np.zeros(self.num_envs, dtype=bool)

    def _fixed_task_list(self, tasks, task) -> list[Task] | None:
        if task is not None:
            if tasks is not None:
                raise UserError("give either task= (one task for every sub-env) or tasks=, not both")
            tasks = [task]
        if tasks is None:
            return None
        checked = [coerce_task(self._task_env, t) for t in tasks]
        if not checked or self.num_envs % len(checked):
            raise UserError(
                f"num_envs={self.num_envs} must be a positive multiple of the number of tasks ({len(checked)})"
            )
        return checked

    @property
    def single_env(self) -> gym.Env:
        """The single env the sub-envs copy (made with the same arguments; it is never stepped)."""
        return self._template

    # --- the sub-envs' tasks ------------------------------------------------------------------------
    @property
    def episodes_per_task(self) -> int:
        """Sub-envs per engine row: ``num_envs // len(tasks)`` for fixed tasks, else 1 (a task per sub-env)."""
        return 1 if self._fixed_tasks is None else self.num_envs // len(self._fixed_tasks)

    @property
    def tasks(self) -> list[Task]:
        """The current task of every sub-env (after the first reset)."""
        engine = self._require_engine()
        return [engine.tasks[k // self.episodes_per_task] for k in range(self.num_envs)]

    def _drawn_tasks(self, mask: np.ndarray) -> dict[int, Task]:
        """New tasks of the engine rows whose sub-envs reset (rows are sub-envs when tasks are drawn)."""
        return {int(k): draw_task(self._task_env, self._task_rngs[k]) for k in np.flatnonzero(mask)}

    # --- Gymnasium API ---------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-env, or those of ``options["reset_mask"]``; ``options["task"]`` sets their task.

        Args:
            seed: sub-env ``k`` is reset as ``env.reset(seed=seed + k)``; ``None`` continues their streams.
            options: ``"reset_mask"`` (bool ``(num_envs,)``, Gymnasium's partial reset) and ``"task"``.
        """
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
            raise UserError(f"seed must be an int or None (sub-env k gets seed + k), got {seed!r}")
        super().reset(seed=seed)
        options = dict(options or {})
        mask = self._reset_mask(options.pop("reset_mask", None))
        if not self._task_rngs:
            self._task_rngs = [task_generator(None) for _ in range(self.num_envs)]
        if seed is not None:
            for k in np.flatnonzero(mask):
                self._task_rngs[k] = task_generator(int(seed) + int(k))
        tasks = self._tasks_for_reset(mask, options.get("task"))
        if self._engine is None:
            rows = [tasks[row] for row in range(len(tasks))]
            self._engine = make_batched(
                self.env_id, rows, self.episodes_per_task, generic=self._generic, **self._env_kwargs
            )
            obs = self._engine.reset(seed=seed)
        else:
            obs = self._engine.reset(seed=seed, mask=mask.reshape(self._engine.batch_shape), tasks=tasks)
        self._autoreset &= ~mask
        return self._flat(obs), self._reset_info(mask)

    def _reset_mask(self, mask: Any) -> np.ndarray:
        if mask is None:
            return np.ones(self.num_envs, dtype=bool)
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (self.num_envs,):
            raise UserError(f"options['reset_mask'] must be a bool numpy array of shape ({self.num_envs},)")
        if self._engine is None and not mask.all():
            raise UserError("the first reset must reset every sub-env: drop options['reset_mask']")
        return mask

    def _tasks_for_reset(self, mask: np.ndarray, task: Any) -> dict[int, Task]:
        """``{engine row: task}`` for the rows whose task changes at this reset."""
        if task is not None:
            task = coerce_task(self._task_env, task)
            rows = np.unique(np.flatnonzero(mask) // self.episodes_per_task)
            whole = mask.reshape(-1, self.episodes_per_task)[rows].all()
            if not whole:
                raise UserError(
                    f"options['task'] changes the task of whole groups of {self.episodes_per_task} sub-envs "
                    "(those of one fixed task): put all of a group in options['reset_mask']"
                )
            return {int(row): task for row in rows}
        if self._fixed_tasks is not None:
            return dict(enumerate(self._fixed_tasks)) if self._engine is None else {}
        return self._drawn_tasks(mask)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env; finished ones are reset as ``metadata["autoreset_mode"]`` says."""
        engine = self._require_engine()
        actions = np.asarray(actions)
        expected = (self.num_envs, *(self.single_action_space.shape or ()))
        if actions.shape != expected:
            raise UserError(f"actions must have shape {expected}, got {actions.shape}")
        obs, reward, terminated, truncated, step_info = engine.step(
            actions.reshape(engine.batch_shape + expected[1:])
        )
        obs, reward = self._flat(obs), reward.reshape(-1).astype(np.float64)
        terminated, truncated = terminated.reshape(-1), truncated.reshape(-1)
        stepped = step_info.pop("active").reshape(-1)
        info = _masked_info({key: self._flat(value) for key, value in step_info.items()}, stepped)
        ended = (terminated | truncated) & stepped  # frozen sub-envs keep their flags in the engine
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            # the sub-envs that ended last step were frozen in the engine: they reset now, with no step info
            to_reset, self._autoreset = self._autoreset, ended
        else:
            to_reset = ended
            if ended.any():
                final_obs = np.full(self.num_envs, None, dtype=object)
                for k in np.flatnonzero(ended):
                    final_obs[k] = obs[k]
                final_info = _masked_info(_info_values(info), ended)
                info = {
                    **_masked_info(_info_values(info), stepped & ~ended),
                    "final_obs": final_obs,
                    "_final_obs": ended.copy(),
                    "final_info": final_info,
                    "_final_info": ended.copy(),
                }
        if to_reset.any():
            obs = self._autoreset_copies(to_reset)
            info.update(self._reset_info(to_reset))
            if self.autoreset_mode == AutoresetMode.NEXT_STEP:
                reward[to_reset] = 0.0
                terminated[to_reset] = truncated[to_reset] = False
        return obs, reward, terminated.copy(), truncated.copy(), info

    def _autoreset_copies(self, mask: np.ndarray) -> np.ndarray:
        engine = self._require_engine()
        tasks = self._drawn_tasks(mask) if self.resample_tasks else {}
        return self._flat(engine.reset(mask=mask.reshape(engine.batch_shape), tasks=tasks))

    def _reset_info(self, mask: np.ndarray) -> dict[str, Any]:
        engine = self._require_engine()
        tasks = np.full(self.num_envs, None, dtype=object)
        for k in np.flatnonzero(mask):
            tasks[k] = engine.tasks[k // self.episodes_per_task]
        return {"task": tasks, "_task": mask.copy()}

    def _flat(self, array: np.ndarray) -> np.ndarray:
        return array.reshape((self.num_envs, *array.shape[2:]))

    def _require_engine(self) -> BatchedEnv:
        if self._engine is None:
            raise RuntimeError("call reset() before step()")
        return self._engine

    def close_extras(self, **kwargs: Any) -> None:
        """Release the engine (threads, MuJoCo data) and the template env."""
        if self._engine is not None:
            self._engine.close()
        self._template.close()


def _info_values(info: Mapping[str, Any]) -> dict[str, Any]:
    """The per-step arrays of a vector info (without the ``_key`` masks)."""
    return {key: value for key, value in info.items() if not key.startswith("_")}


def _masked_info(values: Mapping[str, np.ndarray], mask: np.ndarray) -> dict[str, Any]:
    """Gymnasium's info layout: each array zeroed outside ``mask``, with ``mask`` as ``info["_key"]``."""
    if not mask.any():
        return {}
    info: dict[str, Any] = {}
    for key, value in values.items():
        shaped = mask.reshape(mask.shape + (1,) * (value.ndim - 1))
        info[key] = np.where(shaped, value, np.zeros((), dtype=value.dtype))
        info[f"_{key}"] = mask.copy()
    return info
