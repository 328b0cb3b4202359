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

    @abstractmethod
    def meta_loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean query loss over the tasks of ``batch`` and metrics to log (e.g. ``{"accuracy": ...}``)."""

    @abstractmethod
    def predict(self, batch: EpisodeBatch) -> torch.Tensor:
        """Query predictions ``(tasks, N*Q, ways)`` logits (or regression outputs) after using the support set."""

    def train_step(self, batch: EpisodeBatch, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One meta-update: by default ``optimizer.step()`` on :meth:`meta_loss`."""
        optimizer.zero_grad(set_to_none=True)
        loss, metrics = self.meta_loss(batch)
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach()), **metrics}

    def accuracy(self, batch: EpisodeBatch) -> torch.Tensor:
        """Per-task query accuracy ``(tasks,)`` of a classification learner."""
        logits = self.predict(batch)
        return (logits.argmax(-1) == batch.query_y).float().mean(-1)
