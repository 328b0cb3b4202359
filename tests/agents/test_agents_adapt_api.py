"""Adapt, then act: metarl.load(RUN), agent.adapt(task or env) -> AdaptedPolicy with SB3's predict, saved and
loaded without pickle."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import metarl
from metarl.agents import MAMLTRPO, ReptilePG, TrainConfig, load_adapted_policy
from metarl.agents.config import PolicyConfig
from metarl.envs.bandit import BanditTask
from metarl.errors import UserError


def _trained_run(tmp_path, algo_class=MAMLTRPO, env: str = "MetaRL/Navigation2D-v0", **kwargs):
    config = TrainConfig(
        algo=algo_class.algo,
        env=env,
        iterations=2,
        meta_batch_size=3,
        episodes_per_task=4,
        env_kwargs={"horizon": 20},
        policy=PolicyConfig(hidden_sizes=[8]),
        **kwargs,
    )
    algo_class(config).train(tmp_path / "run", progress=False)
    return tmp_path / "run"


def test_an_agent_adapts_to_a_new_task_and_predicts_like_an_sb3_policy(tmp_path):
    agent = metarl.load(_trained_run(tmp_path))
    env = gym.make("MetaRL/Navigation2D-v0", horizon=20, task={"goal_x": 0.3, "goal_y": -0.2})
    policy = agent.adapt(env, steps=2, episodes=4)
    assert policy.task == env.unwrapped.get_task() and len(policy.returns) == 3
    meta = {n: p.detach() for n, p in agent.policy.params().items()}
    assert any(not torch.equal(policy.params[n][0], meta[n]) for n in meta)  # the steps moved the parameters

    obs, _ = env.reset(seed=0)
    action, state = policy.predict(obs, deterministic=True)
    assert state is None and action.shape == (2,) and env.action_space.contains(action.astype(np.float32))
    assert np.array_equal(action, policy.predict(obs, deterministic=True)[0])
    batch = np.stack([obs, obs + 0.1, obs - 0.1])
    actions = policy.act(batch, deterministic=True)
    assert actions.shape == (3, 2) and np.array_equal(actions[0], action)
    sampled = policy.act(obs, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (2,) and not np.array_equal(sampled, action)


def test_zero_steps_act_with_the_meta_parameters(tmp_path):
    agent = metarl.load(_trained_run(tmp_path))
    task = agent.sampler.env.unwrapped.sample_tasks(1)[0]
    policy = agent.adapt(task, steps=0)
    meta = {n: p.detach() for n, p in agent.policy.params().items()}
    assert all(torch.equal(policy.params[n][0], meta[n]) for n in meta) and len(policy.returns) == 1


def test_the_same_seed_adapts_to_the_same_parameters(tmp_path):
    agent = metarl.load(_trained_run(tmp_path))
    task = agent.sampler.env.unwrapped.sample_tasks(1)[0]
    first, second = agent.adapt(task, seed=3), agent.adapt(task, seed=3)
    other = agent.adapt(task, seed=4)
    assert all(torch.equal(first.params[n], second.params[n]) for n in first.params)
    assert any(not torch.equal(first.params[n], other.params[n]) for n in first.params)


def test_an_adapted_policy_saves_without_pickle_and_loads_to_the_same_actions(tmp_path):
    agent = metarl.load(_trained_run(tmp_path))
    policy = agent.adapt(agent.sampler.env.unwrapped.sample_tasks(1)[0], steps=1, episodes=3)
    policy.save(tmp_path / "adapted.pt")
    saved = torch.load(tmp_path / "adapted.pt", weights_only=True)
    assert set(saved) == {"format", "params", "task", "returns", "config"}
    loaded = load_adapted_policy(tmp_path / "adapted.pt")
    obs = np.array([[0.1, -0.2], [0.0, 0.3]], dtype=np.float32)
    assert np.array_equal(loaded.act(obs, deterministic=True), policy.act(obs, deterministic=True))
    assert loaded.task == policy.task and loaded.returns == policy.returns
    with pytest.raises(UserError, match="not an adapted policy"):
        (tmp_path / "junk.pt").write_bytes(b"junk")
        load_adapted_policy(tmp_path / "junk.pt")


def test_a_discrete_policy_predicts_arm_indices(tmp_path):
    agent = metarl.load(_trained_run(tmp_path, ReptilePG, "MetaRL/Bandit-K5-v0"))
    policy = agent.adapt(BanditTask(probabilities=(0.1, 0.9, 0.2, 0.3, 0.4)), steps=1, episodes=5)
    arm, _ = policy.predict(np.zeros(1, dtype=np.float32), deterministic=True)
    assert np.ndim(arm) == 0 and 0 <= int(arm) < 5


def test_bad_arguments_are_one_line_errors(tmp_path):
    agent = metarl.load(_trained_run(tmp_path))
    with pytest.raises(UserError):
        agent.adapt(BanditTask(probabilities=(0.5,) * 5))  # a task of another distribution
    task = agent.sampler.env.unwrapped.sample_tasks(1)[0]
    for bad in ({"steps": -1}, {"steps": 1.5}, {"episodes": 0}, {"episodes": 10**9}):
        with pytest.raises(UserError):
            agent.adapt(task, **bad)
