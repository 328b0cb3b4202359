"""Every MuJoCo MAML-TRPO config loads, names a MuJoCo id, uses the reference hyperparameters and builds its env."""

from __future__ import annotations

import gymnasium as gym
import pytest

pytest.importorskip("mujoco")
agents_config = pytest.importorskip("metarl.agents.config")

from metarl.training import shipped_config_dir  # noqa: E402
from metarl.training.config import load_config  # noqa: E402

CONFIG_DIR = shipped_config_dir() / "maml-trpo"
MUJOCO_CONFIGS = {
    "halfcheetah-vel.yaml": "MetaRL/HalfCheetahVel-v0",
    "halfcheetah-dir.yaml": "MetaRL/HalfCheetahDir-v0",
    "ant-vel.yaml": "MetaRL/AntVel-v0",
    "ant-dir.yaml": "MetaRL/AntDir-v0",
    "ant-dir2d.yaml": "MetaRL/AntDir2D-v0",
    "ant-goal.yaml": "MetaRL/AntGoal-v0",
    "humanoid-dir.yaml": "MetaRL/HumanoidDir-v0",
    "hopper-rand-params.yaml": "MetaRL/HopperRandParams-v0",
    "walker2d-rand-params.yaml": "MetaRL/Walker2dRandParams-v0",
}


@pytest.mark.parametrize(("name", "env_id"), sorted(MUJOCO_CONFIGS.items()))
def test_config_has_reference_hyperparameters_and_builds_its_env(name, env_id):
    cfg = load_config(agents_config.TrainConfig, CONFIG_DIR / name, [])
    assert (cfg.algo, cfg.env) == ("maml-trpo", env_id)
    assert (cfg.meta_batch_size, cfg.episodes_per_task, cfg.iterations) == (40, 20, 500)
    assert (cfg.inner.steps, cfg.inner.lr, cfg.trpo.max_kl) == (1, 0.1, 0.01)
    env = gym.make(cfg.env, **cfg.env_kwargs).unwrapped
    assert env.horizon == 200
    if "Vel" in env_id:
        assert env.velocity_range == ((0.0, 2.0) if "HalfCheetah" in env_id else (0.0, 3.0))
