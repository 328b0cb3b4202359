"""RL^2 (Duan et al. 2016, "RL^2: Fast Reinforcement Learning via Slow Reinforcement Learning"; Wang et al. 2016,
"Learning to reinforcement learn"): meta-learn a recurrent policy whose hidden state *is* the adaptation.

The agent plays trials: ``rl2.episodes_per_trial`` episodes of one task, observing its previous action, reward
and a done flag, with its GRU state kept across the episodes (:mod:`metarl.envs.trials`). "Slow" RL (PPO over
whole trials, :mod:`metarl.agents.recurrent_ppo`) trains the weights on many tasks; the "fast" RL happens inside
the hidden state, which learns to explore in early episodes and exploit what it found in later ones.

One meta-iteration: draw ``meta_batch_size`` tasks; play ``episodes_per_task`` trials of each, all at once on
the batched engine (:mod:`metarl.agents.trial_sampler`); GAE over each trial; PPO epochs with minibatches of
whole trials. Everything random in iteration ``i`` comes from ``(seed, i)``; the weights and Adam's state are
the checkpoint, so a resumed run repeats the uninterrupted one exactly.

Example::

    from metarl.agents import RL2, TrainConfig
    from metarl.agents.config import RL2Config

    agent = RL2(TrainConfig(algo="rl2", iterations=300, meta_batch_size=32, episodes_per_task=2,
                            rl2=RL2Config(episodes_per_trial=3)))
    agent.train("runs/my-rl2")
    tasks = agent.env.unwrapped.sample_tasks(10)
    print(agent.experience_returns(tasks, episodes=3, seed=0).mean(0))   # return in episodes 1, 2, 3
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from metarl.agents.agent import MetaRLAgent
from metarl.agents.config import TrainConfig
from metarl.agents.recurrent import RecurrentActorCritic
from metarl.agents.recurrent_ppo import ppo_update
from metarl.agents.sampler import MAX_STEPS_PER_ROUND, EnvActions
from metarl.agents.streams import EVAL_STREAM, INIT_STREAM, TRAIN_STREAM, stream_rng, torch_generator
from metarl.agents.trial_sampler import Trials, sample_trials
from metarl.envs import Task, sample_tasks
from metarl.envs.trials import TrialLayout
from metarl.errors import UserError

EVAL_ROLLOUT_INDEX = 1  # index of the evaluation stream for rollouts (0 draws the held-out tasks)


class RL2(MetaRLAgent):
    """RL^2: a GRU policy and value function trained with PPO over trials of many tasks.

    Args:
        config: the run configuration (``algo`` must be ``"rl2"``; the ``rl2`` section holds its settings).

    Raises:
        UserError: ``oracle=true`` (RL^2 infers the task itself), or a sampling round too large.
    """

    algo = "rl2"

    def __init__(self, config: TrainConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        if cfg.oracle:
            raise UserError(
                "rl2 infers the task from its trials: set oracle=false (the oracle is an MLP baseline)"
            )
        self.check_round_size(cfg.meta_batch_size * cfg.episodes_per_task, cfg.rl2.episodes_per_trial)
        self.layout = TrialLayout(self.env.observation_space, self.env.action_space)
        self.env_actions = EnvActions(self.env.action_space, cfg.policy.normalized_actions, cfg.env)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(stream_rng(cfg.seed, INIT_STREAM).integers(2**62)))
            self.policy = RecurrentActorCritic(
                self.layout.space.shape[0],
                self.env.action_space,
                cfg.rl2.hidden_size,
                shared_gru=cfg.rl2.shared_gru,
                init_std=cfg.policy.init_std,
                min_std=cfg.policy.min_std,
                normalized_features=self.layout.continuous_features()
                if cfg.rl2.normalize_observations
                else None,
            )
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.rl2.lr)

    def check_round_size(self, trials: int, episodes_per_trial: int) -> None:
        """Refuse a round of trials too large to hold in memory.

        Raises:
            UserError: naming the product and the settings that make it.
        """
        horizon = int(self.env.unwrapped.horizon)
        steps = trials * episodes_per_trial * horizon
        if steps > MAX_STEPS_PER_ROUND:
            raise UserError(
                f"a round of {trials} trials x {episodes_per_trial} episodes x {horizon} steps is {steps:.3g} env "
                f"steps, more than {MAX_STEPS_PER_ROUND:.0e}: lower meta_batch_size, episodes_per_task, "
                "rl2.episodes_per_trial or the env's horizon"
            )

    def sample(
        self,
        tasks: Sequence[Task],
        trials_per_task: int,
        episodes_per_trial: int,
        seed: int,
        generator: torch.Generator,
    ) -> Trials:
        """Play ``trials_per_task`` trials of ``episodes_per_trial`` episodes of every task with the current policy."""
        cfg = self.config
        return sample_trials(
            self.policy,
            self.env_actions,
            cfg.env,
            cfg.env_kwargs,
            tasks,
            trials_per_task,
            episodes_per_trial,
            seed,
            generator,
        )

    def meta_iteration(self, iteration: int) -> dict[str, float]:
        cfg = self.config
        rng = stream_rng(cfg.seed, TRAIN_STREAM, iteration)
        generator = torch_generator(rng)
        tasks = sample_tasks(self.env, cfg.meta_batch_size, int(rng.integers(2**31)))
        tick = time.perf_counter()
        trials = self.sample(
            tasks, cfg.episodes_per_task, cfg.rl2.episodes_per_trial, int(rng.integers(2**31)), generator
        )
        sampled = time.perf_counter()
        metrics = ppo_update(
            self.policy, self.optimizer, trials, cfg.rl2, cfg.gamma, cfg.gae_lambda, generator
        )
        self.policy.update_observation_statistics(trials.observations, trials.mask)
        returns = trials.episode_returns().mean(0)
        for episode, value in enumerate(returns.tolist(), start=1):
            metrics[f"meta/return_episode{episode}"] = value
        metrics.update(
            {
                "charts/seconds_sampling": sampled - tick,
                "charts/seconds_update": time.perf_counter() - sampled,
                "env_steps": trials.num_steps,
            }
        )
        return metrics

    @property
    def experience_episodes(self) -> int:
        """Episodes the evaluation plays on each held-out task by default: one trial."""
        return self.config.rl2.episodes_per_trial

    def experience_returns(self, tasks: list[Task], episodes: int, seed: int) -> np.ndarray:
        """The undiscounted return of episode ``j`` of one trial on each task (``j = 0..episodes-1``), the GRU
        state kept across the trial's episodes; ``(len(tasks), episodes)`` float64.

        No learning; actions are drawn from the policy (its exploration is part of what it learned), with noise
        and env seeds from the evaluation stream of ``seed``, so the result is a function of ``seed``.
        """
        if isinstance(episodes, bool) or not isinstance(episodes, int | np.integer) or episodes < 1:
            raise UserError(f"episodes must be an integer >= 1, got {episodes!r}")
        self.check_round_size(len(tasks), episodes)
        rng = stream_rng(seed, EVAL_STREAM, EVAL_ROLLOUT_INDEX)
        generator = torch_generator(rng)
        trials = self.sample(tasks, 1, episodes, int(rng.integers(2**31)), generator)
        return trials.episode_returns().numpy()

    # --- state ------------------------------------------------------------------------------------
    def algorithm_state(self) -> dict[str, Any]:
        """Weights and Adam's state; each iteration's randomness comes from ``(seed, iteration)``."""
        return {
            "algo": self.algo,
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_algorithm_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`algorithm_state` (the config must describe the same network)."""
        self.check_algorithm_state(state)
        try:
            self.policy.load_state_dict(state["policy"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise UserError(f"checkpoint does not match the configured network: {exc}") from None

    def trained_parameters(self) -> list[torch.Tensor]:
        return list(self.policy.parameters())

    def progress_postfix(self, scalars: Mapping[str, float]) -> dict[str, float]:
        """Return in the trial's first and last episodes, and seconds per iteration."""
        k = self.config.rl2.episodes_per_trial
        return {
            "ep1": scalars.get("meta/return_episode1", math.nan),
            f"ep{k}": scalars.get(f"meta/return_episode{k}", math.nan),
            "s/it": scalars["charts/seconds_per_iteration"],
        }
