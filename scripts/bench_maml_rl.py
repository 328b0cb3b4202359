"""Seconds per MAML-TRPO meta-iteration on Navigation2D, split into sampling, inner adaptation and TRPO step.

Reference config: maml-trpo/navigation2d (metarl/configs/maml-trpo/navigation2d.yaml) (20 tasks x 20 episodes x 100 steps, sampled before and
after adaptation; 64x64 tanh policy; TRPO with 10 CG iterations). Also measured in the same run, the variants
taking turns iteration by iteration so that load from other processes hits them alike: second-order MAML with
the general autograd curvature (``inner.curvature=autograd``: double backward, the path of policies without a
closed form), first-order MAML and Reptile-PG (3 inner VPG steps); and a TRPO iteration of ``metarl evaluate``'s
oracle baseline on TabularMDP (its policy also sees the task's 550 features), next to the same iteration with the
linear baseline fitted on those features too (1124 instead of 24 features per task; they are constant within a
task).
Prints a table; ``--json PATH`` writes the numbers.
Wall-clock columns are split by phase; ``cpu s/iter`` is the process CPU time of the whole iteration, which
on a shared, oversubscribed machine is closer to what an idle machine would take than the wall-clock time.
Freed memory is kept for reuse (:func:`metarl.memory.keep_freed_memory`, as training runs do by default);
``--system-malloc`` leaves glibc's malloc as it is, and the ``page faults`` column shows what that costs.

    python scripts/bench_maml_rl.py                 # 3 measured iterations per variant (after 1 warm-up)
    python scripts/bench_maml_rl.py --quick         # 5 tasks x 10 episodes, 1 measured iteration
    python scripts/bench_maml_rl.py --threads 2 --json bench_maml_rl.json
    python scripts/bench_maml_rl.py --threads 2 --system-malloc   # without keep_freed_memory
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from metarl.agents import MAMLTRPO, ReptilePG, TrainConfig
from metarl.agents.evaluate import baseline_config
from metarl.memory import keep_freed_memory
from metarl.training import config_file, load_config
from metarl.training.io import write_json_atomic

CONFIG = config_file("maml-trpo/navigation2d")


@contextlib.contextmanager
def baseline_on_task_features():
    """Fit the linear baseline on every observation column, the oracle's task features included, as a reference."""
    from unittest import mock

    with mock.patch(
        "metarl.agents.episodes.Episodes.env_observations", lambda episodes: episodes.observations
    ):
        yield


def measure_interleaved(variants, iterations: int, warmup: int) -> list[dict]:
    """Run the variants' meta-iterations in turn (round robin), so that machine load hits them alike."""
    rows: dict[str, list] = {name: [] for name, _, _ in variants}
    for i in range(warmup + iterations):
        for name, agent, context in variants:
            with context():
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                tick, cpu_tick = time.perf_counter(), time.process_time()
                metrics = agent.meta_iteration(i)
                total = time.perf_counter() - tick
            metrics["cpu_seconds"] = time.process_time() - cpu_tick
            metrics["page_faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            if i >= warmup:
                rows[name].append((metrics, total))
    return [summarize(name, rows[name], iterations) for name, _, _ in variants]


def summarize(name: str, rows: list, iterations: int) -> dict:
    median = statistics.median

    def col(key: str) -> float:
        return median(m.get(key, float("nan")) for m, _ in rows)

    total = median(t for _, t in rows)
    if "charts/seconds_trpo" in rows[0][0]:
        sampling, adaptation, trpo = (
            col("charts/seconds_sampling"),
            col("charts/seconds_adaptation"),
            col("charts/seconds_trpo"),
        )
    else:  # Reptile: sampling and inner steps are interleaved in its inner loop
        sampling, adaptation, trpo = float("nan"), col("charts/seconds_inner_loop"), float("nan")
    steps = median(float(m.get("env_steps", 0)) for m, _ in rows)
    return {
        "variant": name,
        "seconds_per_iteration": total,
        "cpu_seconds_per_iteration": col("cpu_seconds"),
        "page_faults_per_iteration": col("page_faults"),
        "sampling": sampling,
        "inner_adaptation": adaptation,
        "trpo_step": trpo,
        "env_steps_per_iteration": steps,
        "iterations_measured": iterations,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small batch (5 tasks x 10 episodes), 1 iteration"
    )
    parser.add_argument("--iterations", type=int, default=3, help="measured iterations per variant")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc as it is (training runs call metarl.memory.keep_freed_memory)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    freed_memory_kept = False if args.system_malloc else keep_freed_memory()
    overrides = ["meta_batch_size=5", "episodes_per_task=10"] if args.quick else []
    iterations = 1 if args.quick else args.iterations
    config = load_config(TrainConfig, CONFIG, overrides)
    autograd = load_config(TrainConfig, CONFIG, [*overrides, "inner.curvature=autograd"])
    first_order = load_config(TrainConfig, CONFIG, [*overrides, "inner.first_order=true"])
    reptile = load_config(TrainConfig, config_file("reptile/navigation2d"), overrides)
    tabular = load_config(TrainConfig, config_file("maml-trpo/tabular-mdp"), overrides)
    oracle = baseline_config(tabular, "oracle", tabular.iterations)
    variants = [
        ("maml-trpo (second order)", MAMLTRPO(config), contextlib.nullcontext),
        ("  autograd curvature", MAMLTRPO(autograd), contextlib.nullcontext),
        ("maml-trpo (first order)", MAMLTRPO(first_order), contextlib.nullcontext),
        ("reptile-pg (3 VPG steps)", ReptilePG(reptile), contextlib.nullcontext),
        ("oracle TRPO, TabularMDP", MAMLTRPO(oracle), contextlib.nullcontext),
        ("  fit on task features", MAMLTRPO(oracle), baseline_on_task_features),
    ]
    results = measure_interleaved(variants, iterations, warmup=1)
    env = {
        "config": "maml-trpo/navigation2d",
        "overrides": overrides,
        "tasks": config.meta_batch_size,
        "episodes_per_task": config.episodes_per_task,
        "hidden_sizes": config.policy.hidden_sizes,
        "torch_threads": args.threads,
        "freed_memory_kept": freed_memory_kept,
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    header = (
        f"{'variant':<26} {'s/iter':>8} {'cpu s/iter':>10} {'sampling':>9} {'adapt':>8} {'trpo':>8} "
        f"{'env-steps/s':>12} {'page faults':>12}"
    )
    print(
        f"MAML-RL on MetaRL/Navigation2D-v0: {config.meta_batch_size} tasks x {config.episodes_per_task} episodes "
        f"x 100 steps, policy {config.policy.hidden_sizes} tanh, {args.threads} torch thread(s), "
        f"load average {env['load_average_1min']:.1f} on {env['cpus']} CPUs; median of {iterations} iteration(s); "
        f"freed memory kept: {'yes' if freed_memory_kept else 'no'}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        sps = r["env_steps_per_iteration"] / r["seconds_per_iteration"]
        cells = [
            f"{r[k]:>8.2f}" if r[k] == r[k] else f"{'-':>8}"
            for k in ("sampling", "inner_adaptation", "trpo_step")
        ]
        print(
            f"{r['variant']:<26} {r['seconds_per_iteration']:>8.2f} {r['cpu_seconds_per_iteration']:>10.2f} "
            f"{cells[0]:>9} {cells[1]} {cells[2]} {sps:>12,.0f} {r['page_faults_per_iteration']:>12,.0f}"
        )
    if args.json:
        write_json_atomic(args.json, {"environment": env, "results": results})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
