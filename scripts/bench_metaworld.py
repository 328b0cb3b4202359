"""Throughput of metarl's batched Meta-World engine against Meta-World's own vector envs, on ML10's training
families, the same number of envs each way:

- ``batched``: ``metarl.envs.make_batched("MetaRL/MW-ML10-v0", tasks, 1)`` (one copy per task, one process per
  usable core);
- ``sync`` / ``async``: Meta-World's ``gym.make_vec("Meta-World/ML10-train", vector_strategy=...,
  meta_batch_size=envs)`` (a ``SyncVectorEnv`` / ``AsyncVectorEnv`` of one Meta-World env per sub-env, each
  holding an equal share of the families). It is built with the function that id calls
  (``metaworld._make_ml_envs_inner`` with ``make_ml_envs_train``'s settings) on the goals of
  ``metaworld.ML10(seed=0)`` that metarl ships, which skips Meta-World's 26 s benchmark build and nothing else.

Every way steps all its envs ``steps`` times with the same uniform random actions (no policy: this measures the
envs) after one reset; throughput is env steps per second of stepping (construction and reset are reported
apart). Every way runs the same mix of families (``envs / 10`` sub-envs each).

It also projects the sampling time of a full run of the reference config ``maml-trpo/mw-ml10`` (garage's protocol
behind the paper's MAML numbers) at each way's rate: ``iterations x meta_batch_size x episodes_per_task x horizon
x (inner steps + 1)`` env steps (6.0e7) divided by the rate, on this machine (the learner's time comes on top).

    python scripts/bench_metaworld.py                 # 20 envs x 500 steps
    python scripts/bench_metaworld.py --quick         # 10 envs x 40 steps, under a minute
    python scripts/bench_metaworld.py --json bench_metaworld.json
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import gymnasium as gym
import metaworld
import numpy as np

import metarl  # noqa: F401  (registers the ids)
from metarl.envs import make_batched
from metarl.envs.batched import available_cores
from metarl.envs.metaworld.sim import native_task
from metarl.training.io import write_json_atomic

ENV_ID = "MetaRL/MW-ML10-v0"
REFERENCE_CONFIG = "maml-trpo/mw-ml10"
MODES = ("batched", "sync", "async")


class ShippedML10(metaworld.Benchmark):
    """``metaworld.ML10(seed=0)``'s train families and tasks, read from metarl's goal table."""

    def __init__(self, env) -> None:
        from metaworld.env_dict import ML10_V3

        self._train_classes = ML10_V3["train"]
        self._test_classes = ML10_V3["test"]
        self._train_tasks = [native_task(t) for t in env.all_tasks("train")]
        self._test_tasks = [native_task(t) for t in env.all_tasks("test")]


def metaworld_vector_env(env, num_envs: int, strategy: str, seed: int):
    """What ``gym.make_vec("Meta-World/ML10-train", vector_strategy=strategy, meta_batch_size=num_envs,
    seed=seed)`` returns, with every sub-env on its first task."""
    vector = metaworld._make_ml_envs_inner(
        ShippedML10(env),
        meta_batch_size=num_envs,
        seed=seed,
        split="train",
        vector_strategy=strategy,
        terminate_on_success=False,
        task_select="pseudorandom",
    )
    vector.call("sample_tasks")
    return vector


def subenv_tasks(env, num_envs: int) -> list:
    """Tasks for the batched engine with Meta-World's mix of families: ``num_envs / 10`` per training family
    (Meta-World's sub-envs each hold one family's share of goals and start on a random one of them)."""
    families = env.families["train"]
    per_family = num_envs // len(families)
    return [env.task("train", name, i) for name in families for i in range(per_family)]


def run(num_envs: int, steps: int, seed: int, modes: list[str]) -> dict:
    env = gym.make(ENV_ID).unwrapped
    if num_envs % len(env.families["train"]):
        raise SystemExit(
            f"--envs must be a multiple of {len(env.families['train'])} (Meta-World's meta_batch_size)"
        )
    actions = np.random.default_rng(seed).uniform(-1, 1, (steps, num_envs, 4)).astype(np.float32)
    result: dict = {"envs": num_envs, "steps": steps, "rates": {}, "setup_seconds": {}}
    for mode in modes:
        tick = time.perf_counter()
        if mode == "batched":
            engine = make_batched(ENV_ID, subenv_tasks(env, num_envs), 1, seed=seed)
            engine.reset()
            result["workers"] = engine.num_workers
            step = lambda a, engine=engine: engine.step(a[:, None])  # noqa: E731
        else:
            engine = metaworld_vector_env(env, num_envs, mode, seed)
            engine.reset(seed=seed)
            step = engine.step
        result["setup_seconds"][mode] = time.perf_counter() - tick
        tick = time.perf_counter()
        for a in actions:
            step(a)
        result["rates"][mode] = num_envs * steps / (time.perf_counter() - tick)
        engine.close()
    theirs = [result["rates"][m] for m in ("sync", "async") if m in result["rates"]]
    if "batched" in result["rates"] and theirs:
        result["speedup_vs_faster_metaworld"] = result["rates"]["batched"] / max(theirs)
    result["full_run_env_steps"] = full_run_env_steps()
    result["full_run_sampling_hours"] = {
        mode: result["full_run_env_steps"] / rate / 3600 for mode, rate in result["rates"].items()
    }
    return result


def full_run_env_steps(config_name: str = REFERENCE_CONFIG) -> int:
    """Env steps of a whole run of ``config_name``: every meta-iteration samples ``inner.steps + 1`` rounds."""
    from metarl.agents import TrainConfig
    from metarl.training import config_file, load_config

    config = load_config(TrainConfig, config_file(config_name), [])
    horizon = config.env_kwargs["horizon"]
    rounds = config.inner.steps + 1
    return config.iterations * config.meta_batch_size * config.episodes_per_task * horizon * rounds


def table(result: dict) -> str:
    lines = [
        f"ML10 train families, {result['envs']} envs x {result['steps']} steps, random actions "
        f"({available_cores()} usable cores)",
        f"{'mode':<10}{'env steps/s':>14}{'setup s':>10}{'full run, h':>13}",
    ]
    for mode, rate in result["rates"].items():
        hours = result["full_run_sampling_hours"][mode]
        lines.append(f"{mode:<10}{rate:>14.0f}{result['setup_seconds'][mode]:>10.1f}{hours:>13.1f}")
    if "speedup_vs_faster_metaworld" in result:
        lines.append(f"batched / faster of Meta-World's: {result['speedup_vs_faster_metaworld']:.2f}x")
    lines.append(
        f"full run: sampling hours of {REFERENCE_CONFIG} ({result['full_run_env_steps']:.2g} env steps) at each rate"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 envs x 40 steps (under a minute)")
    parser.add_argument("--envs", type=int, default=None, help="envs each way, a multiple of 10 (default 20)")
    parser.add_argument("--steps", type=int, default=None, help="steps of every env (default 500)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    num_envs = args.envs or (10 if args.quick else 20)
    steps = args.steps or (40 if args.quick else 500)
    result = run(num_envs, steps, args.seed, args.modes)
    print(table(result))
    if args.json:
        meta = {
            "machine": platform.machine(),
            "python": platform.python_version(),
            "cores": available_cores(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        }
        write_json_atomic(args.json, {"meta": meta, **result})


if __name__ == "__main__":
    main()
