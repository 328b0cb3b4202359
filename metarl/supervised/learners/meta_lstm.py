"""The LSTM meta-learner (Ravi & Larochelle, "Optimization as a Model for Few-Shot Learning", ICLR 2017).

A coordinate-wise LSTM *is* the learner's optimizer: its cell state is the learner's parameter vector, and one
inner step is the LSTM cell update

    c_t = f_t * c_{t-1} - i_t * g_t        (c: parameters, g: gradient of the support loss at c_{t-1})

with the input gate ``i_t`` a learned, per-coordinate and per-step learning rate and the forget gate ``f_t`` a
learned weight decay (``f_t = 1, i_t = lr`` is plain SGD). Written as ``sgd_step({f * c}, {g}, lr=i)``, it is
the one inner update of :mod:`metarl.core`, with gradients from :func:`metarl.core.loss_gradients`.

Gates (paper section 3.2, shared across coordinates, so the meta-learner is small whatever the learner's size):

* a first LSTM layer (``hidden`` units, 20 in the paper) reads, per coordinate, the preprocessed gradient and
  support loss (Andrychowicz et al. 2016, appendix A: ``x -> (log|x| / p, sign x)`` if ``|x| >= e^-p``, else
  ``(-1, e^p x)``, p = 10);
* ``i_t = sigmoid(W_i [h_t, c_{t-1}, i_{t-1}] + b_i)``, ``f_t = sigmoid(W_f [h_t, c_{t-1}, f_{t-1}] + b_f)``,
  with ``b_f`` initialised large (forget gate near 1) and ``b_i`` small (small rates), as the paper advises.

The initial cell state ``c_0`` is the learner network's own initialisation, meta-learned with the LSTM.
Meta-training backpropagates the query loss after ``inner_steps`` steps through the unrolled inner loop.
The coordinate-wise layers run over every task's every parameter (16 tasks of a 112k-parameter Conv4 are 1.8M
coordinates, each with 20 LSTM units). In float32 on the CPU they run as one compiled step
(:mod:`~metarl.supervised.learners.coordinate_lstm`: BLAS products around one numba loop, forwards and
backwards, keeping only each step's inputs). Otherwise the torch modules run in chunks of ``chunk_coordinates``
coordinates whose activations are recomputed in the backward pass (:func:`torch.utils.checkpoint.checkpoint`):
kept whole, their activations fill gigabytes and every elementwise op streams them through memory.
``first_order=True`` is the paper's approximation: the gradient and loss inputs are treated as constants (no
gradient through the learner's gradients; the meta-gradient still flows through ``c`` and the gates).

Batch norm: the paper's learner normalises with batch statistics and the authors note that keeping running
statistics across meta-test episodes leaks information between them. Here every episode is normalised with its
own batch statistics at training and test time alike (the learner's :class:`metarl.supervised.models.Conv4` has no
running statistics), and the batch norm's scale and shift are coordinates of the cell state like every other
parameter (the paper's learner also updates them).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from metarl.core import Params, loss_gradients, named_params, sgd_step, stack_over_tasks
from metarl.errors import UserError
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.base import FewShotLearner
from metarl.supervised.learners.coordinate_lstm import coordinate_step, fused_available
from metarl.supervised.learners.maml import per_task_losses, run_per_task


def preprocess(x: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """Andrychowicz et al.'s preprocessing of gradients and losses: ``(..., )`` -> ``(..., 2)``."""
    big = x.abs() >= math.exp(-p)
    log_part = torch.where(big, x.abs().clamp_min(math.exp(-p)).log() / p, torch.full_like(x, -1.0))
    sign_part = torch.where(big, torch.sign(x), math.exp(p) * x)
    return torch.stack([log_part, sign_part], -1)


class MetaLSTMCell(nn.Module):
    """The gates of the cell-state update: ``i_t`` and ``f_t`` from ``[h_t, c_{t-1}, gate_{t-1}]``.

    Args:
        hidden: units of the first LSTM layer.
        forget_bias: range of the forget-gate bias at initialisation (paper: large, 4 to 6).
        input_bias: range of the input-gate bias at initialisation (paper: small, -5 to -4).
    """

    def __init__(
        self,
        hidden: int,
        forget_bias: tuple[float, float] = (4.0, 6.0),
        input_bias: tuple[float, float] = (-5.0, -4.0),
    ):
        super().__init__()
        self.input_gate = nn.Linear(hidden + 2, 1)
        self.forget_gate = nn.Linear(hidden + 2, 1)
        for gate, (low, high) in ((self.forget_gate, forget_bias), (self.input_gate, input_bias)):
            nn.init.uniform_(gate.weight, -0.01, 0.01)
            nn.init.uniform_(gate.bias, low, high)

    def forward(
        self, h: torch.Tensor, c: torch.Tensor, i_prev: torch.Tensor, f_prev: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(i_t, f_t)``, each ``(coordinates,)``, from ``h`` ``(coordinates, hidden)`` and the previous values."""
        i = torch.sigmoid(self.input_gate(torch.cat([h, c.unsqueeze(-1), i_prev.unsqueeze(-1)], -1))).squeeze(
            -1
        )
        f = torch.sigmoid(
            self.forget_gate(torch.cat([h, c.unsqueeze(-1), f_prev.unsqueeze(-1)], -1))
        ).squeeze(-1)
        return i, f


class MetaLSTM(FewShotLearner):
    """Ravi & Larochelle's LSTM meta-learner around a learner network with a classifier head.

    Args:
        model: the learner network (e.g. ``Conv4(ways=5, hidden=32)``); its parameters are ``c_0``.
        inner_steps: LSTM (inner) steps on the support set during meta-training (paper: 12 on 5-way 1-shot).
        eval_inner_steps: inner steps at evaluation (default ``inner_steps``).
        hidden: units of the first, coordinate-wise LSTM layer (20).
        first_order: the paper's approximation: gradients and losses enter the LSTM as constants.
        vectorize: run the tasks of a batch in one call (``Conv4.forward_tasks`` / vmap), else a loop.
        chunk_coordinates: coordinates per chunk of the torch coordinate-wise layers when gradients are
            recorded (0: all at once, keeping every activation).
        fused: the compiled coordinate-wise step for float32 on the CPU (False: always the torch modules).
    """

    def __init__(
        self,
        model: nn.Module,
        inner_steps: int = 5,
        eval_inner_steps: int | None = None,
        hidden: int = 20,
        first_order: bool = False,
        vectorize: bool = True,
        chunk_coordinates: int = 8192,
        fused: bool = True,
    ):
        super().__init__()
        if inner_steps < 1 or (eval_inner_steps is not None and eval_inner_steps < 1):
            raise UserError(
                f"inner_steps and eval_inner_steps must be >= 1, got {inner_steps}, {eval_inner_steps}"
            )
        if not getattr(model, "head_names", None):
            raise UserError(
                "the Meta-LSTM learner needs a network with a classifier head (e.g. Conv4(ways=5))"
            )
        self.model = model
        self.inner_steps = int(inner_steps)
        self.eval_inner_steps = int(inner_steps if eval_inner_steps is None else eval_inner_steps)
        self.first_order = bool(first_order)
        self.vectorize = bool(vectorize)
        if chunk_coordinates < 0:
            raise UserError(f"chunk_coordinates must be >= 0 (0: no chunks), got {chunk_coordinates}")
        self.chunk_coordinates = int(chunk_coordinates)
        self.fused = bool(fused)
        self.input_lstm = nn.LSTMCell(4, hidden)
        self.gates = MetaLSTMCell(hidden)

    def adapt_tasks(self, batch: EpisodeBatch, steps: int, *, differentiable: bool = True) -> Params:
        """The learner's parameters ``(tasks, *shape)`` after ``steps`` LSTM steps on each support set."""
        meta = named_params(self.model)
        if not differentiable:
            meta = {n: p.detach().requires_grad_(True) for n, p in meta.items()}
        names = list(meta)
        params = stack_over_tasks(meta, batch.num_tasks, copy=False)
        tasks = batch.num_tasks
        shapes = [params[n].shape[1:] for n in names]
        sizes = [math.prod(s) for s in shapes]
        coordinates = tasks * sum(sizes)
        zeros = params[names[0]].new_zeros
        h = cell = zeros(coordinates, self.input_lstm.hidden_size)  # the LSTM's zero initial state
        i_prev = f_prev = zeros(coordinates)
        first_order = self.first_order or not differentiable
        for _ in range(steps):
            outputs = run_per_task(self.model, params, batch.support_x, self.vectorize)
            losses = per_task_losses(outputs, batch.support_y, "cross_entropy")
            grads = loss_gradients(params, losses.sum(), first_order=first_order)
            grads = {n: grads[n] if n in grads else torch.zeros_like(params[n]) for n in names}
            grad_flat = torch.cat([grads[n].reshape(tasks, -1) for n in names], 1)
            loss_flat = losses.detach() if first_order else losses
            features = torch.cat(
                [
                    preprocess(grad_flat),
                    preprocess(loss_flat).unsqueeze(1).expand(-1, grad_flat.shape[1], -1),
                ],
                -1,
            ).reshape(coordinates, 4)
            c_flat = torch.cat([params[n].reshape(tasks, -1) for n in names], 1).reshape(coordinates)
            h, cell, i_t, f_t = self._coordinate_layers(features, h, cell, c_flat, i_prev, f_prev)
            i_prev, f_prev = i_t, f_t
            decayed = self._unflatten((f_t * c_flat).reshape(tasks, -1), names, shapes, sizes)
            rates = self._unflatten(i_t.reshape(tasks, -1), names, shapes, sizes)
            # c_t = f_t * c_{t-1} - i_t * g_t: the core's SGD step on the decayed parameters with rates i_t.
            params = sgd_step(decayed, grads, rates)
        return params

    def _coordinate_step(self, features, h, cell, c, i_prev, f_prev):
        h, cell = self.input_lstm(features, (h, cell))
        i_t, f_t = self.gates(h, c, i_prev, f_prev)
        return h, cell, i_t, f_t

    def _coordinate_layers(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The LSTM layer and the gates over all coordinates: ``(h, cell, i_t, f_t)``. In float32 on the CPU, the
        compiled step of :mod:`~metarl.supervised.learners.coordinate_lstm`; otherwise the torch modules, in
        chunks recomputed in the backward pass when gradients are recorded."""
        if self.fused and fused_available(*inputs):
            return coordinate_step(self.input_lstm, self.gates.input_gate, self.gates.forget_gate, *inputs)
        size = self.chunk_coordinates
        if not torch.is_grad_enabled() or size == 0 or inputs[0].shape[0] <= size:
            return self._coordinate_step(*inputs)
        chunks = [
            checkpoint(self._coordinate_step, *part, use_reentrant=False)
            for part in zip(*(x.split(size) for x in inputs), strict=True)
        ]
        return tuple(torch.cat(outputs) for outputs in zip(*chunks, strict=True))

    @staticmethod
    def _unflatten(flat: torch.Tensor, names: list[str], shapes: list, sizes: list[int]) -> Params:
        pieces = flat.split(sizes, 1)
        return {
            n: piece.reshape(flat.shape[0], *shape)
            for n, piece, shape in zip(names, pieces, shapes, strict=True)
        }

    def meta_loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Query cross-entropy after ``inner_steps`` LSTM steps, differentiable w.r.t. ``c_0`` and the LSTM."""
        params = self.adapt_tasks(batch, self.inner_steps)
        outputs = run_per_task(self.model, params, batch.query_x, self.vectorize)
        loss = per_task_losses(outputs, batch.query_y, "cross_entropy").mean()
        return loss, {"accuracy": float((outputs.argmax(-1) == batch.query_y).float().mean())}

    def predict(self, batch: EpisodeBatch) -> torch.Tensor:
        """Query logits after ``eval_inner_steps`` steps (gradients computed, no graph kept, under no_grad)."""
        if torch.is_grad_enabled():
            params = self.adapt_tasks(batch, self.eval_inner_steps)
        else:
            with torch.enable_grad():
                params = self.adapt_tasks(batch, self.eval_inner_steps, differentiable=False)
            params = {n: p.detach() for n, p in params.items()}
        return run_per_task(self.model, params, batch.query_x, self.vectorize)


__all__ = ["MetaLSTM", "MetaLSTMCell", "preprocess"]
