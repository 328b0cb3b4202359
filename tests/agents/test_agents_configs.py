"""Every shipped RL config (metarl/configs/) loads and names a registered env; the paper config has the paper's settings."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import pytest

import metarl.envs  # noqa: F401  (registers the MetaRL/ ids)
from metarl.agents.commands import find_config
from metarl.agents.config import TrainConfig
from metarl.training import shipped_config_dir
from metarl.training.config import load_config

CONFIGS = shipped_config_dir()
RL_CONFIGS = [
    path for algo in ("maml-trpo", "reptile", "rl2") for path in sorted((CONFIGS / algo).glob("*.yaml"))
]


@pytest.mark.parametrize("path", RL_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_loads_and_names_a_registered_env(path):
    config = load_config(TrainConfig, path)
    assert config.algo == path.parent.name
    assert gym.spec(config.env) is not None


def test_navigation_paper_config_has_the_maml_papers_settings():
    """cbfinn/maml_rl maml_trpo_point.py (training) and test_maml_point.py (evaluation)."""
    config = load_config(TrainConfig, CONFIGS / "maml-trpo" / "navigation2d-paper.yaml")
    assert (config.iterations, config.meta_batch_size, config.episodes_per_task) == (100, 40, 20)
    assert (config.policy.hidden_sizes, config.policy.activation) == ([100, 100], "relu")
    assert (config.inner.steps, config.inner.lr, config.trpo.max_kl) == (1, 0.5, 0.01)
    assert (config.evaluation.episodes_per_task, config.evaluation.later_steps_lr_scale) == (40, 0.5)


@pytest.mark.parametrize("algo", ["maml-trpo", "reptile"])
def test_train_without_config_picks_the_reference_file_over_its_variants(algo):
    """`metarl train --algo A --env ID` takes the issue's reference settings, not the paper variant of the same env."""
    assert find_config(algo, "MetaRL/Navigation2D-v0") == CONFIGS / algo / "navigation2d.yaml"
    config = load_config(TrainConfig, find_config(algo, "MetaRL/Navigation2D-v0"))
    assert (config.iterations, config.meta_batch_size, config.inner.lr) == (500, 20, 0.1)


def test_navigation_dice_config_is_the_reference_with_shorter_credit_assignment():
    """navigation2d-dice.yaml changes GAE lambda and the inner loss, nothing else of the reference."""
    reference = load_config(TrainConfig, CONFIGS / "maml-trpo" / "navigation2d.yaml")
    variant = load_config(TrainConfig, CONFIGS / "maml-trpo" / "navigation2d-dice.yaml")
    assert (variant.gae_lambda, variant.inner.objective, variant.inner.dice_lambda) == (0.5, "dice", 0.5)
    rebuilt = dataclasses.replace(
        reference,
        gae_lambda=0.5,
        inner=dataclasses.replace(reference.inner, objective="dice", dice_lambda=0.5),
    )
    assert variant == rebuilt


@pytest.mark.parametrize("path", sorted((CONFIGS / "rl2").glob("*.yaml")), ids=lambda p: p.stem)
def test_train_algo_rl2_with_an_env_picks_its_shipped_config(path):
    """`metarl train --algo rl2 --env ID` takes rl2/<name>.yaml; every RL^2 config is one trial-based run."""
    config = load_config(TrainConfig, path)
    assert find_config("rl2", config.env) == path
    assert config.rl2.minibatches <= config.meta_batch_size * config.episodes_per_task
