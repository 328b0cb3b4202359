"""The Meta-World task distributions: one Gymnasium env over a benchmark's tasks (needs ``metaworld``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from metarl.envs.actions import check_box_action
from metarl.envs.base import TaskEnv
from metarl.envs.metaworld.engine import MetaWorldBatchedEnv
from metarl.envs.metaworld.sim import make_metaworld_env, native_task, new_model
from metarl.envs.metaworld.tasks import (
    DEFAULT_BENCHMARK_SEED,
    GOALS_PER_FAMILY,
    MAX_EPISODE_STEPS,
    SPLITS,
    MetaWorldTask,
    check_benchmark,
    goal_table,
)
from metarl.envs.task_options import task_for_reset
from metarl.errors import UserError


class MetaWorldEnv(TaskEnv[MetaWorldTask]):
    """A Meta-World meta-learning benchmark (ML1, ML10 or ML45) as a task distribution.

    Task distribution: Meta-World's training tasks (family x goal); held-out tasks from its test set.
    The tasks are exactly those of ``metaworld.ML1(env_name, seed=benchmark_seed)`` /
    ``metaworld.ML10(seed=...)`` / ``metaworld.ML45(seed=...)``: for each family (env class) 50 goals in the
    train set and 50 in the test set. ML1 has one family (train and test differ in goals); ML10
    and ML45 train on 10 / 45 families and test on 5 others. :meth:`sample_tasks` draws uniformly (with
    replacement) from the train set; :meth:`sample_held_out_tasks` from the test set (``metarl evaluate``
    uses it).
    Observation: Meta-World's 39 floats (hand position, gripper opening, object poses, the same for the
    previous step, and the goal, which ML benchmarks hide: zeros). Action: 4 floats in ``[-1, 1]`` (hand
    displacement, gripper). Reward: Meta-World's v2 reward of the family (0 to 10 per step).
    ``info["success"]``: 1.0 at the steps where Meta-World's success criterion holds; an episode succeeds if
    it holds at any step (Meta-World's evaluation). Episodes are deterministic given the task and the actions.
    Horizon: 500 steps (Meta-World's ``max_path_length``) unless ``horizon`` is lower.
    Source: Yu et al., "Meta-World: A Benchmark and Evaluation for Multi-Task and Meta Reinforcement
    Learning", CoRL 2019; the ``metaworld`` 3.1.1 package (v3 envs).

    | argument | default | meaning |
    |---|---|---|
    | benchmark | "ML1" | "ML1", "ML10" or "ML45" |
    | env_name | None | the family of ML1 (e.g. "reach-v3"); unset for ML10 and ML45 |
    | benchmark_seed | 0 | seed of Meta-World's goal draws (seed 0 is shipped; others take Meta-World seconds to minutes to build) |
    | horizon | 500 | steps before truncation (at most 500) |
    | render_mode | None | ``"rgb_array"``: Meta-World's camera image (needs OpenGL, e.g. ``MUJOCO_GL=egl``) |

    Version history: v0, first release (metaworld 3.1.1).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 80}
    task_type = MetaWorldTask

    def __init__(
        self,
        benchmark: str = "ML1",
        env_name: str | None = None,
        benchmark_seed: int = DEFAULT_BENCHMARK_SEED,
        horizon: int = MAX_EPISODE_STEPS,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(horizon, render_mode)
        if self.horizon > MAX_EPISODE_STEPS:
            raise UserError(
                f"Meta-World episodes have at most {MAX_EPISODE_STEPS} steps, got horizon={horizon}"
            )
        check_benchmark(benchmark, env_name)
        self.benchmark = benchmark
        self.env_name = env_name
        self.benchmark_seed = int(benchmark_seed)
        self.goals = goal_table(benchmark, env_name, benchmark_seed)
        #: the families of each split, in Meta-World's order
        self.families = {split: tuple(self.goals[split]) for split in SPLITS}
        self._envs: dict[str, Any] = {}  # one Meta-World env per family, made on first use
        first = self._metaworld_env(self.families["train"][0])
        self.observation_space = spaces.Box(
            first.observation_space.low, first.observation_space.high, dtype=np.float64
        )
        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)

    # --- the task API ------------------------------------------------------------------------------
    def task(self, split: str, env_name: str, variant: int) -> MetaWorldTask:
        """The benchmark's task ``variant`` of family ``env_name`` in ``split``."""
        if split not in SPLITS:
            raise UserError(f"split must be 'train' or 'test', got {split!r}")
        if env_name not in self.goals[split]:
            raise UserError(
                f"{env_name!r} is not a {split} family of {self._name()}: {list(self.families[split])}"
            )
        rand_vec = tuple(float(x) for x in self.goals[split][env_name][variant])
        return MetaWorldTask(env_name=env_name, split=split, variant=int(variant), rand_vec=rand_vec)

    def all_tasks(self, split: str = "train") -> list[MetaWorldTask]:
        """Every task of ``split``, family by family in Meta-World's order."""
        return [self.task(split, name, v) for name in self.families[split] for v in range(GOALS_PER_FAMILY)]

    def sample_held_out_tasks(self, n: int) -> list[MetaWorldTask]:
        """Draw ``n`` tasks uniformly from the benchmark's test set with ``self.np_random``."""
        return self._draw(n, "test")

    def _sample_task(self, rng: np.random.Generator) -> MetaWorldTask:
        return self._draw_one(rng, "train")

    def _draw(self, n: int, split: str) -> list[MetaWorldTask]:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise UserError(f"number of tasks must be a non-negative integer, got {n!r}")
        return [self._draw_one(self.np_random, split) for _ in range(int(n))]

    def _draw_one(self, rng: np.random.Generator, split: str) -> MetaWorldTask:
        families = self.families[split]
        index = int(rng.integers(len(families) * GOALS_PER_FAMILY))
        return self.task(split, families[index // GOALS_PER_FAMILY], index % GOALS_PER_FAMILY)

    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        if task.env_name not in self.goals[task.split]:
            raise UserError(
                f"{task.env_name} is not a {task.split} family of {self._name()} "
                f"({list(self.families[task.split])})"
            )
        expected = self.goals[task.split][task.env_name][task.variant]
        if len(task.rand_vec) != len(expected) or not np.array_equal(np.array(task.rand_vec), expected):
            raise UserError(
                f"task field 'rand_vec' of {task.env_name} {task.split} variant {task.variant} is not the goal of "
                f"{self._name()} with benchmark_seed={self.benchmark_seed}: a task of another benchmark or seed"
            )

    def _name(self) -> str:
        return f"ML1 {self.env_name}" if self.benchmark == "ML1" else self.benchmark

    # --- gymnasium API ---------------------------------------------------------------------------------
    def _metaworld_env(self, env_name: str):
        if env_name not in self._envs:
            self._envs[env_name] = make_metaworld_env(env_name, new_model(env_name), self.render_mode)
        return self._envs[env_name]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = task_for_reset(self, options)
        self._current = self._metaworld_env(task.env_name)
        self._current.set_task(native_task(task))
        obs, _ = self._current.reset()
        return obs, {"task": task}

    def step(self, action):
        action = check_box_action(action, self.action_space)
        if "_current" not in self.__dict__:
            raise RuntimeError("call reset() before step()")
        obs, reward, terminated, _, info = self._current.step(action)
        info = dict(info)
        info["success"] = float(info["success"])
        return obs, float(reward), bool(terminated), False, info

    def render(self) -> np.ndarray | None:
        """``render_mode="rgb_array"``: Meta-World's image of the current episode (needs an OpenGL backend,
        e.g. ``MUJOCO_GL=egl``)."""
        if self.render_mode is None or "_current" not in self.__dict__:
            return None
        return self._current.render()

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        self.__dict__.pop("_current", None)

    def make_batched(
        self, tasks: Sequence[MetaWorldTask], episodes_per_task: int, seed: int | None
    ) -> MetaWorldBatchedEnv:
        return MetaWorldBatchedEnv(self, tasks, episodes_per_task, seed)
