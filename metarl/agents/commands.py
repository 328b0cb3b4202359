"""The ``metarl train``, ``metarl evaluate`` and ``metarl compare`` sub-commands, and the ``metarl demo`` run.

Config resolution of ``metarl train`` (later wins): the defaults of :class:`TrainConfig`; the YAML file given
with ``--config`` (a path, or a shipped config's name such as ``maml-trpo/navigation2d``), or else the shipped
config of ``metarl/configs/<algo>/`` whose ``env:`` is the requested env (see :func:`find_config`); the flags
``--algo/--env/--seed``; then ``key=value`` overrides (``inner.lr=0.05``). ``metarl train --help-config``
lists every key.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from metarl.agents import compare as compare_module
from metarl.agents.agent import MetaRLAgent
from metarl.agents.compare import compare_runs, comparison_paths, format_comparison
from metarl.agents.config import TrainConfig
from metarl.agents.evaluate import evaluate_run, evaluation_paths, format_results, success_plot_path
from metarl.agents.maml_rl import MAMLTRPO
from metarl.agents.registry import ALGORITHMS, agent_class, load_agent
from metarl.agents.sampler import make_env
from metarl.envs.plugins import add_import_option
from metarl.errors import UserError
from metarl.training import (
    RunDir,
    check_resume_overrides,
    check_writable_dir,
    config_file,
    config_help,
    load_config,
    plain_text,
    shipped_configs,
)

DEMO_CONFIG = "maml-trpo/navigation2d-paper"
DEMO_TRAIN_SECONDS = 110  # MAML-TRPO; the two TRPO baselines then take roughly another minute


def find_config(algo: str, env_id: str) -> Path | None:
    """The shipped reference config ``metarl/configs/<algo>/*.yaml`` whose ``env`` is ``env_id``, if any.

    Files without ``env_kwargs`` come first (a variant such as a wider velocity range sets kwargs), then the
    shortest name: a variant's name extends its reference's (``navigation2d-paper.yaml``, ``navigation2d.yaml``).
    """
    matches = []
    for path in shipped_configs(algo):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and data.get("env") == env_id:
            matches.append((bool(data.get("env_kwargs")), len(path.name), path.name, path))
    return min(matches)[-1] if matches else None


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, Path | None]:
    """The run's config from ``--config`` / the reference configs / flags / overrides."""
    flags = []
    if args.algo is not None:
        flags.append(f"algo={args.algo}")
    if args.env is not None:
        flags.append(f"env={args.env}")
    if args.seed is not None:
        flags.append(f"seed={args.seed}")
    if args.config:
        path = config_file(args.config)
    else:
        path = find_config(args.algo or TrainConfig.algo, args.env or TrainConfig.env)
    config = load_config(TrainConfig, path, [*flags, *args.overrides])
    config.imports = list(dict.fromkeys([*config.imports, *args.imports]))
    make_env(config.env, config.env_kwargs).close()  # unknown ids fail here, before a run directory exists
    return config, path


def _run_dir_for(config: TrainConfig, args: argparse.Namespace) -> RunDir:
    if args.run_dir:
        path = check_writable_dir(args.run_dir, "the run directory (--run-dir)")
        if path.exists() and any(path.iterdir()):
            raise UserError(
                f"run directory {path} already exists and is not empty: "
                f"resume it with `metarl train --resume {path}` or choose another --run-dir"
            )
        path.mkdir(parents=True, exist_ok=True)
        return RunDir(path)
    env_name = config.env.split("/")[-1].rsplit("-v", 1)[0].lower()
    return RunDir.create(args.runs_root, f"{config.algo}-{env_name}-s{config.seed}")


def _train(args: argparse.Namespace) -> int:
    if args.help_config:
        print("metarl train config keys (set in a YAML file or as key=value):")
        print(config_help(TrainConfig))
        return 0
    if args.resume:
        run = RunDir.open(args.resume)
        if args.config or args.algo or args.env or args.seed is not None or args.run_dir:
            raise UserError(
                "--resume continues a run with its saved config; drop --config/--algo/--env/--seed/--run-dir"
            )
        check_resume_overrides(TrainConfig, args.overrides)
        agent = load_agent(run)
        if args.overrides:
            agent.config = load_config(TrainConfig, None, args.overrides, base=agent.config)
        print(f"resuming {run.path} at iteration {agent.iteration}/{agent.config.iterations}", flush=True)
    else:
        config, source = resolve_config(args)
        # the agent refuses an env it cannot serve before a run directory exists
        agent = agent_class(config.algo)(config)
        run = _run_dir_for(config, args)
        print(
            f"training {config.algo} on {config.env} (config: {source or 'defaults'}) -> {run.path}",
            flush=True,
        )
    started = time.perf_counter()
    history = agent.train(run, progress=_progress(args))
    print(_summary(agent, history, time.perf_counter() - started))
    if agent.iteration < agent.config.iterations:
        print(f"continue with: {_resume_hint(agent, run)}")
    print(f"run directory: {run.path}\nevaluate with: metarl evaluate {run.path}")
    print(f"TensorBoard:   tensorboard --logdir {run.tensorboard_dir}")
    return 0


def _progress(args: argparse.Namespace) -> bool | None:
    """``--no-progress``: no bars; otherwise bars only on a terminal."""
    return False if args.no_progress else None


def _resume_hint(agent: MetaRLAgent, run: RunDir) -> str:
    """How to continue a run the time limit stopped before its last iteration.

    The agent itself reports where the limit stopped it (on stderr, for API users too).
    """
    limit = agent.config.time_limit_seconds
    return (
        f"metarl train --resume {run.path}  (another {limit:g} s of training; add"
        " `time_limit_seconds=null` to finish it)"
    )


def _summary(agent: MetaRLAgent, history: list[dict], seconds: float) -> str:
    if not history:
        return f"nothing to do: the run is at iteration {agent.iteration}/{agent.config.iterations}"
    last = history[-1]
    after = sorted(k for k in last if k.startswith("meta/return_after_step"))
    episodes = sorted(k for k in last if k.startswith("meta/return_episode"))  # context-based agents' trials
    if "meta/return_before" in last:
        shown = f"return before {last['meta/return_before']:.2f}"
    else:
        shown = "return in trial episodes " + ", ".join(f"{last[k]:.2f}" for k in episodes)
    if after:
        shown += f", after {after[-1].removeprefix('meta/return_after_step')} step(s) {last[after[-1]]:.2f}"
    return (
        f"trained {len(history)} iterations in {seconds:.0f} s (now {agent.iteration}/{agent.config.iterations}); "
        f"last iteration: {shown}"
    )


def _evaluate(args: argparse.Namespace) -> int:
    results = evaluate_run(
        args.run_dir,
        adapt_steps=args.adapt_steps,
        num_tasks=args.tasks,
        baselines=args.baselines,
        baseline_iterations=args.baseline_iterations,
        episodes_per_task=args.episodes,
        later_steps_lr_scale=args.later_lr_scale,
        experience_episodes=args.experience_episodes,
        progress=_progress(args),
        output=args.output,
    )
    print(format_results(results))
    run = RunDir(args.run_dir)
    results_path, plot_path = evaluation_paths(run, args.output)
    plots = str(plot_path)
    if any("success" in learner for learner in results["learners"].values()):
        plots += f", {success_plot_path(plot_path)} (success rate)"
    print(f"\nresults: {results_path}\nplot:    {plots}\nTensorBoard: tensorboard --logdir {run.path}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    results = compare_runs(
        args.run_dirs,
        args.output,
        num_tasks=args.tasks,
        adapt_steps=args.adapt_steps,
        episodes_per_step=args.episodes,
        experience_episodes=args.experience_episodes,
    )
    print(format_comparison(results))
    results_path, plot_path = comparison_paths(args.output)
    print(f"\nresults: {results_path}\nplot:    {plot_path}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train``, ``evaluate`` and ``demo`` on the ``metarl`` parser."""
    p = subparsers.add_parser(
        "train",
        help="meta-train MAML-TRPO or Reptile-PG on a task distribution",
        description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. inner.lr=0.05")
    p.add_argument(
        "--config",
        help="YAML config file, or a shipped config's name such as maml-trpo/navigation2d-paper "
        "(default: the shipped config of <algo> for the env, if any)",
    )
    p.add_argument("--algo", choices=list(ALGORITHMS), help="meta-learner (default maml-trpo)")
    p.add_argument("--env", help="task distribution id, e.g. MetaRL/Navigation2D-v0 (see `metarl envs`)")
    p.add_argument("--seed", type=int, help="seed of the whole run")
    p.add_argument("--run-dir", help="write the run here (default: <runs-root>/<algo>-<env>-s<seed>)")
    p.add_argument(
        "--runs-root",
        "--run-root",
        dest="runs_root",
        default="runs",
        help="parent folder of new run directories (default runs/)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--help-config", action="store_true", help="list every config key and exit")
    add_import_option(p)
    p.set_defaults(func=_train)

    p = subparsers.add_parser("evaluate", help="evaluate a run on held-out tasks against baselines")
    p.add_argument("run_dir", help="a run directory written by `metarl train`")
    p.add_argument("--adapt-steps", type=int, help="fine-tuning steps (default: config, 3)")
    p.add_argument("--tasks", type=int, help="held-out tasks (default: config, 40)")
    p.add_argument(
        "--episodes", type=int, help="episodes per fine-tuning step (default: config, else the training's)"
    )
    p.add_argument(
        "--later-lr-scale",
        type=float,
        help="multiplies the step size after the first fine-tuning step (default: config, 1; MAML paper: 0.5)",
    )
    p.add_argument(
        "--experience-episodes",
        type=int,
        help="RL²/PEARL: episodes played on each held-out task (default: config, else the agent's trial length)",
    )
    baselines = p.add_mutually_exclusive_group()
    baselines.add_argument(
        "--baselines",
        nargs="*",
        choices=["pretrained", "random-init", "oracle", "sb3-ppo"],
        help="baselines (default: the config's evaluation.baselines; sb3-ppo needs metarl[sb3])",
    )
    baselines.add_argument(
        "--no-baselines",
        dest="baselines",
        action="store_const",
        const=[],
        help="the meta-learner alone, no baselines (the same as --baselines with no names)",
    )
    p.add_argument(
        "--baseline-iterations", type=int, help="TRPO iterations of pretrained/oracle (default: the run's)"
    )
    p.add_argument(
        "--output",
        help="results JSON (default RUN_DIR/eval.json; the plot goes next to it as .png): keeps another"
        " protocol's results",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_import_option(p)
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser(
        "compare",
        help="runs of one env on the same held-out tasks: return by episodes of experience",
        description=plain_text(compare_module.__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by `metarl train`")
    p.add_argument("--output", required=True, help="folder for compare.json and compare.png")
    p.add_argument("--tasks", type=int, help="held-out tasks (default: the first run's config, 40)")
    p.add_argument("--adapt-steps", type=int, help="gradient-based runs' fine-tuning steps (default: config)")
    p.add_argument("--episodes", type=int, help="gradient-based runs' episodes per step (default: config)")
    p.add_argument(
        "--experience-episodes", type=int, help="context-based runs' episodes per task (default: their own)"
    )
    add_import_option(p)
    p.set_defaults(func=_compare)

    p = subparsers.add_parser("demo", help="the quick demonstration run by `make demo`")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="overrides of the demo's config, e.g. iterations=20"
    )
    p.add_argument(
        "--runs-root", default="runs", help="parent folder of the demo's run directory (default runs/)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_import_option(p)
    p.set_defaults(func=run_demo)


def demo_config(overrides: list[str] | None = None) -> TrainConfig:
    """The config of ``metarl demo``: the MAML paper's Navigation2D settings on a budget, then ``overrides``.

    The paper's settings (100x100 ReLU, inner lr 0.5, its test protocol) with a smaller meta-batch (10 tasks x
    10 episodes), so that 100 meta-iterations take about 45 s on 2 cores; ``time_limit_seconds`` caps the
    training on a slower or busier machine.
    """
    return load_config(
        TrainConfig,
        config_file(DEMO_CONFIG),
        [
            "meta_batch_size=10",
            "episodes_per_task=10",
            "iterations=100",
            f"time_limit_seconds={DEMO_TRAIN_SECONDS}",
            "torch_threads=2",
            *(overrides or []),
        ],
    )


def run_demo(args: argparse.Namespace) -> int:
    """``metarl demo``: MAML-TRPO on Navigation2D for a bounded time, then evaluation on held-out tasks.

    The pretrained and oracle baselines get as many TRPO iterations as the meta-learner had (same env steps).
    """
    config = demo_config(args.overrides)
    run = RunDir.create(args.runs_root, f"demo-maml-trpo-navigation2d-{time.strftime('%Y%m%d-%H%M%S')}")
    print(
        f"metarl demo: MAML-TRPO on {config.env} ({config.meta_batch_size} tasks x {config.episodes_per_task} "
        f"episodes per iteration, up to {config.iterations} iterations or {config.time_limit_seconds:g} s)\n"
        f"run directory: {run.path}",
        flush=True,
    )
    agent = MAMLTRPO(config)
    started = time.perf_counter()
    history = agent.train(run, progress=_progress(args))
    print(_summary(agent, history, time.perf_counter() - started), flush=True)
    if agent.iteration < config.iterations:
        print(
            "note: a slow or busy machine reached the time limit before the last iteration, so the numbers"
            f" below differ from a full run's. Continue with: {_resume_hint(agent, run)}; then"
            f" `metarl evaluate {run.path}`.",
            flush=True,
        )
    protocol = config.evaluation
    print(
        f"\nevaluating on {protocol.tasks} held-out tasks (pretrained and oracle policies are trained with TRPO"
        " first, or copied from an earlier demo that trained the same)...",
        flush=True,
    )
    results = evaluate_run(run, baseline_iterations=agent.iteration, progress=_progress(args))
    print()
    print(format_results(results))
    print(f"\nadaptation curve: {run.plot_path}\nresults:          {run.eval_path}")
    print(f"TensorBoard:      tensorboard --logdir {run.path}")
    return 0
