"""What MAML-TRPO and Reptile-PG share: building the policy, the seeded iteration loop, runs and checkpoints.

All randomness of meta-iteration ``i`` is derived from ``(seed, i)`` (tasks, env-copy seeds, action noise),
so a run resumed from the checkpoint after iteration ``i`` repeats exactly what the uninterrupted run did.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from metarl.agents.config import PolicyConfig, TrainConfig
from metarl.agents.policies import MLPPolicy, make_policy
from metarl.agents.sampler import BatchedSampler, make_env
from metarl.core import LearnedLearningRates, Params
from metarl.errors import UserError
from metarl.training import (
    ProgressBar,
    RunDir,
    RunLogger,
    capture_rng_states,
    config_to_dict,
    keep_freed_memory,
    save_checkpoint,
    save_config,
)

TRAIN_STREAM = 0  # the numpy seed sequence [seed, TRAIN_STREAM, iteration] drives meta-iteration `iteration`
EVAL_STREAM = 1  # held-out tasks and evaluation rollouts: a stream disjoint from training
INIT_STREAM = 2  # the policy's initial weights


def stream_rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    """The numpy generator of ``(seed, stream, index)``; distinct triples give independent streams."""
    return np.random.default_rng([int(seed), int(stream), int(index)])


def seeded_policy(
    config: PolicyConfig,
    observation_space: gym.spaces.Space,
    action_space: gym.spaces.Space,
    rng: np.random.Generator,
    extra_inputs: int = 0,
) -> MLPPolicy:
    """The policy ``config`` describes for a pair of spaces, its initial weights drawn from ``rng``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2**62)))
        return make_policy(
            observation_space,
            action_space,
            config.hidden_sizes,
            config.activation,
            config.init_std,
            extra_inputs=extra_inputs,
            min_std=config.min_std,
        )


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A ``torch.Generator`` seeded from ``rng``."""
    return torch.Generator().manual_seed(int(rng.integers(2**62)))


class MetaRLAgent:
    """Base class of the meta-RL agents (see :class:`~metarl.agents.MAMLTRPO`, :class:`~metarl.agents.ReptilePG`).

    Args:
        config: the run's configuration (``TrainConfig()`` gives the Navigation2D reference settings).
    """

    algo: ClassVar[str] = ""

    def __init__(self, config: TrainConfig | None = None) -> None:
        config = TrainConfig(algo=self.algo) if config is None else config
        if config.algo != self.algo:
            raise UserError(
                f"{type(self).__name__} runs algo={self.algo!r}, the config says algo={config.algo!r}"
            )
        self.config = config
        if config.torch_threads is not None:
            torch.set_num_threads(config.torch_threads)
        self.env = make_env(config.env, config.env_kwargs)
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
        self.sampler = BatchedSampler(
            config.env,
            config.env_kwargs,
            self.policy,
            config.episodes_per_task,
            task_features=config.oracle,
            normalized_actions=config.policy.normalized_actions,
        )
        self.iteration = 0

    def _build_policy(self, extra_inputs: int) -> MLPPolicy:
        return seeded_policy(
            self.config.policy,
            self.env.observation_space,
            self.env.action_space,
            stream_rng(self.config.seed, INIT_STREAM),
            extra_inputs,
        )

    # --- what subclasses provide ------------------------------------------------------------------
    def meta_iteration(self, iteration: int) -> dict[str, float]:
        """Run meta-iteration ``iteration`` (its randomness comes from ``(seed, iteration)``); return scalars."""
        raise NotImplementedError

    def adaptation_lr(self) -> float | Params:
        """The inner step size used when this learner adapts (Meta-SGD: the learned rates)."""
        if self.learning_rates is not None:
            return {n: r.detach() for n, r in self.learning_rates.as_dict().items()}
        return self.config.inner.lr

    # --- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training: weights, learned rates, iteration, config, RNG states."""
        return {
            "algo": self.algo,
            "iteration": self.iteration,
            "policy": self.policy.state_dict(),
            "learning_rates": None if self.learning_rates is None else self.learning_rates.state_dict(),
            "config": config_to_dict(self.config),
            "rng": capture_rng_states(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the config must describe the same networks)."""
        if state.get("algo") != self.algo:
            raise UserError(f"checkpoint is for algo={state.get('algo')!r}, not {self.algo!r}")
        try:
            self.policy.load_state_dict(state["policy"])
            if self.learning_rates is not None:
                self.learning_rates.load_state_dict(state["learning_rates"])
        except (RuntimeError, TypeError) as exc:
            raise UserError(f"checkpoint does not match the configured networks: {exc}") from None
        self.iteration = int(state["iteration"])

    # --- training -------------------------------------------------------------------------------
    def train(
        self, run_dir: str | os.PathLike[str] | RunDir | None = None, progress: bool | None = None
    ) -> list[dict]:
        """Train until ``config.iterations`` (or the time limit), continuing from ``self.iteration``.

        Args:
            run_dir: where to write config, checkpoints, metrics and TensorBoard events (``None``: nothing
                is written). A new directory is created if missing; a resumed agent passes its own.
            progress: show a progress bar (``None``: only on a terminal).

        Returns:
            The scalars of each meta-iteration run by this call.
        """
        cfg = self.config
        keep_freed_memory()
        run = _as_run_dir(run_dir) if run_dir is not None else None
        logger = None
        if run is not None:
            save_config(cfg, run.config_path)
            logger = RunLogger(run, resume_step=self.iteration - 1 if self.iteration > 0 else None)
        history: list[dict] = []
        saved_at = self.iteration if run is not None and run.has_checkpoint() else None
        started = time.perf_counter()
        bar = ProgressBar(
            cfg.iterations, initial=self.iteration, desc=f"{self.algo} {cfg.env}", disable=_no_bar(progress)
        )
        try:
            while self.iteration < cfg.iterations:
                if (  # checked after the first iteration, so that every call makes progress
                    history
                    and cfg.time_limit_seconds is not None
                    and time.perf_counter() - started > cfg.time_limit_seconds
                ):
                    bar.write(
                        f"time limit of {cfg.time_limit_seconds:g} s reached: "
                        f"stopped at iteration {self.iteration} of {cfg.iterations}"
                    )
                    break
                tick = time.perf_counter()
                metrics = self.meta_iteration(self.iteration)
                seconds = time.perf_counter() - tick
                metrics["charts/seconds_per_iteration"] = seconds
                metrics["charts/sps"] = metrics.pop("env_steps") / seconds
                history.append(metrics)
                if logger is not None:
                    logger.log(self.iteration, metrics)
                self.iteration += 1
                if run is not None and (
                    self.iteration % cfg.checkpoint_every == 0 or self.iteration == cfg.iterations
                ):
                    logger.flush()
                    save_checkpoint(run.checkpoint_path, self.state_dict())
                    saved_at = self.iteration
                bar.update(1, **_postfix(metrics))
            if (
                run is not None and saved_at != self.iteration
            ):  # stopped by the time limit between checkpoints
                logger.flush()
                save_checkpoint(run.checkpoint_path, self.state_dict())
        finally:
            bar.close()
            if logger is not None:
                logger.close()
        return history


def _as_run_dir(run_dir: str | os.PathLike[str] | RunDir) -> RunDir:
    if isinstance(run_dir, RunDir):
        return run_dir
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    return RunDir(path)


def _no_bar(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


def _postfix(metrics: dict[str, float]) -> dict[str, float]:
    shown = {"before": metrics.get("meta/return_before", math.nan)}
    after = [k for k in metrics if k.startswith("meta/return_after_step")]
    if after:
        shown["after"] = metrics[max(after, key=lambda k: int(k.removeprefix("meta/return_after_step")))]
    shown["s/it"] = metrics["charts/seconds_per_iteration"]
    return shown
