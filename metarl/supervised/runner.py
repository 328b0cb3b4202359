"""The few-shot training run, as one function of (config, seed), readable top to bottom.

``train(config)`` creates a run directory (resolved ``config.yaml``, TensorBoard events and ``metrics.jsonl``,
atomic ``checkpoint.pt`` with the RNG and sampler states, ``eval.json``, ``adaptation_curve.png``), meta-trains
the learner on batches of episodes with Adam, validates periodically on a fixed set of validation episodes, and
finally evaluates on ``eval_episodes`` test episodes (mean +- 1.96 sigma / sqrt(n)). ``train(config, run_dir=...,
resume=True)`` continues a killed run from its checkpoint and produces the same numbers as an uninterrupted run.

TensorBoard tags: ``losses/meta_loss``; ``meta/train_accuracy``, ``meta/val_<metric>_step<k>`` (after k inner
steps), ``meta/val_<metric>``, ``meta/test_<metric>``; ``charts/seconds_per_iteration``,
``charts/tasks_per_second``, ``charts/learning_rate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from metarl.errors import UserError
from metarl.supervised.config import FewShotConfig, build_model
from metarl.supervised.evaluate import (
    evaluate_learner,
    format_result,
    is_regression,
    load_split,
    make_task_source,
)
from metarl.supervised.learners import FewShotLearner, build_learner, learner_entry
from metarl.training import (
    ProgressBar,
    RunDir,
    RunLogger,
    capture_rng_states,
    keep_freed_memory,
    load_checkpoint,
    plot_adaptation_curves,
    restore_rng_states,
    save_checkpoint,
    save_config,
    write_json_atomic,
)

CHECKPOINT_KEYS = ("learner", "optimizer", "iteration", "rng", "sampler", "window", "elapsed")


def build_run_learner(config: FewShotConfig, cache: dict | None = None) -> FewShotLearner:
    """Seed torch with ``config.seed`` and build the backbone and learner the config describes."""
    entry = learner_entry(config.learner)
    if config.data.dataset == "sinusoid":
        in_channels = 1
    else:
        channels, height, width = load_split(config.data, config.data.train_split, cache).image_shape
        if height != config.data.image_size or width != config.data.image_size:
            raise UserError(
                f"the {config.data.dataset} images are {height}x{width} but data.image_size={config.data.image_size}"
            )
        in_channels = channels
    options = dict(config.learner_options)
    if is_regression(config.data) and "loss" not in options and entry.head:
        options["loss"] = "mse"
    torch.manual_seed(config.seed)
    model = build_model(config, in_channels, entry.head)
    return build_learner(config.learner, model, options)


def _learner_generators(learner: FewShotLearner) -> dict[str, Any]:
    generators = getattr(learner, "generators", None)
    return {f"learner.{k}": g for k, g in generators().items()} if callable(generators) else {}


def train(
    config: FewShotConfig,
    *,
    run_dir: RunDir | None = None,
    resume: bool = False,
    progress: bool | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Meta-train and evaluate ``config``; returns the final evaluation (also written to ``eval.json``).

    Args:
        config: the run's config (``config.seed`` seeds initialisation and training episodes).
        run_dir: the run directory; a new one under ``config.run_root`` when None.
        resume: continue from ``run_dir``'s checkpoint (``run_dir`` required).
        progress: show a progress bar (None: only on a terminal).
        echo: where one-line status messages go.
    """
    torch.set_num_threads(config.threads)
    keep_freed_memory()
    if resume:
        if run_dir is None:
            raise UserError("resume needs the run directory of the run to continue")
        if not run_dir.has_checkpoint():
            raise UserError(f"{run_dir.path} has no checkpoint.pt to resume from; start a new run instead")
    regression = is_regression(config.data)
    cache: dict = {}
    # Data and learner first: a missing dataset or a bad option fails before any run directory is made.
    learner = build_run_learner(config, cache)
    train_source = make_task_source(
        config.data, config.data.train_split, config.meta_batch, config.seed, evaluation=False, cache=cache
    )
    if run_dir is None:
        run_dir = RunDir.create(config.run_root, config.run_name or config.default_run_name())
    save_config(config, run_dir.config_path)  # on resume: keeps an extended ``iterations``
    if hasattr(learner, "set_total_iterations"):
        learner.set_total_iterations(config.iterations)
    optimizer = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=config.outer_lr)
    scheduler = (
        torch.optim.lr_scheduler.StepLR(optimizer, config.lr_halve_every, gamma=0.5)
        if config.lr_halve_every
        else None
    )
    generators = _learner_generators(learner)
    iteration, elapsed = 0, 0.0
    window: dict[str, float] = {}
    if resume:
        state = load_checkpoint(run_dir.checkpoint_path, required_keys=CHECKPOINT_KEYS)
        learner.load_state_dict(state["learner"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        train_source.load_state_dict(state["sampler"])
        restore_rng_states(state["rng"], generators)
        iteration, elapsed, window = state["iteration"], state["elapsed"], dict(state["window"])
        echo(f"resuming {run_dir.path} at iteration {iteration}/{config.iterations}")
    logger = RunLogger(run_dir, resume_step=iteration if resume else None)
    if not resume:
        logger.log_text("config", f"```\n{run_dir.config_path.read_text(encoding='utf-8')}\n```")
    bar = ProgressBar(
        config.iterations,
        initial=iteration,
        desc=run_dir.name,
        disable=None if progress is None else not progress,
    )
    val_source_args = (config.data, config.data.val_split, config.eval_batch, config.eval_seed + 1)
    metric = "mse" if regression else "accuracy"
    try:
        while iteration < config.iterations:
            start = time.perf_counter()
            batch = train_source.sample()
            learner.train()
            stats = learner.train_step(batch, optimizer)
            if scheduler is not None:
                scheduler.step()
            iteration += 1
            seconds = time.perf_counter() - start
            elapsed += seconds
            for key, value in {**stats, "seconds": seconds}.items():
                window[key] = window.get(key, 0.0) + float(value)
            window["count"] = window.get("count", 0.0) + 1
            scalars: dict[str, float] = {}
            if iteration % config.log_every == 0 or iteration == config.iterations:
                count = window.pop("count")
                means = {k: v / count for k, v in window.items()}
                scalars["losses/meta_loss"] = means.pop("loss")
                if "accuracy" in means:
                    scalars["meta/train_accuracy"] = means.pop("accuracy")
                scalars["charts/seconds_per_iteration"] = means.pop("seconds")
                scalars["charts/tasks_per_second"] = config.meta_batch / max(
                    scalars["charts/seconds_per_iteration"], 1e-12
                )
                scalars["charts/learning_rate"] = optimizer.param_groups[0]["lr"]
                scalars.update({f"losses/{k}": v for k, v in means.items()})
                scalars["charts/elapsed_seconds"] = elapsed
                window = {}
            if config.val_every and config.data.val_split and (iteration % config.val_every == 0):
                val_source = make_task_source(*val_source_args, evaluation=True, cache=cache)
                result = evaluate_learner(learner, val_source, config.val_episodes, regression=regression)
                for k, value in enumerate(result["per_step"]["mean"]):
                    scalars[f"meta/val_{metric}_step{k}"] = value
                scalars[f"meta/val_{metric}"] = result["mean"]
                bar.write(f"iteration {iteration}: validation {format_result(result)} ({elapsed:.0f} s)")
            if scalars:
                logger.log(iteration, scalars)
                bar.update(
                    0, **{k.split("/")[-1]: v for k, v in scalars.items() if not k.startswith("charts/")}
                )
            bar.update(1)
            if iteration % config.checkpoint_every == 0 or iteration == config.iterations:
                logger.flush()
                save_checkpoint(
                    run_dir.checkpoint_path,
                    {
                        "learner": learner.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None,
                        "iteration": iteration,
                        "rng": capture_rng_states(generators),
                        "sampler": train_source.state_dict(),
                        "window": window,
                        "elapsed": elapsed,
                    },
                )
    finally:
        bar.close()
    if iteration == 0 and not run_dir.has_checkpoint():
        save_checkpoint(
            run_dir.checkpoint_path,
            {
                "learner": learner.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": None,
                "iteration": 0,
                "rng": capture_rng_states(generators),
                "sampler": train_source.state_dict(),
                "window": {},
                "elapsed": 0.0,
            },
        )
    result = evaluate_run_learner(config, learner, run_dir, config.eval_episodes, cache=cache)
    result["train_seconds"] = elapsed
    result["iterations"] = iteration
    write_json_atomic(run_dir.eval_path, result)
    logger.log(iteration, {f"meta/test_{metric}": result["mean"], f"meta/test_{metric}_ci95": result["ci95"]})
    logger.close()
    echo(f"{run_dir.path}: test {format_result(result)}; trained {iteration} iterations in {elapsed:.0f} s")
    return result


def evaluate_run_learner(
    config: FewShotConfig, learner: FewShotLearner, run_dir: RunDir, episodes: int, cache: dict | None = None
) -> dict[str, Any]:
    """Evaluate ``learner`` on ``episodes`` test episodes (seed ``config.eval_seed``) and plot the curve."""
    regression = is_regression(config.data)
    source = make_task_source(
        config.data, config.data.test_split, config.eval_batch, config.eval_seed, evaluation=True, cache=cache
    )
    result = evaluate_learner(learner, source, episodes, regression=regression)
    result.update(
        learner=config.learner,
        dataset=config.data.dataset,
        split=config.data.test_split,
        ways=config.data.test_ways,
        shots=config.data.test_shots,
        queries=config.data.eval_queries,
        eval_seed=config.eval_seed,
    )
    if len(result["per_step"]["steps"]) > 1:
        plot_adaptation_curves(
            {config.learner: result["per_step"]},
            run_dir.plot_path,
            title=f"{config.learner} on {config.data.dataset} ({result['episodes']} test episodes)",
            ylabel="query MSE" if regression else "query accuracy",
        )
    return result
