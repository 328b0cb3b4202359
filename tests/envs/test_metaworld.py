"""Meta-World as metarl task distributions: ids, train/test sets as Meta-World defines them, the task API, the
single env against Meta-World's own env, the batched engine against the single env, success flags, and the
one-line error without metaworld."""

from __future__ import annotations

import gc
import json
import multiprocessing
import pickle
import sys

import gymnasium as gym
import numpy as np
import pytest

import metarl  # noqa: F401  (registers the ids)
from metarl.agents.config import TrainConfig
from metarl.agents.evaluate import held_out_tasks
from metarl.envs import make_batched, sample_tasks, task_from_dict, task_to_dict
from metarl.envs.metaworld.tasks import (
    GOALS_PER_FAMILY,
    ML1_ENV_NAMES,
    MetaWorldTask,
    goal_table,
    goals_from_metaworld,
)
from metarl.errors import UserError

metaworld = pytest.importorskip("metaworld")
from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML10_V3, ML45_V3  # noqa: E402
from metaworld.policies import ENV_POLICY_MAP  # noqa: E402

from metarl.envs.metaworld.engine import CopySlice, MetaWorldBatchedEnv  # noqa: E402
from metarl.envs.metaworld.sim import native_task  # noqa: E402

REACH = "MetaRL/MW-ML1-reach-v3-v0"


def test_every_ml1_family_ml10_and_ml45_are_registered():
    assert list(ML1_ENV_NAMES) == list(ALL_V3_ENVIRONMENTS) and len(ML1_ENV_NAMES) == 50
    for name in ML1_ENV_NAMES:
        assert f"MetaRL/MW-ML1-{name}-v0" in gym.registry
    assert {"MetaRL/MW-ML10-v0", "MetaRL/MW-ML45-v0"} <= set(gym.registry)
    env = gym.make("MetaRL/MW-ML1-pick-place-v3-v0")
    assert env.observation_space.shape == (39,) and env.action_space.shape == (4,)
    assert env.unwrapped.horizon == 500 and env.unwrapped.families == {
        "train": ("pick-place-v3",),
        "test": ("pick-place-v3",),
    }


@pytest.mark.parametrize(("benchmark", "families"), [("ML10", ML10_V3), ("ML45", ML45_V3)])
def test_ml10_and_ml45_train_and_test_families_are_metaworlds_and_disjoint(benchmark, families):
    env = gym.make(f"MetaRL/MW-{benchmark}-v0").unwrapped
    assert env.families["train"] == tuple(families["train"])
    assert env.families["test"] == tuple(families["test"])
    assert not set(env.families["train"]) & set(env.families["test"])
    train, test = env.all_tasks("train"), env.all_tasks("test")
    assert len(train) == GOALS_PER_FAMILY * len(families["train"]) and len(test) == GOALS_PER_FAMILY * 5
    assert not set(train) & set(test)


def test_ml1_train_and_test_goals_are_metaworlds_and_disjoint():
    """The shipped goals of ML1 reach-v3 equal ``metaworld.ML1("reach-v3", seed=0)``'s, train and test apart."""
    bench = metaworld.ML1("reach-v3", seed=0)
    env = gym.make(REACH).unwrapped
    for split, tasks in (("train", bench.train_tasks), ("test", bench.test_tasks)):
        ours = env.all_tasks(split)
        assert len(ours) == len(tasks) == GOALS_PER_FAMILY
        for task, theirs in zip(ours, tasks, strict=True):
            data = pickle.loads(theirs.data)
            assert np.array_equal(np.array(task.rand_vec), data["rand_vec"])
            mine = pickle.loads(native_task(task).data)  # what our env hands Meta-World's set_task
            assert (
                mine["env_cls"] is data["env_cls"]
                and mine["partially_observable"] is data["partially_observable"]
            )
            assert sorted(mine) == sorted(data)
    train_goals = {t.rand_vec for t in env.all_tasks("train")}
    assert not train_goals & {t.rand_vec for t in env.all_tasks("test")}


def test_sampling_is_seeded_and_held_out_tasks_come_from_the_test_set():
    env = gym.make("MetaRL/MW-ML10-v0")
    tasks = sample_tasks(env, 30, seed=3)
    assert tasks == sample_tasks(env, 30, seed=3) and tasks != sample_tasks(env, 30, seed=4)
    assert {t.split for t in tasks} == {"train"}
    assert {t.env_name for t in tasks} <= set(env.unwrapped.families["train"])
    assert len({t.env_name for t in tasks}) > 3  # the families are mixed
    held_out = held_out_tasks(TrainConfig(env="MetaRL/MW-ML10-v0"), 20, env)
    assert {t.split for t in held_out} == {"test"}
    assert {t.env_name for t in held_out} <= set(env.unwrapped.families["test"])
    env.unwrapped.np_random = np.random.default_rng(0)
    assert {t.split for t in env.unwrapped.sample_held_out_tasks(5)} == {"test"}


def test_tasks_round_trip_through_json_and_are_checked_against_the_benchmark():
    env = gym.make("MetaRL/MW-ML10-v0").unwrapped
    task = env.task("test", "lever-pull-v3", 7)
    restored = task_from_dict(json.loads(json.dumps(task_to_dict(task))))
    assert restored == task and hash(restored) == hash(task)
    env.set_task(restored)  # a test task of ML10 runs in ML10
    moved = MetaWorldTask("lever-pull-v3", "test", 7, tuple(x + 0.01 for x in task.rand_vec))
    with pytest.raises(UserError, match="not the goal of ML10 with benchmark_seed=0"):
        env.set_task(moved)
    with pytest.raises(UserError, match="reach-v3 is not a test family of ML10"):
        env.set_task(MetaWorldTask("reach-v3", "test", 0, (0.0, 0.6, 0.2)))
    reach = gym.make(REACH).unwrapped
    with pytest.raises(UserError, match="lever-pull-v3 is not a test family of ML1 reach-v3"):
        reach.set_task(task)
    with pytest.raises(UserError, match="'variant' = 50 is outside"):
        MetaWorldTask("reach-v3", "train", 50, (0.0, 0.6, 0.2))
    with pytest.raises(UserError, match="'split' must be 'train' or 'test'"):
        MetaWorldTask("reach-v3", "val", 0, (0.0, 0.6, 0.2))
    with pytest.raises(UserError, match="Meta-World v3 env name"):
        MetaWorldTask("reach-v2", "train", 0, (0.0, 0.6, 0.2))


def test_bad_constructor_arguments_are_one_line_errors():
    with pytest.raises(UserError, match="at most 500"):
        gym.make(REACH, horizon=501)
    with pytest.raises(UserError, match="ML1 needs env_name"):
        gym.make("MetaRL/MW-ML10-v0", benchmark="ML1")
    with pytest.raises(UserError, match="leave env_name unset"):
        gym.make("MetaRL/MW-ML10-v0", env_name="reach-v3")
    with pytest.raises(UserError, match="benchmark_seed must be a non-negative integer"):
        goal_table("ML10", None, -1)


def test_single_env_equals_metaworlds_own_env_over_a_whole_episode():
    """Our env on a task equals Meta-World's env on the same ``metaworld.ML1`` task: observations, rewards and
    success flags over 500 steps."""
    bench = metaworld.ML1("push-v3", seed=0)
    theirs = bench.train_classes["push-v3"]()
    theirs.set_task(bench.train_tasks[4])
    ours = gym.make("MetaRL/MW-ML1-push-v3-v0").unwrapped
    task = ours.task("train", "push-v3", 4)
    obs, info = ours.reset(seed=0, options={"task": task})
    assert info["task"] == task
    np.testing.assert_array_equal(obs, theirs.reset()[0])
    rng = np.random.default_rng(0)
    for step in range(500):
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        obs, reward, terminated, truncated, info = ours.step(action)
        obs_ref, reward_ref, _, truncated_ref, info_ref = theirs.step(action.astype(np.float64))
        np.testing.assert_array_equal(obs, obs_ref)
        assert reward == reward_ref and info["success"] == float(info_ref["success"])
        assert not terminated and truncated == (step == 499) == truncated_ref


def _rollout_single(env, tasks, episodes, actions):
    """Observations, rewards, success flags ``(H+1 or H, T, E, ...)`` of the single env, copy by copy."""
    horizon = actions.shape[0]
    obs = np.zeros((horizon + 1, len(tasks), episodes, 39))
    rewards, successes = np.zeros((2, horizon, len(tasks), episodes))
    for i, task in enumerate(tasks):
        for j in range(episodes):
            obs[0, i, j] = env.reset(options={"task": task})[0]
            for h in range(horizon):
                obs[h + 1, i, j], rewards[h, i, j], _, truncated, info = env.step(actions[h, i, j])
                successes[h, i, j] = info["success"]
            assert truncated
    return obs, rewards, successes


def _rollout_batched(benv, row_tasks, horizon, seed, **reset_kwargs):
    """Run every copy with Meta-World's scripted policy of its family plus Gaussian noise (so that some
    episodes succeed and copies differ); returns observations, rewards, success flags and the actions."""
    policies = [ENV_POLICY_MAP[task.env_name]() for task in row_tasks]
    rng = np.random.default_rng(seed)
    obs, rewards, successes, actions = [benv.reset(**reset_kwargs)], [], [], []
    for _ in range(horizon):
        scripted = np.array(
            [[policies[i].get_action(o.copy()) for o in row] for i, row in enumerate(obs[-1])]
        )  # it edits obs
        actions.append((scripted + rng.normal(0.0, 0.3, scripted.shape)).astype(np.float32))
        o, r, terminated, truncated, info = benv.step(actions[-1])
        obs.append(o)
        rewards.append(r)
        successes.append(info["success"])
        assert not terminated.any()
    assert truncated.all() and benv.done.all()
    return np.array(obs), np.array(rewards), np.array(successes), np.array(actions)


@pytest.mark.parametrize("num_workers", [1, 4])
def test_batched_engine_equals_single_env_over_whole_episodes(num_workers):
    """Train and test families of ML10, two copies each, whole episodes of 150 steps: the same observations,
    rewards and success flags as the single env (which ran other tasks before: episodes do not depend on the
    env's history); then a round with new tasks for some rows (a family change, a same-family goal change).
    With 4 processes the 6 copies are cut 2, 2, 1, 1: the last row is split between two workers."""
    horizon = 150
    env = gym.make("MetaRL/MW-ML10-v0", horizon=horizon).unwrapped
    tasks = [
        env.task("train", "drawer-close-v3", 3),
        env.task("train", "pick-place-v3", 9),
        env.task("test", "door-close-v3", 1),
    ]
    benv = MetaWorldBatchedEnv(env, tasks, 2, seed=0, num_workers=num_workers)
    assert benv.batch_shape == (3, 2) and len(benv._workers) == num_workers - 1
    *batched, actions = _rollout_batched(benv, tasks, horizon, seed=5)
    single = _rollout_single(env, tasks[::-1], 2, actions[:, ::-1])  # another order: other histories
    for ours, reference in zip(batched, single, strict=True):
        np.testing.assert_allclose(ours, reference[:, ::-1], rtol=1e-9, atol=1e-9)
    succeeded = batched[2].max(axis=0)
    assert (
        succeeded[0].all() and not succeeded[2].any()
    )  # drawer-close succeeds, door-close (goal hidden) not

    new_tasks = {0: env.task("test", "lever-pull-v3", 2), 2: env.task("train", "drawer-close-v3", 30)}
    tasks = [new_tasks[0], tasks[1], new_tasks[2]]
    *batched, actions = _rollout_batched(benv, tasks, horizon, seed=6, tasks=new_tasks)
    single = _rollout_single(env, tasks, 2, actions)
    for ours, reference in zip(batched, single, strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-9)
    assert batched[2].max(axis=0)[2].all()
    benv.close()
    with pytest.raises(RuntimeError, match="closed"):
        benv.reset()


def test_partial_reset_restarts_only_the_masked_copies():
    env = gym.make(REACH, horizon=20).unwrapped
    tasks = [env.task("train", "reach-v3", 0), env.task("train", "reach-v3", 1)]
    benv = make_batched(REACH, tasks, 2, seed=0, horizon=20)
    first = benv.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 2, 2, 4))
    for a in actions:
        benv.step(a)
    mask = np.array([[True, False], [False, False]])
    obs = benv.reset(mask=mask)
    np.testing.assert_array_equal(obs[0, 0], first[0, 0])
    assert not np.array_equal(obs[0, 1], first[0, 1]) and benv.copy_steps.tolist() == [[0, 5], [5, 5]]
    benv.close()


def test_a_failing_or_dead_worker_process_is_an_error_and_workers_end_with_their_engine(monkeypatch):
    env = gym.make(REACH, horizon=20).unwrapped
    tasks = [env.task("train", "reach-v3", 0), env.task("train", "reach-v3", 1)]
    step = CopySlice.step

    def failing_step(self, argument=None):
        if self.start > 0:
            raise ValueError("boom in a worker")
        step(self, argument)

    monkeypatch.setattr(CopySlice, "step", failing_step)  # before the workers are forked
    benv = MetaWorldBatchedEnv(env, tasks, 1, seed=0, num_workers=2)
    benv.reset()
    with pytest.raises(RuntimeError, match="(?s)worker process failed.*ValueError: boom in a worker"):
        benv.step(np.zeros((2, 1, 4)))
    benv.reset()  # the worker still serves
    (worker,) = benv._workers
    worker.process.kill()
    with pytest.raises(RuntimeError, match="died with exit code -9"):
        benv.reset()
    with pytest.raises(RuntimeError, match="died"):
        benv.close()
    with pytest.raises(RuntimeError, match="closed"):
        benv.reset()

    dropped = MetaWorldBatchedEnv(env, tasks, 1, seed=0, num_workers=2)
    (worker,) = dropped._workers
    del dropped
    gc.collect()
    worker.process.join(timeout=10)
    assert worker.process.exitcode == 0  # told to close by the engine's finalizer


def test_making_an_env_without_metaworld_is_a_one_line_error(monkeypatch):
    for name in [m for m in sys.modules if m == "metaworld" or m.startswith("metaworld.")]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError
    monkeypatch.delitem(sys.modules, "metarl.envs.metaworld.env", raising=False)
    monkeypatch.delitem(sys.modules, "metarl.envs.metaworld.engine", raising=False)
    monkeypatch.delitem(sys.modules, "metarl.envs.metaworld.sim", raising=False)
    monkeypatch.delitem(sys.modules, "metarl.envs.metaworld.fast", raising=False)
    with pytest.raises(
        UserError, match=r'need the `metaworld` package .*pip install "metarl\[metaworld\]"'
    ) as info:
        gym.make(REACH)
    assert "\n" not in str(info.value)


def test_another_benchmark_seed_is_built_with_metaworld_and_keeps_its_tasks_apart():
    env = gym.make(
        REACH, benchmark_seed=1
    ).unwrapped  # builds metaworld.ML1("reach-v3", seed=1): a few seconds
    bench = metaworld.ML1("reach-v3", seed=1)
    expected = [pickle.loads(t.data)["rand_vec"] for t in bench.test_tasks]
    assert np.array_equal([t.rand_vec for t in env.all_tasks("test")], expected)
    seed0 = gym.make(REACH).unwrapped.task("train", "reach-v3", 0)
    with pytest.raises(UserError, match="benchmark_seed=1: a task of another benchmark or seed"):
        env.set_task(seed0)


@pytest.mark.slow
@pytest.mark.parametrize("benchmark", ["ML10", "ML45"])
def test_shipped_goals_equal_metaworlds(benchmark):
    """goals_seed0.json holds what metaworld.ML10(seed=0) / ML45(seed=0) draw (Meta-World takes 26 s / 90 s)."""
    shipped, built = goal_table(benchmark, None, 0), goals_from_metaworld(benchmark, None, 0)
    for split in ("train", "test"):
        assert list(shipped[split]) == list(built[split])
        for name, goals in built[split].items():
            np.testing.assert_array_equal(shipped[split][name], goals)


def test_spawned_workers_step_as_forked_ones(monkeypatch):
    """Where fork is not available (macOS, Windows) the workers are spawned: they rebuild the envs from the tasks
    they are sent, and the episodes are the same."""
    from metarl.envs.metaworld import engine as engine_module

    env = gym.make(REACH, horizon=15).unwrapped
    tasks = [env.task("train", "reach-v3", 0), env.task("train", "reach-v3", 1)]
    actions = np.random.default_rng(0).uniform(-1, 1, (15, 2, 1, 4))
    episodes = []
    for method in ("fork", "spawn"):
        monkeypatch.setattr(
            engine_module, "_process_context", lambda m=method: multiprocessing.get_context(m)
        )
        benv = MetaWorldBatchedEnv(env, tasks, 1, seed=0, num_workers=2)
        assert benv._workers[0].process.__class__.__name__.lower().startswith(method)
        obs = [benv.reset()] + [benv.step(a)[0] for a in actions]
        benv.close()
        episodes.append(np.array(obs))
    np.testing.assert_array_equal(episodes[0], episodes[1])
