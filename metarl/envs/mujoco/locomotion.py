"""Shared base of the MuJoCo task distributions: one definition of observation, reward and termination.

A robot env combines :class:`LocomotionTaskEnv` with a Gymnasium v5 MuJoCo env class (its XML model,
reset noise, rendering). Observation, reward and termination are written once, vectorised over a batch
of copies (arrays gathered from ``MjData``: ``state[name]`` has shape ``(N, *field_shape)``); the single
env calls them with ``N = 1`` and the batched engine (:mod:`metarl.envs.mujoco.engine`) with all copies,
so both forms compute the same numbers by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.utils import EzPickle

from metarl.envs.actions import check_box_action
from metarl.envs.base import TaskEnv, TaskT
from metarl.envs.mujoco.engine import MujocoBatchedEnv
from metarl.envs.task_options import task_for_reset

State = dict[str, np.ndarray]


class LocomotionTaskEnv(TaskEnv[TaskT]):
    """Task API and the vectorised hooks on top of a Gymnasium v5 MuJoCo env (mixed in after this class).

    Subclasses set the class attributes and implement :meth:`observe`, :meth:`position`,
    :meth:`healthy` and :meth:`reward`; tasks enter the reward through :meth:`reward_params`
    (a float vector per task) or, for hidden physics, through :meth:`model_for_task`.
    """

    #: ``MjData`` fields gathered after every step (all that observe/position/healthy/reward read).
    gathered_fields: ClassVar[tuple[str, ...]] = ("qpos", "qvel")
    #: whether ``cfrc_ext`` is read (it needs ``mj_rnePostConstraint`` after each step).
    uses_contact_forces: ClassVar[bool] = False
    #: distribution of the initial-velocity noise of the Gymnasium v5 env: "normal" or "uniform".
    velocity_noise: ClassVar[str] = "uniform"
    #: whether episodes end when the robot is unhealthy (can be overridden per instance).
    terminate_when_unhealthy: bool = False

    def _init_locomotion(self, horizon: int, gym_class: type, gym_kwargs: dict, pickle_kwargs: dict) -> None:
        TaskEnv.__init__(self, horizon)
        gym_class.__init__(self, **gym_kwargs)
        # Gymnasium's EzPickle recorded the v5 constructor's arguments; record ours instead.
        EzPickle.__init__(self, **pickle_kwargs)
        self._last_position = self.position(self.gather())

    # --- actions ------------------------------------------------------------------------------
    def _set_action_space(self) -> spaces.Box:
        low, high = self.model.actuator_ctrlrange.copy().T
        self._ctrl_center = (high + low) / 2
        self._ctrl_half_range = (high - low) / 2
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.model.nu,), dtype=np.float32)
        return self.action_space

    def to_ctrl(self, actions: np.ndarray) -> np.ndarray:
        """Map actions in [-1, 1] to the model's control range (MuJoCo clamps values outside it)."""
        return self._ctrl_center + self._ctrl_half_range * actions

    # --- vectorised hooks ---------------------------------------------------------------------
    def observe(self, state: State) -> np.ndarray:
        """Observations ``(N, obs_dim)``."""
        raise NotImplementedError

    def position(self, state: State) -> np.ndarray:
        """Positions ``(N, d)`` whose finite difference over a step is the velocity that is rewarded."""
        raise NotImplementedError

    def healthy(self, state: State) -> np.ndarray:
        """``(N,)`` bool; unhealthy copies terminate when ``terminate_when_unhealthy``."""
        return np.ones(len(state["qpos"]), dtype=bool)

    def reward(
        self,
        velocity: np.ndarray,
        position: np.ndarray,
        healthy: np.ndarray,
        state: State,
        actions: np.ndarray,
        ctrl: np.ndarray,
        params: np.ndarray,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Rewards ``(N,)`` and their named components, for per-copy task parameters ``params (N, p)``."""
        raise NotImplementedError

    def reward_params(self, task: TaskT) -> np.ndarray:
        """The task as the float vector :meth:`reward` reads (empty for hidden-physics tasks)."""
        return np.zeros(0)

    def model_for_task(self, task: TaskT) -> mujoco.MjModel:
        """The model copies of ``task`` simulate (the env's own model unless the task changes physics)."""
        return self.model

    def initial_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(qpos, qvel)`` at reset, drawn exactly as the Gymnasium v5 env draws them."""
        scale = self._reset_noise_scale
        qpos = self.init_qpos + rng.uniform(low=-scale, high=scale, size=self.model.nq)
        if self.velocity_noise == "normal":
            qvel = self.init_qvel + scale * rng.standard_normal(self.model.nv)
        else:
            qvel = self.init_qvel + rng.uniform(low=-scale, high=scale, size=self.model.nv)
        return qpos, qvel

    def outcome(
        self, previous_position: np.ndarray, state: State, actions: np.ndarray, params: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """``obs, reward, terminated, position, info`` of a batch of copies after a step."""
        position = np.array(self.position(state))  # a copy: the engine refills its state buffers in place
        velocity = (position - previous_position) / self.dt
        healthy = self.healthy(state)
        reward, info = self.reward(velocity, position, healthy, state, actions, self.to_ctrl(actions), params)
        terminated = ~healthy if self.terminate_when_unhealthy else np.zeros_like(healthy)
        info["velocity"] = velocity
        return self.observe(state), reward, terminated, position, info

    def gather(self) -> State:
        """This env's ``MjData`` fields as a batch of one."""
        return {name: np.array(getattr(self.data, name))[None] for name in self.gathered_fields}

    # --- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        gym.Env.reset(self, seed=seed)
        task = task_for_reset(self, options)
        mujoco.mj_resetData(self.model, self.data)
        obs = self.reset_model()
        if self.render_mode == "human":
            self.render()
        return obs, {"task": task}

    def reset_model(self) -> np.ndarray:
        qpos, qvel = self.initial_state(self.np_random)
        self.set_state(qpos, qvel)
        state = self.gather()
        self._last_position = self.position(state)
        return self.observe(state)[0]

    def step(self, action):
        action = check_box_action(action, self.action_space)
        self.do_simulation(self.to_ctrl(action), self.frame_skip)
        params = self.reward_params(self.get_task())[None]
        obs, reward, terminated, self._last_position, info = self.outcome(
            self._last_position, self.gather(), action[None], params
        )
        if self.render_mode == "human":
            self.render()
        step_info = {name: value[0] for name, value in info.items()}
        return obs[0], float(reward[0]), bool(terminated[0]), False, step_info

    def make_batched(
        self, tasks: Sequence[TaskT], episodes_per_task: int, seed: int | None
    ) -> MujocoBatchedEnv:
        return MujocoBatchedEnv(self, tasks, episodes_per_task, seed)


def contact_cost(cfrc_ext: np.ndarray, weight: float) -> np.ndarray:
    """``weight * ||clip(cfrc_ext, -1, 1)||^2`` per copy (the rllab / Gymnasium Ant contact cost)."""
    clipped = np.clip(cfrc_ext, -1.0, 1.0)
    return weight * np.sum(np.square(clipped).reshape(len(clipped), -1), axis=1)


def control_cost(actions: np.ndarray, weight: float) -> np.ndarray:
    """``weight * ||a||^2`` per copy."""
    return weight * np.sum(np.square(actions), axis=1)
