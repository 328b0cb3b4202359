"""The closed-form derivative products of Gaussian MLP policies equal autograd's, to float64 precision."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, jvp

from metarl.agents.curvature import AutogradDerivatives, ClosedFormDerivatives
from metarl.agents.episodes import Episodes, masked_task_mean
from metarl.agents.gaussian_mlp_products import (
    LOW_DIMENSIONAL_INPUT,
    GaussianMLPLinearization,
    GaussianVPGDerivatives,
)
from metarl.agents.inner import inner_losses, log_probs
from metarl.agents.policies import CategoricalMLPPolicy, GaussianMLPPolicy, MLPPolicy
from metarl.agents.trpo import mean_kl_curvature


def _problem(activation, hidden_sizes, seed=0, min_std=1e-6, obs_dim=3):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    policy = GaussianMLPPolicy(obs_dim, 2, hidden_sizes, activation, init_std=0.7, min_std=min_std).double()
    tasks, shape = 3, (3, 4, 5)

    def randn(*size):
        return torch.randn(*size, generator=gen, dtype=torch.float64)

    params = {
        n: p.detach().unsqueeze(0).expand(tasks, *p.shape) + 0.1 * randn(tasks, *p.shape)
        for n, p in policy.named_parameters()
    }
    episodes = Episodes(
        observations=randn(*shape, obs_dim),
        actions=randn(*shape, 2),
        rewards=torch.zeros(shape, dtype=torch.float64),
        mask=(torch.rand(shape, generator=gen) > 0.3).double(),  # padded steps must not count
    )
    directions = {n: randn(*p.shape) for n, p in params.items()}
    return policy, params, episodes, randn(*shape), directions


CASES = [("tanh", (5,)), ("tanh", (7, 6)), ("tanh", (4, 4, 4)), ("relu", (7, 6)), ("relu", (5,))]
# A std floor of 0.7 binds for the tasks whose perturbed log-std fell below log(0.7).
FLOORS = [(*case, 1e-6) for case in CASES] + [("tanh", (7, 6), 0.7)]


@pytest.mark.parametrize("obs_dim", [3, LOW_DIMENSIONAL_INPUT + 2])
@pytest.mark.parametrize(
    ("objective", "dice_lambda"),
    [("log_likelihood", 1.0), ("likelihood_ratio", 1.0), ("dice", 0.5), ("dice", 1.0)],
)
@pytest.mark.parametrize(("activation", "hidden_sizes", "min_std"), FLOORS)
def test_vpg_gradient_and_hessian_products_equal_autograd(
    activation, hidden_sizes, min_std, objective, dice_lambda, obs_dim
):
    policy, params, episodes, advantages, v = _problem(
        activation, hidden_sizes, min_std=min_std, obs_dim=obs_dim
    )
    if min_std > 1e-6:
        assert 0 < int((params["log_std"] < policy.min_log_std).sum()) < params["log_std"].numel()
    names = list(params)
    leaves = [params[n].clone().requires_grad_(True) for n in names]
    loss = inner_losses(
        policy, dict(zip(names, leaves, strict=True)), episodes, advantages, objective, dice_lambda
    ).sum()
    grads = torch.autograd.grad(loss, leaves, create_graph=True)
    hessian_v = torch.autograd.grad(grads, leaves, [v[n] for n in names])

    closed = GaussianVPGDerivatives(
        policy, params, episodes, advantages, objective=objective, dice_lambda=dice_lambda
    )
    # Few observation dimensions: the second layer's product takes the factored form (both forms tested).
    factored = obs_dim + 1 <= LOW_DIMENSIONAL_INPUT and len(hidden_sizes) > 1
    assert (closed.factored_first_layer is not None) == factored
    products = closed.hvp(v)
    for n, g, h in zip(names, grads, hessian_v, strict=True):
        torch.testing.assert_close(closed.gradient[n], g.detach(), msg=n)
        torch.testing.assert_close(products[n], h, msg=n)
    gradient_only = GaussianVPGDerivatives(policy, params, episodes, advantages, second_order=False)
    torch.testing.assert_close(gradient_only.gradient, closed.gradient)
    with pytest.raises(RuntimeError, match="second_order=False"):
        gradient_only.hvp(v)


def test_dice_hessian_adds_the_discounted_score_outer_products():
    """Loaded DiCE's Hessian minus the VPG loss's is ``-sum_t w_t (s_t s_t^T + lambda^(t-s) (s_t s_s^T + s_s s_t^T))``
    over each episode's earlier steps ``s < t`` (``w_t`` the loss weights, ``s_t`` per-sample scores)."""
    policy, params, episodes, advantages, v = _problem("tanh", (4,))
    names, dice_lambda = list(params), 0.6
    leaves = [params[n].clone().requires_grad_(True) for n in names]
    leaf_params = dict(zip(names, leaves, strict=True))

    def hessian_v(objective):
        loss = inner_losses(policy, leaf_params, episodes, advantages, objective, dice_lambda).sum()
        grads = torch.autograd.grad(loss, leaves, create_graph=True)
        return torch.cat([h.flatten(1) for h in torch.autograd.grad(grads, leaves, [v[n] for n in names])], 1)

    extra = hessian_v("dice") - hessian_v("log_likelihood")
    log_prob = log_probs(policy, leaf_params, episodes) * episodes.mask
    _, num_episodes, horizon = log_prob.shape
    weights = episodes.mask * advantages / episodes.mask.sum((1, 2)).reshape(-1, 1, 1)
    direction = torch.cat([v[n].flatten(1) for n in names], 1)
    expected = torch.zeros_like(extra)
    for e in range(num_episodes):
        scores = [
            torch.cat(
                [
                    g.flatten(1)
                    for g in torch.autograd.grad(log_prob[:, e, t].sum(), leaves, retain_graph=True)
                ],
                1,
            )
            for t in range(horizon)
        ]
        for t in range(horizon):
            earlier = sum((dice_lambda ** (t - s) * scores[s] for s in range(t)), torch.zeros_like(scores[t]))
            s_t = scores[t]
            product = s_t * ((s_t + earlier) * direction).sum(1, keepdim=True) + earlier * (
                s_t * direction
            ).sum(1, keepdim=True)
            expected -= weights[:, e, t : t + 1] * product
    torch.testing.assert_close(extra, expected)


@pytest.mark.parametrize(("activation", "hidden_sizes", "min_std"), FLOORS)
def test_linearization_outputs_jvp_and_vjp_equal_autograd(activation, hidden_sizes, min_std):
    policy, params, episodes, _, v = _problem(activation, hidden_sizes, seed=1, min_std=min_std)
    if min_std > 1e-6:
        assert 0 < int((params["log_std"] < policy.min_log_std).sum()) < params["log_std"].numel()
    names = list(params)

    def outputs_fn(*values):
        return policy.distribution_parameters(episodes.observations, dict(zip(names, values, strict=True)))

    lin = GaussianMLPLinearization(policy, params, episodes.observations)
    primals = tuple(params[n] for n in names)
    outputs, tangents = jvp(outputs_fn, primals, tuple(v[n] for n in names))
    for mine, ref in zip(lin.outputs(), outputs, strict=True):
        torch.testing.assert_close(mine, ref)
    for mine, ref in zip(lin.jvp(v), tangents, strict=True):
        torch.testing.assert_close(mine, ref)
    leaves = [p.clone().requires_grad_(True) for p in primals]
    cotangents = tuple(torch.randn_like(o) for o in outputs)
    reference = torch.autograd.grad(outputs_fn(*leaves), leaves, cotangents)
    mine = lin.vjp(*cotangents)
    for n, ref in zip(names, reference, strict=True):
        torch.testing.assert_close(mine[n], ref, msg=n)


def test_closed_form_needs_a_supported_policy():
    with pytest.raises(ValueError, match="tanh or relu"):
        GaussianMLPLinearization(CategoricalMLPPolicy(3, 4, (5,)), {}, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="inner.curvature=auto or autograd"):
        ClosedFormDerivatives(CategoricalMLPPolicy(3, 4, (5,)))


@pytest.mark.parametrize("policy", [GaussianMLPPolicy(3, 2, (5,)), CategoricalMLPPolicy(3, 4, (5,))])
def test_kl_hessian_product_equals_the_differentiated_kl(policy):
    policy = policy.double()
    gen = torch.Generator().manual_seed(2)
    obs = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    params = {
        n: p.detach() + 0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64)
        for n, p in policy.named_parameters()
    }
    old = policy.distribution_parameters(obs, params)
    old = tuple(o.detach().clone() for o in old)  # log_std is expanded: own the memory
    tangents = tuple(torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in old)
    reference = jvp(grad(lambda new: policy.kl(old, new).sum()), (old,), (tangents,))[1]
    for mine, ref in zip(policy.kl_hessian_product(old, tangents), reference, strict=True):
        torch.testing.assert_close(mine, ref)


def test_mean_kl_curvature_is_the_hessian_of_the_masked_mean_kl():
    policy, params, episodes, _, _ = _problem("tanh", (5,), seed=3)
    old = tuple(o.detach().clone() for o in policy.distribution_parameters(episodes.observations, params))

    def mean_kl(new):
        return masked_task_mean(policy.kl(old, new), episodes.mask).mean()

    tangents = tuple(torch.randn_like(o) for o in old)
    reference = jvp(grad(mean_kl), (old,), (tangents,))[1]
    mine = mean_kl_curvature(policy, old, episodes.mask)(tangents)
    for a, b in zip(mine, reference, strict=True):
        torch.testing.assert_close(a, b)


def test_policy_jacobian_equals_the_functorch_jacobian():
    policy, _, episodes, _, _ = _problem("tanh", (7, 6), seed=4)
    theta = {n: p.detach() for n, p in policy.named_parameters()}
    general = AutogradDerivatives(policy).policy_jacobian(theta, episodes.observations)
    fast = ClosedFormDerivatives(policy).policy_jacobian(theta, episodes.observations)
    for a, b in zip(fast.outputs, general.outputs, strict=True):
        torch.testing.assert_close(a, b)
    v = torch.randn(sum(p.numel() for p in theta.values()), dtype=torch.float64)
    for a, b in zip(fast.jvp(v), general.jvp(v), strict=True):
        torch.testing.assert_close(a, b)
    cotangents = tuple(torch.randn_like(o) for o in general.outputs)
    torch.testing.assert_close(fast.vjp(cotangents), general.vjp(cotangents))


def test_default_kl_hessian_product_differentiates_the_kl():
    policy = GaussianMLPPolicy(3, 2, (5,)).double()
    gen = torch.Generator().manual_seed(6)
    old = (
        torch.randn(4, 2, generator=gen, dtype=torch.float64),
        torch.randn(4, 2, generator=gen, dtype=torch.float64),
    )
    tangents = tuple(torch.randn(4, 2, generator=gen, dtype=torch.float64) for _ in range(2))
    generic = MLPPolicy.kl_hessian_product(policy, old, tangents)
    for a, b in zip(generic, policy.kl_hessian_product(old, tangents), strict=True):
        torch.testing.assert_close(a, b)
