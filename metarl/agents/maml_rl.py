"""MAML-TRPO (Finn, Abbeel, Levine 2017): meta-learn a policy that adapts with one policy-gradient step.

One meta-iteration, for ``meta_batch_size`` tasks at once (stacked per-task parameters, no loop over tasks):

1. sample ``episodes_per_task`` episodes per task with theta; fit a linear baseline per task; take ``k`` VPG
   steps ``phi = theta - lr * grad L_inner`` (new episodes before every further step);
2. sample episodes with the adapted ``phi``;
3. TRPO on the post-adaptation surrogate ``-E[pi_phi(theta)(a|s) / pi_old(a|s) * A]`` with the KL between the
   old and new post-adaptation policies, both differentiated through the adaptation (second order unless
   ``inner.first_order``; Meta-SGD learns the inner rates when ``inner.meta_sgd``).

With ``inner.steps=0`` this is plain TRPO on the task mixture (the ``pretrained`` baseline).

Example::

    from metarl.agents import MAMLTRPO, TrainConfig

    agent = MAMLTRPO(TrainConfig(env="MetaRL/Navigation2D-v0", iterations=100, seed=1))
    history = agent.train("runs/my-maml")          # config, checkpoints, metrics.jsonl, TensorBoard
    print(history[-1]["meta/return_after_step1"])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import torch
from torch.func import grad

from metarl.agents.adaptation_jacobian import OneStepAdaptation, policy_jacobian
from metarl.agents.agent import TRAIN_STREAM, MetaRLAgent, stream_rng, torch_generator
from metarl.agents.baseline import LinearFeatureBaseline
from metarl.agents.episodes import Episodes, masked_task_mean
from metarl.agents.gaussian_mlp_products import GaussianVPGDerivatives, supports_closed_form
from metarl.agents.inner import compute_advantages, inner_losses
from metarl.agents.policies import MLPPolicy
from metarl.agents.sampler import sample_tasks
from metarl.agents.trpo import TRPOResult, functional_jacobian, output_space_kl_hvp, trpo_step
from metarl.core import Params, stack_over_tasks


class MAMLTRPO(MetaRLAgent):
    """Model-agnostic meta-learning with a VPG inner loop and a TRPO outer loop.

    Args:
        config: the run configuration (``algo`` must be ``"maml-trpo"``).
    """

    algo = "maml-trpo"

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.baseline = LinearFeatureBaseline()

    def _meta_parameters(self) -> tuple[list[str], list[torch.Tensor]]:
        names = list(self.policy.params())
        trainable = list(self.policy.params().values())
        if self.learning_rates is not None:
            trainable += list(self.learning_rates.parameters())
        return names, trainable

    def adapt(
        self,
        theta: Mapping[str, torch.Tensor],
        inner_episodes: Sequence[Episodes],
        inner_advantages: Sequence[torch.Tensor],
        lr: float | Mapping[str, torch.Tensor],
    ) -> Params:
        """The per-task parameters after one VPG step on each batch of ``inner_episodes`` (stacked by task).

        Written with ``torch.func.grad`` so that the outer loop can take JVPs and VJPs through it; the
        second-order terms are kept unless ``inner.first_order``. Under ``torch.no_grad`` it computes values.

        Args:
            theta: meta-parameters (unstacked).
            inner_episodes: the pre-update episodes of each inner step.
            inner_advantages: their advantages.
            lr: inner step size, or Meta-SGD's per-parameter rates.
        """
        if not inner_episodes:
            return dict(theta)
        phi = stack_over_tasks(theta, inner_episodes[0].num_tasks, copy=True)
        objective, dice_lambda = self.config.inner.objective, self.config.inner.dice_lambda
        for episodes, advantages in zip(inner_episodes, inner_advantages, strict=True):

            def inner_loss(params, episodes=episodes, advantages=advantages):
                return inner_losses(self.policy, params, episodes, advantages, objective, dice_lambda).sum()

            # Values only: the fast path (every objective has the same gradient).
            if not torch.is_grad_enabled() and supports_closed_form(self.policy):
                grads = GaussianVPGDerivatives(self.policy, phi, episodes, advantages, False).gradient
            else:
                grads = grad(inner_loss)(phi)
            if self.config.inner.first_order:
                grads = {n: g.detach() for n, g in grads.items()}
            phi = {n: phi[n] - (lr[n] if isinstance(lr, Mapping) else lr) * grads[n] for n in phi}
        return phi

    def _current_lr(self) -> float | Params:
        return self.learning_rates.as_dict() if self.learning_rates is not None else self.config.inner.lr

    def meta_iteration(self, iteration: int) -> dict[str, float]:
        cfg = self.config
        rng = stream_rng(cfg.seed, TRAIN_STREAM, iteration)
        generator = torch_generator(rng)
        tasks = sample_tasks(self.sampler.env, cfg.meta_batch_size, int(rng.integers(2**31)))
        names, trainable = self._meta_parameters()
        timing = {"sampling": 0.0, "adaptation": 0.0, "trpo": 0.0}

        def timed(key, fn, *args, **kwargs):
            tick = time.perf_counter()
            out = fn(*args, **kwargs)
            timing[key] += time.perf_counter() - tick
            return out

        def adapted_params(*values: torch.Tensor) -> Params:
            theta = dict(zip(names, values[: len(names)], strict=True))
            lr = dict(zip(names, values[len(names) :], strict=True)) if self.learning_rates else cfg.inner.lr
            return self.adapt(theta, inner_episodes, inner_advantages, lr)

        inner_episodes: list[Episodes] = []
        inner_advantages: list[torch.Tensor] = []
        current = tuple(p.detach() for p in trainable)
        theta = dict(zip(names, current[: len(names)], strict=True))
        phi = stack_over_tasks(theta, cfg.meta_batch_size, copy=True)
        returns, env_steps = [], 0
        one_step = None  # one inner step: its gradients and curvature, shared by sampling and the TRPO step
        for _ in range(cfg.inner.steps):
            episodes = timed("sampling", self.sampler.sample, phi, tasks, int(rng.integers(2**31)), generator)
            inner_episodes.append(episodes)
            inner_advantages.append(
                timed(
                    "adaptation",
                    compute_advantages,
                    episodes,
                    cfg.gamma,
                    cfg.gae_lambda,
                    self.baseline,
                    cfg.inner.normalize_advantages,
                )
            )
            if cfg.inner.steps == 1:
                one_step = timed(
                    "adaptation",
                    OneStepAdaptation,
                    self.policy,
                    theta,
                    episodes,
                    inner_advantages[0],
                    self._current_lr(),
                    first_order=cfg.inner.first_order,
                    objective=cfg.inner.objective,
                    dice_lambda=cfg.inner.dice_lambda,
                )
                phi = one_step.params
            else:
                with torch.no_grad():
                    phi = timed("adaptation", adapted_params, *current)
            returns.append(episodes.task_returns().mean().item())
            env_steps += episodes.num_steps
        post = timed("sampling", self.sampler.sample, phi, tasks, int(rng.integers(2**31)), generator)
        returns.append(post.task_returns().mean().item())
        env_steps += post.num_steps
        post_advantages = timed(
            "adaptation", compute_advantages, post, cfg.gamma, cfg.gae_lambda, self.baseline
        )
        tick = time.perf_counter()
        result = self._trpo_update(trainable, adapted_params, post, post_advantages, inner_episodes, one_step)
        timing["trpo"] += time.perf_counter() - tick
        metrics = {"meta/return_before": returns[0]}
        for step in range(1, len(returns)):
            metrics[f"meta/return_after_step{step}"] = returns[step]
        metrics.update(
            {
                "losses/surrogate_before": result.loss_before,
                "losses/surrogate_after": result.loss_after,
                "losses/kl": result.kl,
                "losses/grad_norm": result.grad_norm,
                "losses/step_fraction": result.step_fraction,
                "losses/step_accepted": float(result.accepted),
                "charts/seconds_sampling": timing["sampling"],
                "charts/seconds_adaptation": timing["adaptation"],
                "charts/seconds_trpo": timing["trpo"],
                "env_steps": env_steps,
            }
        )
        if self.learning_rates is not None:
            rates = torch.cat([r.detach().reshape(-1) for r in self.learning_rates.parameters()])
            metrics["losses/meta_sgd_mean_lr"] = rates.mean().item()
        return metrics

    def _trpo_update(
        self,
        trainable: list[torch.Tensor],
        adapted_params,
        post: Episodes,
        advantages: torch.Tensor,
        inner_episodes: Sequence[Episodes],
        one_step: OneStepAdaptation | None,
    ) -> TRPOResult:
        """TRPO on the post-adaptation surrogate, with KL curvature taken through the adaptation (``one_step``'s
        Jacobian for one inner step, the general functorch path for several)."""
        policy = self.policy

        def outputs_fn(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return policy.distribution_parameters(post.observations, adapted_params(*values))

        def surrogate(outputs) -> torch.Tensor:
            new_log_probs = policy.distribution_from(outputs).log_prob(post.actions)
            ratio = torch.exp(new_log_probs - old_log_probs)
            return -masked_task_mean(ratio * advantages, post.mask).mean()

        def mean_kl(outputs) -> torch.Tensor:
            kl = policy.kl(old_outputs, outputs)
            return masked_task_mean(kl, post.mask).mean()

        if not inner_episodes and supports_closed_form(policy):  # plain TRPO (the baselines)
            theta = {n: p.detach() for n, p in zip(policy.params(), trainable, strict=False)}
            jacobian = policy_jacobian(policy, theta, post.observations)
        elif one_step is not None:
            jacobian = one_step.jacobian(post.observations)
        else:
            jacobian = functional_jacobian(outputs_fn, trainable)
        old_outputs = jacobian.outputs
        old_log_probs = policy.distribution_from(old_outputs).log_prob(post.actions)
        leaves = tuple(o.detach().requires_grad_(True) for o in old_outputs)
        with torch.enable_grad():
            loss = surrogate(leaves)
            output_grads = torch.autograd.grad(loss, leaves)
        gradient = jacobian.vjp(output_grads)

        def evaluate() -> tuple[float, float]:
            with torch.no_grad():
                new_outputs = outputs_fn(*(p.detach() for p in trainable))
                return float(surrogate(new_outputs)), float(mean_kl(new_outputs))

        t = self.config.trpo
        return trpo_step(
            trainable,
            float(loss.detach()),
            gradient,
            output_space_kl_hvp(jacobian, mean_kl, mean_kl_curvature(policy, old_outputs, post.mask)),
            evaluate,
            max_kl=t.max_kl,
            cg_iterations=t.cg_iterations,
            cg_damping=t.cg_damping,
            line_search_steps=t.line_search_steps,
            line_search_ratio=t.line_search_ratio,
        )


def mean_kl_curvature(
    policy: MLPPolicy, old_outputs: tuple[torch.Tensor, ...], mask: torch.Tensor
) -> Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]:
    """The Hessian, in distribution-parameter space, of the mean over tasks of each task's masked mean KL,
    at ``new = old``: per-sample closed-form KL Hessians weighted like :func:`masked_task_mean`."""
    sample_dims = tuple(range(1, mask.dim()))
    weights = (mask / (mask.sum(sample_dims, keepdim=True).clamp_min(1.0) * mask.shape[0])).unsqueeze(-1)

    def product(tangents: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(weights * h for h in policy.kl_hessian_product(old_outputs, tangents))

    return product
