"""Shared fixtures: every test leaves the global RNG states as it found them.

The few-shot commands find datasets under ``$METARL_DATA`` (else the user cache); the tests point it at
``../shared/data`` next to the checkout when that exists and nothing else was set.
"""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from metarl.envs import registered_ids
from metarl.supervised.data.episodes import EpisodeBatch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if SHARED_DATA.is_dir():
    os.environ.setdefault("METARL_DATA", str(SHARED_DATA))


#: The Meta-World ids the generic env tests run on. The 50 ML1 ids differ only in their family (the same class);
#: tests/envs/test_metaworld*.py and tests/agents/test_agents_metaworld.py cover every one of them.
METAWORLD_SAMPLE_IDS = ("MetaRL/MW-ML1-reach-v3-v0", "MetaRL/MW-ML10-v0", "MetaRL/MW-ML45-v0")


def synthetic_run_overrides(run_root: Path, *extra: str) -> list[str]:
    """``key=value`` overrides that shrink a shipped few-shot config to a seconds-long run on the synthetic dataset
    (16-pixel images, one query per class, 4 evaluation episodes, a checkpoint every 2 iterations), then ``extra``."""
    return [
        "data.dataset=synthetic",
        "data.image_size=16",
        "data.val_split=null",
        "data.queries=1",
        "data.eval_queries=2",
        "eval_episodes=4",
        "eval_batch=2",
        "checkpoint_every=2",
        f"run_root={run_root}",
        *extra,
    ]


def env_ids_under_test() -> list[str]:
    """The registered ids the generic env tests parametrise over: all but most ML1 families of Meta-World."""
    return [i for i in registered_ids() if not i.startswith("MetaRL/MW-") or i in METAWORLD_SAMPLE_IDS]


def is_metaworld(env_id: str) -> bool:
    """Whether ``env_id`` is one of the Meta-World ids (deterministic episodes given task and actions)."""
    return env_id.startswith("MetaRL/MW-")


def random_image_batch(
    seed: int = 0,
    tasks: int = 2,
    ways: int = 2,
    shots: int = 2,
    queries: int = 2,
    size: int = 8,
    dtype: torch.dtype = torch.float64,
    class_ids: torch.Tensor | None = None,
) -> EpisodeBatch:
    """A few-shot batch of uniform random 1-channel ``size`` x ``size`` images, labels ``0..ways-1`` in order, for the
    learners' gradient tests."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(ways)
    return EpisodeBatch(
        torch.rand(tasks, ways * shots, 1, size, size, generator=gen, dtype=dtype),
        labels.repeat_interleave(shots).expand(tasks, -1).clone(),
        torch.rand(tasks, ways * queries, 1, size, size, generator=gen, dtype=dtype),
        labels.repeat_interleave(queries).expand(tasks, -1).clone(),
        ways,
        shots,
        queries,
        class_ids,
    )


def stopped_after_one_iteration(config, run_dir: Path):
    """A run of ``config`` stopped after its first iteration, loaded back from its checkpoint by a fresh agent and
    set to continue to ``config.iterations`` (the kill-and-resume tests compare it with an uninterrupted run)."""
    from metarl.agents import agent_class, load_agent

    agent_class(config.algo)(dataclasses.replace(config, iterations=1)).train(run_dir, progress=False)
    resumed = load_agent(run_dir)
    resumed.config = config
    return resumed


def without_timings(history: list[dict]) -> list[dict]:
    """A run's logged scalars without its wall-clock ones (``charts/...``), which differ between runs."""
    return [{k: v for k, v in m.items() if not k.startswith("charts/")} for m in history]


@pytest.fixture(autouse=True)
def _restore_rng_state():
    # the legacy global state is exactly what a careless test could disturb
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()  # noqa: NPY002
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)  # noqa: NPY002
    torch.set_rng_state(torch_state)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` next to the checkout; tests that need it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
