"""Fast Jacobian products through one VPG adaptation step, for MAML-TRPO's outer loop.

After one inner step with a scalar rate, task ``i``'s parameters are ``phi_i = theta - lr * grad L_i(theta)``,
so ``d phi_i / d theta = I - lr * H_i`` with ``H_i`` the Hessian of the task's inner loss: a *symmetric*
matrix. The Jacobian of the post-adaptation distribution parameters is ``J_i = F_i (I - lr H_i)`` (``F_i`` the
policy's Jacobian at ``phi_i`` on the post-adaptation observations), and

- ``J v = F_i (v - lr H_i v)``,
- ``J^T c = sum_i (I - lr H_i) F_i^T c_i``,

both exact (second order). ``H_i x`` for all tasks at once is one reverse pass through the saved graph of the
inner gradient (``H`` is symmetric, so its vector-Jacobian product is its Hessian-vector product). This is
about twice as fast as ``torch.func``'s forward-over-reverse JVP plus reverse-over-reverse VJP through the
adaptation (:func:`metarl.agents.trpo.functional_jacobian`), which remains the general path (several inner
steps). With ``first_order`` the adaptation Jacobian is the identity.

Meta-SGD's learned rates ``D`` (one per parameter, shared by the tasks) are meta-parameters too:
``phi_i = theta - D * g_i``, so ``d phi_i = (I - D H_i) d theta - g_i * d D`` and the transpose is
``(c_i - H_i (D c_i), -g_i c_i)``: the same Hessian products.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch.func import jvp

from metarl.agents.episodes import Episodes
from metarl.agents.inner import vpg_losses
from metarl.agents.policies import MLPPolicy
from metarl.agents.trpo import JacobianProducts
from metarl.core import flatten, unflatten_like


def one_step_adaptation_jacobian(
    policy: MLPPolicy,
    theta: Mapping[str, torch.Tensor],
    inner_episodes: Episodes,
    inner_advantages: torch.Tensor,
    lr: float | Mapping[str, torch.Tensor],
    post_observations: torch.Tensor,
    first_order: bool = False,
) -> JacobianProducts:
    """Products with the Jacobian of ``policy.distribution_parameters(post_observations, phi(theta))``.

    The flat vectors are ``theta``'s parameters in order, followed by the rates in the same order when ``lr``
    holds Meta-SGD's per-parameter rates.

    Args:
        policy: the policy.
        theta: the meta-parameters (unstacked).
        inner_episodes: the pre-adaptation episodes of every task (stacked by task).
        inner_advantages: their advantages.
        lr: the inner step size, or Meta-SGD's rates keyed like ``theta``.
        post_observations: the post-adaptation observations ``(T, E, H, obs)``.
        first_order: drop the second-order term (``d phi / d theta = I``).
    """
    names = list(theta)
    num_tasks = inner_episodes.num_tasks
    learned = isinstance(lr, Mapping)
    rates = [lr[n].detach() if learned else lr for n in names]
    with torch.enable_grad():
        stacked = [
            theta[n].detach().unsqueeze(0).expand(num_tasks, *theta[n].shape).clone().requires_grad_(True)
            for n in names
        ]
        loss = vpg_losses(policy, dict(zip(names, stacked, strict=True)), inner_episodes, inner_advantages)
        inner_grads = torch.autograd.grad(loss.sum(), stacked, create_graph=not first_order)
        phi = [
            (p - r * g).detach().requires_grad_(True)
            for p, r, g in zip(stacked, rates, inner_grads, strict=True)
        ]
        outputs = policy.distribution_parameters(post_observations, dict(zip(names, phi, strict=True)))

    def hessian_products(vectors: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
        """``H_i x_i`` for every task (zero to first order)."""
        if first_order:
            return [torch.zeros_like(x) for x in vectors]
        return torch.autograd.grad(inner_grads, stacked, vectors, retain_graph=True)

    def post_outputs(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return policy.distribution_parameters(post_observations, dict(zip(names, values, strict=True)))

    phi_values = tuple(p.detach() for p in phi)
    theta_like = {n: theta[n] for n in names}
    if learned:
        theta_like.update({f"lr.{n}": theta[n] for n in names})

    def jacobian_vector(vector: torch.Tensor) -> tuple[torch.Tensor, ...]:
        v = unflatten_like(vector, theta_like)
        directions = [v[n].unsqueeze(0).expand_as(p) for n, p in zip(names, phi, strict=True)]
        tangents = [
            x - r * h for x, r, h in zip(directions, rates, hessian_products(directions), strict=True)
        ]
        if learned:
            tangents = [
                t - g.detach() * v[f"lr.{n}"] for t, g, n in zip(tangents, inner_grads, names, strict=True)
            ]
        return jvp(post_outputs, phi_values, tuple(tangents))[1]

    def vector_jacobian(cotangents: tuple[torch.Tensor, ...]) -> torch.Tensor:
        per_task = torch.autograd.grad(outputs, phi, cotangents, retain_graph=True, materialize_grads=True)
        scaled = [r * c for r, c in zip(rates, per_task, strict=True)]
        theta_part = [(c - h).sum(0) for c, h in zip(per_task, hessian_products(scaled), strict=True)]
        if not learned:
            return flatten(theta_part).detach()
        rate_part = [-(g.detach() * c).sum(0) for g, c in zip(inner_grads, per_task, strict=True)]
        return flatten(theta_part + rate_part).detach()

    return JacobianProducts(tuple(o.detach() for o in outputs), jacobian_vector, vector_jacobian)
