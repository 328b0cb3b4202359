"""Throughput of the batched MuJoCo engine against Gymnasium's vector envs and the raw physics ceiling.

For HalfCheetahVel and AntVel, collects ``tasks x episodes`` episodes of ``horizon`` steps with a 64x64 tanh
MLP Gaussian policy evaluated on every step, four ways, in one run:

- ``batched``: ``metarl.envs.make_batched`` (the thread-pool engine, all copies in one call, each thread's
  slice stepped in one compiled call without the GIL: ``metarl.envs.mujoco.native_step``);
- ``bindings``: the same engine stepping each copy through the Python bindings (``native=False``), as it did
  before the compiled step;
- ``sync``: a per-task loop over one Gymnasium ``SyncVectorEnv`` of ``episodes`` envs;
- ``async``: the same loop over an ``AsyncVectorEnv`` (one process per env);
- ``ceiling``: bare ``mujoco.mj_step`` on one thread (one ``nstep=frame_skip`` call per env step, random
  controls, no policy, no observations) times the number of usable cores; measured just before and after the
  batched engine and averaged. Also ``physics all thr``: the same bare loop on all cores at once, which is
  what a loaded machine actually gives (on a shared machine it is far below the ceiling).

Throughput counts env steps of the episodes collected (a finished copy's later steps are not counted).

    python scripts/bench_mujoco.py               # 40 tasks x 20 episodes x 200 steps
    python scripts/bench_mujoco.py --quick       # under a minute
    python scripts/bench_mujoco.py --json bench_mujoco.json
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time

import gymnasium as gym
import mujoco
import numpy as np
import torch
from torch import nn

import metarl  # noqa: F401  (registers the ids)
from metarl.envs.batched import available_cores
from metarl.envs.mujoco.engine import MujocoBatchedEnv
from metarl.training.io import write_json_atomic

ENV_IDS = ["MetaRL/HalfCheetahVel-v0", "MetaRL/AntVel-v0"]


class Policy(nn.Module):
    """64x64 tanh MLP mean with a fixed log-std, the usual MAML-TRPO policy."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.mean = nn.Sequential(
            nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, act_dim)
        )
        self.log_std = nn.Parameter(torch.full((act_dim,), -0.5))

    @torch.no_grad()
    def act(self, obs: np.ndarray, generator: torch.Generator) -> np.ndarray:
        mean = self.mean(torch.as_tensor(obs, dtype=torch.float32))
        noise = torch.randn(mean.shape, generator=generator)
        return (mean + self.log_std.exp() * noise).numpy()


def bench_batched(env, tasks, episodes, policy, seed, native=True) -> tuple[int, float]:
    benv = MujocoBatchedEnv(env, tasks, episodes, seed=seed, native=native)
    generator = torch.Generator().manual_seed(seed)
    obs = benv.reset()
    steps, start = 0, time.perf_counter()
    while not benv.done.all():
        steps += int((~benv.done).sum())
        actions = policy.act(obs.reshape(-1, obs.shape[-1]), generator)
        obs, *_ = benv.step(actions.reshape(benv.batch_shape + benv.action_space.shape))
    elapsed = time.perf_counter() - start
    benv.close()
    return steps, elapsed


def bench_vector(vector_env, tasks, policy, seed, horizon) -> tuple[int, float]:
    generator = torch.Generator().manual_seed(seed)
    steps, start = 0, time.perf_counter()
    for i, task in enumerate(tasks):
        vector_env.call("set_task", task)
        obs, _ = vector_env.reset(seed=seed + i * vector_env.num_envs)
        done = np.zeros(vector_env.num_envs, dtype=bool)
        for _ in range(horizon):
            steps += int((~done).sum())
            obs, _, terminated, truncated, _ = vector_env.step(policy.act(obs, generator))
            done |= terminated | truncated
            if done.all():
                break
    return steps, time.perf_counter() - start


def bench_ceiling(env_id, seconds: float, seed: int, threads: int = 1) -> tuple[int, float]:
    """Bare physics: ``threads`` threads each step their own ``MjData`` with random controls for ``seconds``."""
    env = gym.make(env_id).unwrapped
    model = env.model
    controls = np.random.default_rng(seed).uniform(-1, 1, (env.horizon, model.nu)) * env.to_ctrl(
        np.ones(model.nu)
    )
    counts = [0] * threads

    def physics(index: int) -> None:
        data, elapsed = mujoco.MjData(model), 0.0
        while elapsed < seconds:
            mujoco.mj_resetData(model, data)
            data.qpos[:], data.qvel[:] = env.initial_state(
                np.random.default_rng([seed, index, counts[index]])
            )
            mujoco.mj_forward(model, data)
            start = time.perf_counter()
            for ctrl in controls:
                data.ctrl[:] = ctrl
                mujoco.mj_step(model, data, nstep=env.frame_skip)
            elapsed += time.perf_counter() - start
            counts[index] += len(controls)

    start = time.perf_counter()
    workers = [threading.Thread(target=physics, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts), time.perf_counter() - start


def measure_ceilings(env_id: str, seconds: float, seed: int, cores: int) -> tuple[float, float]:
    """(bare one-thread env-steps/s, bare env-steps/s of ``cores`` threads stepping at once)."""
    steps, elapsed = bench_ceiling(env_id, seconds, seed)
    parallel_steps, parallel_elapsed = bench_ceiling(env_id, seconds, seed, threads=cores)
    return steps / elapsed, parallel_steps / parallel_elapsed


def run(env_id: str, num_tasks: int, episodes: int, horizon: int, seed: int, modes: list[str]) -> dict:
    env = gym.make(env_id, horizon=horizon).unwrapped
    env.reset(seed=seed)
    tasks = env.sample_tasks(num_tasks)
    torch.manual_seed(seed)
    policy = Policy(env.observation_space.shape[0], env.action_space.shape[0])
    cores = available_cores()
    result = {
        "env": env_id,
        "tasks": num_tasks,
        "episodes_per_task": episodes,
        "horizon": horizon,
        "cores": cores,
    }
    rates = {}
    seconds = 2.0 if horizon >= 100 else 0.5
    # Physics-only rates are measured just before and just after the batched engine and averaged, so that
    # the ratio compares measurements taken under the same machine load.
    ceiling_runs: list[tuple[float, float]] = []
    if "ceiling" in modes:
        ceiling_runs.append(measure_ceilings(env_id, seconds, seed, cores))
    for mode, native in [("batched", True), ("bindings", False)]:
        if mode in modes:
            steps, elapsed = bench_batched(env, tasks, episodes, policy, seed, native)
            rates[mode] = steps / elapsed
    if "ceiling" in modes:
        ceiling_runs.append(measure_ceilings(env_id, seconds, seed, cores))
        one_thread = float(np.mean([r[0] for r in ceiling_runs]))
        rates["ceiling_one_thread"] = one_thread
        rates["ceiling"] = cores * one_thread
        rates["physics_all_threads"] = float(np.mean([r[1] for r in ceiling_runs]))
    for mode, vector_class in [("sync", gym.vector.SyncVectorEnv), ("async", gym.vector.AsyncVectorEnv)]:
        if mode in modes:
            vector_env = vector_class([lambda: gym.make(env_id, horizon=horizon) for _ in range(episodes)])
            steps, elapsed = bench_vector(vector_env, tasks, policy, seed, horizon)
            vector_env.close()
            rates[mode] = steps / elapsed
    result["env_steps_per_second"] = rates
    if "batched" in rates and "ceiling" in rates:
        result["batched_fraction_of_ceiling"] = rates["batched"] / rates["ceiling"]
    if "batched" in rates and "physics_all_threads" in rates:
        result["batched_fraction_of_measured_parallel_physics"] = (
            rates["batched"] / rates["physics_all_threads"]
        )
    if "batched" in rates and "sync" in rates:
        result["batched_speedup_over_sync"] = rates["batched"] / rates["sync"]
    if "batched" in rates and "bindings" in rates:
        result["batched_speedup_over_bindings"] = rates["batched"] / rates["bindings"]
    return result


def table(results: list[dict]) -> str:
    lines = [
        f"{'env':<26} {'copies':>12} {'batched':>10} {'bindings':>10} {'sync':>10} {'async':>10} {'ceiling':>10} "
        f"{'batched/ceiling':>16} {'batched/sync':>13} {'physics all thr':>15} {'batched/that':>13}",
    ]
    for r in results:
        rates = r["env_steps_per_second"]

        def fmt(key, rates=rates):
            return f"{rates[key]:>10,.0f}" if key in rates else f"{'-':>10}"

        frac = r.get("batched_fraction_of_ceiling")
        frac_measured = r.get("batched_fraction_of_measured_parallel_physics")
        speedup = r.get("batched_speedup_over_sync")
        copies = f"{r['tasks']}x{r['episodes_per_task']}x{r['horizon']}"
        lines.append(
            f"{r['env']:<26} {copies:>12} {fmt('batched')} {fmt('bindings')} {fmt('sync')} {fmt('async')} {fmt('ceiling')} "
            f"{(f'{frac:.0%}' if frac is not None else '-'):>16} {(f'{speedup:.1f}x' if speedup else '-'):>13} "
            f"{fmt('physics_all_threads'):>15} {(f'{frac_measured:.0%}' if frac_measured else '-'):>13}"
        )
    lines.append(
        "(env steps per second; ceiling = bare one-thread mj_step rate x cores; physics all thr = bare mj_step "
        "measured on all cores at once, what the machine gives right now)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="8 tasks x 10 episodes x 50 steps (under a minute)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--envs", nargs="+", default=ENV_IDS, help="env ids to measure")
    parser.add_argument("--modes", nargs="+", default=["batched", "bindings", "sync", "async", "ceiling"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    num_tasks, episodes, horizon = (8, 10, 50) if args.quick else (40, 20, 200)
    load = os.getloadavg()
    results = [run(env_id, num_tasks, episodes, horizon, args.seed, args.modes) for env_id in args.envs]
    print(table(results))
    print(
        f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; mujoco {mujoco.__version__}"
    )
    if args.json:
        meta = {
            "mujoco": mujoco.__version__,
            "gymnasium": gym.__version__,
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "load_average_before": load,
            "quick": args.quick,
        }
        write_json_atomic(args.json, {"meta": meta, "results": results})


if __name__ == "__main__":
    main()
