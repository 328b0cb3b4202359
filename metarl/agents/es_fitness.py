"""The fitness of an ES population: return after adaptation of every parameter vector on every task.

:meth:`PopulationFitness.__call__` takes ``(parameter vectors, tasks, seed)`` and returns fitness; every vector x
task pair is one task slot of the batched sampler, so a whole population is rolled out in one sampling round per
adaptation step (never a Python loop over perturbations). It is the one place a distributed backend replaces.

Adaptation operators (``es.adaptation``; Song et al. 2020, "ES-MAML", Algorithms 3-5):

* ``none``: the return of the vector itself (OpenAI-ES on the task mixture);
* ``pg``: ``K`` policy-gradient steps of the ``inner`` section (:class:`~metarl.agents.inner.FineTuner`);
* ``es``: ``K`` ES steps, each evaluating the current slot parameters and ``2 m`` antithetic perturbations of
  them on the slot's task, ``phi <- phi + adaptation_lr * g`` (:func:`metarl.core.antithetic_gradient`);
* ``hill_climbing``: the same rounds, ``phi <- `` the best of the ``2 m + 1`` evaluated vectors.

A final round measures the adapted parameters, whose mean return is the fitness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from metarl.agents.config import TrainConfig
from metarl.agents.inner import FineTuner
from metarl.agents.policies import MLPPolicy
from metarl.agents.sampler import BatchedSampler
from metarl.agents.streams import torch_generator
from metarl.core import antithetic_directions, antithetic_gradient, flatten, unflatten_rows
from metarl.envs import Task


@dataclass
class PopulationResult:
    """What :class:`PopulationFitness` measured.

    Attributes:
        returns: ``(P, T, K + 1)`` mean episode return of vector ``p`` on task ``t`` before and after each
            adaptation step (``K + 1 = 1`` without adaptation); the fitness is ``returns[..., -1]``.
        env_steps: environment steps taken.
    """

    returns: torch.Tensor
    env_steps: int

    @property
    def fitness(self) -> torch.Tensor:
        """``(P, T)`` return after adaptation."""
        return self.returns[..., -1]


class PopulationFitness:
    """Scores parameter vectors by their return after adaptation, all vectors x tasks in batched rounds.

    Args:
        policy: the policy module (its parameter layout gives the vectors' meaning).
        sampler: the batched sampler.
        config: the run config (``es.adaptation*`` and, for ``pg``, the ``inner`` section).
        adaptation: the operator (``"none"`` for OpenAI-ES whatever the config says).
        steps: adaptation steps (default: ``es.adaptation_steps``; an evaluation may take more).
    """

    def __init__(
        self,
        policy: MLPPolicy,
        sampler: BatchedSampler,
        config: TrainConfig,
        adaptation: str,
        steps: int | None = None,
    ) -> None:
        self.policy = policy
        self.sampler = sampler
        self.es = config.es
        self.adaptation = adaptation
        if steps is None:
            steps = config.es.adaptation_steps
        self.steps = 0 if adaptation == "none" else int(steps)
        self.fine_tuner = FineTuner(policy, config.inner, config.gamma, config.gae_lambda)
        self.layout = {n: p.detach() for n, p in policy.params().items()}

    def __call__(self, vectors: torch.Tensor, tasks: list[Task], seed: int) -> PopulationResult:
        """Return after adaptation of each of ``vectors`` (``(P, dim)``) on each of ``tasks``.

        All randomness (env seeds, action noise, adaptation perturbations) derives from ``seed``.
        """
        rng = np.random.default_rng(int(seed))
        generator = torch_generator(rng)
        num_vectors, num_tasks = vectors.shape[0], len(tasks)
        slots = vectors.repeat_interleave(num_tasks, dim=0)  # slot p * T + t: vector p on task t
        slot_tasks = list(tasks) * num_vectors
        if self.adaptation == "pg" and self.steps:
            result = self.fine_tuner.run(
                unflatten_rows(slots, self.layout), slot_tasks, self.sampler, rng, generator, steps=self.steps
            )
            returns, env_steps = result.returns, result.env_steps
        else:
            returns, env_steps = self._search(slots, slot_tasks, rng, generator)
        return PopulationResult(returns.reshape(num_vectors, num_tasks, -1), env_steps)

    def _search(
        self, phi: torch.Tensor, tasks: list[Task], rng: np.random.Generator, generator: torch.Generator
    ) -> tuple[torch.Tensor, int]:
        """ES or hill-climbing adaptation of each slot (``(S, dim)``), ``K`` steps then a measuring round."""
        es = self.es
        returns, env_steps = [], 0
        for step in range(self.steps + 1):
            if step == self.steps:
                candidates = phi.unsqueeze(0)
            else:
                directions = antithetic_directions(es.adaptation_pairs, phi.numel(), generator).view(
                    es.adaptation_pairs, *phi.shape
                )
                offsets = es.adaptation_sigma * directions
                candidates = torch.cat([phi.unsqueeze(0), phi + offsets, phi - offsets])  # (2m + 1, S, dim)
            rows = candidates.reshape(-1, phi.shape[-1])
            episodes = self.sampler.sample(
                unflatten_rows(rows, self.layout),
                tasks * candidates.shape[0],
                seed=int(rng.integers(2**31)),
                generator=generator,
            )
            env_steps += episodes.num_steps
            scores = episodes.task_returns().view(candidates.shape[0], -1)  # (2m + 1, S)
            returns.append(scores[0])
            if step == self.steps:
                break
            if self.adaptation == "hill_climbing":
                best = scores.argmax(0)
                phi = candidates[best, torch.arange(phi.shape[0])]
            else:
                gradient = antithetic_gradient(
                    directions, scores[1:], es.adaptation_sigma, es.fitness_shaping
                )
                phi = phi + es.adaptation_lr * gradient
        return torch.stack(returns, dim=1), env_steps


def flat_parameters(policy: MLPPolicy) -> torch.Tensor:
    """The policy's parameters as one flat vector (detached), in :meth:`MLPPolicy.params` order."""
    return flatten(p.detach() for p in policy.params().values())
