"""A whole MAML-TRPO meta-iteration equals the textbook algorithm written as a plain per-task autograd loop.

The agent batches all tasks, computes its curvature in closed form and takes Jacobian products through the
inner step; the textbook form below (the structure of cbfinn/maml_rl and pytorch-maml-rl) loops over tasks,
differentiates the inner step with ``create_graph=True`` and gets KL Hessian-vector products by double
backward. Given the same episodes, both must move the meta-parameters to the same place: this ties every fast
path together, where the other tests check the pieces one by one.
"""

from __future__ import annotations

import pytest
import torch
from textbook_policy import EPISODES, HORIZON, TASKS, gaussian_policy, masked_mean, random_episodes
from torch.distributions import Normal, kl_divergence

from metarl.agents import MAMLTRPO, TrainConfig
from metarl.agents.baseline import LinearFeatureBaseline
from metarl.agents.config import InnerConfig, PolicyConfig, TRPOConfig
from metarl.agents.inner import compute_advantages


def _conjugate_gradient(
    matvec, b: torch.Tensor, iterations: int, residual_tol: float = 1e-10
) -> torch.Tensor:
    x, r, p = torch.zeros_like(b), b.clone(), b.clone()
    for _ in range(iterations):
        if r.dot(r) < residual_tol:  # rllab's stopping rule
            break
        z = matvec(p)
        alpha = r.dot(r) / p.dot(z)
        x, r_new = x + alpha * p, r - alpha * z
        p, r = r_new + (r_new.dot(r_new) / r.dot(r)) * p, r_new
    return x


def _textbook_step(theta, pre, post, pre_adv, post_adv, config: TrainConfig) -> list[torch.Tensor]:
    """The meta-parameters after one MAML-TRPO step, task by task with plain autograd (none of metarl's code)."""
    lr, trpo, first_order = config.inner.lr, config.trpo, config.inner.first_order
    params = [p.detach().clone().requires_grad_(True) for p in theta]

    def adapted(values, task, create_graph):
        pi = gaussian_policy(values, pre.observations[task])
        inner_loss = -masked_mean(pi.log_prob(pre.actions[task]).sum(-1) * pre_adv[task], pre.mask[task])
        grads = torch.autograd.grad(inner_loss, values, create_graph=create_graph and not first_order)
        return [v - lr * g for v, g in zip(values, grads, strict=True)]

    def surrogate_and_kl(values, old=None):
        losses, kls, olds = [], [], []
        for task in range(TASKS):
            pi = gaussian_policy(adapted(values, task, create_graph=old is None), post.observations[task])
            pi_old = old[task] if old is not None else Normal(pi.loc.detach(), pi.scale.detach())
            actions, mask = post.actions[task], post.mask[task]
            ratio = torch.exp(pi.log_prob(actions).sum(-1) - pi_old.log_prob(actions).sum(-1))
            losses.append(-masked_mean(ratio * post_adv[task], mask))
            kls.append(masked_mean(kl_divergence(pi_old, pi).sum(-1), mask))
            olds.append(pi_old)
        return sum(losses) / TASKS, sum(kls) / TASKS, olds

    loss, kl, olds = surrogate_and_kl(params)
    gradient = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params, retain_graph=True)])
    kl_grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(kl, params, create_graph=True)])

    def damped_hvp(vector):
        product = torch.autograd.grad(kl_grad.dot(vector), params, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in product]) + trpo.cg_damping * vector

    direction = _conjugate_gradient(damped_hvp, gradient, trpo.cg_iterations)
    full_step = direction * torch.sqrt(trpo.max_kl / (0.5 * direction.dot(damped_hvp(direction))))
    steps = torch.split(full_step, [p.numel() for p in params])
    fraction = 1.0
    for _ in range(trpo.line_search_steps):
        candidate = [
            (p - fraction * s.view_as(p)).detach().requires_grad_(True)
            for p, s in zip(params, steps, strict=True)
        ]
        new_loss, new_kl, _ = surrogate_and_kl(candidate, olds)
        if new_loss < loss and new_kl <= trpo.max_kl:
            return [c.detach() for c in candidate]
        fraction *= trpo.line_search_ratio
    return [p.detach() for p in params]


@pytest.mark.parametrize("first_order", [False, True])
def test_a_meta_iteration_equals_the_textbook_per_task_algorithm(first_order):
    config = TrainConfig(
        env="MetaRL/Navigation2D-v0",
        env_kwargs={"horizon": HORIZON},
        meta_batch_size=TASKS,
        episodes_per_task=EPISODES,
        policy=PolicyConfig(hidden_sizes=[8, 8]),
        inner=InnerConfig(lr=0.5, first_order=first_order),
        # A well-conditioned system: at the default damping (1e-5) conjugate gradient amplifies rounding
        # differences of 1e-16 in the two forms' products to about 1e-7 in the step; here they stay ~1e-10.
        trpo=TRPOConfig(cg_damping=0.1),
    )
    agent = MAMLTRPO(config)
    agent.policy.double()
    gen = torch.Generator().manual_seed(3)
    pre, post = random_episodes(gen), random_episodes(gen)
    batches = iter([pre, post])
    agent.sampler.sample = lambda *args, **kwargs: next(batches)  # the same episodes for both forms
    names = sorted(agent.policy.params(), key=lambda n: n == "log_std")  # the layers in order, then log_std
    theta = [agent.policy.params()[n].detach().clone() for n in names]

    agent.meta_iteration(0)

    # Both forms step on the same advantages (the estimator has its own tests).
    advantages = [
        compute_advantages(e, config.gamma, config.gae_lambda, LinearFeatureBaseline()) for e in (pre, post)
    ]
    expected = _textbook_step(theta, pre, post, *advantages, config)
    moved = 0.0
    for name, before, want in zip(names, theta, expected, strict=True):
        got = agent.policy.params()[name].detach()
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-9)
        moved = max(moved, (want - before).abs().max().item())
    assert moved > 1e-3  # a step was taken, so the comparison says something
