"""Train a meta-RL agent and evaluate it from Python, as ``metarl train`` and ``metarl evaluate`` do.

::

    python examples/train_and_evaluate.py --run-dir runs/nav-maml              # the reference config
    python examples/train_and_evaluate.py --run-dir runs/nav-tiny iterations=5 meta_batch_size=4

Any ``key=value`` of ``metarl train --help-config`` overrides the config.
"""

from __future__ import annotations

import argparse

# --8<-- [start:train]
from metarl.agents import MAMLTRPO, TrainConfig, evaluate_run, format_results
from metarl.training import config_file, load_config


def train_and_evaluate(run_dir: str, overrides: list[str], adapt_steps: int = 3, tasks: int = 40) -> dict:
    """Meta-train MAML-TRPO on Navigation2D, then evaluate it on held-out tasks against the baselines."""
    # the shipped reference config (a YAML file inside the package), then the overrides on top
    config = load_config(TrainConfig, config_file("maml-trpo/navigation2d"), overrides)
    agent = MAMLTRPO(config)
    agent.train(run_dir)  # writes config.yaml, checkpoint.pt, metrics.jsonl and TensorBoard events
    results = evaluate_run(run_dir, adapt_steps=adapt_steps, num_tasks=tasks)  # also RUN/eval.json + .png
    print(format_results(results))
    return results
    # --8<-- [end:train]


def main() -> None:
    parser = argparse.ArgumentParser(description="Train MAML-TRPO on Navigation2D and evaluate it.")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--run-dir", default="runs/nav-maml", help="where the run is written")
    parser.add_argument("--adapt-steps", type=int, default=3, help="fine-tuning steps of the evaluation")
    parser.add_argument("--tasks", type=int, default=40, help="held-out tasks of the evaluation")
    args = parser.parse_args()
    train_and_evaluate(args.run_dir, args.overrides, args.adapt_steps, args.tasks)


if __name__ == "__main__":
    main()
