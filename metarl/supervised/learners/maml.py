"""Gradient-based meta-learners through :func:`metarl.core.adapt`: MAML, first-order MAML, Meta-SGD and ANIL.

All tasks of a batch adapt at once. The meta-parameters are expanded along a leading task dimension (a view, so
gradients flow back to the shared meta-parameters) and the model runs per task with
:func:`torch.func.vmap` over :func:`metarl.core.functional_forward` (or a Python loop, ``vectorize=False``). The
inner loss handed to ``adapt`` is the *sum* over tasks of each task's mean support loss: tasks share no
parameters in the expanded view, so the gradient with respect to task ``t``'s slice is exactly task ``t``'s own
inner gradient, and one ``adapt`` call (one ``torch.autograd.grad`` per step) adapts the whole meta-batch. The
module is never cloned or mutated. Conv4 runs the tasks as channel groups of one batch instead of under vmap
(:meth:`metarl.supervised.models.Conv4.forward_tasks`), with a batch norm whose second derivative is cheap and
a faster max-pooling.

* MAML (Finn et al. 2017): scalar inner learning rate, second-order meta-gradient (``create_graph=True``).
* FOMAML: ``first_order=True``; the inner gradients are treated as constants.
* Meta-SGD (Li et al. 2017): per-parameter learned learning rates (:class:`metarl.core.LearnedLearningRates`),
  meta-trained together with the initialisation.
* ANIL (Raghu et al. 2020): only the head adapts; the body's features are computed once per task and the
  inner loop runs on the head alone (second order through the head, the body learns from the outer loss).

Batch norm has no running statistics: the support and query sets of each task are normalised with their own
batch statistics (transductive, as in MAML's reference code).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from metarl.core import (
    LearnedLearningRates,
    Params,
    adapt,
    detach_params,
    functional_forward,
    named_params,
    stack_over_tasks,
)
from metarl.errors import UserError
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.base import FewShotLearner

LossName = Literal["cross_entropy", "mse"]


def per_task_losses(outputs: torch.Tensor, targets: torch.Tensor, loss: LossName) -> torch.Tensor:
    """Mean loss of each task ``(tasks,)`` from outputs ``(tasks, n, ...)`` and targets ``(tasks, n, ...)``."""
    if loss == "cross_entropy":
        values = F.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="none")
        return values.view(targets.shape[0], -1).mean(1)
    if loss == "mse":
        return (outputs - targets).pow(2).flatten(1).mean(1)
    raise UserError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")


def run_per_task(
    module: nn.Module, params: Mapping[str, torch.Tensor], inputs: torch.Tensor, vectorize: bool
) -> torch.Tensor:
    """``module`` on each task's inputs ``(tasks, n, ...)`` with that task's parameters ``(tasks, *shape)``.

    With ``vectorize`` the tasks run in one call: the module's own ``forward_tasks(params, inputs)`` if it has
    one (:meth:`metarl.supervised.models.Conv4.forward_tasks`), else :func:`torch.func.vmap` (batched matmuls,
    grouped convolutions); otherwise in a Python loop. All give the same numbers; which is faster depends on the
    model and machine.
    """
    if vectorize and hasattr(module, "forward_tasks"):
        return module.forward_tasks(params, inputs)
    if vectorize:
        return torch.func.vmap(lambda p, x: functional_forward(module, p, x))(dict(params), inputs)
    outputs = [
        functional_forward(module, {name: p[t] for name, p in params.items()}, inputs[t])
        for t in range(inputs.shape[0])
    ]
    return torch.stack(outputs)


class MAML(FewShotLearner):
    """Model-Agnostic Meta-Learning (Finn, Abbeel & Levine, ICML 2017) and its first-order variant.

    Args:
        model: the network whose parameters are the initialisation, e.g. ``Conv4(ways=5)`` or ``MLP()``.
        inner_lr: step size of the inner gradient steps (0.4 on Omniglot, 0.01 on the sinusoid).
        inner_steps: inner steps during meta-training (1 on Omniglot 5-way).
        eval_inner_steps: inner steps when predicting for evaluation (3 on Omniglot); default ``inner_steps``.
        first_order: drop the second-order terms of the meta-gradient (FOMAML).
        loss: ``"cross_entropy"`` for classification, ``"mse"`` for regression.
        vectorize: run all tasks of a batch in one call (``forward_tasks`` or ``vmap``) instead of a loop.
    """

    adapt_head_only = False

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = 0.4,
        inner_steps: int = 1,
        eval_inner_steps: int | None = None,
        first_order: bool = False,
        loss: LossName = "cross_entropy",
        vectorize: bool = True,
    ) -> None:
        super().__init__()
        if not inner_lr > 0:
            raise UserError(f"inner_lr must be > 0, got {inner_lr}")
        if inner_steps < 0 or (eval_inner_steps is not None and eval_inner_steps < 0):
            raise UserError(
                f"inner_steps and eval_inner_steps must be >= 0, got {inner_steps}, {eval_inner_steps}"
            )
        if loss not in ("cross_entropy", "mse"):
            raise UserError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
        self.model = model
        self.inner_lr = float(inner_lr)
        self.inner_steps = int(inner_steps)
        self.eval_inner_steps = int(inner_steps if eval_inner_steps is None else eval_inner_steps)
        self.first_order = bool(first_order)
        self.loss = loss
        self.vectorize = bool(vectorize)
        if self.vectorize and hasattr(model, "forward_tasks"):
            # Conv4 runs its tasks in cache-sized chunks; one backward pass per chunk of 8 tasks keeps that
            # locality through the backward passes (BENCHMARKS.md).
            self.backward_chunk = 8
        if self.adapt_head_only and not getattr(model, "head_names", None):
            raise UserError(f"{type(self).__name__} needs a model with a head (e.g. Conv4(ways=5))")

    # -- what adapts and how ------------------------------------------------------------------------------
    def adapted_names(self) -> list[str]:
        """Names of the parameters the inner loop adapts (all of them, or the head for ANIL)."""
        names = list(named_params(self.model))
        return [n for n in names if n in self.model.head_names] if self.adapt_head_only else names

    def inner_learning_rate(self) -> float | Params:
        """The inner step size: a scalar here, learned per-parameter rates for Meta-SGD."""
        return self.inner_lr

    def _task_function(self) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
        """The module the inner loop adapts and how to prepare its inputs (identity, or body features for ANIL)."""
        if not self.adapt_head_only:
            return self.model, lambda x: x
        body = self.model.embed
        return self.model.head, lambda x: torch.func.vmap(body)(x) if self.vectorize else _loop(body, x)

    def adapt_tasks(
        self, batch: EpisodeBatch, steps: int, *, differentiable: bool = True
    ) -> tuple[Params, Callable[[Params, torch.Tensor], torch.Tensor], Callable]:
        """Adapt every task of ``batch`` on its support set.

        Args:
            batch: the tasks.
            steps: number of inner gradient steps.
            differentiable: keep the graph back to the meta-parameters (meta-training); otherwise adapt a detached
                copy with first-order steps (evaluation, cheaper).

        Returns:
            ``(phi, forward, prepare)``: adapted ``(tasks, *shape)`` parameters keyed as in the adapted module,
            ``forward(phi, prepared_inputs)`` giving per-task outputs, and ``prepare(inputs)`` (body features for
            ANIL, identity otherwise).
        """
        module, prepare = self._task_function()
        prefix = "head." if self.adapt_head_only else ""
        meta = {n[len(prefix) :]: p for n, p in named_params(self.model).items() if n in self.adapted_names()}
        lr = self.inner_learning_rate()
        if isinstance(lr, Mapping):
            lr = {n[len(prefix) :]: r for n, r in lr.items() if n[len(prefix) :] in meta}
        if not differentiable:
            meta = detach_params(meta, requires_grad=True)
            if isinstance(lr, Mapping):
                lr = {n: r.detach() for n, r in lr.items()}
        support = prepare(batch.support_x)
        if not differentiable:
            support = support.detach()
        stacked = stack_over_tasks(meta, batch.num_tasks, copy=False)

        def forward(params: Params, inputs: torch.Tensor) -> torch.Tensor:
            return run_per_task(module, params, inputs, self.vectorize)

        def support_loss(params: Params) -> torch.Tensor:
            return per_task_losses(forward(params, support), batch.support_y, self.loss).sum()

        first_order = self.first_order or not differentiable
        phi = adapt(stacked, support_loss, steps=steps, lr=lr, first_order=first_order)
        return phi, forward, prepare

    # -- FewShotLearner ----------------------------------------------------------------------------------
    def meta_loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean query loss after ``inner_steps`` steps, differentiable w.r.t. the initialisation (and rates)."""
        phi, forward, prepare = self.adapt_tasks(batch, self.inner_steps)
        outputs = forward(phi, prepare(batch.query_x))
        loss = per_task_losses(outputs, batch.query_y, self.loss).mean()
        metrics = {}
        if self.loss == "cross_entropy":
            metrics["accuracy"] = float((outputs.argmax(-1) == batch.query_y).float().mean())
        return loss, metrics

    def predict(self, batch: EpisodeBatch, steps: int | None = None) -> torch.Tensor:
        """Query outputs after ``steps`` (default ``eval_inner_steps``) inner steps on each task's support set.

        Under ``torch.no_grad()`` the adaptation still computes gradients (it needs them) but keeps no graph.
        """
        steps = self.eval_inner_steps if steps is None else steps
        if torch.is_grad_enabled():
            phi, forward, prepare = self.adapt_tasks(batch, steps)
            return forward(phi, prepare(batch.query_x))
        with torch.enable_grad():
            phi, forward, prepare = self.adapt_tasks(batch, steps, differentiable=False)
        phi = {n: p.detach() for n, p in phi.items()}
        return forward(phi, prepare(batch.query_x))

    def per_step_metrics(self, batch: EpisodeBatch, steps: int | None = None) -> list[torch.Tensor]:
        """Per-task query metric after 0, 1, ..., ``steps`` inner steps (accuracy, or MSE for regression).

        Returns:
            ``steps + 1`` tensors of shape ``(tasks,)``.
        """
        steps = self.eval_inner_steps if steps is None else steps
        return [task_metric(self.predict(batch, k), batch.query_y, self.loss) for k in range(steps + 1)]


def task_metric(outputs: torch.Tensor, targets: torch.Tensor, loss: LossName) -> torch.Tensor:
    """Per-task accuracy (classification) or mean squared error (regression), ``(tasks,)``."""
    if loss == "mse":
        return (outputs - targets).pow(2).flatten(1).mean(1)
    return (outputs.argmax(-1) == targets).float().mean(-1)


def _loop(function: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    return torch.stack([function(x) for x in inputs])


class MetaSGD(MAML):
    """Meta-SGD (Li, Zhou, Chen & Li 2017): MAML whose inner step sizes are learned, one per parameter entry.

    The rates live in :class:`metarl.core.LearnedLearningRates` (a sub-module, so the outer optimizer trains them
    with the initialisation). Meta-SGD uses one inner step.

    Args:
        model: the network (e.g. ``MLP()`` for the sinusoid).
        lr_init: constant initial rate, or ``(low, high)`` to draw each rate from U[low, high] (the paper: [0.005,
            0.1]) with the global torch generator, like the model's own initialisation.
        **kwargs: as :class:`MAML` (``inner_lr`` is not used: the rates replace it).
    """

    def __init__(
        self, model: nn.Module, lr_init: float | tuple[float, float] = (0.005, 0.1), **kwargs
    ) -> None:
        kwargs.setdefault("inner_lr", 1.0)
        super().__init__(model, **kwargs)
        params = {n: p for n, p in named_params(self.model).items() if n in self.adapted_names()}
        if isinstance(lr_init, int | float):
            self.learned_lrs = LearnedLearningRates(params, init=float(lr_init))
        else:
            low, high = (float(v) for v in lr_init)
            if not 0 <= low <= high:
                raise UserError(
                    f"lr_init must be a rate or a range (low, high) with 0 <= low <= high, got {lr_init}"
                )
            self.learned_lrs = LearnedLearningRates(params, init=low)
            with torch.no_grad():
                for rate in self.learned_lrs.rates:
                    rate.uniform_(low, high)

    def inner_learning_rate(self) -> Params:
        return self.learned_lrs.as_dict()


class ANIL(MAML):
    """Almost No Inner Loop (Raghu, Raghu, Bengio & Vinyals, ICLR 2020): MAML that adapts only the head.

    The body runs once per task (support and query), the inner steps update only the linear head, and the outer
    loss trains both. Takes the same arguments as :class:`MAML`; the model needs a ``head`` (``Conv4(ways=N)``).
    """

    adapt_head_only = True
