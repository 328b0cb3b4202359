"""Decoding one image file into a resized uint8 array (done once per file, when a cache entry is built)."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from metarl.errors import MissingFileError, UserError

RESAMPLE_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def check_resample(resample: str) -> str:
    """``resample`` if it names a filter in :data:`RESAMPLE_FILTERS`, else a ValueError listing them."""
    if resample not in RESAMPLE_FILTERS:
        raise UserError(f"unknown resample filter {resample!r}; choose one of {sorted(RESAMPLE_FILTERS)}")
    return resample


def check_image_size(image_size: int) -> int:
    """``image_size`` as a positive int, else a ValueError."""
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) or image_size < 1:
        raise UserError(f"image_size must be a positive integer (e.g. 28 or 84), got {image_size!r}")
    return int(image_size)


def decode_image(
    source: bytes | str | os.PathLike,
    image_size: int | None,
    mode: str = "L",
    resample: str = "lanczos",
    what: str = "image",
) -> np.ndarray:
    """Decode an image file (bytes or path), convert it to ``mode`` and resize it to a square ``image_size``.

    The image is converted to ``mode`` ("L" grayscale or "RGB") *before* resizing, so a 1-bit image is resampled
    as grayscale with ``resample`` (Pillow would otherwise force nearest-neighbour on 1-bit images).

    Returns:
        ``(H, W)`` uint8 for mode "L", ``(H, W, 3)`` for "RGB"; unresized when ``image_size`` is None.

    Raises:
        ValueError: if the data is not a readable image; ``what`` names it in the message.
    """
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image = image.convert(mode)
            if image_size is not None and image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), RESAMPLE_FILTERS[resample])
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise UserError(f"cannot decode {what}: {err}; replace the file with a valid image") from err


def open_zip(path: str | os.PathLike, fix: str) -> zipfile.ZipFile:
    """Open a zip archive for reading; a missing or damaged file raises an error that ends with ``fix``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if ``path`` is not a readable zip archive.
    """
    if not os.path.isfile(path):
        raise MissingFileError(f"{path} not found; {fix}")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise UserError(f"{path} is not a readable zip archive ({err}); {fix}") from err


def check_channels(channels: int) -> str:
    """The PIL mode for ``channels`` (1 -> "L", 3 -> "RGB"), else a ValueError."""
    if channels not in (1, 3):
        raise UserError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    return "L" if channels == 1 else "RGB"


def decode_files(
    paths: Sequence[str | os.PathLike], image_size: int, channels: int, resample: str
) -> np.ndarray:
    """Decode image files into one ``(len(paths), channels, image_size, image_size)`` uint8 array."""
    mode = check_channels(channels)
    images = np.empty((len(paths), channels, image_size, image_size), dtype=np.uint8)
    for i, path in enumerate(paths):
        pixels = decode_image(path, image_size, mode, resample, what=str(path))
        images[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return images


def files_fingerprint(paths: Sequence[str | os.PathLike]) -> list:
    """(name, size, mtime) of each file: cheap to compute, and changes when a file is replaced."""
    parts = []
    for path in paths:
        stat = os.stat(path)
        parts.append((os.fspath(path), stat.st_size, stat.st_mtime_ns))
    return parts
