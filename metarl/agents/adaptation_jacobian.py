"""MAML-TRPO's inner loop, one object per meta-iteration: the adapted parameters to sample with, and products
with the Jacobian of the post-adaptation policy with respect to the meta-parameters, for the TRPO step.

A run picks the class once, from ``inner.steps`` (:func:`adaptation_for`), and the derivatives once, from
``inner.curvature`` (:func:`metarl.agents.curvature.choose_derivatives`):

- :class:`Adaptation`, any number of steps, is the reference: ``phi(theta)`` is written with ``torch.func.grad``
  and :func:`metarl.core.sgd_step`, and ``torch.func`` takes its Jacobian products through every step.
- :class:`OneStepAdaptation`, MAML-TRPO's usual single step, uses its structure. Task ``i``'s parameters are
  ``phi_i = theta - lr * grad L_i(theta)``, so ``d phi_i / d theta = I - lr * H_i`` with ``H_i`` the Hessian of
  the task's inner loss: a *symmetric* matrix. The Jacobian of the post-adaptation distribution parameters is
  ``J_i = F_i (I - lr H_i)`` (``F_i`` the policy's Jacobian at ``phi_i`` on the post-adaptation observations),
  and ``J v = F_i (v - lr H_i v)``, ``J^T c = sum_i (I - lr H_i) F_i^T c_i``: both exact, several times faster
  than ``torch.func``'s forward-over-reverse JVP and reverse-over-reverse VJP through the step. Meta-SGD's rates
  ``D`` (one per parameter, shared by the tasks) are meta-parameters too: ``phi_i = theta - D * g_i``, so
  ``d phi_i = (I - D H_i) d theta - g_i * d D`` and the transpose is ``(c_i - H_i (D c_i), -g_i c_i)``: the same
  Hessian products. With ``first_order`` the adaptation's Jacobian is the identity.
- :class:`NoAdaptation`, zero steps, is plain TRPO on the task mixture (the pretrained and oracle baselines).

The meta-parameters are ``theta``'s parameters in order, followed by Meta-SGD's rates in the same order when the
inner rate is learned; flat vectors of Jacobian products follow that order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import torch

from metarl.agents.config import InnerConfig
from metarl.agents.curvature import AutogradDerivatives, InnerCurvature, InnerDerivatives, choose_derivatives
from metarl.agents.episodes import Episodes
from metarl.agents.policies import MLPPolicy
from metarl.agents.trpo import JacobianProducts, functional_jacobian
from metarl.core import LearningRate, Params, flatten, sgd_step, stack_over_tasks, unflatten_like


class Adaptation:
    """Every task's VPG steps from ``theta``, ``phi <- phi - lr * grad L_i(phi)``, each on fresh episodes.

    Args:
        policy: the policy.
        inner: the inner-loop config (``first_order``, ``objective``, ``dice_lambda``).
        derivatives: how the steps' gradients are computed.
        theta: the meta-parameters (unstacked).
        lr: the inner step size, or Meta-SGD's rates keyed like ``theta``.
        num_tasks: the tasks of the meta-batch.

    Attributes:
        params: the per-task parameters after the steps taken so far (detached, stacked by task): the policy to
            sample the next episodes with.
    """

    def __init__(
        self,
        policy: MLPPolicy,
        inner: InnerConfig,
        derivatives: InnerDerivatives,
        theta: Mapping[str, torch.Tensor],
        lr: LearningRate,
        num_tasks: int,
    ) -> None:
        self.policy = policy
        self.first_order = inner.first_order
        self.derivatives = derivatives
        # The reference differentiates autograd's inner gradient; the run's derivatives give values (and, to
        # OneStepAdaptation, the curvature).
        self.reference = AutogradDerivatives(policy, inner.objective, inner.dice_lambda)
        self.theta = {n: p.detach() for n, p in theta.items()}
        self.lr = lr
        self.num_tasks = num_tasks
        self.batches: list[tuple[Episodes, torch.Tensor]] = []  # each step's episodes and advantages
        self.params = stack_over_tasks(self.theta, num_tasks, copy=True)

    def step(self, episodes: Episodes, advantages: torch.Tensor) -> None:
        """One inner step of every task on its ``episodes`` (sampled with :attr:`params`) and their advantages."""
        self.batches.append((episodes, advantages))
        with torch.no_grad():
            self.params = sgd_step(
                self.params, self.derivatives.gradient(self.params, episodes, advantages), self.lr
            )

    def adapted_params(self, theta: Mapping[str, torch.Tensor], lr: LearningRate) -> Params:
        """``phi(theta, lr)`` after the steps taken so far on their episodes, differentiable: autograd and
        ``torch.func`` transforms can be taken through it (second order unless ``inner.first_order``)."""
        return self._adapt(theta, lr, self.reference.gradient, self.first_order)

    def adapted_values(self, theta: Mapping[str, torch.Tensor], lr: LearningRate) -> Params:
        """The value of :meth:`adapted_params`, with the run's derivatives: what the line search evaluates."""
        with torch.no_grad():
            return self._adapt(theta, lr, self.derivatives.gradient, self.first_order)

    def _adapt(
        self,
        theta: Mapping[str, torch.Tensor],
        lr: LearningRate,
        gradient: Callable[[Params, Episodes, torch.Tensor], Params],
        first_order: bool,
    ) -> Params:
        if not self.batches:  # the shared parameters themselves: one network for every task
            return dict(theta)
        phi = stack_over_tasks(theta, self.num_tasks, copy=True)
        for episodes, advantages in self.batches:
            grads = gradient(phi, episodes, advantages)
            if first_order:
                grads = {n: g.detach() for n, g in grads.items()}
            phi = sgd_step(phi, grads, lr)
        return phi

    def jacobian(self, observations: torch.Tensor) -> JacobianProducts:
        """Products with the Jacobian of ``policy.distribution_parameters(observations, phi(theta, lr))`` with
        respect to the meta-parameters.

        Args:
            observations: the post-adaptation observations ``(T, E, H, obs)``.
        """
        names = list(self.theta)
        learned = isinstance(self.lr, Mapping)

        def outputs_of(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
            theta = dict(zip(names, values[: len(names)], strict=True))
            lr = dict(zip(names, values[len(names) :], strict=True)) if learned else self.lr
            return self.policy.distribution_parameters(observations, self.adapted_params(theta, lr))

        rates = list(self.lr.values()) if learned else []
        return functional_jacobian(outputs_of, [*self.theta.values(), *rates])


class OneStepAdaptation(Adaptation):
    """One inner step, whose Jacobian products use the symmetry of each task's Hessian (see the module).

    The inner gradients and the Hessian products' cached intermediates are computed once, by :meth:`step`: the
    same object gives the adapted parameters to sample with and, once those episodes exist, the outer loop's
    Jacobian products.
    """

    curvature: InnerCurvature

    def step(self, episodes: Episodes, advantages: torch.Tensor) -> None:
        if self.batches:
            raise RuntimeError("OneStepAdaptation takes a single inner step")
        self.batches.append((episodes, advantages))
        self.curvature = self.derivatives.curvature(self.params, episodes, advantages, not self.first_order)
        self.params = {
            n: p.detach() for n, p in sgd_step(self.params, self.curvature.gradient, self.lr).items()
        }

    def _rate(self, name: str) -> float | torch.Tensor:
        return self.lr[name] if isinstance(self.lr, Mapping) else self.lr

    def hessian_products(self, vectors: Params) -> Params:
        """``H_i x_i`` for every task (zero to first order)."""
        if self.first_order:
            return {n: torch.zeros_like(x) for n, x in vectors.items()}
        return self.curvature.hessian_products(vectors)

    def jacobian(self, observations: torch.Tensor) -> JacobianProducts:
        names, phi, inner_grads = list(self.theta), self.params, self.curvature.gradient
        learned = isinstance(self.lr, Mapping)
        post = self.derivatives.linearize(phi, observations)
        layout = dict(self.theta)
        if learned:
            layout.update({f"lr.{n}": self.theta[n] for n in names})

        def jacobian_vector(vector: torch.Tensor) -> tuple[torch.Tensor, ...]:
            v = unflatten_like(vector, layout)
            directions = {n: v[n].unsqueeze(0).expand_as(phi[n]) for n in names}
            products = self.hessian_products(directions)
            tangents = {n: directions[n] - self._rate(n) * products[n] for n in names}
            if learned:
                tangents = {n: tangents[n] - inner_grads[n] * v[f"lr.{n}"] for n in names}
            return post.jvp(tangents)

        def vector_jacobian(cotangents: tuple[torch.Tensor, ...]) -> torch.Tensor:
            per_task = post.vjp(cotangents)
            products = self.hessian_products({n: self._rate(n) * per_task[n] for n in names})
            theta_part = [(per_task[n] - products[n]).sum(0) for n in names]
            if not learned:
                return flatten(theta_part).detach()
            rate_part = [-(inner_grads[n] * per_task[n]).sum(0) for n in names]
            return flatten(theta_part + rate_part).detach()

        return JacobianProducts(post.outputs, jacobian_vector, vector_jacobian)


class NoAdaptation(Adaptation):
    """No inner step: the policy's own Jacobian (in closed form when the run's derivatives have it)."""

    def step(self, episodes: Episodes, advantages: torch.Tensor) -> None:
        raise RuntimeError("NoAdaptation takes no inner step (inner.steps=0)")

    def jacobian(self, observations: torch.Tensor) -> JacobianProducts:
        return self.derivatives.policy_jacobian(self.theta, observations)


AdaptationFactory = Callable[[Mapping[str, torch.Tensor], LearningRate, int], Adaptation]


def adaptation_for(
    policy: MLPPolicy, inner: InnerConfig, derivatives: InnerDerivatives | None = None
) -> AdaptationFactory:
    """The adaptation of every meta-iteration of a run, chosen once: its class from ``inner.steps``, its
    derivatives from ``inner.curvature`` (or ``derivatives``, the run's, when given). Call the result with
    ``(theta, lr, num_tasks)``.

    Raises:
        ValueError: ``inner.curvature=closed_form`` for a policy without closed-form derivatives.
    """
    kind = {0: NoAdaptation, 1: OneStepAdaptation}.get(inner.steps, Adaptation)
    derivatives = choose_derivatives(policy, inner) if derivatives is None else derivatives
    return functools.partial(kind, policy, inner, derivatives)
