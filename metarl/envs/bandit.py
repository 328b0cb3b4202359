"""Bernoulli multi-armed bandits (Duan et al. 2016, "RL^2"; Wang et al. 2016, "Learning to reinforcement learn")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from metarl.envs.actions import check_discrete_action
from metarl.envs.base import Task, TaskEnv, check_range, register_task_type
from metarl.envs.batched import BatchedEnv, step_values
from metarl.envs.rendering import BLACK, BLUE, GRAY, ORANGE, blank, fill_rect, outline_rect
from metarl.envs.seeding import CopyGenerators
from metarl.envs.task_options import task_for_reset
from metarl.errors import UserError

BAR_WIDTH, BAR_HEIGHT = 16, 128


@register_task_type
@dataclass(frozen=True)
class BanditTask(Task):
    """The success probability of every arm, ``probabilities[i]`` in ``[0, 1]``."""

    probabilities: tuple[float, ...]

    def __post_init__(self) -> None:
        values = self.probabilities
        if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
            raise UserError(
                f"task field 'probabilities' must be a sequence of numbers in [0, 1], got "
                f"{type(values).__name__} {values!r}"
            )
        if np.ndim(values) != 1 or len(values) == 0:
            raise UserError(
                f"task field 'probabilities' must be a non-empty flat sequence, got shape {np.shape(values)}"
            )
        checked = tuple(check_range(f"probabilities[{i}]", p, 0.0, 1.0) for i, p in enumerate(values))
        object.__setattr__(self, "probabilities", checked)

    @property
    def num_arms(self) -> int:
        return len(self.probabilities)


class BernoulliBanditEnv(TaskEnv[BanditTask]):
    """A K-armed bandit whose arms pay 1 with unknown probabilities.

    Task distribution: K arm probabilities p_i ~ U[0, 1] i.i.d. (``BanditTask``).
    Action: the arm to pull, ``Discrete(num_arms)``.
    Reward: 1 with probability ``p_a``, else 0 (Bernoulli(p_a)).
    Observation: a constant ``[0.0]`` (float32, in ``Box(0, 1, (1,))``): a bandit has no state, so a policy
    learns from its rewards only (MAML uses a stateless policy; RL^2 feeds back the previous
    action and reward through a recurrent policy).
    Termination: never; truncation after ``horizon`` pulls (default 10).
    Randomness: at ``reset`` the episode's ``horizon`` uniform numbers ``u_t`` are drawn from
    ``np_random`` in one block and pull ``t`` pays ``u_t < p_a``. The batched engine draws the same block
    from a generator seeded like each copy, so it reproduces the single env exactly.
    Source: Duan et al., "RL^2: Fast Reinforcement Learning via Slow Reinforcement Learning", 2016
    (K = 5, 10, 50); Wang et al., "Learning to reinforcement learn", 2016; MAML-style evaluation as in
    pytorch-maml-rl's ``BernoulliBandit``.

    | argument | default | meaning |
    |---|---|---|
    | num_arms | (required) | K, the number of arms (ids ``MetaRL/Bandit-K5/K10/K50-v0``) |
    | horizon | 10 | pulls per episode before truncation |
    | render_mode | None | ``"rgb_array"``: one column per arm: pulls this episode (blue, the last one orange), the hidden ``p_i`` (black line) |

    Version history: v0, first release.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    task_type = BanditTask

    def __init__(self, num_arms: int, horizon: int = 10, render_mode: str | None = None) -> None:
        if isinstance(num_arms, bool) or not isinstance(num_arms, int | np.integer) or num_arms < 1:
            raise UserError(f"num_arms must be a positive integer, got {num_arms!r}")
        super().__init__(horizon, render_mode)
        self.num_arms = int(num_arms)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.num_arms)
        self._probabilities = np.zeros(self.num_arms)
        self._uniforms = np.zeros(0)
        self._pulls = np.zeros(self.num_arms, dtype=np.int64)
        self._last_arm: int | None = None

    def _sample_task(self, rng: np.random.Generator) -> BanditTask:
        return BanditTask(probabilities=tuple(float(p) for p in rng.uniform(0.0, 1.0, size=self.num_arms)))

    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        if task.num_arms != self.num_arms:
            raise UserError(
                f"task field 'probabilities' has {task.num_arms} entries but this env has "
                f"num_arms={self.num_arms}; sample tasks from an env with the same num_arms"
            )

    def _on_task_set(self, task: BanditTask) -> None:
        self._probabilities = np.asarray(task.probabilities)

    def task_features(self, task: BanditTask) -> np.ndarray:
        return np.asarray(task.probabilities, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = task_for_reset(self, options)
        self._uniforms = self.np_random.random(self.horizon)
        self._pulls[:] = 0
        self._last_arm = None
        return np.zeros(1, dtype=np.float32), {"task": task}

    def step(self, action):
        arm = check_discrete_action(action, self.num_arms)
        if self.elapsed_steps >= self._uniforms.size:  # stepping past truncation: keep drawing
            self._uniforms = np.concatenate([self._uniforms, self.np_random.random(self.horizon)])
        reward = float(self._uniforms[self.elapsed_steps] < self._probabilities[arm])
        self._pulls[arm] += 1
        self._last_arm = arm
        return np.zeros(1, dtype=np.float32), reward, False, False, {}

    def render(self) -> np.ndarray | None:
        """One column per arm: the share of this episode's pulls, and the arm's hidden probability."""
        if self.render_mode is None:
            return None
        image = blank(BAR_HEIGHT, BAR_WIDTH * self.num_arms)
        shares = self._pulls / max(1, self._pulls.sum())
        for arm in range(self.num_arms):
            left, right = arm * BAR_WIDTH + 2, (arm + 1) * BAR_WIDTH - 2
            color = ORANGE if arm == self._last_arm else BLUE
            fill_rect(image, BAR_HEIGHT * (1 - shares[arm]), left, BAR_HEIGHT, right, color)
            outline_rect(image, 0, left, BAR_HEIGHT, right, GRAY)
            level = (BAR_HEIGHT - 1) * (1 - self._probabilities[arm])
            fill_rect(image, level - 1, left, level + 1, right, BLACK)
        return image

    def make_batched(self, tasks: Sequence[BanditTask], episodes_per_task: int, seed: int | None):
        return BatchedBernoulliBandit(tasks, episodes_per_task, self.num_arms, self.horizon, seed)


class BatchedBernoulliBandit(BatchedEnv):
    """Numpy engine for :class:`BernoulliBanditEnv`: each copy draws its episode's uniforms from its own
    generator at reset; every pull of every copy is then one vectorised comparison."""

    def __init__(
        self,
        tasks: Sequence[BanditTask],
        episodes_per_task: int,
        num_arms: int,
        horizon: int,
        seed: int | None = None,
    ) -> None:
        single = BernoulliBanditEnv(num_arms, horizon)
        for task in tasks:
            single.validate_task(task)
        super().__init__(
            tasks, episodes_per_task, single.observation_space, single.action_space, horizon, seed
        )
        self.num_arms = int(num_arms)
        # (tasks, 1, arms): broadcast over the episodes of a task
        self._probabilities = np.zeros((self.num_tasks, 1, self.num_arms))
        self._load_tasks(range(self.num_tasks))
        # Every reset round reseeds every copy; vectorised hashing builds the same generators faster.
        self._generators = CopyGenerators(self.num_copies, vectorized_hashing=True)
        self._uniforms = np.zeros((self.num_copies, self.horizon))

    def _load_tasks(self, rows):
        for row in rows:
            self._probabilities[row, 0] = self.tasks[row].probabilities

    def _reset(self, seeds, mask):
        generators = self._generators.reseed(seeds)
        for k in np.flatnonzero(mask):
            self._uniforms[k] = generators[k].random(self.horizon)
        return np.zeros(self.batch_shape + (1,), dtype=np.float32)

    def _step(self, actions, active):
        arms = np.asarray(actions)
        if not np.issubdtype(arms.dtype, np.integer):
            raise UserError(f"actions must be integer arm indices, got dtype {arms.dtype}")
        if np.any(active & ((arms < 0) | (arms >= self.num_arms))):
            raise UserError(f"actions must be arm indices in [0, {self.num_arms}), got {arms[active]}")
        arms = np.clip(arms, 0, self.num_arms - 1)  # frozen copies may carry any value
        probability = np.take_along_axis(self._probabilities, arms[..., None], axis=-1)[..., 0]
        uniforms = step_values(self._uniforms, self.copy_steps).reshape(self.batch_shape)
        reward = (uniforms < probability).astype(np.float64)
        obs = np.zeros(self.batch_shape + (1,), dtype=np.float32)
        return obs, reward, np.zeros(self.batch_shape, dtype=bool), {}
