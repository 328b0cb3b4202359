"""Any folder of images with one sub-folder per class, as a few-shot dataset."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from metarl.errors import MissingFileError, UserError
from metarl.supervised.data.base import ClassIndexedDataset
from metarl.supervised.data.cache import cached, fingerprint, resolve_cache_dir
from metarl.supervised.data.imaging import (
    IMAGE_EXTENSIONS,
    check_channels,
    check_image_size,
    check_resample,
    decode_files,
    files_fingerprint,
)


class ImageFolderDataset(ClassIndexedDataset):
    """Images laid out as ``root/<class name>/<image file>``, each sub-folder a class.

    Classes are the sub-folders that hold at least one image (sorted by name; hidden folders are skipped), and a
    class's images are its files with an image extension, sorted by name. Every image is converted to grayscale
    (``channels=1``) or RGB (``channels=3``), resized to ``image_size`` x ``image_size`` with ``resample`` and
    stored as uint8 (no inversion: 1.0 = white). The decoded array is cached in ``cache_dir`` (keyed by the
    files' names, sizes and modification times and the options) and memory-mapped from there, so the images are
    decoded only once.

    Args:
        root: the folder of class sub-folders.
        image_size: side of the square images.
        channels: 1 (grayscale) or 3 (RGB).
        resample: "lanczos", "bilinear", "bicubic" or "nearest".
        cache_dir: where decoded arrays are cached (default ``$METARL_CACHE`` or ``~/.cache/metarl``).
        extensions: file name endings counted as images (case-insensitive).

    Raises:
        FileNotFoundError: if ``root`` is not a folder.
        ValueError: if it has no class sub-folders with images, or an image cannot be decoded.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: int,
        channels: int = 3,
        *,
        resample: str = "lanczos",
        cache_dir: str | os.PathLike | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ):
        self.root = Path(root).expanduser()
        self.image_size = check_image_size(image_size)
        self.channels = channels
        check_channels(channels)
        check_resample(resample)
        if not self.root.is_dir():
            raise MissingFileError(
                f"image folder {self.root} does not exist; point root at root/<class>/<image>"
            )
        suffixes = tuple(ext.lower() for ext in extensions)
        classes: list[str] = []
        files: list[Path] = []
        sizes: list[int] = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            images = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(suffixes))
            if images:
                classes.append(folder.name)
                files.extend(images)
                sizes.append(len(images))
        if not classes:
            raise UserError(
                f"{self.root} has no class sub-folders with images ({', '.join(suffixes)}); expected the layout "
                f"root/<class name>/<image file>"
            )
        key = fingerprint([files_fingerprint(files), self.image_size, channels, resample])
        name = f"folder-{self.root.name}-{self.image_size}px-{channels}ch-{resample}-{key}"
        images, _ = cached(
            resolve_cache_dir(cache_dir),
            name,
            lambda: (decode_files(files, self.image_size, channels, resample), {"classes": classes}),
            mmap=True,
        )
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        super().__init__(images, offsets, classes)
