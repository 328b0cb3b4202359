"""Returns, GAE, per-task normalisation and the linear feature baseline."""

from __future__ import annotations

import torch

from metarl.agents.baseline import LinearFeatureBaseline, baseline_features, fit_linear
from metarl.agents.episodes import (
    Episodes,
    discount_matrix,
    discounted_returns,
    generalized_advantages,
    masked_task_mean,
    normalize_per_task,
)


def test_discounted_returns_match_hand_computed_values_and_respect_the_mask():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the episode ended after 3 steps
    returns = discounted_returns(rewards, mask, gamma=0.5)
    torch.testing.assert_close(returns, torch.tensor([[1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0, 0.0]]))


def test_discount_matrix_gives_discounted_cumulative_sums():
    x = torch.tensor([[1.0, 2.0, 3.0]])
    torch.testing.assert_close(x @ discount_matrix(3, 0.5).T, torch.tensor([[1.0, 2.5, 4.25]]))
    torch.testing.assert_close(x @ discount_matrix(3, 1.0).T, torch.tensor([[1.0, 3.0, 6.0]]))
    torch.testing.assert_close(discount_matrix(3, 0.0), torch.eye(3))


def test_gae_matches_hand_computed_values():
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 1.0, 1.5]])
    mask = torch.ones(1, 3)
    gamma, lam = 0.9, 0.8
    d0 = 1.0 + 0.9 * 1.0 - 0.5
    d1 = 0.0 + 0.9 * 1.5 - 1.0
    d2 = 2.0 + 0.0 - 1.5
    expected = torch.tensor([[d0 + 0.72 * (d1 + 0.72 * d2), d1 + 0.72 * d2, d2]])
    torch.testing.assert_close(generalized_advantages(rewards, values, mask, gamma, lam), expected)


def test_gae_with_lambda_one_is_returns_minus_values():
    gen = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(2, 3, 7, generator=gen), torch.randn(2, 3, 7, generator=gen)
    mask = torch.ones(2, 3, 7)
    mask[0, 1, 4:] = 0
    advantages = generalized_advantages(rewards, values, mask, 0.99, 1.0)
    torch.testing.assert_close(advantages, (discounted_returns(rewards, mask, 0.99) - values) * mask)


def test_normalize_per_task_gives_zero_mean_unit_std_per_task():
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(3, 4, 5, generator=gen) * torch.tensor([1.0, 10.0, 100.0]).reshape(3, 1, 1) + 7
    mask = torch.ones(3, 4, 5)
    mask[2, :, 3:] = 0
    out = normalize_per_task(values, mask)
    torch.testing.assert_close(masked_task_mean(out, mask), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(masked_task_mean(out**2, mask), torch.ones(3), atol=1e-4, rtol=0)
    assert torch.all(out[2, :, 3:] == 0)


def test_fit_linear_recovers_a_linear_target_exactly():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(2, 50, 4, generator=gen, dtype=torch.float64)
    coeffs = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    targets = (features @ coeffs.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(fit_linear(features, targets, reg_coeff=1e-12), coeffs, rtol=1e-6, atol=1e-8)


def test_fit_linear_is_finite_on_singular_and_degenerate_systems():
    singular = torch.zeros(3, 10, 4, dtype=torch.float64)
    singular[1, :, 0] = 1.0  # rank one
    singular[2] = torch.nan  # garbage features: must fall back to zeros, never NaN
    coeffs = fit_linear(singular, torch.ones(3, 10, dtype=torch.float64), reg_coeff=0.0)
    assert torch.isfinite(coeffs).all()
    torch.testing.assert_close(coeffs[2], torch.zeros(4, dtype=torch.float64))


def test_fit_linear_solves_wide_batched_systems_with_several_torch_threads():
    """TabularMDP's oracle fits 1124 features per task; torch's batched LU broke there after set_num_threads(2)."""
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(3, 700, 600, generator=gen, dtype=torch.float64)
    coeffs = torch.randn(3, 600, generator=gen, dtype=torch.float64)
    targets = (features @ coeffs.unsqueeze(-1)).squeeze(-1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fitted = fit_linear(features, targets, reg_coeff=1e-10)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(fitted, coeffs, rtol=1e-6, atol=1e-6)


def test_linear_baseline_features_and_values():
    observations = torch.zeros(2, 3, 5, 2)
    mask = torch.ones(2, 3, 5)
    mask[:, :, 4] = 0
    features = baseline_features(observations, mask)
    assert features.shape == (2, 3, 5, 2 * 2 + 4)
    torch.testing.assert_close(features[0, 0, 2, 4:].float(), torch.tensor([0.02, 0.02**2, 0.02**3, 1.0]))
    assert torch.all(features[:, :, 4] == 0)
    # Constant observations make obs features all zero (singular Gram matrix): values stay finite.
    rewards = torch.ones(2, 3, 5)
    episodes = Episodes(observations, torch.zeros(2, 3, 5, 2), rewards, mask)
    values = LinearFeatureBaseline().fit_predict(episodes, gamma=1.0)
    assert torch.isfinite(values).all()
    # Returns-to-go 4, 3, 2, 1 are linear in t: the time features fit them (up to the small ridge bias).
    torch.testing.assert_close(
        values[:, :, :4], torch.tensor([4.0, 3.0, 2.0, 1.0]).expand(2, 3, 4), atol=0.05, rtol=0
    )


def test_the_baseline_leaves_out_the_oracles_task_features():
    """Appended task features (constant within a task) are not fitted: the values are those of the env's own
    observation, where fitting them too would not give exactly the same values."""
    generator = torch.Generator().manual_seed(0)
    observations = torch.randn(3, 4, 6, 2, generator=generator)
    rewards = torch.randn(3, 4, 6, generator=generator)
    mask = torch.ones(3, 4, 6)
    plain = Episodes(observations, torch.zeros(3, 4, 6, 2), rewards, mask)
    task_features = torch.randn(3, 1, 1, 5, generator=generator).expand(3, 4, 6, 5)
    with_features = torch.cat([observations, task_features], dim=-1)
    oracle = Episodes(with_features, plain.actions, rewards, mask, task_feature_size=5)
    baseline = LinearFeatureBaseline()
    expected = baseline.fit_predict(plain, gamma=0.9)
    assert torch.equal(baseline.fit_predict(oracle, gamma=0.9), expected)
    fitted_on_all = baseline.fit_predict(Episodes(with_features, plain.actions, rewards, mask), gamma=0.9)
    assert not torch.equal(fitted_on_all, expected)
