"""One step of the Meta-LSTM's coordinate-wise layers in one compiled pass per chunk of coordinates.

:class:`~metarl.supervised.learners.meta_lstm.MetaLSTM` runs an LSTM cell (``torch.nn.LSTMCell``, 20 units) and
its two gate units over every coordinate of every task's learner parameters: 1.8M coordinates for 16 tasks of
a 112k-parameter Conv4. Written with torch ops, each step is a dozen elementwise passes over ``(coordinates,
80)`` tensors (sigmoids, tanhs, products, concatenations) and as many again backwards, which took about 60% of a
meta-iteration. Here the two matrix products of the cell (its gates from ``[x, h]``, and in the backward pass
the gradients of ``x``, ``h`` and the weights) stay BLAS products, and everything between them is one
numba-compiled loop over the coordinates, forwards and backwards. Nothing is kept for the backward pass but the
step's inputs: it recomputes the gates chunk by chunk (what :func:`torch.utils.checkpoint.checkpoint` did).

``tanh`` and the sigmoids are :func:`metarl.fast_math.fast_tanh`'s float32 rational approximation (a few
units in the last place), so this path is float32 only; ``tests/supervised/test_learners_meta_lstm.py`` holds its
outputs and gradients to the torch modules', which remain the path for other dtypes.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import nn

from metarl.fast_math import fast_sigmoid, fast_tanh, one_blas_thread

CHUNK = 32768
"""Coordinates per chunk: the chunk's gate pre-activations (``CHUNK x 4H`` floats, 10 MB at 20 units) stay in
cache between the product and the compiled loop."""


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _cell(gates, cell, n, hidden, ig, fg, gg, og, tanh_cell, new_h):  # pragma: no cover - compiled
    """Row ``n`` of the LSTM cell from its gate pre-activations ``gates (N, 4H)`` (i, f, g, o as torch): the
    activations, ``tanh`` of the new cell state and the new hidden state, into the ``(H,)`` buffers."""
    for u in range(hidden):
        ig[u] = fast_sigmoid(gates[n, u])
        fg[u] = fast_sigmoid(gates[n, hidden + u])
        gg[u] = fast_tanh(gates[n, 2 * hidden + u])
        og[u] = fast_sigmoid(gates[n, 3 * hidden + u])
    for u in range(hidden):
        tanh_cell[u] = fast_tanh(fg[u] * cell[n, u] + ig[u] * gg[u])
        new_h[u] = og[u] * tanh_cell[u]


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _gate(weights, bias, new_h, c, previous, hidden):  # pragma: no cover - compiled
    """A gate unit of the cell state: ``sigmoid(w . [h', c, gate_prev] + b)``."""
    z = bias + weights[hidden] * c + weights[hidden + 1] * previous
    for u in range(hidden):
        z += weights[u] * new_h[u]
    return fast_sigmoid(z)


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _forward(
    gates, cell, c, i_prev, f_prev, w_i, b_i, w_f, b_f, h_out, cell_out, i_out, f_out
):  # pragma: no cover
    """The LSTM cell and the input and forget gates of the cell state, row by row."""
    n_rows, hidden = cell.shape
    buffers = np.empty((5, hidden), np.float32)
    ig, fg, gg, og, tanh_cell = buffers[0], buffers[1], buffers[2], buffers[3], buffers[4]
    for n in range(n_rows):
        _cell(gates, cell, n, hidden, ig, fg, gg, og, tanh_cell, h_out[n])
        for u in range(hidden):
            cell_out[n, u] = fg[u] * cell[n, u] + ig[u] * gg[u]
        i_out[n] = _gate(w_i, b_i, h_out[n], c[n], i_prev[n], hidden)
        f_out[n] = _gate(w_f, b_f, h_out[n], c[n], f_prev[n], hidden)


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _backward(  # pragma: no cover - compiled
    gates, cell, c, i_prev, f_prev, w_i, b_i, w_f, b_f,
    d_h_out, d_cell_out, d_i_out, d_f_out,
    d_gates, d_cell, d_c, d_i_prev, d_f_prev, new_h, d_z,
):  # fmt: skip
    """The backward pass of :func:`_forward`, recomputed from ``gates``: the gradients of the pre-activations
    ``d_gates``, of ``cell``, ``c`` and the previous gates; ``new_h`` and the gate units' pre-activation
    gradients ``d_z (N, 2)`` are kept for the gate weights' gradients (products outside)."""
    n_rows, hidden = cell.shape
    one = np.float32(1.0)
    buffers = np.empty((5, hidden), np.float32)
    ig, fg, gg, og, tanh_cell = buffers[0], buffers[1], buffers[2], buffers[3], buffers[4]
    for n in range(n_rows):
        _cell(gates, cell, n, hidden, ig, fg, gg, og, tanh_cell, new_h[n])
        i_t = _gate(w_i, b_i, new_h[n], c[n], i_prev[n], hidden)
        f_t = _gate(w_f, b_f, new_h[n], c[n], f_prev[n], hidden)
        dzi = d_i_out[n] * i_t * (one - i_t)
        dzf = d_f_out[n] * f_t * (one - f_t)
        d_z[n, 0] = dzi
        d_z[n, 1] = dzf
        d_c[n] = dzi * w_i[hidden] + dzf * w_f[hidden]
        d_i_prev[n] = dzi * w_i[hidden + 1]
        d_f_prev[n] = dzf * w_f[hidden + 1]
        for u in range(hidden):
            d_h = d_h_out[n, u] + dzi * w_i[u] + dzf * w_f[u]
            d_new_cell = d_cell_out[n, u] + d_h * og[u] * (one - tanh_cell[u] * tanh_cell[u])
            d_cell[n, u] = d_new_cell * fg[u]
            d_gates[n, u] = d_new_cell * gg[u] * ig[u] * (one - ig[u])
            d_gates[n, hidden + u] = d_new_cell * cell[n, u] * fg[u] * (one - fg[u])
            d_gates[n, 2 * hidden + u] = d_new_cell * ig[u] * (one - gg[u] * gg[u])
            d_gates[n, 3 * hidden + u] = d_h * tanh_cell[u] * og[u] * (one - og[u])


def _gate_arrays(weight: torch.Tensor, bias: torch.Tensor) -> tuple[np.ndarray, np.float32]:
    """A gate unit's weights and bias as the kernels take them."""
    return weight.reshape(-1).contiguous().numpy(), np.float32(bias.item())


class _CoordinateStep(torch.autograd.Function):
    """``(x, h, cell, c, i_prev, f_prev, w_ih, w_hh, b_ih, b_hh, w_i, b_i, w_f, b_f)`` -> ``(h', cell', i_t, f_t)``."""

    @staticmethod
    def forward(ctx, x, h, cell, c, i_prev, f_prev, w_ih, w_hh, b_ih, b_hh, w_i, b_i, w_f, b_f):  # type: ignore[override]
        inputs = [t.detach().contiguous() for t in (x, h, cell, c, i_prev, f_prev)]
        weights = [t.detach() for t in (w_ih, w_hh, b_ih, b_hh, w_i, b_i, w_f, b_f)]
        ctx.save_for_backward(*inputs, *weights)
        rows, hidden = cell.shape
        outputs = [
            torch.empty_like(inputs[2]),
            torch.empty_like(inputs[2]),
            torch.empty(rows),
            torch.empty(rows),
        ]
        w_cell = torch.cat(weights[:2], 1)  # the cell's [W_ih | W_hh]: one product with [x | h]
        bias = weights[2] + weights[3]
        gate_i, gate_f = _gate_arrays(weights[4], weights[5]), _gate_arrays(weights[6], weights[7])
        with one_blas_thread():
            for start in range(0, rows, CHUNK):
                part = slice(start, start + CHUNK)
                gates = torch.addmm(bias, torch.cat((inputs[0][part], inputs[1][part]), 1), w_cell.t())
                _forward(
                    gates.numpy(),
                    *(t[part].numpy() for t in inputs[2:]),
                    *gate_i,
                    *gate_f,
                    *(t[part].numpy() for t in outputs),
                )
        return tuple(outputs)

    @staticmethod
    def backward(ctx, d_h_out, d_cell_out, d_i_out, d_f_out):  # type: ignore[override]
        x, h, cell, c, i_prev, f_prev, w_ih, w_hh, b_ih, b_hh, w_i, b_i, w_f, b_f = ctx.saved_tensors
        rows, hidden = cell.shape
        grads_out = [
            torch.zeros_like(cell) if g is None else g.detach().contiguous() for g in (d_h_out, d_cell_out)
        ] + [torch.zeros(rows) if g is None else g.detach().contiguous() for g in (d_i_out, d_f_out)]
        d_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        d_h, d_cell, d_c = torch.empty_like(h), torch.empty_like(cell), torch.empty(rows)
        inputs_width = x.shape[1]
        d_i_prev, d_f_prev = torch.empty(rows), torch.empty(rows)
        w_cell = torch.cat((w_ih, w_hh), 1)
        d_w_cell = torch.zeros_like(w_cell)
        d_bias = torch.zeros(4 * hidden)
        d_w_i, d_w_f = (
            torch.zeros(hidden + 2, dtype=torch.float64),
            torch.zeros(hidden + 2, dtype=torch.float64),
        )
        d_b_gates = torch.zeros(2, dtype=torch.float64)
        gate_i, gate_f = _gate_arrays(w_i, b_i), _gate_arrays(w_f, b_f)
        bias = b_ih + b_hh
        size = min(rows, CHUNK)
        d_gates, new_h, d_z = torch.empty(size, 4 * hidden), torch.empty(size, hidden), torch.empty(size, 2)
        with one_blas_thread():
            for start in range(0, rows, CHUNK):
                part = slice(start, start + CHUNK)
                xh = torch.cat((x[part], h[part]), 1)
                gates = torch.addmm(bias, xh, w_cell.t())
                n = gates.shape[0]
                d_part, h_part, z_part = d_gates[:n], new_h[:n], d_z[:n]
                _backward(
                    gates.numpy(),
                    *(t[part].numpy() for t in (cell, c, i_prev, f_prev)),
                    *gate_i,
                    *gate_f,
                    *(g[part].numpy() for g in grads_out),
                    d_part.numpy(),
                    *(t[part].numpy() for t in (d_cell, d_c, d_i_prev, d_f_prev)),
                    h_part.numpy(),
                    z_part.numpy(),
                )
                d_xh = d_part @ w_cell
                d_h[part] = d_xh[:, inputs_width:]
                if d_x is not None:
                    d_x[part] = d_xh[:, :inputs_width]
                d_w_cell.addmm_(d_part.t(), xh)
                d_bias += d_part.sum(0)
                # the gate units' weights: [h', c, previous gate] against their pre-activation gradients
                for column, (d_w, previous) in enumerate(((d_w_i, i_prev), (d_w_f, f_prev))):
                    dz = z_part[:, column]
                    d_w[:hidden] += (h_part.t() @ dz).double()
                    d_w[hidden] += float(dz @ c[part])
                    d_w[hidden + 1] += float(dz @ previous[part])
                d_b_gates += z_part.sum(0).double()
        return (
            d_x,
            d_h,
            d_cell,
            d_c,
            d_i_prev,
            d_f_prev,
            d_w_cell[:, :inputs_width].contiguous(),
            d_w_cell[:, inputs_width:].contiguous(),
            d_bias,
            d_bias.clone(),
            d_w_i.float().reshape(w_i.shape),
            d_b_gates[:1].float().reshape(b_i.shape),
            d_w_f.float().reshape(w_f.shape),
            d_b_gates[1:].float().reshape(b_f.shape),
        )


def fused_available(*tensors: torch.Tensor) -> bool:
    """Whether :func:`coordinate_step` applies: float32 tensors on the CPU."""
    return all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)


def coordinate_step(
    lstm: nn.LSTMCell,
    input_gate: nn.Linear,
    forget_gate: nn.Linear,
    features: torch.Tensor,
    h: torch.Tensor,
    cell: torch.Tensor,
    c: torch.Tensor,
    i_prev: torch.Tensor,
    f_prev: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(h', cell', i_t, f_t)`` of every coordinate: ``lstm`` on ``features (N, 4)`` from ``(h, cell)``, then
    ``i_t = sigmoid(input_gate([h', c, i_prev]))`` and ``f_t = sigmoid(forget_gate([h', c, f_prev]))``."""
    return _CoordinateStep.apply(
        features,
        h,
        cell,
        c,
        i_prev,
        f_prev,
        lstm.weight_ih,
        lstm.weight_hh,
        lstm.bias_ih,
        lstm.bias_hh,
        input_gate.weight,
        input_gate.bias,
        forget_gate.weight,
        forget_gate.bias,
    )
