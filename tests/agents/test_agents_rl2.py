"""RL^2: memory across the episodes of a trial and not across trials, GAE over whole trials against a textbook
loop, PPO's clipped objective by hand and its update on a tiny problem, kill-and-resume, one iteration on every
registered env, configuration errors, and learning to beat random play on a 2-armed bandit."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import stopped_after_one_iteration, without_timings

import metarl.envs  # noqa: F401  (registers the ids)
from metarl.agents import RL2, RL2Config, TrainConfig
from metarl.agents.config import PolicyConfig
from metarl.agents.fused_gru import stacked_gru
from metarl.agents.recurrent import RecurrentActorCritic, RunningMoments
from metarl.agents.recurrent_ppo import ppo_losses, ppo_update, trial_advantages
from metarl.agents.recurrent_step import RecurrentStep
from metarl.agents.trial_sampler import Trials
from metarl.envs import registered_ids
from metarl.envs.registration import ENV_SPECS
from metarl.errors import UserError


def tiny(env: str = "MetaRL/Navigation2D-v0", **changes) -> TrainConfig:
    rl2 = changes.pop("rl2", RL2Config(episodes_per_trial=2, hidden_size=8, epochs=2, minibatches=2))
    return TrainConfig(
        algo="rl2",
        env=env,
        env_kwargs=changes.pop("env_kwargs", {"horizon": 5}),
        iterations=changes.pop("iterations", 3),
        meta_batch_size=3,
        episodes_per_task=2,
        gae_lambda=0.9,
        rl2=rl2,
        **changes,
    )


def _sample(agent: RL2, seed: int = 0) -> Trials:
    tasks = agent.env.unwrapped.sample_tasks(3)
    return agent.sample(
        tasks, 2, agent.config.rl2.episodes_per_trial, seed, torch.Generator().manual_seed(seed)
    )


def test_sampling_keeps_the_memory_across_episodes_exactly_as_the_whole_trial_recurrence():
    """The log-probabilities and values recorded while sampling (one GRU step at a time, state carried over the
    episode boundary) equal those of one pass of the GRU over each whole trial from the zero state."""
    agent = RL2(
        tiny(env_kwargs={"horizon": 4}, rl2=RL2Config(episodes_per_trial=3, hidden_size=8, minibatches=1))
    )
    agent.meta_iteration(0)  # the inputs' standardisation is no longer the identity
    assert agent.policy.observation_moments.count > 0
    trials = _sample(agent)
    assert trials.observations.shape == (6, 12, 6) and (trials.episode[:, ::4] == torch.arange(3)).all()
    with torch.no_grad():
        dist, values = agent.policy(trials.observations)
        log_probs = dist.log_prob(trials.actions)
    torch.testing.assert_close(log_probs, trials.log_probs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(values, trials.values, rtol=1e-5, atol=1e-5)
    # The done flag is set on the first observation of episodes 2 and 3 only.
    assert (trials.observations[:, :, -1].nonzero()[:, 1].unique() == torch.tensor([4, 8])).all()


def test_the_memory_carries_episode_one_into_episode_two_and_resets_between_trials():
    policy = RecurrentActorCritic(6, gym.spaces.Box(-1, 1, (2,)), hidden_size=8)
    generator = torch.Generator().manual_seed(0)
    first = torch.randn(2, 3, 6, generator=generator)
    second = torch.randn(1, 3, 6, generator=generator).expand(2, 3, 6)
    trials = torch.cat([first, second], dim=1)  # two trials that differ only in their first episode
    with torch.no_grad():
        dist, values = policy(trials)
        mean = dist.base_dist.loc
    assert not torch.allclose(mean[0, 3:], mean[1, 3:])  # episode 2 remembers episode 1
    with torch.no_grad():  # a new trial starts from the zero state: its first step ignores everything before
        fresh_mean = policy(trials[:, 3:])[0].base_dist.loc
        _, _, values, _ = RecurrentStep(policy)(
            trials[:, 3].numpy(), policy.initial_state(2).numpy(), np.zeros((2, 2), np.float32)
        )
    torch.testing.assert_close(fresh_mean[0, 0], fresh_mean[1, 0])
    torch.testing.assert_close(torch.from_numpy(values), policy(trials[:, 3:4])[1][:, 0])


@pytest.mark.parametrize("action_space", [gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(4)])
def test_the_compiled_step_equals_the_whole_trial_recurrence_and_the_heads_draws(action_space):
    """Stepping :class:`RecurrentStep` through trials, state carried, gives the states' log-probabilities and
    values of one pass of the torch module over the whole trials, and the actions ``act_with_noise`` draws there
    from the same noise (standardised inputs, both GRUs)."""
    policy = RecurrentActorCritic(
        5, action_space, hidden_size=8, normalized_features=np.array([True, True, False, True, False])
    )
    generator = torch.Generator().manual_seed(3)
    obs = torch.randn(3, 6, 5, generator=generator) * 2 + 1
    policy.update_observation_statistics(obs, torch.ones(3, 6))
    policy.update_value_statistics(torch.randn(3, 6, generator=generator) * 5 + 2, torch.ones(3, 6))
    noise = policy.head.action_noise((6, 3), generator)
    step, state = RecurrentStep(policy), policy.initial_state(3).numpy()
    columns = []
    for t in range(6):
        actions, log_probs, values, state = step(obs[:, t].numpy(), state, noise[t].numpy())
        columns.append((torch.from_numpy(actions), torch.from_numpy(log_probs), torch.from_numpy(values)))
    actions, log_probs, values = (torch.stack(c, dim=1) for c in zip(*columns, strict=True))
    with torch.no_grad():
        dist, expected_values = policy(obs)
        policy_out = stacked_gru(obs_standardised(policy, obs), [policy.gru, policy.value_gru])[0]
        expected_actions = policy.head.act_with_noise(policy_out, policy.head.params(), noise.transpose(0, 1))
    assert actions.dtype == expected_actions.dtype and actions.shape == expected_actions.shape
    torch.testing.assert_close(actions, expected_actions, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_probs, dist.log_prob(actions), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(values, expected_values, rtol=1e-5, atol=1e-5)


def obs_standardised(policy: RecurrentActorCritic, obs: torch.Tensor) -> torch.Tensor:
    """The GRUs' inputs: the marked features standardised by the policy's moments, clipped at +-10."""
    standardised = policy.observation_moments.standardize(obs).clamp(-10.0, 10.0)
    return torch.where(policy.normalized_features, standardised, obs)


def test_only_the_marked_inputs_are_standardised():
    """A one-hot input standardised by its running std turns a rare action into a large input (about 10 for an
    action taken 1% of the time), which biased the value after rare actions down and collapsed RL^2's policy on
    TabularMDP; inputs outside the mask reach the GRUs as they are."""
    policy = RecurrentActorCritic(
        3, gym.spaces.Discrete(2), hidden_size=8, normalized_features=np.array([True, False, False])
    )
    obs = torch.tensor([[[5.0, 1.0, 0.0], [-3.0, 0.0, 1.0]]])
    policy.update_observation_statistics(obs, torch.ones(1, 2))  # mean (1, 0.5, 0.5), std (4, 0.5, 0.5)
    with torch.no_grad():
        _, values = policy(obs)
        policy.observation_moments.mean[1:] = 7.0  # moments of the unmarked inputs: not read
        policy.observation_moments.var[1:] = 9.0
        torch.testing.assert_close(policy(obs)[1], values)
        policy.observation_moments.mean[0] = 7.0  # the marked input is standardised
        assert not torch.allclose(policy(obs)[1], values)
        bare = RecurrentActorCritic(3, gym.spaces.Discrete(2), hidden_size=8)
        bare.load_state_dict(policy.state_dict(), strict=False)
        scaled = obs.clone()
        scaled[..., 0] = (obs[..., 0] - 7.0) / 4.0
        torch.testing.assert_close(bare(scaled)[1], policy(obs)[1])


def test_running_moments_equal_the_moments_of_everything_seen():
    generator = torch.Generator().manual_seed(2)
    batches = [torch.randn(3, 5, 4, generator=generator) * 3 + 1 for _ in range(2)]
    masks = [torch.ones(3, 5), (torch.rand(3, 5, generator=generator) > 0.4).float()]
    moments = RunningMoments((4,))
    for values, mask in zip(batches, masks, strict=True):
        moments.update(values, mask)
    seen = torch.cat([v[m.bool()] for v, m in zip(batches, masks, strict=True)])
    torch.testing.assert_close(moments.mean, seen.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(moments.var, seen.var(0, unbiased=False), rtol=1e-5, atol=1e-6)
    assert int(moments.count) == len(seen)


def _textbook_gae(rewards, values, gamma, lam):
    """Schulman et al. 2016 over one trial given as lists: delta_t = r_t + gamma V_{t+1} - V_t, V after the trial
    = 0, A_t = sum_l (gamma lam)^l delta_{t+l}; episode ends inside the trial are not special."""
    n = len(rewards)
    deltas = [rewards[t] + gamma * (values[t + 1] if t + 1 < n else 0.0) - values[t] for t in range(n)]
    return [sum((gamma * lam) ** (s - t) * deltas[s] for s in range(t, n)) for t in range(n)]


def test_gae_runs_over_the_whole_trial_as_the_textbook_loop_does():
    generator = torch.Generator().manual_seed(1)
    lengths = [7, 4]  # the second trial ended early (an episode reached its goal): padded steps are masked
    rewards = torch.randn(2, 7, generator=generator)
    values = torch.randn(2, 7, generator=generator)
    mask = torch.tensor([[1.0] * 7, [1.0] * 4 + [0.0] * 3])
    episode = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])
    trials = Trials(
        observations=torch.zeros(2, 7, 3),
        actions=torch.zeros(2, 7),
        log_probs=torch.zeros(2, 7),
        values=values,
        rewards=rewards,
        mask=mask,
        episode=episode,
        episodes_per_trial=2,
    )
    advantages = trial_advantages(trials, gamma=0.9, gae_lambda=0.8)
    for i, n in enumerate(lengths):
        want = _textbook_gae(rewards[i, :n].tolist(), values[i, :n].tolist(), 0.9, 0.8)
        torch.testing.assert_close(advantages[i, :n], torch.tensor(want), rtol=1e-5, atol=1e-6)
        assert (advantages[i, n:] == 0).all()
    np.testing.assert_allclose(
        trials.episode_returns(),
        [[rewards[0, :3].sum(), rewards[0, 3:].sum()], [rewards[1, :2].sum(), rewards[1, 2:4].sum()]],
        rtol=1e-6,
    )


def test_the_clipped_objective_equals_a_hand_computation():
    agent = RL2(tiny())
    trials = _sample(agent)
    index = torch.arange(trials.num_trials)
    with torch.no_grad():
        log_probs = agent.policy(trials.observations)[0].log_prob(trials.actions)
    # Old probabilities such that the ratio is 1.5 on even steps and 0.6 on odd ones.
    ratio = torch.where(torch.arange(trials.rewards.shape[1]) % 2 == 0, 1.5, 0.6).expand_as(log_probs)
    trials.log_probs = log_probs - torch.log(ratio)
    advantages = torch.where(torch.arange(trials.num_trials)[:, None] % 2 == 0, 2.0, -1.0).expand_as(ratio)
    losses = ppo_losses(agent.policy, trials, index, advantages, torch.zeros_like(ratio), clip=0.2)
    # min(r A, clip(r) A): A=2: r=1.5 -> 1.2*2, r=0.6 -> 0.6*2; A=-1: r=1.5 -> -1.5, r=0.6 -> -0.8
    by_hand = torch.where(
        advantages > 0, torch.where(ratio > 1, 2.4, 1.2), torch.where(ratio > 1, -1.5, -0.8)
    )
    expected = -(by_hand * trials.mask).sum() / trials.mask.sum()
    torch.testing.assert_close(losses.policy, expected, rtol=1e-5, atol=1e-6)
    assert losses.clip_fraction == pytest.approx(1.0)  # every ratio is outside [0.8, 1.2]


def test_the_ppo_update_improves_the_surrogate_and_fits_the_values():
    config = tiny(rl2=RL2Config(episodes_per_trial=2, hidden_size=16, epochs=30, minibatches=1, lr=3e-3))
    agent = RL2(config)
    trials = _sample(agent)
    advantages = trial_advantages(trials, config.gamma, config.gae_lambda)
    targets = advantages + trials.values
    index = torch.arange(trials.num_trials)

    def value_error():
        with torch.no_grad():
            return (
                ((agent.policy(trials.observations)[1] - targets) ** 2 * trials.mask).sum()
                / trials.mask.sum()
            ).item()

    before = value_error()
    agent.policy.update_value_statistics(targets, trials.mask)
    normalized = (advantages - (advantages * trials.mask).sum() / trials.mask.sum()) * trials.mask
    start = ppo_losses(agent.policy, trials, index, normalized, targets, clip=0.2).policy.item()
    agent.policy.value_moments.count.zero_()  # ppo_update merges the same targets again; start its statistics afresh
    stats = ppo_update(
        agent.policy,
        agent.optimizer,
        trials,
        config.rl2,
        config.gamma,
        config.gae_lambda,
        torch.Generator().manual_seed(0),
    )
    assert value_error() < 0.5 * before
    assert stats["losses/policy"] < start - 0.01  # the clipped surrogate went up
    assert 0 < stats["losses/clip_fraction"] <= 1


def test_target_kl_stops_the_epochs_once_the_policy_has_moved_that_far():
    config = tiny(rl2=RL2Config(episodes_per_trial=2, hidden_size=16, epochs=5, minibatches=2, lr=1e-2))
    agent = RL2(config)
    trials = _sample(agent)
    full = ppo_update(
        agent.policy, agent.optimizer, trials, config.rl2, 0.99, 0.9, torch.Generator().manual_seed(0)
    )
    assert full["losses/gradient_steps"] == 10
    stopping = dataclasses.replace(config.rl2, target_kl=1e-9)
    agent = RL2(config)
    stats = ppo_update(
        agent.policy, agent.optimizer, trials, stopping, 0.99, 0.9, torch.Generator().manual_seed(0)
    )
    # the first step starts at the sampling policy (KL 0); after it the KL is above any tiny target
    assert stats["losses/gradient_steps"] == 1 and stats["losses/approx_kl"] == pytest.approx(0.0, abs=1e-6)


def test_a_fresh_agent_loaded_from_a_checkpoint_continues_exactly(tmp_path):
    config = tiny()
    uninterrupted = RL2(config).train(progress=False)
    resumed = stopped_after_one_iteration(config, tmp_path / "run")
    assert isinstance(resumed, RL2) and resumed.iteration == 1
    assert resumed.optimizer.state_dict()["state"]  # Adam's moments came back too
    assert without_timings(uninterrupted[1:]) == without_timings(resumed.train(progress=False))


@pytest.mark.parametrize("env_id", registered_ids())
def test_one_iteration_on_every_registered_env(env_id):
    if ENV_SPECS[env_id][0].startswith("metarl.envs.mujoco"):
        pytest.importorskip("mujoco")
    agent = RL2(tiny(env_id, env_kwargs={"horizon": 3}))
    before = [p.detach().clone() for p in agent.policy.parameters()]
    metrics = agent.meta_iteration(0)
    assert {"meta/return_episode1", "meta/return_episode2", "losses/policy", "losses/value"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["env_steps"] <= 3 * 2 * 2 * 3 and metrics["env_steps"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters(), strict=True))


def test_experience_returns_is_a_function_of_the_seed():
    agent = RL2(tiny())
    tasks = agent.env.unwrapped.sample_tasks(4)
    first = agent.experience_returns(tasks, 3, seed=5)
    assert first.shape == (4, 3) and first.dtype == np.float64 and (first < 0).all()
    np.testing.assert_array_equal(first, agent.experience_returns(tasks, 3, seed=5))
    assert not np.array_equal(first, agent.experience_returns(tasks, 3, seed=6))


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"oracle": True}, "oracle=false"),
        ({"rl2": RL2Config(minibatches=7)}, "rl2.minibatches"),
        (
            {"env_kwargs": {"horizon": 1000}, "rl2": RL2Config(episodes_per_trial=100_000, minibatches=1)},
            "more than",
        ),
    ],
)
def test_bad_settings_are_user_errors(changes, needle):
    with pytest.raises(UserError, match=needle):
        RL2(tiny(**changes))


def test_rl2_beats_random_play_on_a_two_armed_bandit():
    """Ten pulls of a 2-armed Bernoulli bandit per trial: random play earns 5 on average; RL^2 learns to
    favour the arm that paid."""
    config = TrainConfig(
        algo="rl2",
        env="MetaRL/Bandit-K5-v0",
        env_kwargs={"num_arms": 2, "horizon": 10},
        iterations=60,
        meta_batch_size=64,
        episodes_per_task=1,
        gamma=0.99,
        gae_lambda=0.3,
        seed=0,
        policy=PolicyConfig(),
        rl2=RL2Config(episodes_per_trial=1, hidden_size=16, lr=3e-3, epochs=4, minibatches=2),
    )
    agent = RL2(config)
    agent.train(progress=False)
    tasks = agent.env.unwrapped.sample_tasks(1000)
    returns = agent.experience_returns(tasks, 1, seed=0)[:, 0]
    assert returns.mean() > 5.4, returns.mean()  # random: 5.0, std of the mean ~0.05
