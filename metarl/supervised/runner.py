"""The few-shot training run: :class:`FewShotRun` is one meta-iteration of a learner (the run loop of
:class:`metarl.training.RunLoop` does the rest), and ``train(config)`` a whole run, as one function of (config, seed).

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

from collections.abc import Callable, Mapping
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
    RunDir,
    RunLogger,
    RunLoop,
    capture_rng_states,
    load_checkpoint,
    plot_adaptation_curves,
    restore_rng_states,
    write_json_atomic,
)

CHECKPOINT_KEYS = ("learner", "optimizer", "iteration", "rng", "sampler")


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
    learner = build_learner(config.learner, model, options)
    if hasattr(learner, "set_train_classes") and config.data.dataset != "sinusoid":
        learner.set_train_classes(load_split(config.data, config.data.train_split, cache).num_classes)
    if config.verification and not callable(getattr(learner, "pair_scores", None)):
        raise UserError(
            f"verification=true needs a learner that scores pairs (siamese, protonet), not {config.learner}"
        )
    return learner


class FewShotRun(RunLoop):
    """A few-shot meta-training run: the learner, its Adam optimizer (and step schedule), the training tasks and
    periodic validation, trained by the run loop of :class:`metarl.training.RunLoop`.

    Args:
        config: the run's config (``config.seed`` seeds initialisation and training episodes).
        cache: decoded datasets shared with the evaluation that follows.
    """

    throughput = ("tasks", "charts/tasks_per_second")

    def __init__(self, config: FewShotConfig, cache: dict | None = None) -> None:
        super().__init__(config)
        self.cache = {} if cache is None else cache
        # Data and learner first: a missing dataset or a bad option fails before any run directory is made.
        self.learner = build_run_learner(config, self.cache)
        self.train_source = make_task_source(
            config.data,
            config.data.train_split,
            config.meta_batch_size,
            config.seed,
            evaluation=False,
            cache=self.cache,
        )
        if hasattr(self.learner, "set_task_source"):  # learners that build extra tasks (MTL's hard tasks)
            self.learner.set_task_source(self.train_source)
        if hasattr(self.learner, "set_total_iterations"):
            self.learner.set_total_iterations(config.iterations)
        trainable = [p for p in self.learner.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=config.outer_lr)
        self.scheduler = (
            torch.optim.lr_scheduler.StepLR(self.optimizer, config.lr_halve_every, gamma=0.5)
            if config.lr_halve_every
            else None
        )
        generators = getattr(self.learner, "generators", None)
        self.generators = {f"learner.{k}": g for k, g in generators().items()} if callable(generators) else {}
        self.metric = "mse" if is_regression(config.data) else "accuracy"

    def meta_iteration(self, iteration: int) -> dict[str, float]:
        """One Adam step of the learner's meta-loss on a batch of training tasks."""
        batch = self.train_source.sample()
        self.learner.train()
        stats = dict(self.learner.train_step(batch, self.optimizer))
        if self.scheduler is not None:
            self.scheduler.step()
        scalars = {"losses/meta_loss": stats.pop("loss")}
        if "accuracy" in stats:
            scalars["meta/train_accuracy"] = stats.pop("accuracy")
        scalars.update({f"losses/{k}": v for k, v in stats.items()})
        scalars["charts/learning_rate"] = self.optimizer.param_groups[0]["lr"]
        scalars["tasks"] = self.config.meta_batch_size
        return scalars

    def periodic_scalars(self, done: int, write: Callable[[str], None]) -> dict[str, float]:
        """Validation on ``val_episodes`` fixed validation episodes every ``val_every`` iterations."""
        config = self.config
        if not (config.val_every and config.data.val_split and done % config.val_every == 0):
            return {}
        source = make_task_source(
            config.data,
            config.data.val_split,
            config.eval_batch,
            config.eval_seed + 1,
            evaluation=True,
            cache=self.cache,
        )
        result = evaluate_learner(self.learner, source, config.val_episodes, regression=self.metric == "mse")
        scalars = {f"meta/val_{self.metric}_step{k}": v for k, v in enumerate(result["per_step"]["mean"])}
        scalars[f"meta/val_{self.metric}"] = result["mean"]
        write(f"iteration {done}: validation {format_result(result)} ({self.elapsed_seconds:.0f} s)")
        return scalars

    def algorithm_state(self) -> dict[str, Any]:
        return {
            "learner": self.learner.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": capture_rng_states(self.generators),
            "sampler": self.train_source.state_dict(),
        }

    def load_algorithm_state(self, state: Mapping[str, Any]) -> None:
        load_learner_weights(self.learner, state["learner"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            self.train_source.load_state_dict(state["sampler"])
            restore_rng_states(state["rng"], self.generators)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(
                f"the checkpoint's sampler or random-number state is damaged ({type(exc).__name__}: {exc}): "
                "delete checkpoint.pt to start the run again"
            ) from None

    def trained_parameters(self) -> list[torch.Tensor]:
        return list(self.learner.parameters())

    def resume_hint(self, run: RunDir) -> str:
        return (
            f"continue with `metarl fewshot train --resume {run.path}`, or in Python "
            f"`metarl.supervised.train(config, run_dir=RunDir('{run.path}'), resume=True)`"
        )

    def run_name(self) -> str:
        return f"{self.config.learner} {self.config.data.dataset}"


def load_learner_weights(learner: FewShotLearner, weights: Mapping[str, Any]) -> None:
    """``learner.load_state_dict(weights)``, with a one-line error when they belong to another learner or model.

    Raises:
        UserError: the weights do not fit (other learner, other model config, a damaged checkpoint).
    """
    try:
        learner.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"the checkpoint does not fit the configured learner and model ({first_line}): was it made with "
            "another learner or model config?"
        ) from None


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
        resume: continue from ``run_dir``'s checkpoint (``run_dir`` required; a run killed before its first
            checkpoint starts again).
        progress: show a progress bar (None: only on a terminal).
        echo: where one-line status messages go.
    """
    if resume and run_dir is None:
        raise UserError("resume needs the run directory of the run to continue")
    run = FewShotRun(config)
    if run_dir is None:
        run_dir = RunDir.create(config.run_root, config.run_name or config.default_run_name())
    if resume and run_dir.has_checkpoint():  # killed before its first checkpoint: it starts again
        run.load_state_dict(load_checkpoint(run_dir.checkpoint_path, required_keys=CHECKPOINT_KEYS))
        echo(f"resuming {run_dir.path} at iteration {run.iteration}/{config.iterations}")
    run.train(run_dir, progress=progress)
    result = evaluate_run_learner(config, run.learner, run_dir, config.eval_episodes, cache=run.cache)
    result["train_seconds"] = run.elapsed_seconds
    result["iterations"] = run.iteration
    write_json_atomic(run_dir.eval_path, result)
    with RunLogger(run_dir) as logger:
        logger.log(
            run.iteration,
            {f"meta/test_{run.metric}": result["mean"], f"meta/test_{run.metric}_ci95": result["ci95"]},
        )
    echo(
        f"{run_dir.path}: test {format_result(result)}; trained {run.iteration} iterations in "
        f"{run.elapsed_seconds:.0f} s"
    )
    return result


def evaluate_run_learner(
    config: FewShotConfig, learner: FewShotLearner, run_dir: RunDir, episodes: int, cache: dict | None = None
) -> dict[str, Any]:
    """Evaluate ``learner`` on ``episodes`` test episodes (seed ``config.eval_seed``) and plot the curve."""
    regression = is_regression(config.data)
    source = make_task_source(
        config.data, config.data.test_split, config.eval_batch, config.eval_seed, evaluation=True, cache=cache
    )
    result = evaluate_learner(
        learner, source, episodes, regression=regression, verification=config.verification
    )
    result.update(
        learner=config.learner,
        dataset=config.data.dataset,
        split=config.data.test_split,
        **({"split_scheme": config.data.split_scheme} if config.data.dataset == "omniglot" else {}),
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
