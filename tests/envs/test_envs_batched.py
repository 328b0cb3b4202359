"""For every registered id, the fast batched engine equals the single env over whole episodes: against the
generic fallback built from single envs and against an explicit loop over ``gym.make`` envs seeded
``seed + k``; same seeds and random actions give the same observations, rewards and flags."""

from __future__ import annotations

import inspect

import gymnasium as gym
import numpy as np
import pytest
from conftest import env_ids_under_test, is_metaworld

import metarl  # noqa: F401  (registers the ids)
from metarl.envs import GenericBatchedEnv, make_batched, sample_tasks
from metarl.envs.registration import ENV_SPECS

NUM_TASKS, EPISODES, SHORT_HORIZON = 3, 2, 12
TOLERANCE = 1e-6


def _env_kwargs(env_id: str) -> dict:
    if ENV_SPECS[env_id][0].startswith("metarl.envs.mujoco"):
        pytest.importorskip("mujoco")
    env = gym.make(env_id)
    accepts_horizon = "horizon" in inspect.signature(type(env.unwrapped).__init__).parameters
    env.close()
    return {"horizon": SHORT_HORIZON} if accepts_horizon else {}


def _setup(env_id: str, task_seed: int = 0):
    kwargs = _env_kwargs(env_id)
    env = gym.make(env_id, **kwargs)
    env.reset(seed=task_seed)
    tasks = env.unwrapped.sample_tasks(NUM_TASKS)
    space, horizon = env.action_space, env.unwrapped.horizon
    env.close()
    return kwargs, tasks, space, horizon


def _random_actions(space: gym.spaces.Space, horizon: int, seed: int) -> np.ndarray:
    """``(horizon, tasks, episodes, *action_shape)``; Box actions overshoot the bounds to exercise clipping."""
    rng = np.random.default_rng(seed)
    shape = (horizon, NUM_TASKS, EPISODES)
    if isinstance(space, gym.spaces.Discrete):
        return space.start + rng.integers(0, space.n, size=shape)
    assert isinstance(space, gym.spaces.Box)
    return rng.uniform(1.5 * space.low, 1.5 * space.high, size=shape + space.shape).astype(space.dtype)


def _rollout_batched(benv, actions, seed=None):
    observations, rewards, terminated, truncated = [benv.reset(seed=seed)], [], [], []
    for step_actions in actions:
        if benv.done.all():
            break
        running = ~benv.done
        obs, reward, term, trunc, info = benv.step(step_actions)
        assert np.array_equal(info["active"], running)
        observations.append(obs)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
    return tuple(np.array(x) for x in (observations, rewards, terminated, truncated))


def _rollout_single(envs, actions, seeds):
    """The same episodes with one ``gym.make`` env per copy; a finished copy repeats its last observation."""
    first = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds, strict=True)]
    observations, rewards, terminated, truncated = [np.array(first)], [], [], []
    done = np.zeros(len(envs), dtype=bool)
    for step_actions in actions:
        if done.all():
            break
        flat_actions = step_actions.reshape((len(envs),) + step_actions.shape[2:])
        obs, reward = observations[-1].copy(), np.zeros(len(envs))
        term = terminated[-1].copy() if terminated else np.zeros(len(envs), dtype=bool)
        trunc = truncated[-1].copy() if truncated else np.zeros(len(envs), dtype=bool)
        for k, env in enumerate(envs):
            if not done[k]:
                obs[k], reward[k], term[k], trunc[k], _ = env.step(flat_actions[k])
        done = term | trunc
        observations.append(obs)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
    shape = (NUM_TASKS, EPISODES)
    return (
        np.array([o.reshape(shape + o.shape[1:]) for o in observations]),
        np.array([r.reshape(shape) for r in rewards]),
        np.array([t.reshape(shape) for t in terminated]),
        np.array([t.reshape(shape) for t in truncated]),
    )


def _assert_same(actual, expected, label):
    obs, rewards, terminated, truncated = actual
    obs_ref, rewards_ref, terminated_ref, truncated_ref = expected
    assert obs.shape == obs_ref.shape, f"{label}: episodes of different lengths"
    np.testing.assert_allclose(obs, obs_ref, rtol=TOLERANCE, atol=TOLERANCE, err_msg=f"{label}: observations")
    np.testing.assert_allclose(
        rewards, rewards_ref, rtol=TOLERANCE, atol=TOLERANCE, err_msg=f"{label}: rewards"
    )
    assert np.array_equal(terminated, terminated_ref), f"{label}: terminated"
    assert np.array_equal(truncated, truncated_ref), f"{label}: truncated"


@pytest.mark.parametrize("env_id", env_ids_under_test())
def test_fast_engine_equals_generic_fallback_and_single_envs(env_id):
    kwargs, tasks, space, horizon = _setup(env_id)
    seed = 100
    fast = make_batched(env_id, tasks, EPISODES, seed=seed, **kwargs)
    generic = make_batched(env_id, tasks, EPISODES, seed=seed, generic=True, **kwargs)
    assert not isinstance(fast, GenericBatchedEnv), f"{env_id} should have a fast batched engine"
    assert isinstance(generic, GenericBatchedEnv)
    singles = [gym.make(env_id, **kwargs) for _ in range(NUM_TASKS * EPISODES)]
    for k, env in enumerate(singles):
        env.unwrapped.set_task(tasks[k // EPISODES])

    # round 1: the constructor's seed; round 2: no seed, every copy continues its own stream;
    # round 3: a new base seed.
    rounds = [(None, [seed + k for k in range(len(singles))]), (None, [None] * len(singles))]
    rounds.append((7, [7 + k for k in range(len(singles))]))
    for index, (batch_seed, single_seeds) in enumerate(rounds):
        actions = _random_actions(space, horizon, seed=index)
        result = _rollout_batched(fast, actions, batch_seed)
        assert result[0].shape[1:3] == (NUM_TASKS, EPISODES)
        assert (result[2][-1] | result[3][-1]).all(), "every episode must end within the horizon"
        _assert_same(result, _rollout_batched(generic, actions, batch_seed), f"round {index} vs generic")
        _assert_same(result, _rollout_single(singles, actions, single_seeds), f"round {index} vs single envs")
    for env in [fast, generic, *singles]:
        env.close()


@pytest.mark.parametrize("env_id", env_ids_under_test())
def test_batched_seeds_matter(env_id):
    kwargs, tasks, space, horizon = _setup(env_id)
    actions = _random_actions(space, horizon, seed=0)

    def rollout(seed):
        benv = make_batched(env_id, tasks, EPISODES, seed=seed, **kwargs)
        result = _rollout_batched(benv, actions)
        benv.close()
        return result

    same_a, same_b, other = rollout(3), rollout(3), rollout(4)
    for a, b in zip(same_a, same_b, strict=True):
        assert np.array_equal(a, b)
    if env_id == "MetaRL/Navigation2D-v0" or is_metaworld(env_id):  # deterministic: the seed changes nothing
        return
    differs = other[0].shape != same_a[0].shape or not (
        np.array_equal(other[0], same_a[0]) and np.array_equal(other[1], same_a[1])
    )
    assert differs, f"{env_id}: different seeds gave identical episodes"


@pytest.mark.parametrize("env_id", ["MetaRL/Bandit-K5-v0", "MetaRL/TabularMDP-v0"])
def test_discrete_engines_reject_bad_actions(env_id):
    _, tasks, _, _ = _setup(env_id)
    benv = make_batched(env_id, tasks, EPISODES, seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        benv.step(np.zeros((NUM_TASKS, EPISODES), dtype=np.int64))
    benv.reset()
    with pytest.raises(ValueError, match="shape"):
        benv.step(np.zeros((NUM_TASKS, EPISODES + 1), dtype=np.int64))
    with pytest.raises(ValueError, match=r"in \[0, 5\)"):
        benv.step(np.full((NUM_TASKS, EPISODES), 5))
    with pytest.raises(ValueError, match="integer"):
        benv.step(np.zeros((NUM_TASKS, EPISODES)))
    env = gym.make(env_id).unwrapped
    env.set_task(tasks[0])
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"in \[0, 5\)"):
        env.step(5)
    with pytest.raises(ValueError, match="integer"):
        env.step(0.5)


def test_bandit_reward_frequencies_follow_the_arm_probabilities():
    from metarl.envs.bandit import BanditTask, BatchedBernoulliBandit

    task = BanditTask(probabilities=(0.0, 0.3, 1.0))

    benv = BatchedBernoulliBandit([task] * 3, episodes_per_task=200, num_arms=3, horizon=10, seed=0)
    benv.reset()
    arms = np.broadcast_to(np.arange(3)[:, None], benv.batch_shape)
    total = np.zeros(benv.batch_shape)
    while not benv.done.all():
        total += benv.step(arms)[1]
    means = total.mean(axis=1) / 10
    assert means[0] == 0.0 and means[2] == 1.0
    assert abs(means[1] - 0.3) < 0.03  # 2000 pulls: standard error ~0.01


def test_tabular_mdp_transition_frequencies_follow_the_task():
    from metarl.envs.tabular_mdp import BatchedTabularMDP, TabularMDPTask

    transitions = np.zeros((3, 1, 3))
    transitions[0, 0] = [0.2, 0.5, 0.3]
    transitions[1:, 0, 0] = 1.0  # states 1 and 2 return to state 0
    mean_rewards = np.array([[2.0], [-1.0], [-1.0]])
    task = TabularMDPTask(transitions=transitions, mean_rewards=mean_rewards)
    benv = BatchedTabularMDP([task], episodes_per_task=4000, num_states=3, num_actions=1, horizon=1, seed=0)
    assert np.array_equal(benv.reset()[0, :, 0], np.ones(4000))  # every episode starts in state 0
    obs, reward, *_ = benv.step(np.zeros(benv.batch_shape, dtype=np.int64))
    np.testing.assert_allclose(obs[0].mean(axis=0), [0.2, 0.5, 0.3], atol=0.025)
    assert abs(reward.mean() - 2.0) < 0.05 and abs(reward.std() - 1.0) < 0.05


def test_engines_take_their_cores_from_metarl_engine_cores(monkeypatch):
    """``METARL_ENGINE_CORES`` caps an engine's threads (MuJoCo) or processes (Meta-World)."""
    from metarl.envs.batched import ENGINE_CORES_ENV_VAR, available_cores
    from metarl.errors import UserError

    monkeypatch.setenv(ENGINE_CORES_ENV_VAR, "1")
    assert available_cores() == 1
    pytest.importorskip("mujoco")
    tasks = sample_tasks(gym.make("MetaRL/HalfCheetahVel-v0").unwrapped, 2, 0)
    engine = make_batched("MetaRL/HalfCheetahVel-v0", tasks, 2, seed=0)
    assert engine.num_threads == 1
    engine.close()
    monkeypatch.setenv(ENGINE_CORES_ENV_VAR, "3")
    engine = make_batched("MetaRL/HalfCheetahVel-v0", tasks, 2, seed=0)
    assert engine.num_threads == 3
    engine.close()
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(ENGINE_CORES_ENV_VAR, bad)
        with pytest.raises(UserError, match="METARL_ENGINE_CORES must be a positive integer"):
            available_cores()
