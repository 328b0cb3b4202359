"""miniImageNet (Vinyals et al. 2016) with the Ravi & Larochelle (2017) split."""

from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path

import numpy as np

from metarl.errors import MissingFileError, UserError
from metarl.supervised.data.base import ClassIndexedDataset
from metarl.supervised.data.cache import (
    cached,
    file_sha256,
    fingerprint,
    load_entry,
    resolve_cache_dir,
    save_entry,
)
from metarl.supervised.data.imaging import (
    RESAMPLE_FILTERS,
    check_image_size,
    check_resample,
    decode_files,
    files_fingerprint,
)

SPLITS = ("train", "val", "test")
RAVI_CLASS_COUNTS = {"train": 64, "val": 16, "test": 20}
IMAGES_PER_CLASS = 600


def _resize_all(images: np.ndarray, image_size: int, resample: str) -> np.ndarray:
    """Resize ``(N, 3, H, W)`` uint8 images to ``image_size`` (only when a pickle's 84x84 are not wanted)."""
    from PIL import Image

    resized = np.empty((len(images), 3, image_size, image_size), dtype=np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)))
        resized[i] = np.asarray(pil.resize((image_size, image_size), RESAMPLE_FILTERS[resample])).transpose(
            2, 0, 1
        )
    return resized


def _from_pickle(path: Path) -> tuple[np.ndarray, list[str], list[int]]:
    """Images grouped by class, class names and sizes from a ``mini-imagenet-cache-<split>.pkl``."""
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle)  # noqa: S301 (the standard distribution format; load only trusted files)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as err:
        raise UserError(
            f"{path} is not a readable pickle ({err}); replace it with the standard file"
        ) from err
    if not isinstance(data, dict) or "image_data" not in data or "class_dict" not in data:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise UserError(f"{path} must hold a dict with keys 'image_data' and 'class_dict', found {found}")
    images = np.asarray(data["image_data"])
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise UserError(f"{path}: image_data must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    classes = sorted(data["class_dict"])
    order = [np.asarray(data["class_dict"][c], dtype=np.int64) for c in classes]
    flat = np.concatenate(order)
    if len(flat) and (flat.min() < 0 or flat.max() >= len(images)):
        raise UserError(f"{path}: class_dict indices must lie in 0..{len(images) - 1}")
    return images[flat].transpose(0, 3, 1, 2), classes, [len(o) for o in order]


def _read_split_csv(path: Path) -> tuple[list[str], list[str]]:
    """Filenames and labels of a Ravi split csv (header ``filename,label``)."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or [c.strip() for c in rows[0]] != ["filename", "label"]:
        raise UserError(f"{path} must be a csv with header 'filename,label', got {rows[:1]}")
    body = [row for row in rows[1:] if row]
    if any(len(row) != 2 for row in body):
        raise UserError(f"{path}: every row must be 'filename,label'")
    return [row[0] for row in body], [row[1] for row in body]


class MiniImageNet(ClassIndexedDataset):
    """miniImageNet: 100 ImageNet classes x 600 images at 84x84, Ravi & Larochelle's split.

    The split has 64 train / 16 val / 20 test classes, 600 images each (38,400 / 9,600 / 12,000 images).
    Two layouts of ``root`` are read:

    - the standard pickles ``mini-imagenet-cache-{train,val,test}.pkl``, each a dict with ``image_data``
      ``(N, 84, 84, 3)`` uint8 and ``class_dict`` ``{class name: [indices]}`` (pickles run code when loaded:
      only use files you trust);
    - an image folder ``images/<filename>.jpg`` with the split csvs (``filename,label``) at ``root/<split>.csv``
      or ``root/splits/ravi/<split>.csv``. The JPEGs are decoded once (RGB, resized with ``resample`` when not
      already ``image_size``, as MAML's ``proc_images.py`` does with LANCZOS) into a cache entry in
      ``cache_dir`` that is memory-mapped afterwards.

    MAML's processed layout (``train/<label>/<image>.jpg``, one folder per class) is read by
    :class:`~metarl.supervised.data.image_folder.ImageFolderDataset` (``make_dataset("folder", root, "train",
    image_size=84)``).

    Classes are sorted by name (WordNet id); images keep their file/pickle order within a class. Images are
    ``(3, image_size, image_size)`` uint8, 1.0 = full intensity in episodes (no normalisation).

    Args:
        root: folder in one of the layouts above.
        split: "train", "val" or "test".
        image_size: side of the square images (84 in the literature).
        cache_dir: where decoded arrays are cached (default ``$METARL_CACHE`` or ``~/.cache/metarl``).
        resample: "lanczos", "bilinear", "bicubic" or "nearest".

    Raises:
        FileNotFoundError: if neither layout is found or a listed image is missing.
        ValueError: for an unknown split or a malformed pickle or csv.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        image_size: int = 84,
        cache_dir: str | os.PathLike | None = None,
        *,
        resample: str = "lanczos",
    ):
        if split not in SPLITS:
            raise UserError(f"unknown miniImageNet split {split!r}; choose one of {list(SPLITS)}")
        self.root, self.split = Path(root).expanduser(), split
        self.image_size = check_image_size(image_size)
        check_resample(resample)
        cache = resolve_cache_dir(cache_dir)
        pickle_path = self.root / f"mini-imagenet-cache-{split}.pkl"
        csv_path = next(
            (
                p
                for p in (self.root / f"{split}.csv", self.root / "splits" / "ravi" / f"{split}.csv")
                if p.is_file()
            ),
            None,
        )
        if pickle_path.is_file():
            images, classes, sizes = self._load_pickle(pickle_path, cache, resample)
        elif csv_path is not None and (self.root / "images").is_dir():
            filenames, labels = _read_split_csv(csv_path)
            classes = sorted(set(labels))
            by_class: dict[str, list[str]] = {c: [] for c in classes}
            for filename, label in zip(filenames, labels, strict=True):
                by_class[label].append(filename)
            paths = [self.root / "images" / f for c in classes for f in by_class[c]]
            missing = [p for p in paths if not p.is_file()]
            if missing:
                raise MissingFileError(
                    f"{len(missing)} images listed in {csv_path} are missing from {self.root / 'images'} "
                    f"(e.g. {missing[0].name}); copy the full miniImageNet image folder there"
                )
            key = fingerprint([file_sha256(csv_path), files_fingerprint(paths), self.image_size, resample])
            images, _ = cached(
                cache,
                f"miniimagenet-{split}-{self.image_size}px-{resample}-{key}",
                lambda: (decode_files(paths, self.image_size, 3, resample), {"classes": classes}),
                mmap=True,
            )
            sizes = [len(by_class[c]) for c in classes]
        else:
            raise MissingFileError(
                f"no miniImageNet {split!r} data in {self.root}: expected {pickle_path.name} (the standard pickle), "
                f"or an images/ folder with {split}.csv (Ravi split, filename,label) in root or root/splits/ravi/"
            )
        super().__init__(images, np.concatenate([[0], np.cumsum(sizes)]), classes)

    def _load_pickle(self, path: Path, cache: Path, resample: str) -> tuple[np.ndarray, list[str], list[int]]:
        """Images, classes and sizes from a pickle; resized copies (other than 84x84) are cached."""
        stat = path.stat()
        key = fingerprint([os.fspath(path), stat.st_size, stat.st_mtime_ns, self.image_size, resample])
        name = f"miniimagenet-pickle-{self.split}-{self.image_size}px-{resample}-{key}"
        entry = load_entry(cache, name, mmap=True)
        if entry is not None:
            return entry[0], entry[1]["classes"], entry[1]["sizes"]
        images, classes, sizes = _from_pickle(path)
        if images.shape[2:] == (self.image_size, self.image_size):
            return np.ascontiguousarray(images), classes, sizes
        resized = _resize_all(images, self.image_size, resample)
        save_entry(cache, name, resized, {"classes": classes, "sizes": sizes})
        return resized, classes, sizes
