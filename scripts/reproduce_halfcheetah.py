"""Reproduce MAML-TRPO on HalfCheetahVel and HalfCheetahDir (Finn, Abbeel, Levine 2017, figure 5).

Trains with the shipped ``maml-trpo/halfcheetah-{vel,dir}`` configs (40 tasks x 20 episodes x 200 steps per
meta-iteration, inner lr 0.1, TRPO max KL 0.01, 500 meta-iterations) and prints the learning curve: the mean
return of the sampled tasks before and after one adaptation step. Each run lives in ``OUT/<env>/`` (config,
checkpoint after every iteration, metrics.jsonl, TensorBoard events); rerunning the script resumes it.

    python scripts/reproduce_halfcheetah.py                        # the full reproduction (about 1.3 h per env on 2 cores)
    python scripts/reproduce_halfcheetah.py --envs vel --iterations 50 --meta-batch-size 20
    python scripts/reproduce_halfcheetah.py --summary-only         # just print the curves of existing runs

The paper's claim to check: after one gradient step the adapted policy's return is well above the pre-update
return, and both rise over meta-training (HalfCheetahVel: from about -330 towards -100 after adaptation at
horizon 200 in the reference implementations).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from metarl.agents import MAMLTRPO
from metarl.agents.config import TrainConfig
from metarl.training import RunDir, config_file, load_checkpoint, load_config
from metarl.training.io import write_json_atomic
from metarl.training.logger import read_metrics

ENVS = {"vel": "halfcheetah-vel", "dir": "halfcheetah-dir"}


def build_agent(config_path: Path, run_path: Path, overrides: list[str]) -> MAMLTRPO:
    """A fresh agent from the config (plus overrides), or the run's own agent when it has a checkpoint."""
    if (run_path / "checkpoint.pt").is_file():
        config = load_config(TrainConfig, run_path / "config.yaml", overrides)
        agent = MAMLTRPO(config)
        agent.load_state_dict(
            load_checkpoint(run_path / "checkpoint.pt", required_keys=("algo", "iteration"))
        )
        print(f"resuming {run_path} after iteration {agent.iteration}")
        return agent
    return MAMLTRPO(load_config(TrainConfig, config_path, overrides))


def learning_curve(run_path: Path) -> list[dict[str, float]]:
    """Per meta-iteration: returns before / after one adaptation step and seconds per iteration."""
    curve = []
    for record in read_metrics(run_path / "metrics.jsonl"):
        if "meta/return_before" in record:
            curve.append(
                {
                    "iteration": int(record.get("step", len(curve))),
                    "return_before": float(record["meta/return_before"]),
                    "return_after": float(record.get("meta/return_after_step1", math.nan)),
                    "seconds": float(record.get("charts/seconds_per_iteration", math.nan)),
                }
            )
    return curve


def summarise(name: str, curve: list[dict[str, float]], every: int) -> str:
    if not curve:
        return f"{name}: no iterations logged yet"
    lines = [
        f"{name}: {len(curve)} meta-iterations",
        f"{'iteration':>9} {'before':>10} {'after 1 step':>13} {'s/iter':>8}",
    ]
    for point in curve:
        if point["iteration"] % every == 0 or point is curve[-1]:
            lines.append(
                f"{point['iteration']:>9} {point['return_before']:>10.1f} {point['return_after']:>13.1f} "
                f"{point['seconds']:>8.1f}"
            )
    seconds = [p["seconds"] for p in curve if math.isfinite(p["seconds"])]
    if seconds:
        mean = sum(seconds) / len(seconds)
        lines.append(f"mean {mean:.1f} s per meta-iteration -> 500 iterations take {500 * mean / 3600:.1f} h")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", choices=sorted(ENVS), default=["vel", "dir"])
    parser.add_argument(
        "--out", type=Path, default=Path("runs/reproduce-halfcheetah"), help="parent of the runs"
    )
    parser.add_argument("--iterations", type=int, help="meta-iterations (default: the config's 500)")
    parser.add_argument("--meta-batch-size", type=int, help="tasks per meta-iteration (default: 40)")
    parser.add_argument("--seed", type=int, help="seed (default: the config's)")
    parser.add_argument("--time-limit", type=float, help="stop each run after this many seconds")
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--summary-only", action="store_true", help="only print the curves of existing runs")
    parser.add_argument("--every", type=int, default=10, help="print every n-th iteration of the curves")
    args = parser.parse_args(argv)

    overrides = [
        f"{key}={value}"
        for key, value in [
            ("iterations", args.iterations),
            ("meta_batch_size", args.meta_batch_size),
            ("seed", args.seed),
            ("time_limit_seconds", args.time_limit),
            ("torch_threads", args.torch_threads),
        ]
        if value is not None
    ]
    summary = {}
    for key in args.envs:
        name = ENVS[key]
        run_path = args.out / name
        if not args.summary_only:
            run_path.mkdir(parents=True, exist_ok=True)
            if args.torch_threads is not None:
                torch.set_num_threads(args.torch_threads)
            agent = build_agent(config_file(f"maml-trpo/{name}"), run_path, overrides)
            agent.train(RunDir(run_path))
        curve = learning_curve(run_path)
        summary[name] = curve
        print(summarise(name, curve, args.every))
    if not args.summary_only:
        write_json_atomic(args.out / f"summary-{'-'.join(args.envs)}.json", summary)


if __name__ == "__main__":
    main()
