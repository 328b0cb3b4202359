"""ES-MAML (Song et al., ICLR 2020, "ES-MAML: Simple Hessian-Free Meta Learning") and OpenAI-ES (Salimans et
al. 2017, "Evolution Strategies as a Scalable Alternative to Reinforcement Learning").

One meta-iteration:

1. draw ``meta_batch_size`` tasks and ``n = es.pairs`` directions ``eps_i ~ N(0, I)`` over the flat policy
   parameters theta;
2. score ``theta`` and ``theta +- sigma eps_i`` on every task by the return after adaptation
   (:class:`~metarl.agents.es_fitness.PopulationFitness`: ES, policy-gradient or hill-climbing adaptation for
   ES-MAML, none for OpenAI-ES), all vectors x tasks in batched sampling rounds; the fitness of a vector is its
   mean over the tasks (theta's own score is only logged);
3. ``g = sum_i (F_i+ - F_i-) eps_i / (2 n sigma)`` on centered ranks (:func:`metarl.core.antithetic_gradient`),
   ``g - weight_decay * theta``, one Adam or SGD ascent step.

Everything of iteration ``i`` derives from ``(seed, TRAIN_STREAM, i)``, and the optimizer's state is in the
checkpoint, so a resumed run repeats the uninterrupted one. ``metarl evaluate`` fine-tunes the result with
policy-gradient steps of the ``inner`` section, like every gradient-based learner, and with ES-MAML's own ES or
hill-climbing adaptation (:meth:`ESMAML.own_adaptation_curves`), on the same axis of episodes of experience.

Example::

    from metarl.agents import ESMAML, TrainConfig

    agent = ESMAML(TrainConfig(algo="es-maml", iterations=100))
    agent.train("runs/my-es-maml")
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from metarl.agents.agent import GradientMetaRLAgent, adaptation_metrics
from metarl.agents.config import TrainConfig
from metarl.agents.es_fitness import PopulationFitness, PopulationResult, flat_parameters
from metarl.agents.sampler import BatchedSampler
from metarl.agents.streams import EVAL_STREAM, TRAIN_STREAM, stream_rng, torch_generator
from metarl.core import antithetic_directions, antithetic_gradient, antithetic_population, unflatten_like
from metarl.envs import Task, sample_tasks
from metarl.errors import UserError

EVAL_ROLLOUT_INDEX = 1  # the evaluation stream's rollouts, as the fine-tuning of every learner (0: the tasks)


class ESMAML(GradientMetaRLAgent):
    """ES-MAML: the MAML objective (return after adaptation) maximised with antithetic ES gradients.

    Args:
        config: the run configuration (``algo`` must be ``"es-maml"``).
    """

    algo = "es-maml"
    adaptation: str | None = None  # the config's es.adaptation, unless a subclass fixes it

    def __init__(self, config: TrainConfig | None = None) -> None:
        super().__init__(config)
        es = self.config.es
        self.population_fitness = PopulationFitness(
            self.policy, self.sampler, self.config, self.adaptation or es.adaptation
        )
        params = list(self.policy.parameters())
        if es.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=es.lr)
        else:
            self.optimizer = torch.optim.SGD(params, lr=es.lr)

    def evaluate_population(self, vectors: torch.Tensor, tasks: list[Task], seed: int) -> PopulationResult:
        """Return after adaptation of every vector on every task (the step a distributed backend replaces)."""
        return self.population_fitness(vectors, tasks, seed)

    def meta_iteration(self, iteration: int) -> dict[str, float]:
        cfg, es = self.config, self.config.es
        rng = stream_rng(cfg.seed, TRAIN_STREAM, iteration)
        generator = torch_generator(rng)
        tasks = sample_tasks(self.sampler.env, cfg.meta_batch_size, int(rng.integers(2**31)))
        theta = flat_parameters(self.policy)
        directions = antithetic_directions(es.pairs, theta.numel(), generator)
        vectors = torch.cat([theta.unsqueeze(0), antithetic_population(theta, directions, es.sigma)])
        tick = time.perf_counter()
        result = self.evaluate_population(vectors, tasks, int(rng.integers(2**31)))
        fitness = result.fitness.mean(1)
        gradient = antithetic_gradient(directions, fitness[1:], es.sigma, es.fitness_shaping)
        gradient = gradient - es.weight_decay * theta
        self.optimizer.zero_grad()
        for param, grad in zip(
            self.policy.parameters(), unflatten_like(-gradient, self.policy.params()).values(), strict=True
        ):
            param.grad = grad.clone()  # the optimizers minimise: ascend on the estimate
        self.optimizer.step()
        metrics = adaptation_metrics("return", result.returns[0].mean(0).tolist())
        metrics.update(
            {
                "es/fitness_mean": float(fitness[1:].mean()),
                "es/fitness_max": float(fitness[1:].max()),
                "losses/es_gradient_norm": float(gradient.norm()),
                "losses/meta_update_norm": float((flat_parameters(self.policy) - theta).norm()),
                "charts/seconds_population": time.perf_counter() - tick,
                "env_steps": result.env_steps,
            }
        )
        return metrics

    def own_adaptation_curves(
        self, tasks: Sequence[Task], episodes: int, steps: int, seed: int
    ) -> dict[str, tuple[np.ndarray, list[int]]]:
        """ES or hill-climbing adaptation on held-out tasks, ``steps`` steps of ``episodes`` episodes per
        evaluated vector, placed at ``j x (2 m + 1) x episodes`` episodes of experience after step ``j`` (the
        current parameters and their ``2 m`` perturbations are all played on the task). Policy-gradient
        adaptation is the evaluation's own fine-tuning, so ``pg`` and ``none`` add no curve."""
        adaptation = self.adaptation or self.config.es.adaptation
        if adaptation not in ("es", "hill_climbing"):
            return {}
        sampler = BatchedSampler.from_config(self.config, self.policy, episodes_per_task=episodes)
        fitness = PopulationFitness(self.policy, sampler, self.config, adaptation, steps=steps)
        rng = stream_rng(seed, EVAL_STREAM, EVAL_ROLLOUT_INDEX)
        result = fitness(flat_parameters(self.policy).unsqueeze(0), list(tasks), int(rng.integers(2**31)))
        per_round = (2 * self.config.es.adaptation_pairs + 1) * episodes
        name = f"{self.algo} ({adaptation} adaptation)"
        return {
            name: (result.returns[0].numpy().astype(np.float64), [j * per_round for j in range(steps + 1)])
        }

    def algorithm_state(self) -> dict[str, Any]:
        """The policy and the optimizer's moments (Adam's carry over iterations)."""
        return {**super().algorithm_state(), "optimizer": self.optimizer.state_dict()}

    def load_algorithm_state(self, state: Mapping[str, Any]) -> None:
        super().load_algorithm_state(state)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, ValueError) as exc:
            raise UserError(f"checkpoint has no usable ES optimizer state ({exc}): start a new run") from None


class OpenAIES(ESMAML):
    """OpenAI-ES on the task mixture: ES-MAML without adaptation (``es.adaptation*`` keys are not read).

    A separate ``algo`` rather than ``es-maml es.adaptation=none`` because it is a different method by name
    (``--algo openai-es``), with its own shipped configs, and its runs log a return before adaptation only.

    Args:
        config: the run configuration (``algo`` must be ``"openai-es"``).
    """

    algo = "openai-es"
    adaptation = "none"
