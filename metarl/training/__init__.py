"""Run infrastructure shared by the meta-RL agents and the few-shot learners: the one run loop and its parts.

:class:`RunLoop` is the loop every algorithm trains with (run directory, checkpoints, step numbering, time
limit, resume, progress bar, TensorBoard and ``metrics.jsonl``); an algorithm subclasses it and supplies one
meta-iteration and its state. Its parts are usable alone: configs (dataclass + YAML + ``key=value`` overrides,
fields declared with :func:`doc` / :func:`run_field`), run directories, atomic checkpoints with RNG states,
logging, a progress bar, confidence intervals, the adaptation-curve plot and the reference configs shipped in
the package. Imports only the standard library,
numpy, torch, yaml, tqdm, matplotlib and tensorboard.

Example (an algorithm of your own)::

    @dataclass
    class MyConfig:
        iterations: int = run_field("iterations", default=100)
        meta_batch_size: int = run_field("meta_batch_size", default=16)
        log_every: int = run_field("log_every", default=1)
        checkpoint_every: int = run_field("checkpoint_every", default=10)
        time_limit_seconds: float | None = run_field("time_limit_seconds", default=None)
        torch_threads: int | None = run_field("torch_threads", default=None)
        keep_freed_memory: bool = run_field("keep_freed_memory", default=True)
        lr: float = doc("outer learning rate", default=1e-3)

    class MyAlgorithm(RunLoop):
        def meta_iteration(self, iteration):
            return {"losses/meta_loss": self.step(iteration)}
        def algorithm_state(self):
            return {"model": self.model.state_dict()}
        def load_algorithm_state(self, state):
            self.model.load_state_dict(state["model"])

    MyAlgorithm(load_config(MyConfig, "configs/my.yaml", ["lr=0.01"])).train("runs/my-run")
"""

from metarl.memory import keep_freed_memory
from metarl.training.checkpoint import (
    capture_rng_states,
    load_checkpoint,
    restore_rng_states,
    save_checkpoint,
)
from metarl.training.config import (
    RESUMABLE_KEYS,
    RUN_FIELDS,
    check_declared_bounds,
    check_resume_overrides,
    config_from_dict,
    config_help,
    config_to_dict,
    doc,
    load_config,
    parse_overrides,
    read_config_file,
    run_field,
    save_config,
    updated_config,
)
from metarl.training.help_text import plain_text
from metarl.training.io import (
    atomic_open,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    check_writable_dir,
    check_writable_file,
    read_json,
    write_json_atomic,
)
from metarl.training.logger import ProgressBar, RunLogger, read_metrics
from metarl.training.loop import LoopConfig, RunLoop
from metarl.training.plots import plot_adaptation_curves
from metarl.training.run_dir import RunDir
from metarl.training.shipped_configs import (
    config_file,
    shipped_config_dir,
    shipped_config_names,
    shipped_configs,
)
from metarl.training.stats import format_ci, mean_ci

__all__ = [
    "RESUMABLE_KEYS",
    "RUN_FIELDS",
    "LoopConfig",
    "ProgressBar",
    "RunLoop",
    "RunDir",
    "RunLogger",
    "atomic_open",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "capture_rng_states",
    "check_writable_dir",
    "check_writable_file",
    "check_resume_overrides",
    "check_declared_bounds",
    "config_file",
    "config_from_dict",
    "config_help",
    "config_to_dict",
    "doc",
    "format_ci",
    "keep_freed_memory",
    "load_checkpoint",
    "load_config",
    "mean_ci",
    "parse_overrides",
    "plain_text",
    "plot_adaptation_curves",
    "read_config_file",
    "read_json",
    "read_metrics",
    "restore_rng_states",
    "run_field",
    "save_checkpoint",
    "save_config",
    "shipped_config_dir",
    "shipped_config_names",
    "shipped_configs",
    "updated_config",
    "write_json_atomic",
]
