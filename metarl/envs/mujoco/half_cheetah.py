"""HalfCheetah task distributions: target velocity and direction (Finn et al. 2017; Rothfuss et al. 2019)."""

from __future__ import annotations

import warnings
from typing import ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from metarl.envs.base import check_interval, check_range
from metarl.envs.mujoco.locomotion import LocomotionTaskEnv, State, control_cost
from metarl.envs.mujoco.tasks import DirectionTask, VelocityTask


class _HalfCheetahTaskEnv(LocomotionTaskEnv, HalfCheetahEnv):
    """Gymnasium's HalfCheetah-v5 (model, 17-d observation, reset noise) with a task-dependent reward."""

    velocity_noise: ClassVar[str] = "normal"

    def __init__(
        self, horizon: int, ctrl_cost_weight: float, render_mode: str | None, **pickle_kwargs
    ) -> None:
        self._ctrl_weight = float(ctrl_cost_weight)
        self._init_locomotion(
            horizon,
            HalfCheetahEnv,
            {"ctrl_cost_weight": ctrl_cost_weight, "render_mode": render_mode},
            {
                "horizon": horizon,
                "ctrl_cost_weight": ctrl_cost_weight,
                "render_mode": render_mode,
                **pickle_kwargs,
            },
        )

    def _initialize_simulation(self):
        # MuJoCo >= 3.4 warns (and writes MUJOCO_LOG.TXT into the working directory) that Gymnasium's
        # half_cheetah.xml uses the deprecated `settotalmass`; the compiled model is unchanged, so keep
        # only other warnings, re-issued as Python warnings.
        messages: list[str] = []
        previous = mujoco.get_mju_user_warning()
        mujoco.set_mju_user_warning(messages.append)
        try:
            model_and_data = HalfCheetahEnv._initialize_simulation(self)
        finally:
            mujoco.set_mju_user_warning(previous)
        for message in messages:
            if "settotalmass" not in message:
                warnings.warn(f"MuJoCo: {message}", stacklevel=2)
        return model_and_data

    def observe(self, state: State) -> np.ndarray:
        return np.concatenate([state["qpos"][:, 1:], state["qvel"]], axis=1)

    def position(self, state: State) -> np.ndarray:
        return state["qpos"][:, :1]


class HalfCheetahVelEnv(_HalfCheetahTaskEnv):
    """HalfCheetah that must run forward at a target velocity it is not told.

    Task distribution: target velocity v* ~ U[0, 2] m/s (``VelocityTask``); U[0, 3] with ``velocity_range=(0, 3)``.
    Reward: ``-|v_x - v*| - 0.05 ||a||^2`` with ``v_x`` the finite-difference x velocity of the root.
    Observation, model, reset noise: Gymnasium's ``HalfCheetah-v5`` (17-d: qpos without x, qvel).
    Action: 6 joint torques in [-1, 1]. No termination; truncation after ``horizon`` steps (default 200).
    Source: Finn, Abbeel, Levine, "Model-Agnostic Meta-Learning", ICML 2017 (U[0, 2], as in
    cbfinn/maml_rl and tristandeleu/pytorch-maml-rl); Rothfuss et al. "ProMP", ICLR 2019 and Rakelly et al.
    "PEARL", ICML 2019 use U[0, 3].

    | argument | default | meaning |
    |---|---|---|
    | horizon | 200 | steps before truncation |
    | velocity_range | (0.0, 2.0) | support of the target velocity |
    | ctrl_cost_weight | 0.05 | weight of ``||a||^2`` |
    | render_mode | None | Gymnasium render mode |

    Version history: v0, first release (MuJoCo bindings, Gymnasium v5 model).
    """

    task_type = VelocityTask

    def __init__(
        self,
        horizon: int = 200,
        velocity_range: tuple[float, float] = (0.0, 2.0),
        ctrl_cost_weight: float = 0.05,
        render_mode: str | None = None,
    ) -> None:
        self.velocity_range = check_interval("velocity_range", velocity_range)
        super().__init__(horizon, ctrl_cost_weight, render_mode, velocity_range=self.velocity_range)

    def _sample_task(self, rng: np.random.Generator) -> VelocityTask:
        return VelocityTask(velocity=float(rng.uniform(*self.velocity_range)))

    def validate_task(self, task) -> None:
        super().validate_task(task)
        check_range("velocity", task.velocity, *self.velocity_range)

    def task_features(self, task: VelocityTask) -> np.ndarray:
        return np.array([task.velocity], dtype=np.float32)

    def reward_params(self, task: VelocityTask) -> np.ndarray:
        return np.array([task.velocity])

    def reward(self, velocity, position, healthy, state, actions, ctrl, params):
        tracking = -np.abs(velocity[:, 0] - params[:, 0])
        ctrl_cost = control_cost(actions, self._ctrl_weight)
        return tracking - ctrl_cost, {"reward_velocity": tracking, "reward_ctrl": -ctrl_cost}


class HalfCheetahDirEnv(_HalfCheetahTaskEnv):
    """HalfCheetah that must run forward or backward, without being told which.

    Task distribution: direction d uniform on {-1, +1} (``DirectionTask``).
    Reward: ``d * v_x - 0.05 ||a||^2`` with ``v_x`` the finite-difference x velocity of the root.
    Observation, model, reset noise: Gymnasium's ``HalfCheetah-v5`` (17-d: qpos without x, qvel).
    Action: 6 joint torques in [-1, 1]. No termination; truncation after ``horizon`` steps (default 200).
    Source: Finn, Abbeel, Levine, "Model-Agnostic Meta-Learning", ICML 2017 (forward/backward cheetah);
    Rothfuss et al. "ProMP", ICLR 2019.

    | argument | default | meaning |
    |---|---|---|
    | horizon | 200 | steps before truncation |
    | ctrl_cost_weight | 0.05 | weight of ``||a||^2`` |
    | render_mode | None | Gymnasium render mode |

    Version history: v0, first release (MuJoCo bindings, Gymnasium v5 model).
    """

    task_type = DirectionTask

    def __init__(
        self, horizon: int = 200, ctrl_cost_weight: float = 0.05, render_mode: str | None = None
    ) -> None:
        super().__init__(horizon, ctrl_cost_weight, render_mode)

    def _sample_task(self, rng: np.random.Generator) -> DirectionTask:
        return DirectionTask(direction=float(rng.choice([-1.0, 1.0])))

    def task_features(self, task: DirectionTask) -> np.ndarray:
        return np.array([task.direction], dtype=np.float32)

    def reward_params(self, task: DirectionTask) -> np.ndarray:
        return np.array([task.direction])

    def reward(self, velocity, position, healthy, state, actions, ctrl, params):
        progress = params[:, 0] * velocity[:, 0]
        ctrl_cost = control_cost(actions, self._ctrl_weight)
        return progress - ctrl_cost, {"reward_forward": progress, "reward_ctrl": -ctrl_cost}
