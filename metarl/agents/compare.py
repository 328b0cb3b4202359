"""``metarl compare``: runs of one task distribution on the same held-out tasks, on one axis.

Every run is evaluated afresh on the held-out tasks of the first run (its seed's evaluation stream), so the
numbers are paired: a gradient-based run (MAML-TRPO, Reptile-PG, ProMP) after ``0..adapt_steps`` fine-tuning
steps of ``E`` episodes each, at ``j * E`` episodes of experience; a context-based run (RL², PEARL) in each of
its first ``k`` episodes, at ``0..k-1`` (:mod:`metarl.agents.experience`). The table and the plot (x: episodes of
experience, log scale) also give each run's training env steps, so sample efficiency reads off the same page.

Example::

    from metarl.agents.compare import compare_runs, format_comparison

    results = compare_runs(["runs/nav-maml", "runs/nav-rl2"], "runs/compare-nav")
    print(format_comparison(results))
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from metarl.agents.agent import GradientMetaRLAgent, MetaRLAgent
from metarl.agents.evaluate import held_out_tasks, meta_learner_curves, text_table
from metarl.agents.experience import (
    EXPERIENCE_LABEL,
    gradient_experience,
    is_context_agent,
    learner_entry,
)
from metarl.agents.registry import load_agent
from metarl.envs import Task, task_to_dict
from metarl.errors import UserError
from metarl.training import (
    RunDir,
    check_writable_dir,
    format_ci,
    plot_adaptation_curves,
    read_metrics,
    write_json_atomic,
)


def compare_runs(
    run_dirs: list[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    *,
    num_tasks: int | None = None,
    adapt_steps: int | None = None,
    episodes_per_step: int | None = None,
    experience_episodes: int | None = None,
) -> dict[str, Any]:
    """Evaluate runs of one env on the same held-out tasks; writes ``compare.json`` and ``compare.png``.

    Args:
        run_dirs: run directories written by ``metarl train`` (at least one; all of the same env).
        output_dir: where the results go (created).
        num_tasks: held-out tasks (default: the first run's ``evaluation.tasks``).
        adapt_steps: gradient-based runs' fine-tuning steps (default: each run's ``evaluation.adapt_steps``).
        episodes_per_step: their episodes per step (default: each run's evaluation setting, else training's).
        experience_episodes: context-based runs' episodes per task (default: each run's own).

    Returns:
        The content of ``compare.json``.

    Raises:
        UserError: no runs, the same run twice, an untrained run, or runs of different envs.
    """
    if not run_dirs:
        raise UserError("metarl compare needs at least one run directory")
    runs = [RunDir.open(path) for path in run_dirs]
    names = [run.path.name for run in runs]
    if len(set(names)) != len(names):
        names = [str(run.path) for run in runs]
        if len(set(names)) != len(names):
            raise UserError("a run is named twice: give each run directory once")
    agents = [load_agent(run) for run in runs]
    for run, agent in zip(runs, agents, strict=True):
        if agent.iteration == 0:
            raise UserError(f"run {run.path} has no trained checkpoint yet: train it first (metarl train)")
    reference = agents[0].config
    for run, agent in zip(runs[1:], agents[1:], strict=True):
        if (agent.config.env, agent.config.env_kwargs) != (reference.env, reference.env_kwargs):
            raise UserError(
                f"run {run.path} is on {agent.config.env} {agent.config.env_kwargs or ''}, the first run on "
                f"{reference.env} {reference.env_kwargs or ''}: compare runs of one task distribution"
            )
    output = check_writable_dir(output_dir, "the comparison's folder (--output)")
    output.mkdir(parents=True, exist_ok=True)
    num_tasks = num_tasks or reference.evaluation.tasks
    tasks = held_out_tasks(reference, num_tasks, agents[0].env)
    learners = {}
    for name, run, agent in zip(names, runs, agents, strict=True):
        if is_context_agent(agent):
            entry = _context_entry(agent, tasks, experience_episodes)
        else:
            entry = _gradient_entry(agent, tasks, adapt_steps, episodes_per_step)
        learners[name] = {
            "run": str(run.path),
            "algo": agent.config.algo,
            "meta_iterations": agent.iteration,
            "training_env_steps": training_env_steps(run),
            **entry,
        }
    results = {
        "env": reference.env,
        "tasks": num_tasks,
        "held_out_tasks": [task_to_dict(t) for t in tasks],
        "task_seed": reference.seed,
        "learners": learners,
    }
    write_json_atomic(output / "compare.json", results)
    plot_adaptation_curves(
        {name: {"steps": v["experience"], "mean": v["mean"], "ci": v["ci"]} for name, v in learners.items()},
        output / "compare.png",
        title=f"{reference.env}: {num_tasks} held-out tasks",
        xlabel=EXPERIENCE_LABEL,
        log_x=True,
    )
    return results


def _context_entry(agent: MetaRLAgent, tasks: list[Task], episodes: int | None) -> dict[str, Any]:
    episodes = episodes or agent.config.evaluation.experience_episodes or agent.experience_episodes
    per_task = agent.experience_returns(tasks, episodes, agent.config.seed)
    return learner_entry(per_task, range(episodes))


def _gradient_entry(
    agent: GradientMetaRLAgent, tasks: list[Task], steps: int | None, episodes: int | None
) -> dict[str, Any]:
    config = agent.config
    steps = config.evaluation.adapt_steps if steps is None else steps
    episodes = episodes or config.evaluation.episodes_per_task or config.episodes_per_task
    tested = dataclasses.replace(config, episodes_per_task=episodes)
    per_task, _ = meta_learner_curves(agent, tested, tasks, steps)
    return learner_entry(per_task, gradient_experience(steps, episodes), range(steps + 1))


def training_env_steps(run: RunDir) -> int | None:
    """The env steps a run's training used: its last logged ``charts/env_steps_total``, or for runs logged
    before that count existed, the sum of env steps/s x seconds over its rows (exact when every iteration was
    logged, ``log_every=1``); None when neither was logged."""
    rows = read_metrics(run)
    totals = [row for row in rows if "charts/env_steps_total" in row]
    if totals:
        return int(totals[-1]["charts/env_steps_total"])
    rates = [row for row in rows if "charts/sps" in row and "charts/seconds_per_iteration" in row]
    if not rates:
        return None
    steps, previous = 0.0, 0
    for row in rates:  # a row averages the iterations since the previous one
        steps += row["charts/sps"] * row["charts/seconds_per_iteration"] * (row["step"] - previous)
        previous = row["step"]
    return round(steps)


def format_comparison(results: dict[str, Any]) -> str:
    """The comparison as a text table: one row per run, mean return ± 95% CI at each number of episodes of
    experience any run was measured at (blank where a run was not)."""
    points = sorted({x for v in results["learners"].values() for x in v["experience"]})
    rows = []
    for name, v in results["learners"].items():
        at = dict(zip(v["experience"], zip(v["mean"], v["ci"], strict=True), strict=True))
        steps = v["training_env_steps"]
        cells = [format_ci(*at[x]) if x in at else "" for x in points]
        rows.append([name, v["algo"], f"{steps:.3g}" if steps is not None else "?", *cells])
    title = (
        f"{results['env']}: mean return ± 95% CI over the same {results['tasks']} held-out tasks, "
        f"by {EXPERIENCE_LABEL} before the measured episode"
    )
    return text_table(title, ["run", "algo", "train env steps", *[str(x) for x in points]], rows)


def comparison_paths(output_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The files :func:`compare_runs` writes in ``output_dir``."""
    return Path(output_dir) / "compare.json", Path(output_dir) / "compare.png"
