"""Policies with stacked per-task parameters and the batched sampler equal their per-task forms."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from metarl.agents.policies import CategoricalMLPPolicy, GaussianMLPPolicy, numpy_tanh, tanh, task_slice
from metarl.agents.sampler import BatchedSampler
from metarl.core import stack_over_tasks
from metarl.envs import sample_tasks


def _perturbed_stack(policy, num_tasks, seed=0):
    gen = torch.Generator().manual_seed(seed)
    stacked = stack_over_tasks({n: p.detach() for n, p in policy.params().items()}, num_tasks, copy=True)
    return {n: p + 0.1 * torch.randn(p.shape, generator=gen) for n, p in stacked.items()}


def test_stacked_parameters_equal_a_per_task_loop():
    gen = torch.Generator().manual_seed(0)
    for policy in (GaussianMLPPolicy(3, 2, (16, 16)), CategoricalMLPPolicy(3, 4, (16, 16))):
        params = _perturbed_stack(policy, 5)
        obs = torch.randn(5, 7, 11, 3, generator=gen)
        batched = policy.distribution_parameters(obs, params)
        for i in range(5):
            single = policy.distribution_parameters(obs[i], task_slice(params, i))
            for b, s in zip(batched, single, strict=True):
                torch.testing.assert_close(b[i], s, rtol=1e-5, atol=1e-6)


def test_act_draws_what_sampling_the_distribution_draws():
    obs = torch.randn(5, 7, 11, 3, generator=torch.Generator().manual_seed(1))
    for policy in (GaussianMLPPolicy(3, 2, (16, 16), min_std=0.9), CategoricalMLPPolicy(3, 4, (16, 16))):
        for params in (_perturbed_stack(policy, 5), {n: p.detach() for n, p in policy.params().items()}):
            drawn = policy.act(obs, params, torch.Generator().manual_seed(2))
            expected = policy.sample(policy.distribution(obs, params), torch.Generator().manual_seed(2))
            assert torch.equal(drawn, expected)


def test_policy_tanh_takes_numpy_kernel_only_without_gradients_and_keeps_every_derivative():
    z = torch.linspace(-12.0, 12.0, 4001).reshape(1, -1, 1).expand(3, -1, 2) * torch.tensor([1.0, 0.3])
    torch.testing.assert_close(numpy_tanh(z), torch.tanh(z), rtol=4e-7, atol=2e-7)  # also a strided input
    assert numpy_tanh(z).dtype == torch.float32
    with torch.no_grad():  # how the sampler and a line search ask for numpy's kernel
        assert torch.equal(tanh(z), numpy_tanh(z))
    assert torch.equal(tanh(z), torch.tanh(z))
    # With gradients on, everything differentiated goes through torch.tanh: reverse mode and torch.func.
    leaf = z.detach().clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(tanh(leaf).sum(), leaf)
    torch.testing.assert_close(gradient, 1.0 - torch.tanh(z) ** 2)
    direction = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    _, tangent = torch.func.jvp(tanh, (z,), (direction,))
    torch.testing.assert_close(tangent, (1.0 - torch.tanh(z) ** 2) * direction)
    torch.testing.assert_close(torch.func.vmap(tanh)(z), torch.tanh(z))
    # numpy's kernel refuses a tensor a transform tracks rather than dropping its derivative.
    with torch.no_grad(), pytest.raises(RuntimeError):
        torch.func.jvp(tanh, (z,), (direction,))
    with pytest.raises(RuntimeError):
        numpy_tanh(leaf)


def test_sampler_episodes_replay_exactly_in_single_envs_with_per_task_parameters():
    env_id = "MetaRL/Navigation2D-v0"
    policy = GaussianMLPPolicy(2, 2, (16, 16))
    sampler = BatchedSampler(env_id, {"horizon": 15}, policy, episodes_per_task=3, normalized_actions=False)
    tasks = sample_tasks(sampler.env, 4, seed=7)
    params = _perturbed_stack(policy, 4)
    episodes = sampler.sample(params, tasks, seed=11, generator=torch.Generator().manual_seed(0))
    assert episodes.observations.shape == (4, 3, 15, 2)
    # Each (task, episode) replayed in its own env gives the same observations and rewards ...
    for i, task in enumerate(tasks):
        for j in range(3):
            env = gym.make(env_id, horizon=15)
            env.unwrapped.set_task(task)
            obs, _ = env.reset(seed=11 + i * 3 + j)
            for t in range(15):
                np.testing.assert_allclose(episodes.observations[i, j, t].numpy(), obs, atol=1e-6)
                obs, reward, terminated, truncated, _ = env.step(episodes.actions[i, j, t].numpy())
                assert abs(float(episodes.rewards[i, j, t]) - reward) < 1e-5
                if terminated or truncated:
                    break
    # ... and the recorded actions are likely under the task's own parameters, not under another task's.
    own = policy.distribution(episodes.observations, params).log_prob(episodes.actions).mean()
    swapped = {n: p.roll(1, dims=0) for n, p in params.items()}
    assert own > policy.distribution(episodes.observations, swapped).log_prob(episodes.actions).mean()


def test_sampler_is_deterministic_and_seed_dependent():
    policy = CategoricalMLPPolicy(1, 5, (8,))
    sampler = BatchedSampler("MetaRL/Bandit-K5-v0", {}, policy, episodes_per_task=4)
    tasks = sample_tasks(sampler.env, 3, seed=0)
    params = _perturbed_stack(policy, 3)
    a = sampler.sample(params, tasks, seed=5, generator=torch.Generator().manual_seed(1))
    b = sampler.sample(params, tasks, seed=5, generator=torch.Generator().manual_seed(1))
    c = sampler.sample(params, tasks, seed=6, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.actions, b.actions) and torch.equal(a.rewards, b.rewards)
    assert not torch.equal(a.rewards, c.rewards)
    assert a.actions.dtype == torch.int64 and a.actions.shape == (3, 4, 10)


@pytest.mark.parametrize(
    "env_id",
    [
        "MetaRL/Navigation2D-v0",
        "MetaRL/TabularMDP-v0",
        "MetaRL/HalfCheetahVel-v0",
        "MetaRL/HopperRandParams-v0",  # a model per task: new MjData copies when a row's task changes
        "MetaRL/MW-ML1-reach-v3-v0",
    ],
)
def test_an_engine_reused_across_rounds_gives_the_episodes_of_a_new_one(env_id):
    if "HalfCheetah" in env_id or "Hopper" in env_id:
        pytest.importorskip("mujoco")
    if "MW-" in env_id:
        pytest.importorskip("metaworld")
    probe = gym.make(env_id).unwrapped
    policy_class = (
        CategoricalMLPPolicy if isinstance(probe.action_space, gym.spaces.Discrete) else GaussianMLPPolicy
    )
    obs_dim = (
        int(np.prod(probe.observation_space.shape))
        if probe.observation_space.shape
        else probe.observation_space.n
    )
    act_dim = probe.action_space.n if policy_class is CategoricalMLPPolicy else probe.action_space.shape[0]
    policy = policy_class(obs_dim, act_dim, (8,))
    kept = BatchedSampler(env_id, {"horizon": 12}, policy, episodes_per_task=2)
    rounds = [(3, 5, 0), (3, 6, 1), (2, 7, 2), (3, 8, 3)]  # tasks, env seed, task seed: the third resizes it
    for num_tasks, seed, task_seed in rounds:
        tasks = sample_tasks(kept.env, num_tasks, seed=task_seed)
        params = _perturbed_stack(policy, num_tasks, seed=seed)
        reused = kept.sample(params, tasks, seed=seed, generator=torch.Generator().manual_seed(seed))
        fresh_sampler = BatchedSampler(env_id, {"horizon": 12}, policy, episodes_per_task=2)
        fresh = fresh_sampler.sample(params, tasks, seed=seed, generator=torch.Generator().manual_seed(seed))
        fresh_sampler.close()
        for name in ("observations", "actions", "rewards", "mask"):
            assert torch.equal(getattr(reused, name), getattr(fresh, name)), (env_id, num_tasks, name)
    engine = kept._engine
    kept.close()
    assert kept._engine is None and engine is not None


def test_oracle_sampler_appends_task_features():
    policy = GaussianMLPPolicy(4, 2, (8,))
    sampler = BatchedSampler("MetaRL/Navigation2D-v0", {"horizon": 5}, policy, 2, task_features=True)
    tasks = sample_tasks(sampler.env, 3, seed=0)
    episodes = sampler.sample(_perturbed_stack(policy, 3), tasks, seed=0, generator=torch.Generator())
    goals = torch.tensor([[t.goal_x, t.goal_y] for t in tasks], dtype=torch.float32)
    torch.testing.assert_close(episodes.observations[:, :, :, 2:], goals[:, None, None, :].expand(3, 2, 5, 2))
    assert episodes.task_feature_size == 2
    assert torch.equal(episodes.env_observations(), episodes.observations[..., :2])


def test_normalized_actions_are_mapped_onto_the_action_box_and_recorded_unscaled():
    """With normalized_actions, policy action u moves the Navigation2D point by 0.1 * clip(u, -1, 1)."""
    policy = GaussianMLPPolicy(2, 2, (8,))
    sampler = BatchedSampler("MetaRL/Navigation2D-v0", {"horizon": 6}, policy, 3, normalized_actions=True)
    tasks = sample_tasks(sampler.env, 2, seed=0)
    episodes = sampler.sample(_perturbed_stack(policy, 2), tasks, seed=3, generator=torch.Generator())
    moves = episodes.actions.clamp(-1.0, 1.0) * 0.1
    positions = torch.cumsum(moves, dim=2)
    valid = episodes.mask.bool()
    torch.testing.assert_close(
        episodes.observations[:, :, 1:][valid[:, :, 1:]], positions[:, :, :-1][valid[:, :, 1:]]
    )
    assert (
        episodes.actions.abs().max() > 0.1
    )  # the unscaled policy actions are kept for the log-probabilities


def test_normalized_actions_need_a_bounded_action_space(monkeypatch):
    policy = GaussianMLPPolicy(2, 2, (8,))
    sampler = BatchedSampler("MetaRL/Navigation2D-v0", {}, policy, 1, normalized_actions=False)
    unbounded = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
    monkeypatch.setattr(type(sampler.env), "action_space", unbounded, raising=False)
    with pytest.raises(ValueError, match="normalized_actions=false"):
        BatchedSampler("MetaRL/Navigation2D-v0", {}, policy, 1, normalized_actions=True)


def test_a_rollout_runs_torch_on_one_thread_and_gives_the_threads_back():
    policy = GaussianMLPPolicy(2, 2, (8,))
    sampler = BatchedSampler("MetaRL/Navigation2D-v0", {"horizon": 5}, policy, episodes_per_task=2)
    tasks = sample_tasks(sampler.env, 2, seed=0)
    params = _perturbed_stack(policy, 2)
    generator = torch.Generator().manual_seed(0)
    seen = []

    def act(obs, _):
        seen.append(torch.get_num_threads())
        return policy.act(obs, params, generator)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        engine, first_obs = sampler.engine_for(tasks, seed=0)
        sampler.rollout(engine, first_obs, None, act)
        assert seen == [1] * 5
        assert torch.get_num_threads() == 2
        with pytest.raises(ZeroDivisionError):  # given back when the rollout fails too
            sampler.rollout(engine, first_obs, None, lambda obs, _: 1 / 0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
        sampler.close()
