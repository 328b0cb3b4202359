"""Fast Jacobian products through one VPG adaptation step, for MAML-TRPO's outer loop.

After one inner step with a scalar rate, task ``i``'s parameters are ``phi_i = theta - lr * grad L_i(theta)``,
so ``d phi_i / d theta = I - lr * H_i`` with ``H_i`` the Hessian of the task's inner loss: a *symmetric*
matrix. The Jacobian of the post-adaptation distribution parameters is ``J_i = F_i (I - lr H_i)`` (``F_i`` the
policy's Jacobian at ``phi_i`` on the post-adaptation observations), and

- ``J v = F_i (v - lr H_i v)``,
- ``J^T c = sum_i (I - lr H_i) F_i^T c_i``,

both exact (second order). For a tanh or ReLU Gaussian MLP policy, ``H_i x``, ``F_i v`` and ``F_i^T c`` are
computed in closed form with every vector-independent intermediate cached
(:mod:`metarl.agents.gaussian_mlp_products`); for other policies ``H_i x`` for all tasks at once is one
reverse pass through the saved graph of the inner gradient (``H`` is symmetric, so its vector-Jacobian product
is its Hessian-vector product). Either is several times faster than ``torch.func``'s forward-over-reverse
JVP plus reverse-over-reverse VJP through the adaptation (:func:`metarl.agents.trpo.functional_jacobian`),
which remains the general path (several inner steps). With ``first_order`` the adaptation Jacobian is the identity.

Meta-SGD's learned rates ``D`` (one per parameter, shared by the tasks) are meta-parameters too:
``phi_i = theta - D * g_i``, so ``d phi_i = (I - D H_i) d theta - g_i * d D`` and the transpose is
``(c_i - H_i (D c_i), -g_i c_i)``: the same Hessian products.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch.func import jvp

from metarl.agents.config import InnerObjective
from metarl.agents.episodes import Episodes
from metarl.agents.gaussian_mlp_products import (
    GaussianMLPLinearization,
    GaussianVPGDerivatives,
    supports_closed_form,
)
from metarl.agents.inner import inner_losses
from metarl.agents.policies import MLPPolicy
from metarl.agents.trpo import JacobianProducts
from metarl.core import Params, flatten, stack_over_tasks, unflatten_like


class OneStepAdaptation:
    """One VPG step of every task from ``theta``, ``phi_i = theta - lr * grad L_i(theta)``, kept ready for products
    with the Jacobian of the post-adaptation policy (:meth:`jacobian`).

    The inner gradients and the Hessian products' cached intermediates are computed once, here: the same
    object gives the adapted parameters to sample with and, once those episodes exist, the outer loop's
    Jacobian products.

    Args:
        policy: the policy.
        theta: the meta-parameters (unstacked).
        inner_episodes: the pre-adaptation episodes of every task (stacked by task).
        inner_advantages: their advantages.
        lr: the inner step size, or Meta-SGD's rates keyed like ``theta``.
        first_order: drop the second-order term (``d phi / d theta = I``).
        objective: the inner loss whose Hessian ``H_i`` is (:func:`metarl.agents.inner.inner_losses`).
        dice_lambda: Loaded DiCE's discount, for ``objective="dice"``.

    Attributes:
        params: the adapted per-task parameters ``phi`` (detached, stacked by task).
    """

    def __init__(
        self,
        policy: MLPPolicy,
        theta: Mapping[str, torch.Tensor],
        inner_episodes: Episodes,
        inner_advantages: torch.Tensor,
        lr: float | Mapping[str, torch.Tensor],
        first_order: bool = False,
        objective: InnerObjective = "log_likelihood",
        dice_lambda: float = 1.0,
    ) -> None:
        self.policy = policy
        self.names = list(theta)
        self.theta = {n: theta[n].detach() for n in self.names}
        self.learned = isinstance(lr, Mapping)
        self.rates = [lr[n].detach() if self.learned else lr for n in self.names]
        self.first_order = first_order
        stacked = list(stack_over_tasks(self.theta, inner_episodes.num_tasks, copy=True).values())
        self.closed_form = supports_closed_form(policy)
        inner = _closed_form_inner if self.closed_form else _autograd_inner
        self.inner_grads, self._hessian_products = inner(
            policy,
            self.names,
            stacked,
            inner_episodes,
            inner_advantages,
            not first_order,
            objective,
            dice_lambda,
        )
        phi = [p - r * g for p, r, g in zip(stacked, self.rates, self.inner_grads, strict=True)]
        self.params: Params = {n: p.detach() for n, p in zip(self.names, phi, strict=True)}

    def hessian_products(self, vectors: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
        """``H_i x_i`` for every task (zero to first order)."""
        if self.first_order:
            return [torch.zeros_like(x) for x in vectors]
        return self._hessian_products(vectors)

    def jacobian(self, post_observations: torch.Tensor) -> JacobianProducts:
        """Products with the Jacobian of ``policy.distribution_parameters(post_observations, phi(theta))``.

        The flat vectors are ``theta``'s parameters in order, followed by the rates in the same order when
        ``lr`` holds Meta-SGD's per-parameter rates.

        Args:
            post_observations: the post-adaptation observations ``(T, E, H, obs)``.
        """
        names, rates, learned, inner_grads = self.names, self.rates, self.learned, self.inner_grads
        phi = [self.params[n] for n in names]
        post = _closed_form_post if self.closed_form else _autograd_post
        outputs, post_jvp, post_vjp = post(self.policy, names, phi, post_observations)
        theta_like = dict(self.theta)
        if learned:
            theta_like.update({f"lr.{n}": self.theta[n] for n in names})

        def jacobian_vector(vector: torch.Tensor) -> tuple[torch.Tensor, ...]:
            v = unflatten_like(vector, theta_like)
            directions = [v[n].unsqueeze(0).expand_as(p) for n, p in zip(names, phi, strict=True)]
            tangents = [
                x - r * h
                for x, r, h in zip(directions, rates, self.hessian_products(directions), strict=True)
            ]
            if learned:
                tangents = [
                    t - g * v[f"lr.{n}"] for t, g, n in zip(tangents, inner_grads, names, strict=True)
                ]
            return post_jvp(tangents)

        def vector_jacobian(cotangents: tuple[torch.Tensor, ...]) -> torch.Tensor:
            per_task = post_vjp(cotangents)
            scaled = [r * c for r, c in zip(rates, per_task, strict=True)]
            theta_part = [
                (c - h).sum(0) for c, h in zip(per_task, self.hessian_products(scaled), strict=True)
            ]
            if not learned:
                return flatten(theta_part).detach()
            rate_part = [-(g * c).sum(0) for g, c in zip(inner_grads, per_task, strict=True)]
            return flatten(theta_part + rate_part).detach()

        return JacobianProducts(outputs, jacobian_vector, vector_jacobian)


def policy_jacobian(
    policy: MLPPolicy, theta: Mapping[str, torch.Tensor], observations: torch.Tensor
) -> JacobianProducts:
    """Products with the Jacobian of ``policy.distribution_parameters(observations, theta)`` (no adaptation:
    plain TRPO), in closed form for a tanh or ReLU Gaussian MLP policy.

    Args:
        policy: the policy (see :func:`~metarl.agents.gaussian_mlp_products.supports_closed_form`).
        theta: the parameters (unstacked), shared by every task.
        observations: ``(T, E, H, obs)``.
    """
    names = list(theta)
    num_tasks = observations.shape[0]
    stacked = stack_over_tasks({n: theta[n].detach() for n in names}, num_tasks, copy=True)
    linearization = GaussianMLPLinearization(policy, stacked, observations)

    def jacobian_vector(vector: torch.Tensor) -> tuple[torch.Tensor, ...]:
        v = unflatten_like(vector, theta)
        return linearization.jvp({n: v[n].unsqueeze(0).expand_as(stacked[n]) for n in names})

    def vector_jacobian(cotangents: tuple[torch.Tensor, ...]) -> torch.Tensor:
        grads = linearization.vjp(*cotangents)
        return flatten([grads[n].sum(0) for n in names])

    return JacobianProducts(linearization.outputs(), jacobian_vector, vector_jacobian)


Products = Callable[[Sequence[torch.Tensor]], Sequence[torch.Tensor]]


def _closed_form_inner(
    policy, names, stacked, episodes, advantages, second_order, objective, dice_lambda
) -> tuple[list[torch.Tensor], Products]:
    params = dict(zip(names, stacked, strict=True))
    derivatives = GaussianVPGDerivatives(
        policy, params, episodes, advantages, second_order, objective, dice_lambda
    )

    def hessian_products(vectors: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
        products = derivatives.hvp(dict(zip(names, vectors, strict=True)))
        return [products[n] for n in names]

    return [derivatives.gradient[n] for n in names], hessian_products


def _autograd_inner(
    policy, names, stacked, episodes, advantages, second_order, objective, dice_lambda
) -> tuple[list[torch.Tensor], Products]:
    """The inner gradient with its graph saved: ``H_i x`` is one reverse pass through it (``H`` symmetric)."""
    with torch.enable_grad():
        leaves = [p.clone().requires_grad_(True) for p in stacked]
        params = dict(zip(names, leaves, strict=True))
        loss = inner_losses(policy, params, episodes, advantages, objective, dice_lambda)
        grads = torch.autograd.grad(loss.sum(), leaves, create_graph=second_order)

    def hessian_products(vectors: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
        return torch.autograd.grad(grads, leaves, vectors, retain_graph=True)

    return [g.detach() for g in grads], hessian_products


def _closed_form_post(policy, names, phi, observations):
    linearization = GaussianMLPLinearization(policy, dict(zip(names, phi, strict=True)), observations)

    def post_jvp(tangents: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return linearization.jvp(dict(zip(names, tangents, strict=True)))

    def post_vjp(cotangents: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        grads = linearization.vjp(*cotangents)
        return [grads[n] for n in names]

    return linearization.outputs(), post_jvp, post_vjp


def _autograd_post(policy, names, phi, observations):
    def post_outputs(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return policy.distribution_parameters(observations, dict(zip(names, values, strict=True)))

    with torch.enable_grad():
        leaves = [p.detach().requires_grad_(True) for p in phi]
        outputs = post_outputs(*leaves)

    def post_jvp(tangents: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return jvp(post_outputs, tuple(p.detach() for p in phi), tuple(tangents))[1]

    def post_vjp(cotangents: tuple[torch.Tensor, ...]) -> Sequence[torch.Tensor]:
        return torch.autograd.grad(outputs, leaves, cotangents, retain_graph=True, materialize_grads=True)

    return tuple(o.detach() for o in outputs), post_jvp, post_vjp
