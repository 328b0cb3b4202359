"""A task distribution of your own, complete: a point mass that must find a goal on a circle.

The template of ``docs/custom-envs.md``. Copy it and change the physics, the task and the names:

1. a frozen task dataclass, registered by name so runs can save and reload their tasks;
2. a :class:`metarl.envs.TaskEnv`: ``task_type``, ``super().__init__(horizon)``, ``_sample_task``,
   ``reset`` and ``step`` (the base class truncates at ``horizon``: no step counting here);
3. optionally a numpy batched engine (:class:`metarl.envs.BatchedEnv`) that steps every copy at once,
   for speed; without ``make_batched`` metarl steps single envs in a loop (the same numbers, slower);
4. a Gymnasium id, registered when this module is imported.

Train and evaluate it from the command line::

    metarl train --import examples/point_mass_ring.py --env MyLab/PointMassRing-v0 iterations=50
    metarl evaluate runs/maml-trpo-pointmassring-s0

(the run records this file in its config, so ``metarl evaluate`` imports it again).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from metarl.envs import BatchedEnv, Task, TaskEnv, check_range, register_task_type
from metarl.envs.seeding import CopyGenerators

ENV_ID = "MyLab/PointMassRing-v0"
RADIUS = 1.0  # the goals lie on the circle of this radius around the start
DT = 0.1  # integration step
DAMPING = 0.9  # velocity kept from one step to the next
MAX_FORCE = 1.0
START_NOISE = 0.05  # half-width of the uniform noise on the start position
CONTROL_COST = 0.01


# --8<-- [start:task]
@register_task_type
@dataclass(frozen=True)
class RingGoalTask(Task):
    """The goal at ``angle`` (radians, in ``[0, 2 pi]``) on the circle of radius ``RADIUS``."""

    angle: float

    def __post_init__(self) -> None:
        # tasks validate themselves: a bad value fails here, with the field's name in the message
        object.__setattr__(self, "angle", check_range("angle", self.angle, 0.0, 2 * math.pi))

    @property
    def goal(self) -> np.ndarray:
        return RADIUS * np.array([math.cos(self.angle), math.sin(self.angle)])
        # --8<-- [end:task]


def _move(
    position: np.ndarray, velocity: np.ndarray, action: np.ndarray, goal: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of the dynamics for any number of copies (arrays ``(..., 2)``): position, velocity, reward.

    The single env and the batched engine both call it, so they compute the same numbers by construction.
    """
    force = np.clip(action, -MAX_FORCE, MAX_FORCE)
    velocity = DAMPING * velocity + DT * force
    position = position + DT * velocity
    reward = -np.linalg.norm(position - goal, axis=-1) - CONTROL_COST * np.sum(force**2, axis=-1)
    return position, velocity, reward


# --8<-- [start:env]
class PointMassRingEnv(TaskEnv[RingGoalTask]):
    """A point mass pushed by a bounded force towards a goal it cannot see, somewhere on a circle.

    Task distribution: goal angle ~ U[0, 2 pi) on the circle of radius 1 (``RingGoalTask``).
    Start: the origin plus U[-0.05, 0.05]^2 noise. Observation: position and velocity (float32, 4).
    Action: a force in ``[-1, 1]^2``; velocity ``v <- 0.9 v + 0.1 a``, position ``p <- p + 0.1 v``.
    Reward: ``-||p - goal|| - 0.01 ||a||^2``. Termination: never; truncation after ``horizon`` steps.

    | argument | default | meaning |
    |---|---|---|
    | horizon | 50 | steps before truncation |

    Version history: v0, first release.
    """

    task_type = RingGoalTask

    def __init__(self, horizon: int = 50, render_mode: str | None = None) -> None:
        super().__init__(horizon, render_mode)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
        self.action_space = spaces.Box(-MAX_FORCE, MAX_FORCE, shape=(2,), dtype=np.float32)
        self._position = np.zeros(2)
        self._velocity = np.zeros(2)

    def _sample_task(self, rng: np.random.Generator) -> RingGoalTask:
        return RingGoalTask(angle=float(rng.uniform(0.0, 2 * math.pi)))

    def task_features(self, task: RingGoalTask) -> np.ndarray:
        return task.goal.astype(np.float32)  # what an oracle policy is told

    def _observation(self) -> np.ndarray:
        return np.concatenate([self._position, self._velocity]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)  # seeds self.np_random
        task = self.get_task()
        self._position = self.np_random.uniform(-START_NOISE, START_NOISE, size=2)
        self._velocity = np.zeros(2)
        return self._observation(), {"task": task}

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        self._position, self._velocity, reward = _move(
            self._position, self._velocity, action, self.get_task().goal
        )
        return self._observation(), float(reward), False, False, {}

    def make_batched(self, tasks: Sequence[RingGoalTask], episodes_per_task: int, seed: int | None):
        return BatchedPointMassRing(tasks, episodes_per_task, self.horizon, seed)
        # --8<-- [end:env]


# --8<-- [start:engine]
class BatchedPointMassRing(BatchedEnv):
    """Numpy engine: all ``(tasks, episodes)`` copies in one array step.

    Copy ``(i, j)`` draws its start noise from a generator seeded exactly like the single env's
    ``np_random`` after ``reset(seed=seed + i * episodes_per_task + j)``, so both forms agree.
    """

    def __init__(
        self, tasks: Sequence[RingGoalTask], episodes_per_task: int, horizon: int, seed: int | None = None
    ) -> None:
        single = PointMassRingEnv(horizon)
        super().__init__(
            tasks, episodes_per_task, single.observation_space, single.action_space, horizon, seed
        )
        self._goals = np.zeros((self.num_tasks, 1, 2))  # broadcast over the episodes of a task
        self._load_tasks(range(self.num_tasks))
        self._generators = CopyGenerators(self.num_copies)
        self._position = np.zeros(self.batch_shape + (2,))
        self._velocity = np.zeros(self.batch_shape + (2,))

    def _observation(self) -> np.ndarray:
        return np.concatenate([self._position, self._velocity], axis=-1).astype(np.float32)

    def _load_tasks(self, rows):
        for row in rows:  # at construction, and when a reset gives a row a new task
            self._goals[row, 0] = self.tasks[row].goal

    def _reset(self, seeds, mask):
        generators = self._generators.reseed(seeds)  # copies not being reset keep their streams
        position, velocity = self._position.reshape(-1, 2), self._velocity.reshape(-1, 2)
        for k in np.flatnonzero(mask):
            position[k] = generators[k].uniform(-START_NOISE, START_NOISE, size=2)
            velocity[k] = 0.0
        return self._observation()

    def _step(self, actions, active):
        position, velocity, reward = _move(
            self._position, self._velocity, actions.astype(np.float64), self._goals
        )
        keep = active[..., None]  # finished copies stay where they are
        self._position = np.where(keep, position, self._position)
        self._velocity = np.where(keep, velocity, self._velocity)
        return self._observation(), reward, np.zeros(self.batch_shape, dtype=bool), {}
        # --8<-- [end:engine]


# --8<-- [start:register]
def register() -> None:
    """Register ``MyLab/PointMassRing-v0`` with Gymnasium (idempotent); also usable as an entry point."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=PointMassRingEnv)
        # --8<-- [end:register]


register()
