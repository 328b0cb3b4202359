"""Hopper and Walker2d with randomised physics (Rothfuss et al. 2019, ProMP; Rakelly et al. 2019, PEARL)."""

from __future__ import annotations

import copy
from dataclasses import fields

import mujoco
import numpy as np
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from metarl.envs.base import check_array
from metarl.envs.mujoco.locomotion import LocomotionTaskEnv, State, control_cost
from metarl.envs.mujoco.tasks import PhysicsTask
from metarl.errors import UserError

#: task field -> (MjModel attribute it scales, base of the log-uniform factor base ** U[-limit, limit])
RANDOMISED_PARAMETERS: dict[str, tuple[str, float]] = {
    "body_mass_scale": ("body_mass", 1.5),
    "body_inertia_scale": ("body_inertia", 1.5),
    "dof_damping_scale": ("dof_damping", 1.3),
    "geom_friction_scale": ("geom_friction", 1.5),
}


def identity_task(env: RandParamsEnv) -> PhysicsTask:
    """The task whose factors are all 1 (the unmodified Gymnasium model)."""
    return PhysicsTask(**{name: np.ones(shape) for name, shape in env.task_shapes().items()})


class RandParamsEnv(LocomotionTaskEnv[PhysicsTask]):
    """Shared part of the rand-params envs: tasks scale the model's physical parameters.

    Each factor is drawn independently per model entry as ``base ** U[-log_scale_limit, log_scale_limit]``
    (``base`` 1.5 for body mass, body inertia and geom friction, 1.3 for joint damping). After scaling,
    ``mj_setConst`` recomputes the constants derived from them. Reward:
    ``v_x + 1 - 1e-3 ||a||^2`` (the survival bonus 1 on every step, as in the reference code).
    """

    task_type = PhysicsTask
    terminate_when_unhealthy = True

    def _init_rand_params(self, horizon: int, log_scale_limit: float, gym_class: type, render_mode) -> None:
        if not float(log_scale_limit) >= 0:
            raise UserError(f"log_scale_limit must be >= 0, got {log_scale_limit!r}")
        self.log_scale_limit = float(log_scale_limit)
        self._init_locomotion(
            horizon,
            gym_class,
            {"render_mode": render_mode},
            {"horizon": horizon, "log_scale_limit": log_scale_limit, "render_mode": render_mode},
        )
        self._pristine_model = copy.deepcopy(self.model)

    def task_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each task field for this model."""
        return {name: getattr(self.model, attr).shape for name, (attr, _) in RANDOMISED_PARAMETERS.items()}

    def _sample_task(self, rng: np.random.Generator) -> PhysicsTask:
        factors = {
            name: RANDOMISED_PARAMETERS[name][1]
            ** rng.uniform(-self.log_scale_limit, self.log_scale_limit, size=shape)
            for name, shape in self.task_shapes().items()
        }
        return PhysicsTask(**factors)

    def validate_task(self, task) -> None:
        super().validate_task(task)
        shapes = self.task_shapes()
        for f in fields(task):
            base = RANDOMISED_PARAMETERS[f.name][1]
            tolerance = 1e-12
            check_array(
                f.name,
                getattr(task, f.name),
                shape=shapes[f.name],
                low=base**-self.log_scale_limit * (1 - tolerance),
                high=base**self.log_scale_limit * (1 + tolerance),
            )

    def model_for_task(self, task: PhysicsTask) -> mujoco.MjModel:
        model = copy.deepcopy(self._pristine_model)
        apply_physics(model, self._pristine_model, task)
        return model

    def _on_task_set(self, task: PhysicsTask) -> None:
        apply_physics(self.model, self._pristine_model, task)

    def position(self, state: State) -> np.ndarray:
        return state["qpos"][:, :1]

    def observe(self, state: State) -> np.ndarray:
        return np.concatenate([state["qpos"][:, 1:], np.clip(state["qvel"], -10.0, 10.0)], axis=1)

    def reward(self, velocity, position, healthy, state, actions, ctrl, params):
        forward = velocity[:, 0]
        ctrl_cost = control_cost(actions, 1e-3)
        survive = np.ones_like(forward)
        return forward + survive - ctrl_cost, {
            "reward_forward": forward,
            "reward_survive": survive,
            "reward_ctrl": -ctrl_cost,
        }


def apply_physics(model: mujoco.MjModel, pristine: mujoco.MjModel, task: PhysicsTask) -> None:
    """Set ``model``'s randomised parameters to ``pristine``'s times the task's factors (in place)."""
    for name, (attr, _) in RANDOMISED_PARAMETERS.items():
        getattr(model, attr)[:] = getattr(pristine, attr) * getattr(task, name)
    mujoco.mj_setConst(model, mujoco.MjData(model))


class HopperRandParamsEnv(RandParamsEnv, HopperEnv):
    """Hopper whose body masses, inertias, frictions and joint dampings are hidden task parameters.

    Task distribution: body masses, inertias, frictions x 1.5^U[-3, 3], joint dampings x 1.3^U[-3, 3].
    Every entry of ``body_mass``, ``body_inertia``, ``geom_friction`` and ``dof_damping`` gets its own factor;
    ``PhysicsTask`` holds the factors.
    Reward: ``v_x + 1 - 1e-3 ||a||^2``, ``v_x`` the x velocity of the root.
    Termination: unhealthy as in Gymnasium's ``Hopper-v5`` (|state[2:]| >= 100, z <= 0.7 or |angle| >= 0.2);
    truncation after ``horizon`` steps (default 200).
    Observation, model, reset noise: Gymnasium's ``Hopper-v5`` (11-d, velocities clipped to [-10, 10]).
    Action: 3 torques in [-1, 1].
    Source: Rothfuss et al., "ProMP", ICLR 2019 and Rakelly et al., "PEARL", ICML 2019 (hopper-rand-params,
    from Clavera et al.'s rand_param_envs).

    | argument | default | meaning |
    |---|---|---|
    | horizon | 200 | steps before truncation |
    | log_scale_limit | 3.0 | factors are base ** U[-limit, limit] |
    | render_mode | None | Gymnasium render mode |

    Version history: v0, first release (MuJoCo bindings, Gymnasium v5 model).
    """

    def __init__(
        self, horizon: int = 200, log_scale_limit: float = 3.0, render_mode: str | None = None
    ) -> None:
        self._init_rand_params(horizon, log_scale_limit, HopperEnv, render_mode)

    def healthy(self, state: State) -> np.ndarray:
        z, angle = state["qpos"][:, 1], state["qpos"][:, 2]
        rest = np.concatenate([state["qpos"], state["qvel"]], axis=1)[:, 2:]
        in_range = np.all((rest > -100.0) & (rest < 100.0), axis=1)
        return in_range & (z > 0.7) & (angle > -0.2) & (angle < 0.2)


class Walker2dRandParamsEnv(RandParamsEnv, Walker2dEnv):
    """Walker2d whose body masses, inertias, frictions and joint dampings are hidden task parameters.

    Task distribution: body masses, inertias, frictions x 1.5^U[-3, 3], joint dampings x 1.3^U[-3, 3].
    Every entry of ``body_mass``, ``body_inertia``, ``geom_friction`` and ``dof_damping`` gets its own factor;
    ``PhysicsTask`` holds the factors.
    Reward: ``v_x + 1 - 1e-3 ||a||^2``, ``v_x`` the x velocity of the root.
    Termination: unhealthy as in Gymnasium's ``Walker2d-v5`` (z outside (0.8, 2.0) or angle outside (-1, 1));
    truncation after ``horizon`` steps (default 200).
    Observation, model, reset noise: Gymnasium's ``Walker2d-v5`` (17-d, velocities clipped to [-10, 10]).
    Action: 6 torques in [-1, 1].
    Source: Rothfuss et al., "ProMP", ICLR 2019 and Rakelly et al., "PEARL", ICML 2019 (walker-rand-params,
    from Clavera et al.'s rand_param_envs).

    | argument | default | meaning |
    |---|---|---|
    | horizon | 200 | steps before truncation |
    | log_scale_limit | 3.0 | factors are base ** U[-limit, limit] |
    | render_mode | None | Gymnasium render mode |

    Version history: v0, first release (MuJoCo bindings, Gymnasium v5 model).
    """

    def __init__(
        self, horizon: int = 200, log_scale_limit: float = 3.0, render_mode: str | None = None
    ) -> None:
        self._init_rand_params(horizon, log_scale_limit, Walker2dEnv, render_mode)

    def healthy(self, state: State) -> np.ndarray:
        z, angle = state["qpos"][:, 1], state["qpos"][:, 2]
        return (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)
