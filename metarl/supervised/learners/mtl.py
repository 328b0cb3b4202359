"""Meta-transfer learning (Sun, Liu, Chua & Schiele, "Meta-Transfer Learning for Few-Shot Learning", CVPR 2019).

Two phases of one run:

1. **Pre-training** (the first ``pretrain_iterations`` meta-iterations): the backbone and a temporary classifier
   over *all* training classes learn ordinary classification on the images of the sampled episodes, labelled
   with their dataset classes (``EpisodeBatch.class_ids``). The temporary classifier is then discarded.
2. **Meta-transfer**: the backbone's weights are frozen; each convolution gets scaling and shifting (SS)
   parameters, ``W * Phi_S1`` (one scale per filter) and ``b + Phi_S2`` (one shift per filter), initialised to 1
   and 0, and a ``ways``-way classifier whose initialisation is meta-learned. Per task, the classifier adapts on
   the frozen-but-scaled-and-shifted support features with ``inner_steps`` steps of :func:`metarl.core.adapt`
   (second order, through the classifier only); the query loss trains the SS parameters and the classifier's
   initialisation.

The phase is a buffer of the learner (``pretrain_done``), so checkpoints resume in the right phase. The
hard-task (HT) meta-batch schedule of the paper is not implemented yet (see the docs page).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metarl.core import adapt, functional_forward, stack_over_tasks
from metarl.errors import UserError
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.base import FewShotLearner
from metarl.supervised.learners.protonet import encode_tasks


class MetaTransferLearner(FewShotLearner):
    """MTL with scaling-and-shifting of a pre-trained backbone (see the module docstring).

    Args:
        encoder: the backbone (e.g. ``Conv4`` without head), pre-trained in phase 1, frozen in phase 2.
        ways: classes of the meta-transfer classifier.
        pretrain_iterations: meta-iterations of all-class pre-training before meta-transfer (0: none).
        inner_lr: step size of the classifier's inner loop (the paper: 0.01 on miniImageNet).
        inner_steps: inner steps in meta-training; ``eval_inner_steps`` at evaluation (default the same).
    """

    def __init__(
        self,
        encoder: nn.Module,
        ways: int = 5,
        pretrain_iterations: int = 1000,
        inner_lr: float = 0.1,
        inner_steps: int = 10,
        eval_inner_steps: int | None = None,
    ):
        super().__init__()
        dim = getattr(encoder, "embedding_dim", None)
        if not dim:
            raise UserError("MTL needs an encoder with an embedding_dim (e.g. Conv4 without head)")
        if pretrain_iterations < 0 or inner_steps < 0 or not inner_lr > 0:
            raise UserError(
                f"pretrain_iterations and inner_steps must be >= 0 and inner_lr > 0, got {pretrain_iterations}, "
                f"{inner_steps}, {inner_lr}"
            )
        self.encoder = encoder
        self.convolutions = [n for n, m in encoder.named_modules() if isinstance(m, nn.Conv2d)]
        convs = [encoder.get_submodule(n) for n in self.convolutions]
        self.scales = nn.ParameterList([nn.Parameter(torch.ones(c.out_channels)) for c in convs])
        self.shifts = nn.ParameterList([nn.Parameter(torch.zeros(c.out_channels)) for c in convs])
        self.classifier = nn.Linear(dim, ways)
        self.pretrain_head: nn.Linear | None = None
        self.ways = ways
        self.pretrain_iterations = int(pretrain_iterations)
        self.inner_lr = float(inner_lr)
        self.inner_steps = int(inner_steps)
        self.eval_inner_steps = int(inner_steps if eval_inner_steps is None else eval_inner_steps)
        self.register_buffer("pretrain_done", torch.zeros((), dtype=torch.long))

    def set_train_classes(self, classes: int) -> None:
        """Build the all-class pre-training classifier for the ``classes`` training classes (the run calls this)."""
        if self.pretrain_iterations:
            self.pretrain_head = nn.Linear(self.classifier.in_features, classes)

    @property
    def pretraining(self) -> bool:
        """Whether the next meta-iteration is a pre-training step."""
        return int(self.pretrain_done) < self.pretrain_iterations

    # -- phase 1 --------------------------------------------------------------------------------------------
    def pretrain_loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """All-class cross-entropy of the batch's images with their dataset classes."""
        if self.pretrain_head is None or batch.class_ids is None:
            raise UserError("MTL pre-training needs the training classes (class_ids) from a dataset sampler")
        images = torch.cat([batch.support_x, batch.query_x], 1)
        labels = batch.class_ids.gather(1, torch.cat([batch.support_y, batch.query_y], 1))
        logits = self.pretrain_head(self.encoder(images.flatten(0, 1)))
        loss = F.cross_entropy(logits, labels.flatten())
        return loss, {"accuracy": float((logits.argmax(-1) == labels.flatten()).float().mean())}

    def train_step(self, batch: EpisodeBatch, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """A pre-training step while ``pretrain_done < pretrain_iterations``, else a meta-transfer step."""
        if not self.pretraining:
            return super().train_step(batch, optimizer)
        optimizer.zero_grad(set_to_none=True)
        loss, metrics = self.pretrain_loss(batch)
        loss.backward()
        optimizer.step()
        self.pretrain_done += 1
        return {"loss": float(loss.detach()), **metrics, "pretraining": 1.0}

    # -- phase 2 --------------------------------------------------------------------------------------------
    def scaled_and_shifted(self) -> dict[str, torch.Tensor]:
        """The frozen backbone's parameters with SS applied to every convolution: ``W * s``, ``b + t``."""
        params = {n: p.detach() for n, p in self.encoder.named_parameters()}
        for name, scale, shift in zip(self.convolutions, self.scales, self.shifts, strict=True):
            params[f"{name}.weight"] = params[f"{name}.weight"] * scale.view(-1, 1, 1, 1)
            params[f"{name}.bias"] = params[f"{name}.bias"] + shift
        return params

    def adapted_logits(self, batch: EpisodeBatch, steps: int, first_order: bool = False) -> torch.Tensor:
        """Query logits after ``steps`` inner steps of each task's classifier on its support features."""
        params = self.scaled_and_shifted()
        support, query = encode_tasks(lambda x: functional_forward(self.encoder, params, x), batch)
        head = stack_over_tasks(dict(self.classifier.named_parameters()), batch.num_tasks, copy=False)

        def logits(p: dict[str, torch.Tensor], features: torch.Tensor) -> torch.Tensor:
            return torch.einsum("tnd,twd->tnw", features, p["weight"]) + p["bias"].unsqueeze(1)

        def support_loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
            out = logits(p, support)
            return (
                F.cross_entropy(out.flatten(0, 1), batch.support_y.flatten(), reduction="none")
                .view(batch.num_tasks, -1)
                .mean(1)
                .sum()
            )

        adapted = adapt(head, support_loss, steps=steps, lr=self.inner_lr, first_order=first_order)
        return logits(adapted, query)

    def meta_loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.adapted_logits(batch, self.inner_steps)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten())
        return loss, {"accuracy": float((logits.argmax(-1) == batch.query_y).float().mean())}

    def predict(self, batch: EpisodeBatch) -> torch.Tensor:
        if batch.ways != self.ways:
            raise UserError(
                f"this MTL classifier has {self.ways} outputs but the episode has {batch.ways} ways"
            )
        if torch.is_grad_enabled():
            return self.adapted_logits(batch, self.eval_inner_steps)
        with torch.enable_grad():
            return self.adapted_logits(batch, self.eval_inner_steps, first_order=True).detach()
