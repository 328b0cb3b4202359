"""The random streams of a meta-RL run: every random number of training, evaluation, initialisation and
adaptation comes from the numpy generator of ``(seed, stream, index)``, so a resumed run, an evaluation and an
uninterrupted run draw exactly what they would have drawn."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from metarl.agents.config import PolicyConfig
from metarl.agents.policies import MLPPolicy, make_policy

TRAIN_STREAM = 0  # the numpy seed sequence [seed, TRAIN_STREAM, iteration] drives meta-iteration `iteration`
EVAL_STREAM = 1  # held-out tasks and evaluation rollouts: a stream disjoint from training
INIT_STREAM = 2  # the policy's initial weights
ADAPT_STREAM = 3  # GradientMetaRLAgent.adapt's episodes and action noise on a user's new task


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
