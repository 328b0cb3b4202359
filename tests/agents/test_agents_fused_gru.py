"""The compiled GRU recurrence (metarl.agents.fused_gru) against torch.nn.GRU, the independent reference: the
same states and the same gradients with respect to every input and parameter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metarl.agents.fused_gru import stacked_gru


def reference(x: torch.Tensor, grus: list[nn.GRU], state: torch.Tensor | None) -> torch.Tensor:
    """``(G, B, L, H)`` from torch.nn.GRU, one GRU at a time."""
    return torch.stack([gru(x, None if state is None else state[i : i + 1])[0] for i, gru in enumerate(grus)])


def gradients(outputs: torch.Tensor, weights: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad((outputs * weights).sum(), inputs))


@pytest.mark.parametrize(
    "num_grus, batch, length, features, hidden, with_state",
    [(2, 3, 7, 5, 4, True), (1, 1, 1, 2, 3, False), (2, 20, 40, 6, 64, False), (3, 4, 9, 1, 8, True)],
)
def test_states_and_gradients_equal_torch_gru(num_grus, batch, length, features, hidden, with_state):
    torch.manual_seed(0)
    grus = [nn.GRU(features, hidden, batch_first=True) for _ in range(num_grus)]
    x = torch.randn(batch, length, features, requires_grad=True)
    state = torch.randn(num_grus, batch, hidden, requires_grad=True) if with_state else None
    weights = torch.randn(num_grus, batch, length, hidden)
    inputs = [x] + ([state] if with_state else []) + [p for gru in grus for p in gru.parameters()]

    expected = reference(x, grus, state)
    actual = stacked_gru(x, grus, state)

    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=2e-6)
    for got, want in zip(
        gradients(actual, weights, inputs), gradients(expected, weights, inputs), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_a_gradient_that_flows_through_the_final_state_only():
    torch.manual_seed(1)
    grus = [nn.GRU(3, 5, batch_first=True)]
    x = torch.randn(2, 6, 3)
    parameters = list(grus[0].parameters())
    got = torch.autograd.grad(stacked_gru(x, grus)[:, :, -1].square().sum(), parameters)
    want = torch.autograd.grad(reference(x, grus, None)[:, :, -1].square().sum(), parameters)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_without_gradients_the_states_are_the_same():
    torch.manual_seed(2)
    grus = [nn.GRU(4, 8, batch_first=True) for _ in range(2)]
    x, state = torch.randn(5, 3, 4), torch.randn(2, 5, 8)
    with torch.no_grad():
        sampled = stacked_gru(x, grus, state)
    assert not sampled.requires_grad
    torch.testing.assert_close(sampled, stacked_gru(x, grus, state).detach(), rtol=0, atol=0)


def test_step_by_step_equals_whole_sequence():
    """Sampling runs one step at a time from the carried state; learning reruns the whole sequence."""
    torch.manual_seed(3)
    grus = [nn.GRU(2, 6, batch_first=True) for _ in range(2)]
    x = torch.randn(4, 5, 2)
    state = torch.zeros(2, 4, 6)
    steps = []
    with torch.no_grad():
        for t in range(5):
            out = stacked_gru(x[:, t : t + 1], grus, state)
            state = out[:, :, -1]
            steps.append(state)
        whole = stacked_gru(x, grus)
    torch.testing.assert_close(torch.stack(steps, dim=2), whole, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "gru",
    [nn.GRU(2, 3, num_layers=2, batch_first=True), nn.GRU(2, 3), nn.GRU(2, 3, batch_first=True, bias=False)],
)
def test_refuses_gru_it_does_not_run(gru):
    with pytest.raises(ValueError, match="single-layer, unidirectional, batch-first GRUs with biases"):
        stacked_gru(torch.zeros(1, 2, 2), [gru])
