"""2D point navigation to a goal (Finn et al. 2017, "Model-Agnostic Meta-Learning", section 5.3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from metarl.envs.actions import check_box_action
from metarl.envs.base import Task, TaskEnv, check_range, register_task_type
from metarl.envs.batched import BatchedEnv
from metarl.envs.rendering import BLUE, GREEN, LIGHT_GRAY, ORANGE, PlaneView, blank, draw_polyline, fill_disc
from metarl.envs.task_options import task_for_reset

GOAL_LOW, GOAL_HIGH = -0.5, 0.5
MAX_ACTION = 0.1
GOAL_TOLERANCE = 0.01
RENDER_SIZE = 256


@register_task_type
@dataclass(frozen=True)
class GoalTask(Task):
    """A goal position ``(goal_x, goal_y)`` in the plane."""

    goal_x: float
    goal_y: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "goal_x", check_range("goal_x", self.goal_x, GOAL_LOW, GOAL_HIGH))
        object.__setattr__(self, "goal_y", check_range("goal_y", self.goal_y, GOAL_LOW, GOAL_HIGH))

    @property
    def goal(self) -> np.ndarray:
        return np.array([self.goal_x, self.goal_y])


class Navigation2DEnv(TaskEnv[GoalTask]):
    """A point agent moves in the plane towards a goal it cannot see.

    Task distribution: goal ~ U[-0.5, 0.5]^2 (``GoalTask``).
    Start: the origin ``(0, 0)``. Observation: the position ``(x, y)`` (float32).
    Action: a displacement, clipped to ``[-0.1, 0.1]^2``.
    Reward: ``-||position - goal||_2`` after the move.
    Termination: when ``|x - goal_x| < 0.01`` and ``|y - goal_y| < 0.01``; truncation after ``horizon``
    steps (default 100).
    Source: Finn, Abbeel, Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
    ICML 2017 (2D navigation), as in the reference implementations (cbfinn/maml_rl, pytorch-maml-rl).

    | argument | default | meaning |
    |---|---|---|
    | horizon | 100 | steps before truncation |
    | render_mode | None | ``"rgb_array"``: 256x256 image of goal (green), path so far (blue), position (orange) |

    Version history: v0, first release.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    task_type = GoalTask

    def __init__(self, horizon: int = 100, render_mode: str | None = None) -> None:
        super().__init__(horizon, render_mode)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-MAX_ACTION, MAX_ACTION, shape=(2,), dtype=np.float32)
        self._position = np.zeros(2)
        self._path = [self._position]

    def _sample_task(self, rng: np.random.Generator) -> GoalTask:
        x, y = rng.uniform(GOAL_LOW, GOAL_HIGH, size=2)
        return GoalTask(goal_x=float(x), goal_y=float(y))

    def task_features(self, task: GoalTask) -> np.ndarray:
        return task.goal.astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = task_for_reset(self, options)
        self._position = np.zeros(2)
        self._path = [self._position]
        return self._position.astype(np.float32), {"task": task}

    def step(self, action):
        action = np.clip(check_box_action(action, self.action_space), -MAX_ACTION, MAX_ACTION)
        self._position = self._position + action
        self._path.append(self._position)
        offset = self._position - self.get_task().goal
        reward = -float(np.sqrt(np.sum(offset**2)))
        terminated = bool(np.all(np.abs(offset) < GOAL_TOLERANCE))
        return self._position.astype(np.float32), reward, terminated, False, {}

    def render(self) -> np.ndarray | None:
        """The goal, the path since ``reset`` and the position, in a view that keeps all of them."""
        if self.render_mode is None:
            return None
        goal, path = self.get_task().goal, np.array(self._path)
        view = PlaneView(RENDER_SIZE, extent=max(0.6, 1.1 * float(np.abs(np.vstack([path, goal])).max())))
        image = blank(RENDER_SIZE, RENDER_SIZE)
        center = view.pixels(np.zeros(2))
        image[round(center[0]), :] = LIGHT_GRAY
        image[:, round(center[1])] = LIGHT_GRAY
        fill_disc(image, view.pixels(goal), max(4.0, view.length(GOAL_TOLERANCE)), GREEN)
        draw_polyline(image, view.pixels(path), BLUE)
        fill_disc(image, view.pixels(path[-1]), 4.0, ORANGE)
        return image

    def make_batched(self, tasks: Sequence[GoalTask], episodes_per_task: int, seed: int | None):
        return BatchedNavigation2D(tasks, episodes_per_task, self.horizon, seed)


class BatchedNavigation2D(BatchedEnv):
    """Numpy engine for :class:`Navigation2DEnv`: every copy in one vectorised step."""

    def __init__(
        self, tasks: Sequence[GoalTask], episodes_per_task: int, horizon: int, seed: int | None = None
    ):
        single = Navigation2DEnv(horizon)
        super().__init__(
            tasks, episodes_per_task, single.observation_space, single.action_space, horizon, seed
        )
        self._goals = np.zeros((self.num_tasks, 1, 2))  # broadcast over the episodes of a task
        self._load_tasks(range(self.num_tasks))
        self._position = np.zeros(self.batch_shape + (2,))

    def _load_tasks(self, rows):
        for row in rows:
            self._goals[row, 0] = self.tasks[row].goal

    def _reset(self, seeds, mask):
        self._position[mask.reshape(self.batch_shape)] = 0.0
        return self._position.astype(np.float32)

    def _step(self, actions, active):
        actions = np.clip(actions.astype(np.float64), -MAX_ACTION, MAX_ACTION)
        self._position = np.where(active[..., None], self._position + actions, self._position)
        offset = self._position - self._goals
        reward = -np.sqrt(np.sum(offset**2, axis=-1))
        terminated = np.all(np.abs(offset) < GOAL_TOLERANCE, axis=-1)
        return self._position.astype(np.float32), reward, terminated, {}
