"""Reference algorithms of Duan et al. 2016, Table 1, on metarl's Bernoulli bandits (numpy, vectorised over tasks).

Every policy sees, for each task, the successes and failures of every arm so far and returns the next arm of
every task. Bayesian quantities use the Beta(1, 1) prior, which is the envs' task distribution (p_i ~ U[0, 1]).

Randomness: one generator per run; at each pull a policy draws one block whose rows are the tasks, so task ``i``
consumes the numbers after those of tasks ``0..i-1`` (C order). A per-task loop that draws each task's row in
turn from the same generator reproduces a run exactly (``tests/agents/test_agents_references.py`` does).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from metarl.agents.references.gittins import gittins_indices
from metarl.envs import Task, make_batched

PRIOR = (1.0, 1.0)  # Beta prior of every arm: the envs draw p_i ~ U[0, 1] = Beta(1, 1)
POLICY_STREAM_KEY = 2  # SeedSequence spawn key of the policies' numbers (the env's tasks use key 1)


def policy_generator(seed: int) -> np.random.Generator:
    """The generator of a reference run's own random choices, independent of the env's numbers."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(POLICY_STREAM_KEY,)))


def argmax_random_ties(values: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Index of the largest value of every row, ties broken by the row's ``uniforms``."""
    best = values >= values.max(axis=-1, keepdims=True)
    return np.argmax(np.where(best, uniforms, -1.0), axis=-1)


def posterior_means(successes: np.ndarray, failures: np.ndarray) -> np.ndarray:
    """Mean of every arm's Beta posterior."""
    return (PRIOR[0] + successes) / (PRIOR[0] + PRIOR[1] + successes + failures)


class BanditPolicy(ABC):
    """Chooses the next arm of every task from the counts so far."""

    name: str = ""

    def start(self, pulls: int) -> None:
        """Called once before a trial of ``pulls`` pulls (policies that precompute something do it here)."""

    @abstractmethod
    def choose(
        self, successes: np.ndarray, failures: np.ndarray, step: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Arms ``(tasks,)`` for pull ``step`` (0-based), given counts ``(tasks, arms)``."""

    def settings(self) -> dict[str, float]:
        """The policy's hyperparameters (reported next to its results)."""
        return {}


class RandomArm(BanditPolicy):
    """Uniformly random arm."""

    name = "random"

    def choose(self, successes, failures, step, rng):
        return np.floor(rng.random(len(successes)) * successes.shape[1]).astype(np.int64)


class EpsilonGreedy(BanditPolicy):
    """Arm of highest posterior mean (random ties); with probability ``epsilon`` a uniformly random arm.

    ``epsilon = 0`` is the greedy baseline. Per pull each task draws ``[explore, arm, ties...]`` uniforms.
    """

    def __init__(self, epsilon: float = 0.0) -> None:
        self.epsilon = float(epsilon)
        self.name = "greedy" if self.epsilon == 0.0 else "eps-greedy"

    def choose(self, successes, failures, step, rng):
        tasks, arms = successes.shape
        block = rng.random((tasks, 2 + arms))
        greedy = argmax_random_ties(posterior_means(successes, failures), block[:, 2:])
        random_arm = np.floor(block[:, 1] * arms).astype(np.int64)
        return np.where(block[:, 0] < self.epsilon, random_arm, greedy)

    def settings(self):
        return {"epsilon": self.epsilon}


class UCB1(BanditPolicy):
    """UCB1 (Auer, Cesa-Bianchi & Fischer 2002): each arm once, then the largest
    ``mean_i + c * sqrt(2 ln t / n_i)``; ``c = 1`` is the textbook rule. Deterministic (lowest index on ties)."""

    name = "ucb1"

    def __init__(self, c: float = 1.0) -> None:
        self.c = float(c)

    def choose(self, successes, failures, step, rng):
        pulls = successes + failures
        unpulled = pulls == 0
        safe = np.maximum(pulls, 1)
        index = successes / safe + self.c * np.sqrt(2.0 * np.log(max(step, 1)) / safe)
        return np.where(unpulled.any(axis=1), np.argmax(unpulled, axis=1), np.argmax(index, axis=1))

    def settings(self):
        return {"c": self.c}


class Thompson(BanditPolicy):
    """Thompson sampling (Thompson 1933) on Beta posteriors; with ``samples > 1`` optimistic Thompson sampling
    (OTS): each arm's score is the largest of ``samples`` posterior draws.

    A Beta draw is ``G_a / (G_a + G_b)`` of two standard gamma draws; per pull each task draws, for every
    sample, the gammas ``[G_a of every arm, G_b of every arm]``.
    """

    def __init__(self, samples: int = 1) -> None:
        self.samples = int(samples)
        self.name = "ts" if self.samples == 1 else "ots"

    def choose(self, successes, failures, step, rng):
        tasks, arms = successes.shape
        shapes = np.concatenate([PRIOR[0] + successes, PRIOR[1] + failures], axis=1)
        gammas = rng.standard_gamma(np.broadcast_to(shapes[:, None], (tasks, self.samples, 2 * arms)))
        draws = gammas[..., :arms] / (gammas[..., :arms] + gammas[..., arms:])
        return np.argmax(draws.max(axis=1), axis=1)

    def settings(self):
        return {"samples": self.samples}


@lru_cache(maxsize=8)
def _gittins_table(discount: float, max_pulls: int) -> np.ndarray:
    return gittins_indices(discount, max_pulls, PRIOR)


class Gittins(BanditPolicy):
    """The arm of highest Gittins index for discount ``discount`` (random ties): the Bayes-optimal policy of the
    discounted infinite-horizon bandit, used here for a finite number of pulls with ``discount`` tuned."""

    name = "gittins"

    def __init__(self, discount: float = 0.9) -> None:
        self.discount = float(discount)
        self._table = np.zeros((0, 0))

    def start(self, pulls):
        self._table = _gittins_table(self.discount, int(pulls))

    def choose(self, successes, failures, step, rng):
        index = self._table[successes.astype(np.int64), failures.astype(np.int64)]
        return argmax_random_ties(index, rng.random(successes.shape))

    def settings(self):
        return {"discount": self.discount}


def run_bandit(policy: BanditPolicy, env_id: str, tasks: Sequence[Task], pulls: int, seed: int) -> np.ndarray:
    """Total reward of ``policy`` over ``pulls`` pulls of every task (one trial per task).

    The rewards come from the env's batched engine with ``horizon=pulls`` and one episode per task: task
    ``i``'s trial is the single env ``reset(seed=seed + i)``, the same trial for every policy.

    Returns:
        ``(tasks,)`` total rewards.
    """
    env = make_batched(env_id, tasks, episodes_per_task=1, seed=seed, horizon=int(pulls))
    env.reset()
    rng = policy_generator(seed)
    policy.start(int(pulls))
    successes = np.zeros((env.num_tasks, env.num_arms))
    failures = np.zeros_like(successes)
    rows = np.arange(env.num_tasks)
    totals = np.zeros(env.num_tasks)
    for step in range(int(pulls)):
        arms = policy.choose(successes, failures, step, rng)
        _, reward, _, _, _ = env.step(arms[:, None])
        reward = reward[:, 0]
        successes[rows, arms] += reward
        failures[rows, arms] += 1.0 - reward
        totals += reward
    return totals
