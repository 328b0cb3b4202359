"""The Reptile meta-update: theta + eps * (mean(phi) - theta), also as a pseudo-gradient for torch optimizers."""

from __future__ import annotations

import pytest
import torch

from metarl.core import linear_anneal, reptile_direction, reptile_gradient, reptile_update


def _params(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(3, 2, generator=g), "b": torch.randn(3, generator=g)}


def test_update_equals_formula():
    theta = _params(0)
    phis = [_params(1), _params(2), _params(3)]
    updated = reptile_update(theta, phis, step_size=0.25)
    for name in theta:
        mean_phi = (phis[0][name] + phis[1][name] + phis[2][name]) / 3
        torch.testing.assert_close(updated[name], theta[name] + 0.25 * (mean_phi - theta[name]))


def test_update_leaves_inputs_untouched_and_is_detached():
    theta = {n: p.requires_grad_(True) for n, p in _params(0).items()}
    snapshot = {n: p.detach().clone() for n, p in theta.items()}
    phis = [_params(1)]
    updated = reptile_update(theta, phis, step_size=1.0)
    for name in theta:
        assert torch.equal(theta[name].detach(), snapshot[name])
        assert not updated[name].requires_grad
        torch.testing.assert_close(updated[name], phis[0][name])  # step size 1 jumps to phi


def test_gradient_points_away_from_adapted_params_and_sgd_reproduces_the_update():
    theta = _params(0)
    phis = [_params(1), _params(2)]
    grad = reptile_gradient(theta, phis)
    direction = reptile_direction(theta, phis)
    for name in theta:
        torch.testing.assert_close(grad[name], -direction[name])

    # an SGD step of size eps on the pseudo-gradient is exactly the Reptile update
    leaves = {n: p.clone().requires_grad_(True) for n, p in theta.items()}
    optimizer = torch.optim.SGD(leaves.values(), lr=0.1)
    for name, leaf in leaves.items():
        leaf.grad = grad[name].clone()
    optimizer.step()
    expected = reptile_update(theta, phis, step_size=0.1)
    for name in theta:
        torch.testing.assert_close(leaves[name].detach(), expected[name])


def test_bad_inputs_raise():
    theta = _params(0)
    with pytest.raises(ValueError, match="at least one"):
        reptile_update(theta, [], step_size=0.1)
    with pytest.raises(ValueError, match="adapted set 0"):
        reptile_gradient(theta, [{"w": theta["w"]}])


def test_linear_anneal_goes_from_start_to_final():
    assert linear_anneal(1.0, 0, 10) == 1.0
    assert linear_anneal(1.0, 5, 10) == pytest.approx(0.5)
    assert linear_anneal(1.0, 10, 10, final=0.1) == pytest.approx(0.1)
    assert linear_anneal(1.0, 20, 10) == 0.0  # clamped past the end
