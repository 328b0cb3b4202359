"""``adapt``: the meta-gradient is checked against central finite differences on a tiny float64 MLP, so a
silently first-order "second-order" MAML, or Meta-SGD rates that get no gradient, cannot pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metarl.core import LearnedLearningRates, adapt, functional_forward, gradient_step, named_params

EPS = 1e-6
INNER_LR = 0.3


def _tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()


def _data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 2, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(-1, keepdim=True))
    return x, y


def _loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    def loss(params):
        return ((functional_forward(model, params, x) - y) ** 2).mean()

    return loss


def _meta_objective(model, params, lr, steps, first_order=False):
    """Outer loss on query data after ``steps`` inner steps on support data."""
    inner = _loss_fn(model, *_data(1))
    outer = _loss_fn(model, *_data(2))
    phi = adapt(params, inner, steps=steps, lr=lr, first_order=first_order)
    return outer(phi)


def _finite_difference(fn, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Central differences of ``fn(tensors)`` with respect to every entry of every tensor."""
    grads = {}
    for name, value in tensors.items():
        grad = torch.zeros_like(value)
        for idx in range(value.numel()):
            plus = {n: t.detach().clone().requires_grad_(True) for n, t in tensors.items()}
            minus = {n: t.detach().clone().requires_grad_(True) for n, t in tensors.items()}
            with torch.no_grad():
                plus[name].view(-1)[idx] += EPS
                minus[name].view(-1)[idx] -= EPS
            grad.view(-1)[idx] = (fn(plus).item() - fn(minus).item()) / (2 * EPS)
        grads[name] = grad
    return grads


def _autograd(fn, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    leaves = {n: t.detach().clone().requires_grad_(True) for n, t in tensors.items()}
    grads = torch.autograd.grad(fn(leaves), list(leaves.values()))
    return dict(zip(leaves, grads, strict=True))


def _assert_close(actual: dict, expected: dict) -> None:
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-8, msg=name)


@pytest.mark.parametrize("steps", [1, 2])
def test_second_order_meta_gradient_matches_finite_differences(steps):
    model = _tiny_mlp()
    params = named_params(model)

    def objective(p):
        return _meta_objective(model, p, INNER_LR, steps)

    _assert_close(_autograd(objective, params), _finite_difference(objective, params))


@pytest.mark.parametrize("steps", [1, 2])
def test_first_order_meta_gradient_is_outer_gradient_at_adapted_params(steps):
    model = _tiny_mlp()
    params = named_params(model)
    first_order = _autograd(lambda p: _meta_objective(model, p, INNER_LR, steps, first_order=True), params)

    # FOMAML: the gradient of the outer loss taken at phi, as if phi were the meta-parameters.
    phi = adapt(params, _loss_fn(model, *_data(1)), steps=steps, lr=INNER_LR)
    phi_leaves = {n: p.detach().clone().requires_grad_(True) for n, p in phi.items()}
    expected = dict(
        zip(
            phi_leaves,
            torch.autograd.grad(_loss_fn(model, *_data(2))(phi_leaves), list(phi_leaves.values())),
            strict=True,
        )
    )
    _assert_close(first_order, expected)

    second_order = _autograd(lambda p: _meta_objective(model, p, INNER_LR, steps), params)
    difference = sum((first_order[n] - second_order[n]).abs().sum() for n in params)
    scale = sum(second_order[n].abs().sum() for n in params)
    assert difference > 1e-3 * scale, "first- and second-order meta-gradients should differ on this model"


def test_zero_steps_returns_the_meta_parameters():
    model = _tiny_mlp()
    params = named_params(model)
    phi = adapt(params, _loss_fn(model, *_data(1)), steps=0)
    assert all(phi[n] is params[n] for n in params)


def test_adapt_does_not_mutate_the_module():
    model = _tiny_mlp()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    phi = adapt(named_params(model), _loss_fn(model, *_data(1)), steps=2, lr=INNER_LR)
    for name, value in model.named_parameters():
        assert torch.equal(value.detach(), before[name])
        assert not torch.equal(phi[name].detach(), before[name])


def test_one_step_equals_explicit_gradient_descent():
    model = _tiny_mlp()
    params = named_params(model)
    loss = _loss_fn(model, *_data(1))
    grads = torch.autograd.grad(loss(params), list(params.values()))
    phi = adapt(params, loss, steps=1, lr=INNER_LR)
    for (name, p), g in zip(params.items(), grads, strict=True):
        torch.testing.assert_close(phi[name], p - INNER_LR * g)


def test_meta_sgd_rates_get_gradients_equal_to_finite_differences():
    model = _tiny_mlp()
    params = named_params(model)
    rates = LearnedLearningRates(params, init=0.2)
    with torch.no_grad():  # distinct rates per entry so a wrong broadcast cannot pass
        for i, rate in enumerate(rates.rates):
            rate.add_(0.01 * torch.arange(rate.numel(), dtype=rate.dtype).view_as(rate) + 0.02 * i)
    names = list(params)

    def objective(rate_tensors):
        lr = {n: rate_tensors[f"lr.{n}"] for n in names}
        return _meta_objective(model, params, lr, steps=2)

    rate_tensors = {f"lr.{n}": r for n, r in rates.as_dict().items()}
    analytic = _autograd(objective, rate_tensors)
    assert all(g.abs().sum() > 0 for g in analytic.values())
    _assert_close(analytic, _finite_difference(objective, rate_tensors))

    # and through backward() on the module, as a training loop would do it
    _meta_objective(model, params, rates.as_dict(), steps=2).backward()
    for name, rate in rates.as_dict().items():
        torch.testing.assert_close(rate.grad, analytic[f"lr.{name}"])


def test_learned_rates_cover_every_parameter():
    model = _tiny_mlp()
    params = named_params(model)
    rates = LearnedLearningRates(params, init=0.05).as_dict()
    assert list(rates) == list(params)
    assert all(
        r.shape == p.shape and torch.all(r == 0.05)
        for r, p in zip(rates.values(), params.values(), strict=True)
    )


def test_bad_inputs_raise_clear_errors():
    model = _tiny_mlp()
    params = named_params(model)
    loss = _loss_fn(model, *_data(1))
    with pytest.raises(ValueError, match="steps must be >= 0"):
        adapt(params, loss, steps=-1)
    partial_rates = dict(list(LearnedLearningRates(params).as_dict().items())[:1])
    with pytest.raises(ValueError, match="missing for parameters"):
        adapt(params, loss, lr=partial_rates)
    x, _ = _data(1)
    with pytest.raises(ValueError, match="must be a scalar"):
        gradient_step(params, functional_forward(model, params, x), 0.1)
