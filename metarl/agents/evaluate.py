"""Evaluation on held-out tasks: mean return after 0..k adaptation steps, for the meta-learner and baselines.

Every learner is fine-tuned with exactly the meta-learner's inner update (``inner`` section of the run's
config: algorithm, optimizer, learning rate; ``evaluation.episodes_per_task`` episodes per step, by default the
training's ``episodes_per_task``) on the same held-out tasks, with the same env seeds and action-noise stream
(common random numbers):

* the meta-learner (``maml-trpo``, ``promp``, ``maml-ppo`` or ``reptile``), from the run's checkpoint (Meta-SGD: its learned rates);
* ``pretrained``: one policy trained with TRPO on the task mixture (MAML-TRPO with 0 inner steps) for as many
  iterations as the meta-learner and with as many episodes per iteration, cached in ``RUN/baselines/`` (and
  copied from another run in the same folder that trained the same baseline, e.g. one with another inner loss);
* ``random-init``: a freshly initialised policy;
* ``oracle``: like ``pretrained`` but the policy sees the task's features (where ``task_features`` exists).
  It needs no adaptation and is not fine-tuned: the upper bound, the same return at every step (as in Finn et
  al. 2017; a gradient step of the meta-learner's size wrecks a policy that is already near-optimal).
* ``sb3-ppo`` (on request; extra ``metarl[sb3]``): Stable-Baselines3's PPO trained on the task mixture with
  the env steps of ``pretrained``, its actor copied into the run's policy (:mod:`metarl.agents.sb3_baseline`).

Held-out tasks come from the evaluation random stream ``(seed, 1, .)``, disjoint from the training tasks'
``(seed, 0, iteration)``, through the env's ``sample_held_out_tasks`` (a benchmark's test set where it has one,
e.g. Meta-World's); they are written to ``tasks.json``. For an env that reports ``info["success"]`` every learner
also gets a ``success`` entry (success rate per point, an episode counting as a success if the flag is set at any
step) and the success rates are plotted next to the returns (``adaptation_curve_success.png``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.agents.agent import GradientMetaRLAgent, MetaRLAgent
from metarl.agents.config import EvalConfig, InnerConfig, TrainConfig
from metarl.agents.experience import EXPERIENCE_LABEL, gradient_experience, is_context_agent, learner_entry
from metarl.agents.inner import FineTuner
from metarl.agents.maml_rl import MAMLTRPO
from metarl.agents.policies import MLPPolicy
from metarl.agents.registry import load_agent
from metarl.agents.sampler import BatchedSampler
from metarl.agents.streams import EVAL_STREAM, seeded_policy, stream_rng, torch_generator
from metarl.core import stack_over_tasks
from metarl.envs import Task, sample_tasks, task_to_dict
from metarl.errors import UserError
from metarl.training import (
    RunDir,
    check_writable_file,
    format_ci,
    load_checkpoint,
    load_config,
    plot_adaptation_curves,
    updated_config,
    write_json_atomic,
)

BASELINES = ("pretrained", "random-init", "oracle", "sb3-ppo")
COPIED_FROM = "copied_from.json"  # in a baseline folder copied from a sibling run: where it came from


def held_out_tasks(config: TrainConfig, num_tasks: int, env) -> list[Task]:
    """The evaluation tasks of a run: drawn from the evaluation stream, disjoint from training, with the env's
    ``sample_held_out_tasks`` (a benchmark's test set where it has one, e.g. Meta-World)."""
    rng = stream_rng(config.seed, EVAL_STREAM, 0)
    return sample_tasks(env, num_tasks, int(rng.integers(2**31)), held_out=True)


def adaptation_curves(
    policy: MLPPolicy,
    params: dict[str, torch.Tensor],
    config: TrainConfig,
    tasks: list[Task],
    adapt_steps: int,
    lr: float | dict[str, torch.Tensor] | None = None,
    oracle: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-task mean return ``(tasks, adapt_steps + 1)`` before and after each fine-tuning step, and the per-task
    success rates at the same points (an episode succeeds if the env's ``info["success"]`` is set at any step) or
    ``None`` for an env without success.

    The env seeds and action noise come from the evaluation stream, identical for every learner.
    """
    sampler = BatchedSampler.from_config(config, policy, task_features=oracle)
    tuner = FineTuner(policy, config.inner, config.gamma, config.gae_lambda)
    rng = stream_rng(config.seed, EVAL_STREAM, 1)
    result = tuner.run(
        stack_over_tasks(params, len(tasks), copy=True),
        tasks,
        sampler,
        rng,
        torch_generator(rng),
        steps=adapt_steps,
        lr=lr,
        later_steps_lr_scale=config.evaluation.later_steps_lr_scale,
    )
    successes = None if result.successes is None else result.successes.numpy().astype(np.float64)
    return result.returns.numpy().astype(np.float64), successes


def meta_learner_curves(
    agent: GradientMetaRLAgent, tested: TrainConfig, tasks: list[Task], adapt_steps: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`adaptation_curves` of a run's meta-learner under the evaluation config ``tested``: its own
    parameters, its inner rates (Meta-SGD's learned ones) and its oracle inputs if it was trained with them."""
    return adaptation_curves(
        agent.policy,
        agent.policy.params(),
        tested,
        tasks,
        adapt_steps,
        lr=agent.adaptation_lr(),
        oracle=tested.oracle,
    )


# What a baseline keeps of its run's config; every other field (the algorithm and its sections, the inner loop,
# the evaluation protocol, the time limit) takes its default, so runs that differ only there share a baseline.
BASELINE_KEEPS = (
    "env",
    "env_kwargs",
    "imports",
    "seed",
    "meta_batch_size",
    "gamma",
    "gae_lambda",
    "log_every",
    "checkpoint_every",
    "torch_threads",
    "keep_freed_memory",
    "policy",
    "trpo",
)


def baseline_config(config: TrainConfig, kind: str, iterations: int) -> TrainConfig:
    """The training config of a ``pretrained`` or ``oracle`` baseline for a run with ``config``.

    TRPO on the task mixture (MAML-TRPO with 0 inner steps) with the run's env, seed, policy and batch
    (:data:`BASELINE_KEEPS`), for ``iterations`` iterations of as many env steps as one meta-iteration.
    """
    samples_per_iteration = config.inner.steps + 1  # sampling rounds per meta-iteration: same env-step budget
    return TrainConfig(
        algo="maml-trpo",
        iterations=int(iterations),
        episodes_per_task=config.episodes_per_task * samples_per_iteration,
        oracle=kind == "oracle",
        inner=InnerConfig(steps=0),
        **{name: getattr(config, name) for name in BASELINE_KEEPS},
    )


def baseline_dir(run: RunDir, kind: str) -> Path:
    """Where the run keeps its ``kind`` baseline: ``RUN/baselines/<kind>``."""
    return run.path / "baselines" / kind


def train_baseline(
    run: RunDir, config: TrainConfig, kind: str, iterations: int, progress: bool | None = None
) -> MAMLTRPO:
    """Train (or reload from ``RUN/baselines/<kind>``) a TRPO policy on the task mixture.

    A baseline that another run in the same folder trained with the same :func:`baseline_config` is the
    same policy: it is copied rather than trained again.

    Args:
        run: the meta-learner's run directory.
        config: the meta-learner's config.
        kind: ``"pretrained"`` or ``"oracle"`` (sees the task features).
        iterations: TRPO iterations.
        progress: show a progress bar.
    """
    trained_with = baseline_config(config, kind, iterations)
    path = baseline_dir(run, kind)
    agent = MAMLTRPO(trained_with)
    checkpoint = RunDir(path).checkpoint_path
    if not checkpoint.is_file():
        _copy_shared_baseline(run, path, trained_with)
    if checkpoint.is_file():
        state = load_checkpoint(checkpoint, required_keys=("algo", "iteration", "policy"))
        if state.get("config", {}).get("episodes_per_task") == trained_with.episodes_per_task:
            agent.load_state_dict(state)
    if agent.iteration < iterations:
        agent.train(path, progress=progress)
    return agent


def _copy_shared_baseline(run: RunDir, target: Path, trained_with: TrainConfig) -> None:
    """Copy to ``target`` (``RUN/baselines/<kind>``) the same baseline of a sibling of ``run`` trained with exactly
    ``trained_with``, if there is one."""
    kind = target.name
    for source in sorted(run.path.parent.glob(f"*/baselines/{kind}")):
        if source == target or not RunDir(source).has_checkpoint():
            continue
        try:
            if load_config(TrainConfig, RunDir(source).config_path) != trained_with:
                continue
        except (OSError, ValueError):  # a config from another version, or a half-written folder
            continue
        staging = target.with_name(f".{kind}.copy-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        write_json_atomic(staging / COPIED_FROM, {"source": str(source.resolve())})
        shutil.rmtree(target, ignore_errors=True)  # holds no checkpoint: nothing trained is lost
        os.replace(staging, target)
        return


def baseline_source(run: RunDir, kind: str) -> str | None:
    """The sibling folder the run's ``kind`` baseline was copied from, or None if the run trained it."""
    record = baseline_dir(run, kind) / COPIED_FROM
    return json.loads(record.read_text())["source"] if record.is_file() else None


def evaluation_paths(run: RunDir, output: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """Where an evaluation writes its results JSON and plot: the run's defaults, or ``output`` and its ``.png``."""
    if output is None:
        return run.eval_path, run.plot_path
    output = check_writable_file(output, "the evaluation output (--output)")
    if output.suffix != ".json":
        raise UserError(f"the evaluation output (--output) must name a .json file, got {str(output)!r}")
    return output, check_writable_file(output.with_suffix(".png"), "the evaluation plot")


def evaluate_run(
    run_dir: str | os.PathLike[str] | RunDir,
    *,
    adapt_steps: int | None = None,
    num_tasks: int | None = None,
    baselines: list[str] | None = None,
    baseline_iterations: int | None = None,
    episodes_per_task: int | None = None,
    later_steps_lr_scale: float | None = None,
    experience_episodes: int | None = None,
    progress: bool | None = None,
    output: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Evaluate a run on held-out tasks; writes ``tasks.json``, ``eval.json`` and the adaptation-curve PNG.

    A gradient-based learner is fine-tuned for ``0..adapt_steps`` steps next to its baselines; a context-based
    one (RL², PEARL) plays ``experience_episodes`` episodes on each task (:func:`evaluate_context_agent`).
    Either way every learner's ``experience`` in ``eval.json`` holds the episodes of experience on the task
    before each point (:mod:`metarl.agents.experience`).

    Args:
        run_dir: the training run.
        adapt_steps: fine-tuning steps (default: the config's ``evaluation.adapt_steps``).
        num_tasks: held-out tasks (default: ``evaluation.tasks``).
        baselines: subset of ``pretrained``, ``random-init``, ``oracle`` (default: ``evaluation.baselines``).
        baseline_iterations: TRPO iterations of pretrained/oracle (default: the meta-learner's iterations).
        episodes_per_task: episodes per fine-tuning step (default: ``evaluation.episodes_per_task``, else the
            training's ``episodes_per_task``).
        later_steps_lr_scale: multiplies the step size after the first fine-tuning step (default:
            ``evaluation.later_steps_lr_scale``).
        experience_episodes: a context-based agent's episodes per task (default:
            ``evaluation.experience_episodes``, else the agent's own, e.g. RL²'s trial length).
        progress: show progress bars while training baselines.
        output: write the results here instead of ``RUN/eval.json``, and the plot next to them with the
            suffix ``.png`` (keeps the results of another protocol, e.g. ``RUN/eval-paper.json``).

    Returns:
        The content of ``eval.json``.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    results_path, plot_path = evaluation_paths(run, output)
    agent = load_agent(run)
    config = agent.config
    if agent.iteration == 0:
        raise UserError(f"run {run.path} has no trained checkpoint yet: train it first (metarl train)")
    options = {
        "adapt_steps": adapt_steps,
        "tasks": num_tasks,
        "episodes_per_task": episodes_per_task,
        "later_steps_lr_scale": later_steps_lr_scale,
        "baselines": baselines,
        "baseline_iterations": baseline_iterations,
        "experience_episodes": experience_episodes,
    }
    protocol = updated_config(
        config.evaluation, {k: v for k, v in options.items() if v is not None}, "the evaluation's options"
    )
    if is_context_agent(agent):
        return evaluate_context_agent(run, agent, protocol, results_path, plot_path)
    adapt_steps, num_tasks, baselines = protocol.adapt_steps, protocol.tasks, protocol.baselines
    episodes = protocol.episodes_per_task or config.episodes_per_task
    iterations = protocol.baseline_iterations or agent.iteration
    tasks = held_out_tasks(config, num_tasks, agent.sampler.env)
    _write_tasks(run, config, tasks)
    plain = dataclasses.replace(config, oracle=False)  # what the baselines train with
    # what every learner fine-tunes with
    tested = dataclasses.replace(config, episodes_per_task=episodes, evaluation=protocol)
    tested_plain = dataclasses.replace(tested, oracle=False)
    curves: dict[str, np.ndarray] = {}
    successes: dict[str, np.ndarray] = {}  # per-task success rates, for an env that reports success

    def measure(name: str, measured: tuple[np.ndarray, np.ndarray | None]) -> None:
        curves[name], success = measured
        if success is not None:
            successes[name] = success

    measure(config.algo, meta_learner_curves(agent, tested, tasks, adapt_steps))
    experiences: dict[str, list[int]] = {}  # a learner's own adaptation: its episodes of experience per point
    own_curves = agent.own_adaptation_curves(tasks, episodes, adapt_steps, config.seed)
    for name, (per_task, experience_of_name) in own_curves.items():
        curves[name], experiences[name] = per_task, experience_of_name
    if "pretrained" in baselines:
        pretrained = train_baseline(run, plain, "pretrained", iterations, progress)
        measure(
            "pretrained",
            adaptation_curves(
                pretrained.policy, pretrained.policy.params(), tested_plain, tasks, adapt_steps
            ),
        )

    def fresh_policy(index: int) -> MLPPolicy:  # initial weights from the evaluation stream
        space = agent.sampler
        return seeded_policy(
            config.policy,
            space.observation_space,
            space.action_space,
            stream_rng(config.seed, EVAL_STREAM, index),
        )

    if "random-init" in baselines:
        fresh = fresh_policy(2)
        measure("random-init", adaptation_curves(fresh, fresh.params(), tested_plain, tasks, adapt_steps))
    if "sb3-ppo" in baselines:
        from metarl.agents.sb3_baseline import sb3_ppo_policy  # imports Stable-Baselines3, an optional extra

        ppo = sb3_ppo_policy(baseline_dir(run, "sb3-ppo"), plain, iterations, fresh_policy(3))
        measure("sb3-ppo", adaptation_curves(ppo, ppo.params(), tested_plain, tasks, adapt_steps))
    has_features = agent.sampler.env.unwrapped.task_features(tasks[0]) is not None
    if "oracle" in baselines and has_features:
        oracle = train_baseline(run, plain, "oracle", iterations, progress)
        measure(
            "oracle",
            adaptation_curves(oracle.policy, oracle.policy.params(), tested_plain, tasks, 0, oracle=True),
        )
        curves["oracle"] = np.repeat(curves["oracle"], adapt_steps + 1, axis=1)
        if "oracle" in successes:
            successes["oracle"] = np.repeat(successes["oracle"], adapt_steps + 1, axis=1)
    results = {
        "env": config.env,
        "algo": config.algo,
        "run": str(run.path),
        "meta_iterations": agent.iteration,
        "baseline_iterations": iterations,
        "tasks": num_tasks,
        "adapt_steps": adapt_steps,
        "episodes_per_task": episodes,
        "later_steps_lr_scale": protocol.later_steps_lr_scale,
        "inner": dataclasses.asdict(config.inner),
        "baselines_copied_from": {
            kind: source
            for kind in ("pretrained", "oracle")
            if kind in curves and (source := baseline_source(run, kind))
        },
        "learners": {},
    }
    experience = gradient_experience(adapt_steps, episodes)
    for name, per_task in curves.items():
        own = experiences.get(name, experience)
        results["learners"][name] = learner_entry(per_task, own, range(adapt_steps + 1))
        if name in successes:
            results["learners"][name]["success"] = success_entry(successes[name], experience)
    write_json_atomic(results_path, results)
    title, xlabel = (
        f"{config.env}: {num_tasks} held-out tasks",
        f"adaptation steps ({episodes} episodes each)",
    )
    plot_adaptation_curves(
        {name: {k: v[k] for k in ("steps", "mean", "ci")} for name, v in results["learners"].items()},
        plot_path,
        title=title,
        xlabel=xlabel,
    )
    if successes:
        plot_adaptation_curves(
            {
                name: {"steps": v["steps"], **{k: v["success"][k] for k in ("mean", "ci")}}
                for name, v in results["learners"].items()
                if "success" in v
            },
            success_plot_path(plot_path),
            title=title,
            xlabel=xlabel,
            ylabel="success rate",
        )
    return results


def success_entry(per_task: np.ndarray, experience: list[int]) -> dict[str, Any]:
    """A learner's ``success`` in ``eval.json``: the mean and 95% CI of the per-task success rates per point."""
    entry = learner_entry(per_task, experience)
    return {k: entry[k] for k in ("mean", "ci", "per_task")}


def success_plot_path(plot_path: Path) -> Path:
    """Where the success-rate plot goes, next to the return plot: ``adaptation_curve_success.png``."""
    return plot_path.with_name(f"{plot_path.stem}_success{plot_path.suffix}")


def evaluate_context_agent(
    run: RunDir, agent: MetaRLAgent, protocol: EvalConfig, results_path: Path, plot_path: Path
) -> dict[str, Any]:
    """Evaluate a context-based agent (RL², PEARL): the return of each of its first
    ``protocol.experience_episodes`` episodes on every held-out task, its memory or posterior carried across.

    Gradient baselines are not trained for it: ``metarl compare`` puts it next to gradient-based runs.
    """
    config = agent.config
    episodes = protocol.experience_episodes or agent.experience_episodes
    tasks = held_out_tasks(config, protocol.tasks, agent.env)
    _write_tasks(run, config, tasks)
    per_task = agent.experience_returns(tasks, episodes, config.seed)
    results = {
        "env": config.env,
        "algo": config.algo,
        "run": str(run.path),
        "meta_iterations": agent.iteration,
        "tasks": protocol.tasks,
        "experience_episodes": episodes,
        "learners": {config.algo: learner_entry(per_task, range(episodes))},
    }
    write_json_atomic(results_path, results)
    plot_adaptation_curves(
        {
            config.algo: {
                "steps": list(range(episodes)),
                **{k: results["learners"][config.algo][k] for k in ("mean", "ci")},
            }
        },
        plot_path,
        title=f"{config.env}: {protocol.tasks} held-out tasks",
        xlabel=EXPERIENCE_LABEL,
    )
    return results


def _write_tasks(run: RunDir, config: TrainConfig, tasks: list[Task]) -> None:
    write_json_atomic(
        run.tasks_path,
        {
            "env": config.env,
            "seed": config.seed,
            "stream": "evaluation",
            "tasks": [task_to_dict(t) for t in tasks],
        },
    )


def format_results(results: dict[str, Any]) -> str:
    """The evaluation as a text table: one row per learner, mean return ± 95% CI after each fine-tuning step
    (gradient-based) or in each episode of experience (context-based)."""
    if "adapt_steps" in results:
        headers = [f"step {j}" for j in range(results["adapt_steps"] + 1)]
        protocol = f"{results['episodes_per_task']} episodes per step, inner lr {results['inner']['lr']}"
        if results.get("later_steps_lr_scale", 1.0) != 1:
            protocol += f", x{results['later_steps_lr_scale']} after the first step"
        if "oracle" in results["learners"]:
            protocol += "; oracle not fine-tuned"
    else:
        headers = [f"episode {j + 1}" for j in range(results["experience_episodes"])]
        protocol = "memory or posterior carried from episode to episode"
    rows = [
        [name] + [format_ci(m, c) for m, c in zip(v["mean"], v["ci"], strict=True)]
        for name, v in results["learners"].items()
    ]
    title = f"{results['env']}: mean return ± 95% CI over {results['tasks']} held-out tasks ({protocol})"
    table = text_table(title, ["learner", *headers], rows)
    success_rows = [
        [name] + [format_ci(m, c) for m, c in zip(v["success"]["mean"], v["success"]["ci"], strict=True)]
        for name, v in results["learners"].items()
        if "success" in v
    ]
    if success_rows:
        title = "success rate ± 95% CI (an episode succeeds if the env reports success at any step)"
        table += "\n\n" + text_table(title, ["learner", *headers], success_rows)
    return table


def text_table(title: str, headers: list[str], rows: list[list[str]]) -> str:
    """A title over left-aligned columns as wide as their widest cell."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        title,
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)
