"""MAML-TRPO's adaptation is differentiated to second order (finite differences), first order when asked."""

from __future__ import annotations

import pytest
import torch

from metarl.agents import MAMLTRPO, TrainConfig
from metarl.agents.adaptation_jacobian import OneStepAdaptation
from metarl.agents.config import InnerConfig, PolicyConfig
from metarl.agents.episodes import Episodes, masked_task_mean
from metarl.agents.trpo import functional_jacobian


def _problem(first_order: bool, objective: str = "log_likelihood"):
    config = TrainConfig(
        env_kwargs={"horizon": 5},
        meta_batch_size=2,
        episodes_per_task=3,
        policy=PolicyConfig(hidden_sizes=[5]),
        inner=InnerConfig(lr=0.5, first_order=first_order, objective=objective),
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
    adaptation = OneStepAdaptation(agent.policy, theta, pre, pre_adv, lr, first_order, objective)
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


def test_likelihood_ratio_objective_changes_the_curvature_but_not_the_step():
    """ProMP's LVC loss: the same adapted parameters, a different (second-order) meta-gradient."""
    results = {}
    for objective in ("log_likelihood", "likelihood_ratio"):
        agent, theta, post_loss, pre, pre_adv, *_ = _problem(first_order=False, objective=objective)
        with torch.no_grad():
            phi = agent.adapt(theta, [pre], [pre_adv], agent.config.inner.lr)
        meta_gradient = torch.autograd.grad(post_loss(theta), list(theta.values()))
        results[objective] = phi, meta_gradient
    for a, b in zip(
        results["log_likelihood"][0].values(), results["likelihood_ratio"][0].values(), strict=True
    ):
        torch.testing.assert_close(a, b)
    pairs = zip(results["log_likelihood"][1], results["likelihood_ratio"][1], strict=True)
    assert any(not torch.allclose(a, b) for a, b in pairs)
