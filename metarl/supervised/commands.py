"""``metarl fewshot train|evaluate``: few-shot meta-training runs from the command line.

Examples::

    metarl fewshot train --config fewshot/maml-sinusoid      # a shipped config's name, or a YAML file's path
    metarl fewshot train --learner fomaml --data-root data/omniglot iterations=2000 meta_batch_size=16
    metarl fewshot train --resume runs/maml-omniglot-5w1s-s0
    metarl fewshot train --resume runs/maml-omniglot-5w1s-s0 iterations=40000   # train a finished run longer
    metarl fewshot evaluate runs/maml-omniglot-5w1s-s0 --episodes 600
"""

from __future__ import annotations

import argparse

import torch

from metarl.errors import UserError
from metarl.supervised.config import FewShotConfig
from metarl.supervised.evaluate import format_result
from metarl.supervised.learners import LEARNERS
from metarl.supervised.runner import build_run_learner, evaluate_run_learner, load_learner_weights, train
from metarl.training import (
    RunDir,
    check_resume_overrides,
    check_writable_file,
    config_file,
    config_help,
    load_checkpoint,
    load_config,
    plain_text,
    write_json_atomic,
)


def _train(args: argparse.Namespace) -> int:
    if args.help_config:
        return _keys(args)

    if args.resume:
        if args.config or args.learner or args.data_root or args.seed is not None:
            raise UserError("--resume continues a run with its saved config; drop --config/--learner/--seed")
        check_resume_overrides(FewShotConfig, args.overrides)
        run = RunDir.open(args.resume)
        if not run.config_path.is_file():
            raise UserError(f"{run.path} has no config.yaml: it was not written by `metarl fewshot train`")
        config = load_config(FewShotConfig, run.config_path, args.overrides)
        train(config, run_dir=run, resume=True, progress=args.progress)
        return 0
    overrides = list(args.overrides)
    if args.learner:
        overrides.append(f"learner={args.learner}")
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.run_root:
        overrides.append(f"run_root={args.run_root}")
    config = load_config(FewShotConfig, config_file(args.config) if args.config else None, overrides)
    train(config, progress=args.progress)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {args.episodes}")
    run = RunDir.open(args.run_dir)
    if not run.config_path.is_file():
        raise UserError(f"{run.path} has no config.yaml: pass a directory written by `metarl fewshot train`")
    config = load_config(FewShotConfig, run.config_path, args.overrides)
    target = check_writable_file(args.output or run.eval_path, "the evaluation output (--output)")
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    state = load_checkpoint(run.checkpoint_path, required_keys=("learner", "iteration"))
    learner = build_run_learner(config)
    load_learner_weights(learner, state["learner"])
    result = evaluate_run_learner(config, learner, run, args.episodes)
    result["iterations"] = state["iteration"]
    if "elapsed" in state:  # the training time of the network evaluated, as `fewshot train` reports it
        result["train_seconds"] = float(state["elapsed"])
    write_json_atomic(target, result)
    print(f"{run.path} (iteration {state['iteration']}): {format_result(result)}; written to {target}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fewshot train`` and ``fewshot evaluate`` to the ``metarl`` command."""

    fewshot = subparsers.add_parser(
        "fewshot", help="few-shot classification / regression: train and evaluate"
    )
    sub = fewshot.add_subparsers(dest="fewshot_command", required=True)
    learners = ", ".join(LEARNERS)
    p = sub.add_parser(
        "train",
        help="meta-train a few-shot learner",
        description=f"{plain_text(__doc__)}\n\nConfig keys (set in --config YAML "
        "or as key=value): metarl fewshot train --help-config.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", help="YAML config file, or a shipped config's name such as fewshot/maml-omniglot-5w1s"
    )
    p.add_argument("--learner", help=f"learner name ({learners})")
    p.add_argument(
        "--data-root",
        help="dataset folder (default $METARL_DATA/<dataset>, else ~/.cache/metarl/data/<dataset>)",
    )
    p.add_argument("--seed", type=int, help="seed of initialisation and training episodes")
    p.add_argument(
        "--runs-root", "--run-root", dest="run_root", help="parent folder of run directories (default runs)"
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar")
    p.add_argument("--help-config", action="store_true", help="list every config key and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.shots=5")
    p.set_defaults(func=_train)
    p = sub.add_parser("evaluate", help="evaluate a trained run on test episodes")
    p.add_argument("run_dir", help="run directory written by `metarl fewshot train`")
    p.add_argument("--episodes", type=int, default=600, help="test episodes (default 600)")
    p.add_argument("--output", help="where to write the JSON result (default RUN_DIR/eval.json)")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="evaluation overrides, e.g. data.eval_queries=15"
    )
    p.set_defaults(func=_evaluate)
    p = sub.add_parser(
        "keys", help="list every config key with its type, default and meaning (as --help-config)"
    )
    p.set_defaults(func=_keys)


def _keys(args: argparse.Namespace) -> int:

    print(config_help(FewShotConfig))
    return 0
