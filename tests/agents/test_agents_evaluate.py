"""Evaluation on held-out tasks: shared protocol, disjoint tasks, files written, Discrete envs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from metarl.agents import ReptilePG, TrainConfig, evaluate_run, format_results
from metarl.agents.agent import seeded_policy
from metarl.agents.config import InnerConfig, PolicyConfig
from metarl.agents.evaluate import held_out_tasks
from metarl.agents.inner import FineTuner
from metarl.agents.policies import stack_params
from metarl.agents.sampler import BatchedSampler, make_env, sample_tasks


def test_held_out_tasks_are_reproducible_and_not_training_tasks():
    config = TrainConfig(seed=5)
    env = make_env(config.env)
    held_out = held_out_tasks(config, 10, env)
    assert held_out == held_out_tasks(config, 10, make_env(config.env))
    from metarl.agents.agent import TRAIN_STREAM, stream_rng

    training = set()
    for iteration in range(20):
        rng = stream_rng(5, TRAIN_STREAM, iteration)
        training.update(sample_tasks(env, 20, int(rng.integers(2**31))))
    assert not training & set(held_out)


def test_evaluate_a_reptile_run_on_a_discrete_bandit(tmp_path):
    config = TrainConfig(
        algo="reptile",
        env="MetaRL/Bandit-K5-v0",
        iterations=2,
        meta_batch_size=3,
        episodes_per_task=4,
        gamma=0.95,
        policy=PolicyConfig(hidden_sizes=[8], activation="relu"),
        inner=InnerConfig(steps=2, lr=0.5),
    )
    ReptilePG(config).train(tmp_path / "run", progress=False)
    results = evaluate_run(tmp_path / "run", adapt_steps=2, num_tasks=5, baseline_iterations=1)
    learners = results["learners"]
    assert "reptile" in learners and "random-init" in learners and "pretrained" in learners
    for stats in learners.values():
        per_task = np.array(stats["per_task"])
        assert per_task.shape == (5, 3)
        # 10 pulls of Bernoulli arms: every mean return lies in [0, 10].
        assert np.all((per_task >= 0) & (per_task <= 10))
        np.testing.assert_allclose(stats["mean"], per_task.mean(0))
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["learners"].keys() == learners.keys()
    table = format_results(results)
    assert "step 2" in table and "reptile" in table
    # Re-evaluating reuses the cached baselines and gives the same numbers (common random numbers, fixed seeds).
    again = evaluate_run(tmp_path / "run", adapt_steps=2, num_tasks=5, baseline_iterations=1)
    assert again["learners"] == learners
    # More episodes per fine-tuning step at test time (the MAML paper's protocol) changes only the evaluation:
    # the baselines keep their training batch and are not retrained.
    checkpoint = tmp_path / "run" / "baselines" / "pretrained" / "checkpoint.pt"
    trained_at = checkpoint.stat().st_mtime_ns
    wider = evaluate_run(
        tmp_path / "run", adapt_steps=1, num_tasks=5, baseline_iterations=1, episodes_per_task=8
    )
    assert wider["episodes_per_task"] == 8 and "8 episodes per step" in format_results(wider)
    assert checkpoint.stat().st_mtime_ns == trained_at
    assert wider["learners"]["reptile"]["per_task"] != [row[:2] for row in learners["reptile"]["per_task"]]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_later_fine_tuning_steps_can_take_a_smaller_step(optimizer):
    """The MAML paper's test protocol halves the step size after the first step: only later steps change."""
    inner = InnerConfig(lr=0.5, optimizer=optimizer)
    config = TrainConfig(algo="reptile", episodes_per_task=4, inner=inner)
    env = make_env(config.env)
    tasks = sample_tasks(env, 3, 0)
    policy = seeded_policy(config.policy, env.observation_space, env.action_space, np.random.default_rng(0))
    sampler = BatchedSampler(config.env, {}, policy, 4, normalized_actions=True)
    tuner = FineTuner(policy, config.inner, config.gamma, config.gae_lambda)
    returns = []
    for scale in (1.0, 0.5):
        rng, generator = np.random.default_rng(1), torch.Generator().manual_seed(2)
        start = stack_params(policy.params(), len(tasks))
        result = tuner.run(start, tasks, sampler, rng, generator, steps=2, later_steps_lr_scale=scale)
        returns.append(result.returns)
    full, halved = returns
    torch.testing.assert_close(full[:, :2], halved[:, :2])  # before and after the first step: identical
    assert not torch.allclose(full[:, 2], halved[:, 2])
