"""Run infrastructure shared by the meta-RL agents and the few-shot learners.

Configs (dataclass + YAML + ``key=value`` overrides), run directories, atomic checkpoints with RNG states,
TensorBoard + ``metrics.jsonl`` logging, a progress bar, confidence intervals and the adaptation-curve plot.
Imports only the standard library, numpy, torch, yaml, tqdm, matplotlib and tensorboard.

Example (a training script; see ``metarl.training.checkpoint`` for the resume recipe)::

    config = load_config(MyConfig, "configs/my.yaml", ["inner_lr=0.05"])
    run = RunDir.create("runs", f"my-algo-s{config.seed}")
    save_config(config, run.config_path)
    with RunLogger(run) as logger, ProgressBar(config.iterations, desc="train") as bar:
        for iteration in range(config.iterations):
            scalars = train_one_iteration()
            logger.log(iteration, scalars)
            logger.flush()
            save_checkpoint(run.checkpoint_path, {"model": model.state_dict(), "iteration": iteration,
                                                  "rng": capture_rng_states()})
            bar.update(1, ret=scalars["meta/return_after_step1"])
    mean, half = mean_ci(per_task_returns)
    write_json_atomic(run.eval_path, {"return": mean, "ci95": half})
    plot_adaptation_curves({"MAML": {"steps": [0, 1], "mean": [-35.0, -9.8], "ci": [1.2, 0.9]}}, run.plot_path)
"""

from metarl.memory import keep_freed_memory
from metarl.training.checkpoint import (
    capture_rng_states,
    load_checkpoint,
    restore_rng_states,
    save_checkpoint,
)
from metarl.training.config import (
    check_resume_overrides,
    config_from_dict,
    config_help,
    config_to_dict,
    load_config,
    parse_overrides,
    save_config,
)
from metarl.training.io import (
    atomic_open,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    read_json,
    write_json_atomic,
)
from metarl.training.logger import ProgressBar, RunLogger, read_metrics
from metarl.training.plots import plot_adaptation_curves
from metarl.training.run_dir import RunDir
from metarl.training.stats import format_ci, mean_ci

__all__ = [
    "ProgressBar",
    "RunDir",
    "RunLogger",
    "atomic_open",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "capture_rng_states",
    "check_resume_overrides",
    "config_from_dict",
    "config_help",
    "config_to_dict",
    "format_ci",
    "keep_freed_memory",
    "load_checkpoint",
    "load_config",
    "mean_ci",
    "parse_overrides",
    "plot_adaptation_curves",
    "read_json",
    "read_metrics",
    "restore_rng_states",
    "save_checkpoint",
    "save_config",
    "write_json_atomic",
]
