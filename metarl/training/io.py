"""Atomic file writes: a reader (or a resumed run) sees either the old file or the complete new one.

Every writer puts the data into a temporary file in the destination's own directory (so the final
``os.replace`` is a rename within one file system, which POSIX makes atomic), flushes and fsyncs it, and only
then renames it over the destination. If anything fails before the rename, the temporary file is removed and
the previous file, if any, is untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from metarl.errors import MissingFileError, UserError

__all__ = [
    "atomic_open",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_json",
    "write_json_atomic",
]


def _current_umask() -> int:
    # os.umask can only be read by setting it, which races with threads creating files (TensorBoard's writer,
    # thread pools); Linux exposes it read-only in /proc, so prefer that.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable after a power loss; not supported everywhere (e.g. Windows), hence best effort.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "wb", encoding: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` atomically when the ``with`` block exits without error.

    Args:
        path: Destination file. Missing parent directories are created.
        mode: ``"wb"`` or ``"w"`` (text).
        encoding: Text encoding for mode ``"w"`` (default UTF-8).

    Yields:
        The open temporary file. If the block raises, the temporary file is deleted and ``path`` is unchanged.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        if mode == "w":
            handle: IO[Any] = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="")
        else:
            handle = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates files readable only by the owner; keep an existing file's mode, else the umask default.
        try:
            mode_bits = target.stat().st_mode & 0o777
        except OSError:
            mode_bits = 0o666 & ~_UMASK
        os.chmod(tmp, mode_bits)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, rename).

    Returns:
        The destination path.
    """
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically.

    Returns:
        The destination path.
    """
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)
    return Path(path)


def _json_default(value: Any) -> Any:
    # numpy scalars/arrays and paths show up in results dicts; convert them instead of failing at the end of a run.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"object of type {type(value).__name__} is not JSON serialisable")


def write_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> Path:
    """Serialise ``obj`` as JSON and write it atomically (numpy scalars and arrays are converted to lists).

    Non-finite floats are written as ``NaN`` / ``Infinity`` (Python's JSON extension, read back by ``read_json``),
    so an unknown confidence interval stays a float instead of turning into ``null``.

    The whole document is serialised before the file is touched, so an unserialisable value leaves the
    previous file intact.

    Returns:
        The destination path.
    """
    text = json.dumps(obj, indent=indent, default=_json_default, allow_nan=True)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, with a one-line error naming the file when it is missing or not valid JSON.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not valid JSON.
    """
    target = Path(path)
    if not target.exists():
        raise MissingFileError(f"JSON file {target} not found")
    if not target.is_file():
        raise UserError(f"{target} is a directory, not a JSON file")
    try:
        return json.loads(target.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{target} is not valid JSON ({exc}): fix or delete the file") from None


def atomic_torch_save(
    obj: Any, path: str | os.PathLike[str], save: Callable[[Any, IO[bytes]], None] | None = None
) -> Path:
    """``torch.save(obj, path)`` atomically: a crash mid-save never leaves a truncated file at ``path``.

    Args:
        obj: Anything ``torch.save`` accepts.
        path: Destination file.
        save: The serialiser (default ``torch.save``); injectable for tests.

    Returns:
        The destination path.
    """
    if save is None:
        import torch

        save = torch.save
    with atomic_open(path, "wb") as handle:
        save(obj, handle)
    return Path(path)


def check_writable_dir(path: str | os.PathLike[str], what: str) -> Path:
    """Check up front that ``path`` is, or can become, a folder this process writes into.

    Args:
        path: the folder (it may not exist yet).
        what: how the user named it, for the message (e.g. ``"the run directory (--run-dir)"``).

    Raises:
        UserError: ``path`` or one of its parents is a file, or the nearest existing folder is not writable.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UserError(f"{what} {target} is a file, not a folder: choose a folder")
    _check_parent_writable(target, what)
    return target


def check_writable_file(path: str | os.PathLike[str], what: str) -> Path:
    """Check up front that ``path`` can be written as a file (it is no folder, its parents are folders).

    Raises:
        UserError: ``path`` is a folder, a parent is a file, or the nearest existing folder is not writable.
    """
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{what} {target} is a folder, not a file: name a file inside it")
    _check_parent_writable(target, what)
    return target


def _check_parent_writable(target: Path, what: str) -> None:
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{what} {target} lies under {parent}, which is a file: choose another place")
    if (target.exists() and not os.access(target, os.W_OK)) or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(
            f"{what} {target} cannot be written (no write permission on {parent}): choose another place"
        )
