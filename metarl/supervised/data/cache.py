"""The decoded-image cache: uint8 arrays written once (atomically) and reloaded instead of decoding images again.

An entry is ``<name>.npy`` (the images, memory-mappable) plus ``<name>.json`` (metadata such as class offsets and
names). The ``.npy`` is written first and the ``.json`` last, each through a temp file and ``os.replace``, so a
reader that finds the ``.json`` always finds a complete ``.npy``; an interrupted write leaves no usable entry.
Names carry a fingerprint of the source files and the decoding options, so a changed source gets a new entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from metarl.training.io import atomic_open, check_writable_dir

CACHE_FORMAT = 2  # 2: the record carries a CRC-32 of the images, checked on load
CACHE_ENV_VAR = "METARL_CACHE"


def default_cache_dir() -> Path:
    """``$METARL_CACHE`` if set, else ``~/.cache/metarl``."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "metarl"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir`` as a ``Path``, or the default when ``None``."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(parts: Iterable[Any]) -> str:
    """A short stable hash of ``parts`` (strings, numbers) for cache names."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def save_entry(cache_dir: Path, name: str, images: np.ndarray, meta: dict[str, Any]) -> None:
    """Write ``images`` and ``meta`` (JSON-serialisable) as cache entry ``name``, atomically."""
    npy_path, json_path = cache_dir / f"{name}.npy", cache_dir / f"{name}.json"
    with atomic_open(npy_path) as handle:
        np.save(handle, np.ascontiguousarray(images), allow_pickle=False)
    record = {
        "format": CACHE_FORMAT,
        "shape": list(images.shape),
        "dtype": str(images.dtype),
        "crc32": _crc32(images),
        "meta": meta,
    }
    with atomic_open(json_path, "w") as handle:
        handle.write(json.dumps(record))


def load_entry(cache_dir: Path, name: str, mmap: bool = False) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Cache entry ``name`` as ``(images, meta)``, or ``None`` when absent, from another format, or damaged."""
    npy_path, json_path = cache_dir / f"{name}.npy", cache_dir / f"{name}.json"
    if not json_path.is_file() or not npy_path.is_file():
        return None
    try:
        record = json.loads(json_path.read_text())
        if record.get("format") != CACHE_FORMAT:
            return None
        images = np.load(npy_path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if list(images.shape) != record["shape"] or str(images.dtype) != record["dtype"]:
            raise ValueError(f"array {images.shape} {images.dtype} does not match its record")
        if _crc32(images) != record["crc32"]:
            raise ValueError("its content does not match its checksum")
    except (OSError, ValueError, KeyError) as err:
        warnings.warn(f"ignoring damaged cache entry {npy_path} ({err}); decoding again", stacklevel=3)
        return None
    return images, record["meta"]


def _crc32(images: np.ndarray) -> int:
    """CRC-32 of the array's bytes (about a second per GB): catches a damaged or truncated cache file."""
    return zlib.crc32(memoryview(np.ascontiguousarray(images)).cast("B"))


def cached(
    cache_dir: Path, name: str, build: Callable[[], tuple[np.ndarray, dict[str, Any]]], mmap: bool = False
) -> tuple[np.ndarray, dict[str, Any]]:
    """Load entry ``name`` or ``build()`` it, save it and return it."""
    entry = load_entry(cache_dir, name, mmap=mmap)
    if entry is not None:
        return entry
    check_writable_dir(cache_dir, "the decoded-image cache (data.cache_dir, $METARL_CACHE)")
    images, meta = build()
    save_entry(cache_dir, name, images, meta)
    if mmap:
        reloaded = load_entry(cache_dir, name, mmap=True)
        if reloaded is not None:
            return reloaded
    return images, meta
