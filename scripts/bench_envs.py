"""Env-steps per second of meta-RL sampling: metarl's batched engines vs the per-task SyncVectorEnv loop.

Both engines run the same workload with a 64x64 tanh MLP policy (Gaussian for Box actions, categorical for
Discrete) evaluated in the loop, with one set of policy parameters per task, as in MAML-RL sampling:

* **batched**: ``metarl.envs.make_batched`` steps all ``tasks x episodes`` copies in one call; the policy is
  one batched matmul over stacked per-task weights (``torch.baddbmm``), as metarl's sampler does.
* **sync-vector loop**: the design of the usual MAML-RL samplers (e.g. pytorch-maml-rl, learn2learn):
  Gymnasium's ``SyncVectorEnv`` over ``episodes`` single envs made with ``gym.make``; for each task, set the
  task on every sub-env, reset, and step until every episode has ended, with the task's policy forward on
  the ``(episodes, obs_dim)`` batch.

Only steps inside episodes are counted (steps of finished sub-envs that SyncVectorEnv auto-resets are not).
The batched timing includes building the engine for the tasks (a sampler does that every meta-batch).
Each figure is the median over ``--repeats`` timed runs, after one untimed warm-up run per engine.

Torch runs single-threaded by default (``--threads 1``, the same for both engines): policy forwards of this
size are latency-bound, and intra-op threads only add synchronisation. On a busy machine they are far worse:
with 2 threads on 2 shared cores the (400, 64) batched forward waited ~7 ms per op for descheduled threads.
``--threads 0`` keeps torch's default.

Usage::

    python scripts/bench_envs.py                 # 20 tasks x 20 episodes, Navigation2D 100 steps
    python scripts/bench_envs.py --quick         # reduced sizes, well under a minute
    python scripts/bench_envs.py --json bench.json --repeats 5
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import SyncVectorEnv

import metarl  # noqa: F401  (registers the ids)
from metarl.envs import make_batched
from metarl.training.io import write_json_atomic

HIDDEN = (64, 64)


@dataclass(frozen=True)
class Workload:
    """One benchmark row."""

    env_id: str
    num_tasks: int
    episodes_per_task: int
    horizon: int


class StackedMLPPolicy:
    """A tanh MLP with one parameter set per task, stored stacked along a leading task dimension."""

    def __init__(self, num_tasks: int, obs_dim: int, action_space: gym.spaces.Space, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        out_dim = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        sizes = (obs_dim, *HIDDEN, out_dim)
        self.weights = [
            torch.randn(num_tasks, n_in, n_out, generator=self.generator) / math.sqrt(n_in)
            for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
        ]
        self.biases = [torch.zeros(num_tasks, 1, n_out) for n_out in sizes[1:]]
        self.log_std = torch.full((num_tasks, 1, out_dim), -1.0)
        self.action_scale = None if self.discrete else torch.as_tensor(action_space.high, dtype=torch.float32)

    def _sample(self, out: torch.Tensor, log_std: torch.Tensor) -> np.ndarray:
        if self.discrete:
            probs = torch.softmax(out, dim=-1).reshape(-1, out.shape[-1])
            return torch.multinomial(probs, 1, generator=self.generator).reshape(out.shape[:-1]).numpy()
        noise = torch.randn(out.shape, generator=self.generator)
        return ((out + log_std.exp() * noise) * self.action_scale).numpy()

    @torch.no_grad()
    def act_all(self, obs: np.ndarray) -> np.ndarray:
        """Actions for observations ``(tasks, episodes, obs_dim)``: one batched matmul per layer."""
        h = torch.from_numpy(obs)
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if layer < len(self.weights) - 1:
                h = torch.tanh(h)
        return self._sample(h, self.log_std)

    @torch.no_grad()
    def act_task(self, obs: np.ndarray, task: int) -> np.ndarray:
        """Actions for observations ``(episodes, obs_dim)`` of one task with that task's parameters."""
        h = torch.from_numpy(obs)
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.addmm(b[task], h, w[task])
            if layer < len(self.weights) - 1:
                h = torch.tanh(h)
        return self._sample(h, self.log_std[task])


def _setup(work: Workload, seed: int):
    env = gym.make(work.env_id, horizon=work.horizon)
    env.reset(seed=seed)
    tasks = env.unwrapped.sample_tasks(work.num_tasks)
    obs_dim = int(np.prod(env.observation_space.shape))
    policy = StackedMLPPolicy(work.num_tasks, obs_dim, env.action_space, seed)
    env.close()
    return tasks, policy


def run_batched(work: Workload, tasks, policy: StackedMLPPolicy, seed: int) -> tuple[int, float]:
    """Env-steps and seconds for one round of all episodes on the batched engine."""
    policy.generator.manual_seed(seed)  # every run does the same work
    start = time.perf_counter()
    benv = make_batched(work.env_id, tasks, work.episodes_per_task, seed=seed, horizon=work.horizon)
    obs = benv.reset()
    steps = 0
    while not benv.done.all():
        running = ~benv.done
        obs, *_ = benv.step(policy.act_all(obs))
        steps += int(running.sum())
    elapsed = time.perf_counter() - start
    benv.close()
    return steps, elapsed


def run_sync_vector_loop(work: Workload, tasks, policy: StackedMLPPolicy, venv: SyncVectorEnv, seed: int):
    """Env-steps and seconds for the same episodes as a per-task loop over a SyncVectorEnv."""
    policy.generator.manual_seed(seed)
    start = time.perf_counter()
    steps = 0
    for i, task in enumerate(tasks):
        for sub_env in venv.envs:
            sub_env.unwrapped.set_task(task)
        obs, _ = venv.reset(seed=seed + i * work.episodes_per_task)
        done = np.zeros(work.episodes_per_task, dtype=bool)
        while not done.all():
            obs, _, terminated, truncated, _ = venv.step(policy.act_task(obs, i))
            steps += int((~done).sum())
            done |= terminated | truncated
    return steps, time.perf_counter() - start


def benchmark(work: Workload, repeats: int, seed: int = 0) -> dict:
    """Median env-steps/s of both engines on ``work``, measured alternately in the same process."""
    tasks, policy = _setup(work, seed)
    venv = SyncVectorEnv(
        [lambda: gym.make(work.env_id, horizon=work.horizon) for _ in range(work.episodes_per_task)]
    )
    run_batched(work, tasks, policy, seed)  # warm-up: first torch calls, lazy imports
    run_sync_vector_loop(work, tasks, policy, venv, seed)
    batched, looped = [], []
    for _ in range(repeats):
        steps_b, seconds_b = run_batched(work, tasks, policy, seed)
        steps_l, seconds_l = run_sync_vector_loop(work, tasks, policy, venv, seed)
        batched.append(steps_b / seconds_b)
        looped.append(steps_l / seconds_l)
    venv.close()
    batched_rate, looped_rate = statistics.median(batched), statistics.median(looped)
    return {
        **asdict(work),
        "env_steps_per_round": {"batched": steps_b, "sync_vector_loop": steps_l},
        "batched_steps_per_s": batched_rate,
        "sync_vector_loop_steps_per_s": looped_rate,
        "speedup": batched_rate / looped_rate,
        "all_runs_steps_per_s": {"batched": batched, "sync_vector_loop": looped},
    }


def format_table(rows: list[dict], meta: dict) -> str:
    header = (
        f"{'env':<24} {'tasks x episodes x horizon':>27} {'batched steps/s':>16} "
        f"{'SyncVectorEnv loop steps/s':>27} {'speedup':>8}"
    )
    lines = [
        f"metarl env benchmark: median of {meta['repeats']} runs, torch threads {meta['torch_threads']}, "
        f"{meta['cpu_count']} CPUs, policy 64x64 tanh MLP in the loop",
        header,
        "-" * len(header),
    ]
    for r in rows:
        size = f"{r['num_tasks']} x {r['episodes_per_task']} x {r['horizon']}"
        lines.append(
            f"{r['env_id']:<24} {size:>27} {r['batched_steps_per_s']:>16,.0f} "
            f"{r['sync_vector_loop_steps_per_s']:>27,.0f} {r['speedup']:>7.1f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (10 tasks x 10 episodes), 1 run")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per engine; the median is reported"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for both engines; 0 keeps torch's default",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if repeats < 1:
        parser.error(f"--repeats must be >= 1, got {repeats}")
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    tasks, episodes = (10, 10) if args.quick else (20, 20)
    workloads = [
        Workload("MetaRL/Navigation2D-v0", tasks, episodes, 100),
        Workload("MetaRL/Bandit-K5-v0", tasks, episodes, 10),
        Workload("MetaRL/TabularMDP-v0", tasks, episodes, 10),
    ]
    meta = {
        "repeats": repeats,
        "statistic": "median",
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gymnasium": gym.__version__,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }
    rows = [benchmark(work, repeats, args.seed) for work in workloads]
    print(format_table(rows, meta))
    if args.json is not None:
        write_json_atomic(args.json, {"meta": meta, "rows": rows})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
