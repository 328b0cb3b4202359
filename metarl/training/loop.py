"""The one run loop of every algorithm, meta-RL agents and few-shot learners alike.

An algorithm subclasses :class:`RunLoop` and supplies one meta-iteration (:meth:`RunLoop.meta_iteration`) and
its own state (:meth:`RunLoop.algorithm_state`, :meth:`RunLoop.load_algorithm_state`), as Stable-Baselines3's
algorithms supply ``train()`` to the base class's ``learn()``. :meth:`RunLoop.train` owns everything else:

* the run directory: the resolved ``config.yaml``, ``metrics.jsonl`` and TensorBoard events, and an atomic
  ``checkpoint.pt`` every ``checkpoint_every`` iterations and when the run stops;
* step numbering: the scalars of iteration ``i`` (counting from 1) are logged at step ``i``, averaged over the
  last ``log_every`` iterations; a resumed run drops what was logged after its checkpoint, so it continues the
  same curve;
* the time limit ``time_limit_seconds`` (checked between iterations, after at least one), with a message that
  says how to resume;
* the progress bar, and the throughput (``charts/``) and wall-clock scalars.

A config that a :class:`RunLoop` trains needs the fields of :class:`LoopConfig` (declared with
:func:`metarl.training.run_field`, so they read the same in every config).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch

from metarl.errors import TrainingDiverged, UserError
from metarl.memory import keep_freed_memory
from metarl.training.checkpoint import save_checkpoint
from metarl.training.config import config_drift, config_to_dict, save_config
from metarl.training.io import check_writable_dir
from metarl.training.logger import ProgressBar, RunLogger
from metarl.training.run_dir import RunDir


class LoopConfig(Protocol):
    """The config fields the run loop reads (see :data:`metarl.training.RUN_FIELDS` for their meaning)."""

    iterations: int
    checkpoint_every: int
    log_every: int
    time_limit_seconds: float | None
    torch_threads: int | None
    keep_freed_memory: bool


class RunLoop:
    """Base class of everything trained by meta-iterations: owns the run loop, subclasses own one iteration.

    Args:
        config: the run's config (it has the fields of :class:`LoopConfig`).

    Attributes:
        iteration: meta-iterations done so far (a resumed run starts at its checkpoint's).
        elapsed_seconds: training time of those iterations, across resumptions.
    """

    #: ``(count key, chart tag)``: ``meta_iteration`` returns the count of work it did under the key (env
    #: steps, tasks); the loop logs the count per second under the tag.
    throughput: ClassVar[tuple[str, str] | None] = None

    def __init__(self, config: LoopConfig) -> None:
        self.config = config
        self.apply_torch_threads()
        self.iteration = 0
        self.elapsed_seconds = 0.0
        self.throughput_total = 0.0  # the throughput's count (e.g. env steps) summed over all iterations
        self._window: dict[str, float] = {}  # sums of the scalars not yet logged, and their count

    def apply_torch_threads(self) -> None:
        """``torch.set_num_threads(config.torch_threads)`` unless it is null; :meth:`train` applies it again, so
        a resumed run's new ``torch_threads`` takes effect."""
        if self.config.torch_threads is not None:
            torch.set_num_threads(self.config.torch_threads)

    # --- what an algorithm provides -------------------------------------------------------------------
    def meta_iteration(self, iteration: int) -> dict[str, float]:
        """Run meta-iteration ``iteration`` (counting from 0) and return its scalars (tag -> number)."""
        raise NotImplementedError

    def algorithm_state(self) -> dict[str, Any]:
        """What the algorithm needs to continue exactly: weights, optimizer, samplers, RNG states."""
        raise NotImplementedError

    def load_algorithm_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`algorithm_state` from a checkpoint."""
        raise NotImplementedError

    def periodic_scalars(self, done: int, write: Callable[[str], None]) -> dict[str, float]:
        """Scalars measured now and then rather than every iteration (e.g. validation), after ``done``
        iterations; logged as they are, not averaged. ``write`` prints a line above the progress bar."""
        return {}

    def release_resources(self) -> None:
        """Free what only the iterations use (a sampler's kept engine) when :meth:`train` returns or fails;
        default: nothing. Anything released must be rebuilt on demand."""

    def progress_postfix(self, scalars: Mapping[str, float]) -> dict[str, float]:
        """The numbers shown next to the progress bar when ``scalars`` are logged."""
        return {k.split("/")[-1]: v for k, v in scalars.items() if not k.startswith("charts/")}

    def resume_hint(self, run: RunDir) -> str:
        """How a user continues ``run`` (the time-limit message ends with it)."""
        return f"resume it from its checkpoint in {run.path}"

    def run_name(self) -> str:
        """The label of the progress bar."""
        return type(self).__name__

    # --- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: the algorithm's state and the loop's (config, iteration, elapsed time, unlogged
        window)."""
        return {
            **self.algorithm_state(),
            "config": config_to_dict(self.config),
            "iteration": self.iteration,
            "elapsed": self.elapsed_seconds,
            "throughput_total": self.throughput_total,
            "window": dict(self._window),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (checkpoints written before the loop kept its time and window
        resume with none).

        Raises:
            UserError: the run's config differs from the one the checkpoint was made with in a key a resumed
                run may not change (someone edited ``config.yaml``), or the checkpoint does not fit.
        """
        if isinstance(state.get("config"), Mapping):
            drifted = config_drift(type(self.config), state["config"], config_to_dict(self.config))
            if drifted:
                raise UserError(
                    f"the run's config differs from the one its checkpoint was made with in {', '.join(drifted)}: "
                    "a resumed run keeps its config (restore config.yaml, or start a new run)"
                )
        self.load_algorithm_state(state)
        self.iteration = int(state["iteration"])
        self.elapsed_seconds = float(state.get("elapsed", 0.0))
        self.throughput_total = float(state.get("throughput_total", 0.0))
        self._window = dict(state.get("window") or {})

    # --- the loop -----------------------------------------------------------------------------------
    def train(
        self, run_dir: str | os.PathLike[str] | RunDir | None = None, progress: bool | None = None
    ) -> list[dict[str, float]]:
        """Train until ``config.iterations`` (or the time limit), continuing from :attr:`iteration`.

        Args:
            run_dir: where to write config, checkpoints, metrics and TensorBoard events (``None``: nothing is
                written). A missing directory is created; a resumed run passes its own.
            progress: show a progress bar (``None``: only on a terminal).

        Returns:
            The scalars of each meta-iteration this call ran.
        """
        config = self.config
        self.apply_torch_threads()
        if config.keep_freed_memory:
            keep_freed_memory()
        run = _as_run_dir(run_dir) if run_dir is not None else None
        if run is not None:
            run.check_layout()
            run.remove_stale_temporaries()
        logger = None
        if run is not None:
            save_config(config, run.config_path)  # on resume: keeps an extended ``iterations``
            logger = RunLogger(run, resume_step=self.iteration)
            if self.iteration == 0:
                logger.log_text("config", f"```\n{run.config_path.read_text(encoding='utf-8')}\n```")
        saved_at = self.iteration if run is not None and run.has_checkpoint() else None
        history: list[dict[str, float]] = []
        started = time.perf_counter()
        bar = ProgressBar(
            config.iterations,
            initial=self.iteration,
            desc=self.run_name(),
            disable=None if progress is None else not progress,
        )
        try:
            while self.iteration < config.iterations:
                limit = config.time_limit_seconds
                if history and limit is not None and time.perf_counter() - started > limit:
                    where = f"; {self.resume_hint(run)}" if run is not None else ""
                    bar.write(
                        f"time limit of {limit:g} s reached: stopped at iteration {self.iteration} of "
                        f"{config.iterations}{where}"
                    )
                    break
                tick = time.perf_counter()
                scalars = self.meta_iteration(self.iteration)
                seconds = time.perf_counter() - tick
                self._check_finite(scalars)
                self.iteration += 1
                self.elapsed_seconds += seconds
                history.append(self._record(scalars, seconds))
                logged = self._window_means() if self._log_now() else {}
                logged.update(self.periodic_scalars(self.iteration, bar.write))
                if logged:
                    if logger is not None:
                        logger.log(self.iteration, logged)
                    bar.update(0, **self.progress_postfix(logged))
                bar.update(1)
                if run is not None and (
                    self.iteration % config.checkpoint_every == 0 or self.iteration == config.iterations
                ):
                    logger.flush()
                    save_checkpoint(run.checkpoint_path, self.state_dict())
                    saved_at = self.iteration
            if run is not None and saved_at != self.iteration:  # stopped between checkpoints, or did nothing
                logger.flush()
                save_checkpoint(run.checkpoint_path, self.state_dict())
        finally:
            bar.close()
            if logger is not None:
                logger.close()
            self.release_resources()
        return history

    def _check_finite(self, scalars: Mapping[str, float]) -> None:
        """Stop before a diverged iteration is logged or checkpointed: the last checkpoint stays good."""
        bad = sorted(k for k, v in scalars.items() if not math.isfinite(float(v)))
        if not bad and all(bool(torch.isfinite(p).all()) for p in self.trained_parameters()):
            return
        what = f"scalars {', '.join(bad)} are not finite" if bad else "the parameters are no longer finite"
        raise TrainingDiverged(
            f"training diverged at iteration {self.iteration + 1}: {what}. The likely cause is a step size too "
            "large for this problem (an inner or outer learning rate, a trust region): lower it and resume from "
            "the last checkpoint, or start again"
        )

    def trained_parameters(self) -> list[torch.Tensor]:
        """The tensors training changes, checked to be finite after every iteration."""
        return []

    def _record(self, scalars: dict[str, float], seconds: float) -> dict[str, float]:
        """Add the iteration's timing and throughput to ``scalars``, and them to the window being averaged."""
        scalars = dict(scalars)
        if self.throughput is not None:
            count_key, tag = self.throughput
            count = scalars.pop(count_key)
            self.throughput_total += count
            scalars[tag] = count / seconds
        scalars["charts/seconds_per_iteration"] = seconds
        for key, value in scalars.items():
            self._window[key] = self._window.get(key, 0.0) + float(value)
        self._window["count"] = self._window.get("count", 0.0) + 1
        return scalars

    def _log_now(self) -> bool:
        return self.iteration % self.config.log_every == 0 or self.iteration == self.config.iterations

    def _window_means(self) -> dict[str, float]:
        window, self._window = self._window, {}
        count = window.pop("count")
        means = {key: total / count for key, total in window.items()}
        means["charts/elapsed_seconds"] = self.elapsed_seconds
        if self.throughput is not None:  # e.g. charts/env_steps_total: the x axis of sample efficiency
            means[f"charts/{self.throughput[0]}_total"] = self.throughput_total
        resident = resident_megabytes()
        if resident is not None:
            means["charts/resident_mb"] = resident
        return means


def resident_megabytes() -> float | None:
    """The process's resident memory in MiB (Linux's /proc; None elsewhere), logged to show a run stays flat."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _as_run_dir(run_dir: str | os.PathLike[str] | RunDir) -> RunDir:
    if isinstance(run_dir, RunDir):
        return run_dir
    path = check_writable_dir(run_dir, "the run directory")
    path.mkdir(parents=True, exist_ok=True)
    return RunDir(path)
