"""Datasets by name, for configs and the command line (``dataset: omniglot``, ``--data-root ../shared/data``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from metarl.errors import UserError
from metarl.supervised.data.base import ClassIndexedDataset
from metarl.supervised.data.image_folder import ImageFolderDataset
from metarl.supervised.data.miniimagenet import MiniImageNet
from metarl.supervised.data.omniglot import Omniglot
from metarl.supervised.data.orl_faces import ORLFaces

DATASET_NAMES = ("omniglot", "miniimagenet", "orl_faces", "folder")
# A file that marks a folder as holding the dataset itself (so a parent "data root" can be given instead).
_MARKERS = {
    "omniglot": ("images_background.zip", "images_evaluation.zip"),
    "miniimagenet": ("images", "mini-imagenet-cache-train.pkl", "mini-imagenet-cache-test.pkl"),
    "orl_faces": ("s1",),
}


def dataset_root(name: str, root: str | os.PathLike) -> Path:
    """``root`` itself if it holds dataset ``name``, else ``root/<name>`` if that does (a shared data root).

    So ``../shared/data`` and ``../shared/data/omniglot`` both work for Omniglot.
    """
    root = Path(root).expanduser()
    markers = _MARKERS.get(name, ())
    if any((root / marker).exists() for marker in markers):
        return root
    nested = root / name
    if any((nested / marker).exists() for marker in markers):
        return nested
    return root


def make_dataset(name: str, root: str | os.PathLike, split: str, **options: Any) -> ClassIndexedDataset:
    """Build a few-shot dataset by name.

    Args:
        name: "omniglot" (:class:`Omniglot`; options such as ``split_scheme``, ``image_size``, ``rotations``),
            "miniimagenet" (:class:`MiniImageNet`), "orl_faces" (:class:`ORLFaces`, subject splits) or "folder" (:class:`ImageFolderDataset` over
            ``root/<split>/<class>/<image>``; options ``image_size`` (required) and ``channels``).
        root: the dataset's folder, or a data root that holds it as ``root/<name>``.
        split: the part to load ("train", "val", "test", ...).
        **options: keyword arguments of the dataset class (e.g. ``cache_dir``).

    Raises:
        ValueError: for an unknown name (and whatever the dataset raises for bad options or data).
    """
    if name == "omniglot":
        return Omniglot(dataset_root(name, root), split, **options)
    if name == "miniimagenet":
        return MiniImageNet(dataset_root(name, root), split, **options)
    if name == "orl_faces":
        return ORLFaces(dataset_root(name, root), split, **options)
    if name == "folder":
        if "image_size" not in options:
            raise UserError("the 'folder' dataset needs image_size (e.g. image_size=84)")
        return ImageFolderDataset(Path(root).expanduser() / split, **options)
    raise UserError(f"unknown dataset {name!r}; choose one of {list(DATASET_NAMES)}")
