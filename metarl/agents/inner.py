"""The inner loop: policy-gradient losses per task and the fine-tuning procedure shared by every learner.

Every function works on stacked per-task parameters (leading axis = task) and returns one loss per task;
summing those losses gives each task's parameters exactly its own gradient, so all tasks adapt at once.
:class:`FineTuner` is the adaptation protocol of evaluation (and Reptile's inner loop): sample with the
current parameters, record the returns, take one policy-gradient step (:func:`metarl.core.gradient_step`, the
update of every inner loop, or Adam), repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metarl.agents.baseline import LinearFeatureBaseline
from metarl.agents.config import InnerConfig, InnerObjective
from metarl.agents.episodes import (
    Episodes,
    discount_matrix,
    generalized_advantages,
    masked_task_mean,
    normalize_per_task,
)
from metarl.agents.policies import MLPPolicy
from metarl.agents.sampler import BatchedSampler
from metarl.core import LearningRate, Params, detach_params, gradient_step
from metarl.envs import Task


def compute_advantages(
    episodes: Episodes,
    gamma: float,
    gae_lambda: float,
    baseline: LinearFeatureBaseline,
    normalize: bool = True,
) -> torch.Tensor:
    """GAE advantages ``(T, E, H)`` with a linear baseline fitted on each task's episodes, standardised per
    task unless ``normalize`` is false."""
    values = baseline.fit_predict(episodes, gamma)
    advantages = generalized_advantages(episodes.rewards, values, episodes.mask, gamma, gae_lambda)
    return normalize_per_task(advantages, episodes.mask) if normalize else advantages


def log_probs(policy: MLPPolicy, params: Mapping[str, torch.Tensor], episodes: Episodes) -> torch.Tensor:
    """Log-probabilities ``(T, E, H)`` of the episodes' actions under per-task ``params``."""
    return policy.distribution(episodes.observations, params).log_prob(episodes.actions)


def vpg_losses(
    policy: MLPPolicy, params: Mapping[str, torch.Tensor], episodes: Episodes, advantages: torch.Tensor
) -> torch.Tensor:
    """REINFORCE loss of each task ``-mean_t log pi(a_t|s_t) A_t``, shape ``(T,)``."""
    return -masked_task_mean(log_probs(policy, params, episodes) * advantages, episodes.mask)


def magic_box(log_prob: torch.Tensor) -> torch.Tensor:
    """DiCE's ``box(x) = exp(x - stop_grad(x))``: 1 in value, ``box(x) * grad x`` in gradient, so that every
    derivative of ``box(log pi) * A`` is a score-function estimate (Foerster et al. 2018)."""
    return torch.exp(log_prob - log_prob.detach())


def likelihood_ratio_losses(
    policy: MLPPolicy, params: Mapping[str, torch.Tensor], episodes: Episodes, advantages: torch.Tensor
) -> torch.Tensor:
    """ProMP's low-variance-curvature (LVC) inner loss ``-mean_t A_t pi(a_t|s_t) / stop_grad(pi(a_t|s_t))``,
    shape ``(T,)`` (Rothfuss et al. 2019, "ProMP: Proximal Meta-Policy Search").

    Its gradient is :func:`vpg_losses`' (the same inner step); its Hessian adds ``-mean_t A_t s_t s_t^T``
    (``s_t = grad log pi(a_t|s_t)``), so that the meta-gradient differentiated through the step also credits
    how the pre-update policy's exploration shapes it.
    """
    ratio = magic_box(log_probs(policy, params, episodes))
    return -masked_task_mean(ratio * advantages, episodes.mask)


def dice_losses(
    policy: MLPPolicy,
    params: Mapping[str, torch.Tensor],
    episodes: Episodes,
    advantages: torch.Tensor,
    dice_lambda: float,
) -> torch.Tensor:
    """Loaded DiCE inner loss ``-mean_t A_t [box(w_t) - box(w_t - log pi_t)]``, shape ``(T,)``, with
    ``w_t = sum_{s <= t} lambda^(t - s) log pi(a_s|s_s)`` along each episode and :func:`magic_box` ``box``
    (Foerster et al. 2018, "DiCE"; Farquhar et al. 2019, "Loaded DiCE").

    Its gradient is :func:`vpg_losses`' (the same inner step). Its Hessian adds to :func:`likelihood_ratio_losses`'
    the cross terms ``-mean_t A_t lambda^(t - s) (s_t s_s^T + s_s s_t^T)`` for every earlier step ``s < t`` of the
    episode: the meta-gradient also credits how earlier actions moved the states that later advantages are
    measured in. ``dice_lambda=1`` is DiCE's unbiased Hessian estimate, ``0`` is the likelihood-ratio loss.
    """
    log_prob = log_probs(policy, params, episodes) * episodes.mask
    cumulative = log_prob @ discount_matrix(log_prob.shape[-1], dice_lambda, log_prob.dtype).T
    surrogate = magic_box(cumulative) - magic_box(cumulative - log_prob)
    return -masked_task_mean(surrogate * advantages, episodes.mask)


def inner_losses(
    policy: MLPPolicy,
    params: Mapping[str, torch.Tensor],
    episodes: Episodes,
    advantages: torch.Tensor,
    objective: InnerObjective = "log_likelihood",
    dice_lambda: float = 1.0,
) -> torch.Tensor:
    """MAML's inner loss of each task, shape ``(T,)``: :func:`vpg_losses` (``"log_likelihood"``),
    :func:`likelihood_ratio_losses` (``"likelihood_ratio"``) or :func:`dice_losses` (``"dice"``, with
    ``dice_lambda``). All three have the same gradient and differ in their Hessian."""
    if objective == "likelihood_ratio":
        return likelihood_ratio_losses(policy, params, episodes, advantages)
    if objective == "dice":
        return dice_losses(policy, params, episodes, advantages, dice_lambda)
    return vpg_losses(policy, params, episodes, advantages)


def inner_gradients(
    policy: MLPPolicy,
    params: Mapping[str, torch.Tensor],
    episodes: Episodes,
    advantages: torch.Tensor,
    objective: InnerObjective = "log_likelihood",
    dice_lambda: float = 1.0,
) -> Params:
    """Each task's gradient of its :func:`inner_losses` loss, ``{name: (T, ...)}``, by ``torch.func.grad``: so that
    autograd and ``torch.func`` transforms (MAML's meta-gradient) can be taken through it."""

    def loss(values: Params) -> torch.Tensor:
        return inner_losses(policy, values, episodes, advantages, objective, dice_lambda).sum()

    return torch.func.grad(loss)(dict(params))


def ppo_losses(
    policy: MLPPolicy,
    params: Mapping[str, torch.Tensor],
    episodes: Episodes,
    advantages: torch.Tensor,
    old_log_probs: torch.Tensor,
    clip: float,
) -> torch.Tensor:
    """PPO clipped-surrogate loss of each task, shape ``(T,)``."""
    ratio = torch.exp(log_probs(policy, params, episodes) - old_log_probs)
    return -masked_task_mean(clipped_surrogate(ratio, advantages, clip), episodes.mask)


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, clip: float) -> torch.Tensor:
    """PPO's clipped surrogate per sample (Schulman et al. 2017, eq. 7), to be maximised:
    ``min(r A, clip(r, 1 - eps, 1 + eps) A)`` with ``r = pi(a|s) / pi_old(a|s)``."""
    return torch.min(ratio * advantages, ratio.clamp(1.0 - clip, 1.0 + clip) * advantages)


@dataclass
class FineTuneResult:
    """Outcome of :meth:`FineTuner.run`.

    Attributes:
        params: the adapted per-task parameters (detached).
        returns: ``(T, steps + 1)`` mean episode return of each task before and after each step
            (``steps`` columns when the last sampling round was skipped).
        env_steps: environment steps taken.
        successes: ``(T, steps + 1)`` success rate of each task's episodes at the same points, or ``None`` when
            the env reports no success.
    """

    params: Params
    returns: torch.Tensor
    env_steps: int
    successes: torch.Tensor | None = None


class FineTuner:
    """Adapts stacked per-task parameters with ``steps`` policy-gradient steps, each on fresh episodes.

    Args:
        policy: the policy module.
        inner: the inner-loop config (algorithm, optimizer, lr, PPO settings).
        gamma: discount factor.
        gae_lambda: GAE lambda.
    """

    def __init__(self, policy: MLPPolicy, inner: InnerConfig, gamma: float, gae_lambda: float) -> None:
        self.policy = policy
        self.inner = inner
        self.gamma = gamma
        self.gae_lambda = gae_lambda
        self.baseline = LinearFeatureBaseline()

    def run(
        self,
        start: Mapping[str, torch.Tensor],
        tasks: Sequence[Task],
        sampler: BatchedSampler,
        rng: np.random.Generator,
        generator: torch.Generator,
        steps: int,
        lr: LearningRate | None = None,
        sample_after_last: bool = True,
        later_steps_lr_scale: float = 1.0,
    ) -> FineTuneResult:
        """Fine-tune ``start`` (stacked per task) on ``tasks``.

        Args:
            start: stacked per-task parameters (leading axis = task).
            tasks: the tasks, one per row of ``start``.
            sampler: rolls out the per-task parameters.
            rng: source of the env seeds of each sampling round.
            generator: source of the action noise.
            steps: policy-gradient steps.
            lr: step size (a scalar, or Meta-SGD's per-parameter rates); defaults to ``inner.lr``.
            sample_after_last: also sample after the last step to measure its return.
            later_steps_lr_scale: multiplies the step size of every step after the first (SGD and Adam).
        """
        lr = self.inner.lr if lr is None else lr
        phi = detach_params(start, requires_grad=True)
        optimizer = None
        if self.inner.optimizer == "adam":
            optimizer = torch.optim.Adam(list(phi.values()), lr=float(self.inner.lr))
        returns, successes, env_steps = [], [], 0
        for step in range(steps + 1):
            if step == steps and not sample_after_last:
                break
            episodes = sampler.sample(phi, tasks, seed=int(rng.integers(2**31)), generator=generator)
            returns.append(episodes.task_returns())
            successes.append(episodes.task_success_rates())
            env_steps += episodes.num_steps
            if step == steps:
                break
            if step == 1 and later_steps_lr_scale != 1.0:  # the step size of every later step
                lr = _scaled(lr, later_steps_lr_scale)
                if optimizer is not None:
                    for group in optimizer.param_groups:
                        group["lr"] *= later_steps_lr_scale
            phi = self._update(phi, episodes, optimizer, lr)
        return FineTuneResult(
            params={n: p.detach() for n, p in phi.items()},
            returns=torch.stack(returns, dim=1),
            env_steps=env_steps,
            successes=None if not successes or successes[0] is None else torch.stack(successes, dim=1),
        )

    def _update(
        self, phi: Params, episodes: Episodes, optimizer: torch.optim.Optimizer | None, lr: LearningRate
    ) -> Params:
        advantages = compute_advantages(
            episodes, self.gamma, self.gae_lambda, self.baseline, self.inner.normalize_advantages
        )
        if self.inner.algorithm == "vpg":

            def vpg_loss(params: Params) -> torch.Tensor:
                return vpg_losses(self.policy, params, episodes, advantages).sum()

            return _gradient_step(phi, vpg_loss, optimizer, lr)
        with torch.no_grad():
            old = log_probs(self.policy, phi, episodes)

        def ppo_loss(params: Params) -> torch.Tensor:
            return ppo_losses(self.policy, params, episodes, advantages, old, self.inner.ppo_clip).sum()

        for _ in range(self.inner.ppo_epochs):
            phi = _gradient_step(phi, ppo_loss, optimizer, lr)
        return phi


def _gradient_step(
    phi: Params,
    loss_fn: Callable[[Params], torch.Tensor],
    optimizer: torch.optim.Optimizer | None,
    lr: LearningRate,
) -> Params:
    """One step on ``loss_fn(phi)``: the core's SGD step, or the inner optimizer's (Adam updates ``phi`` in place)."""
    with torch.enable_grad():
        loss = loss_fn(phi)
    if optimizer is None:
        return detach_params(gradient_step(phi, loss, lr, first_order=True), requires_grad=True)
    grads = torch.autograd.grad(loss, list(phi.values()), allow_unused=True, materialize_grads=True)
    for p, g in zip(phi.values(), grads, strict=True):
        p.grad = g
    optimizer.step()
    return phi


def _scaled(lr: LearningRate, scale: float) -> LearningRate:
    """``lr`` times ``scale``, for a scalar or Meta-SGD's per-parameter rates."""
    if isinstance(lr, Mapping):
        return {name: rate * scale for name, rate in lr.items()}
    return lr * scale
