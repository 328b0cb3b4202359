"""Evaluation on held-out tasks: shared protocol, disjoint tasks, files written, Discrete envs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metarl.agents import MAMLTRPO, ReptilePG, TrainConfig, evaluate_run, format_results
from metarl.agents.config import InnerConfig, PolicyConfig
from metarl.agents.evaluate import held_out_tasks
from metarl.agents.inner import FineTuner
from metarl.agents.sampler import BatchedSampler, make_env
from metarl.agents.streams import seeded_policy
from metarl.core import stack_over_tasks
from metarl.envs import sample_tasks


def test_held_out_tasks_are_reproducible_and_not_training_tasks():
    config = TrainConfig(seed=5)
    env = make_env(config.env)
    held_out = held_out_tasks(config, 10, env)
    assert held_out == held_out_tasks(config, 10, make_env(config.env))
    from metarl.agents.streams import TRAIN_STREAM, stream_rng

    training = set()
    for iteration in range(20):
        rng = stream_rng(5, TRAIN_STREAM, iteration)
        training.update(sample_tasks(env, 20, int(rng.integers(2**31))))
    assert not training & set(held_out)


def _bandit_reptile(seed: int = 0, lr: float = 0.5) -> TrainConfig:
    """A tiny Reptile-PG run on the 5-armed bandit."""
    return TrainConfig(
        algo="reptile",
        env="MetaRL/Bandit-K5-v0",
        seed=seed,
        iterations=2,
        meta_batch_size=3,
        episodes_per_task=4,
        gamma=0.95,
        policy=PolicyConfig(hidden_sizes=[8], activation="relu"),
        inner=InnerConfig(steps=2, lr=lr),
    )


def test_evaluate_a_reptile_run_on_a_discrete_bandit(tmp_path):
    ReptilePG(_bandit_reptile()).train(tmp_path / "run", progress=False)
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


def test_runs_in_one_folder_share_a_baseline_trained_with_the_same_config(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    for name, config in {"a": _bandit_reptile(lr=0.5), "b": _bandit_reptile(lr=0.3)}.items():
        ReptilePG(config).train(runs / name, progress=False)
    ReptilePG(_bandit_reptile(lr=0.3)).train(tmp_path / "alone" / "b", progress=False)
    ReptilePG(_bandit_reptile(seed=1)).train(runs / "c", progress=False)
    protocol = {"adapt_steps": 1, "num_tasks": 5, "baselines": ["pretrained"], "baseline_iterations": 2}
    evaluate_run(runs / "a", **protocol)
    trained_alone = evaluate_run(tmp_path / "alone" / "b", **protocol)

    def no_training(self, *args, **kwargs):
        raise AssertionError("a baseline was trained")

    monkeypatch.setattr(MAMLTRPO, "train", no_training)
    # b differs from a only in its inner learning rate: its pretrained policy is a's, copied, not retrained,
    # and fine-tuned with b's own rate it gives exactly what training b's own baseline gives.
    shared = evaluate_run(runs / "b", **protocol)
    checkpoint = Path("baselines", "pretrained", "checkpoint.pt")
    assert (runs / "b" / checkpoint).read_bytes() == (runs / "a" / checkpoint).read_bytes()
    assert shared["learners"]["pretrained"] == trained_alone["learners"]["pretrained"]
    assert not list((runs / "b" / "baselines").glob(".*"))  # no staging folder left behind
    # eval.json says where a copied baseline came from; a trained one has no entry.
    source = str((runs / "a" / "baselines" / "pretrained").resolve())
    assert shared["baselines_copied_from"] == {"pretrained": source}
    assert trained_alone["baselines_copied_from"] == {}
    # Another seed trains another baseline: nothing is shared.
    with pytest.raises(AssertionError, match="a baseline was trained"):
        evaluate_run(runs / "c", **protocol)


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
        start = stack_over_tasks(policy.params(), len(tasks), copy=True)
        result = tuner.run(start, tasks, sampler, rng, generator, steps=2, later_steps_lr_scale=scale)
        returns.append(result.returns)
    full, halved = returns
    torch.testing.assert_close(full[:, :2], halved[:, :2])  # before and after the first step: identical
    assert not torch.allclose(full[:, 2], halved[:, 2])
