"""Tasks through the standard API: ``gym.make(id, task=...)``, ``reset(options={"task": ...})`` and the
task-resampling wrappers, which pass Gymnasium's and Stable-Baselines3's env checkers and are reproducible."""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from conftest import env_ids_under_test
from gymnasium.utils.env_checker import check_env as gymnasium_check_env

import metarl  # noqa: F401  (registers the ids)
from metarl.envs import task_to_dict
from metarl.envs.bandit import BanditTask
from metarl.envs.navigation import GoalTask
from metarl.envs.registration import ENV_SPECS
from metarl.envs.wrappers import RandomTaskWrapper, TaskCycleWrapper
from metarl.errors import UserError

# Gymnasium's and SB3's advice about unbounded observations and Navigation2D's small action box (allowed in
# test_envs_check_env.py too), and Gymnasium's note that the env checked is a wrapper, which is the point here.
EXPECTED_WARNINGS = (
    "observation space (maximum|minimum) value is -?infinity",
    "symmetric and normalized Box",
    "likely has a wrapper applied to it",
)


def _make(env_id: str, **kwargs) -> gym.Env:
    if ENV_SPECS[env_id][0].startswith("metarl.envs.mujoco"):
        pytest.importorskip("mujoco")
    return gym.make(env_id, **kwargs)


def _sample_task(env_id: str, seed: int = 0):
    env = _make(env_id)
    env.reset(seed=seed)
    return env.unwrapped.sample_tasks(1)[0]


@pytest.mark.parametrize("env_id", env_ids_under_test())
def test_make_with_a_task_or_its_dict_form(env_id):
    task = _sample_task(env_id)
    for given in (task, task_to_dict(task)):
        env = _make(env_id, task=given)
        assert env.unwrapped.get_task() == task
        _, info = env.reset(seed=0)
        assert info["task"] == task
        env.close()


@pytest.mark.parametrize("env_id", env_ids_under_test())
def test_reset_option_sets_the_task_for_this_and_later_episodes(env_id):
    first, second = _sample_task(env_id, seed=1), _sample_task(env_id, seed=2)
    env = _make(env_id, task=first)
    _, info = env.reset(seed=0, options={"task": task_to_dict(second)})
    assert info["task"] == second and env.unwrapped.get_task() == second
    _, info = env.reset()
    assert info["task"] == second
    env.close()


def test_fields_alone_and_errors_name_the_field():
    env = gym.make("MetaRL/Navigation2D-v0", task={"goal_x": 0.25, "goal_y": -0.1})
    assert env.unwrapped.get_task() == GoalTask(0.25, -0.1)
    cases = [
        ({"goal_x": 0.7, "goal_y": 0.0}, "goal_x.*support"),
        ({"goal_x": 0.1}, "goal_y.*missing"),
        ({"goal_x": 0.1, "goal_y": 0.0, "goal_z": 0.0}, "goal_z.*not a field"),
        ({"type": "BanditTask", "probabilities": [0.5]}, "GoalTask"),
        ({"type": "NoSuchTask"}, "unknown task type"),
        (BanditTask(probabilities=(0.5,)), "GoalTask"),
    ]
    for task, message in cases:
        with pytest.raises(UserError, match=message):
            gym.make("MetaRL/Navigation2D-v0", task=task)
        with pytest.raises(UserError, match=message):
            env.reset(options={"task": task})
    with pytest.raises(UserError, match=r"num_arms=5"):
        gym.make("MetaRL/Bandit-K5-v0", task={"probabilities": [0.1, 0.2]})


def _checked(check, env: gym.Env) -> list[str]:
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        check(env)
    return [
        str(r.message) for r in records if not any(re.search(p, str(r.message)) for p in EXPECTED_WARNINGS)
    ]


@pytest.mark.parametrize("env_id", ["MetaRL/Navigation2D-v0", "MetaRL/Bandit-K10-v0", "MetaRL/AntGoal-v0"])
def test_wrappers_pass_gymnasium_and_sb3_checkers(env_id):
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    tasks = [_sample_task(env_id, seed) for seed in range(3)]
    for wrapped in (RandomTaskWrapper(_make(env_id)), TaskCycleWrapper(_make(env_id), tasks, seed=0)):
        assert _checked(lambda e: gymnasium_check_env(e, skip_render_check=True), wrapped) == []
        assert _checked(lambda e: sb3_checker.check_env(e, warn=True), wrapped) == []


def _tasks_seen(wrapped: gym.Env, seed: int, resets: int = 12) -> list:
    seen = [wrapped.reset(seed=seed)[1]["task"]]
    seen += [wrapped.reset()[1]["task"] for _ in range(resets - 1)]
    return seen


def test_random_task_wrapper_is_seeded_by_the_reset_seed_and_leaves_episodes_alone():
    make = lambda: RandomTaskWrapper(gym.make("MetaRL/TabularMDP-v0"))  # noqa: E731
    seen = _tasks_seen(make(), seed=3)
    assert seen == _tasks_seen(make(), seed=3) and len({hash(t) for t in seen}) == len(seen)
    assert seen[0] != _tasks_seen(make(), seed=4)[0]
    # the episode's own random numbers are those of the unwrapped env reset with the same seed
    wrapped, plain = make(), gym.make("MetaRL/TabularMDP-v0")
    _, info = wrapped.reset(seed=11)
    plain.unwrapped.set_task(info["task"])
    plain.reset(seed=11)
    rewards = [(wrapped.step(1)[1], plain.step(1)[1]) for _ in range(5)]
    assert all(a == b for a, b in rewards)
    # the constructor seed serves until a reset seed replaces it
    by_constructor = RandomTaskWrapper(gym.make("MetaRL/Navigation2D-v0"), seed=3)
    by_reset = RandomTaskWrapper(gym.make("MetaRL/Navigation2D-v0"))
    assert [by_constructor.reset()[1]["task"] for _ in range(3)] == _tasks_seen(by_reset, seed=3, resets=3)


def test_random_task_wrapper_over_a_list_and_the_option_override():
    tasks = [GoalTask(0.1, 0.1), GoalTask(-0.2, 0.3)]
    wrapped = RandomTaskWrapper(gym.make("MetaRL/Navigation2D-v0"), tasks=[task_to_dict(tasks[0]), tasks[1]])
    seen = _tasks_seen(wrapped, seed=0, resets=40)
    assert set(seen) == set(tasks) and 10 < seen.count(tasks[0]) < 30
    chosen = GoalTask(0.0, -0.4)
    assert wrapped.reset(options={"task": chosen})[1]["task"] == chosen


def test_task_cycle_wrapper_visits_every_task_once_per_pass():
    tasks = [GoalTask(x, 0.0) for x in (-0.4, -0.2, 0.0, 0.2, 0.4)]
    seen = _tasks_seen(TaskCycleWrapper(gym.make("MetaRL/Navigation2D-v0"), tasks), seed=5, resets=15)
    passes = [seen[i : i + 5] for i in range(0, 15, 5)]
    assert all(sorted(p, key=lambda t: t.goal_x) == tasks for p in passes)
    assert passes[0] != passes[1] or passes[1] != passes[2]  # reshuffled after each pass
    again = _tasks_seen(TaskCycleWrapper(gym.make("MetaRL/Navigation2D-v0"), tasks), seed=5, resets=15)
    assert again == seen


def test_wrappers_reject_envs_and_lists_they_cannot_use():
    with pytest.raises(UserError, match="task API"):
        RandomTaskWrapper(gym.make("CartPole-v1"))
    with pytest.raises(UserError, match="empty"):
        TaskCycleWrapper(gym.make("MetaRL/Navigation2D-v0"), [])
    with pytest.raises(UserError, match="goal_y"):
        TaskCycleWrapper(gym.make("MetaRL/Navigation2D-v0"), [{"goal_x": 0.0, "goal_y": np.inf}])
