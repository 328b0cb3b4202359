"""The env API under bad input: every registered task distribution, single and batched, refuses actions of
the wrong shape, type or range and NaNs, bad construction arguments, bad seeds and bad tasks with a one-line
``UserError`` (a ``ValueError``) instead of broadcasting, truncating, returning NaN or a raw numpy error."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

import metarl  # noqa: F401  (registers the ids)
from metarl.envs import make_batched
from metarl.errors import UserError

FAST_IDS = ["MetaRL/Navigation2D-v0", "MetaRL/Bandit-K5-v0", "MetaRL/TabularMDP-v0"]
MUJOCO_IDS = ["MetaRL/HalfCheetahVel-v0"]
ALL_IDS = FAST_IDS + MUJOCO_IDS


def _bad_actions(space: gym.spaces.Space) -> list[object]:
    if isinstance(space, gym.spaces.Discrete):
        return [None, "a", 1.5, -1, space.n, [0, 1], np.array([0]), True]
    shape = space.shape
    return [
        None,
        "abc",
        np.zeros(shape[0] + 1),
        np.zeros((2, *shape)),
        np.full(shape, np.nan),
        np.full(shape, np.inf),
        [[0.0]],
        {"a": 1},
    ]


def _single_cases() -> list:
    cases = []
    for env_id in ALL_IDS:
        env = gym.make(env_id)
        for k, action in enumerate(_bad_actions(env.action_space)):
            cases.append(pytest.param(env_id, action, id=f"{env_id}:action{k}"))
        env.close()
    return cases


def _needs(env_id: str) -> None:
    if env_id in MUJOCO_IDS:
        pytest.importorskip("mujoco")


@pytest.mark.parametrize(("env_id", "action"), _single_cases())
def test_a_bad_action_to_step_is_refused(env_id, action):
    _needs(env_id)
    env = gym.make(env_id)
    env.reset(seed=0)
    with pytest.raises(UserError):
        env.step(action)


@pytest.mark.parametrize(("env_id", "action"), _single_cases())
def test_a_bad_action_to_the_batched_engine_is_refused(env_id, action):
    _needs(env_id)
    env = gym.make(env_id)
    env.reset(seed=0)
    benv = make_batched(env_id, env.unwrapped.sample_tasks(2), episodes_per_task=3, seed=0)
    benv.reset()
    batched = np.broadcast_to(np.asarray(action, dtype=object), (2, 3)) if np.ndim(action) == 0 else action
    try:
        with pytest.raises(UserError):
            benv.step(batched)
    finally:
        benv.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"episodes_per_task": 1.5},
        {"episodes_per_task": "2"},
        {"episodes_per_task": 0},
        {"episodes_per_task": True},
        {"seed": "x"},
        {"seed": -1},
        {"seed": 1.5},
    ],
    ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()),
)
def test_bad_batched_arguments_are_refused(env_id, kwargs):
    _needs(env_id)
    env = gym.make(env_id)
    env.reset(seed=0)
    arguments = {"episodes_per_task": 2, "seed": 0, **kwargs}
    with pytest.raises(UserError):
        make_batched(env_id, env.unwrapped.sample_tasks(2), **arguments).reset()


@pytest.mark.parametrize("env_id", ALL_IDS)
@pytest.mark.parametrize("horizon", [0, -1, 1.5, "x", 10**9, True, None])
def test_a_bad_horizon_is_refused(env_id, horizon):
    _needs(env_id)
    with pytest.raises(UserError):
        gym.make(env_id, horizon=horizon)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_a_task_of_another_kind_or_with_a_nan_field_is_refused(env_id):
    _needs(env_id)
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    task = env.sample_tasks(1)[0]
    with pytest.raises(UserError):
        env.set_task("not a task")
    first = dataclasses.fields(task)[0]
    value = getattr(task, first.name)
    bad = np.full(np.shape(value), np.nan) if np.ndim(value) else float("nan")
    with pytest.raises(UserError, match=first.name):
        env.set_task(dataclasses.replace(task, **{first.name: bad}))


def test_a_valid_step_still_works_after_all_these_checks():
    env = gym.make("MetaRL/Navigation2D-v0")
    env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(np.array([0.05, -0.05], dtype=np.float32))
    assert obs.shape == (2,) and np.isfinite(reward) and not terminated and not truncated


@pytest.mark.parametrize("env_id", ["MetaRL/HalfCheetahVel-v0", "MetaRL/AntVel-v0"])
@pytest.mark.parametrize(
    "velocity_range", ["x", (2.0, 1.0), (0.0, float("nan")), (0, 1, 2), None, (0.0, float("inf"))]
)
def test_a_bad_velocity_range_is_refused(env_id, velocity_range):
    _needs(env_id)
    with pytest.raises(UserError, match="velocity_range"):
        gym.make(env_id, velocity_range=velocity_range)
