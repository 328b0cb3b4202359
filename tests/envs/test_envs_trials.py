"""Trials: the augmented observation's values, episode boundaries inside a trial, the trial's end, task draws;
the batched form equals :class:`TrialWrapper` over whole trials (same seeds, tasks and actions); both
Gymnasium's and SB3's env checkers pass on the wrapper."""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env

import metarl  # noqa: F401  (registers the ids)
from metarl.envs import TrialWrapper, make_batched_trials
from metarl.envs.navigation import GoalTask
from metarl.envs.registration import ENV_SPECS
from metarl.errors import UserError

ANALYTIC_IDS = ["MetaRL/Navigation2D-v0", "MetaRL/Bandit-K5-v0", "MetaRL/TabularMDP-v0"]
HORIZON, EPISODES = 4, 3


def _kwargs(env_id: str) -> dict:
    if ENV_SPECS[env_id][0].startswith("metarl.envs.mujoco"):
        pytest.importorskip("mujoco")
    return {"horizon": HORIZON}


def test_navigation_trial_observations_rewards_and_flags_by_hand():
    env = TrialWrapper(gym.make("MetaRL/Navigation2D-v0", horizon=2), episodes_per_trial=2)
    obs, info = env.reset(seed=0, options={"task": GoalTask(goal_x=0.3, goal_y=0.0)})
    np.testing.assert_array_equal(obs, [0, 0, 0, 0, 0, 0])  # position, no action, no reward, no done
    assert info["trial_episode"] == 0 and env.observation_space.shape == (6,)
    action = np.array(
        [0.1, 0.5], dtype=np.float32
    )  # the env clips y to 0.1; the agent is shown the clipped one
    steps = [env.step(action) for _ in range(4)]
    rewards = [-np.hypot(0.2, 0.1), -np.hypot(0.1, 0.2)] * 2
    expected_obs = [
        [0.1, 0.1, 0.1, 0.1, rewards[0], 0],
        [0.0, 0.0, 0.1, 0.1, rewards[1], 1],  # episode 1 ended: the next episode's start, done flag set
        [0.1, 0.1, 0.1, 0.1, rewards[2], 0],
        [0.2, 0.2, 0.1, 0.1, rewards[3], 1],  # the trial's last observation is the episode's own
    ]
    for (obs, reward, _, _, info), want, r, k in zip(steps, expected_obs, rewards, [0, 0, 1, 1], strict=True):
        np.testing.assert_allclose(obs, want, atol=1e-6)
        assert reward == pytest.approx(r) and info["trial_episode"] == k
    assert [(s[2], s[3]) for s in steps] == [(False, False)] * 3 + [(False, True)]
    assert env.unwrapped.get_task() == GoalTask(goal_x=0.3, goal_y=0.0)  # one task for the whole trial


def test_discrete_actions_are_one_hot_and_a_terminated_episode_starts_the_next():
    env = TrialWrapper(gym.make("MetaRL/Bandit-K5-v0", horizon=1), episodes_per_trial=3)
    obs, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs, np.zeros(8))
    probabilities = env.unwrapped.get_task().probabilities
    for k, arm in enumerate([4, 0, 2]):
        obs, reward, terminated, truncated, info = env.step(arm)
        assert reward in (0.0, 1.0) and info["trial_episode"] == k
        np.testing.assert_array_equal(obs, [0.0, *np.eye(5)[arm], reward, 1.0])
        assert truncated == (k == 2) and not terminated
    assert env.unwrapped.get_task().probabilities == probabilities


@pytest.mark.parametrize(
    ("env_id", "expected"),
    [
        ("MetaRL/Navigation2D-v0", [True] * 2 + [True] * 2 + [True, False]),
        ("MetaRL/Bandit-K5-v0", [True] + [False] * 5 + [True, False]),
        ("MetaRL/TabularMDP-v0", [True] * 10 + [False] * 5 + [True, False]),
    ],
)
def test_continuous_features_are_box_parts_and_the_reward_not_one_hots_or_the_done_flag(env_id, expected):
    layout = TrialWrapper(gym.make(env_id), episodes_per_trial=2).layout
    mask = layout.continuous_features()
    assert mask.dtype == bool and mask.shape == layout.space.shape
    assert mask.tolist() == expected


def test_reset_draws_a_new_task_per_trial_seeded_by_the_reset_seed():
    env = TrialWrapper(gym.make("MetaRL/Navigation2D-v0"), episodes_per_trial=2)
    env.reset(seed=5)
    first = env.unwrapped.get_task()
    env.reset()
    second = env.unwrapped.get_task()
    env.reset(seed=5)
    assert env.unwrapped.get_task() == first and second != first
    fixed = [GoalTask(goal_x=0.1, goal_y=0.1), GoalTask(goal_x=-0.1, goal_y=0.2)]
    listed = TrialWrapper(gym.make("MetaRL/Navigation2D-v0"), episodes_per_trial=2, tasks=fixed, seed=1)
    seen = set()
    for _ in range(20):
        listed.reset()
        seen.add(listed.unwrapped.get_task())
    assert seen == set(fixed)


def test_the_wrapper_is_rebuilt_from_its_spec():
    env = TrialWrapper(gym.make("MetaRL/Navigation2D-v0"), episodes_per_trial=3)
    rebuilt = gym.make(env.spec)
    assert isinstance(rebuilt, TrialWrapper) and rebuilt.episodes_per_trial == 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_episodes_per_trial_is_a_user_error(bad):
    with pytest.raises(UserError, match="episodes_per_trial must be an integer >= 1"):
        TrialWrapper(gym.make("MetaRL/Navigation2D-v0"), episodes_per_trial=bad)
    with pytest.raises(UserError, match="episodes_per_trial must be an integer >= 1"):
        make_batched_trials("MetaRL/Navigation2D-v0", [GoalTask(goal_x=0.0, goal_y=0.0)], bad)


def _policy_actions(env_id: str, space: gym.spaces.Space, obs: np.ndarray, rng: np.random.Generator):
    """Random actions; on Navigation2D task row 0 walks straight onto its goal, so its episodes terminate
    early and the trial's episodes have different lengths."""
    shape = obs.shape[:2]
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(space.n, size=shape)
    actions = rng.uniform(space.low, space.high, size=shape + space.shape).astype(space.dtype)
    if env_id == "MetaRL/Navigation2D-v0":
        actions[0] = np.array([0.025, 0.0], dtype=np.float32)
    return actions


@pytest.mark.parametrize("env_id", [*ANALYTIC_IDS, "MetaRL/HalfCheetahVel-v0", "MetaRL/AntDir-v0"])
def test_batched_trials_equal_the_wrapper_over_whole_trials(env_id):
    kwargs = _kwargs(env_id)
    single = gym.make(env_id, **kwargs)
    single.unwrapped.np_random = np.random.default_rng(11)
    tasks = single.unwrapped.sample_tasks(3)
    if env_id == "MetaRL/Navigation2D-v0":
        tasks[0] = GoalTask(goal_x=0.05, goal_y=0.0)  # reached in 2 steps of 0.025: early terminations
    trials_per_task, seed = 2, 40
    batched = make_batched_trials(env_id, tasks, EPISODES, trials_per_task, seed=seed, **kwargs)
    wrappers = [
        [TrialWrapper(gym.make(env_id, **kwargs), EPISODES) for _ in range(trials_per_task)] for _ in tasks
    ]
    obs = batched.reset()
    for i, row in enumerate(wrappers):
        for j, env in enumerate(row):
            single_obs, _ = env.reset(seed=seed + i * trials_per_task + j, options={"task": tasks[i]})
            np.testing.assert_allclose(obs[i, j], single_obs, rtol=1e-6, atol=1e-6)
    rng = np.random.default_rng(0)
    ended_early = False
    for _ in range(batched.horizon + 2):
        actions = _policy_actions(env_id, batched.action_space, obs, rng)
        obs, reward, terminated, truncated, info = batched.step(actions)
        for i, row in enumerate(wrappers):
            for j, env in enumerate(row):
                if not info["active"][i, j]:
                    assert reward[i, j] == 0.0
                    continue
                want = env.step(actions[i, j])
                np.testing.assert_allclose(obs[i, j], want[0], rtol=1e-5, atol=1e-5)
                assert reward[i, j] == pytest.approx(want[1], rel=1e-6, abs=1e-6)
                assert (terminated[i, j], truncated[i, j]) == (want[2], want[3])
                assert info["episode"][i, j] == want[4]["trial_episode"]
                ended_early |= bool(want[4]["trial_episode"] == EPISODES - 1 and (want[2] or want[3]))
    assert batched.done.all() and (batched.episode == EPISODES).all()
    assert ended_early
    if env_id == "MetaRL/Navigation2D-v0":
        assert terminated[0].all() and not terminated[1:].any()  # row 0's last episode reached the goal


ALLOWED_WARNINGS = [
    r"is different from the unwrapped version",  # check_env's note on any wrapper
    r"A Box observation space (maximum|minimum) value is -?infinity",  # the previous reward is unbounded
    r"use a symmetric and normalized Box action space",  # Navigation2D's action box is the paper's
]


@pytest.mark.parametrize("env_id", [*ANALYTIC_IDS, "MetaRL/HalfCheetahVel-v0"])
def test_gymnasium_and_sb3_check_env_pass_on_the_wrapper(env_id):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = TrialWrapper(gym.make(env_id, **_kwargs(env_id)), episodes_per_trial=2)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        gymnasium_check_env(env, skip_render_check=True)
        sb3_check_env(env)
    unexpected = [
        str(r.message) for r in records if not any(re.search(p, str(r.message)) for p in ALLOWED_WARNINGS)
    ]
    assert unexpected == []
