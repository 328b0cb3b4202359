"""The ``sb3-ppo`` baseline of ``metarl evaluate``: Stable-Baselines3's PPO trained on the task mixture, then
fine-tuned with the protocol of every other learner (extra ``metarl[sb3]``).

PPO trains unchanged (SB3's default hyperparameters, the run's seed) on
:class:`metarl.integrations.sb3.TaskVecEnv`, whose sub-envs draw a new task at every reset, for the env steps
of the other baselines: ``iterations`` TRPO iterations of ``meta_batch_size x episodes_per_task x
(inner.steps + 1)`` episodes of ``horizon`` steps. Its policy network has the run's architecture, activation
and initial std; with ``policy.normalized_actions`` it acts in ``[-1, 1]`` mapped onto the action box, as the
sampler does. Its actor (mean network and log-std; PPO's value network is not used) is then copied into the
run's policy, which :func:`metarl.agents.evaluate.adaptation_curves` fine-tunes. The trained model is kept in
``RUN/baselines/sb3-ppo/`` with the budget it was trained for, and reused.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import gymnasium as gym
import torch
from torch import nn

from metarl.agents.config import TrainConfig
from metarl.agents.policies import GaussianMLPPolicy, MLPPolicy
from metarl.training.io import read_json, write_json_atomic

NUM_ENVS = 8  # PPO's sub-envs
N_STEPS = 256  # steps per sub-env per rollout: SB3's default rollout of 2048 samples
MODEL_FILE, RECORD_FILE = "model.zip", "trained_for.json"
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mixture_env_steps(config: TrainConfig, iterations: int, horizon: int) -> int:
    """Env steps of ``iterations`` TRPO iterations of the ``pretrained`` baseline: PPO's budget."""
    episodes = config.meta_batch_size * config.episodes_per_task * (config.inner.steps + 1)
    return int(iterations) * episodes * int(horizon)


def sb3_ppo_policy(baseline_path: Path, config: TrainConfig, iterations: int, policy: MLPPolicy) -> MLPPolicy:
    """Train (or reload from ``baseline_path``) PPO on the task mixture and copy its actor into ``policy``."""
    from metarl.integrations.sb3 import PPO, NormalizedActions, TaskVecEnv  # the optional extra

    venv = TaskVecEnv(config.env, NUM_ENVS, **config.env_kwargs)
    budget = mixture_env_steps(config, iterations, venv.get_attr("horizon")[0])
    if config.policy.normalized_actions and isinstance(venv.action_space, gym.spaces.Box):
        venv = NormalizedActions(venv)
    venv.seed(config.seed)
    record = {"env_steps": budget, "env": config.env, "env_kwargs": config.env_kwargs, "seed": config.seed}
    record["policy"] = dataclasses.asdict(config.policy)
    model_path, record_path = baseline_path / MODEL_FILE, baseline_path / RECORD_FILE
    if model_path.is_file() and record_path.is_file() and read_json(record_path) == record:
        model = PPO.load(model_path, env=venv, device="cpu")
    else:
        model = PPO(
            "MlpPolicy",
            venv,
            n_steps=N_STEPS,
            seed=config.seed,
            device="cpu",
            policy_kwargs={
                "net_arch": {"pi": list(config.policy.hidden_sizes), "vf": list(config.policy.hidden_sizes)},
                "activation_fn": ACTIVATIONS[config.policy.activation],
                "log_std_init": math.log(config.policy.init_std),
            },
        )
        model.learn(total_timesteps=budget)
        baseline_path.mkdir(parents=True, exist_ok=True)
        model.save(model_path)
        write_json_atomic(record_path, record)
    venv.close()
    copy_actor(model.policy, policy)
    return policy


def copy_actor(sb3_policy: nn.Module, policy: MLPPolicy) -> None:
    """Copy the actor of an SB3 ``ActorCriticPolicy`` (MLP extractor's policy net, action net, log-std) into
    ``policy``'s ``layers.i`` and ``log_std``; raises ``ValueError`` if the architectures differ."""
    linears = [m for m in sb3_policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
    linears.append(sb3_policy.action_net)
    source = {}
    for i, layer in enumerate(linears):
        source[f"layers.{i}.weight"], source[f"layers.{i}.bias"] = layer.weight, layer.bias
    if isinstance(policy, GaussianMLPPolicy):
        source["log_std"] = sb3_policy.log_std
    target = dict(policy.named_parameters())
    shapes = {name: tuple(p.shape) for name, p in source.items()}
    if shapes != {name: tuple(p.shape) for name, p in target.items()}:
        raise ValueError(f"SB3's actor {shapes} does not match the policy's parameters")
    with torch.no_grad():
        for name, parameter in target.items():
            parameter.copy_(source[name])
