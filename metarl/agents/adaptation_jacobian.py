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
steps, Meta-SGD's learned rates). With ``first_order`` the adaptation Jacobian is the identity.
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
    lr: float,
    post_observations: torch.Tensor,
    first_order: bool = False,
) -> JacobianProducts:
    """Products with the Jacobian of ``policy.distribution_parameters(post_observations, phi(theta))``.

    Args:
        policy: the policy.
        theta: the meta-parameters (unstacked).
        inner_episodes: the pre-adaptation episodes of every task (stacked by task).
        inner_advantages: their advantages.
        lr: the inner step size.
        post_observations: the post-adaptation observations ``(T, E, H, obs)``.
        first_order: drop the second-order term (``d phi / d theta = I``).
    """
    names = list(theta)
    num_tasks = inner_episodes.num_tasks
    with torch.enable_grad():
        stacked = [
            theta[n].detach().unsqueeze(0).expand(num_tasks, *theta[n].shape).clone().requires_grad_(True)
            for n in names
        ]
        loss = vpg_losses(policy, dict(zip(names, stacked, strict=True)), inner_episodes, inner_advantages)
        inner_grads = torch.autograd.grad(loss.sum(), stacked, create_graph=not first_order)
        phi = [(p - lr * g).detach().requires_grad_(True) for p, g in zip(stacked, inner_grads, strict=True)]
        outputs = policy.distribution_parameters(post_observations, dict(zip(names, phi, strict=True)))

    def adaptation_product(vectors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``(I - lr H_i) x_i`` for every task."""
        if first_order:
            return list(vectors)
        hessian_products = torch.autograd.grad(inner_grads, stacked, vectors, retain_graph=True)
        return [x - lr * h for x, h in zip(vectors, hessian_products, strict=True)]

    def post_outputs(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return policy.distribution_parameters(post_observations, dict(zip(names, values, strict=True)))

    phi_values = tuple(p.detach() for p in phi)

    def jacobian_vector(vector: torch.Tensor) -> tuple[torch.Tensor, ...]:
        v = unflatten_like(vector, theta)
        tangents = adaptation_product(
            [v[n].unsqueeze(0).expand_as(p) for n, p in zip(names, phi, strict=True)]
        )
        return jvp(post_outputs, phi_values, tuple(tangents))[1]

    def vector_jacobian(cotangents: tuple[torch.Tensor, ...]) -> torch.Tensor:
        per_task = torch.autograd.grad(outputs, phi, cotangents, retain_graph=True, materialize_grads=True)
        return flatten([g.sum(0) for g in adaptation_product(per_task)]).detach()

    return JacobianProducts(tuple(o.detach() for o in outputs), jacobian_vector, vector_jacobian)
