"""TRPO pieces: conjugate gradient, the KL-constrained step, and exact KL Hessian-vector products."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, kl_divergence
from torch.func import grad

from metarl.agents.trpo import (
    conjugate_gradient,
    conjugate_gradient_with_product,
    functional_jacobian,
    kl_hessian_vector_product,
    output_space_kl_hvp,
    trpo_step,
)
from metarl.errors import TrainingDiverged


def test_conjugate_gradient_solves_small_spd_system():
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    a = m @ m.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iterations=10)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-8, atol=1e-8)
    x3, ax3 = conjugate_gradient_with_product(lambda v: a @ v, b, iterations=3)  # stopped early
    torch.testing.assert_close(ax3, a @ x3, rtol=1e-8, atol=1e-8)


def _categorical_kl(old_logits, new_logits):
    log_p, log_q = torch.log_softmax(old_logits, -1), torch.log_softmax(new_logits, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def test_policy_kl_formulas_match_torch_distributions():
    from metarl.agents.policies import CategoricalMLPPolicy, GaussianMLPPolicy

    gen = torch.Generator().manual_seed(3)
    gauss = GaussianMLPPolicy(3, 2, (8,))
    old = (torch.randn(5, 2, generator=gen), torch.randn(5, 2, generator=gen))
    new = (torch.randn(5, 2, generator=gen), torch.randn(5, 2, generator=gen))
    expected = kl_divergence(gauss.distribution_from(old), gauss.distribution_from(new))
    torch.testing.assert_close(gauss.kl(old, new), expected)
    cat = CategoricalMLPPolicy(3, 4, (8,))
    old, new = (torch.randn(5, 4, generator=gen),), (torch.randn(5, 4, generator=gen),)
    torch.testing.assert_close(
        cat.kl(old, new), kl_divergence(cat.distribution_from(old), cat.distribution_from(new))
    )


def _categorical_problem(seed: int = 0):
    """A contextual categorical policy: logits = states @ W; surrogate of fixed advantages."""
    gen = torch.Generator().manual_seed(seed)
    states = torch.randn(64, 3, generator=gen)
    weights = torch.nn.Parameter(0.1 * torch.randn(3, 4, generator=gen))
    actions = torch.randint(0, 4, (64,), generator=gen)
    advantages = torch.randn(64, generator=gen)
    old_logits = (states @ weights).detach()
    old_log_probs = Categorical(logits=old_logits).log_prob(actions)

    def outputs_fn(w):
        return (states @ w,)

    def surrogate(outputs):
        ratio = torch.exp(Categorical(logits=outputs[0]).log_prob(actions) - old_log_probs)
        return -(ratio * advantages).mean()

    def mean_kl(outputs):
        return _categorical_kl(old_logits, outputs[0]).mean()

    return weights, outputs_fn, surrogate, mean_kl


def _step(weights, outputs_fn, surrogate, mean_kl, evaluate=None, max_kl=0.01):
    jacobian = functional_jacobian(outputs_fn, [weights])
    hvp = output_space_kl_hvp(jacobian, mean_kl)
    leaves = tuple(o.detach().requires_grad_(True) for o in jacobian.outputs)
    loss = surrogate(leaves)
    gradient = jacobian.vjp(torch.autograd.grad(loss, leaves))

    def default_evaluate():
        with torch.no_grad():
            out = outputs_fn(weights)
            return float(surrogate(out)), float(mean_kl(out))

    return trpo_step(
        [weights], float(loss.detach()), gradient, hvp, evaluate or default_evaluate, max_kl=max_kl
    )


def test_trpo_step_improves_surrogate_within_kl_bound():
    weights, outputs_fn, surrogate, mean_kl = _categorical_problem()
    before = weights.detach().clone()
    result = _step(weights, outputs_fn, surrogate, mean_kl, max_kl=0.01)
    assert result.accepted
    assert result.loss_after < result.loss_before
    with torch.no_grad():
        kl = float(mean_kl(outputs_fn(weights)))
    assert 0 < kl <= 0.01
    assert not torch.equal(before, weights.detach())
    # A trust region ten times larger allows a larger improvement.
    weights2, outputs_fn2, surrogate2, mean_kl2 = _categorical_problem()
    bigger = _step(weights2, outputs_fn2, surrogate2, mean_kl2, max_kl=0.1)
    assert bigger.loss_after < result.loss_after


def test_trpo_step_rejects_non_finite_losses_and_restores_parameters():
    weights, outputs_fn, surrogate, mean_kl = _categorical_problem()
    before = weights.detach().clone()
    result = _step(weights, outputs_fn, surrogate, mean_kl, evaluate=lambda: (math.nan, 0.0))
    assert not result.accepted
    assert torch.equal(weights.detach(), before)
    result = _step(weights, outputs_fn, surrogate, mean_kl, evaluate=lambda: (-1.0, 1.0))  # KL violated
    assert not result.accepted and result.loss_after == result.loss_before
    assert torch.equal(weights.detach(), before)


def test_trpo_step_raises_on_non_finite_starting_loss():
    weights = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(TrainingDiverged):
        trpo_step([weights], math.nan, torch.zeros(2), lambda v: v, lambda: (0.0, 0.0))


def test_output_space_hvp_equals_double_backward_through_an_inner_gradient_step():
    """J^T H J is the exact KL Hessian at the current point, also through a second-order adaptation."""
    gen = torch.Generator().manual_seed(1)
    inner_x = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    inner_y = torch.randn(16, 2, generator=gen, dtype=torch.float64)
    states = torch.randn(32, 3, generator=gen, dtype=torch.float64)
    weights = torch.nn.Parameter(0.5 * torch.randn(3, 2, generator=gen, dtype=torch.float64))

    def adapted(w):
        inner_grad = grad(lambda v: (torch.tanh(inner_x @ v) - inner_y).pow(2).mean())(w)
        return w - 0.3 * inner_grad

    def outputs_fn(w):
        return (torch.tanh(states @ adapted(w)),)

    with torch.no_grad():
        old_logits = outputs_fn(weights)[0]

    def mean_kl(outputs):
        return _categorical_kl(old_logits, outputs[0]).mean()

    fast = output_space_kl_hvp(functional_jacobian(outputs_fn, [weights]), mean_kl)
    kl = mean_kl(outputs_fn(weights))
    reference = kl_hessian_vector_product(kl, [weights])
    for seed in range(3):
        v = torch.randn(6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        torch.testing.assert_close(fast(v), reference(v), rtol=1e-9, atol=1e-12)
    assert fast(torch.ones(6, dtype=torch.float64)).abs().sum() > 0
