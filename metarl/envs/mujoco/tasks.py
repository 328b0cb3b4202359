"""Task values of the MuJoCo locomotion distributions (importable without mujoco, so runs reload them).

Each task validates what it can by itself on construction; support that depends on an env's
arguments (velocity range, goal radius, model sizes) is checked by the env's ``validate_task``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from metarl.envs.base import Task, check_array, check_range, check_real, register_task_type
from metarl.errors import UserError


@register_task_type
@dataclass(frozen=True)
class VelocityTask(Task):
    """Run forward at ``velocity`` (m/s along x)."""

    velocity: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "velocity", check_real("velocity", self.velocity))


@register_task_type
@dataclass(frozen=True)
class DirectionTask(Task):
    """Run forward (``direction = +1``) or backward (``direction = -1``) along x."""

    direction: float

    def __post_init__(self) -> None:
        value = check_real("direction", self.direction)
        if value not in (-1.0, 1.0):
            raise UserError(f"task field 'direction' must be -1.0 or +1.0, got {value}")
        object.__setattr__(self, "direction", value)


@register_task_type
@dataclass(frozen=True)
class HeadingTask(Task):
    """Run in the plane along the unit vector ``(cos angle, sin angle)``, angle in radians in [0, 2 pi]."""

    angle: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "angle", check_range("angle", self.angle, 0.0, 2 * math.pi))

    @property
    def unit_vector(self) -> np.ndarray:
        return np.array([math.cos(self.angle), math.sin(self.angle)])


@register_task_type
@dataclass(frozen=True)
class GoalPositionTask(Task):
    """Reach the point ``(goal_x, goal_y)`` in the plane."""

    goal_x: float
    goal_y: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "goal_x", check_real("goal_x", self.goal_x))
        object.__setattr__(self, "goal_y", check_real("goal_y", self.goal_y))

    @property
    def goal(self) -> np.ndarray:
        return np.array([self.goal_x, self.goal_y])


@register_task_type
@dataclass(frozen=True, eq=False)
class PhysicsTask(Task):
    """Multiplicative scale factors of a model's physical parameters (one factor per model entry).

    Shapes follow the MuJoCo model: ``body_mass_scale (nbody,)``, ``body_inertia_scale (nbody, 3)``,
    ``dof_damping_scale (nv,)``, ``geom_friction_scale (ngeom, 3)``. Factors must be positive and finite;
    the env checks shapes and the distribution's range.
    """

    body_mass_scale: np.ndarray
    body_inertia_scale: np.ndarray
    dof_damping_scale: np.ndarray
    geom_friction_scale: np.ndarray

    def __post_init__(self) -> None:
        for f in fields(self):
            arr = check_array(f.name, getattr(self, f.name))
            if arr.size and arr.min() <= 0:
                raise UserError(
                    f"task field '{f.name}' must hold positive scale factors, got min {arr.min()}"
                )
            object.__setattr__(self, f.name, arr)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PhysicsTask):
            return NotImplemented
        return all(np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f.name).tobytes() for f in fields(self)))
