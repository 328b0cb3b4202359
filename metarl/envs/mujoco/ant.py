"""Ant task distributions: velocity, direction, 2D heading and goal (Finn et al. 2017; ProMP; PEARL)."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv

from metarl.envs.base import check_interval, check_range
from metarl.envs.mujoco.locomotion import LocomotionTaskEnv, State, contact_cost, control_cost
from metarl.envs.mujoco.tasks import DirectionTask, GoalPositionTask, HeadingTask, VelocityTask
from metarl.errors import UserError

TORSO = 1  # body index of the torso, Gymnasium's `main_body`


class _AntTaskEnv(LocomotionTaskEnv, AntEnv):
    """Gymnasium's Ant-v5 (model, 105-d observation with clipped contact forces, reset noise) with a task
    reward ``task term + survive bonus * healthy - ctrl_cost_weight ||a||^2 - contact_cost_weight
    ||clip(cfrc_ext, -1, 1)||^2``; healthy means finite state and torso height in [0.2, 1.0]."""

    gathered_fields: ClassVar[tuple[str, ...]] = ("qpos", "qvel", "cfrc_ext", "xpos")
    uses_contact_forces: ClassVar[bool] = True
    velocity_noise: ClassVar[str] = "normal"
    healthy_z_range: ClassVar[tuple[float, float]] = (0.2, 1.0)

    def __init__(
        self,
        horizon: int,
        ctrl_cost_weight: float,
        contact_cost_weight: float,
        survive_reward: float,
        terminate_when_unhealthy: bool,
        render_mode: str | None,
        **extra_kwargs,
    ) -> None:
        self._ctrl_weight = float(ctrl_cost_weight)
        self._contact_weight = float(contact_cost_weight)
        self._survive_reward = float(survive_reward)
        self.terminate_when_unhealthy = bool(terminate_when_unhealthy)
        own = {
            "horizon": horizon,
            "ctrl_cost_weight": ctrl_cost_weight,
            "contact_cost_weight": contact_cost_weight,
            "survive_reward": survive_reward,
            "terminate_when_unhealthy": terminate_when_unhealthy,
            "render_mode": render_mode,
        }
        gym_kwargs = {
            "ctrl_cost_weight": ctrl_cost_weight,
            "contact_cost_weight": contact_cost_weight,
            "healthy_reward": survive_reward,
            "terminate_when_unhealthy": terminate_when_unhealthy,
            "render_mode": render_mode,
        }
        self._init_locomotion(horizon, AntEnv, gym_kwargs, {**own, **extra_kwargs})

    def observe(self, state: State) -> np.ndarray:
        contact = np.clip(state["cfrc_ext"][:, 1:], -1.0, 1.0).reshape(len(state["qpos"]), -1)
        return np.concatenate([state["qpos"][:, 2:], state["qvel"], contact], axis=1)

    def position(self, state: State) -> np.ndarray:
        return state["xpos"][:, TORSO, :2]

    def healthy(self, state: State) -> np.ndarray:
        finite = np.isfinite(state["qpos"]).all(axis=1) & np.isfinite(state["qvel"]).all(axis=1)
        low, high = self.healthy_z_range
        z = state["qpos"][:, 2]
        return finite & (low <= z) & (z <= high)

    def reward(self, velocity, position, healthy, state, actions, ctrl, params):
        task_term = self.task_reward(velocity, position, params)
        survive = self._survive_reward * healthy
        ctrl_cost = control_cost(actions, self._ctrl_weight)
        contact = contact_cost(state["cfrc_ext"], self._contact_weight)
        reward = task_term + survive - ctrl_cost - contact
        return reward, {
            "reward_task": task_term,
            "reward_survive": survive,
            "reward_ctrl": -ctrl_cost,
            "reward_contact": -contact,
        }

    def task_reward(self, velocity: np.ndarray, position: np.ndarray, params: np.ndarray) -> np.ndarray:
        """The task-dependent term ``(N,)``."""
        raise NotImplementedError


class AntVelEnv(_AntTaskEnv):
    """Ant that must run forward at a target velocity it is not told.

    Task distribution: target velocity v* ~ U[0, 3] m/s (``VelocityTask``); ``velocity_range`` changes it.
    Reward: ``-|v_x - v*| + 1.05 * healthy - 5e-3 ||a||^2 - 5e-4 ||clip(cfrc_ext, -1, 1)||^2``, ``v_x`` the
    torso's x velocity (the 1.05 is the reference code's +1.0 in the velocity term plus its 0.05 survive bonus).
    Termination: unhealthy (non-finite state or torso z outside [0.2, 1.0]); truncation after ``horizon`` (200).
    Observation, model, reset noise: Gymnasium's ``Ant-v5`` (105-d). Action: 8 torques in [-1, 1].
    Source: Finn, Abbeel, Levine, "Model-Agnostic Meta-Learning", ICML 2017 (ant velocity; weights as in
    cbfinn/maml_rl's rllab ant and tristandeleu/pytorch-maml-rl).

    | argument | default | meaning |
    |---|---|---|
    | horizon | 200 | steps before truncation |
    | velocity_range | (0.0, 3.0) | support of the target velocity |
    | ctrl_cost_weight, contact_cost_weight | 5e-3, 5e-4 | cost weights |
    | survive_reward | 1.05 | bonus per healthy step |
    | terminate_when_unhealthy | True | end the episode when the ant falls or flips |
    | render_mode | None | Gymnasium render mode |

    Version history: v0, first release (MuJoCo bindings, Gymnasium v5 model).
    """

    task_type = VelocityTask

    def __init__(
        self,
        horizon: int = 200,
        velocity_range: tuple[float, float] = (0.0, 3.0),
        ctrl_cost_weight: float = 5e-3,
        contact_cost_weight: float = 5e-4,
        survive_reward: float = 1.05,
        terminate_when_unhealthy: bool = True,
        render_mode: str | None = None,
    ) -> None:
        self.velocity_range = check_interval("velocity_range", velocity_range)
        super().__init__(
            horizon,
            ctrl_cost_weight,
            contact_cost_weight,
            survive_reward,
            terminate_when_unhealthy,
            render_mode,
            velocity_range=self.velocity_range,
        )

    def _sample_task(self, rng: np.random.Generator) -> VelocityTask:
        return VelocityTask(velocity=float(rng.uniform(*self.velocity_range)))

    def validate_task(self, task) -> None:
        super().validate_task(task)
        check_range("velocity", task.velocity, *self.velocity_range)

    def task_features(self, task: VelocityTask) -> np.ndarray:
        return np.array([task.velocity], dtype=np.float32)

    def reward_params(self, task: VelocityTask) -> np.ndarray:
        return np.array([task.velocity])

    def task_reward(self, velocity, position, params):
        return -np.abs(velocity[:, 0] - params[:, 0])


class AntDirEnv(_AntTaskEnv):
    """Ant that must run forward or backward along x, without being told which.

    Task distribution: direction d uniform on {-1, +1} (``DirectionTask``).
    Reward: ``d * v_x + 0.05 * healthy - 5e-3 ||a||^2 - 5e-4 ||clip(cfrc_ext, -1, 1)||^2``.
    Termination: unhealthy (non-finite state or torso z outside [0.2, 1.0]); truncation after ``horizon`` (200).
    Observation, model, reset noise: Gymnasium's ``Ant-v5`` (105-d). Action: 8 torques in [-1, 1].
    Source: Finn, Abbeel, Levine, "Model-Agnostic Meta-Learning", ICML 2017 (ant forward/backward; weights as
    in cbfinn/maml_rl and tristandeleu/pytorch-maml-rl); also Rothfuss et al. "ProMP", ICLR 2019.

    | argument | default | meaning |
    |---|---|---|
    | horizon | 200 | steps before truncation |
    | ctrl_cost_weight, contact_cost_weight | 5e-3, 5e-4 | cost weights |
    | survive_reward | 0.05 | bonus per healthy step |
    | terminate_when_unhealthy | True | end the episode when the ant falls or flips |
    | render_mode | None | Gymnasium render mode |

    Version history: v0, first release (MuJoCo bindings, Gymnasium v5 model).
    """

    task_type = DirectionTask

    def __init__(
        self,
        horizon: int = 200,
        ctrl_cost_weight: float = 5e-3,
        contact_cost_weight: float = 5e-4,
        survive_reward: float = 0.05,
        terminate_when_unhealthy: bool = True,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            horizon,
            ctrl_cost_weight,
            contact_cost_weight,
            survive_reward,
            terminate_when_unhealthy,
            render_mode,
        )

    def _sample_task(self, rng: np.random.Generator) -> DirectionTask:
        return DirectionTask(direction=float(rng.choice([-1.0, 1.0])))

    def task_features(self, task: DirectionTask) -> np.ndarray:
        return np.array([task.direction], dtype=np.float32)

    def reward_params(self, task: DirectionTask) -> np.ndarray:
        return np.array([task.direction])

    def task_reward(self, velocity, position, params):
        return params[:, 0] * velocity[:, 0]


class AntDir2DEnv(_AntTaskEnv):
    """Ant that must run in a direction of the plane it is not told.

    Task distribution: heading angle ~ U[0, 2 pi) (``HeadingTask``), direction u = (cos, sin).
    Reward: ``u . v_xy + 1.0 * healthy - 0.5 ||a||^2 - 5e-4 ||clip(cfrc_ext, -1, 1)||^2``.
    Termination: unhealthy (non-finite state or torso z outside [0.2, 1.0]); truncation after ``horizon`` (200).
    Observation, model, reset noise: Gymnasium's ``Ant-v5`` (105-d). Action: 8 torques in [-1, 1].
    Source: Rakelly et al., "PEARL", ICML 2019 (ant-dir with directions on the circle); Rothfuss et al.
    "ProMP", ICLR 2019 (AntRandDirec2D).

    | argument | default | meaning |
    |---|---|---|
    | horizon | 200 | steps before truncation |
    | ctrl_cost_weight, contact_cost_weight | 0.5, 5e-4 | cost weights |
    | survive_reward | 1.0 | bonus per healthy step |
    | terminate_when_unhealthy | True | end the episode when the ant falls or flips |
    | render_mode | None | Gymnasium render mode |

    Version history: v0, first release (MuJoCo bindings, Gymnasium v5 model).
    """

    task_type = HeadingTask

    def __init__(
        self,
        horizon: int = 200,
        ctrl_cost_weight: float = 0.5,
        contact_cost_weight: float = 5e-4,
        survive_reward: float = 1.0,
        terminate_when_unhealthy: bool = True,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            horizon,
            ctrl_cost_weight,
            contact_cost_weight,
            survive_reward,
            terminate_when_unhealthy,
            render_mode,
        )

    def _sample_task(self, rng: np.random.Generator) -> HeadingTask:
        return HeadingTask(angle=float(rng.uniform(0.0, 2 * math.pi)))

    def task_features(self, task: HeadingTask) -> np.ndarray:
        return task.unit_vector.astype(np.float32)

    def reward_params(self, task: HeadingTask) -> np.ndarray:
        return task.unit_vector

    def task_reward(self, velocity, position, params):
        return np.sum(velocity * params, axis=1)


class AntGoalEnv(_AntTaskEnv):
    """Ant that must walk to a goal position it is not told.

    Task distribution: goal position uniform in the disk of radius 3 (``GoalPositionTask``).
    Sampled as angle ~ U[0, 2 pi), radius = 3 sqrt(U[0, 1]); ``goal_radius`` changes the disk.
    Reward: ``-||xy_torso - goal||_1 - 0.1 ||a||^2 - 5e-4 ||clip(cfrc_ext, -1, 1)||^2`` (+ ``survive_reward *
    healthy``, 0 by default). No termination by default: with a negative reward per step, ending the episode
    by falling would pay (the reference code disables it for that reason); truncation after ``horizon`` (200).
    Observation, model, reset noise: Gymnasium's ``Ant-v5`` (105-d). Action: 8 torques in [-1, 1].
    Source: Rothfuss et al., "ProMP", ICLR 2019 (AntRandGoal) and Rakelly et al., "PEARL", ICML 2019 (ant-goal).

    | argument | default | meaning |
    |---|---|---|
    | horizon | 200 | steps before truncation |
    | goal_radius | 3.0 | radius of the goal disk |
    | ctrl_cost_weight, contact_cost_weight | 0.1, 5e-4 | cost weights |
    | survive_reward | 0.0 | bonus per healthy step |
    | terminate_when_unhealthy | False | end the episode when the ant falls or flips |
    | render_mode | None | Gymnasium render mode |

    Version history: v0, first release (MuJoCo bindings, Gymnasium v5 model).
    """

    task_type = GoalPositionTask

    def __init__(
        self,
        horizon: int = 200,
        goal_radius: float = 3.0,
        ctrl_cost_weight: float = 0.1,
        contact_cost_weight: float = 5e-4,
        survive_reward: float = 0.0,
        terminate_when_unhealthy: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if not float(goal_radius) > 0:
            raise UserError(f"goal_radius must be positive, got {goal_radius!r}")
        self.goal_radius = float(goal_radius)
        super().__init__(
            horizon,
            ctrl_cost_weight,
            contact_cost_weight,
            survive_reward,
            terminate_when_unhealthy,
            render_mode,
            goal_radius=self.goal_radius,
        )

    def _sample_task(self, rng: np.random.Generator) -> GoalPositionTask:
        angle = rng.uniform(0.0, 2 * math.pi)
        radius = self.goal_radius * math.sqrt(rng.uniform())
        return GoalPositionTask(goal_x=radius * math.cos(angle), goal_y=radius * math.sin(angle))

    def validate_task(self, task) -> None:
        super().validate_task(task)
        distance = math.hypot(task.goal_x, task.goal_y)
        if distance > self.goal_radius * (1 + 1e-9):
            raise UserError(
                f"task fields 'goal_x', 'goal_y' = ({task.goal_x}, {task.goal_y}) lie {distance:.3f} from the "
                f"origin, outside the distribution's disk of radius {self.goal_radius}"
            )

    def task_features(self, task: GoalPositionTask) -> np.ndarray:
        return task.goal.astype(np.float32)

    def reward_params(self, task: GoalPositionTask) -> np.ndarray:
        return task.goal

    def task_reward(self, velocity, position, params):
        return -np.sum(np.abs(position - params), axis=1)
