"""2x2 max-pooling through channels-last equals F.max_pool2d to second order."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metarl.supervised.max_pool import max_pool_2x2


def derivatives(pool, x):
    """Values, a gradient, and a second derivative that goes through the pooling's backward (a gather)."""
    y = pool(x)
    mix = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    (grad,) = torch.autograd.grad(((y * x.sum()).sin() * mix).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad((grad * grad.detach()).sum() + (grad * x).sum(), x)
    return y, grad, second


@pytest.mark.parametrize("shape", [(2, 3, 6, 6), (2, 3, 7, 5), (4, 5, 2, 3), (1, 130, 9, 4)])
def test_equals_max_pool2d_to_second_order(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = derivatives(max_pool_2x2, x.clone().requires_grad_())
    reference = derivatives(lambda t: F.max_pool2d(t, 2), x.clone().requires_grad_())
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert ours[0].is_contiguous()


def test_ties_pick_the_same_entry_as_max_pool2d():
    x = torch.zeros(1, 2, 4, 4, requires_grad=True)
    (ours,) = torch.autograd.grad(max_pool_2x2(x).sum(), x)
    (reference,) = torch.autograd.grad(F.max_pool2d(x, 2).sum(), x)
    torch.testing.assert_close(ours, reference)


def test_rejects_other_shapes():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        max_pool_2x2(torch.zeros(3, 4, 4))
