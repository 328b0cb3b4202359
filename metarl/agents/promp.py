"""ProMP (Rothfuss et al. 2019, "ProMP: Proximal Meta-Policy Search") and its ablation MAML-PPO.

One meta-iteration, for ``meta_batch_size`` tasks at once (the sampling and inner steps of
:class:`~metarl.agents.maml_rl.MAMLAgent`, shared with MAML-TRPO):

1. sample with theta, take ``inner.steps`` inner steps (ProMP: the low-variance curvature objective
   ``inner.objective=likelihood_ratio``), fresh episodes before each;
2. sample with the adapted parameters;
3. ``promp.ppo_steps`` Adam steps, all on these episodes, on

   ``J(theta) = -mean_i E[min(r_i A, clip(r_i, 1 - eps, 1 + eps) A)] + mean_k c_k KL_k(theta)``

   where ``r_i = pi_phi_i(theta)(a|s) / pi_old(a|s)`` on the post-adaptation episodes, ``phi_i(theta)`` is the
   inner step taken again from the current theta (differentiated through, second order unless
   ``inner.first_order``), and ``KL_k = mean_i KL(pi_old_k || pi_k(theta))`` on the episodes of inner step
   ``k``: how far the policy that takes step ``k`` moved from the one that sampled them. After the Adam steps,
   with ``promp.adaptive_inner_kl_penalty``, each coefficient ``c_k`` is halved when ``KL_k`` is below
   ``target_inner_step / 1.5`` and doubled above ``target_inner_step * 1.5``.

As in the reference code (jonasrothfuss/ProMP, ``meta_algos/pro_mp.py``), the inner step taken again from
``theta`` after some Adam steps has an importance-sampled objective: the inner advantages are weighted by
``pi_theta(a|s) / pi_old(a|s)`` (exactly 1 at the first Adam step), so that its value, gradient and Hessian
are those of ``-E[pi_theta / pi_old * A]``. The Adam moments carry over from one meta-iteration to the next
(the reference's optimizer is built once).

MAML-PPO (:class:`MAMLPPO`, ``algo=maml-ppo``) is the same without the KL term, normally with the plain
log-likelihood inner loss: the ablation that shows what ProMP's inner objective and penalty add.

Example::

    from metarl.agents import ProMP, TrainConfig
    from metarl.agents.config import InnerConfig

    config = TrainConfig(algo="promp", iterations=100, inner=InnerConfig(objective="likelihood_ratio"))
    ProMP(config).train("runs/my-promp")
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from metarl.agents.adaptation_jacobian import Adaptation, AdaptationFactory
from metarl.agents.config import InnerConfig, TrainConfig
from metarl.agents.curvature import InnerDerivatives
from metarl.agents.episodes import masked_task_mean
from metarl.agents.maml_rl import MAMLAgent, MetaBatch, Stopwatch
from metarl.agents.policies import MLPPolicy
from metarl.core import LearningRate, Params, flatten, unflatten_like
from metarl.errors import UserError


def adapt_kl_coefficients(coefficients: Sequence[float], kls: Sequence[float], target: float) -> list[float]:
    """ProMP's adaptive inner-KL coefficients: halve ``c_k`` if ``KL_k < target / 1.5``, double it if
    ``KL_k > target * 1.5``, else keep it (the reference's ``_adapt_kl_coeff``)."""
    return [
        c / 2 if kl < target / 1.5 else c * 2 if kl > target * 1.5 else c
        for c, kl in zip(coefficients, kls, strict=True)
    ]


@dataclass
class ObjectiveValue:
    """ProMP's objective at one point.

    Attributes:
        loss: the clipped surrogate plus the KL penalty.
        surrogate: the clipped surrogate alone.
        inner_kls: ``KL_k`` of each inner step.
        outer_kl: mean KL between the post-adaptation policies that sampled and the current ones.
        clip_fraction: share of the post-adaptation steps whose ratio is outside the clip range.
        gradient: the loss's gradient with respect to the meta-parameters (flat), if asked for.
    """

    loss: float
    surrogate: float
    inner_kls: list[float]
    outer_kl: float
    clip_fraction: float
    gradient: torch.Tensor | None = None


class ProMPObjective:
    """ProMP's objective on one meta-iteration's episodes, as a function of the meta-parameters.

    Args:
        policy: the policy.
        inner: the inner-loop config.
        derivatives: the run's inner-step derivatives.
        make_adaptation: the run's adaptation factory (its Jacobian products give the surrogate's gradient).
        batch: the meta-iteration's episodes (:meth:`MAMLAgent.sample_and_adapt`).
        clip: the PPO clip range.
        kl_coefficients: ``c_k`` of each inner step (``None``: no KL term, MAML-PPO).
    """

    def __init__(
        self,
        policy: MLPPolicy,
        inner: InnerConfig,
        derivatives: InnerDerivatives,
        make_adaptation: AdaptationFactory,
        batch: MetaBatch,
        clip: float,
        kl_coefficients: Sequence[float] | None,
    ) -> None:
        self.policy = policy
        self.make_adaptation = make_adaptation
        self.make_values_only = functools.partial(Adaptation, policy, inner, derivatives)
        self.batch = batch
        self.clip = clip
        self.kl_coefficients = None if kl_coefficients is None else list(kl_coefficients)
        with torch.no_grad():  # the distributions that sampled each round
            self.old_inner = [self._outputs(r.episodes.observations, r.params) for r in batch.inner_rounds]
            post = batch.post
            self.old_post = self._outputs(post.episodes.observations, post.params)
            self.old_post_log_probs = self._log_probs(self.old_post, post.episodes.actions)

    def _outputs(
        self, observations: torch.Tensor, params: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, ...]:
        return tuple(o.detach() for o in self.policy.distribution_parameters(observations, params))

    def _log_probs(self, outputs: tuple[torch.Tensor, ...], actions: torch.Tensor) -> torch.Tensor:
        return self.policy.distribution_from(outputs).log_prob(actions)

    def surrogate(self, outputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The clipped surrogate ``-mean_i E[min(r A, clip(r) A)]`` of post-adaptation distribution parameters,
        and the share of clipped ratios."""
        post = self.batch.post
        ratio = torch.exp(self._log_probs(outputs, post.episodes.actions) - self.old_post_log_probs)
        advantages = post.advantages
        clipped = torch.min(ratio * advantages, ratio.clamp(1.0 - self.clip, 1.0 + self.clip) * advantages)
        outside = ((ratio - 1.0).abs() > self.clip).to(ratio.dtype)
        mask = post.episodes.mask
        return -masked_task_mean(clipped, mask).mean(), masked_task_mean(outside, mask).mean()

    def inner_kl(self, step: int, outputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``KL_k``: mean over tasks of ``KL(pi_old_k || pi_k)`` on the episodes of inner step ``step``."""
        mask = self.batch.inner_rounds[step].episodes.mask
        return masked_task_mean(self.policy.kl(self.old_inner[step], outputs), mask).mean()

    def evaluate(
        self, theta: Params, lr: LearningRate, gradient: bool, sampling: Adaptation | None = None
    ) -> ObjectiveValue:
        """The objective at meta-parameters ``(theta, lr)``, and its gradient if ``gradient``.

        Args:
            theta: the policy's parameters.
            lr: the inner step size, or Meta-SGD's rates.
            gradient: also compute the gradient (else values only).
            sampling: the meta-iteration's own adaptation, when ``(theta, lr)`` are still those that sampled:
                every importance weight is then 1, so its steps are the ones to take (saves retaking them).
        """
        num_tasks = self.batch.adaptation.num_tasks
        if sampling is not None:
            adaptation = sampling
        else:
            adaptation = (self.make_adaptation if gradient else self.make_values_only)(theta, lr, num_tasks)
        inner_outputs, weighted = [], []
        for k, round_ in enumerate(self.batch.inner_rounds):
            episodes = round_.episodes
            with torch.no_grad():
                params = round_.params if sampling is not None else adaptation.params
                outputs = self._outputs(episodes.observations, params)
                ratio = torch.exp(
                    self._log_probs(outputs, episodes.actions)
                    - self._log_probs(self.old_inner[k], episodes.actions)
                )
            inner_outputs.append(outputs)
            weighted.append(round_.advantages * ratio)
            if sampling is None:
                adaptation.step(episodes, weighted[-1])
        post = self.batch.post.episodes
        jacobian = adaptation.jacobian(post.observations) if gradient else None
        with torch.no_grad():
            post_outputs = (
                jacobian.outputs if jacobian else self._outputs(post.observations, adaptation.params)
            )
            inner_kls = [float(self.inner_kl(k, o)) for k, o in enumerate(inner_outputs)]
            outer_kl = masked_task_mean(self.policy.kl(self.old_post, post_outputs), post.mask).mean()
        coefficients = self.kl_coefficients or [0.0] * len(inner_kls)
        penalty = sum(c * kl for c, kl in zip(coefficients, inner_kls, strict=True)) / max(len(inner_kls), 1)
        with torch.enable_grad():
            leaves = tuple(o.detach().requires_grad_(True) for o in post_outputs)
            surrogate, clip_fraction = self.surrogate(leaves)
            flat = None
            if jacobian is not None:
                flat = jacobian.vjp(torch.autograd.grad(surrogate, leaves))
                for k, coefficient in enumerate(coefficients):
                    if coefficient != 0:
                        weight = coefficient / len(inner_kls)
                        flat = flat + self._inner_kl_gradient(
                            k, weight, inner_outputs[k], theta, lr, weighted
                        )
        return ObjectiveValue(
            loss=float(surrogate.detach()) + penalty,
            surrogate=float(surrogate.detach()),
            inner_kls=inner_kls,
            outer_kl=float(outer_kl),
            clip_fraction=float(clip_fraction),
            gradient=flat,
        )

    def _inner_kl_gradient(
        self,
        step: int,
        weight: float,
        outputs: tuple[torch.Tensor, ...],
        theta: Params,
        lr: LearningRate,
        weighted: list[torch.Tensor],
    ) -> torch.Tensor:
        """The gradient of ``weight * KL_step`` with respect to the meta-parameters (flat)."""
        observations = self.batch.inner_rounds[step].episodes.observations
        if step == 0:  # the unadapted policy: a backward pass through it
            names = list(theta)
            with torch.enable_grad():
                leaves = [theta[n].detach().requires_grad_(True) for n in names]
                kl = self.inner_kl(
                    0,
                    self.policy.distribution_parameters(observations, dict(zip(names, leaves, strict=True))),
                )
                product = flatten(torch.autograd.grad(weight * kl, leaves))
            if isinstance(lr, Mapping):  # Meta-SGD's rates do not move the unadapted policy
                product = torch.cat([product, product.new_zeros(sum(r.numel() for r in lr.values()))])
            return product
        # the policy after the first `step` inner steps, through them
        partial = self.make_values_only(theta, lr, self.batch.adaptation.num_tasks)
        for round_, advantages in zip(self.batch.inner_rounds[:step], weighted, strict=False):
            partial.step(round_.episodes, advantages)
        leaves = tuple(o.detach().requires_grad_(True) for o in outputs)
        cotangents = torch.autograd.grad(weight * self.inner_kl(step, leaves), leaves)
        return partial.jacobian(observations).vjp(cotangents)


class ProMP(MAMLAgent):
    """Proximal Meta-Policy Search: MAML's sampling and inner steps, a PPO-clip outer loss with a penalty on
    the inner steps' KL, several Adam steps per meta-iteration (see the module).

    Args:
        config: the run configuration (``algo`` must be ``"promp"``; default: the Navigation2D settings with
            ``inner.objective=likelihood_ratio``).
    """

    algo = "promp"
    #: whether the objective has the inner-step KL term (MAML-PPO: no)
    kl_penalty: ClassVar[bool] = True

    def __init__(self, config: TrainConfig | None = None) -> None:
        super().__init__(self.default_config() if config is None else config)
        promp = self.config.promp
        self.optimizer = torch.optim.Adam(self._meta_parameters(), lr=promp.learning_rate)
        self.inner_kl_coefficients = [promp.init_inner_kl_penalty] * self.config.inner.steps

    @classmethod
    def default_config(cls) -> TrainConfig:
        """The config of ``ProMP()``: the defaults with ProMP's inner objective."""
        return TrainConfig(algo=cls.algo, inner=InnerConfig(objective="likelihood_ratio"))

    def meta_iteration(self, iteration: int) -> dict[str, float]:
        promp = self.config.promp
        clock = Stopwatch()
        batch = self.sample_and_adapt(iteration, clock)
        objective = ProMPObjective(
            self.policy,
            self.config.inner,
            self.derivatives,
            self.make_adaptation,
            batch,
            promp.clip_eps,
            self.inner_kl_coefficients if self.kl_penalty else None,
        )
        with clock("optimization"):
            values = []
            for step in range(promp.ppo_steps):
                sampling = batch.adaptation if step == 0 else None
                values.append(objective.evaluate(self._theta(), self.adaptation_lr(), True, sampling))
                self._adam_step(values[-1].gradient)
            last = objective.evaluate(self._theta(), self.adaptation_lr(), gradient=False)
        coefficients = list(self.inner_kl_coefficients)
        if self.kl_penalty and promp.adaptive_inner_kl_penalty:
            self.inner_kl_coefficients = adapt_kl_coefficients(
                self.inner_kl_coefficients, last.inner_kls, promp.target_inner_step
            )
        return {
            **self._metrics(batch, values[0], last, coefficients, clock.seconds),
            **batch.success_metrics(),
        }

    def _adam_step(self, gradient: torch.Tensor) -> None:
        parameters = self._meta_parameters()
        grads = unflatten_like(gradient, dict(enumerate(parameters)))
        for p, g in zip(parameters, grads.values(), strict=True):
            p.grad = g.to(p.dtype)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _metrics(
        self,
        batch: MetaBatch,
        first: ObjectiveValue,
        last: ObjectiveValue,
        coefficients: list[float],
        seconds: dict[str, float],
    ) -> dict[str, float]:
        metrics = {"meta/return_before": batch.returns[0]}
        for step in range(1, len(batch.returns)):
            metrics[f"meta/return_after_step{step}"] = batch.returns[step]
        metrics.update(
            {
                "losses/objective_before": first.loss,
                "losses/objective_after": last.loss,
                "losses/surrogate_before": first.surrogate,
                "losses/surrogate_after": last.surrogate,
                "losses/outer_kl": last.outer_kl,
                "losses/clip_fraction": last.clip_fraction,
                "losses/grad_norm": float(first.gradient.norm()),
                "charts/seconds_sampling": seconds["sampling"],
                "charts/seconds_adaptation": seconds["adaptation"],
                "charts/seconds_optimization": seconds["optimization"],
                "env_steps": batch.env_steps,
            }
        )
        if last.inner_kls:
            metrics["losses/inner_kl"] = sum(last.inner_kls) / len(last.inner_kls)
            if self.kl_penalty:
                metrics["losses/inner_kl_coefficient"] = sum(coefficients) / len(coefficients)
        if self.learning_rates is not None:
            rates = torch.cat([r.detach().reshape(-1) for r in self.learning_rates.parameters()])
            metrics["losses/meta_sgd_mean_lr"] = rates.mean().item()
        return metrics

    # --- state ------------------------------------------------------------------------------------
    def algorithm_state(self) -> dict[str, Any]:
        """Weights, learned rates, the Adam moments and the inner-KL coefficients."""
        return {
            **super().algorithm_state(),
            "optimizer": self.optimizer.state_dict(),
            "inner_kl_coefficients": list(self.inner_kl_coefficients),
        }

    def load_algorithm_state(self, state: Mapping[str, Any]) -> None:
        super().load_algorithm_state(state)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            coefficients = [float(c) for c in state["inner_kl_coefficients"]]
        except (KeyError, ValueError, TypeError) as exc:
            raise UserError(f"checkpoint has no usable {self.algo} optimizer state: {exc}") from None
        if len(coefficients) != self.config.inner.steps:
            raise UserError(
                f"checkpoint has {len(coefficients)} inner-KL coefficients, the config inner.steps={self.config.inner.steps}"
            )
        self.inner_kl_coefficients = coefficients


class MAMLPPO(ProMP):
    """MAML-PPO: ProMP's PPO-clip outer step without the inner-KL term, with the run's inner objective
    (normally ``log_likelihood``, MAML's): the ablation of Rothfuss et al. 2019.

    Args:
        config: the run configuration (``algo`` must be ``"maml-ppo"``).
    """

    algo = "maml-ppo"
    kl_penalty = False

    @classmethod
    def default_config(cls) -> TrainConfig:
        """The config of ``MAMLPPO()``: the defaults (MAML's log-likelihood inner loss)."""
        return TrainConfig(algo=cls.algo)
