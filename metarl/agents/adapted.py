"""Adapt, then act: the meta-learned policy fine-tuned on one new task, used like any trained policy.

The answer to "how do I use the meta-parameters on a new task": :meth:`GradientMetaRLAgent.adapt` runs the evaluation's
adaptation protocol (a few policy-gradient steps, each on fresh episodes of the task) and returns an
:class:`AdaptedPolicy`, whose :meth:`~AdaptedPolicy.predict` has Stable-Baselines3's signature::

    agent = metarl.load("runs/maml-trpo-navigation2d-s0")
    env = gym.make("MetaRL/Navigation2D-v0", task={"goal_x": 0.3, "goal_y": -0.2})
    policy = agent.adapt(env, steps=1)
    obs, _ = env.reset(seed=0)
    action, _ = policy.predict(obs, deterministic=True)
    policy.save("adapted.pt")   # plain tensors and numbers: torch.load(..., weights_only=True) reads it
    policy = load_adapted_policy("adapted.pt")
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import struct
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from metarl.agents.config import PolicyConfig, TrainConfig
from metarl.agents.inner import FineTuner
from metarl.agents.policies import MLPPolicy
from metarl.agents.sampler import BatchedSampler, make_env
from metarl.agents.streams import ADAPT_STREAM, seeded_policy, stream_rng, torch_generator
from metarl.core import Params, stack_over_tasks
from metarl.envs import Task, task_from_dict, task_to_dict
from metarl.errors import UserError
from metarl.training import atomic_torch_save, config_from_dict, config_to_dict


@dataclasses.dataclass
class AdaptedPolicy:
    """A policy adapted to one task.

    Attributes:
        policy: the policy network (its structure; the weights it acts with are ``params``).
        params: the adapted parameters, stacked for one task.
        sampler: how observations are encoded and actions mapped onto the env's action space.
        task: the task it adapted to.
        returns: mean episode return on the task before and after each adaptation step.
        config: the run's config (to rebuild the policy when loading a saved one).
    """

    policy: MLPPolicy
    params: Params
    sampler: BatchedSampler
    task: Task
    returns: list[float]
    config: TrainConfig

    def act(
        self, observation: Any, deterministic: bool = False, generator: torch.Generator | None = None
    ) -> np.ndarray:
        """The env's action for one observation, or one per row of a batch of observations.

        Args:
            observation: one observation of the env, or an array of them (leading axis = batch).
            deterministic: the distribution's mode instead of a sample.
            generator: the source of a sample's noise (default: a fresh, unseeded one).
        """
        single_shape = self.sampler.observation_space.shape or ()
        obs = np.asarray(observation)
        single = obs.shape == tuple(single_shape)
        batch = obs.reshape((1, -1, *single_shape))
        features = self.sampler.task_features([self.task]) if self.sampler.use_task_features else None
        with torch.no_grad():
            encoded = self.sampler.encode(batch, features)
            dist = self.policy.distribution(encoded, self.params)
            actions = dist.mode if deterministic else self.policy.sample(dist, generator or torch.Generator())
        env_actions = self.sampler.env_actions(actions)[0]
        return env_actions[0] if single else env_actions

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:
        """Stable-Baselines3's ``predict``: ``(actions, None)`` (the policy keeps no recurrent state)."""
        return self.act(observation, deterministic=deterministic), None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the adapted parameters with what rebuilds the policy: tensors, numbers and strings only, so
        ``torch.load(path, weights_only=True)`` reads it (no pickle)."""
        atomic_torch_save(
            {
                "format": 1,
                "params": {name: p.detach().clone() for name, p in self.params.items()},
                "task": task_to_dict(self.task),
                "returns": list(self.returns),
                "config": config_to_dict(self.config),
            },
            path,
        )


def adapt_policy(
    agent: Any, task_or_env: Task | gym.Env, steps: int = 1, episodes: int | None = None, seed: int = 0
) -> AdaptedPolicy:
    """Fine-tune ``agent``'s policy on one task with its inner loop (:class:`~metarl.agents.inner.FineTuner`).

    Args:
        agent: a meta-trained :class:`~metarl.agents.GradientMetaRLAgent` (``metarl.load(RUN)``).
        task_or_env: the task, or an env of the agent's task distribution set to it.
        steps: policy-gradient steps, each on fresh episodes of the task.
        episodes: episodes per step (default: the run's ``episodes_per_task``).
        seed: seed of the adaptation's episodes and action noise.

    Raises:
        UserError: a task of another distribution, or bad ``steps`` / ``episodes``.
    """
    config = agent.config
    task = task_or_env.unwrapped.get_task() if isinstance(task_or_env, gym.Env) else task_or_env
    agent.sampler.env.unwrapped.validate_task(task)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= 10_000:
        raise UserError(f"steps must be an integer in [0, 10000], got {steps!r}")
    episodes = config.episodes_per_task if episodes is None else episodes
    if isinstance(episodes, bool) or not isinstance(episodes, int) or not 1 <= episodes <= 100_000:
        raise UserError(f"episodes must be an integer in [1, 100000], got {episodes!r}")
    sampler = BatchedSampler.from_config(config, agent.policy, episodes)
    rng = stream_rng(seed, ADAPT_STREAM)
    theta = {n: p.detach() for n, p in agent.policy.params().items()}
    tuner = FineTuner(agent.policy, config.inner, config.gamma, config.gae_lambda)
    result = tuner.run(
        stack_over_tasks(theta, 1, copy=True),
        [task],
        sampler,
        rng,
        torch_generator(rng),
        steps,
        lr=agent.adaptation_lr(),
    )
    return AdaptedPolicy(agent.policy, result.params, sampler, task, result.returns[0].tolist(), config)


def load_adapted_policy(path: str | os.PathLike[str]) -> AdaptedPolicy:
    """Read a policy :meth:`AdaptedPolicy.save` wrote (without unpickling anything).

    Raises:
        UserError: not such a file.
    """
    try:
        saved = torch.load(path, weights_only=True)
        config = config_from_dict(TrainConfig, saved["config"])
        params: Mapping[str, torch.Tensor] = saved["params"]
        task = task_from_dict(saved["task"])
    except (
        OSError,
        RuntimeError,
        KeyError,
        TypeError,
        ValueError,
        EOFError,
        struct.error,
        pickle.UnpicklingError,
    ) as exc:
        raise UserError(
            f"{path} is not an adapted policy saved by metarl ({type(exc).__name__}: {exc})"
        ) from None
    env = make_env(config.env, config.env_kwargs)
    extra = 0 if not config.oracle else int(np.size(env.unwrapped.task_features(task)))
    policy_config: PolicyConfig = config.policy
    policy = seeded_policy(policy_config, env.observation_space, env.action_space, stream_rng(0, 0), extra)
    sampler = BatchedSampler.from_config(config, policy, episodes_per_task=1)
    env.close()
    return AdaptedPolicy(policy, dict(params), sampler, task, list(saved["returns"]), config)
