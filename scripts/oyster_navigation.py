"""PEARL's own code (katerakelly/oyster) on metarl's Navigation2D protocol: the reference for metarl's PEARL.

Oyster's point robot differs from MetaRL/Navigation2D-v0 (MAML's task): it starts each episode at a random
point of [-1, 1]^2, its goals fill [-1, 1]^2, its episodes are 20 steps and it never terminates. This script
registers, inside oyster, metarl's Navigation2D env behind oyster's env interface (start at the origin, goal ~
U[-0.5, 0.5]^2, actions clipped to [-0.1, 0.1]^2, reward -distance after the move, done within 0.01 of the
goal per axis), then
runs oyster's ``PEARLSoftActorCritic`` unchanged with its ``point-robot.json`` settings (collection in 20-step
episodes, as metarl's ``pearl/navigation2d`` config), and evaluates the trained agent with oyster's own
``collect_paths`` (episode 1 with z from the prior, then z from the posterior of all episodes so far,
deterministic actions) in the evaluation's 100-step episodes, on the 40 held-out goals ``metarl evaluate``
draws for a seed-0 run. It writes the per-episode returns (mean and 95% CI) as CSV, next to oyster's own logs.

Oyster needs old ``gym``, ``gtimer``, ``click``, ``joblib`` and ``python-dateutil``; gym is replaced by
gymnasium (the point env uses only ``Env`` and ``spaces.Box``), the rest go in a side directory::

    git clone https://github.com/katerakelly/oyster /tmp/oyster       # or any checkout of it
    pip install --target /tmp/oyster-deps gtimer==1.0.0b5 click joblib python-dateutil
    python scripts/oyster_navigation.py --oyster /tmp/oyster --deps /tmp/oyster-deps --out /tmp/oyster-nav
    python scripts/oyster_navigation.py ... --quick        # 2 iterations of 20 updates, to check the set-up
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import types
from pathlib import Path

import gymnasium
import numpy as np

from metarl.envs.navigation import GOAL_HIGH, GOAL_LOW, GoalTask, Navigation2DEnv

ENV_NAME = "metarl-navigation2d"
TRAIN_TASKS = 80
HELD_OUT = 40
EVAL_EPISODES = 3
EVAL_HORIZON = 100


def install_shims() -> None:
    """Make ``import gym`` / ``from gym.spaces import Box`` resolve to gymnasium (oyster's point env and
    wrappers use nothing else of gym), and ``import mujoco_py`` an empty module (oyster's wrappers import it
    for a camera wrapper this script does not use)."""
    sys.modules["mujoco_py"] = types.ModuleType("mujoco_py")
    shim = types.ModuleType("gym")
    shim.Env = gymnasium.Env
    shim.spaces = gymnasium.spaces
    sys.modules["gym"] = shim
    sys.modules["gym.spaces"] = gymnasium.spaces


def env_registry(name: str) -> types.ModuleType:
    """A module with oyster's env registry: an ``ENVS`` dict and the ``register_env(name)`` decorator."""
    module = types.ModuleType(name)
    module.ENVS = {}

    def register_env(env_name):
        def register_env_fn(fn):
            module.ENVS[env_name] = fn
            return fn

        return register_env_fn

    module.register_env = register_env
    return module


def import_envs_registry(oyster: Path) -> types.ModuleType:
    """``rlkit.envs`` without its ``__init__``, which imports every env module (the MuJoCo ones need
    mujoco_py): the package with oyster's ``ENVS`` registry and ``register_env`` only."""
    import rlkit

    envs = env_registry("rlkit.envs")
    envs.__path__ = [str(oyster / "rlkit" / "envs")]
    sys.modules["rlkit.envs"] = envs
    rlkit.envs = envs
    return envs


def point_env_class(env_module):
    """``MetaRL/Navigation2D-v0`` in oyster's env interface (old gym API: ``reset() -> obs``, 4-tuple ``step``;
    ``reset_task(idx)`` picks one of a fixed list of goals), registered as :data:`ENV_NAME`."""

    class NavigationPointEnv(gymnasium.Env):
        def __init__(self, goals: list[np.ndarray]) -> None:
            self.goals = [np.asarray(g, dtype=np.float64) for g in goals]
            self.navigation = Navigation2DEnv()
            self.observation_space = self.navigation.observation_space
            self.action_space = self.navigation.action_space
            self.reset_task(0)

        def get_all_task_idx(self):
            return range(len(self.goals))

        def reset_task(self, idx: int) -> None:
            self._goal = self.goals[idx]
            self.navigation.set_task(GoalTask(goal_x=float(self._goal[0]), goal_y=float(self._goal[1])))
            self.reset()

        def reset(self):
            return self.navigation.reset()[0]

        def step(self, action):
            obs, reward, terminated, _, info = self.navigation.step(action)
            return obs, reward, terminated, info

    env_module.register_env(ENV_NAME)(NavigationPointEnv)
    return NavigationPointEnv


def goals(seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Oyster-style training goals (U[-0.5, 0.5]^2 from ``seed``) and the held-out goals of a seed-0
    ``metarl evaluate`` run on Navigation2D."""
    from metarl.agents.config import TrainConfig
    from metarl.agents.evaluate import held_out_tasks

    env = gymnasium.make("MetaRL/Navigation2D-v0")
    held_out = [
        t.goal for t in held_out_tasks(TrainConfig(algo="pearl", env="MetaRL/Navigation2D-v0"), HELD_OUT, env)
    ]
    rng = np.random.default_rng(seed)
    train = [rng.uniform(GOAL_LOW, GOAL_HIGH, size=2) for _ in range(TRAIN_TASKS)]
    return train, held_out


def build(args, train_goals, held_out_goals):
    """Oyster's launch_experiment.experiment, up to the algorithm (networks as oyster builds them)."""
    import torch

    envs = import_envs_registry(Path(args.oyster).resolve())
    import rlkit.torch.pytorch_util as ptu
    from configs.default import default_config
    from rlkit.envs.wrappers import NormalizedBoxEnv
    from rlkit.torch.networks import FlattenMlp, MlpEncoder
    from rlkit.torch.sac.agent import PEARLAgent
    from rlkit.torch.sac.policies import TanhGaussianPolicy
    from rlkit.torch.sac.sac import PEARLSoftActorCritic

    cls = point_env_class(envs)
    variant = json.loads(json.dumps(default_config))
    point = json.loads((Path(args.oyster) / "configs" / "point-robot.json").read_text())
    for key, value in point.items():
        if isinstance(value, dict):
            variant[key].update(value)
        else:
            variant[key] = value
    algo = variant["algo_params"]
    algo["num_iterations"] = args.iterations
    if args.quick:
        algo.update(
            num_train_steps_per_itr=20,
            num_initial_steps=40,
            num_steps_prior=40,
            num_extra_rl_steps_posterior=40,
        )
    algo["num_evals"] = 1
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002  (oyster draws from the global numpy RNG)
    ptu.set_gpu_mode(False)
    env = NormalizedBoxEnv(cls(train_goals + held_out_goals))
    obs_dim, action_dim, latent = 2, 2, variant["latent_size"]
    net = args.net_size or variant["net_size"]
    encoder = MlpEncoder(
        hidden_sizes=[200, 200, 200], input_size=obs_dim + action_dim + 1, output_size=2 * latent
    )
    qf1 = FlattenMlp(hidden_sizes=[net] * 3, input_size=obs_dim + action_dim + latent, output_size=1)
    qf2 = FlattenMlp(hidden_sizes=[net] * 3, input_size=obs_dim + action_dim + latent, output_size=1)
    vf = FlattenMlp(hidden_sizes=[net] * 3, input_size=obs_dim + latent, output_size=1)
    policy = TanhGaussianPolicy(
        hidden_sizes=[net] * 3, obs_dim=obs_dim + latent, latent_dim=latent, action_dim=action_dim
    )
    agent = PEARLAgent(latent, encoder, policy, **algo)
    tasks = list(env.get_all_task_idx())
    algorithm = PEARLSoftActorCritic(
        env=env,
        train_tasks=tasks[:TRAIN_TASKS],
        eval_tasks=tasks[TRAIN_TASKS:],
        nets=[agent, qf1, qf2, vf],
        latent_dim=latent,
        **algo,
    )
    return algorithm, variant


def evaluate(algorithm) -> np.ndarray:
    """``(held-out tasks, EVAL_EPISODES)`` returns from oyster's ``collect_paths`` in 100-step episodes."""
    algorithm.training_mode(False)
    algorithm.sampler.max_path_length = EVAL_HORIZON
    algorithm.num_steps_per_eval = EVAL_EPISODES * EVAL_HORIZON
    rows = []
    for idx in algorithm.eval_tasks:
        paths = algorithm.collect_paths(idx, epoch=0, run=0)
        # an episode that reaches the goal ends early; its steps stay in the budget, so fewer episodes may fit
        returns = [float(np.sum(p["rewards"])) for p in paths[:EVAL_EPISODES]]
        rows.append(returns + [np.nan] * (EVAL_EPISODES - len(returns)))
    return np.array(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oyster", required=True, help="a checkout of github.com/katerakelly/oyster")
    parser.add_argument("--deps", help="directory holding gtimer, click, joblib, dateutil (pip --target)")
    parser.add_argument("--out", required=True, help="output directory (CSV and oyster's logs)")
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--net-size", type=int, default=None, help="hidden width (oyster: 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 tiny iterations: checks the set-up only")
    args = parser.parse_args(argv)
    if args.quick:
        args.iterations = 2
    if args.iterations < 1:
        parser.error(f"--iterations must be >= 1, got {args.iterations}")
    if not (Path(args.oyster) / "rlkit" / "torch" / "sac" / "sac.py").is_file():
        parser.error(
            f"--oyster {args.oyster} is not a checkout of github.com/katerakelly/oyster (no rlkit/torch/sac/sac.py)"
        )
    for path in (args.deps, args.oyster):
        if path:
            sys.path.insert(0, str(Path(path).resolve()))
    install_shims()
    import torch

    torch.set_num_threads(1)
    from metarl.training.stats import mean_ci

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_goals, held_out_goals = goals(args.seed)
    algorithm, variant = build(args, train_goals, held_out_goals)
    from rlkit.launchers.launcher_util import setup_logger

    os.environ["DEBUG"] = "0"  # oyster's launcher sets it; its eval_util reads it
    variant["util_params"]["base_log_dir"] = str(out)
    setup_logger(ENV_NAME, exp_id=f"seed{args.seed}", variant=variant, base_log_dir=str(out))
    algorithm.train()
    returns = evaluate(algorithm)
    with open(out / "oyster_pearl_navigation2d_eval.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode", "tasks", "mean_return", "ci95"])
        for j in range(EVAL_EPISODES):
            column = returns[:, j][np.isfinite(returns[:, j])]
            mean, ci = mean_ci(column)
            writer.writerow([j + 1, len(column), f"{mean:.3f}", f"{ci:.3f}"])
            print(f"episode {j + 1}: {mean:.2f} ± {ci:.2f} over {len(column)} held-out goals")
    return 0


if __name__ == "__main__":
    sys.exit(main())
