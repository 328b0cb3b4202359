"""PEARL: the context encoder's product of Gaussians and KL, SAC's targets and losses, per-task replay buffers,
posterior-sampling trials, one iteration on every env, kill-and-resume, shipped configs, learning."""

from __future__ import annotations

import dataclasses
import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import env_ids_under_test

from metarl.agents import PEARL, TrainConfig
from metarl.agents.commands import find_config
from metarl.agents.config import PEARLConfig
from metarl.agents.context import ContextEncoder, kl_to_standard_normal, product_of_gaussians, sample_latent
from metarl.agents.latent_rollout import context_inputs
from metarl.agents.registry import agent_class, load_agent
from metarl.agents.replay import TaskReplayBuffers
from metarl.agents.sac import (
    TanhGaussianPolicy,
    policy_loss,
    q_targets,
    tanh_gaussian_log_prob,
    value_targets,
)
from metarl.agents.sampler import make_env
from metarl.envs.registration import ENV_SPECS
from metarl.errors import UserError
from metarl.training import shipped_config_dir
from metarl.training.config import load_config

PEARL_CONFIGS = sorted((shipped_config_dir() / "pearl").glob("*.yaml"))


def tiny(env: str = "MetaRL/Navigation2D-v0", **pearl) -> TrainConfig:
    settings = dict(
        train_tasks=4,
        tasks_per_iteration=2,
        latent_size=2,
        hidden_sizes=[16],
        encoder_hidden_sizes=[16],
        initial_episodes=1,
        prior_episodes=1,
        extra_posterior_episodes=2,
        train_steps=3,
        batch_size=8,
        context_batch_size=8,
        logged_trial_episodes=2,
    )
    settings.update(pearl)
    return TrainConfig(
        algo="pearl",
        env=env,
        env_kwargs={"horizon": 10},
        iterations=3,
        meta_batch_size=3,
        torch_threads=1,
        pearl=PEARLConfig(**settings),
    )


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


# --- the context encoder -------------------------------------------------------------------------------------
def test_product_of_two_gaussians_is_the_closed_form():
    m1, v1, m2, v2 = 0.3, 0.5, -1.2, 2.0
    mean, variance = product_of_gaussians(torch.tensor([[m1], [m2]]), torch.tensor([[v1], [v2]]))
    assert variance.item() == pytest.approx(v1 * v2 / (v1 + v2))
    assert mean.item() == pytest.approx((m1 * v2 + m2 * v1) / (v1 + v2))


def test_product_of_gaussians_equals_the_normalised_product_of_their_densities():
    """Multiply three 1-D densities on a grid, normalise, and read mean and variance off the numeric result."""
    means = torch.tensor([0.4, -0.3, 1.1], dtype=torch.float64)
    variances = torch.tensor([0.7, 1.5, 0.9], dtype=torch.float64)
    grid = torch.linspace(-8, 8, 200_001, dtype=torch.float64)
    density = torch.ones_like(grid)
    for m, v in zip(means, variances, strict=True):
        density = density * torch.exp(-((grid - m) ** 2) / (2 * v)) / math.sqrt(2 * math.pi * v)
    density = density / torch.trapezoid(density, grid)
    numeric_mean = torch.trapezoid(grid * density, grid)
    numeric_variance = torch.trapezoid((grid - numeric_mean) ** 2 * density, grid)
    mean, variance = product_of_gaussians(means[:, None], variances[:, None])
    assert mean.item() == pytest.approx(numeric_mean.item(), abs=1e-8)
    assert variance.item() == pytest.approx(numeric_variance.item(), abs=1e-8)


def test_masked_factors_are_left_out_of_the_product():
    generator = torch.Generator().manual_seed(0)
    means, variances = (
        torch.randn(2, 5, 3, generator=generator),
        torch.rand(2, 5, 3, generator=generator) + 0.1,
    )
    mask = torch.tensor([[1, 1, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.float32)
    mean, variance = product_of_gaussians(means, variances, mask)
    for row in range(2):
        keep = mask[row].bool()
        expected_mean, expected_variance = product_of_gaussians(means[row, keep], variances[row, keep])
        torch.testing.assert_close(mean[row], expected_mean)
        torch.testing.assert_close(variance[row], expected_variance)


def test_kl_term_equals_torch_distributions():
    generator = torch.Generator().manual_seed(1)
    mean, variance = torch.randn(4, 5, generator=generator), torch.rand(4, 5, generator=generator) + 0.05
    posterior = torch.distributions.Normal(mean, variance.sqrt())
    prior = torch.distributions.Normal(torch.zeros(5), torch.ones(5))
    expected = torch.distributions.kl_divergence(posterior, prior).sum(-1)
    torch.testing.assert_close(kl_to_standard_normal(mean, variance), expected)


def test_encoder_posterior_does_not_depend_on_the_order_of_transitions():
    torch.manual_seed(0)
    encoder = ContextEncoder(input_size=6, hidden_sizes=[32, 32], latent_size=5)
    context = torch.randn(3, 20, 6)
    shuffled = context[:, torch.randperm(20)]
    mean, variance = encoder(context)
    mean_shuffled, variance_shuffled = encoder(shuffled)
    torch.testing.assert_close(mean, mean_shuffled)
    torch.testing.assert_close(variance, variance_shuffled)
    assert not torch.allclose(mean[0], mean[1]), "different contexts should give different posteriors"


def test_more_context_narrows_the_posterior():
    torch.manual_seed(0)
    encoder = ContextEncoder(input_size=4, hidden_sizes=[8], latent_size=3)
    context = torch.randn(1, 10, 4)
    assert bool((encoder(context)[1] < encoder(context[:, :3])[1]).all())


# --- SAC ----------------------------------------------------------------------------------------------------
def test_q_and_value_targets_equal_a_hand_computation():
    rewards, terminals = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.0, 1.0, 0.0])
    next_values = torch.tensor([10.0, 7.0, -4.0])
    # reward_scale * r + (1 - d) * gamma * V'
    expected = torch.tensor([5 * 1.0 + 0.9 * 10.0, 5 * -2.0, 5 * 0.5 + 0.9 * -4.0])
    torch.testing.assert_close(q_targets(rewards, terminals, next_values, 5.0, 0.9), expected)
    torch.testing.assert_close(value_targets(torch.tensor([3.0]), torch.tensor([-1.5])), torch.tensor([4.5]))


def test_tanh_gaussian_log_prob_equals_torch_transformed_distribution():
    generator = torch.Generator().manual_seed(2)
    mean = 0.5 * torch.randn(50, 3, generator=generator, dtype=torch.float64)
    log_std = 0.3 * torch.randn(50, 3, generator=generator, dtype=torch.float64)
    pre_tanh = (mean + log_std.exp() * torch.randn(50, 3, generator=generator, dtype=torch.float64)).clamp(
        -2, 2
    )
    reference = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform()]
    )
    expected = reference.log_prob(torch.tanh(pre_tanh)).sum(-1)
    # where |u| <= 2, the +1e-6 inside log(1 - tanh(u)^2 + 1e-6) (oyster's TanhNormal) shifts it by < 2e-5 per dim
    torch.testing.assert_close(tanh_gaussian_log_prob(pre_tanh, mean, log_std), expected, atol=6e-5, rtol=0)


def test_policy_step_moves_actions_towards_higher_q():
    """With Q(s, a) = 10 * sum(a), a gradient step on the policy loss raises the mean action."""
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(input_size=3, hidden_sizes=[16], action_size=2)
    inputs = torch.randn(256, 3)
    generator = torch.Generator().manual_seed(0)
    before = policy.deterministic(inputs).mean()
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.05)
    for _ in range(5):
        actions, log_probs, mean, log_std = policy.sample(inputs, generator)
        loss = policy_loss(log_probs, 10.0 * actions.sum(-1), mean, log_std, 1e-3)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert policy.deterministic(inputs).mean() > before + 0.01


def test_the_critic_loss_is_the_error_against_the_hand_computed_target():
    """The Q loss of an update equals the squared error of both critics against
    reward_scale * r + (1 - d) * gamma * V_target(s', z), recomputed here from the same random draws."""
    agent = PEARL(tiny())
    agent.meta_iteration(0)
    cfg, indices = agent.config.pearl, torch.tensor([0, 1, 3])
    generator = torch.Generator().manual_seed(5)  # replays the update's draws: context, batch, z
    context = context_inputs(agent.encoder_buffer.sample(indices, cfg.context_batch_size, generator), False)
    batch = agent.rl_buffer.sample(indices, cfg.batch_size, generator)
    with torch.no_grad():
        z = sample_latent(*agent.encoder(context), generator).repeat_interleave(cfg.batch_size, dim=0)
        obs, actions = batch["obs"].flatten(0, 1), batch["action"].flatten(0, 1)
        rewards, terminals = batch["reward"].flatten(), batch["terminal"].flatten()
        next_values = agent.target_value(batch["next_obs"].flatten(0, 1), z)
        target = cfg.reward_scale * rewards + (1 - terminals) * agent.config.gamma * next_values
        expected = sum(((q(obs, actions, z) - target) ** 2).mean() for q in (agent.q1, agent.q2))
    reported = agent._update(indices, torch.Generator().manual_seed(5))["losses/q"]
    assert reported == pytest.approx(expected.item(), rel=1e-5)


# --- replay buffers -----------------------------------------------------------------------------------------
def test_replay_buffers_store_and_sample_per_task():
    buffers = TaskReplayBuffers(num_tasks=4, widths={"x": 1, "y": 2}, capacity=100)
    rows = torch.tensor([1, 3])
    # task 1: values 100..104 (the last two padding), task 3: values 300..304
    x = torch.tensor([[100.0, 101, 102, 103, 104], [300, 301, 302, 303, 304]]).unsqueeze(-1)
    valid = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    buffers.add(rows, {"x": x, "y": x.expand(-1, -1, 2) + 0.5}, valid)
    assert buffers.sizes.tolist() == [0, 3, 0, 5]
    sample = buffers.sample(torch.tensor([3, 1, 1]), 500, torch.Generator().manual_seed(0))
    assert sample["x"].shape == (3, 500, 1) and sample["y"].shape == (3, 500, 2)
    assert set(sample["x"][0].flatten().tolist()) == {300, 301, 302, 303, 304}
    assert set(sample["x"][1].flatten().tolist()) == {100, 101, 102}
    torch.testing.assert_close(sample["y"][..., 0], sample["x"][..., 0] + 0.5)
    with pytest.raises(UserError, match="empty"):
        buffers.sample(torch.tensor([0]), 1, torch.Generator())
    buffers.clear(torch.tensor([3]))
    assert buffers.sizes.tolist() == [0, 3, 0, 0]


def test_a_full_replay_buffer_overwrites_its_oldest_transitions():
    buffers = TaskReplayBuffers(num_tasks=2, widths={"x": 1}, capacity=4)
    for start in (0, 3):
        x = torch.arange(start, start + 3, dtype=torch.float32).reshape(1, 3, 1)
        buffers.add(torch.tensor([0]), {"x": x}, torch.ones(1, 3, dtype=torch.bool))
    sample = buffers.sample(torch.tensor([0]), 400, torch.Generator().manual_seed(0))
    assert set(sample["x"].flatten().tolist()) == {2.0, 3.0, 4.0, 5.0}
    x = torch.arange(10, 20, dtype=torch.float32).reshape(1, 10, 1)  # more than the capacity at once
    buffers.add(torch.tensor([1]), {"x": x}, torch.ones(1, 10, dtype=torch.bool))
    sample = buffers.sample(torch.tensor([1]), 400, torch.Generator().manual_seed(0))
    assert set(sample["x"].flatten().tolist()) == {16.0, 17.0, 18.0, 19.0}


def test_replay_buffer_state_round_trips_and_keeps_only_filled_slots():
    buffers = TaskReplayBuffers(num_tasks=3, widths={"x": 2}, capacity=1000)
    buffers.add(torch.tensor([0, 2]), {"x": torch.randn(2, 7, 2)}, torch.ones(2, 7, dtype=torch.bool))
    state = buffers.state_dict()
    assert state["data"]["x"].shape == (3, 7, 2)
    restored = TaskReplayBuffers(num_tasks=3, widths={"x": 2}, capacity=1000)
    restored.load_state_dict(state)
    one, two = (
        b.sample(torch.tensor([2, 0]), 9, torch.Generator().manual_seed(3)) for b in (buffers, restored)
    )
    torch.testing.assert_close(one["x"], two["x"])


# --- the agent ----------------------------------------------------------------------------------------------
MUJOCO_IDS = sorted(i for i, (entry, _) in ENV_SPECS.items() if ".mujoco." in entry)


@pytest.mark.parametrize("env_id", env_ids_under_test())
def test_one_iteration_on_every_registered_env(env_id):
    if env_id in MUJOCO_IDS:
        pytest.importorskip("mujoco")
    has_horizon = env_id in MUJOCO_IDS or env_id.startswith(("MetaRL/Navigation2D", "MetaRL/MW-"))
    config = dataclasses.replace(tiny(env_id), env_kwargs={"horizon": 10} if has_horizon else {})
    if isinstance(make_env(env_id).action_space, gym.spaces.Discrete):
        with pytest.raises(UserError, match="PEARL needs continuous"):
            PEARL(config)
        return
    agent = PEARL(config)
    before = {name: _flat(net) for name, net in agent._networks().items()}
    metrics = agent.meta_iteration(0)
    assert all(math.isfinite(v) for v in metrics.values())
    assert {"meta/return_episode1", "meta/return_episode2", "losses/q", "losses/kl"} <= set(metrics)
    for name, net in agent._networks().items():
        assert not torch.equal(before[name], _flat(net)), f"{name} did not move"
    # initial episodes on all 4 tasks, then 1 prior + 2 extra on 2 tasks, at most 10 steps each
    assert 0 < metrics["env_steps"] <= 10 * (4 + 2 * 3)
    assert int(agent.rl_buffer.sizes.sum()) == metrics["env_steps"]


def test_collection_fills_the_encoder_buffer_with_prior_episodes_only():
    agent = PEARL(tiny(prior_episodes=2, extra_posterior_episodes=3, initial_episodes=1))
    agent.meta_iteration(0)
    collected = torch.nonzero(agent.encoder_buffer.sizes > 10).flatten()  # refilled with 2 x 10 steps
    assert len(collected) == 2
    assert agent.encoder_buffer.sizes[collected].tolist() == [20, 20]  # Navigation2D rarely ends in 10 steps
    assert agent.rl_buffer.sizes[collected].tolist() == [60, 60]  # 1 initial + 2 prior + 3 extra


def test_max_path_length_cuts_collected_episodes_but_not_evaluation_trials():
    agent = PEARL(tiny(max_path_length=4, prior_episodes=2, extra_posterior_episodes=3, initial_episodes=1))
    metrics = agent.meta_iteration(0)
    # initial episodes on all 4 tasks, then 2 prior + 3 extra on 2 tasks, 4 steps each (10 without the cut)
    assert metrics["env_steps"] == 4 * (4 + 2 * 5)
    assert int(agent.rl_buffer.sizes.sum()) == metrics["env_steps"]
    assert float(agent.rl_buffer.data["terminal"].sum()) == 0  # cut, not ended: the targets bootstrap
    trial = agent.rollout.run(agent.policy, agent.train_tasks[:2], torch.zeros(2, 1, 2), 0, torch.Generator())
    assert trial.mask.shape[-1] == 10 and trial.num_steps == 20  # evaluation plays the env's whole episodes


def test_experience_returns_are_deterministic_per_seed_and_shaped_tasks_by_episodes():
    agent = PEARL(tiny())
    agent.meta_iteration(0)
    tasks = agent.train_tasks[:3]
    first = agent.experience_returns(tasks, 3, seed=7)
    assert first.shape == (3, 3) and first.dtype == np.float64
    np.testing.assert_array_equal(first, agent.experience_returns(tasks, 3, seed=7))
    assert not np.array_equal(first, agent.experience_returns(tasks, 3, seed=8))
    # episode 1 of a 1-episode trial is episode 1 of a 3-episode trial (same seed: same prior z)
    np.testing.assert_array_equal(first[:, :1], agent.experience_returns(tasks, 1, seed=7))


def test_discrete_action_envs_and_bad_settings_are_refused_with_one_line():
    with pytest.raises(UserError, match="tasks_per_iteration"):
        PEARLConfig(train_tasks=3, tasks_per_iteration=4)
    with pytest.raises(UserError, match="prior_episodes"):
        PEARLConfig(prior_episodes=0, posterior_episodes=0)


def test_killed_and_resumed_run_continues_with_identical_numbers(tmp_path):
    uninterrupted = PEARL(tiny())
    uninterrupted.train(tmp_path / "a", progress=False)
    first = PEARL(dataclasses.replace(tiny(), iterations=2))
    first.train(tmp_path / "b", progress=False)
    resumed = load_agent(tmp_path / "b")
    resumed.config = dataclasses.replace(resumed.config, iterations=3)
    resumed.train(tmp_path / "b", progress=False)

    def records(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("charts/")} for line in lines]

    assert records(tmp_path / "a") == records(tmp_path / "b")
    final_a, final_b = uninterrupted.algorithm_state(), resumed.algorithm_state()
    for name in ("policy", "encoder", "q1", "q2", "value", "target_value"):
        for key, value in final_a[name].items():
            assert torch.equal(value, final_b[name][key]), (name, key)
    for buffer in ("rl_buffer", "encoder_buffer"):
        assert torch.equal(final_a[buffer]["sizes"], final_b[buffer]["sizes"])
        for key, value in final_a[buffer]["data"].items():
            assert torch.equal(value, final_b[buffer]["data"][key]), (buffer, key)


# --- configs and registry -----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PEARL_CONFIGS, ids=lambda p: p.name)
def test_shipped_pearl_configs_load_and_name_a_registered_env(path):
    config = load_config(TrainConfig, path)
    assert config.algo == "pearl" and gym.spec(config.env) is not None
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert any("katerakelly/oyster" in line for line in header), "the header must cite oyster's config"


def test_algo_pearl_is_registered_and_picks_its_navigation_config():
    assert agent_class("pearl") is PEARL
    assert (
        find_config("pearl", "MetaRL/Navigation2D-v0") == shipped_config_dir() / "pearl" / "navigation2d.yaml"
    )


def test_cheetah_vel_config_has_oysters_settings():
    """oyster configs/cheetah-vel.json over configs/default.py."""
    config = load_config(TrainConfig, shipped_config_dir() / "pearl" / "halfcheetah-vel.yaml")
    p = config.pearl
    assert (p.train_tasks, p.latent_size, p.hidden_sizes, p.encoder_hidden_sizes) == (
        100,
        5,
        [300] * 3,
        [200] * 3,
    )
    assert (config.meta_batch_size, p.batch_size, p.context_batch_size, p.train_steps) == (16, 256, 100, 2000)
    assert (p.initial_episodes, p.prior_episodes, p.extra_posterior_episodes) == (10, 2, 3)
    assert (p.reward_scale, p.kl_lambda, p.lr, p.soft_target_tau, config.gamma) == (
        5.0,
        0.1,
        3e-4,
        0.005,
        0.99,
    )
    assert config.env_kwargs["velocity_range"] == [0.0, 3.0]


# --- learning -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sac_learns_to_walk_towards_the_goal_of_one_task():
    """Smoke test of the whole loop with a fixed seed: on one Navigation2D task (goal 0.15 away, 20 steps), 1,600
    updates take the deterministic policy from standing still (-3.1) to walking to the goal (about -0.6)."""
    config = tiny(
        train_tasks=1,
        tasks_per_iteration=1,
        hidden_sizes=[32, 32],
        initial_episodes=2,
        prior_episodes=1,
        extra_posterior_episodes=1,
        train_steps=100,
        batch_size=32,
        context_batch_size=16,
        reward_scale=10.0,
        logged_trial_episodes=0,
    )
    agent = PEARL(dataclasses.replace(config, env_kwargs={"horizon": 20}, iterations=16, meta_batch_size=1))
    standing_still = -20 * math.hypot(agent.train_tasks[0].goal_x, agent.train_tasks[0].goal_y)
    before = agent.experience_returns(agent.train_tasks, 2, seed=1)
    agent.train(None, progress=False)
    after = agent.experience_returns(agent.train_tasks, 2, seed=1)
    assert before.mean() == pytest.approx(standing_still, abs=0.1)
    assert after.mean() > standing_still + 1.5, (before, after)


def test_train_summary_shows_the_trial_returns_of_a_context_based_agent():
    from metarl.agents.commands import _summary

    agent = PEARL(tiny())
    line = _summary(agent, [{"meta/return_episode1": -40.0, "meta/return_episode2": -12.5}], 3.0)
    assert "return in trial episodes -40.00, -12.50" in line
