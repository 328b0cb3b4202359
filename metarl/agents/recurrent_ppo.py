"""PPO over whole trials for a recurrent actor-critic (Schulman et al. 2017, as RL^2 uses it in garage's RL2PPO).

* Advantages: GAE(gamma, lambda) along the whole trial (:func:`trial_advantages`): the trial is RL^2's episode,
  so the end of an episode inside it does not cut the advantage (reward in a later episode is credited to the
  exploration that made it possible). Value targets are the lambda-returns ``A + V``; the value loss is measured
  in units of their running std (the network predicts standardised values, see
  :meth:`~metarl.agents.recurrent.RecurrentActorCritic.update_value_statistics`).
* Update: ``epochs`` passes over the trials, each in ``minibatches`` random groups of whole trials; every
  minibatch reruns the GRU over its trials from the zero state (full-trial recurrence, hidden states
  recomputed with the current weights), then one Adam step on
  ``-clipped surrogate + value_coef * (V - target)^2 - entropy_coef * entropy`` (means over the steps taken),
  with the gradient's global norm clipped; with ``target_kl`` set, the epochs stop early once a minibatch's
  approximate KL to the sampling policy exceeds 1.5 x ``target_kl`` (as Stable-Baselines3's PPO).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metarl.agents.config import RL2Config
from metarl.agents.episodes import generalized_advantages
from metarl.agents.inner import clipped_surrogate
from metarl.agents.recurrent import RecurrentActorCritic
from metarl.agents.trial_sampler import Trials


def trial_advantages(trials: Trials, gamma: float, gae_lambda: float) -> torch.Tensor:
    """GAE over each whole trial, ``(N, L)``: episode ends inside a trial are ordinary steps; the value after a
    trial's last step is 0 (nothing follows a trial)."""
    return generalized_advantages(trials.rewards, trials.values, trials.mask, gamma, gae_lambda)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the entries where ``mask`` is 1."""
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


@dataclass
class PPOLosses:
    """The terms of one minibatch's loss (tensors, differentiable) and its diagnostics."""

    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor
    approx_kl: float
    clip_fraction: float

    def total(self, config: RL2Config) -> torch.Tensor:
        return self.policy + config.value_coef * self.value - config.entropy_coef * self.entropy


def ppo_losses(
    policy: RecurrentActorCritic,
    trials: Trials,
    index: torch.Tensor,
    advantages: torch.Tensor,
    targets: torch.Tensor,
    clip: float,
) -> PPOLosses:
    """The PPO loss terms on the trials ``index`` (their GRU states recomputed from the start of each trial)."""
    mask = trials.mask[index]
    dist, values = policy(trials.observations[index])
    log_ratio = dist.log_prob(trials.actions[index]) - trials.log_probs[index]
    ratio = torch.exp(log_ratio)
    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask).item()  # Schulman's k3 estimator
        clipped = masked_mean(((ratio - 1.0).abs() > clip).float(), mask).item()
    return PPOLosses(
        policy=-masked_mean(clipped_surrogate(ratio, advantages[index], clip), mask),
        value=masked_mean(((values - targets[index]) / policy.value_scale()) ** 2, mask),
        entropy=masked_mean(dist.entropy(), mask),
        approx_kl=approx_kl,
        clip_fraction=clipped,
    )


def ppo_update(
    policy: RecurrentActorCritic,
    optimizer: torch.optim.Optimizer,
    trials: Trials,
    config: RL2Config,
    gamma: float,
    gae_lambda: float,
    generator: torch.Generator,
) -> dict[str, float]:
    """Run the PPO epochs on ``trials``; returns the mean loss terms and diagnostics of the last epoch run and
    the number of gradient steps taken."""
    advantages = trial_advantages(trials, gamma, gae_lambda)
    targets = advantages + trials.values
    policy.update_value_statistics(targets, trials.mask)
    if config.normalize_advantages:
        mean = masked_mean(advantages, trials.mask)
        std = masked_mean((advantages - mean) ** 2, trials.mask).sqrt()
        advantages = (advantages - mean) / (std + 1e-8) * trials.mask
    parameters = list(policy.parameters())
    last_epoch: list[PPOLosses] = []
    steps, stopped = 0, False
    for _ in range(config.epochs):
        order = torch.randperm(trials.num_trials, generator=generator)
        epoch: list[PPOLosses] = []
        for index in order.chunk(config.minibatches):
            losses = ppo_losses(policy, trials, index, advantages, targets, config.clip)
            if config.target_kl is not None and losses.approx_kl > 1.5 * config.target_kl:
                stopped = True  # the policy has moved far enough from the one that sampled
                break
            optimizer.zero_grad()
            losses.total(config).backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
            optimizer.step()
            epoch.append(losses)
            steps += 1
        last_epoch = epoch or last_epoch
        if stopped:
            break
    last_epoch = last_epoch or [losses]  # stopped before the first step: report what stopped it
    count = len(last_epoch)
    return {
        "losses/policy": sum(x.policy.item() for x in last_epoch) / count,
        "losses/value": sum(x.value.item() for x in last_epoch) / count,
        "losses/entropy": sum(x.entropy.item() for x in last_epoch) / count,
        "losses/approx_kl": sum(x.approx_kl for x in last_epoch) / count,
        "losses/clip_fraction": sum(x.clip_fraction for x in last_epoch) / count,
        "losses/gradient_steps": float(steps),
    }
