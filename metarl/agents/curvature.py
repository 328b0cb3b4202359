"""The derivatives MAML-TRPO takes of its inner VPG step: autograd for every policy, or closed form as an accelerator.

The outer TRPO step needs from the inner loop each task's inner gradient, products with each task's Hessian of
the inner loss, and products with the Jacobian of the policy's distribution parameters.
:class:`AutogradDerivatives` takes them from autograd and ``torch.func`` and works for every policy: it is the
reference. :class:`ClosedFormDerivatives` computes the same quantities in closed form for Gaussian MLP policies
with tanh or ReLU hidden layers (:mod:`metarl.agents.gaussian_mlp_products`), several times faster. A run
chooses one, once, from ``inner.curvature`` (:func:`choose_derivatives`); the tests check that both choices give
the same meta-iteration.

Parameters are stacked per task (leading axis = task) unless said otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol

import torch
from torch.func import jvp

from metarl.agents.config import InnerConfig, InnerObjective
from metarl.agents.episodes import Episodes
from metarl.agents.gaussian_mlp_products import (
    GaussianMLPLinearization,
    GaussianVPGDerivatives,
    supports_closed_form,
)
from metarl.agents.inner import inner_gradients, inner_losses
from metarl.agents.policies import MLPPolicy
from metarl.agents.trpo import JacobianProducts, functional_jacobian
from metarl.core import Params, flatten, stack_over_tasks, unflatten_like
from metarl.errors import UserError


class InnerCurvature(NamedTuple):
    """Each task's inner gradient at the parameters, and products with each task's Hessian ``H_i x_i``.

    Attributes:
        gradient: the per-task gradients (detached).
        hessian_products: per-task directions -> per-task Hessian products, both keyed like the parameters.
    """

    gradient: Params
    hessian_products: Callable[[Params], Params]


class Linearization(NamedTuple):
    """The policy's distribution parameters at per-task parameters, with products with their Jacobian.

    Attributes:
        outputs: the distribution parameters (detached).
        jvp: per-task parameter tangents -> output tangents.
        vjp: output cotangents -> per-task parameter gradients.
    """

    outputs: tuple[torch.Tensor, ...]
    jvp: Callable[[Params], tuple[torch.Tensor, ...]]
    vjp: Callable[[tuple[torch.Tensor, ...]], Params]


class InnerDerivatives(Protocol):
    """What MAML-TRPO needs to differentiate through its inner step (:class:`AutogradDerivatives`,
    :class:`ClosedFormDerivatives`)."""

    def gradient(self, params: Params, episodes: Episodes, advantages: torch.Tensor) -> Params:
        """Each task's inner gradient ``{name: (T, ...)}``: its value (autograd's can also be differentiated)."""
        ...

    def curvature(
        self, params: Params, episodes: Episodes, advantages: torch.Tensor, second_order: bool
    ) -> InnerCurvature:
        """Each task's inner gradient and, if ``second_order``, products with its inner loss's Hessian."""
        ...

    def linearize(self, params: Params, observations: torch.Tensor) -> Linearization:
        """The distribution parameters at ``observations`` ``(T, E, H, obs)``, ready for Jacobian products."""
        ...

    def policy_jacobian(
        self, theta: Mapping[str, torch.Tensor], observations: torch.Tensor
    ) -> JacobianProducts:
        """Jacobian products of the distribution parameters for ``theta`` shared by every task (unstacked; flat
        vectors in ``theta``'s order): plain TRPO, with no inner step."""
        ...


class AutogradDerivatives:
    """The inner step's derivatives through autograd and ``torch.func``, for every policy: the reference.

    Args:
        policy: the policy.
        objective: the inner loss (:func:`metarl.agents.inner.inner_losses`), whose Hessian the products take.
        dice_lambda: Loaded DiCE's discount, for ``objective="dice"``.
    """

    def __init__(
        self, policy: MLPPolicy, objective: InnerObjective = "log_likelihood", dice_lambda: float = 1.0
    ) -> None:
        self.policy = policy
        self.objective = objective
        self.dice_lambda = dice_lambda

    def gradient(self, params: Params, episodes: Episodes, advantages: torch.Tensor) -> Params:
        return inner_gradients(self.policy, params, episodes, advantages, self.objective, self.dice_lambda)

    def curvature(
        self, params: Params, episodes: Episodes, advantages: torch.Tensor, second_order: bool
    ) -> InnerCurvature:
        """Keeps the graph of the inner gradient: ``H_i x`` for all tasks at once is one reverse pass through it
        (``H`` is symmetric, so its vector-Jacobian product is its Hessian-vector product)."""
        names = list(params)
        with torch.enable_grad():
            leaves = [params[n].clone().requires_grad_(True) for n in names]
            losses = inner_losses(
                self.policy,
                dict(zip(names, leaves, strict=True)),
                episodes,
                advantages,
                self.objective,
                self.dice_lambda,
            )
            grads = torch.autograd.grad(losses.sum(), leaves, create_graph=second_order)

        def hessian_products(vectors: Params) -> Params:
            products = torch.autograd.grad(grads, leaves, [vectors[n] for n in names], retain_graph=True)
            return dict(zip(names, products, strict=True))

        return InnerCurvature({n: g.detach() for n, g in zip(names, grads, strict=True)}, hessian_products)

    def linearize(self, params: Params, observations: torch.Tensor) -> Linearization:
        names = list(params)

        def outputs_of(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return self.policy.distribution_parameters(observations, dict(zip(names, values, strict=True)))

        with torch.enable_grad():
            leaves = [params[n].detach().requires_grad_(True) for n in names]
            outputs = outputs_of(*leaves)

        def jacobian_vector(tangents: Params) -> tuple[torch.Tensor, ...]:
            primals = tuple(params[n].detach() for n in names)
            return jvp(outputs_of, primals, tuple(tangents[n] for n in names))[1]

        def vector_jacobian(cotangents: tuple[torch.Tensor, ...]) -> Params:
            grads = torch.autograd.grad(
                outputs, leaves, cotangents, retain_graph=True, materialize_grads=True
            )
            return dict(zip(names, grads, strict=True))

        return Linearization(tuple(o.detach() for o in outputs), jacobian_vector, vector_jacobian)

    def policy_jacobian(
        self, theta: Mapping[str, torch.Tensor], observations: torch.Tensor
    ) -> JacobianProducts:
        names = list(theta)

        def outputs_of(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return self.policy.distribution_parameters(observations, dict(zip(names, values, strict=True)))

        return functional_jacobian(outputs_of, list(theta.values()))


class ClosedFormDerivatives:
    """The inner step's derivatives in closed form, with every vector-independent intermediate cached, for a
    Gaussian MLP policy with tanh or ReLU hidden layers (:mod:`metarl.agents.gaussian_mlp_products`).

    Args:
        policy: the policy (see :func:`~metarl.agents.gaussian_mlp_products.supports_closed_form`).
        objective: the inner loss whose Hessian the products take.
        dice_lambda: Loaded DiCE's discount, for ``objective="dice"``.
    """

    def __init__(
        self, policy: MLPPolicy, objective: InnerObjective = "log_likelihood", dice_lambda: float = 1.0
    ) -> None:
        if not supports_closed_form(policy):
            raise UserError(
                "inner.curvature=closed_form needs a Gaussian MLP policy with tanh or relu hidden layers, got a "
                f"{type(policy).__name__} with {policy.activation_name}: set inner.curvature=auto or autograd"
            )
        self.policy = policy
        self.objective = objective
        self.dice_lambda = dice_lambda

    def gradient(self, params: Params, episodes: Episodes, advantages: torch.Tensor) -> Params:
        # Every inner objective has the same gradient: the plain VPG loss's needs the fewest intermediates.
        return GaussianVPGDerivatives(self.policy, params, episodes, advantages, second_order=False).gradient

    def curvature(
        self, params: Params, episodes: Episodes, advantages: torch.Tensor, second_order: bool
    ) -> InnerCurvature:
        derivatives = GaussianVPGDerivatives(
            self.policy, params, episodes, advantages, second_order, self.objective, self.dice_lambda
        )
        return InnerCurvature(derivatives.gradient, derivatives.hvp)

    def linearize(self, params: Params, observations: torch.Tensor) -> Linearization:
        linearization = GaussianMLPLinearization(self.policy, params, observations)

        def vector_jacobian(cotangents: tuple[torch.Tensor, ...]) -> Params:
            return linearization.vjp(*cotangents)

        return Linearization(linearization.outputs(), linearization.jvp, vector_jacobian)

    def policy_jacobian(
        self, theta: Mapping[str, torch.Tensor], observations: torch.Tensor
    ) -> JacobianProducts:
        names = list(theta)
        stacked = stack_over_tasks({n: theta[n].detach() for n in names}, observations.shape[0], copy=True)
        linearization = GaussianMLPLinearization(self.policy, stacked, observations)

        def jacobian_vector(vector: torch.Tensor) -> tuple[torch.Tensor, ...]:
            v = unflatten_like(vector, theta)
            return linearization.jvp({n: v[n].unsqueeze(0).expand_as(stacked[n]) for n in names})

        def vector_jacobian(cotangents: tuple[torch.Tensor, ...]) -> torch.Tensor:
            grads = linearization.vjp(*cotangents)
            return flatten([grads[n].sum(0) for n in names])

        return JacobianProducts(linearization.outputs(), jacobian_vector, vector_jacobian)


def choose_derivatives(policy: MLPPolicy, inner: InnerConfig) -> InnerDerivatives:
    """The derivatives of a run, from ``inner.curvature``: ``closed_form``, ``autograd``, or ``auto`` (closed form
    where the policy supports it).

    Raises:
        ValueError: ``closed_form`` for a policy without closed-form derivatives.
    """
    if inner.curvature == "autograd" or (inner.curvature == "auto" and not supports_closed_form(policy)):
        return AutogradDerivatives(policy, inner.objective, inner.dice_lambda)
    return ClosedFormDerivatives(policy, inner.objective, inner.dice_lambda)
