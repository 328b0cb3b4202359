"""Random tabular MDPs (Duan et al. 2016, "RL^2: Fast Reinforcement Learning via Slow Reinforcement Learning")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from metarl.envs.actions import check_discrete_action
from metarl.envs.base import Task, TaskEnv, check_array, register_task_type
from metarl.envs.batched import BatchedEnv, step_values
from metarl.envs.rendering import BLACK, GRAY, ORANGE, WHITE, blank, fill_rect, outline_rect
from metarl.envs.seeding import CopyGenerators
from metarl.envs.task_options import task_for_reset
from metarl.errors import UserError

ROW_SUM_TOLERANCE = 1e-6
MEAN_REWARD_LOC, MEAN_REWARD_SCALE = 1.0, 1.0
REWARD_NOISE_SCALE = 1.0
INITIAL_STATE = 0
CELL = 24  # pixels per state (and per action row) in the rendered image


@register_task_type
@dataclass(frozen=True, eq=False)
class TabularMDPTask(Task):
    """An MDP: ``transitions[s, a]`` is the distribution of the next state, ``mean_rewards[s, a]`` the mean reward.

    Both are stored as read-only float64 arrays; lists (e.g. from JSON) are converted.
    """

    transitions: np.ndarray
    mean_rewards: np.ndarray

    def __post_init__(self) -> None:
        transitions = check_array("transitions", self.transitions, low=0.0, high=1.0)
        if transitions.ndim != 3 or transitions.shape[0] != transitions.shape[2] or transitions.shape[0] == 0:
            raise UserError(
                "task field 'transitions' must have shape (num_states, num_actions, num_states), "
                f"got {transitions.shape}"
            )
        row_error = np.abs(transitions.sum(axis=-1) - 1.0).max(initial=0.0)
        if row_error > ROW_SUM_TOLERANCE:
            raise UserError(
                f"task field 'transitions' must hold probability rows summing to 1 (within "
                f"{ROW_SUM_TOLERANCE}), but a row is off by {row_error:.3g}"
            )
        shape = transitions.shape[:2]
        mean_rewards = check_array("mean_rewards", self.mean_rewards, shape=shape)
        object.__setattr__(self, "transitions", transitions)
        object.__setattr__(self, "mean_rewards", mean_rewards)

    @property
    def num_states(self) -> int:
        return self.transitions.shape[0]

    @property
    def num_actions(self) -> int:
        return self.transitions.shape[1]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TabularMDPTask):
            return NotImplemented
        return np.array_equal(self.transitions, other.transitions) and np.array_equal(
            self.mean_rewards, other.mean_rewards
        )

    def __hash__(self) -> int:
        return hash((self.transitions.shape, self.transitions.tobytes(), self.mean_rewards.tobytes()))

    def __reduce__(self):
        # Rebuild through __init__ so an unpickled task is validated and its arrays are read-only again.
        return (type(self), (self.transitions, self.mean_rewards))


def _one_hot(states: np.ndarray, num_states: int) -> np.ndarray:
    return np.eye(num_states, dtype=np.float32)[states]


def _next_state(cumulative: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling shared by both engines: the first state whose cumulative probability exceeds u."""
    count = np.count_nonzero(cumulative <= uniform[..., None], axis=-1)
    return np.minimum(count, cumulative.shape[-1] - 1)  # guards a last cumulative sum that rounds below u


class TabularMDPEnv(TaskEnv[TabularMDPTask]):
    """A random finite MDP; the agent sees its state but must learn the dynamics and rewards.

    Task distribution: P(.|s, a) ~ Dirichlet(1, ..., 1), mean reward m(s, a) ~ N(1, 1) (``TabularMDPTask``).
    Every (s, a) is drawn independently; 10 states and 5 actions by default.
    Start: every episode starts in state 0 ("an episode always starts on the first state", RL^2; as in
    pytorch-maml-rl's ``TabularMDPEnv``). Observation: the one-hot encoding of the state (float32).
    Action: ``Discrete(num_actions)``.
    Reward: ``m(s, a) + eps``, eps ~ N(0, 1), for the state ``s`` the action was taken in; the next state
    is drawn from P(.|s, a).
    Termination: never; truncation after ``horizon`` steps (default 10).
    Randomness: at ``reset`` the episode's reward noise (``horizon`` standard normals) and then its
    ``horizon`` transition uniforms are drawn from ``np_random``; step ``t`` moves to the first state whose
    cumulative probability exceeds ``u_t``. The batched engine draws the same blocks from a generator
    seeded like each copy, so it reproduces the single env exactly.
    Source: Duan et al., "RL^2: Fast Reinforcement Learning via Slow Reinforcement Learning", 2016
    (section 4.2, random MDPs); also used to evaluate MAML-RL in pytorch-maml-rl.

    | argument | default | meaning |
    |---|---|---|
    | num_states | 10 | number of states |
    | num_actions | 5 | number of actions |
    | horizon | 10 | steps per episode before truncation |
    | render_mode | None | ``"rgb_array"``: a row of states (the current one orange) above the mean rewards ``m(s, a)`` (one row per action, darker is higher) |

    Version history: v0, first release.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    task_type = TabularMDPTask

    def __init__(
        self, num_states: int = 10, num_actions: int = 5, horizon: int = 10, render_mode: str | None = None
    ) -> None:
        for name, value in (("num_states", num_states), ("num_actions", num_actions)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        super().__init__(horizon, render_mode)
        self.num_states = int(num_states)
        self.num_actions = int(num_actions)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.num_states,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.num_actions)
        self._state = INITIAL_STATE
        self._cumulative = np.zeros((self.num_states, self.num_actions, self.num_states))
        self._mean_rewards = np.zeros((self.num_states, self.num_actions))
        self._reward_noise = np.zeros(0)
        self._transition_uniforms = np.zeros(0)

    def _sample_task(self, rng: np.random.Generator) -> TabularMDPTask:
        transitions = rng.dirichlet(np.ones(self.num_states), size=(self.num_states, self.num_actions))
        mean_rewards = rng.normal(
            MEAN_REWARD_LOC, MEAN_REWARD_SCALE, size=(self.num_states, self.num_actions)
        )
        return TabularMDPTask(transitions=transitions, mean_rewards=mean_rewards)

    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        if task.transitions.shape[:2] != (self.num_states, self.num_actions):
            raise UserError(
                f"task field 'transitions' has shape {task.transitions.shape} but this env has "
                f"num_states={self.num_states}, num_actions={self.num_actions}; expected "
                f"{(self.num_states, self.num_actions, self.num_states)}"
            )

    def _on_task_set(self, task: TabularMDPTask) -> None:
        self._cumulative = np.cumsum(task.transitions, axis=-1)
        self._mean_rewards = task.mean_rewards

    def task_features(self, task: TabularMDPTask) -> np.ndarray:
        return np.concatenate([task.transitions.ravel(), task.mean_rewards.ravel()]).astype(np.float32)

    def _draw_episode_noise(self) -> None:
        self._reward_noise = REWARD_NOISE_SCALE * self.np_random.standard_normal(self.horizon)
        self._transition_uniforms = self.np_random.random(self.horizon)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = task_for_reset(self, options)
        self._draw_episode_noise()
        self._state = INITIAL_STATE
        return _one_hot(np.asarray(self._state), self.num_states), {"task": task}

    def step(self, action):
        action = check_discrete_action(action, self.num_actions)
        t = self.elapsed_steps
        if t >= self._reward_noise.size:  # stepping past truncation: keep drawing
            noise, uniforms = self._reward_noise, self._transition_uniforms
            self._draw_episode_noise()
            self._reward_noise = np.concatenate([noise, self._reward_noise])
            self._transition_uniforms = np.concatenate([uniforms, self._transition_uniforms])
        reward = float(self._mean_rewards[self._state, action] + self._reward_noise[t])
        self._state = int(_next_state(self._cumulative[self._state, action], self._transition_uniforms[t]))
        return _one_hot(np.asarray(self._state), self.num_states), reward, False, False, {}

    def render(self) -> np.ndarray | None:
        """The states in a row, the current one highlighted, above the task's mean rewards."""
        if self.render_mode is None:
            return None
        image = blank(CELL * (self.num_actions + 1) + 4, CELL * self.num_states)
        low, high = self._mean_rewards.min(), self._mean_rewards.max()
        shade = (self._mean_rewards - low) / (high - low) if high > low else np.zeros_like(self._mean_rewards)
        for state in range(self.num_states):
            left = state * CELL
            fill_rect(
                image, 1, left + 1, CELL - 1, left + CELL - 1, ORANGE if state == self._state else WHITE
            )
            outline_rect(image, 1, left + 1, CELL - 1, left + CELL - 1, BLACK)
            for action in range(self.num_actions):
                top = CELL * (action + 1) + 4
                level = round(255 * (1 - shade[state, action]))
                fill_rect(image, top, left, top + CELL, left + CELL, (level, level, 255))
                outline_rect(image, top, left, top + CELL, left + CELL, GRAY)
        return image

    def make_batched(self, tasks: Sequence[TabularMDPTask], episodes_per_task: int, seed: int | None):
        return BatchedTabularMDP(
            tasks, episodes_per_task, self.num_states, self.num_actions, self.horizon, seed
        )


class BatchedTabularMDP(BatchedEnv):
    """Numpy engine for :class:`TabularMDPEnv`: per-copy noise drawn at reset, then vectorised steps."""

    def __init__(
        self,
        tasks: Sequence[TabularMDPTask],
        episodes_per_task: int,
        num_states: int,
        num_actions: int,
        horizon: int,
        seed: int | None = None,
    ) -> None:
        single = TabularMDPEnv(num_states, num_actions, horizon)
        for task in tasks:
            single.validate_task(task)
        super().__init__(
            tasks, episodes_per_task, single.observation_space, single.action_space, horizon, seed
        )
        self.num_states, self.num_actions = int(num_states), int(num_actions)
        self._cumulative = np.zeros((self.num_tasks, num_states, num_actions, num_states))
        self._mean_rewards = np.zeros((self.num_tasks, num_states, num_actions))
        self._load_tasks(range(self.num_tasks))
        self._task_index = np.broadcast_to(np.arange(self.num_tasks)[:, None], self.batch_shape)
        # Every reset round reseeds every copy; vectorised hashing builds the same generators faster.
        self._generators = CopyGenerators(self.num_copies, vectorized_hashing=True)
        self._state = np.full(self.batch_shape, INITIAL_STATE)
        self._reward_noise = np.zeros((self.num_copies, self.horizon))
        self._transition_uniforms = np.zeros((self.num_copies, self.horizon))

    def _load_tasks(self, rows):
        for row in rows:
            self._cumulative[row] = np.cumsum(self.tasks[row].transitions, axis=-1)
            self._mean_rewards[row] = self.tasks[row].mean_rewards

    def _reset(self, seeds, mask):
        generators = self._generators.reseed(seeds)
        for k in np.flatnonzero(mask):
            self._reward_noise[k] = REWARD_NOISE_SCALE * generators[k].standard_normal(self.horizon)
            self._transition_uniforms[k] = generators[k].random(self.horizon)
        self._state[mask.reshape(self.batch_shape)] = INITIAL_STATE
        return _one_hot(self._state, self.num_states)

    def _step(self, actions, active):
        actions = np.asarray(actions)
        if not np.issubdtype(actions.dtype, np.integer):
            raise UserError(f"actions must be integer action indices, got dtype {actions.dtype}")
        if np.any(active & ((actions < 0) | (actions >= self.num_actions))):
            raise UserError(f"actions must be in [0, {self.num_actions}), got {actions[active]}")
        actions = np.clip(actions, 0, self.num_actions - 1)  # frozen copies may carry any value
        noise = step_values(self._reward_noise, self.copy_steps).reshape(self.batch_shape)
        uniforms = step_values(self._transition_uniforms, self.copy_steps).reshape(self.batch_shape)
        reward = self._mean_rewards[self._task_index, self._state, actions] + noise
        cumulative = self._cumulative[self._task_index, self._state, actions]  # (T, E, S)
        next_state = _next_state(cumulative, uniforms)
        self._state = np.where(active, next_state, self._state)
        return _one_hot(self._state, self.num_states), reward, np.zeros(self.batch_shape, dtype=bool), {}
