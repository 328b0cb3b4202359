"""The inner loop shared by meta-RL and few-shot learning: k gradient steps on a loss closure.

:func:`sgd_step` is the one update rule of every inner loop and :func:`loss_gradients` the one gradient of an
inner loss: :func:`gradient_step` takes the first on the second, :func:`adapt` repeats that on a loss closure, and the meta-RL agents call it with gradients
from autograd, ``torch.func`` or closed-form derivatives.

``adapt`` is the one place where MAML, first-order MAML and Meta-SGD differ:

* MAML (Finn et al. 2017): a scalar learning rate, ``first_order=False`` keeps the graph of the inner
  gradients (``create_graph=True``) so the meta-gradient includes second-order terms.
* FOMAML: ``first_order=True`` treats the inner gradients as constants.
* Meta-SGD (Li et al. 2017): ``lr`` is a dict of learned per-parameter learning rates (tensors that
  require grad); they receive gradients through the adapted parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from metarl.core.params import Params

LossFn = Callable[[Params], torch.Tensor]
LearningRate = float | torch.Tensor | Mapping[str, torch.Tensor]


def sgd_step(
    params: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor], lr: LearningRate
) -> Params:
    """The inner update ``theta' = theta - lr * g`` of every inner loop, RL or supervised.

    Differentiable in ``params``, ``grads`` and ``lr`` alike, so it serves autograd, ``torch.func`` transforms
    and gradients computed in closed form.

    Args:
        params: current (possibly stacked per task) parameters.
        grads: their gradients; a parameter without one is kept as it is.
        lr: scalar learning rate, or ``{name: tensor}`` per-parameter learning rates (Meta-SGD).

    Returns:
        The new parameters; the inputs are not modified.
    """
    return {
        name: p - (lr[name] if isinstance(lr, Mapping) else lr) * grads[name] if name in grads else p
        for name, p in params.items()
    }


def gradient_step(
    params: Mapping[str, torch.Tensor],
    loss: torch.Tensor,
    lr: LearningRate,
    *,
    first_order: bool = False,
) -> Params:
    """One step ``theta' = theta - lr * grad(loss, theta)`` (:func:`sgd_step`), differentiable unless ``first_order``.

    Args:
        params: current (possibly already adapted) parameters; all must require grad.
        loss: scalar loss computed from ``params``.
        lr: scalar learning rate, or ``{name: tensor}`` per-parameter learning rates (Meta-SGD).
        first_order: drop the graph of the gradient (FOMAML); the result still depends on ``params``.

    Returns:
        The new parameters; the input dict is not modified.
    """
    return sgd_step(params, loss_gradients(params, loss, first_order=first_order), lr)


def loss_gradients(
    params: Mapping[str, torch.Tensor], loss: torch.Tensor, *, first_order: bool = False
) -> Params:
    """``grad(loss, params)`` of the parameters the loss depends on, the gradient of every inner step.

    Args:
        params: the parameters; all must require grad.
        loss: a scalar computed from them.
        first_order: detach the gradients (no second-order terms); otherwise they keep their graph
            (``create_graph=True`` when grad mode is on).

    Returns:
        ``{name: gradient}`` without the parameters the loss does not use.
    """
    if loss.dim() != 0:
        raise ValueError(f"the inner loss must be a scalar, got a tensor of shape {tuple(loss.shape)}")
    names = list(params)
    create_graph = not first_order and torch.is_grad_enabled()
    grads = torch.autograd.grad(
        loss, [params[n] for n in names], create_graph=create_graph, allow_unused=True
    )
    return {
        name: grad.detach() if first_order else grad
        for name, grad in zip(names, grads, strict=True)
        if grad is not None
    }


def adapt(
    params: Mapping[str, torch.Tensor],
    loss_fn: LossFn,
    *,
    steps: int = 1,
    lr: LearningRate = 0.1,
    first_order: bool = False,
) -> Params:
    """Adapt ``params`` with ``steps`` gradient steps on ``loss_fn``.

    Args:
        params: the meta-parameters (e.g. ``named_params(model)``).
        loss_fn: maps a parameter dict to a scalar loss (usually via ``functional_forward``).
        steps: number of inner gradient steps (k).
        lr: scalar learning rate or learned per-parameter rates (Meta-SGD).
        first_order: if True the meta-gradient ignores second-order terms (FOMAML).

    Returns:
        Adapted parameters ``phi``; gradients of any loss of ``phi`` flow back to ``params``
        (and to ``lr`` when it is learned).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if isinstance(lr, Mapping):
        missing = set(params) - set(lr)
        if missing:
            raise ValueError(f"learned learning rates are missing for parameters {sorted(missing)}")
    phi = dict(params)
    for _ in range(steps):
        phi = gradient_step(phi, loss_fn(phi), lr, first_order=first_order)
    return phi


class LearnedLearningRates(nn.Module):
    """Per-parameter learning rates of Meta-SGD, one tensor shaped like each parameter.

    Args:
        params: the parameters the rates belong to.
        init: initial value of every rate (Li et al. draw them from U[0.005, 0.1]; a constant is common).
    """

    def __init__(self, params: Mapping[str, torch.Tensor], init: float = 0.01) -> None:
        super().__init__()
        self._names = list(params)
        self.rates = nn.ParameterList(
            [nn.Parameter(torch.full_like(p.detach(), float(init))) for p in params.values()]
        )

    def as_dict(self) -> Params:
        """The rates keyed by parameter name, ready for ``adapt(lr=...)``."""
        return dict(zip(self._names, self.rates, strict=True))
