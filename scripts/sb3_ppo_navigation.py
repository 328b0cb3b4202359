"""Stable-Baselines3 PPO as a baseline on Navigation2D: trained on the task mixture vs on one fixed task.

Both runs use SB3's PPO unchanged, through :class:`metarl.integrations.sb3.TaskVecEnv` (the batched engine
behind SB3's VecEnv API), with the same hyperparameters, seed and env-step budget:

* ``mixture``: every sub-env draws a new goal from the distribution at each of its resets;
* ``fixed``: every sub-env runs the first of the held-out goals.

It writes the learning curves (mean return of the episodes finished in each rollout) and an evaluation of
each final policy's mean action, one episode per task, on the fixed goal and on held-out goals (95% CIs),
as two small CSV files. Neither policy sees the goal, so neither can adapt: the mixture policy learns the
move that is best on average, the fixed-task one the way to its goal; meta-RL is the gap between them.

    python scripts/sb3_ppo_navigation.py                  # 100k env steps per run, writes docs/results/data/
    python scripts/sb3_ppo_navigation.py --quick --out /tmp/ppo
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

import metarl  # noqa: F401  (registers the ids)
from metarl.envs import make_batched
from metarl.integrations.sb3 import TaskVecEnv
from metarl.training.stats import mean_ci

ENV_ID = "MetaRL/Navigation2D-v0"
HELD_OUT_SEED = 1000  # the held-out goals, the same for every run
OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "data"


class RolloutReturns(BaseCallback):
    """Records ``(env steps, mean return of the episodes that ended in the rollout)`` after each rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.curve: list[tuple[int, float, int]] = []
        self._returns: list[float] = []

    def _on_step(self) -> bool:
        self._returns += [info["episode"]["r"] for info in self.locals["infos"] if "episode" in info]
        return True

    def _on_rollout_end(self) -> None:
        if self._returns:
            self.curve.append((self.num_timesteps, float(np.mean(self._returns)), len(self._returns)))
        self._returns = []


def held_out_tasks(num_tasks: int) -> list:
    env = gym.make(ENV_ID)
    env.reset(seed=HELD_OUT_SEED)
    return env.unwrapped.sample_tasks(num_tasks)


def train(setting: str, fixed_task, args) -> tuple[PPO, list[tuple[int, float, int]]]:
    tasks = [fixed_task] if setting == "fixed" else None
    venv = VecMonitor(TaskVecEnv(ENV_ID, args.num_envs, tasks=tasks))
    venv.seed(args.seed)
    model = PPO("MlpPolicy", venv, n_steps=args.n_steps, batch_size=256, seed=args.seed, device="cpu")
    callback = RolloutReturns()
    model.learn(total_timesteps=args.steps, callback=callback)
    venv.close()
    return model, callback.curve


def evaluate(model: PPO, tasks: list) -> np.ndarray:
    """Return of one episode per task with the policy's mean action."""
    benv = make_batched(ENV_ID, tasks, episodes_per_task=1, seed=0)
    obs = benv.reset()
    returns = np.zeros(len(tasks))
    while not benv.done.all():
        actions, _ = model.predict(obs.reshape(len(tasks), -1), deterministic=True)
        obs, reward, *_ = benv.step(actions.reshape(benv.batch_shape + benv.action_space.shape))
        returns += reward[:, 0]
    return returns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="env steps per run (default 100k; quick 8k)")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--n-steps", type=int, default=256, help="PPO rollout length per sub-env")
    parser.add_argument("--tasks", type=int, default=40, help="held-out goals of the evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny budget, for a smoke run")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the two CSV files")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_steps = min(args.n_steps, 64)
    args.steps = args.steps if args.steps is not None else (8_192 if args.quick else 100_000)
    torch.set_num_threads(1)

    tasks = held_out_tasks(args.tasks)
    fixed_task = tasks[0]
    args.out.mkdir(parents=True, exist_ok=True)
    curve_rows, eval_rows = [], []
    for setting in ("mixture", "fixed"):
        model, curve = train(setting, fixed_task, args)
        curve_rows += [(setting, steps, f"{ret:.4f}", n) for steps, ret, n in curve]
        for name, eval_tasks in (("fixed goal", [fixed_task]), ("held-out goals", tasks)):
            mean, ci = mean_ci(evaluate(model, eval_tasks))  # one task: the half-width is nan
            eval_rows.append((setting, name, len(eval_tasks), f"{mean:.3f}", f"{ci:.3f}"))
            print(
                f"PPO on the {setting:<7} after {model.num_timesteps:>7} steps, on {name:<14}: {mean:8.2f} ± {ci:.2f}"
            )
    with open(args.out / "sb3_ppo_navigation2d_curve.csv", "w", newline="") as f:
        csv.writer(f).writerows([("setting", "env_steps", "mean_return", "episodes"), *curve_rows])
    with open(args.out / "sb3_ppo_navigation2d_eval.csv", "w", newline="") as f:
        csv.writer(f).writerows([("trained_on", "evaluated_on", "tasks", "mean_return", "ci95"), *eval_rows])
    print(f"wrote {args.out / 'sb3_ppo_navigation2d_curve.csv'} and sb3_ppo_navigation2d_eval.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
