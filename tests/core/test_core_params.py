"""Per-task stacking and the one inner update rule ``theta - lr * g`` that every inner loop calls."""

from __future__ import annotations

import pytest
import torch

from metarl.core import sgd_step, stack_over_tasks


def _params() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "weight": torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True),
        "bias": torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True),
    }


@pytest.mark.parametrize("copy", [True, False])
def test_stacked_tasks_get_their_own_gradient_summed_into_the_shared_parameters(copy):
    params = _params()
    stacked = stack_over_tasks(params, 4, copy=copy)
    assert {n: p.shape for n, p in stacked.items()} == {"weight": (4, 3, 2), "bias": (4, 3)}
    for name, p in stacked.items():
        assert torch.equal(p, params[name].expand_as(p))
    x = torch.arange(8, dtype=torch.float64).reshape(4, 2)
    per_task = torch.einsum("toi,ti->to", stacked["weight"], x) + stacked["bias"]
    task_grads = torch.autograd.grad(per_task.sum(), list(stacked.values()), retain_graph=True)
    torch.testing.assert_close(task_grads[0], x.unsqueeze(1).expand(4, 3, 2))  # task t's own input only
    shared = torch.autograd.grad(per_task.sum(), list(params.values()))
    torch.testing.assert_close(shared[0], x.sum(0).expand(3, 2))


def test_a_copy_owns_its_memory_and_a_view_shares_it():
    params = {n: p.detach() for n, p in _params().items()}
    copied = stack_over_tasks(params, 2, copy=True)["weight"]
    viewed = stack_over_tasks(params, 2, copy=False)["weight"]
    assert copied.is_contiguous() and copied.data_ptr() != params["weight"].data_ptr()
    assert viewed.stride(0) == 0 and viewed.data_ptr() == params["weight"].data_ptr()


def test_sgd_step_with_a_scalar_or_per_parameter_rates_keeps_parameters_without_a_gradient():
    params = {n: p.detach() for n, p in _params().items()}
    grads = {"weight": torch.ones(3, 2, dtype=torch.float64)}
    scalar = sgd_step(params, grads, 0.5)
    torch.testing.assert_close(scalar["weight"], params["weight"] - 0.5)
    assert scalar["bias"] is params["bias"]
    rates = {"weight": torch.full((3, 2), 0.25, dtype=torch.float64), "bias": torch.zeros(3)}
    torch.testing.assert_close(sgd_step(params, grads, rates)["weight"], params["weight"] - 0.25)
    assert torch.equal(params["weight"], _params()["weight"].detach())  # the inputs are left as they were
