"""Episodic few-shot batches: N-way K-shot Q-query tasks with labels 0..N-1."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EpisodeBatch:
    """A batch of few-shot tasks.

    Shapes (``tasks`` = meta-batch size, ``N`` = ways, ``K`` = shots, ``Q`` = queries per class):
    ``support_x`` (tasks, N*K, C, H, W) float32 in [0, 1] (or (tasks, K, 1) for regression),
    ``support_y`` (tasks, N*K) int64 labels in 0..N-1 (float targets for regression),
    ``query_x`` (tasks, N*Q, ...), ``query_y`` (tasks, N*Q); ``class_ids`` (tasks, N) the dataset class behind
    each label when the sampler knows it (all-class pre-training uses it), else None.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    ways: int
    shots: int
    queries: int
    class_ids: torch.Tensor | None = None

    @property
    def num_tasks(self) -> int:
        return self.support_x.shape[0]

    def task(self, i: int) -> EpisodeBatch:
        """The ``i``-th task as a batch of one."""
        return self.tasks(i, i + 1)

    def tasks(self, start: int, stop: int) -> EpisodeBatch:
        """Tasks ``start`` to ``stop - 1`` as a batch (views, no copy)."""
        sl = slice(start, stop)
        return EpisodeBatch(
            self.support_x[sl],
            self.support_y[sl],
            self.query_x[sl],
            self.query_y[sl],
            self.ways,
            self.shots,
            self.queries,
            None if self.class_ids is None else self.class_ids[sl],
        )

    def to(self, device: torch.device | str) -> EpisodeBatch:
        """The same batch on ``device``."""
        return EpisodeBatch(
            self.support_x.to(device),
            self.support_y.to(device),
            self.query_x.to(device),
            self.query_y.to(device),
            self.ways,
            self.shots,
            self.queries,
            None if self.class_ids is None else self.class_ids.to(device),
        )


def concat_batches(first: EpisodeBatch, second: EpisodeBatch) -> EpisodeBatch:
    """The tasks of ``first`` then those of ``second`` (same ways, shots and queries) as one batch."""
    if (first.ways, first.shots, first.queries) != (second.ways, second.shots, second.queries):
        raise ValueError("batches to join must have the same ways, shots and queries")
    both_ids = first.class_ids is not None and second.class_ids is not None
    return EpisodeBatch(
        torch.cat([first.support_x, second.support_x]),
        torch.cat([first.support_y, second.support_y]),
        torch.cat([first.query_x, second.query_x]),
        torch.cat([first.query_y, second.query_y]),
        first.ways,
        first.shots,
        first.queries,
        torch.cat([first.class_ids, second.class_ids]) if both_ids else None,
    )
