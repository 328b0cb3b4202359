"""Stable-Baselines3's ``VecEnv`` over a task distribution's batched engine (extra ``metarl[sb3]``).

::

    from stable_baselines3 import PPO
    from metarl.integrations.sb3 import TaskVecEnv

    venv = TaskVecEnv("MetaRL/Navigation2D-v0", num_envs=16)   # a new task at every reset of a sub-env
    PPO("MlpPolicy", venv).learn(100_000)

It follows SB3's conventions, as its ``DummyVecEnv`` over the single envs would: ``done = terminated or
truncated``; a finished sub-env is reset in the same step, with ``info["terminal_observation"]`` and
``info["TimeLimit.truncated"]``; ``seed(s)`` / ``set_options`` apply at the next ``reset()``; ``reset_infos[k]``
holds the task sub-env ``k`` was reset on. Under it is a :class:`metarl.envs.vector.TaskVectorEnv` in
``SAME_STEP`` autoreset mode.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

try:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
    from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn
except ImportError as exc:
    raise gym.error.DependencyNotInstalled(
        'metarl.integrations.sb3 needs Stable-Baselines3: pip install "metarl[sb3]"'
    ) from exc

from metarl.envs.vector import TaskVectorEnv
from metarl.errors import UserError

PER_ENV_METHODS = ("get_task",)


class TaskVecEnv(VecEnv):
    """``num_envs`` sub-envs of a metarl task distribution as one SB3 ``VecEnv``.

    Args:
        env: a registered id, or a :class:`TaskVectorEnv` made with ``autoreset_mode=AutoresetMode.SAME_STEP``.
        num_envs: number of sub-envs (with an id).
        **vector_kwargs: arguments of :class:`TaskVectorEnv` (``tasks``, ``resample_tasks``, ``horizon``, ...).
    """

    def __init__(self, env: str | TaskVectorEnv, num_envs: int = 1, **vector_kwargs: Any) -> None:
        if isinstance(env, str):
            env = TaskVectorEnv(env, num_envs, autoreset_mode=AutoresetMode.SAME_STEP, **vector_kwargs)
        elif vector_kwargs:
            raise UserError(f"pass {sorted(vector_kwargs)} when making the TaskVectorEnv, not here")
        if env.autoreset_mode != AutoresetMode.SAME_STEP:
            raise UserError(
                "SB3 resets a finished sub-env in the step that ends it: make the TaskVectorEnv with "
                "autoreset_mode=AutoresetMode.SAME_STEP"
            )
        self.vector_env = env
        self._actions: np.ndarray | None = None
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    def reset(self) -> VecEnvObs:
        """Reset every sub-env with the seeds of ``seed()`` and the options of ``set_options()``, if any."""
        seed = self._seeds[0]
        if any(s != (None if seed is None else seed + k) for k, s in enumerate(self._seeds)):
            raise UserError("TaskVecEnv seeds its sub-envs with seed + k: use seed(seed), not per-env seeds")
        options = self._options[0]
        if any(o != options for o in self._options):
            raise UserError("TaskVecEnv takes one set of reset options for all sub-envs")
        obs, info = self.vector_env.reset(seed=seed, options=dict(options) or None)
        self.reset_infos = _per_env(info, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, terminated, truncated, info = self.vector_env.step(self._actions)
        dones = terminated | truncated
        infos = [{"TimeLimit.truncated": bool(t)} for t in truncated & ~terminated]
        _add_per_env(infos, {k: v for k, v in info.items() if k not in ("task", "final_obs", "final_info")})
        if dones.any():  # the ended sub-envs' step info is their final info; their reset info is the task
            _add_per_env(infos, info["final_info"])
            for k in np.flatnonzero(dones):
                infos[k]["terminal_observation"] = info["final_obs"][k]
                self.reset_infos[k] = {"task": info["task"][k]}
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.vector_env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Per-sub-env ``task``, or an attribute every sub-env shares (spaces, ``render_mode``, ``horizon``)."""
        targets = list(self._get_indices(indices))
        if attr_name == "task":
            tasks = self.vector_env.tasks
            return [tasks[k] for k in targets]
        value = self.vector_env.single_env.get_wrapper_attr(attr_name)
        return [value for _ in targets]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise UserError(
            f"cannot set {attr_name!r}: the sub-envs are copies in one batched engine; pass env arguments "
            "when making the TaskVecEnv, and tasks through set_options({'task': ...}) and reset()"
        )

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Only ``get_task``, per sub-env: the sub-envs are copies in one engine, not env objects."""
        if method_name not in PER_ENV_METHODS:
            raise UserError(
                f"TaskVecEnv supports env_method for {list(PER_ENV_METHODS)}, not {method_name!r}"
            )
        return self.get_attr("task", indices)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


class NormalizedActions(VecEnvWrapper):
    """Actions in ``[-1, 1]`` per dimension, mapped linearly onto the env's bounded ``Box`` (as metarl's sampler
    does with ``policy.normalized_actions``), so a policy trained through it acts like a metarl policy."""

    def __init__(self, venv: VecEnv) -> None:
        space = venv.action_space
        if not isinstance(space, gym.spaces.Box) or not np.all(
            np.isfinite(space.low) & np.isfinite(space.high)
        ):
            raise UserError(f"normalized actions need a bounded Box action space, got {space}")
        self._center = (space.high + space.low) / 2.0
        self._half_range = (space.high - space.low) / 2.0
        super().__init__(venv, action_space=gym.spaces.Box(-1.0, 1.0, shape=space.shape, dtype=np.float32))

    def reset(self) -> VecEnvObs:
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(self._center + self._half_range * np.asarray(actions))

    def step_wait(self) -> VecEnvStepReturn:
        return self.venv.step_wait()


__all__ = ["PPO", "NormalizedActions", "TaskVecEnv"]


def _per_env(info: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Gymnasium's vector info (arrays with ``_key`` masks) as SB3's list of per-env dicts."""
    out: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    _add_per_env(out, info)
    return out


def _add_per_env(out: list[dict[str, Any]], info: dict[str, Any]) -> None:
    """Add each entry of a Gymnasium vector info to the dicts of the sub-envs its ``_key`` mask marks."""
    for key, value in info.items():
        if key.startswith("_") or f"_{key}" not in info or isinstance(value, dict):
            continue
        for k in np.flatnonzero(info[f"_{key}"]):
            out[k][key] = value[k]
