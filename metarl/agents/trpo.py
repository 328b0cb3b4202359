"""Trust-region policy optimisation (Schulman et al. 2015): conjugate gradient on KL Hessian-vector products
and a KL-constrained backtracking line search.

The Hessian of the mean KL between the old policy and the new one, at the current parameters (where they
coincide), is ``J^T H J`` exactly: ``J`` is the Jacobian of the distribution parameters (means, log-stds or
logits) with respect to the policy parameters, ``H`` the Hessian of the KL with respect to the distribution
parameters; the curvature of the map itself drops out because the KL's gradient is zero there.
:func:`output_space_kl_hvp` computes products with this matrix from one Jacobian-vector and one
vector-Jacobian product (:class:`JacobianProducts`; :func:`functional_jacobian` gets them through *any*
differentiable map, including MAML's inner adaptation with its second-order terms), which is far cheaper
than differentiating the KL gradient again. :func:`kl_hessian_vector_product` is the
textbook double-backward form, kept as the reference the tests compare against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.func import grad, jvp, vjp

from metarl.agents.policies import MLPPolicy
from metarl.core import flatten, unflatten_like
from metarl.errors import TrainingDiverged

MatVec = Callable[[torch.Tensor], torch.Tensor]


def conjugate_gradient(
    matvec: MatVec, b: torch.Tensor, iterations: int = 10, residual_tol: float = 1e-10
) -> torch.Tensor:
    """Approximately solve ``A x = b`` for a symmetric positive-definite ``A`` given only ``x -> A x``."""
    return conjugate_gradient_with_product(matvec, b, iterations, residual_tol)[0]


def conjugate_gradient_with_product(
    matvec: MatVec, b: torch.Tensor, iterations: int = 10, residual_tol: float = 1e-10
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`conjugate_gradient` that also returns ``A x`` (as ``b`` minus the final residual, for free)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rdotr = torch.dot(r, r)
    for _ in range(iterations):
        if rdotr.item() < residual_tol:
            break
        z = matvec(p)
        alpha = rdotr / torch.dot(p, z)
        x = x + alpha * p
        r = r - alpha * z
        new_rdotr = torch.dot(r, r)
        p = r + (new_rdotr / rdotr) * p
        rdotr = new_rdotr
    return x.detach(), (b - r).detach()


def kl_hessian_vector_product(kl: torch.Tensor, params: Sequence[torch.Tensor]) -> MatVec:
    """``v -> (d^2 kl / d params^2) v`` by double backward (``kl`` must be built with a full graph)."""
    params = list(params)
    kl_grads = flatten(torch.autograd.grad(kl, params, create_graph=True, materialize_grads=True))

    def matvec(vector: torch.Tensor) -> torch.Tensor:
        product = torch.autograd.grad(
            torch.dot(kl_grads, vector), params, retain_graph=True, materialize_grads=True
        )
        return flatten(product).detach()

    return matvec


@dataclass
class JacobianProducts:
    """Products with the Jacobian ``J`` of a map from parameters to distribution parameters, at one point.

    Attributes:
        outputs: the map's value (detached).
        jvp: flat parameter vector ``v`` -> ``J v`` (a tuple shaped like ``outputs``).
        vjp: output cotangents (shaped like ``outputs``) -> flat ``J^T c``.
    """

    outputs: tuple[torch.Tensor, ...]
    jvp: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
    vjp: Callable[[tuple[torch.Tensor, ...]], torch.Tensor]


def functional_jacobian(
    outputs_fn: Callable[..., tuple[torch.Tensor, ...]], params: Sequence[torch.Tensor]
) -> JacobianProducts:
    """Jacobian products of ``outputs_fn(*params)`` with ``torch.func``: works through *any* differentiable map,
    including an inner gradient step (which must then use ``torch.func.grad``)."""
    params = tuple(p.detach() for p in params)
    outputs, vjp_fn = vjp(outputs_fn, *params)

    def jacobian_vector(vector: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tangents = tuple(unflatten_like(vector, dict(enumerate(params))).values())
        return jvp(outputs_fn, params, tangents)[1]

    def vector_jacobian(cotangents: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return flatten(vjp_fn(cotangents)).detach()

    return JacobianProducts(tuple(o.detach() for o in outputs), jacobian_vector, vector_jacobian)


OutputProduct = Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]


def output_space_kl_hvp(
    jacobian: JacobianProducts,
    kl_of_outputs: Callable[[tuple[torch.Tensor, ...]], torch.Tensor],
    output_curvature: OutputProduct | None = None,
) -> MatVec:
    """Exact KL Hessian-vector products ``J^T H J v`` at a point where the new policy equals the old one.

    Args:
        jacobian: products with the Jacobian of the distribution parameters w.r.t. the policy parameters.
        kl_of_outputs: mean KL from the old policy to the distribution given by the outputs; its gradient
            must vanish at ``jacobian.outputs``.
        output_curvature: ``H`` (the Hessian of ``kl_of_outputs`` at ``jacobian.outputs``) applied to output
            tangents, when known in closed form (:meth:`MLPPolicy.kl_hessian_product`); by default it is
            differentiated from ``kl_of_outputs`` (forward over reverse).
    """
    if output_curvature is None:
        kl_grad = grad(kl_of_outputs)

        def output_curvature(tangents: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            return jvp(kl_grad, (jacobian.outputs,), (tangents,))[1]

    def matvec(vector: torch.Tensor) -> torch.Tensor:
        return jacobian.vjp(output_curvature(jacobian.jvp(vector)))

    return matvec


def mean_kl_curvature(
    policy: MLPPolicy, old_outputs: tuple[torch.Tensor, ...], mask: torch.Tensor
) -> OutputProduct:
    """The Hessian, in distribution-parameter space, of the mean over tasks of each task's masked mean KL,
    at ``new = old``: per-sample closed-form KL Hessians weighted like :func:`~metarl.agents.episodes.masked_task_mean`."""
    sample_dims = tuple(range(1, mask.dim()))
    weights = (mask / (mask.sum(sample_dims, keepdim=True).clamp_min(1.0) * mask.shape[0])).unsqueeze(-1)

    def product(tangents: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(weights * h for h in policy.kl_hessian_product(old_outputs, tangents))

    return product


@dataclass
class TRPOResult:
    """What one TRPO step did.

    Attributes:
        loss_before: surrogate loss at the old parameters.
        loss_after: surrogate loss at the accepted parameters (``loss_before`` if rejected).
        kl: mean KL between old and accepted policies (0 if rejected).
        accepted: whether a step was accepted.
        step_fraction: ``ratio ** k`` of the accepted backtracking step (0 if rejected).
        grad_norm: norm of the surrogate gradient.
    """

    loss_before: float
    loss_after: float
    kl: float
    accepted: bool
    step_fraction: float
    grad_norm: float


def trpo_step(
    parameters: Sequence[torch.Tensor],
    loss_before: float,
    loss_gradient: torch.Tensor,
    kl_hvp: MatVec,
    evaluate: Callable[[], tuple[float, float]],
    *,
    max_kl: float = 0.01,
    cg_iterations: int = 10,
    cg_damping: float = 1e-5,
    line_search_steps: int = 15,
    line_search_ratio: float = 0.8,
) -> TRPOResult:
    """Update ``parameters`` in place with one KL-constrained natural-gradient step.

    Args:
        parameters: the tensors being optimised (changed in place).
        loss_before: surrogate loss at the current parameters (must be finite).
        loss_gradient: its flat gradient.
        kl_hvp: ``v -> H v`` with ``H`` the Hessian of the mean KL at the current parameters.
        evaluate: ``() -> (loss, kl)`` at the parameters' current values (called during the line search).
        max_kl: trust-region radius on the mean KL.
        cg_iterations: conjugate-gradient iterations.
        cg_damping: damping added to the Hessian-vector product.
        line_search_steps: backtracking steps before giving up.
        line_search_ratio: step shrink factor of the backtracking.

    Returns:
        A :class:`TRPOResult`. A step is accepted only if the loss is finite and decreases and the KL is finite
        and at most ``max_kl``; when no step is accepted the parameters are restored to their old values.
    """
    params = list(parameters)
    if not math.isfinite(loss_before):
        raise TrainingDiverged(
            f"the TRPO surrogate loss is {loss_before} at the current parameters: the episodes or the adaptation "
            "gave non-finite numbers (a step size too large?)"
        )
    gradient = loss_gradient.detach()
    result = TRPOResult(loss_before, loss_before, 0.0, False, 0.0, float(gradient.norm()))
    if not torch.isfinite(gradient).all():
        return result

    def damped(vector: torch.Tensor) -> torch.Tensor:
        return kl_hvp(vector) + cg_damping * vector

    direction, curvature_times_direction = conjugate_gradient_with_product(damped, gradient, cg_iterations)
    shs = 0.5 * torch.dot(direction, curvature_times_direction)
    if not (torch.isfinite(shs) and shs.item() > 0):
        return result
    # The largest step along the natural gradient whose quadratic KL model 0.5 s^T H s equals max_kl.
    full_step = direction * torch.sqrt(max_kl / shs)
    old = [p.detach().clone() for p in params]
    fraction = 1.0
    for _ in range(line_search_steps):
        _assign(params, old, full_step, fraction)
        loss, kl = evaluate()
        if math.isfinite(loss) and math.isfinite(kl) and loss < loss_before and kl <= max_kl:
            return TRPOResult(loss_before, loss, kl, True, fraction, result.grad_norm)
        fraction *= line_search_ratio
    _assign(params, old, full_step, 0.0)
    return result


def _assign(
    params: Sequence[torch.Tensor], old: Sequence[torch.Tensor], step: torch.Tensor, scale: float
) -> None:
    offset = 0
    with torch.no_grad():
        for p, p_old in zip(params, old, strict=True):
            n = p.numel()
            p.copy_(p_old - scale * step[offset : offset + n].view_as(p))
            offset += n
