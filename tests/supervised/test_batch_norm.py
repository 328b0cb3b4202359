"""The batch norm with a closed-form second derivative equals PyTorch's batch norm to second order."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metarl.supervised.batch_norm import batch_norm_batch_stats


def inputs(shape=(5, 3, 4, 4), seed=0):
    gen = torch.Generator().manual_seed(seed)
    channels = shape[1]
    return [
        torch.randn(*s, generator=gen, dtype=torch.float64).requires_grad_()
        for s in (shape, (channels,), (channels,))
    ]


def torch_batch_norm(x, weight, bias):
    return F.batch_norm(x, None, None, weight, bias, training=True)


def second_derivatives(batch_norm, x, weight, bias):
    """Gradients of a nonlinear function of the first derivatives: exercises every double-backward term."""
    y = batch_norm(x, weight, bias)
    mix = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    grads = torch.autograd.grad((y.sin() * mix).sum(), (x, weight, bias), create_graph=True)
    outer = grads[0].pow(2).sum() + (grads[1] * 3).sum() + grads[2].pow(3).sum()
    return torch.autograd.grad(outer, (x, weight, bias))


@pytest.mark.parametrize("shape", [(5, 3, 4, 4), (7, 2), (2, 4, 3, 3, 2)])
def test_values_and_derivatives_equal_pytorch_batch_norm(shape):
    x, weight, bias = inputs(shape)
    torch.testing.assert_close(batch_norm_batch_stats(x, weight, bias), torch_batch_norm(x, weight, bias))
    ours = second_derivatives(batch_norm_batch_stats, x, weight, bias)
    reference = second_derivatives(torch_batch_norm, x, weight, bias)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b)


def test_gradcheck_and_gradgradcheck():
    x, weight, bias = inputs((4, 2, 3, 3), seed=1)
    assert torch.autograd.gradcheck(batch_norm_batch_stats, (x, weight, bias))
    assert torch.autograd.gradgradcheck(batch_norm_batch_stats, (x, weight, bias))


def test_second_derivative_with_only_some_first_derivatives_used():
    """Upstream gradients of the unused first derivatives arrive as None and count as zeros."""
    x, weight, bias = inputs(seed=2)
    for batch_norm in (batch_norm_batch_stats, torch_batch_norm):
        y = batch_norm(x, weight, bias)
        (grad_x,) = torch.autograd.grad((y * y.detach().cos()).sum(), (x,), create_graph=True)
        result = torch.autograd.grad(grad_x.pow(2).sum(), (x, weight))
        if batch_norm is batch_norm_batch_stats:
            ours = result
        else:
            reference = result
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b)


def test_third_derivative_raises():
    x, weight, bias = inputs(seed=3)
    y = batch_norm_batch_stats(x, weight, bias)
    (grad_x,) = torch.autograd.grad(y.pow(3).sum(), (x,), create_graph=True)
    with pytest.raises(RuntimeError, match="second order only"):
        torch.autograd.grad(grad_x.pow(2).sum(), (x,), create_graph=True)


def test_bad_shapes_get_a_clear_error():
    x, weight, bias = inputs()
    with pytest.raises(ValueError, match=r"weight and bias of shape \(C,\)"):
        batch_norm_batch_stats(x, weight[:2], bias)
