"""A long run of an algorithm on a small budget, to show that memory and time per iteration stay flat.

Trains MAML-TRPO on Navigation2D (small batch) or ProtoNet on synthetic Omniglot-sized images for N
iterations through the ordinary run loop, then reads the run's metrics.jsonl (which logs resident memory and
seconds per iteration) and prints the means of the first and last 100 iterations, and whether any scalar
was NaN. ``--json PATH`` writes the summary; ``--quick`` runs 150 iterations. The committed summary of both
1000-iteration runs is ``docs/results/data/reliability/soak.json``.

Usage::

    python scripts/soak.py maml-trpo --iterations 1000 --run-dir runs/soak-maml --json soak-maml.json
    python scripts/soak.py protonet --iterations 1000 --run-dir runs/soak-protonet
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from metarl.agents import MAMLTRPO, TrainConfig
from metarl.supervised.config import FewShotConfig
from metarl.supervised.runner import FewShotRun
from metarl.training import RunDir, load_checkpoint, load_config, read_metrics, write_json_atomic

WINDOW = 100


def build(algorithm: str, iterations: int):
    if algorithm == "maml-trpo":
        overrides = [
            f"iterations={iterations}",
            "meta_batch_size=5",
            "episodes_per_task=5",
            "torch_threads=1",
        ]
        return MAMLTRPO(load_config(TrainConfig, None, overrides))
    overrides = [
        "learner=protonet",
        "data.dataset=synthetic",
        f"iterations={iterations}",
        "meta_batch_size=4",
        "model.hidden=16",
        "val_every=0",
        "checkpoint_every=50",
        "log_every=1",
    ]
    return FewShotRun(load_config(FewShotConfig, None, overrides))


def summary(run: RunDir) -> dict:
    rows = [r for r in read_metrics(run) if "charts/seconds_per_iteration" in r]
    seconds = np.array([r["charts/seconds_per_iteration"] for r in rows])
    resident = np.array([r.get("charts/resident_mb", math.nan) for r in rows])
    nan = any(not math.isfinite(v) for r in rows for k, v in r.items() if not k.startswith("charts/"))
    return {
        "iterations": len(rows),
        "seconds_per_iteration_first": float(seconds[:WINDOW].mean()),
        "seconds_per_iteration_last": float(seconds[-WINDOW:].mean()),
        "resident_mb_first": float(resident[:WINDOW].mean()),
        "resident_mb_last": float(resident[-WINDOW:].mean()),
        "resident_mb_max": float(np.nanmax(resident)),
        "any_nan": nan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("algorithm", choices=["maml-trpo", "protonet"])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--run-dir", type=Path, required=True, help="the run (resumed if it exists)")
    parser.add_argument("--quick", action="store_true", help="150 iterations")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    iterations = 150 if args.quick else args.iterations
    algorithm = build(args.algorithm, iterations)
    run = RunDir(args.run_dir)
    if run.has_checkpoint():
        algorithm.load_state_dict(load_checkpoint(run.checkpoint_path))
    algorithm.train(run, progress=False)
    result = {"algorithm": args.algorithm, **summary(run)}
    print(json.dumps(result, indent=1))
    if args.json:
        write_json_atomic(args.json, result)


if __name__ == "__main__":
    main()
