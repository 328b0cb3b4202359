"""Several single-layer GRUs over the same input sequence in one compiled loop: RL^2's policy and value GRUs.

``torch.nn.GRU`` on the CPU records a dozen autograd nodes per time step, and with RL^2's small batches (tens of
trials, 64 units) that bookkeeping, not arithmetic, is the cost of a PPO minibatch: its backward pass walks
thousands of nodes. :func:`stacked_gru` runs the recurrence of every GRU in a numba-compiled loop (one BLAS
product per GRU and step, the gates computed in place) and writes out its own backward pass (backpropagation
through time), so autograd sees one node per sequence. The products that do not depend on the recurrence (the
input projections, and the weight gradients summed over all steps) are single matrix products outside the loop.

The equations are ``torch.nn.GRU``'s (``r``, ``z``, ``n`` gates, ``h' = (1 - z) n + z h``), with its parameters;
``tanh`` and the sigmoids are :mod:`metarl.fast_math`'s (Eigen's rational float32 approximation of tanh, within a
few units in the last place of the exact value).
``tests/agents/test_agents_fused_gru.py`` holds outputs and gradients to ``torch.nn.GRU``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import torch
from torch import nn

from metarl.fast_math import fast_sigmoid, fast_tanh, one_blas_thread

_ONE = np.float32(1.0)


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _forward(gi, w_hh_t, b_hn, hs, gates, gh_n):  # pragma: no cover - compiled
    """The recurrence. ``gi (G, L, B, 3H)``: input projections with both biases of the r and z gates;
    ``w_hh_t (G, H, 3H)``; ``b_hn (G, H)``: the n gate's hidden bias; ``hs (G, L + 1, B, H)`` holds the initial
    state in ``[:, 0]`` and receives the states; ``gates (G, L, B, 3H)`` receives r, z, n; ``gh_n (G, L, B, H)``
    the n gate's hidden projection (both kept for the backward pass)."""
    num_grus, length, batch, width = gi.shape
    hidden = width // 3
    for g in range(num_grus):
        for t in range(length):
            gh = np.dot(hs[g, t], w_hh_t[g])
            for b in range(batch):
                x = gi[g, t, b]
                h = hs[g, t, b]
                out = hs[g, t + 1, b]
                gate = gates[g, t, b]
                hn = gh_n[g, t, b]
                for j in range(2 * hidden):  # r and z
                    gate[j] = fast_sigmoid(x[j] + gh[b, j])
                for j in range(hidden):
                    hn[j] = gh[b, 2 * hidden + j] + b_hn[g, j]
                for j in range(hidden):
                    n = fast_tanh(x[2 * hidden + j] + gate[j] * hn[j])
                    gate[2 * hidden + j] = n
                    out[j] = n + gate[hidden + j] * (h[j] - n)


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _backward(grad_out, w_hh, hs, gates, gh_n, d_gi, d_gh_n, d_h0, d_bias):  # pragma: no cover - compiled
    """Backpropagation through time. From ``grad_out (G, B, L, H)``, the loss's gradient with respect to every
    output state, fills ``d_gi (G, L, B, 3H)``, the gradient with respect to the input projections (the hidden
    projections' equals it in the r and z gates), ``d_gh_n (G, L, B, H)``, the hidden projection's in the n gate,
    ``d_h0 (G, B, H)``, the initial state's, and ``d_bias (G, 4H)``: the sums over steps of ``d_gi``
    (``[:, :3H]``) and ``d_gh_n`` (``[:, 3H:]``)."""
    num_grus, batch, length, hidden = grad_out.shape
    d_gh = np.empty((batch, 3 * hidden), np.float32)  # one step's hidden-projection gradient
    d_bias[:] = 0
    for g in range(num_grus):
        dh = d_h0[g]
        dh[:] = 0
        bias = d_bias[g]
        for t in range(length - 1, -1, -1):
            for b in range(batch):
                dout = grad_out[g, b, t]
                h = hs[g, t, b]
                gate = gates[g, t, b]
                hn = gh_n[g, t, b]
                di = d_gi[g, t, b]
                dhh = d_gh[b]
                dhn = d_gh_n[g, t, b]
                carried = dh[b]
                for j in range(hidden):
                    grad = carried[j] + dout[j]
                    r = gate[j]
                    z = gate[hidden + j]
                    n = gate[2 * hidden + j]
                    dn = grad * (_ONE - z) * (_ONE - n * n)
                    dz = grad * (h[j] - n) * z * (_ONE - z)
                    dr = dn * hn[j] * r * (_ONE - r)
                    di[j] = dr
                    di[hidden + j] = dz
                    di[2 * hidden + j] = dn
                    dhh[j] = dr
                    dhh[hidden + j] = dz
                    dhh[2 * hidden + j] = dn * r
                    dhn[j] = dn * r
                    carried[j] = grad * z
            for b in range(batch):  # a separate pass: fewer arrays per loop keep the loops above vectorised
                di = d_gi[g, t, b]
                dhn = d_gh_n[g, t, b]
                for j in range(3 * hidden):
                    bias[j] += di[j]
                for j in range(hidden):
                    bias[3 * hidden + j] += dhn[j]
            dh += np.dot(d_gh, w_hh[g])


def _recurrence(x, h0, w_ih, w_hh, b_ih, b_hh):
    """The forward pass on detached tensors: the steps ``(L * B, D)`` in time-major order, and the arrays of
    :func:`_forward` (``hs``, ``gates``, ``gh_n``)."""
    num_grus, width, _ = w_ih.shape
    hidden = width // 3
    batch, length, features = x.shape
    steps = x.transpose(0, 1).reshape(length * batch, features)
    bias = b_ih.clone()
    bias[:, : 2 * hidden] += b_hh[:, : 2 * hidden]  # r and z add both biases outside the reset gate
    gi = torch.baddbmm(bias.unsqueeze(1), steps.expand(num_grus, -1, -1), w_ih.transpose(1, 2))
    hs = np.empty((num_grus, length + 1, batch, hidden), np.float32)
    hs[:, 0] = h0.numpy()
    gates = np.empty((num_grus, length, batch, width), np.float32)
    gh_n = np.empty((num_grus, length, batch, hidden), np.float32)
    w_hh_t = np.ascontiguousarray(w_hh.numpy().transpose(0, 2, 1))
    with one_blas_thread():
        _forward(
            gi.view(num_grus, length, batch, width).numpy(),
            w_hh_t,
            b_hh[:, 2 * hidden :].numpy(),
            hs,
            gates,
            gh_n,
        )
    return steps, hs, gates, gh_n


def _outputs(hs: np.ndarray) -> torch.Tensor:
    """The states after every step as ``(G, B, L, H)``."""
    return torch.from_numpy(hs[:, 1:]).permute(0, 2, 1, 3)


class _StackedGRU(torch.autograd.Function):
    """``(x (B, L, D), h0 (G, B, H), w_ih (G, 3H, D), w_hh (G, 3H, H), b_ih (G, 3H), b_hh (G, 3H))`` ->
    the states of every GRU at every step, ``(G, B, L, H)``."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh):  # type: ignore[override]
        steps, hs, gates, gh_n = _recurrence(*(t.detach() for t in (x, h0, w_ih, w_hh, b_ih, b_hh)))
        ctx.save_for_backward(steps, w_ih, w_hh)
        ctx.arrays = (hs, gates, gh_n)
        return _outputs(hs)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        steps, w_ih, w_hh = (t.detach() for t in ctx.saved_tensors)
        hs, gates, gh_n = ctx.arrays
        num_grus, length_plus_one, batch, hidden = hs.shape
        rows = (length_plus_one - 1) * batch
        width = 3 * hidden
        d_gi = np.empty((num_grus, length_plus_one - 1, batch, width), np.float32)
        d_gh_n = np.empty((num_grus, length_plus_one - 1, batch, hidden), np.float32)
        d_h0 = np.empty((num_grus, batch, hidden), np.float32)
        d_bias = np.empty((num_grus, 4 * hidden), np.float32)
        grad = grad_out.detach().float().contiguous().numpy()
        with one_blas_thread():
            _backward(grad, np.ascontiguousarray(w_hh.numpy()), hs, gates, gh_n, d_gi, d_gh_n, d_h0, d_bias)
        d_gi_t = torch.from_numpy(d_gi).view(num_grus, rows, width)
        d_gh_n_t = torch.from_numpy(d_gh_n).view(num_grus, rows, hidden)
        previous = torch.from_numpy(hs[:, :-1]).reshape(num_grus, rows, hidden)
        d_bias_t = torch.from_numpy(d_bias)
        d_x = None
        if ctx.needs_input_grad[0]:
            d_x = torch.matmul(d_gi_t, w_ih).sum(0).view(length_plus_one - 1, batch, -1).transpose(0, 1)
        return (
            d_x,
            torch.from_numpy(d_h0) if ctx.needs_input_grad[1] else None,
            torch.matmul(steps.t(), d_gi_t).transpose(1, 2),
            torch.cat(  # the hidden projection's gradient is d_gi's in the r and z gates
                [
                    torch.matmul(d_gi_t[:, :, : 2 * hidden].transpose(1, 2), previous),
                    torch.matmul(d_gh_n_t.transpose(1, 2), previous),
                ],
                dim=1,
            ),
            d_bias_t[:, :width],
            torch.cat([d_bias_t[:, : 2 * hidden], d_bias_t[:, width:]], dim=1),
        )


def stacked_gru(x: torch.Tensor, grus: Sequence[nn.GRU], state: torch.Tensor | None = None) -> torch.Tensor:
    """Run the single-layer, batch-first GRUs ``grus`` (same input and hidden size) over ``x (B, L, D)``.

    Args:
        x: float32 input sequences.
        grus: the GRUs whose parameters are used (gradients reach them through autograd).
        state: initial states ``(G, B, H)``; zeros when None.

    Returns:
        every GRU's state after every step, ``(G, B, L, H)`` (``[:, :, -1]`` is the final state).
    """
    for gru in grus:
        if gru.num_layers != 1 or gru.bidirectional or not gru.bias or not gru.batch_first:
            raise ValueError("stacked_gru runs single-layer, unidirectional, batch-first GRUs with biases")
    if state is None:
        state = x.new_zeros(len(grus), x.shape[0], grus[0].hidden_size)
    inputs = (
        x.float(),
        state.float(),
        torch.stack([g.weight_ih_l0 for g in grus]),
        torch.stack([g.weight_hh_l0 for g in grus]),
        torch.stack([g.bias_ih_l0 for g in grus]),
        torch.stack([g.bias_hh_l0 for g in grus]),
    )
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _StackedGRU.apply(*inputs)
    return _outputs(
        _recurrence(*(t.detach() for t in inputs))[1]
    )  # sampling: nothing kept for a backward pass
