"""The task API on every registered id: seeded sampling, set/get, JSON and pickle round trips, validation
errors that name the field; plus the family-specific support checks of the analytic envs."""

from __future__ import annotations

import dataclasses
import json
import pickle

import gymnasium as gym
import numpy as np
import pytest
from conftest import env_ids_under_test, is_metaworld

import metarl  # noqa: F401  (registers the ids)
from metarl.envs import task_from_dict, task_to_dict
from metarl.envs.bandit import BanditTask, BernoulliBanditEnv
from metarl.envs.navigation import GoalTask, Navigation2DEnv
from metarl.envs.registration import ENV_SPECS
from metarl.envs.tabular_mdp import TabularMDPEnv, TabularMDPTask


def _make(env_id: str) -> gym.Env:
    if ENV_SPECS[env_id][0].startswith("metarl.envs.mujoco"):
        pytest.importorskip("mujoco")
    return gym.make(env_id)


def _tasks(env_id: str, seed: int, n: int = 3):
    env = _make(env_id)
    env.reset(seed=seed)
    return env.unwrapped.sample_tasks(n)


def _trajectory(env_id: str, task, seed: int, steps: int = 8, episodes: int = 3):
    """Observations and rewards of ``episodes`` episodes: the first reset seeded, the next ones continuing."""
    env = _make(env_id)
    env.unwrapped.set_task(task)
    env.action_space.seed(123)
    observations, rewards = [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        observations.append(obs)
        for _ in range(steps):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            observations.append(obs)
            rewards.append(reward)
            if terminated or truncated:
                break
    return np.array(observations), np.array(rewards)


@pytest.mark.parametrize("env_id", env_ids_under_test())
def test_same_seed_same_tasks_and_trajectories(env_id):
    tasks = _tasks(env_id, seed=5, n=8)
    assert len(tasks) == 8 and all(isinstance(t, type(tasks[0])) for t in tasks)
    assert tasks == _tasks(env_id, seed=5, n=8)
    assert tasks != _tasks(env_id, seed=6, n=8)

    obs_a, rewards_a = _trajectory(env_id, tasks[0], seed=9)
    obs_b, rewards_b = _trajectory(env_id, tasks[0], seed=9)
    assert np.array_equal(obs_a, obs_b) and np.array_equal(rewards_a, rewards_b)
    if env_id != "MetaRL/Navigation2D-v0" and not is_metaworld(env_id):  # deterministic dynamics
        obs_c, rewards_c = _trajectory(env_id, tasks[0], seed=10)
        assert obs_c.shape != obs_a.shape or not (
            np.array_equal(obs_a, obs_c) and np.array_equal(rewards_a, rewards_c)
        )
    other_task = next(t for t in tasks if t != tasks[0])
    obs_d, rewards_d = _trajectory(env_id, other_task, seed=9)  # another task changes the episodes
    assert obs_d.shape != obs_a.shape or not (
        np.array_equal(obs_a, obs_d) and np.array_equal(rewards_a, rewards_d)
    )


@pytest.mark.parametrize("env_id", env_ids_under_test())
def test_set_and_get_task(env_id):
    env = _make(env_id).unwrapped
    env.reset(seed=0)
    default = env.get_task()  # drawn on first use
    assert isinstance(default, env.task_type) and env.get_task() is default
    task = env.sample_tasks(1)[0]
    env.set_task(task)
    assert env.get_task() is task
    with pytest.raises(ValueError, match=env.task_type.__name__):
        env.set_task(object())
    with pytest.raises(ValueError, match="non-negative integer"):
        env.sample_tasks(-1)
    assert env.sample_tasks(0) == []


@pytest.mark.parametrize("env_id", env_ids_under_test())
def test_tasks_round_trip_through_json_and_pickle(env_id):
    env = _make(env_id).unwrapped
    for task in _tasks(env_id, seed=1):
        text = json.dumps(task_to_dict(task))
        restored = task_from_dict(json.loads(text))
        assert type(restored) is type(task) and restored == task
        assert json.dumps(task_to_dict(restored)) == text
        env.set_task(restored)
        unpickled = pickle.loads(pickle.dumps(task))
        assert unpickled == task and hash(unpickled) == hash(task)


def _bad_values(value):
    """A NaN of the same structure as ``value`` and a value of the wrong type."""
    if isinstance(value, np.ndarray):
        nan = np.full(value.shape, np.nan)
    elif isinstance(value, tuple | list):
        nan = tuple(float("nan") for _ in value)
    else:
        nan = float("nan")
    return [nan, "not a number"]


@pytest.mark.parametrize("env_id", env_ids_under_test())
def test_invalid_field_values_raise_naming_the_field(env_id):
    task = _tasks(env_id, seed=0, n=1)[0]
    for field in dataclasses.fields(task):
        for bad in _bad_values(getattr(task, field.name)):
            with pytest.raises(ValueError, match=field.name):
                dataclasses.replace(task, **{field.name: bad})


@pytest.mark.parametrize("env_id", env_ids_under_test())
def test_docstring_documents_the_distribution(env_id):
    doc = type(_make(env_id).unwrapped).__doc__
    for required in ("Task distribution:", "Reward", "Source", "horizon", "Version history"):
        assert required in doc, f"{env_id}'s docstring lacks {required!r}"


# --- family-specific support ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: GoalTask(goal_x=0.7, goal_y=0.0), "goal_x"),
        (lambda: GoalTask(goal_x=0.0, goal_y=float("nan")), "goal_y"),
        (lambda: GoalTask(goal_x="left", goal_y=0.0), "goal_x"),
        (lambda: BanditTask(probabilities=(0.5, 1.2)), r"probabilities\[1\]"),
        (lambda: BanditTask(probabilities=(-0.1, 0.2)), r"probabilities\[0\]"),
        (lambda: BanditTask(probabilities=(0.5, None)), r"probabilities\[1\]"),
        (lambda: BanditTask(probabilities=0.5), "probabilities"),
        (lambda: BanditTask(probabilities="0.5"), "probabilities"),
        (lambda: BanditTask(probabilities=()), "probabilities"),
        (lambda: BanditTask(probabilities=[[0.1, 0.2]]), "probabilities"),
    ],
)
def test_navigation_and_bandit_support(build, field):
    with pytest.raises(ValueError, match=field):
        build()


def _mdp(num_states=3, num_actions=2, seed=0):
    env = TabularMDPEnv(num_states, num_actions)
    env.reset(seed=seed)
    return env.sample_tasks(1)[0]


def test_tabular_mdp_task_validation():
    task = _mdp()
    t, r = task.transitions.copy(), task.mean_rewards.copy()
    with pytest.raises(ValueError, match="transitions.*shape"):
        TabularMDPTask(transitions=t[:, :, :2], mean_rewards=r)
    with pytest.raises(ValueError, match="transitions.*shape"):
        TabularMDPTask(transitions=t[0], mean_rewards=r)
    negative = t.copy()
    negative[0, 0, :2] = [-0.5, negative[0, 0, 0] + negative[0, 0, 1] + 0.5]
    with pytest.raises(ValueError, match="transitions.*support"):
        TabularMDPTask(transitions=negative, mean_rewards=r)
    with pytest.raises(ValueError, match="transitions.*sum"):
        TabularMDPTask(transitions=t * 0.9, mean_rewards=r)
    with pytest.raises(ValueError, match="mean_rewards.*shape"):
        TabularMDPTask(transitions=t, mean_rewards=r[:, :1])
    bad_reward = r.copy()
    bad_reward[1, 1] = np.inf
    with pytest.raises(ValueError, match="mean_rewards.*finite"):
        TabularMDPTask(transitions=t, mean_rewards=bad_reward)
    with pytest.raises(ValueError, match="transitions"):
        TabularMDPTask(transitions=[["a"]], mean_rewards=r)
    # rows within the tolerance are accepted
    TabularMDPTask(transitions=t * (1 + 1e-8), mean_rewards=r)


def test_tabular_mdp_task_is_read_only_and_converts_lists():
    task = _mdp()
    with pytest.raises(ValueError, match="read-only"):
        task.transitions[0, 0, 0] = 1.0
    restored = TabularMDPTask(transitions=task.transitions.tolist(), mean_rewards=task.mean_rewards.tolist())
    assert isinstance(restored.transitions, np.ndarray) and restored == task
    assert not pickle.loads(pickle.dumps(task)).mean_rewards.flags.writeable
    assert task != _mdp(seed=1) and task != "not a task"


def test_envs_check_tasks_against_their_arguments():
    with pytest.raises(ValueError, match=r"probabilities.*num_arms=5"):
        BernoulliBanditEnv(num_arms=5).set_task(BanditTask(probabilities=(0.1, 0.2, 0.3)))
    with pytest.raises(ValueError, match=r"transitions.*num_states=10"):
        TabularMDPEnv().set_task(_mdp(num_states=3))
    with pytest.raises(ValueError, match="GoalTask"):
        Navigation2DEnv().set_task(BanditTask(probabilities=(0.5,)))
    with pytest.raises(ValueError, match="num_arms"):
        BernoulliBanditEnv(num_arms=0)
    with pytest.raises(ValueError, match="num_states"):
        TabularMDPEnv(num_states=0)
    with pytest.raises(ValueError, match="horizon"):
        BernoulliBanditEnv(num_arms=2, horizon=0)


def test_sampled_tasks_follow_the_distribution():
    bandit = BernoulliBanditEnv(num_arms=50)
    bandit.reset(seed=0)
    probabilities = np.array([t.probabilities for t in bandit.sample_tasks(40)])
    assert probabilities.shape == (40, 50) and probabilities.min() >= 0 and probabilities.max() <= 1
    assert abs(probabilities.mean() - 0.5) < 0.02 and abs(probabilities.var() - 1 / 12) < 0.01

    mdp = TabularMDPEnv()
    mdp.reset(seed=0)
    tasks = mdp.sample_tasks(40)
    rewards = np.array([t.mean_rewards for t in tasks])
    transitions = np.array([t.transitions for t in tasks])
    assert abs(rewards.mean() - 1.0) < 0.05 and abs(rewards.std() - 1.0) < 0.05
    # Dirichlet(1) over 10 states: each probability has mean 1/10 and variance 9 / (100 * 11)
    assert abs(transitions.mean() - 0.1) < 1e-9 and abs(transitions.var() - 9 / 1100) < 0.001
    assert mdp.task_features(tasks[0]).shape == (10 * 5 * 10 + 10 * 5,)


def test_analytic_envs_observations():
    bandit = BernoulliBanditEnv(num_arms=5, horizon=3)
    bandit.set_task(BanditTask(probabilities=(1.0, 0.0, 1.0, 0.0, 1.0)))
    obs, _ = bandit.reset(seed=0)
    assert obs.tolist() == [0.0] and bandit.observation_space.contains(obs)
    rewards = [bandit.step(arm)[1] for arm in (0, 1, 4)]
    assert rewards == [1.0, 0.0, 1.0]

    mdp = TabularMDPEnv(num_states=4, num_actions=2, horizon=3)
    transitions = np.zeros((4, 2, 4))
    transitions[:, :, 2] = 1.0  # every action leads to state 2
    mdp.set_task(TabularMDPTask(transitions=transitions, mean_rewards=np.zeros((4, 2))))
    obs, _ = mdp.reset(seed=0)
    assert obs.tolist() == [1.0, 0.0, 0.0, 0.0] and obs.dtype == np.float32
    results = [mdp.step(1) for _ in range(3)]
    assert [r[0].tolist() for r in results] == [[0.0, 0.0, 1.0, 0.0]] * 3
    assert [r[3] for r in results] == [False, False, True] and not any(r[2] for r in results)
