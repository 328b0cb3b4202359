"""Reference algorithms of Duan et al. 2016, Table 2, on metarl's random tabular MDPs (numpy, vectorised over tasks).

A trial is ``episodes`` episodes of one task; before every episode a policy plans finite-horizon action values
``Q[h, s, a]`` from what it has seen so far, then acts greedily on them (random ties), or at random with
probability ``epsilon``.

The posterior is the exact one of the envs' task distribution (``metarl.envs.tabular_mdp``): transitions
``P(.|s, a) ~ Dirichlet(1, ..., 1)`` updated with the counts of observed next states; mean rewards
``m(s, a) ~ N(1, 1)`` with ``N(0, 1)`` reward noise, so the posterior of ``m(s, a)`` after ``n`` rewards summing
to ``r`` is ``N((1 + r) / (1 + n), 1 / (1 + n))``.

Randomness: one generator per run (``policy_generator``); each policy draws its model samples per episode and
each step draws ``[explore, action, ties...]`` uniforms for every task, in task order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metarl.agents.references.bandits import argmax_random_ties, policy_generator
from metarl.envs import Task, make_batched
from metarl.envs.tabular_mdp import MEAN_REWARD_LOC, MEAN_REWARD_SCALE, REWARD_NOISE_SCALE

DIRICHLET_PRIOR = 1.0  # the envs' flat Dirichlet over next states


@dataclass
class TabularPosterior:
    """Counts of every task: ``next_states (T, S, A, S)``, ``visits (T, S, A)``, ``reward_sums (T, S, A)``."""

    next_states: np.ndarray
    visits: np.ndarray
    reward_sums: np.ndarray

    @classmethod
    def empty(cls, tasks: int, states: int, actions: int) -> TabularPosterior:
        return cls(
            np.zeros((tasks, states, actions, states)),
            np.zeros((tasks, states, actions)),
            np.zeros((tasks, states, actions)),
        )

    def update(self, states, actions, rewards, next_states) -> None:
        """Add one transition of every task."""
        rows = np.arange(len(states))
        self.next_states[rows, states, actions, next_states] += 1.0
        self.visits[rows, states, actions] += 1.0
        self.reward_sums[rows, states, actions] += rewards

    def reward_precision(self) -> np.ndarray:
        """Precision of the posterior of every mean reward."""
        return MEAN_REWARD_SCALE**-2 + self.visits / REWARD_NOISE_SCALE**2

    def mean_rewards(self) -> np.ndarray:
        """Posterior mean of every mean reward ``(T, S, A)``."""
        prior = MEAN_REWARD_LOC / MEAN_REWARD_SCALE**2
        return (prior + self.reward_sums / REWARD_NOISE_SCALE**2) / self.reward_precision()

    def mean_transitions(self) -> np.ndarray:
        """Posterior mean of every next-state distribution ``(T, S, A, S)``."""
        alpha = DIRICHLET_PRIOR + self.next_states
        return alpha / alpha.sum(axis=-1, keepdims=True)

    def sample(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` MDPs per task from the posterior: rewards ``(T, count, S, A)``, transitions ``(T, count, S, A, S)``."""
        alpha = DIRICHLET_PRIOR + self.next_states[:, None]
        gammas = rng.standard_gamma(np.broadcast_to(alpha, (alpha.shape[0], count) + alpha.shape[2:]))
        transitions = gammas / gammas.sum(axis=-1, keepdims=True)
        noise = rng.standard_normal((len(self.visits), count) + self.visits.shape[1:])
        rewards = self.mean_rewards()[:, None] + noise / np.sqrt(self.reward_precision())[:, None]
        return rewards, transitions


def value_iteration(rewards: np.ndarray, transitions: np.ndarray, horizon: int) -> np.ndarray:
    """Finite-horizon optimal action values ``Q[..., h, s, a]`` (``h`` steps done, ``horizon - h`` to go).

    ``Q[h] = R + P V[h + 1]`` with ``V[h] = max_a Q[h]`` and ``V[horizon] = 0``. Leading axes broadcast.
    """
    values = np.zeros(rewards.shape[:-1])
    q = np.empty(rewards.shape[:-2] + (horizon,) + rewards.shape[-2:])
    for h in range(horizon - 1, -1, -1):
        q[..., h, :, :] = rewards + np.einsum("...san,...n->...sa", transitions, values)
        values = q[..., h, :, :].max(axis=-1)
    return q


class MDPPolicy:
    """Uniformly random actions (all action values equal); subclasses plan from the posterior."""

    name = "random"
    epsilon = 0.0

    def plan(self, posterior: TabularPosterior, horizon: int, rng: np.random.Generator) -> np.ndarray:
        """Action values ``(T, horizon, S, A)`` for the next episode."""
        return np.zeros(posterior.visits.shape[:1] + (horizon,) + posterior.visits.shape[1:])

    def settings(self) -> dict[str, float]:
        """The policy's hyperparameters (reported next to its results)."""
        return {}


class CertaintyEquivalent(MDPPolicy):
    """Greedy in the posterior-mean MDP (``epsilon = 0``: the greedy baseline), with probability ``epsilon`` a
    random action (epsilon-greedy)."""

    def __init__(self, epsilon: float = 0.0) -> None:
        self.epsilon = float(epsilon)
        self.name = "greedy" if self.epsilon == 0.0 else "eps-greedy"

    def plan(self, posterior, horizon, rng):
        return value_iteration(posterior.mean_rewards(), posterior.mean_transitions(), horizon)

    def settings(self):
        return {"epsilon": self.epsilon}


class PosteriorSampling(MDPPolicy):
    """PSRL (Strens 2000; Osband, Russo & Van Roy 2013): one MDP drawn from the posterior per episode, acted on
    optimally. With ``samples > 1``, optimistic PSRL (OPSRL): the Bellman backup takes, at every ``(h, s, a)``,
    the largest of the ``samples`` drawn models' backups (optimistic value iteration over the sampled set)."""

    def __init__(self, samples: int = 1) -> None:
        self.samples = int(samples)
        self.name = "psrl" if self.samples == 1 else "opsrl"

    def plan(self, posterior, horizon, rng):
        rewards, transitions = posterior.sample(rng, self.samples)  # (T, m, S, A), (T, m, S, A, S)
        values = np.zeros(rewards.shape[:1] + rewards.shape[2:3])
        q = np.empty(rewards.shape[:1] + (horizon,) + rewards.shape[2:])
        for h in range(horizon - 1, -1, -1):
            backups = rewards + np.einsum("tmsan,tn->tmsa", transitions, values)
            q[:, h] = backups.max(axis=1)
            values = q[:, h].max(axis=-1)
        return q

    def settings(self):
        return {"samples": self.samples}


class BEB(MDPPolicy):
    """Bayesian Exploration Bonus (Kolter & Ng 2009): the posterior-mean MDP with reward bonus
    ``beta / (1 + n(s, a))``."""

    name = "beb"

    def __init__(self, beta: float = 1.0) -> None:
        self.beta = float(beta)

    def plan(self, posterior, horizon, rng):
        rewards = posterior.mean_rewards() + self.beta / (1.0 + posterior.visits)
        return value_iteration(rewards, posterior.mean_transitions(), horizon)

    def settings(self):
        return {"beta": self.beta}


class UCRL2(MDPPolicy):
    """UCRL2 (Jaksch, Ortner & Auer 2010), replanning before every episode: extended value iteration over the
    models within ``scale x`` UCRL2's confidence radii of the empirical ones (rewards
    ``sqrt(7 ln(2 S A t / delta) / (2 n))``, transitions in L1 ``sqrt(14 S ln(2 A t / delta) / n)``), with
    ``delta = 0.05``. ``scale`` is tuned: the envs' Gaussian rewards are not in ``[0, 1]``."""

    name = "ucrl2"
    delta = 0.05

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = float(scale)

    def plan(self, posterior, horizon, rng):
        tasks, states, actions = posterior.visits.shape
        steps = max(1.0, posterior.visits.sum(axis=(1, 2)).max())
        n = np.maximum(posterior.visits, 1.0)
        log_term = math.log(2.0 * states * actions * steps / self.delta)
        reward_radius = self.scale * np.sqrt(7.0 * log_term / (2.0 * n))
        l1_radius = self.scale * np.sqrt(14.0 * states * math.log(2.0 * actions * steps / self.delta) / n)
        visited = posterior.visits > 0
        rewards = np.where(visited, posterior.reward_sums / n, MEAN_REWARD_LOC) + reward_radius
        empirical = np.where(
            visited[..., None], posterior.next_states / n[..., None], np.full(states, 1.0 / states)
        )
        values = np.zeros((tasks, states))
        q = np.empty((tasks, horizon, states, actions))
        for h in range(horizon - 1, -1, -1):
            optimistic = optimistic_transitions(empirical, l1_radius, values)
            q[:, h] = rewards + np.einsum("tsan,tn->tsa", optimistic, values)
            values = q[:, h].max(axis=-1)
        return q

    def settings(self):
        return {"scale": self.scale}


def optimistic_transitions(empirical: np.ndarray, radius: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The distribution within L1 distance ``radius`` of ``empirical`` that maximises the expected value
    (Jaksch et al. 2010, Figure 2): ``radius / 2`` more mass on the best next state, taken from the worst ones.

    Args:
        empirical: ``(T, S, A, S)`` next-state distributions.
        radius: ``(T, S, A)`` L1 radii.
        values: ``(T, S)`` next-state values.
    """
    order = np.argsort(-values, axis=-1, kind="stable")[:, None, None, :]  # best first
    ranked = np.take_along_axis(empirical, np.broadcast_to(order, empirical.shape), axis=-1)
    best = np.minimum(1.0, ranked[..., 0] + radius / 2.0)
    excess = best + ranked[..., 1:].sum(axis=-1) - 1.0
    # take the excess from the worst states first: what is left of it after the states worse than each one
    worst_first = ranked[..., :0:-1]
    before = np.cumsum(worst_first, axis=-1) - worst_first
    taken = np.clip(excess[..., None] - before, 0.0, worst_first)
    rest = (worst_first - taken)[..., ::-1]
    ranked = np.concatenate([best[..., None], rest], axis=-1)
    result = np.empty_like(ranked)
    np.put_along_axis(result, np.broadcast_to(order, ranked.shape), ranked, axis=-1)
    return result


def run_mdp(policy: MDPPolicy, env_id: str, tasks: Sequence[Task], episodes: int, seed: int) -> np.ndarray:
    """Return of every episode of ``policy`` in a trial of ``episodes`` episodes of every task.

    The episodes come from the env's batched engine with one copy per task, reset before every episode:
    task ``i``'s trial continues the stream of the single env ``reset(seed=seed + i)``, the same for every
    policy.

    Every policy here is anytime (it does not know ``episodes``), so the first ``k`` columns are the trial of
    ``k`` episodes: one run gives the totals of every shorter trial as its partial sums.

    Returns:
        ``(tasks, episodes)`` returns.
    """
    env = make_batched(env_id, tasks, episodes_per_task=1, seed=seed)
    rng = policy_generator(seed)
    tasks_count, states, actions = env.num_tasks, env.num_states, env.num_actions
    posterior = TabularPosterior.empty(tasks_count, states, actions)
    rows = np.arange(tasks_count)
    returns = np.zeros((tasks_count, int(episodes)))
    for episode in range(int(episodes)):
        state = np.argmax(env.reset()[:, 0], axis=-1)
        q = policy.plan(posterior, env.horizon, rng)
        for h in range(env.horizon):
            block = rng.random((tasks_count, 2 + actions))
            greedy = argmax_random_ties(q[rows, h, state], block[:, 2:])
            random_action = np.floor(block[:, 1] * actions).astype(np.int64)
            action = np.where(block[:, 0] < policy.epsilon, random_action, greedy)
            obs, reward, _, _, _ = env.step(action[:, None])
            next_state = np.argmax(obs[:, 0], axis=-1)
            posterior.update(state, action, reward[:, 0], next_state)
            returns[:, episode] += reward[:, 0]
            state = next_state
    return returns
