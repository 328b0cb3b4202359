"""MAML-TRPO and Reptile-PG: one iteration on every analytic env, learning, options, determinism."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import stopped_after_one_iteration, without_timings

from metarl.agents import MAMLTRPO, ReptilePG, TrainConfig
from metarl.agents.config import InnerConfig, PolicyConfig
from metarl.agents.inner import compute_advantages, vpg_losses
from metarl.agents.registry import agent_class, load_agent
from metarl.core import stack_over_tasks
from metarl.envs import sample_tasks
from metarl.envs.registration import ENV_SPECS

ANALYTIC_IDS = sorted(
    i for i, (entry, _) in ENV_SPECS.items() if entry.split(".")[2] not in ("mujoco", "metaworld")
)


def tiny(algo: str, env: str = "MetaRL/Navigation2D-v0", **changes) -> TrainConfig:
    env_kwargs = {"horizon": 10} if env == "MetaRL/Navigation2D-v0" else {}
    inner = changes.pop("inner", InnerConfig(steps=2 if algo == "reptile" else 1))
    return TrainConfig(
        algo=algo,
        env=env,
        env_kwargs=env_kwargs,
        iterations=3,
        meta_batch_size=3,
        episodes_per_task=4,
        policy=PolicyConfig(hidden_sizes=[8, 8]),
        inner=inner,
        **changes,
    )


def _flat(agent) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in agent.policy.parameters()])


@pytest.mark.parametrize("env_id", ANALYTIC_IDS)
@pytest.mark.parametrize("cls", [MAMLTRPO, ReptilePG])
def test_one_iteration_on_every_analytic_env(cls, env_id):
    agent = cls(tiny(cls.algo, env_id))
    before = _flat(agent)
    metrics = agent.meta_iteration(0)
    assert all(math.isfinite(v) for v in metrics.values())
    assert "meta/return_before" in metrics
    assert f"meta/return_after_step{agent.config.inner.steps}" in metrics
    assert not torch.equal(before, _flat(agent)), "the meta-parameters did not move"


def test_maml_options_first_order_and_meta_sgd_run_and_learn_rates():
    fo = MAMLTRPO(tiny("maml-trpo", inner=InnerConfig(first_order=True)))
    so = MAMLTRPO(tiny("maml-trpo"))
    fo.meta_iteration(0)
    so.meta_iteration(0)
    assert not torch.allclose(_flat(fo), _flat(so)), "first-order and second-order updates must differ"
    meta_sgd = MAMLTRPO(tiny("maml-trpo", inner=InnerConfig(meta_sgd=True)))
    rates = [r.detach().clone() for r in meta_sgd.learning_rates.parameters()]
    metrics = meta_sgd.meta_iteration(0)
    assert "losses/meta_sgd_mean_lr" in metrics
    assert any(
        not torch.equal(a, b.detach())
        for a, b in zip(rates, meta_sgd.learning_rates.parameters(), strict=True)
    )


def test_maml_inner_objectives_take_the_same_inner_step_and_differ_in_the_meta_update():
    """A meta-iteration with each inner objective: the same pre- and post-update returns (the same step), a meta-update
    of its own; Loaded DiCE with no dependency discount updates exactly like the likelihood-ratio loss."""

    def iterate(**inner):
        agent = MAMLTRPO(tiny("maml-trpo", inner=InnerConfig(**inner)))
        metrics = agent.meta_iteration(0)
        return (metrics["meta/return_before"], metrics["meta/return_after_step1"]), _flat(agent)

    returns, plain = iterate()
    lvc_returns, lvc = iterate(objective="likelihood_ratio")
    dice_zero_returns, dice_zero = iterate(objective="dice", dice_lambda=0.0)
    dice_returns, dice = iterate(objective="dice", dice_lambda=0.5)
    assert returns == lvc_returns == dice_zero_returns == dice_returns
    assert torch.equal(lvc, dice_zero)
    assert not torch.allclose(plain, lvc) and not torch.allclose(lvc, dice)


def test_raw_advantages_make_the_inner_step_follow_the_reward_scale():
    """Standardised advantages give the same step whatever the rewards' scale; raw ones scale it with them."""
    agent = MAMLTRPO(tiny("maml-trpo"))
    tasks = sample_tasks(agent.sampler.env, 3, 0)
    episodes = agent.sampler.sample(
        stack_over_tasks(agent.policy.params(), 3, copy=True), tasks, 1, torch.Generator()
    )
    scaled = dataclasses.replace(episodes, rewards=episodes.rewards * 10)

    def inner_step(episodes, advantages):
        params = {
            n: p.requires_grad_(True)
            for n, p in stack_over_tasks(agent.policy.params(), 3, copy=True).items()
        }
        loss = vpg_losses(agent.policy, params, episodes, advantages).sum()
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(params.values()))])

    def step(episodes, normalize):
        advantages = compute_advantages(episodes, 0.99, 1.0, agent.baseline, normalize)
        return advantages, inner_step(episodes, advantages)

    (advantages, grad), (advantages_scaled, grad_scaled) = step(episodes, True), step(scaled, True)
    torch.testing.assert_close(advantages_scaled, advantages, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad_scaled, grad, rtol=1e-4, atol=1e-5)
    (raw, raw_grad), (raw_scaled, raw_grad_scaled) = step(episodes, False), step(scaled, False)
    torch.testing.assert_close(raw_scaled, raw * 10, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(raw_grad_scaled, raw_grad * 10, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(raw, advantages)
    # The option reaches MAML's inner loop and the fine-tuner (Reptile's inner loop, evaluation): the same
    # pre-update episodes, another post-update return.
    for cls, steps in ((MAMLTRPO, 1), (ReptilePG, 2)):
        metrics = [
            cls(tiny(cls.algo, inner=InnerConfig(steps=steps, normalize_advantages=flag))).meta_iteration(0)
            for flag in (True, False)
        ]
        assert metrics[0]["meta/return_before"] == metrics[1]["meta/return_before"]
        key = f"meta/return_after_step{steps}"
        assert metrics[0][key] != metrics[1][key]


def test_reptile_with_ppo_and_adam_inner_loop():
    agent = ReptilePG(tiny("reptile", inner=InnerConfig(steps=2, algorithm="ppo", optimizer="adam", lr=0.01)))
    before = _flat(agent)
    metrics = agent.meta_iteration(0)
    assert math.isfinite(metrics["meta/return_after_step2"]) and not torch.equal(before, _flat(agent))


def test_same_seed_gives_identical_training_and_another_seed_differs():
    runs = [MAMLTRPO(tiny("maml-trpo", seed=s)).train(progress=False) for s in (3, 3, 4)]

    def strip(history):
        return [{k: v for k, v in m.items() if not k.startswith("charts/")} for m in history]

    assert strip(runs[0]) == strip(runs[1])
    assert strip(runs[0]) != strip(runs[2])


def test_bad_config_values_raise_clear_errors():
    with pytest.raises(ValueError, match="inner.algorithm=vpg"):
        TrainConfig(algo="maml-trpo", inner=InnerConfig(optimizer="adam"))
    with pytest.raises(ValueError, match="meta_batch_size"):
        TrainConfig(meta_batch_size=0)
    with pytest.raises(ValueError, match="unknown env id"):
        MAMLTRPO(TrainConfig(env="MetaRL/DoesNotExist-v0"))
    with pytest.raises(ValueError, match="algo"):
        ReptilePG(TrainConfig(algo="maml-trpo"))


@pytest.mark.slow
def test_tiny_navigation_run_improves_the_post_adaptation_return():
    torch.set_num_threads(1)
    config = TrainConfig(
        env_kwargs={"horizon": 30},
        iterations=12,
        meta_batch_size=8,
        episodes_per_task=8,
        seed=0,
        policy=PolicyConfig(hidden_sizes=[16, 16]),
    )
    history = MAMLTRPO(config).train(progress=False)
    after = [m["meta/return_after_step1"] for m in history]
    first, last = sum(after[:3]) / 3, sum(after[-3:]) / 3
    assert last > first + 2.0, (first, last)
    # Adaptation helps: after one step the return is higher than before it, on average over the late iterations.
    gain = [m["meta/return_after_step1"] - m["meta/return_before"] for m in history[-4:]]
    assert sum(gain) / len(gain) > 0


@pytest.mark.parametrize("algo", ["maml-trpo", "reptile"])
def test_a_fresh_agent_loaded_from_a_checkpoint_continues_exactly(algo, tmp_path):
    config = tiny(algo)
    uninterrupted = agent_class(algo)(config).train(progress=False)
    resumed = stopped_after_one_iteration(config, tmp_path / "run")
    assert resumed.iteration == 1
    assert without_timings(uninterrupted[1:]) == without_timings(resumed.train(progress=False))


def test_a_time_limit_stops_training_but_every_call_runs_at_least_one_iteration(tmp_path):
    agent = MAMLTRPO(tiny("maml-trpo", time_limit_seconds=0.0))
    assert len(agent.train(tmp_path / "run", progress=False)) == 1
    assert len(agent.train(tmp_path / "run", progress=False)) == 1
    assert agent.iteration == 2 and load_agent(tmp_path / "run").iteration == 2


def test_runs_saved_before_normalized_actions_existed_keep_raw_actions(tmp_path):
    import yaml

    MAMLTRPO(tiny("maml-trpo")).train(tmp_path / "run", progress=False)
    assert load_agent(tmp_path / "run").config.policy.normalized_actions
    config_path = tmp_path / "run" / "config.yaml"
    saved = yaml.safe_load(config_path.read_text())
    del saved["policy"]["normalized_actions"]  # a config.yaml and checkpoint written by an older metarl
    config_path.write_text(yaml.safe_dump(saved))
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    del checkpoint["config"]["policy"]["normalized_actions"]
    torch.save(checkpoint, tmp_path / "run" / "checkpoint.pt")
    assert not load_agent(tmp_path / "run").config.policy.normalized_actions
