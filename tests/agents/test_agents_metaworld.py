"""Meta-World through the agents: one MAML-TRPO iteration on every id, success rates in the metrics and in
eval.json, and the success rate of one evaluation against Meta-World's own ``metalearning_evaluation``."""

from __future__ import annotations

import dataclasses
import json
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import stopped_after_one_iteration, without_timings

from metarl.agents import MAMLTRPO, ReptilePG, TrainConfig
from metarl.agents.config import EvalConfig, InnerConfig, PolicyConfig
from metarl.agents.episodes import Episodes
from metarl.agents.evaluate import adaptation_curves, evaluate_run, format_results
from metarl.envs.metaworld.names import ML1_ENV_NAMES
from metarl.training import shipped_config_dir
from metarl.training.config import load_config

metaworld = pytest.importorskip("metaworld")
from metaworld.evaluation import metalearning_evaluation  # noqa: E402
from metaworld.policies import ENV_POLICY_MAP  # noqa: E402

METAWORLD_IDS = [f"MetaRL/MW-ML1-{name}-v0" for name in ML1_ENV_NAMES] + [
    "MetaRL/MW-ML10-v0",
    "MetaRL/MW-ML45-v0",
]


def tiny(algo: str, env: str, **changes) -> TrainConfig:
    return TrainConfig(
        algo=algo,
        env=env,
        env_kwargs={"horizon": 4},
        iterations=1,
        meta_batch_size=2,
        episodes_per_task=1,
        policy=PolicyConfig(hidden_sizes=[8]),
        inner=InnerConfig(steps=2 if algo == "reptile" else 1),
        **changes,
    )


def test_an_episode_succeeds_if_success_is_set_at_any_of_its_steps():
    successes = torch.tensor(
        [[[0, 0, 1, 0], [0, 0, 0, 0]], [[0, 0, 0, 1], [1, 1, 1, 1]]], dtype=torch.float32
    )
    mask = torch.tensor([[[1, 1, 1, 1], [1, 1, 1, 1]], [[1, 1, 1, 0], [1, 1, 1, 1]]], dtype=torch.float32)
    episodes = Episodes(
        torch.zeros(2, 2, 4, 1), torch.zeros(2, 2, 4, 1), torch.zeros(2, 2, 4), mask, successes=successes
    )
    # task 1, episode 0: success only after the episode ended (masked) does not count
    assert episodes.episode_successes().tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert episodes.task_success_rates().tolist() == [0.5, 0.5]
    assert (
        Episodes(
            torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1), torch.ones(1, 1, 1)
        ).task_success_rates()
        is None
    )


@pytest.mark.parametrize("env_id", METAWORLD_IDS)
def test_one_maml_trpo_iteration_on_every_metaworld_id(env_id):
    agent = MAMLTRPO(tiny("maml-trpo", env_id))
    metrics = agent.meta_iteration(0)
    for key in (
        "meta/return_before",
        "meta/return_after_step1",
        "meta/success_before",
        "meta/success_after_step1",
    ):
        assert np.isfinite(metrics[key]), key
    assert 0.0 <= metrics["meta/success_before"] <= 1.0
    assert (
        metrics["env_steps"] == 2 * 2 * 1 * 4
    )  # (adaptation + post-adaptation) x tasks x episodes x horizon


def test_reptile_logs_success_rates_and_navigation_logs_none():
    metrics = ReptilePG(tiny("reptile", "MetaRL/MW-ML1-reach-v3-v0")).meta_iteration(0)
    assert {"meta/success_before", "meta/success_after_step1", "meta/success_after_step2"} <= set(metrics)
    plain = MAMLTRPO(
        TrainConfig(
            env="MetaRL/Navigation2D-v0", meta_batch_size=2, episodes_per_task=1, env_kwargs={"horizon": 3}
        )
    )
    assert not any("success" in key for key in plain.meta_iteration(0))


def test_evaluation_reports_success_next_to_return_on_test_tasks(tmp_path):
    config = tiny(
        "maml-trpo",
        "MetaRL/MW-ML1-drawer-close-v3-v0",
        evaluation=EvalConfig(tasks=3, adapt_steps=1, baselines=["random-init"]),
    )
    MAMLTRPO(config).train(tmp_path / "run", progress=False)
    results = evaluate_run(tmp_path / "run", progress=False)
    for name in ("maml-trpo", "random-init"):
        success = results["learners"][name]["success"]
        assert len(success["mean"]) == len(success["ci"]) == 2 and np.array(success["per_task"]).shape == (
            3,
            2,
        )
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["learners"]["maml-trpo"]["success"]
    assert (tmp_path / "run" / "adaptation_curve_success.png").stat().st_size > 1000
    assert "success rate ± 95% CI" in format_results(results)
    tasks = json.loads((tmp_path / "run" / "tasks.json").read_text())["tasks"]
    assert {t["split"] for t in tasks} == {"test"}


class ScriptedPolicy:
    """Meta-World's scripted policies as one deterministic policy over a batch (no parameters, no adaptation):
    row ``i`` of the observations (one episode per task) is acted on by the policy of ``families[i]``."""

    def __init__(self, families: list[str]) -> None:
        self.policies = [ENV_POLICY_MAP[name]() for name in families]

    def actions(self, obs: np.ndarray) -> np.ndarray:
        rows = obs.reshape(len(self.policies), obs.shape[-1])
        return np.stack([p.get_action(o.copy()) for p, o in zip(self.policies, rows, strict=True)]).reshape(
            *obs.shape[:-1], 4
        )

    # metarl's sampler
    def act(self, obs: torch.Tensor, params, generator) -> torch.Tensor:
        return torch.as_tensor(self.actions(obs.numpy().astype(np.float64)), dtype=torch.float32)

    # Meta-World's MetaLearningAgent
    def init(self) -> None: ...

    def adapt_action(self, obs):
        return self.actions(obs), {}

    def step(self, timestep) -> None: ...

    def adapt(self) -> None: ...

    def eval_action(self, obs):
        return self.actions(obs)

    def reset(self, env_mask) -> None: ...


@pytest.mark.slow
def test_success_rate_equals_metaworlds_metalearning_evaluation():
    """Meta-World's scripted policies (which fail on some hidden goals) through Meta-World's
    ``metalearning_evaluation`` on ML10's test families (seed 0, one sub-env per family) and through metarl's
    evaluation on the same tasks: episodes are deterministic, so the success rates are equal.

    One sub-env per family: Meta-World's ``evaluation`` counts the first ``evaluation_episodes`` episodes of a
    family to end, over all its sub-envs; with several sub-envs per family (ML1) and termination on success,
    that favours the episodes that succeed early (docs/envs/metaworld.md).
    """
    env_id = "MetaRL/MW-ML10-v0"
    env = gym.make(env_id).unwrapped
    families = list(env.families["test"])
    policy = ScriptedPolicy(families)
    config = TrainConfig(env=env_id, episodes_per_task=1, policy=PolicyConfig(normalized_actions=False))
    envs = gym.make_vec("Meta-World/ML10-test", seed=0, meta_batch_size=len(families), vector_strategy="sync")
    variants = {(name, env.task("test", name, v).rand_vec): v for name in families for v in range(50)}
    rates = []
    for _ in range(2):  # each evaluation moves every sub-env to its next test task
        theirs, _, _ = metalearning_evaluation(
            policy, envs, num_evals=1, adaptation_steps=0, evaluation_episodes=1
        )
        used = [
            tasks[i]
            for tasks, i in zip(envs.get_attr("tasks"), envs.get_attr("current_task_idx"), strict=True)
        ]
        assert [t.env_name for t in used] == families
        tasks = [
            env.task(
                "test", t.env_name, variants[t.env_name, tuple(pickle.loads(t.data)["rand_vec"].tolist())]
            )
            for t in used
        ]
        _, ours = adaptation_curves(
            policy, {"unused": torch.zeros(len(tasks), 1)}, config, tasks, adapt_steps=0
        )
        assert ours.mean() == pytest.approx(theirs, abs=1e-12)
        rates.append(theirs)
    envs.close()
    assert 0.0 < np.mean(rates) < 1.0  # a mix of successes and failures was compared


def test_a_metaworld_run_resumed_from_its_checkpoint_continues_exactly(tmp_path):
    config = dataclasses.replace(tiny("maml-trpo", "MetaRL/MW-ML10-v0"), iterations=2)
    uninterrupted = MAMLTRPO(config).train(progress=False)
    rest = stopped_after_one_iteration(config, tmp_path / "run").train(progress=False)
    assert (
        without_timings(uninterrupted[1:]) == without_timings(rest) and "meta/success_after_step1" in rest[0]
    )


CONFIGS = {
    "mw-ml1-reach": "MetaRL/MW-ML1-reach-v3-v0",
    "mw-ml1-push": "MetaRL/MW-ML1-push-v3-v0",
    "mw-ml10": "MetaRL/MW-ML10-v0",
    "mw-ml45": "MetaRL/MW-ML45-v0",
}


@pytest.mark.parametrize(("name", "env_id"), sorted(CONFIGS.items()))
def test_configs_have_garages_hyperparameters_and_build_their_env(name, env_id):
    cfg = load_config(TrainConfig, shipped_config_dir() / "maml-trpo" / f"{name}.yaml", [])
    assert (cfg.algo, cfg.env) == ("maml-trpo", env_id)
    assert (cfg.meta_batch_size, cfg.episodes_per_task, cfg.iterations) == (20, 10, 300)
    assert (cfg.inner.steps, cfg.inner.lr, cfg.trpo.max_kl, cfg.gamma, cfg.gae_lambda) == (
        1,
        0.1,
        0.01,
        0.99,
        1.0,
    )
    assert cfg.policy.hidden_sizes == [100, 100] and cfg.policy.activation == "tanh"
    assert gym.make(cfg.env, **cfg.env_kwargs).unwrapped.horizon == 500
