"""Run logging: TensorBoard scalars plus a ``metrics.jsonl`` twin, resumable; and a progress bar.

``metrics.jsonl`` holds one JSON object per ``log`` call (``{"step": 3, "meta/return_before": -35.2, ...}``), so
results can be read without TensorBoard. When a run is resumed from a checkpoint taken at step ``s``, lines
logged after ``s`` by the killed process are dropped first (and TensorBoard is told to purge its events after
``s``), so a killed-and-resumed run ends with exactly the same ``metrics.jsonl`` as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from tqdm.auto import tqdm

from metarl.training.io import atomic_write_text
from metarl.training.run_dir import RunDir

__all__ = ["ProgressBar", "RunLogger", "read_metrics"]


def _records_with_lines(target: Path) -> list[tuple[dict[str, Any], str]]:
    records = []
    for line in target.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append((record, line))
    return records


def read_metrics(path: Any) -> list[dict[str, Any]]:
    """Read a ``metrics.jsonl`` file; a torn last line (the process was killed mid-write) is skipped.

    Args:
        path: The file (``run.metrics_path``) or a ``RunDir``.

    Returns:
        The logged records in file order (empty if the file does not exist).
    """
    target = path.metrics_path if isinstance(path, RunDir) else Path(path)
    if not target.is_file():
        return []
    return [record for record, _ in _records_with_lines(target)]


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _to_float(tag: str, value: Any) -> float:
    if isinstance(value, (str, bytes)):
        raise ValueError(f"scalar {tag!r} must be a number, got {type(value).__name__} {value!r}")
    try:
        return float(value)  # Python and numpy numbers, 0-d arrays, one-element tensors
    except (TypeError, ValueError):
        raise ValueError(f"scalar {tag!r} must be a number, got {type(value).__name__} {value!r}") from None


class RunLogger:
    """Logs scalars of one run to TensorBoard (``tb/``) and to ``metrics.jsonl``.

    Args:
        run_dir: The run directory (a ``RunDir`` or its path).
        resume_step: When resuming from a checkpoint taken after logging step ``resume_step``: records with a
            larger step are removed from ``metrics.jsonl`` and purged from TensorBoard. ``None`` appends to
            whatever the directory already holds (start new runs in a fresh ``RunDir.create`` directory).
        tensorboard: Write TensorBoard events (``False`` writes only ``metrics.jsonl``).

    Example:
        >>> with RunLogger(run) as logger:
        ...     logger.log(0, {"meta/return_before": -35.0, "meta/return_after_step1": -12.0})
    """

    def __init__(
        self,
        run_dir: RunDir | str | os.PathLike[str],
        *,
        resume_step: int | None = None,
        tensorboard: bool = True,
    ) -> None:
        if resume_step is not None and (isinstance(resume_step, bool) or not isinstance(resume_step, int)):
            raise TypeError(f"resume_step must be an int or None, got {resume_step!r}")
        self.run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.run_dir.path.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self._truncate_metrics(resume_step)
        self._metrics_file = open(self.run_dir.metrics_path, "a", encoding="utf-8")  # noqa: SIM115
        if self._metrics_file.tell() > 0 and not _ends_with_newline(self.run_dir.metrics_path):
            # A killed writer left a torn last line: end it, so the next record starts on a line of its own.
            self._metrics_file.write("\n")
            self._metrics_file.flush()
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge_step = resume_step + 1 if resume_step is not None else None
            self._writer = SummaryWriter(log_dir=str(self.run_dir.tensorboard_dir), purge_step=purge_step)
        self._closed = False

    def _truncate_metrics(self, resume_step: int) -> None:
        path = self.run_dir.metrics_path
        if not path.is_file():
            return
        kept = [line for record, line in _records_with_lines(path) if record["step"] <= resume_step]
        atomic_write_text(path, "".join(line + "\n" for line in kept))  # the original bytes of each kept line

    def log(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Record ``scalars`` (tag -> number) at ``step``: one TensorBoard scalar each, one line in metrics.jsonl.

        Raises:
            ValueError: a value is not a number, or a tag is not a non-empty string.
            RuntimeError: the logger is closed.
        """
        if self._closed:
            raise RuntimeError("RunLogger.log called after close()")
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise ValueError(f"step must be an integer, got {step!r}")
        step = int(step)
        record: dict[str, Any] = {"step": step}
        for tag, value in scalars.items():
            if not isinstance(tag, str) or not tag:
                raise ValueError(f"scalar tags must be non-empty strings, got {tag!r}")
            if tag == "step":
                raise ValueError("'step' is reserved in metrics.jsonl; name the scalar differently")
            record[tag] = _to_float(tag, value)
        # One write call per record so a kill leaves at most one torn last line, which read_metrics skips.
        self._metrics_file.write(json.dumps(record) + "\n")
        self._metrics_file.flush()
        if self._writer is not None:
            for tag, value in record.items():
                if tag != "step" and not math.isnan(value):
                    self._writer.add_scalar(tag, value, global_step=step)

    def log_text(self, tag: str, text: str, step: int = 0) -> None:
        """Write a text entry to TensorBoard (e.g. the resolved config); no-op without TensorBoard."""
        if self._writer is not None:
            self._writer.add_text(tag, text, global_step=step)

    def flush(self) -> None:
        """Push buffered TensorBoard events and metrics lines to disk (call before saving a checkpoint)."""
        if not self._closed:
            self._metrics_file.flush()
            if self._writer is not None:
                self._writer.flush()

    def close(self) -> None:
        """Flush and close the files. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._metrics_file.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _format_postfix(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, numbers.Integral):
        return str(value)
    return f"{value:.4g}"


class ProgressBar:
    """A tqdm progress bar on stderr showing the latest metrics (e.g. returns or accuracy) as a postfix.

    Args:
        total: Number of iterations of the whole run.
        initial: Iterations already done (a resumed run starts here).
        desc: Label in front of the bar.
        disable: ``None`` disables the bar when stderr is not a terminal (tqdm's rule); ``True``/``False`` force it.
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "", disable: bool | None = None) -> None:
        self._bar = tqdm(
            total=total,
            initial=initial,
            desc=desc or None,
            disable=disable,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
        )

    @property
    def n(self) -> int:
        """Iterations counted so far (including ``initial``)."""
        return int(self._bar.n)

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Advance by ``n`` and show ``postfix`` (``ret_after=-9.87``, ``acc=0.97``) next to the bar."""
        if postfix:
            self._bar.set_postfix({k: _format_postfix(v) for k, v in postfix.items()}, refresh=False)
        self._bar.update(n)

    def write(self, message: str) -> None:
        """Print a line above the bar without breaking it."""
        self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        """Finish the bar. Safe to call twice."""
        self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
