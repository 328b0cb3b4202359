"""Seconds per sampling round of MAML-TRPO on HalfCheetahVel: the in-process batched sampler against the Ray sampler
(``sampler.backend=ray``) with 2 actors on this machine, the round's communication alone, and a projection of the
full run against the number of 2-core machines.

* local: :class:`metarl.agents.sampler.BatchedSampler`, one process, the reference config
  ``maml-trpo/halfcheetah-vel`` (40 tasks x 20 episodes x 200 steps per round).
* ray: :class:`metarl.agents.ray_sampler.RaySampler`, the same round split over 2 actors on a Ray instance this
  script starts (``num_cpus=2``); the episodes are checked equal to the local ones.
* communication: the round's parameters put into the object store and fetched by one actor (the broadcast), and the
  round's episodes returned by an actor that holds them (the gather): serialisation and transfer, no sampling.
* learner: one local MAML-TRPO iteration's adaptation + TRPO seconds (``charts/seconds_adaptation`` and
  ``charts/seconds_trpo``), which stay on the driver.
* ES-MAML: whole meta-iterations in process and with the population's rounds on the 2 actors (the iterations'
  numbers checked equal): the reference config ``es-maml/navigation2d`` (41 parameter vectors x 5 tasks, each
  adapted by one ES step of 3 antithetic pairs: rounds of 2,870 and 410 env copies, cheap numpy steps), and the
  same ES-MAML on HalfCheetahVel with 5 pairs (rounds of 770 and 110 copies of MuJoCo, 200 steps).

Model of one meta-iteration with ``A`` sampling actors (one per core; a 2-core machine runs 2) and ``k`` inner steps,
so ``k + 1`` sampling rounds::

    t(A) = (k + 1) * (t_local_round / A + t_comm(A)) + t_learner,   t_comm(A) = A * t_broadcast + t_gather

(each actor fetches the parameters once; the episodes come back once in total); the full run is ``iterations x
t(A)``. It assumes the actors are as fast as this process and the network as fast as this machine's object store.
Prints a table; ``--json PATH`` writes the numbers. Take timings on an otherwise idle machine.

    python scripts/bench_ray.py                  # the reference round, 2 measured rounds each (after 1 warm-up)
    python scripts/bench_ray.py --quick          # 4 tasks x 2 episodes x 20 steps, 1 round: a smoke run
    python scripts/bench_ray.py --json bench_ray.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from metarl.agents import MAMLTRPO, TrainConfig
from metarl.agents.config import SamplerConfig
from metarl.agents.es import ESMAML
from metarl.agents.ray_sampler import make_sampler
from metarl.core import stack_over_tasks
from metarl.envs import sample_tasks
from metarl.training import config_file, load_config
from metarl.training.io import write_json_atomic

CONFIG = "maml-trpo/halfcheetah-vel"
QUICK = ["meta_batch_size=4", "episodes_per_task=2", "env_kwargs.horizon=20", "policy.hidden_sizes=[16,16]"]
ES_CONFIG = "es-maml/navigation2d"
ES_WORKLOADS = {"Navigation2D": [], "HalfCheetahVel": ["env=MetaRL/HalfCheetahVel-v0", "es.pairs=5"]}
ES_QUICK = ["meta_batch_size=2", "es.pairs=3", "env_kwargs.horizon=10", "policy.hidden_sizes=[8,8]"]
WORKERS = 2
MACHINES = (1, 2, 4, 8, 16, 32)


def time_rounds(sampler, params, env, num_tasks: int, rounds: int, warmup: int) -> tuple[float, list]:
    """Median seconds of a sampling round, and every round's episodes."""
    seconds, episodes = [], []
    for i in range(warmup + rounds):
        tasks = sample_tasks(env, num_tasks, i)
        tick = time.perf_counter()
        episodes.append(sampler.sample(params, tasks, i, torch.Generator().manual_seed(i)))
        if i >= warmup:
            seconds.append(time.perf_counter() - tick)
    return statistics.median(seconds), episodes


def time_es_iterations(config: TrainConfig, iterations: int, warmup: int) -> tuple[float, list[dict]]:
    """Median seconds of an ES-MAML meta-iteration on ``config``'s sampler backend, and each iteration's scalars
    (timings left out)."""
    agent = ESMAML(config)
    seconds, scalars = [], []
    try:
        if config.sampler.backend == "ray":
            agent.sampler.pids()  # actors up before the clock starts
        for i in range(warmup + iterations):
            tick = time.perf_counter()
            metrics = agent.meta_iteration(i)
            if i >= warmup:
                seconds.append(time.perf_counter() - tick)
            scalars.append({k: v for k, v in metrics.items() if "second" not in k})
    finally:
        if config.sampler.backend == "ray":
            agent.sampler.close()
    return statistics.median(seconds), scalars


def time_communication(ray, params, episodes, repeats: int) -> tuple[float, float]:
    """Median seconds of the parameter broadcast (put + one actor's get) and of the episodes' gather."""

    @ray.remote(num_cpus=0)
    class Echo:
        def hold(self, value):
            self.value = value

        def take(self, value) -> None:
            return None

        def give(self):
            return self.value

    echo = Echo.remote()
    ray.get(echo.hold.remote(episodes))
    broadcast, gather = [], []
    for _ in range(repeats):
        tick = time.perf_counter()
        ray.get(echo.take.remote(ray.put(params)))
        broadcast.append(time.perf_counter() - tick)
        tick = time.perf_counter()
        ray.get(echo.give.remote())
        gather.append(time.perf_counter() - tick)
    ray.kill(echo)
    return statistics.median(broadcast), statistics.median(gather)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny round, 1 measured: a smoke run")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds per backend")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args(argv)
    try:
        import ray
    except ImportError:
        print("bench_ray needs Ray: pip install 'metarl[ray]'", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    rounds, warmup = (1, 0) if args.quick else (args.rounds, 1)
    config = load_config(
        TrainConfig, config_file(CONFIG), [*(QUICK if args.quick else []), "torch_threads=1"]
    )
    agent = MAMLTRPO(config)
    policy, env, num_tasks = agent.policy, agent.sampler.env, config.meta_batch_size
    params = stack_over_tasks({n: p.detach() for n, p in policy.params().items()}, num_tasks, copy=True)

    local_seconds, local_episodes = time_rounds(agent.sampler, params, env, num_tasks, rounds, warmup)
    scalars = agent.meta_iteration(0)
    learner = scalars["charts/seconds_adaptation"] + scalars["charts/seconds_trpo"]

    es_configs = {
        env: load_config(
            TrainConfig,
            config_file(ES_CONFIG),
            [*overrides, *(ES_QUICK if args.quick else []), "torch_threads=1"],
        )
        for env, overrides in ES_WORKLOADS.items()
    }
    es_local = {env: time_es_iterations(c, rounds, warmup) for env, c in es_configs.items()}

    ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False)
    try:
        es_ray = {
            env: time_es_iterations(
                dataclasses.replace(c, sampler=SamplerConfig(backend="ray", workers=WORKERS)), rounds, warmup
            )
            for env, c in es_configs.items()
        }
        distributed = make_sampler(
            dataclasses.replace(config, sampler=SamplerConfig(backend="ray", workers=WORKERS)), policy
        )
        distributed.pids()  # actors up before the clock starts
        ray_seconds, ray_episodes = time_rounds(distributed, params, env, num_tasks, rounds, warmup)
        same = all(
            torch.equal(a.rewards, b.rewards) and torch.equal(a.actions, b.actions)
            for a, b in zip(local_episodes, ray_episodes, strict=True)
        )
        distributed.close()  # frees its actors' CPUs for the echo actor
        broadcast, gather = time_communication(
            ray, params, local_episodes[-1], repeats=3 if args.quick else 5
        )
    finally:
        ray.shutdown()

    sampling_rounds = config.inner.steps + 1
    projection = []
    for machines in MACHINES:
        actors = 2 * machines
        per_iteration = sampling_rounds * (local_seconds / actors + actors * broadcast + gather) + learner
        projection.append(
            {
                "machines": machines,
                "actors": actors,
                "seconds_per_iteration": per_iteration,
                "hours_full_run": per_iteration * config.iterations / 3600,
            }
        )
    result = {
        "config": CONFIG + (" --quick " + " ".join(QUICK) if args.quick else ""),
        "round": f"{num_tasks} tasks x {config.episodes_per_task} episodes x {env.unwrapped.horizon} steps",
        "local_seconds_per_round": local_seconds,
        "ray_seconds_per_round": ray_seconds,
        "ray_workers": WORKERS,
        "ray_overhead": ray_seconds / local_seconds - 1.0,
        "ray_equals_local": same,
        "broadcast_seconds": broadcast,
        "gather_seconds": gather,
        "learner_seconds_per_iteration": learner,
        "sampling_rounds_per_iteration": sampling_rounds,
        "iterations": config.iterations,
        "model": "t(A) = (k+1) * (t_local_round / A + A * t_broadcast + t_gather) + t_learner, A = 2 x machines",
        "projection": projection,
        "es": [
            {
                "config": " ".join([ES_CONFIG, *ES_WORKLOADS[env], *(ES_QUICK if args.quick else [])]),
                "env": env,
                "local_seconds_per_iteration": es_local[env][0],
                "ray_seconds_per_iteration": es_ray[env][0],
                "speedup": es_local[env][0] / es_ray[env][0],
                "ray_equals_local": es_local[env][1] == es_ray[env][1],
            }
            for env in ES_WORKLOADS
        ],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "quick": args.quick,
    }
    print(f"{CONFIG}: {result['round']}{' (quick)' if args.quick else ''}")
    print(f"  in-process sampling round     {local_seconds:8.3f} s")
    print(
        f"  ray, {WORKERS} actors                {ray_seconds:8.3f} s  ({100 * result['ray_overhead']:+.1f}%)"
    )
    print(f"  episodes equal                {same}")
    print(f"  broadcast (put + get params)  {broadcast * 1e3:8.2f} ms")
    print(f"  gather (episodes)             {gather * 1e3:8.2f} ms")
    print(f"  learner (adaptation + TRPO)   {learner:8.3f} s per iteration")
    print(f"  model: {result['model']}")
    print("  machines  actors  s/iteration  hours for the full run")
    for row in projection:
        print(
            f"  {row['machines']:8d}  {row['actors']:6d}  {row['seconds_per_iteration']:11.3f}"
            f"  {row['hours_full_run']:8.2f} ({config.iterations} iterations)"
        )
    for row in result["es"]:
        print(f"ES-MAML meta-iteration, {row['config']}")
        print(f"  in process                    {row['local_seconds_per_iteration']:8.3f} s")
        print(
            f"  ray, {WORKERS} actors                {row['ray_seconds_per_iteration']:8.3f} s"
            f"  ({row['speedup']:.2f}x the in-process speed)"
        )
        print(f"  iterations' numbers equal     {row['ray_equals_local']}")
    if args.json:
        write_json_atomic(args.json, result)
    return 0 if same and all(row["ray_equals_local"] for row in result["es"]) else 1


if __name__ == "__main__":
    sys.exit(main())
