"""Reptile (Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms").

For each task of a meta-batch, start from the meta-parameters and run ``inner_steps`` Adam steps on mini-batches of
the task's support set; then move the meta-parameters toward the mean of the adapted parameters,
``theta <- theta + epsilon * (mean_i(phi_i) - theta)`` (:func:`metarl.core.reptile_update`), with ``epsilon``
annealed linearly from ``outer_step_size`` to ``final_outer_step_size`` over the run
(:func:`metarl.core.linear_anneal`). Prediction adapts the same way with ``eval_inner_steps`` steps of size
``eval_inner_batch`` and scores the query set (batch norm uses the query batch's statistics: the paper's
transductive setting).

The adapted parameters are task-local leaf tensors (``detach_params``) run through ``functional_forward``; the
module's own parameters change only in the outer update (``load_params_``).

Paper protocol, Omniglot 5-way 1-shot: Adam lr 1e-3 with beta1 = 0, inner batch 10, 5 inner iterations, 10 train
shots, meta-batch 5, outer step 1.0 annealed to 0 over 100k iterations, 50 evaluation iterations with batch 5.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from metarl.core import (
    Params,
    detach_params,
    functional_forward,
    linear_anneal,
    load_params_,
    named_params,
    reptile_update,
)
from metarl.errors import UserError
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.base import FewShotLearner
from metarl.supervised.learners.maml import LossName, per_task_losses, task_metric


class Reptile(FewShotLearner):
    """Reptile with an inner Adam optimizer per task.

    Args:
        model: the network whose parameters are the initialisation (e.g. ``Conv4(ways=5)``).
        inner_lr: Adam step size of the inner loop (1e-3).
        inner_steps: inner Adam steps per task during meta-training (5).
        inner_batch: support examples per inner step (10); the support set is shuffled and cycled through.
        eval_inner_steps: inner steps when predicting (50).
        eval_inner_batch: support examples per step when predicting (5); default ``inner_batch``.
        outer_step_size: initial interpolation step ``epsilon`` (1.0).
        final_outer_step_size: ``epsilon`` at the end of the run (0.0).
        adam_betas: inner Adam betas; the paper sets beta1 = 0.
        loss: ``"cross_entropy"`` or ``"mse"``.
        seed: seed of the generator that orders the inner mini-batches.
    """

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = 1e-3,
        inner_steps: int = 5,
        inner_batch: int = 10,
        eval_inner_steps: int = 50,
        eval_inner_batch: int | None = 5,
        outer_step_size: float = 1.0,
        final_outer_step_size: float = 0.0,
        adam_betas: tuple[float, float] = (0.0, 0.999),
        loss: LossName = "cross_entropy",
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("inner_steps", inner_steps), ("eval_inner_steps", eval_inner_steps)):
            if value < 0:
                raise UserError(f"{name} must be >= 0, got {value}")
        for name, value in (("inner_batch", inner_batch), ("eval_inner_batch", eval_inner_batch or 1)):
            if value < 1:
                raise UserError(f"{name} must be >= 1, got {value}")
        if not inner_lr > 0:
            raise UserError(f"inner_lr must be > 0, got {inner_lr}")
        if outer_step_size <= 0 or final_outer_step_size < 0:
            raise UserError(
                f"outer_step_size must be > 0 and final_outer_step_size >= 0, got {outer_step_size}, "
                f"{final_outer_step_size}"
            )
        self.model = model
        self.inner_lr, self.inner_steps, self.inner_batch = (
            float(inner_lr),
            int(inner_steps),
            int(inner_batch),
        )
        self.eval_inner_steps = int(eval_inner_steps)
        self.eval_inner_batch = int(eval_inner_batch or inner_batch)
        self.outer_step_size, self.final_outer_step_size = (
            float(outer_step_size),
            float(final_outer_step_size),
        )
        self.adam_betas = (float(adam_betas[0]), float(adam_betas[1]))
        self.loss: Literal["cross_entropy", "mse"] = loss
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.total_iterations = 100_000
        # A buffer, so the annealing position travels with the learner's state_dict into checkpoints.
        self.register_buffer("iterations_done", torch.zeros((), dtype=torch.int64))

    def set_total_iterations(self, total: int) -> None:
        """The run length over which the outer step size anneals (the runner sets it from its config)."""
        self.total_iterations = max(int(total), 1)

    def generators(self) -> dict[str, torch.Generator]:
        """Random generators whose state a checkpoint must hold."""
        return {"minibatch": self.generator}

    def outer_step(self) -> float:
        """The current interpolation step ``epsilon``."""
        return linear_anneal(
            self.outer_step_size, int(self.iterations_done), self.total_iterations, self.final_outer_step_size
        )

    @staticmethod
    def _minibatches(size: int, batch: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
        """Index batches cycling through shuffled passes over ``size`` examples (a new shuffle per pass)."""
        order: list[torch.Tensor] = []
        need = batch * steps
        while sum(len(o) for o in order) < need:
            order.append(torch.randperm(size, generator=generator))
        flat = torch.cat(order) if order else torch.empty(0, dtype=torch.int64)
        return [flat[i * batch : (i + 1) * batch] for i in range(steps)]

    def adapt_task(
        self, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int, generator: torch.Generator
    ) -> Params:
        """Adam-adapt a task-local copy of the meta-parameters on ``(x, y)``; returns the adapted (leaf) params."""
        phi = detach_params(named_params(self.model), requires_grad=True)
        optimizer = torch.optim.Adam(phi.values(), lr=self.inner_lr, betas=self.adam_betas)
        with torch.enable_grad():
            for index in self._minibatches(len(x), min(batch, len(x)), steps, generator):
                optimizer.zero_grad(set_to_none=True)
                outputs = functional_forward(self.model, phi, x[index])
                per_task_losses(outputs[None], y[index][None], self.loss).sum().backward()
                optimizer.step()
        return {n: p.detach() for n, p in phi.items()}

    def train_step(
        self, batch: EpisodeBatch, optimizer: torch.optim.Optimizer | None = None
    ) -> dict[str, float]:
        """One Reptile meta-update over the tasks of ``batch`` (the outer optimizer is not used)."""
        adapted, losses = [], []
        for t in range(batch.num_tasks):
            phi = self.adapt_task(
                batch.support_x[t], batch.support_y[t], self.inner_steps, self.inner_batch, self.generator
            )
            adapted.append(phi)
            with torch.no_grad():
                outputs = functional_forward(self.model, phi, batch.support_x[t])
                losses.append(per_task_losses(outputs[None], batch.support_y[t][None], self.loss))
        step = self.outer_step()
        meta = named_params(self.model)
        load_params_(self.model, reptile_update(meta, adapted, step))
        self.iterations_done += 1
        # Reptile has no query loss during training; report the adapted support loss.
        return {"loss": float(torch.cat(losses).mean()), "outer_step_size": step}

    def meta_loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean query loss after adaptation. Not differentiable w.r.t. the meta-parameters: Reptile's outer
        update is not the gradient of a loss, so it trains through :meth:`train_step`."""
        with torch.no_grad():
            outputs = self.predict(batch)
        loss = per_task_losses(outputs, batch.query_y, self.loss).mean()
        metrics = {}
        if self.loss == "cross_entropy":
            metrics["accuracy"] = float(task_metric(outputs, batch.query_y, self.loss).mean())
        return loss, metrics

    def predict(self, batch: EpisodeBatch, steps: int | None = None) -> torch.Tensor:
        """Query outputs after ``steps`` (default ``eval_inner_steps``) inner Adam steps per task.

        The mini-batch order comes from a generator seeded afresh on every call, so predicting is deterministic and
        never moves the training stream.
        """
        steps = self.eval_inner_steps if steps is None else steps
        generator = torch.Generator().manual_seed(self.seed + 1)
        outputs = []
        for t in range(batch.num_tasks):
            phi = self.adapt_task(
                batch.support_x[t], batch.support_y[t], steps, self.eval_inner_batch, generator
            )
            with torch.no_grad():
                outputs.append(functional_forward(self.model, phi, batch.query_x[t]))
        return torch.stack(outputs)
