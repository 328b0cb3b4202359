"""MAML-TRPO's adaptation is differentiated to second order (finite differences), first order when asked."""

from __future__ import annotations

import pytest
import torch

from metarl.agents import MAMLTRPO, TrainConfig
from metarl.agents.adaptation_jacobian import Adaptation, OneStepAdaptation
from metarl.agents.config import InnerConfig, PolicyConfig
from metarl.agents.curvature import AutogradDerivatives, ClosedFormDerivatives
from metarl.agents.episodes import Episodes, masked_task_mean


def _problem(first_order: bool, objective: str = "log_likelihood", dice_lambda: float = 1.0):
    config = TrainConfig(
        env_kwargs={"horizon": 5},
        meta_batch_size=2,
        episodes_per_task=3,
        policy=PolicyConfig(hidden_sizes=[5]),
        inner=InnerConfig(lr=0.5, first_order=first_order, objective=objective, dice_lambda=dice_lambda),
    )
    agent = MAMLTRPO(config)
    agent.policy.double()
    gen = torch.Generator().manual_seed(0)

    def episodes():
        shape = (2, 3, 5)
        return Episodes(
            observations=torch.randn(*shape, 2, generator=gen, dtype=torch.float64),
            actions=torch.randn(*shape, 2, generator=gen, dtype=torch.float64),
            rewards=torch.randn(*shape, generator=gen, dtype=torch.float64),
            mask=torch.ones(shape, dtype=torch.float64),
        )

    pre, post = episodes(), episodes()
    pre_adv = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
    post_adv = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
    theta = {n: p.detach().clone().requires_grad_(True) for n, p in agent.policy.params().items()}
    reference = _stepped(Adaptation, agent, _autograd(agent), theta, agent.config.inner.lr, pre, pre_adv)

    def post_loss(theta):
        phi = reference.adapted_params(theta, agent.config.inner.lr)
        log_probs = agent.policy.distribution(post.observations, phi).log_prob(post.actions)
        return -masked_task_mean(log_probs * post_adv, post.mask).mean()

    return agent, theta, post_loss, reference, pre, pre_adv, post, post_adv


def _autograd(agent):
    return AutogradDerivatives(agent.policy, agent.config.inner.objective, agent.config.inner.dice_lambda)


def _stepped(kind, agent, derivatives, theta, lr, pre, pre_adv):
    """An adaptation of ``kind`` from ``theta`` after one inner step on ``pre``."""
    adaptation = kind(agent.policy, agent.config.inner, derivatives, theta, lr, pre.num_tasks)
    adaptation.step(pre, pre_adv)
    return adaptation


def _finite_difference(post_loss, theta, name, index, eps=1e-6):
    plus = {n: p.detach().clone() for n, p in theta.items()}
    minus = {n: p.detach().clone() for n, p in theta.items()}
    plus[name].view(-1)[index] += eps
    minus[name].view(-1)[index] -= eps
    return (post_loss(plus) - post_loss(minus)).item() / (2 * eps)


def test_second_order_meta_gradient_matches_finite_differences():
    agent, theta, post_loss, *_ = _problem(first_order=False)
    grads = dict(zip(theta, torch.autograd.grad(post_loss(theta), list(theta.values())), strict=True))
    for name in ("layers.0.weight", "layers.1.bias", "log_std"):
        for index in range(2):
            expected = _finite_difference(post_loss, theta, name, index)
            assert abs(grads[name].view(-1)[index].item() - expected) < 1e-6 * max(1.0, abs(expected)), name


def test_first_order_meta_gradient_is_the_post_update_gradient_at_phi():
    agent, theta, post_loss, reference, _, _, post, post_adv = _problem(first_order=True)
    first_order = torch.autograd.grad(post_loss(theta), list(theta.values()))
    phi = {n: p.clone().requires_grad_(True) for n, p in reference.params.items()}
    log_probs = agent.policy.distribution(post.observations, phi).log_prob(post.actions)
    loss = -masked_task_mean(log_probs * post_adv, post.mask).mean()
    at_phi = torch.autograd.grad(loss, list(phi.values()))
    for g, h in zip(first_order, at_phi, strict=True):
        torch.testing.assert_close(g, h.sum(0))  # summed over the per-task copies of theta
    # ... and it differs from the true (second-order) meta-gradient.
    _, theta2, post_loss2, *_ = _problem(first_order=False)
    second_order = torch.autograd.grad(post_loss2(theta2), list(theta2.values()))
    assert any(not torch.allclose(a, b) for a, b in zip(first_order, second_order, strict=True))


@pytest.mark.parametrize("derivatives", [ClosedFormDerivatives, AutogradDerivatives])
@pytest.mark.parametrize(
    ("first_order", "meta_sgd", "objective"),
    [
        (False, False, "log_likelihood"),
        (True, False, "log_likelihood"),
        (False, True, "log_likelihood"),
        (True, True, "log_likelihood"),
        (False, False, "likelihood_ratio"),
        (False, True, "likelihood_ratio"),
        (False, False, "dice"),
        (False, True, "dice"),
    ],
)
def test_one_step_adaptation_equals_the_general_functorch_path(first_order, meta_sgd, objective, derivatives):
    """The adapted parameters and the fast symmetric-Hessian products (closed-form or autograd derivatives) equal
    the reference adaptation and torch.func's JVP and VJP through it."""
    agent, theta, _, _, pre, pre_adv, post, _ = _problem(first_order=first_order, objective=objective)
    gen = torch.Generator().manual_seed(5)
    if meta_sgd:
        lr = {n: 0.1 + torch.rand(p.shape, generator=gen, dtype=torch.float64) for n, p in theta.items()}
    else:
        lr = agent.config.inner.lr
    general = _stepped(Adaptation, agent, _autograd(agent), theta, lr, pre, pre_adv)
    inner = agent.config.inner
    fast = _stepped(
        OneStepAdaptation,
        agent,
        derivatives(agent.policy, inner.objective, inner.dice_lambda),
        theta,
        lr,
        pre,
        pre_adv,
    )
    for name, adapted in general.params.items():
        torch.testing.assert_close(fast.params[name], adapted)
    general_products, fast_products = general.jacobian(post.observations), fast.jacobian(post.observations)
    for a, b in zip(fast_products.outputs, general_products.outputs, strict=True):
        torch.testing.assert_close(a, b)
    size = sum(p.numel() for p in theta.values()) * (2 if meta_sgd else 1)
    for _ in range(2):
        v = torch.randn(size, generator=gen, dtype=torch.float64)
        for a, b in zip(fast_products.jvp(v), general_products.jvp(v), strict=True):
            torch.testing.assert_close(a, b)
        cotangents = tuple(
            torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in general_products.outputs
        )
        torch.testing.assert_close(fast_products.vjp(cotangents), general_products.vjp(cotangents))


def _adapted_and_meta_gradient(objective: str, dice_lambda: float = 1.0):
    _, theta, post_loss, reference, *_ = _problem(False, objective, dice_lambda)
    return list(reference.params.values()), torch.autograd.grad(post_loss(theta), list(theta.values()))


@pytest.mark.parametrize(
    ("objective", "dice_lambda"), [("likelihood_ratio", 1.0), ("dice", 0.5), ("dice", 1.0)]
)
def test_other_inner_objectives_change_the_curvature_but_not_the_step(objective, dice_lambda):
    """ProMP's LVC and Loaded DiCE losses: the same adapted parameters, a different (second-order) meta-gradient."""
    reference_phi, reference_meta_gradient = _adapted_and_meta_gradient("log_likelihood")
    phi, meta_gradient = _adapted_and_meta_gradient(objective, dice_lambda)
    for a, b in zip(reference_phi, phi, strict=True):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(reference_meta_gradient, meta_gradient, strict=True))


def test_dice_with_no_dependency_discount_is_the_likelihood_ratio_loss_and_differs_otherwise():
    _, likelihood_ratio = _adapted_and_meta_gradient("likelihood_ratio")
    _, dice_zero = _adapted_and_meta_gradient("dice", 0.0)
    _, dice_half = _adapted_and_meta_gradient("dice", 0.5)
    for a, b in zip(likelihood_ratio, dice_zero, strict=True):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, c) for a, c in zip(likelihood_ratio, dice_half, strict=True))
