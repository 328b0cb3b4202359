"""The interface every few-shot learner implements, gradient-based or metric-based."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from metarl.supervised.data.episodes import EpisodeBatch


class FewShotLearner(nn.Module, ABC):
    """A meta-learner trained on batches of episodes and evaluated by its predictions on query sets.

    Subclasses implement :meth:`meta_loss` (differentiable w.r.t. the meta-parameters) and :meth:`predict`.
    Learners whose outer update is not a gradient of a loss (Reptile) override :meth:`train_step`.
    """

    backward_chunk: int | None = None
    """Tasks per backward pass in :meth:`train_step`, gradients accumulated over the chunks (the same update,
    since :meth:`meta_loss` is a mean over tasks); ``None``: the whole batch in one pass. Smaller chunks keep
    less of the graph alive and, on the CPU, more of it in cache."""

    @abstractmethod
    def meta_loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean query loss over the tasks of ``batch`` and metrics to log (e.g. ``{"accuracy": ...}``)."""

    @abstractmethod
    def predict(self, batch: EpisodeBatch) -> torch.Tensor:
        """Query predictions ``(tasks, N*Q, ways)`` logits (or regression outputs) after using the support set."""

    def train_step(self, batch: EpisodeBatch, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One meta-update: by default ``optimizer.step()`` on :meth:`meta_loss` (in ``backward_chunk`` chunks).

        Returns the loss and metrics averaged over the tasks.
        """
        optimizer.zero_grad(set_to_none=True)
        chunk = self.backward_chunk or batch.num_tasks
        totals: dict[str, float] = {}
        for start in range(0, batch.num_tasks, chunk):
            part = batch.tasks(start, start + chunk)
            weight = part.num_tasks / batch.num_tasks
            loss, metrics = self.meta_loss(part)
            (loss * weight if weight != 1 else loss).backward()
            for key, value in {"loss": float(loss.detach()), **metrics}.items():
                totals[key] = totals.get(key, 0.0) + weight * value
        optimizer.step()
        return totals

    def accuracy(self, batch: EpisodeBatch) -> torch.Tensor:
        """Per-task query accuracy ``(tasks,)`` of a classification learner."""
        logits = self.predict(batch)
        return (logits.argmax(-1) == batch.query_y).float().mean(-1)
