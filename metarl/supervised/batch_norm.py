"""Batch norm with batch statistics whose second derivative is cheap: the double backward MAML needs.

Second-order MAML differentiates the inner gradient, so every batch-norm layer of the support pass is
differentiated twice. PyTorch's generic double backward for batch norm (``batchnorm_double_backward``) builds
some twenty full-size temporaries. The formulas below are evaluated with two calls of PyTorch's fused first
backward (``native_batch_norm_backward`` gives ``scale * r * P(v)``, ``sum(v * x_hat)`` and ``sum(v)`` in one
pass), one more per-channel reduction and two fused multiply-adds per output (``BENCHMARKS.md``).

With ``x_hat = (x - mean) * r`` (``r`` the inverse standard deviation, ``M`` elements per channel),
``P(v) = v - mean(v) - x_hat * mean(v * x_hat)`` and the first backward ``dx = gamma * r * P(g)``,
``dgamma = sum(g * x_hat)``, ``dbeta = sum(g)``, the gradients of ``<u, dx> + u_gamma * dgamma + u_beta * dbeta``
are (all sums per channel)::

    d/dg     = gamma * r * P(u) + u_gamma * x_hat + u_beta
    d/dgamma = r * <u, P(g)>
    d/dx     = -gamma r^2 <u, P(g)> / M * x_hat - gamma r^2 mean(g x_hat) P(u) + (u_gamma - gamma r mean(u x_hat)) r P(g)

(``P`` is self-adjoint; ``d r = -r^2 mean(x_hat dx)`` and ``d x_hat = r P(dx)``.) Tested against autograd's own
second derivatives in float64 (``tests/supervised/test_batch_norm.py``).
"""

from __future__ import annotations

import torch


def _per_channel(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``(C,)`` tensor shaped to broadcast over ``(N, C, *spatial)``."""
    return values.view(1, -1, *([1] * (like.dim() - 2)))


def _channel_sums(values: torch.Tensor) -> torch.Tensor:
    """Sum over every dimension but the channel one (dim 1)."""
    return values.sum([d for d in range(values.dim()) if d != 1])


class _BatchNormBackward(torch.autograd.Function):
    """The first backward of batch norm, ``(g, x, gamma) -> (dx, dgamma, dbeta)``, with the closed-form double backward."""

    @staticmethod
    def forward(ctx, grad_out, x, weight, mean, invstd, eps):  # noqa: D102
        grads = torch.ops.aten.native_batch_norm_backward(
            grad_out, x, weight, None, None, mean, invstd, True, eps, [True, True, True]
        )
        ctx.save_for_backward(grad_out, x, weight, mean, invstd)
        ctx.eps = eps
        return grads

    @staticmethod
    def backward(ctx, u, u_weight, u_bias):  # noqa: D102
        g, x, weight, mean, invstd = ctx.saved_tensors
        if torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (u, u_weight, u_bias, g, x, weight)
        ):
            raise RuntimeError(
                "batch_norm_batch_stats has derivatives up to second order only; differentiating its second "
                "derivative (create_graph=True on a gradient of a gradient) needs torch.nn.functional.batch_norm"
            )
        u = torch.zeros_like(x) if u is None else u
        u_weight = torch.zeros_like(weight) if u_weight is None else u_weight
        u_bias = torch.zeros_like(weight) if u_bias is None else u_bias
        count = x.numel() // x.shape[1]

        def project(v, scale):  # (scale * r * P(v), sum(v * x_hat), sum(v)): PyTorch's fused first backward
            return torch.ops.aten.native_batch_norm_backward(
                v, x, scale, None, None, mean, invstd, True, ctx.eps, [True, True, True]
            )

        gamma_r_pu, sum_u_xhat, _ = project(u, weight)
        r_pg, sum_g_xhat, _ = project(g, None)
        grad_weight = _channel_sums(u * r_pg)  # r <u, P(g)>
        r, gamma_r = invstd, weight * invstd
        # d/dx = -r mean(g x_hat) [gamma r P(u)] + (u_gamma - gamma r mean(u x_hat)) [r P(g)]
        #        - gamma r grad_weight / M * x_hat,   with x_hat = (x - mean) * r
        coef_x = -gamma_r * r * grad_weight / count
        grad_x = torch.addcmul(
            _per_channel(-coef_x * mean, x), gamma_r_pu, _per_channel(-r * sum_g_xhat / count, x)
        )
        grad_x.addcmul_(r_pg, _per_channel(u_weight - gamma_r * sum_u_xhat / count, x))
        grad_x.addcmul_(x, _per_channel(coef_x, x))
        # d/dg = gamma r P(u) + u_gamma * x_hat + u_beta
        grad_g = torch.addcmul(
            _per_channel(u_bias - u_weight * r * mean, x), x, _per_channel(u_weight * r, x)
        )
        grad_g += gamma_r_pu
        return grad_g, grad_x, grad_weight, None, None, None


class _BatchNorm(torch.autograd.Function):
    """Batch norm with batch statistics and no running statistics; its backward is :class:`_BatchNormBackward`."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):  # noqa: D102
        out, mean, invstd = torch.native_batch_norm(x, weight, bias, None, None, True, 0.0, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        x, weight, mean, invstd = ctx.saved_tensors
        grad_x, grad_weight, grad_bias = _BatchNormBackward.apply(grad_out, x, weight, mean, invstd, ctx.eps)
        return grad_x, grad_weight, grad_bias, None


def batch_norm_batch_stats(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """``F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)`` with a cheap second derivative.

    Same values and first derivatives as PyTorch's batch norm; the second derivative (what second-order MAML
    needs) is computed in closed form. Asking for a graph of the second derivative (third order) raises.

    Args:
        x: ``(N, C, *spatial)`` activations, normalised per channel over the other dimensions.
        weight: ``(C,)`` scale (gamma).
        bias: ``(C,)`` shift (beta).
        eps: added to the variance.
    """
    if x.dim() < 2 or weight.shape != (x.shape[1],) or bias.shape != (x.shape[1],):
        raise ValueError(
            f"batch norm expects x (N, C, ...) with weight and bias of shape (C,), got x {tuple(x.shape)}, "
            f"weight {tuple(weight.shape)}, bias {tuple(bias.shape)}"
        )
    return _BatchNorm.apply(x, weight, bias, eps)
