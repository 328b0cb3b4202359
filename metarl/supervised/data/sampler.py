"""Seeded N-way K-shot Q-query episode sampler over a class-indexed uint8 dataset."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from metarl.errors import UserError
from metarl.supervised.data.base import ClassIndexedDataset, to_float_tensor
from metarl.supervised.data.episodes import EpisodeBatch


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise UserError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class EpisodeSampler:
    """Batches of few-shot classification tasks drawn from a :class:`ClassIndexedDataset`.

    Each task picks ``ways`` distinct classes uniformly at random, in random order, and relabels them 0..N-1;
    from each class it draws ``shots + queries`` distinct samples (``shots`` go to the support set, the rest to the
    query set). Sets are laid out class by class: ``support_y[t] = [0]*K + [1]*K + ... + [N-1]*K`` and likewise for
    the query set. All randomness comes from one ``np.random.Generator`` seeded with ``seed``, so the same seed
    gives the same episodes; :meth:`state_dict` / :meth:`load_state_dict` resume a stream exactly.

    Building a batch is one fancy-index into the uint8 image array plus one float conversion; no image is decoded.

    Args:
        dataset: the classes to sample from (e.g. ``Omniglot(root, "train")``).
        ways: classes per task (N).
        shots: support samples per class (K).
        queries: query samples per class (Q), may be 0.
        tasks_per_batch: tasks per :class:`EpisodeBatch` (the meta-batch size).
        seed: seed of the sampler's generator.
        groups: one group name per class (e.g. Omniglot's alphabet): each task then first draws a group
            uniformly among those with at least ``ways`` classes, and its classes within it.

    Raises:
        ValueError: if the dataset has fewer than ``ways`` classes or a class has fewer than ``shots + queries``
            samples.
    """

    def __init__(
        self,
        dataset: ClassIndexedDataset,
        ways: int,
        shots: int,
        queries: int,
        *,
        tasks_per_batch: int = 1,
        seed: int = 0,
        groups: Sequence[str] | None = None,
    ):
        self.ways = _check_count("ways", ways, 1)
        self.shots = _check_count("shots", shots, 1)
        self.queries = _check_count("queries", queries, 0)
        self.tasks_per_batch = _check_count("tasks_per_batch", tasks_per_batch, 1)
        self.dataset = dataset
        self._sizes = dataset.class_sizes
        self._offsets = dataset.class_offsets[:-1]
        if dataset.num_classes < self.ways:
            raise UserError(
                f"{self.ways}-way episodes need at least {self.ways} classes, but the dataset has "
                f"{dataset.num_classes}; lower ways or use a split with more classes"
            )
        per_class = self.shots + self.queries
        too_small = np.flatnonzero(self._sizes < per_class)
        if len(too_small):
            first = int(too_small[0])
            raise UserError(
                f"{len(too_small)} classes have fewer than shots + queries = {per_class} samples (e.g. class "
                f"{dataset.class_names[first]!r} has {int(self._sizes[first])}); lower shots or queries, or drop "
                f"those classes from the dataset"
            )
        self._uniform_size = int(self._sizes[0]) if (self._sizes == self._sizes[0]).all() else None
        self._groups: list[np.ndarray] | None = None
        if groups is not None:
            if len(groups) != dataset.num_classes:
                raise UserError(
                    f"got {len(groups)} group names for {dataset.num_classes} classes; give one per class"
                )
            names, group_of = np.unique(np.asarray(groups), return_inverse=True)
            members = [np.flatnonzero(group_of == g) for g in range(len(names))]
            self._groups = [m for m in members if len(m) >= self.ways]
            if not self._groups:
                raise UserError(
                    f"no group has {self.ways} classes for a {self.ways}-way episode within one group (the "
                    f"largest has {max(len(m) for m in members)}); lower ways or sample across groups"
                )
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def sample_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Draw one batch's structure without building tensors.

        Returns:
            ``classes`` ``(tasks, ways)``: the dataset class behind each label, and ``indices``
            ``(tasks, ways, shots + queries)``: sample indices into ``dataset.images`` (first ``shots`` = support).
        """
        rng = self.rng
        if self._groups is None:
            pools = [self.dataset.num_classes] * self.tasks_per_batch
        else:
            pools = [self._groups[g] for g in rng.integers(len(self._groups), size=self.tasks_per_batch)]
        classes = np.stack([rng.choice(pool, self.ways, replace=False) for pool in pools])
        return classes, self._sample_examples(classes)

    def _sample_examples(self, classes: np.ndarray) -> np.ndarray:
        """Indices ``(tasks, ways, shots + queries)`` of distinct random samples of each class in ``classes``."""
        tasks, ways = classes.shape
        per_class = self.shots + self.queries
        rng = self.rng
        sizes = self._sizes[classes]
        width = self._uniform_size or int(sizes.max())
        keys = rng.random((tasks, ways, width))
        if self._uniform_size is None:
            keys[np.arange(width) >= sizes[..., None]] = np.inf  # never pick past the end of a class
        if per_class < width:
            chosen = np.argpartition(keys, per_class - 1, axis=-1)[..., :per_class]
            # argpartition leaves the chosen few in no particular order; sort them by key for a uniform order.
            chosen = np.take_along_axis(chosen, np.take_along_axis(keys, chosen, -1).argsort(-1), -1)
        else:
            chosen = keys.argsort(-1)[..., :per_class]
        return self._offsets[classes][..., None] + chosen

    def sample(self) -> EpisodeBatch:
        """One :class:`EpisodeBatch` of ``tasks_per_batch`` tasks, images float32 in [0, 1]."""
        return self._batch(*self.sample_indices())

    def sample_with_classes(self, classes: np.ndarray | list[list[int]]) -> EpisodeBatch:
        """Episodes of the given dataset classes ``(tasks, ways)`` (label ``j`` of task ``t`` is ``classes[t][j]``),
        with fresh random samples of each drawn from this sampler's stream (e.g. MTL's hard tasks).

        Raises:
            UserError: a task's classes are not ``ways`` distinct classes of the dataset.
        """
        classes = np.asarray(classes, dtype=np.int64)
        if classes.ndim != 2 or classes.shape[1] != self.ways:
            raise UserError(
                f"classes must be (tasks, {self.ways}) dataset class indices, got shape {classes.shape}"
            )
        if classes.size and (classes.min() < 0 or classes.max() >= self.dataset.num_classes):
            raise UserError(
                f"class indices must be in 0..{self.dataset.num_classes - 1}, got {classes.tolist()}"
            )
        if any(len(set(row.tolist())) != self.ways for row in classes):
            raise UserError(f"each task needs {self.ways} distinct classes, got {classes.tolist()}")
        return self._batch(classes, self._sample_examples(classes))

    def _batch(self, classes: np.ndarray, indices: np.ndarray) -> EpisodeBatch:
        tasks, ways = classes.shape
        shots, queries = self.shots, self.queries
        images = self.dataset.images[indices]  # (tasks, ways, shots + queries, C, H, W) uint8
        image_shape = images.shape[3:]
        support_x = to_float_tensor(images[:, :, :shots].reshape(tasks, ways * shots, *image_shape))
        query_x = to_float_tensor(images[:, :, shots:].reshape(tasks, ways * queries, *image_shape))
        labels = torch.arange(ways, dtype=torch.int64)
        support_y = labels.repeat_interleave(shots).expand(tasks, -1).contiguous()
        query_y = labels.repeat_interleave(queries).expand(tasks, -1).contiguous()
        class_ids = torch.from_numpy(np.ascontiguousarray(classes, dtype=np.int64))
        return EpisodeBatch(support_x, support_y, query_x, query_y, ways, shots, queries, class_ids)

    def __iter__(self) -> Iterator[EpisodeBatch]:
        """An endless stream of batches (use ``itertools.islice`` for a fixed number)."""
        while True:
            yield self.sample()

    def state_dict(self) -> dict[str, Any]:
        """The generator state, to store in a checkpoint."""
        return {"seed": self.seed, "bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream saved by :meth:`state_dict`."""
        self.rng.bit_generator.state = state["bit_generator"]

    def __repr__(self) -> str:
        return (
            f"EpisodeSampler({self.ways}-way {self.shots}-shot {self.queries}-query, "
            f"tasks_per_batch={self.tasks_per_batch}, seed={self.seed}, dataset={self.dataset!r})"
        )
