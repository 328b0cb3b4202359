"""Class-indexed image datasets: one uint8 array, samples grouped by class, converted to floats only per episode."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from metarl.errors import UserError


class ClassIndexedDataset:
    """Images stored contiguously by class, the form every few-shot sampler needs.

    Class ``c`` owns ``images[class_offsets[c]:class_offsets[c + 1]]``. Images stay ``uint8`` (one byte per pixel)
    until an episode is built, where :func:`to_float_tensor` maps them to float32 in [0, 1].

    Args:
        images: ``(num_samples, channels, height, width)`` uint8 array (a ``np.memmap`` is fine), sorted by class.
        class_offsets: ``num_classes + 1`` non-decreasing offsets, starting at 0 and ending at ``num_samples``.
        class_names: one name per class (e.g. ``"Greek/character05/rot090"``).

    Raises:
        ValueError: if the array is not 4-D uint8, the offsets do not partition it or a class is empty.
    """

    def __init__(
        self, images: np.ndarray, class_offsets: Sequence[int] | np.ndarray, class_names: Sequence[str]
    ):
        images_arr = images if isinstance(images, np.ndarray) else np.asarray(images)
        if images_arr.ndim != 4 or images_arr.dtype != np.uint8:
            raise UserError(
                f"images must be a uint8 array shaped (num_samples, channels, height, width), got dtype "
                f"{images_arr.dtype} and shape {images_arr.shape}; convert with np.asarray(x, dtype=np.uint8)"
            )
        offsets = np.asarray(class_offsets, dtype=np.int64)
        if offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(images_arr):
            raise UserError(
                f"class_offsets must run from 0 to len(images)={len(images_arr)} with one entry per class plus one, "
                f"got {offsets[:3].tolist()}...{offsets[-3:].tolist()} ({len(offsets)} entries)"
            )
        sizes = np.diff(offsets)
        if (sizes <= 0).any():
            empty = int(np.flatnonzero(sizes <= 0)[0])
            raise UserError(f"class {empty} has {int(sizes[empty])} samples; every class needs at least one")
        if len(class_names) != len(sizes):
            raise UserError(
                f"got {len(class_names)} class names for {len(sizes)} classes; give one name per class"
            )
        offsets.flags.writeable = sizes.flags.writeable = False  # shared with samplers: never mutated
        self.images = images_arr
        self.class_offsets = offsets
        self.class_names = list(class_names)
        self._class_sizes = sizes

    @classmethod
    def from_labels(
        cls, images: np.ndarray, labels: Sequence[int] | np.ndarray, class_names: Sequence[str] | None = None
    ) -> ClassIndexedDataset:
        """Build a dataset from images in any order and their integer labels ``0..num_classes-1``.

        Samples are grouped by label with a stable sort, so the order within a class is preserved.
        """
        labels_arr = np.asarray(labels, dtype=np.int64)
        if labels_arr.shape != (len(images),):
            raise UserError(
                f"need one label per image: {len(images)} images, labels shaped {labels_arr.shape}"
            )
        num_classes = int(labels_arr.max()) + 1 if len(labels_arr) else 0
        if len(labels_arr) and labels_arr.min() < 0:
            raise UserError(f"labels must be in 0..num_classes-1, got minimum {labels_arr.min()}")
        order = np.argsort(labels_arr, kind="stable")
        counts = np.bincount(labels_arr, minlength=num_classes)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
        return ClassIndexedDataset(np.asarray(images)[order], offsets, names)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_offsets) - 1

    @property
    def class_sizes(self) -> np.ndarray:
        """Samples per class, ``(num_classes,)`` int64 (read-only)."""
        return self._class_sizes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of every image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def labels(self) -> np.ndarray:
        """The class of every sample, ``(num_samples,)`` int64."""
        return np.repeat(np.arange(self.num_classes), self.class_sizes)

    def indices_of(self, class_id: int) -> np.ndarray:
        """Sample indices of class ``class_id`` into :attr:`images`."""
        if not 0 <= class_id < self.num_classes:
            raise IndexError(f"class_id {class_id} out of range for {self.num_classes} classes")
        return np.arange(self.class_offsets[class_id], self.class_offsets[class_id + 1])

    def class_images(self, class_id: int) -> np.ndarray:
        """The uint8 images of class ``class_id`` (a view, no copy)."""
        self.indices_of(class_id)  # range check
        return self.images[self.class_offsets[class_id] : self.class_offsets[class_id + 1]]

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        sizes = self.class_sizes
        size_text = str(sizes[0]) if (sizes == sizes[0]).all() else f"{sizes.min()}-{sizes.max()}"
        return (
            f"{type(self).__name__}({self.num_classes} classes x {size_text} samples, "
            f"image shape {self.image_shape}, {len(self)} images)"
        )


def to_float_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images -> float32 tensor in [0, 1] (255 -> 1.0)."""
    # One numpy pass (uint8 -> float32 division) rather than torch's convert-then-divide: faster (BENCHMARKS.md).
    return torch.from_numpy(np.divide(images, np.float32(255.0), dtype=np.float32))
