"""The sb3-ppo baseline: PPO's actor copied into the run's policy gives the same action distribution, and
`metarl evaluate` fine-tunes it next to the meta-learner, reusing the trained model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metarl.agents import ReptilePG, TrainConfig, evaluate_run
from metarl.agents.config import InnerConfig, PolicyConfig
from metarl.agents.streams import seeded_policy

pytest.importorskip("stable_baselines3")
from metarl.agents.sb3_baseline import ACTIVATIONS, copy_actor, mixture_env_steps  # noqa: E402
from metarl.integrations.sb3 import PPO, NormalizedActions, TaskVecEnv  # noqa: E402


@pytest.mark.parametrize(
    ("env_id", "policy_config"),
    [
        ("MetaRL/Navigation2D-v0", PolicyConfig(hidden_sizes=[16, 8], init_std=0.5)),
        ("MetaRL/TabularMDP-v0", PolicyConfig(hidden_sizes=[8], activation="relu")),
    ],
)
def test_copied_actor_has_sb3s_action_distribution(env_id, policy_config):
    venv = TaskVecEnv(env_id, 2)
    if env_id == "MetaRL/Navigation2D-v0":
        venv = NormalizedActions(venv)
    model = PPO(
        "MlpPolicy",
        venv,
        seed=1,
        device="cpu",
        policy_kwargs={
            "net_arch": {"pi": policy_config.hidden_sizes, "vf": [4]},
            "activation_fn": ACTIVATIONS[policy_config.activation],
            "log_std_init": float(np.log(policy_config.init_std)),
        },
    )
    policy = seeded_policy(policy_config, venv.observation_space, venv.action_space, np.random.default_rng(0))
    copy_actor(model.policy, policy)
    obs = torch.as_tensor(np.stack([venv.observation_space.sample() for _ in range(5)]), dtype=torch.float32)
    with torch.no_grad():
        ours = policy.distribution_from(policy.distribution_parameters(obs, policy.params()))
        theirs = model.policy.get_distribution(obs).distribution
    if env_id == "MetaRL/Navigation2D-v0":
        torch.testing.assert_close(ours.mean, theirs.mean)
        torch.testing.assert_close(ours.stddev, theirs.stddev)
    else:
        torch.testing.assert_close(ours.probs, theirs.probs)
    other = seeded_policy(
        PolicyConfig(hidden_sizes=[3]), venv.observation_space, venv.action_space, np.random.default_rng(0)
    )
    with pytest.raises(ValueError, match="does not match"):
        copy_actor(model.policy, other)


def test_evaluate_fine_tunes_the_sb3_ppo_baseline_and_reuses_it(tmp_path):
    config = TrainConfig(
        algo="reptile",
        env="MetaRL/Bandit-K5-v0",
        iterations=1,
        meta_batch_size=3,
        episodes_per_task=4,
        policy=PolicyConfig(hidden_sizes=[8], activation="relu"),
        inner=InnerConfig(steps=2, lr=0.5),
    )
    assert mixture_env_steps(config, iterations=1, horizon=10) == 3 * 4 * 3 * 10
    ReptilePG(config).train(tmp_path / "run", progress=False)
    results = evaluate_run(
        tmp_path / "run", adapt_steps=1, num_tasks=4, baselines=["sb3-ppo"], baseline_iterations=1
    )
    per_task = np.array(results["learners"]["sb3-ppo"]["per_task"])
    assert per_task.shape == (4, 2) and np.all((per_task >= 0) & (per_task <= 10))
    model = tmp_path / "run" / "baselines" / "sb3-ppo" / "model.zip"
    trained_at = model.stat().st_mtime_ns
    again = evaluate_run(
        tmp_path / "run", adapt_steps=1, num_tasks=4, baselines=["sb3-ppo"], baseline_iterations=1
    )
    assert (
        again["learners"]["sb3-ppo"] == results["learners"]["sb3-ppo"]
        and model.stat().st_mtime_ns == trained_at
    )
