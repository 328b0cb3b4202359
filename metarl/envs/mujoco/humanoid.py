"""Humanoid running in a direction of the plane (Rakelly et al. 2019, PEARL humanoid-dir)."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv

from metarl.envs.mujoco.locomotion import LocomotionTaskEnv, State, control_cost
from metarl.envs.mujoco.tasks import HeadingTask


class HumanoidDirEnv(LocomotionTaskEnv, HumanoidEnv):
    """Humanoid that must run along a direction of the plane it is not told.

    Task distribution: heading angle ~ U[0, 2 pi) (``HeadingTask``), direction u = (cos, sin).
    Reward: ``1.25 u . v_com + 5 * healthy - 0.1 ||ctrl||^2 - min(5e-7 ||cfrc_ext||^2, 10)``, ``v_com`` the
    xy velocity of the centre of mass and ``ctrl = 0.4 a`` the applied controls.
    Termination: unhealthy (torso z outside (1.0, 2.0)); truncation after ``horizon`` steps (default 200).
    Observation, model, reset noise: Gymnasium's ``Humanoid-v5`` (348-d). Action: 17 values in [-1, 1],
    rescaled to the model's control range [-0.4, 0.4].
    Source: Rakelly et al., "Efficient Off-Policy Meta-Reinforcement Learning via Probabilistic Context
    Variables" (PEARL), ICML 2019 (humanoid-dir; its 0.25 * displacement / timestep is 1.25 * velocity).

    | argument | default | meaning |
    |---|---|---|
    | horizon | 200 | steps before truncation |
    | forward_reward_weight | 1.25 | weight of ``u . v_com`` |
    | ctrl_cost_weight | 0.1 | weight of ``||ctrl||^2`` |
    | contact_cost_weight | 5e-7 | weight of ``||cfrc_ext||^2`` (the cost is capped at 10) |
    | survive_reward | 5.0 | bonus per healthy step |
    | terminate_when_unhealthy | True | end the episode when the humanoid falls |
    | render_mode | None | Gymnasium render mode |

    Version history: v0, first release (MuJoCo bindings, Gymnasium v5 model).
    """

    task_type = HeadingTask
    gathered_fields: ClassVar[tuple[str, ...]] = (
        "qpos",
        "qvel",
        "cinert",
        "cvel",
        "qfrc_actuator",
        "cfrc_ext",
        "xipos",
    )
    uses_contact_forces: ClassVar[bool] = True
    velocity_noise: ClassVar[str] = "uniform"
    healthy_z_range: ClassVar[tuple[float, float]] = (1.0, 2.0)
    contact_cost_cap: ClassVar[float] = 10.0

    def __init__(
        self,
        horizon: int = 200,
        forward_reward_weight: float = 1.25,
        ctrl_cost_weight: float = 0.1,
        contact_cost_weight: float = 5e-7,
        survive_reward: float = 5.0,
        terminate_when_unhealthy: bool = True,
        render_mode: str | None = None,
    ) -> None:
        self._forward_weight = float(forward_reward_weight)
        self._ctrl_weight = float(ctrl_cost_weight)
        self._contact_weight = float(contact_cost_weight)
        self._survive_reward = float(survive_reward)
        self.terminate_when_unhealthy = bool(terminate_when_unhealthy)
        gym_kwargs = {
            "forward_reward_weight": forward_reward_weight,
            "ctrl_cost_weight": ctrl_cost_weight,
            "contact_cost_weight": contact_cost_weight,
            "healthy_reward": survive_reward,
            "terminate_when_unhealthy": terminate_when_unhealthy,
            "render_mode": render_mode,
        }
        own = {"horizon": horizon, **{k: v for k, v in gym_kwargs.items() if k != "healthy_reward"}}
        own["survive_reward"] = survive_reward
        self._init_locomotion(horizon, HumanoidEnv, gym_kwargs, own)

    def observe(self, state: State) -> np.ndarray:
        n = len(state["qpos"])
        return np.concatenate(
            [
                state["qpos"][:, 2:],
                state["qvel"],
                state["cinert"][:, 1:].reshape(n, -1),
                state["cvel"][:, 1:].reshape(n, -1),
                state["qfrc_actuator"][:, 6:],
                state["cfrc_ext"][:, 1:].reshape(n, -1),
            ],
            axis=1,
        )

    def position(self, state: State) -> np.ndarray:
        mass = self.model.body_mass
        return np.einsum("b,nbk->nk", mass, state["xipos"])[:, :2] / mass.sum()

    def healthy(self, state: State) -> np.ndarray:
        low, high = self.healthy_z_range
        z = state["qpos"][:, 2]
        return (low < z) & (z < high)

    def _sample_task(self, rng: np.random.Generator) -> HeadingTask:
        return HeadingTask(angle=float(rng.uniform(0.0, 2 * math.pi)))

    def task_features(self, task: HeadingTask) -> np.ndarray:
        return task.unit_vector.astype(np.float32)

    def reward_params(self, task: HeadingTask) -> np.ndarray:
        return task.unit_vector

    def reward(self, velocity, position, healthy, state, actions, ctrl, params):
        forward = self._forward_weight * np.sum(velocity * params, axis=1)
        survive = self._survive_reward * healthy
        ctrl_cost = control_cost(ctrl, self._ctrl_weight)
        n = len(state["qpos"])
        contact = np.minimum(
            self._contact_weight * np.sum(np.square(state["cfrc_ext"]).reshape(n, -1), axis=1),
            self.contact_cost_cap,
        )
        return forward + survive - ctrl_cost - contact, {
            "reward_forward": forward,
            "reward_survive": survive,
            "reward_ctrl": -ctrl_cost,
            "reward_contact": -contact,
        }
