"""What every meta-RL agent shares (:class:`MetaRLAgent`: config, env, plug-in imports, seeded meta-iterations),
and what the gradient-based family adds (:class:`GradientMetaRLAgent`: an MLP policy adapted by gradient steps,
the batched sampler and its checkpoint state). The run loop itself is :class:`metarl.training.RunLoop`'s.

All randomness of meta-iteration ``i`` is derived from ``(seed, i)`` (tasks, env-copy seeds, action noise),
so a run resumed from the checkpoint after iteration ``i`` repeats exactly what the uninterrupted run did.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from metarl.agents.adapted import AdaptedPolicy, adapt_policy
from metarl.agents.config import TrainConfig
from metarl.agents.policies import MLPPolicy
from metarl.agents.ray_sampler import make_sampler
from metarl.agents.sampler import make_env
from metarl.agents.streams import INIT_STREAM, seeded_policy, stream_rng
from metarl.core import LearnedLearningRates, Params
from metarl.envs import Task
from metarl.envs.plugins import env_imports, import_env_modules
from metarl.envs.registration import check_registered
from metarl.errors import UserError
from metarl.training import RunDir, RunLoop


def with_env_imports(config: TrainConfig) -> TrainConfig:
    """``config`` after importing its ``imports``, which then also name the module of its env.

    So the run's saved config lets a new process (``metarl evaluate``, ``--resume``) find a user's env.
    """
    imported = import_env_modules(config.imports)
    check_registered(config.env)
    return dataclasses.replace(config, imports=list(dict.fromkeys([*imported, *env_imports(config.env)])))


def adaptation_metrics(name: str, values: Sequence[float]) -> dict[str, float]:
    """``meta/<name>_before`` and ``meta/<name>_after_step<k>``: the task-mean ``values`` before and after each
    inner step (``name`` is ``return``, or ``success`` for an env that reports success)."""
    metrics = {f"meta/{name}_before": float(values[0])}
    for step in range(1, len(values)):
        metrics[f"meta/{name}_after_step{step}"] = float(values[step])
    return metrics


class MetaRLAgent(RunLoop):
    """Base class of the meta-RL agents: both families (gradient-based, :class:`GradientMetaRLAgent`;
    context-based, which adapt by inferring the task from experience) share the config, the env and the
    run loop.

    ``agent.train(run_dir)`` trains it (:meth:`metarl.training.RunLoop.train`).

    Args:
        config: the run's configuration (``TrainConfig()`` gives the Navigation2D reference settings).
    """

    algo: ClassVar[str] = ""
    throughput = ("env_steps", "charts/sps")

    def __init__(self, config: TrainConfig | None = None) -> None:
        config = TrainConfig(algo=self.algo) if config is None else config
        if config.algo != self.algo:
            raise UserError(
                f"{type(self).__name__} runs algo={self.algo!r}, the config says algo={config.algo!r}"
            )
        super().__init__(with_env_imports(config))
        self.env = make_env(config.env, config.env_kwargs)

    def check_algorithm_state(self, state: Mapping[str, Any]) -> None:
        """Refuse a checkpoint written by another algorithm."""
        if state.get("algo") != self.algo:
            raise UserError(f"checkpoint is for algo={state.get('algo')!r}, not {self.algo!r}")

    def resume_hint(self, run: RunDir) -> str:
        return (
            f"continue with `metarl train --resume {run.path}`, or in Python "
            f"`metarl.agents.load_agent('{run.path}').train('{run.path}')`"
        )

    def run_name(self) -> str:
        return f"{self.algo} {self.config.env}"


class GradientMetaRLAgent(MetaRLAgent):
    """Base class of the gradient-based meta-RL agents (:class:`~metarl.agents.MAMLTRPO`,
    :class:`~metarl.agents.ReptilePG`): an MLP policy whose parameters are adapted to a task by policy-gradient
    steps on episodes from the batched sampler.

    Args:
        config: the run's configuration (``TrainConfig()`` gives the Navigation2D reference settings).
    """

    def __init__(self, config: TrainConfig | None = None) -> None:
        super().__init__(config)
        config = self.config
        extra = 0
        if config.oracle:
            features = self.env.unwrapped.task_features(self.env.unwrapped.get_task())
            if features is None:
                raise UserError(f"config oracle=true needs task features, but {config.env} provides none")
            extra = int(np.size(features))
        self.policy: MLPPolicy = self._build_policy(extra)
        self.learning_rates: LearnedLearningRates | None = None
        if config.inner.meta_sgd:
            self.learning_rates = LearnedLearningRates(self.policy.params(), init=config.inner.lr)
        self.sampler = make_sampler(config, self.policy)
        self.sampler.check_round_size(config.meta_batch_size)

    def release_resources(self) -> None:
        """Close the engine the sampler keeps between rounds (a MuJoCo round's is about 450 MB)."""
        self.sampler.release_engine()

    def _build_policy(self, extra_inputs: int) -> MLPPolicy:
        return seeded_policy(
            self.config.policy,
            self.env.observation_space,
            self.env.action_space,
            stream_rng(self.config.seed, INIT_STREAM),
            extra_inputs,
        )

    def adaptation_lr(self) -> float | Params:
        """The inner step size used when this learner adapts (Meta-SGD: the learned rates)."""
        if self.learning_rates is not None:
            return {n: r.detach() for n, r in self.learning_rates.as_dict().items()}
        return self.config.inner.lr

    # --- state ------------------------------------------------------------------------------------
    def algorithm_state(self) -> dict[str, Any]:
        """Weights and learned rates; every meta-iteration draws its randomness from ``(seed, iteration)``, so
        no RNG state is needed to continue exactly."""
        return {
            "algo": self.algo,
            "policy": self.policy.state_dict(),
            "learning_rates": None if self.learning_rates is None else self.learning_rates.state_dict(),
        }

    def load_algorithm_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`algorithm_state` (the config must describe the same networks)."""
        self.check_algorithm_state(state)
        try:
            self.policy.load_state_dict(state["policy"])
            if self.learning_rates is not None:
                self.learning_rates.load_state_dict(state["learning_rates"])
        except (RuntimeError, TypeError) as exc:
            raise UserError(f"checkpoint does not match the configured networks: {exc}") from None

    def adapt(
        self, task_or_env: Task | gym.Env, steps: int = 1, episodes: int | None = None, seed: int = 0
    ) -> AdaptedPolicy:
        """Fine-tune the meta-learned policy on one new task, as evaluation does, and return it ready to act.

        Args:
            task_or_env: the task, or an env of this task distribution set to it.
            steps: policy-gradient steps, each on fresh episodes of the task.
            episodes: episodes per step (default: the run's ``episodes_per_task``).
            seed: seed of the adaptation's episodes and action noise.
        """
        return adapt_policy(self, task_or_env, steps, episodes, seed)

    def own_adaptation_curves(
        self, tasks: Sequence[Task], episodes: int, steps: int, seed: int
    ) -> dict[str, tuple[np.ndarray, list[int]]]:
        """Held-out curves of an adaptation of the learner's own besides the policy-gradient fine-tuning every
        learner gets (ES-MAML's ES adaptation): ``{name: (per-task returns (tasks, steps + 1), episodes of
        experience before each point)}``; none by default.

        Args:
            tasks: the held-out tasks.
            episodes: episodes per task of each of the adaptation's sampling rounds.
            steps: adaptation steps.
            seed: the run's seed (the evaluation stream's rollouts derive from it).
        """
        return {}

    def trained_parameters(self) -> list[torch.Tensor]:
        rates = [] if self.learning_rates is None else list(self.learning_rates.parameters())
        return [*self.policy.parameters(), *rates]

    def progress_postfix(self, scalars: dict[str, float]) -> dict[str, float]:
        """Returns before and after the last adaptation step, and seconds per iteration."""
        shown = {"before": scalars.get("meta/return_before", math.nan)}
        after = [k for k in scalars if k.startswith("meta/return_after_step")]
        if after:
            shown["after"] = scalars[max(after, key=lambda k: int(k.removeprefix("meta/return_after_step")))]
        shown["s/it"] = scalars["charts/seconds_per_iteration"]
        return shown
