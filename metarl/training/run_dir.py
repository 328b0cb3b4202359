"""The run directory: one folder per training run holding everything it produced.

Layout (DESIGN.md, Runs)::

    runs/maml-trpo-navigation2d-s0/
        config.yaml            resolved config
        checkpoint.pt          latest checkpoint (atomic)
        metrics.jsonl          one JSON object per logged step
        tb/                    TensorBoard events
        tasks.json             the held-out tasks evaluated on
        eval.json              evaluation results
        adaptation_curve.png   returns/accuracy after 0..k adaptation steps
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from metarl.errors import MissingFileError, UserError
from metarl.training.io import check_writable_dir, check_writable_file

__all__ = ["RunDir"]

_MARKER_FILES = ("config.yaml", "checkpoint.pt", "metrics.jsonl")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


class RunDir:
    """Paths of one run directory. Create a new one with ``RunDir.create``, reopen one with ``RunDir.open``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)

    @staticmethod
    def sanitize_name(name: str) -> str:
        """A file-system friendly run name: ``"MetaRL/Navigation2D-v0"`` -> ``"MetaRL-Navigation2D-v0"``."""
        cleaned = _UNSAFE.sub("-", name).strip("-.")
        return cleaned or "run"

    @classmethod
    def create(cls, root: str | os.PathLike[str] = "runs", name: str = "run") -> RunDir:
        """Create a fresh run directory ``root/name``, appending ``-1``, ``-2``, ... if the name is taken.

        The directory is created with ``mkdir`` (never reusing an existing one), so two runs started at the
        same moment with the same name still get different directories.

        Args:
            root: Parent folder of all runs (created if missing).
            name: Desired run name; characters other than letters, digits and ``._+-`` become ``-``.

        Returns:
            The new, empty run directory.
        """
        root_path = check_writable_dir(root, "the runs folder")
        root_path.mkdir(parents=True, exist_ok=True)
        base = cls.sanitize_name(name)
        for suffix in range(100_000):
            candidate = root_path / (base if suffix == 0 else f"{base}-{suffix}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return cls(candidate)
        raise RuntimeError(f"could not find a free run directory name for {base!r} under {root_path}")

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunDir:
        """Open an existing run directory (to resume or evaluate it).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: ``path`` is not a directory or holds none of config.yaml / checkpoint.pt / metrics.jsonl.
        """
        target = Path(path)
        if not target.exists():
            raise MissingFileError(
                f"run directory {target} not found: pass the folder a training run created"
            )
        if not target.is_dir():
            raise UserError(
                f"{target} is a file, not a run directory: pass the folder that contains config.yaml"
            )
        if not any((target / marker).is_file() for marker in _MARKER_FILES):
            raise UserError(
                f"{target} is not a run directory (it has no {', '.join(_MARKER_FILES)}): "
                "pass the folder a training run created, e.g. runs/maml-trpo-navigation2d-s0"
            )
        return cls(target)

    @property
    def path(self) -> Path:
        """The run directory itself."""
        return self._path

    @property
    def name(self) -> str:
        """The run's name (the directory's name)."""
        return self._path.name

    @property
    def config_path(self) -> Path:
        """``config.yaml``: the resolved config."""
        return self._path / "config.yaml"

    @property
    def checkpoint_path(self) -> Path:
        """``checkpoint.pt``: the latest checkpoint."""
        return self._path / "checkpoint.pt"

    @property
    def metrics_path(self) -> Path:
        """``metrics.jsonl``: one JSON object per logged step."""
        return self._path / "metrics.jsonl"

    @property
    def tensorboard_dir(self) -> Path:
        """``tb/``: TensorBoard event files."""
        return self._path / "tb"

    @property
    def tasks_path(self) -> Path:
        """``tasks.json``: the tasks the run evaluated on."""
        return self._path / "tasks.json"

    @property
    def eval_path(self) -> Path:
        """``eval.json``: evaluation results."""
        return self._path / "eval.json"

    @property
    def plot_path(self) -> Path:
        """``adaptation_curve.png``: the adaptation-curve plot."""
        return self._path / "adaptation_curve.png"

    def check_layout(self) -> None:
        """Check, before a run writes anything, that its files are files and its TensorBoard folder a folder.

        Raises:
            UserError: naming the entry that is in the way.
        """
        check_writable_dir(self.path, "the run directory")
        for path in (self.config_path, self.checkpoint_path, self.metrics_path):
            check_writable_file(path, "the run's")
        check_writable_dir(self.tensorboard_dir, "the run's TensorBoard folder")

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the temporary files an atomic write killed mid-way left behind (``.<name>.*.tmp``); only the
        run's own writer may call it, before it writes."""
        stale = sorted(self.path.glob(".*.tmp")) if self.path.is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def has_checkpoint(self) -> bool:
        """Whether a checkpoint exists (a run can be resumed)."""
        return self.checkpoint_path.is_file()

    def __fspath__(self) -> str:
        return os.fspath(self._path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and self._path == other._path

    def __hash__(self) -> int:
        return hash(self._path)

    def __repr__(self) -> str:
        return f"RunDir({str(self._path)!r})"
