"""Meta-World's benchmarks and tasks without importing ``metaworld``: env names, splits, the task type, goals.

The goals of a benchmark are the random reset vectors (object and goal positions) that Meta-World's benchmark
objects draw: ``metaworld.ML1(env_name, seed=s)`` (train goals with seed ``s``, test goals with ``s + 1``),
``metaworld.ML10(seed=s)``, ``metaworld.ML45(seed=s)`` (train and test families with seed ``s``). Building
those objects takes Meta-World 4 s (ML1) to 90 s (ML45), so the goals of the default benchmark seed 0 ship
with metarl (``goals_seed0.json``, written by ``scripts/metaworld_goals.py`` and checked against Meta-World by
``tests/envs/test_metaworld_goals.py``); other seeds are built with Meta-World on first use in a process.
"""

from __future__ import annotations

import functools
import json
import math
import pickle
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from metarl.envs.base import Task, register_task_type
from metarl.envs.metaworld.names import ML1_ENV_NAMES
from metarl.errors import UserError

BENCHMARKS = ("ML1", "ML10", "ML45")
SPLITS = ("train", "test")
GOALS_PER_FAMILY = 50  # metaworld._N_GOALS: goals drawn per env class and split
MAX_EPISODE_STEPS = 500  # SawyerXYZEnv.max_path_length
DEFAULT_BENCHMARK_SEED = 0
SHIPPED_GOALS = "goals_seed0.json"

#: ``{split: {env_name: (50, d) array}}``: a benchmark's goal vectors per split and family
GoalTable = dict[str, dict[str, np.ndarray]]


@register_task_type
@dataclass(frozen=True)
class MetaWorldTask(Task):
    """One Meta-World task: a task family (env class) with one of its goals.

    Attributes:
        env_name: the Meta-World env name, e.g. ``"reach-v3"``.
        split: ``"train"`` or ``"test"``: the benchmark's task set it belongs to.
        variant: index in ``[0, 50)`` of the goal among the set's 50 goals of ``env_name``.
        rand_vec: Meta-World's random reset vector of that goal (object and goal positions), as the
            benchmark drew it; the env checks it against its benchmark and loads it (so the task says where
            the goal is on its own, e.g. in a run's ``tasks.json``).
    """

    env_name: str
    split: str
    variant: int
    rand_vec: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.env_name not in ML1_ENV_NAMES:
            raise UserError(
                f"task field 'env_name' must be a Meta-World v3 env name such as 'reach-v3', got {self.env_name!r}"
            )
        if self.split not in SPLITS:
            raise UserError(f"task field 'split' must be 'train' or 'test', got {self.split!r}")
        variant = self.variant
        if isinstance(variant, bool) or not isinstance(variant, int | np.integer):
            raise UserError(f"task field 'variant' must be an integer, got {variant!r}")
        if not 0 <= variant < GOALS_PER_FAMILY:
            raise UserError(f"task field 'variant' = {variant} is outside [0, {GOALS_PER_FAMILY})")
        object.__setattr__(self, "variant", int(variant))
        try:
            rand_vec = tuple(float(x) for x in self.rand_vec)
        except (TypeError, ValueError):
            raise UserError(
                f"task field 'rand_vec' must be a list of numbers, got {self.rand_vec!r}"
            ) from None
        if not rand_vec or not all(math.isfinite(x) for x in rand_vec):
            raise UserError(
                f"task field 'rand_vec' must be a non-empty list of finite numbers, got {rand_vec}"
            )
        object.__setattr__(self, "rand_vec", rand_vec)


def check_benchmark(benchmark: Any, env_name: Any) -> None:
    """Raise a one-line :class:`UserError` unless ``(benchmark, env_name)`` names a benchmark of metarl's."""
    if benchmark not in BENCHMARKS:
        raise UserError(f"benchmark must be one of {list(BENCHMARKS)}, got {benchmark!r}")
    if benchmark == "ML1" and env_name not in ML1_ENV_NAMES:
        raise UserError(
            f"ML1 needs env_name, one of Meta-World's v3 env names (e.g. 'reach-v3'), got {env_name!r}"
        )
    if benchmark != "ML1" and env_name is not None:
        raise UserError(f"{benchmark} has a fixed set of families: leave env_name unset, got {env_name!r}")


def goal_table(benchmark: str, env_name: str | None, seed: int) -> GoalTable:
    """The goals of ``metaworld.<benchmark>(seed=seed)`` (ML1: of ``env_name``), per split and family.

    Seed 0 is read from the shipped table; other seeds are built with Meta-World (seconds to minutes, once per
    process).
    """
    check_benchmark(benchmark, env_name)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise UserError(f"benchmark_seed must be a non-negative integer, got {seed!r}")
    if int(seed) == DEFAULT_BENCHMARK_SEED:
        shipped = _shipped_goals()
        table = shipped[benchmark][env_name] if benchmark == "ML1" else shipped[benchmark]
        return {split: {name: np.array(v) for name, v in table[split].items()} for split in SPLITS}
    return _built_goals(benchmark, env_name, int(seed))


@functools.cache
def _built_goals(benchmark: str, env_name: str | None, seed: int) -> GoalTable:
    return goals_from_metaworld(benchmark, env_name, seed)


def goals_from_metaworld(benchmark: str, env_name: str | None, seed: int) -> GoalTable:
    """Build ``metaworld.<benchmark>(seed=seed)`` (ML1: for ``env_name``) and return its goals per split and
    family, in Meta-World's order (slow: Meta-World resets every env 50 times per split)."""
    import metaworld  # the only place of this module that needs it

    bench = (
        metaworld.ML1(env_name, seed=seed) if benchmark == "ML1" else getattr(metaworld, benchmark)(seed=seed)
    )
    table: GoalTable = {}
    for split, tasks in (("train", bench.train_tasks), ("test", bench.test_tasks)):
        per_family: dict[str, list[np.ndarray]] = {}
        for task in tasks:
            per_family.setdefault(task.env_name, []).append(np.asarray(pickle.loads(task.data)["rand_vec"]))
        table[split] = {name: np.stack(vecs) for name, vecs in per_family.items()}
    return table


@functools.cache
def _shipped_goals() -> dict[str, Any]:
    text = resources.files("metarl.envs.metaworld").joinpath(SHIPPED_GOALS).read_text()
    return json.loads(text)
