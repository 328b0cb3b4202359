"""Env-steps per second of SB3 training through metarl's VecEnv vs SB3's DummyVecEnv and SubprocVecEnv.

Three ways to give Stable-Baselines3 ``num_envs`` sub-envs of a task distribution, each drawing a new task at
every reset (the task mixture):

* ``metarl``: :class:`metarl.integrations.sb3.TaskVecEnv`, all sub-envs in the batched engine (numpy for
  Navigation2D, the threaded MuJoCo stepper for HalfCheetahVel);
* ``dummy``: SB3's ``DummyVecEnv`` over ``RandomTaskWrapper(gym.make(id))`` single envs, one process;
* ``subproc``: SB3's ``SubprocVecEnv`` over the same single envs, one process per sub-env.

Two measurements per way, so the table shows where the time goes:

* ``raw``: stepping with pre-drawn random actions (no policy): the env side alone;
* ``ppo``: ``PPO("MlpPolicy", venv).learn(...)`` with the same hyperparameters and seed for every way: env
  steps collected per second of the whole run (rollouts and updates). ``other us/step`` is the time per env
  step that is not env stepping (policy forward, PPO update): ``1/ppo - 1/raw``.

The ways take turns within every repeat (raw, then PPO), so ratios compare measurements taken under the same
load; the figures are medians over ``--repeats``. Torch runs single-threaded (``--threads``).

Usage::

    python scripts/bench_vector.py                # 32 sub-envs, 3 repeats
    python scripts/bench_vector.py --quick        # 8 sub-envs, 1 repeat, about a minute
    python scripts/bench_vector.py --json bench_vector.json --num-envs 64
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

import metarl  # noqa: F401  (registers the ids)
from metarl.envs.wrappers import RandomTaskWrapper
from metarl.integrations.sb3 import TaskVecEnv
from metarl.training.io import write_json_atomic

WAYS = ("metarl", "dummy", "subproc")


@dataclass(frozen=True)
class Workload:
    """One group of rows: an env and its budgets."""

    env_id: str
    horizon: int
    raw_steps: int  # vector steps of random actions
    ppo_steps: int  # total env steps of PPO.learn
    n_steps: int  # PPO rollout length per sub-env


def make_single(env_id: str, horizon: int) -> gym.Env:
    """A single env drawing a new task at every reset (module-level, so SubprocVecEnv can pickle it)."""
    return RandomTaskWrapper(gym.make(env_id, horizon=horizon))


def make_venv(way: str, env_id: str, horizon: int, num_envs: int) -> VecEnv:
    if way == "metarl":
        return TaskVecEnv(env_id, num_envs, horizon=horizon)
    factories = [functools.partial(make_single, env_id, horizon) for _ in range(num_envs)]
    return DummyVecEnv(factories) if way == "dummy" else SubprocVecEnv(factories)


def raw_rate(venv: VecEnv, steps: int, seed: int) -> float:
    """Env-steps/s of stepping with random actions drawn before the clock starts."""
    rng = np.random.default_rng(seed)
    space = venv.action_space
    actions = rng.uniform(space.low, space.high, size=(steps, venv.num_envs, *space.shape)).astype(
        space.dtype
    )
    venv.seed(seed)
    venv.reset()
    start = time.perf_counter()
    for step_actions in actions:
        venv.step(step_actions)
    return steps * venv.num_envs / (time.perf_counter() - start)


def ppo_rate(venv: VecEnv, work: Workload, seed: int) -> float:
    """Env-steps/s of a whole ``PPO.learn`` run on ``venv`` (it collects whole rollouts, counted in full)."""
    batch = work.n_steps * venv.num_envs
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=work.n_steps,
        batch_size=min(batch, 512),
        n_epochs=4,
        seed=seed,
        device="cpu",
    )
    start = time.perf_counter()
    model.learn(total_timesteps=work.ppo_steps)
    return model.num_timesteps / (time.perf_counter() - start)


def benchmark(work: Workload, num_envs: int, repeats: int, seed: int) -> list[dict]:
    venvs = {way: make_venv(way, work.env_id, work.horizon, num_envs) for way in WAYS}
    warm_up = Workload(work.env_id, work.horizon, 5, work.n_steps * num_envs, work.n_steps)
    for venv in venvs.values():  # lazy imports, first torch calls (PPO's too), worker start-up
        raw_rate(venv, warm_up.raw_steps, seed)
        ppo_rate(venv, warm_up, seed)
    raw: dict[str, list[float]] = {way: [] for way in WAYS}
    ppo: dict[str, list[float]] = {way: [] for way in WAYS}
    for repeat in range(repeats):
        order = WAYS[repeat % len(WAYS) :] + WAYS[: repeat % len(WAYS)]  # each way takes every slot in turn
        for way in order:
            raw[way].append(raw_rate(venvs[way], work.raw_steps, seed))
        for way in order:
            ppo[way].append(ppo_rate(venvs[way], work, seed))
    for venv in venvs.values():
        venv.close()
    rows = []
    for way in WAYS:
        raw_median, ppo_median = statistics.median(raw[way]), statistics.median(ppo[way])
        rows.append(
            {
                **asdict(work),
                "num_envs": num_envs,
                "way": way,
                "raw_steps_per_s": raw_median,
                "ppo_steps_per_s": ppo_median,
                "other_us_per_step": 1e6 * (1 / ppo_median - 1 / raw_median),
                "all_runs": {"raw": raw[way], "ppo": ppo[way]},
            }
        )
    for row in rows:  # metarl's speed-up over each way, from medians of interleaved runs
        metarl_row = rows[0]
        row["metarl_raw_speedup"] = metarl_row["raw_steps_per_s"] / row["raw_steps_per_s"]
        row["metarl_ppo_speedup"] = metarl_row["ppo_steps_per_s"] / row["ppo_steps_per_s"]
    return rows


def format_table(rows: list[dict], meta: dict) -> str:
    header = (
        f"{'env':<26} {'way':<8} {'raw steps/s':>12} {'ppo steps/s':>12} {'other us/step':>14} "
        f"{'metarl x (raw)':>15} {'metarl x (ppo)':>15}"
    )
    lines = [
        f"SB3 vector envs: {meta['num_envs']} sub-envs, median of {meta['repeats']} interleaved runs, "
        f"torch threads {meta['torch_threads']}, {meta['cpu_count']} CPUs, load average {meta['load_average']}",
        header,
        "-" * len(header),
    ]
    for r in rows:
        lines.append(
            f"{r['env_id']:<26} {r['way']:<8} {r['raw_steps_per_s']:>12,.0f} {r['ppo_steps_per_s']:>12,.0f} "
            f"{r['other_us_per_step']:>14,.1f} {r['metarl_raw_speedup']:>14.1f}x {r['metarl_ppo_speedup']:>14.1f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 sub-envs, small budgets, 1 run")
    parser.add_argument("--num-envs", type=int, default=None, help="sub-envs of every vector env")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved runs; the median is reported")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads; 0 keeps torch's default"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    num_envs = args.num_envs if args.num_envs is not None else (8 if args.quick else 32)
    if repeats < 1:
        parser.error(f"--repeats must be >= 1, got {repeats}")
    if num_envs < 1:
        parser.error(f"--num-envs must be >= 1, got {num_envs}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    scale = 1 if args.quick else 4
    workloads = [
        Workload(
            "MetaRL/Navigation2D-v0", horizon=100, raw_steps=200 * scale, ppo_steps=4096 * scale, n_steps=64
        ),
        Workload(
            "MetaRL/HalfCheetahVel-v0", horizon=200, raw_steps=50 * scale, ppo_steps=2048 * scale, n_steps=32
        ),
    ]
    meta = {
        "num_envs": num_envs,
        "repeats": repeats,
        "statistic": "median",
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }
    rows = [row for work in workloads for row in benchmark(work, num_envs, repeats, args.seed)]
    print(format_table(rows, meta))
    if args.json is not None:
        write_json_atomic(args.json, {"meta": meta, "rows": rows})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
