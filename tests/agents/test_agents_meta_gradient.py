"""MAML-TRPO's adaptation is differentiated to second order (finite differences), first order when asked."""

from __future__ import annotations

import pytest
import torch

from metarl.agents import MAMLTRPO, TrainConfig
from metarl.agents.adaptation_jacobian import OneStepAdaptation
from metarl.agents.config import InnerConfig, PolicyConfig
from metarl.agents.episodes import Episodes, masked_task_mean
from metarl.agents.trpo import functional_jacobian


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

    def post_loss(theta):
        phi = agent.adapt(theta, [pre], [pre_adv], agent.config.inner.lr)
        log_probs = agent.policy.distribution(post.observations, phi).log_prob(post.actions)
        return -masked_task_mean(log_probs * post_adv, post.mask).mean()

    theta = {n: p.detach().clone().requires_grad_(True) for n, p in agent.policy.params().items()}
    return agent, theta, post_loss, pre, pre_adv, post, post_adv


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
    agent, theta, post_loss, pre, pre_adv, post, post_adv = _problem(first_order=True)
    first_order = torch.autograd.grad(post_loss(theta), list(theta.values()))
    with torch.no_grad():
        phi = agent.adapt(theta, [pre], [pre_adv], agent.config.inner.lr)
    phi = {n: p.clone().requires_grad_(True) for n, p in phi.items()}
    log_probs = agent.policy.distribution(post.observations, phi).log_prob(post.actions)
    loss = -masked_task_mean(log_probs * post_adv, post.mask).mean()
    at_phi = torch.autograd.grad(loss, list(phi.values()))
    for g, h in zip(first_order, at_phi, strict=True):
        torch.testing.assert_close(g, h.sum(0))  # summed over the per-task copies of theta
    # ... and it differs from the true (second-order) meta-gradient.
    _, theta2, post_loss2, *_ = _problem(first_order=False)
    second_order = torch.autograd.grad(post_loss2(theta2), list(theta2.values()))
    assert any(not torch.allclose(a, b) for a, b in zip(first_order, second_order, strict=True))


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
def test_one_step_adaptation_equals_the_general_functorch_path(first_order, meta_sgd, objective):
    """The adapted parameters and the fast symmetric-Hessian products equal the agent's adaptation and
    torch.func's JVP and VJP through it."""
    agent, theta, _, pre, pre_adv, post, _ = _problem(first_order=first_order, objective=objective)
    names = list(theta)
    gen = torch.Generator().manual_seed(5)
    if meta_sgd:
        lr = {n: 0.1 + torch.rand(p.shape, generator=gen, dtype=torch.float64) for n, p in theta.items()}
    else:
        lr = agent.config.inner.lr
    params = list(theta.values()) + (list(lr.values()) if meta_sgd else [])

    def outputs_fn(*values):
        rates = dict(zip(names, values[len(names) :], strict=True)) if meta_sgd else lr
        phi = agent.adapt(dict(zip(names, values[: len(names)], strict=True)), [pre], [pre_adv], rates)
        return agent.policy.distribution_parameters(post.observations, phi)

    general = functional_jacobian(outputs_fn, params)
    dice_lambda = agent.config.inner.dice_lambda
    adaptation = OneStepAdaptation(agent.policy, theta, pre, pre_adv, lr, first_order, objective, dice_lambda)
    with torch.no_grad():
        for name, adapted in agent.adapt(theta, [pre], [pre_adv], lr).items():
            torch.testing.assert_close(adaptation.params[name], adapted)
    fast = adaptation.jacobian(post.observations)
    for a, b in zip(fast.outputs, general.outputs, strict=True):
        torch.testing.assert_close(a, b)
    size = sum(p.numel() for p in params)
    for _ in range(2):
        v = torch.randn(size, generator=gen, dtype=torch.float64)
        for a, b in zip(fast.jvp(v), general.jvp(v), strict=True):
            torch.testing.assert_close(a, b)
        cotangents = tuple(torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in general.outputs)
        torch.testing.assert_close(fast.vjp(cotangents), general.vjp(cotangents))


def _adapted_and_meta_gradient(objective: str, dice_lambda: float = 1.0):
    agent, theta, post_loss, pre, pre_adv, *_ = _problem(False, objective, dice_lambda)
    with torch.no_grad():
        phi = agent.adapt(theta, [pre], [pre_adv], agent.config.inner.lr)
    return list(phi.values()), torch.autograd.grad(post_loss(theta), list(theta.values()))


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
