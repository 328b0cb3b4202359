"""The batched MuJoCo engine equals the single envs over whole episodes, and never steps finished copies."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("mujoco")

import gymnasium as gym  # noqa: E402

import metarl  # noqa: E402, F401
from metarl.envs import make_batched  # noqa: E402
from metarl.envs.mujoco.engine import MujocoBatchedEnv  # noqa: E402

MUJOCO_IDS = [
    "MetaRL/HalfCheetahVel-v0",
    "MetaRL/HalfCheetahDir-v0",
    "MetaRL/AntVel-v0",
    "MetaRL/AntDir-v0",
    "MetaRL/AntDir2D-v0",
    "MetaRL/AntGoal-v0",
    "MetaRL/HumanoidDir-v0",
    "MetaRL/HopperRandParams-v0",
    "MetaRL/Walker2dRandParams-v0",
]
NUM_TASKS, EPISODES, HORIZON, SEED = 2, 2, 40, 11


def rollout_batched(benv, actions):
    """Observations ``(H+1, T, E, ...)``, rewards, terminated and truncated ``(H, T, E)``."""
    observations, rewards, terminated, truncated = [benv.reset()], [], [], []
    for step_actions in actions:
        obs, reward, term, trunc, _ = benv.step(step_actions)
        observations.append(obs)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
    return np.array(observations), np.array(rewards), np.array(terminated), np.array(truncated)


def sample_setup(env_id):
    env = gym.make(env_id, horizon=HORIZON).unwrapped
    env.reset(seed=0)
    tasks = env.sample_tasks(NUM_TASKS)
    # actions a bit beyond [-1, 1] so that Ant, Humanoid, Hopper and Walker2d terminate within the test
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1.5, 1.5, (HORIZON, NUM_TASKS, EPISODES) + env.action_space.shape)
    return tasks, actions


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_batched_engine_equals_single_env_over_whole_episodes(env_id):
    tasks, actions = sample_setup(env_id)
    benv = make_batched(env_id, tasks, EPISODES, seed=SEED, horizon=HORIZON)
    assert isinstance(benv, MujocoBatchedEnv)
    obs, rewards, terminated, truncated = rollout_batched(benv, actions)
    benv.close()
    for i, task in enumerate(tasks):
        for j in range(EPISODES):
            env = gym.make(env_id, horizon=HORIZON).unwrapped
            env.set_task(task)
            single_obs, _ = env.reset(seed=SEED + i * EPISODES + j)
            np.testing.assert_allclose(obs[0, i, j], single_obs, atol=1e-6)
            for t in range(HORIZON):
                single_obs, reward, term, trunc, _ = env.step(actions[t, i, j])
                np.testing.assert_allclose(obs[t + 1, i, j], single_obs, atol=1e-6)
                assert rewards[t, i, j] == pytest.approx(reward, abs=1e-6)
                assert (terminated[t, i, j], truncated[t, i, j]) == (term, trunc)
                if term or trunc:
                    # a finished copy is frozen: same observation, zero reward from then on
                    assert np.all(obs[t + 1 :, i, j] == obs[t + 1, i, j])
                    assert np.all(rewards[t + 1 :, i, j] == 0)
                    break


def test_some_copies_terminate_early_in_the_equality_setup():
    """Guards the equality test above: it must cover terminations, not only truncations."""
    tasks, actions = sample_setup("MetaRL/HopperRandParams-v0")
    benv = make_batched("MetaRL/HopperRandParams-v0", tasks, EPISODES, seed=SEED, horizon=HORIZON)
    _, _, terminated, _ = rollout_batched(benv, actions)
    assert terminated[-1].any()


def test_finished_copies_are_not_stepped():
    tasks, actions = sample_setup("MetaRL/AntVel-v0")
    benv = make_batched("MetaRL/AntVel-v0", tasks, EPISODES, seed=SEED, horizon=HORIZON)
    benv.reset()
    frozen = {}  # copy -> (step it ended at, its simulation time then)
    for t, step_actions in enumerate(actions):
        benv.step(step_actions)
        for k, data in enumerate(benv._datas):
            if benv.done.reshape(-1)[k]:
                frozen.setdefault(k, (t, data.time))
                assert data.time == frozen[k][1]
    assert min(t for t, _ in frozen.values()) < HORIZON - 5  # some copies ended early and stayed frozen


def test_thread_count_does_not_change_results():
    tasks, actions = sample_setup("MetaRL/AntDir-v0")
    env = gym.make("MetaRL/AntDir-v0", horizon=HORIZON).unwrapped
    results = [
        rollout_batched(MujocoBatchedEnv(env, tasks, EPISODES, seed=SEED, num_threads=n), actions)
        for n in (1, 3)
    ]
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_rand_params_copies_use_their_own_task_physics():
    env_id = "MetaRL/Walker2dRandParams-v0"
    tasks, _ = sample_setup(env_id)
    benv = make_batched(env_id, tasks, EPISODES, seed=SEED, horizon=HORIZON)
    models = benv._models
    assert models[0] is models[1] and models[0] is not models[EPISODES]  # per task, shared by its episodes
    np.testing.assert_allclose(
        models[EPISODES].body_mass, models[0].body_mass / tasks[0].body_mass_scale * tasks[1].body_mass_scale
    )
    same = np.zeros((HORIZON, NUM_TASKS, EPISODES) + benv.action_space.shape)
    obs, _, _, _ = rollout_batched(benv, same[:10])
    assert np.abs(obs[-1, 0, 0] - obs[-1, 1, 0]).max() > 1e-3


def test_reset_without_seed_continues_each_copy_stream():
    tasks, _ = sample_setup("MetaRL/HalfCheetahVel-v0")
    benv = make_batched("MetaRL/HalfCheetahVel-v0", tasks, EPISODES, seed=SEED, horizon=HORIZON)
    first, second = benv.reset(), benv.reset()
    assert np.abs(first - second).max() > 0
    env = gym.make("MetaRL/HalfCheetahVel-v0", horizon=HORIZON).unwrapped
    env.set_task(tasks[1])
    env.reset(seed=SEED + EPISODES + 1)
    np.testing.assert_allclose(env.reset()[0], second[1, 1], atol=1e-12)


def resident_megabytes() -> float:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_engines_built_one_after_another_do_not_accumulate_memory():
    """A sampler builds an engine per batch; closing one must hand its copies' memory back (see
    ``release_freed_memory``), else resident memory grows by ~0.25 MB per copy per batch."""
    env = gym.make("MetaRL/HalfCheetahVel-v0", horizon=5).unwrapped
    env.reset(seed=0)
    tasks = env.sample_tasks(10)
    sizes = []
    for round_index in range(4):
        benv = MujocoBatchedEnv(env, tasks, 30, seed=round_index)
        benv.reset()
        benv.step(np.zeros(benv.batch_shape + benv.action_space.shape))
        benv.close()
        sizes.append(resident_megabytes())
    assert sizes[-1] - sizes[0] < 30, sizes
    with pytest.raises(RuntimeError, match="closed"):
        benv.reset()


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_native_stepping_equals_the_bindings_bit_for_bit(env_id):
    """The compiled GIL-free step (native_step) makes the bindings' C calls: identical episodes, also after some
    rows get new tasks (new MjData copies, whose addresses the engine must follow)."""
    from metarl.envs.mujoco.native_step import native_stepper

    if native_stepper() is None:
        pytest.skip("no libmujoco next to the mujoco bindings")
    tasks, actions = sample_setup(env_id)
    env = gym.make(env_id, horizon=HORIZON).unwrapped
    new_tasks = env.sample_tasks(NUM_TASKS)
    results = []
    for native in (True, False):
        benv = MujocoBatchedEnv(env, list(tasks), EPISODES, seed=SEED, num_threads=2, native=native)
        assert (benv._stepper is not None) == native
        first = rollout_batched(benv, actions)
        benv.reset(seed=SEED + 1, tasks={1: new_tasks[1]})
        second = [benv.step(step_actions)[:3] for step_actions in actions[: HORIZON // 2]]
        results.append((first, second))
        benv.close()
    (native_first, native_second), (bindings_first, bindings_second) = results
    for a, b in zip(native_first, bindings_first, strict=True):
        np.testing.assert_array_equal(a, b)
    for step_native, step_bindings in zip(native_second, bindings_second, strict=True):
        for a, b in zip(step_native, step_bindings, strict=True):
            np.testing.assert_array_equal(a, b)


def test_without_libmujoco_the_engine_steps_through_the_bindings(monkeypatch):
    from metarl.envs.mujoco import native_step

    monkeypatch.setattr(native_step, "mujoco_library_path", lambda: None)
    native_step.native_stepper.cache_clear()
    try:
        tasks, actions = sample_setup("MetaRL/HalfCheetahVel-v0")
        benv = make_batched("MetaRL/HalfCheetahVel-v0", tasks, EPISODES, seed=SEED, horizon=HORIZON)
        assert benv._stepper is None
        obs, _, _, _ = rollout_batched(benv, actions[:5])
        assert np.isfinite(obs).all() and not np.array_equal(obs[0], obs[-1])
    finally:
        native_step.native_stepper.cache_clear()
