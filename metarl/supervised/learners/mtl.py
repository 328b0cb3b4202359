"""Meta-transfer learning (Sun, Liu, Chua & Schiele, "Meta-Transfer Learning for Few-Shot Learning", CVPR 2019).

Two phases of one run:

1. **Pre-training** (the first ``pretrain_iterations`` meta-iterations): the backbone and a temporary classifier
   over *all* training classes learn ordinary classification on the images of the sampled episodes, labelled
   with their dataset classes (``EpisodeBatch.class_ids``). The temporary classifier is then discarded.
2. **Meta-transfer**: the backbone's weights are frozen; each convolution's filters get scaling and shifting
   (SS) parameters, one scale ``Phi_S1`` and one shift ``Phi_S2`` per filter, initialised to 1 and 0, and a
   ``ways``-way classifier whose initialisation is meta-learned. Per task, the classifier adapts on the
   frozen-but-scaled-and-shifted support features with ``inner_steps`` steps of :func:`metarl.core.adapt`
   (second order, through the classifier only); the query loss trains the SS parameters and the classifier's
   initialisation.

**Where SS applies.** The paper scales and shifts the convolution itself, ``W * Phi_S1`` and ``b + Phi_S2``. The
backbones here follow every convolution with a batch norm that uses the statistics of the batch it sees, and a
per-filter scale and shift of a convolution is normalised away by it (the gradient of a positive scale is zero
but for the ``eps`` of the normalisation). So when a batch norm follows the convolution (the one registered
right after it), SS scales and shifts that batch norm's output, ``gamma * Phi_S1`` and ``beta + Phi_S2``: the
same one-scale-one-shift per filter on the same frozen layer, placed where it changes the features. (The
reference code keeps its batch norms' own ``gamma`` and ``beta`` trainable in meta-transfer, which moves the same
place.) A convolution without a batch norm after it is scaled and shifted as in the paper (shifted only if it has
a bias).

Pre-training normalises each episode's images together, as the meta-transfer phase and evaluation do, so the
backbone is trained with the batch statistics it is used with.

The phase is a buffer of the learner (``pretrain_done``), so checkpoints resume in the right phase.

**Hard-task (HT) meta-batches** (``hard_tasks=True``; the paper's Algorithm 2): after each meta-transfer
meta-batch, the class with the lowest query accuracy of each task (ties: the highest query loss) is recorded,
``ways`` distinct classes are drawn from that record (topped up with random training classes when the record has
fewer), and a hard task of those classes, with freshly sampled images, joins the next meta-batch. The next
hard task's classes are a buffer of the learner and its choices come from a checkpointed generator, so a
resumed run repeats exactly. SS alone is ``hard_tasks=False``.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from metarl.core import adapt, functional_forward, stack_over_tasks
from metarl.errors import UserError
from metarl.supervised.data.episodes import EpisodeBatch, concat_batches
from metarl.supervised.learners.base import FewShotLearner
from metarl.supervised.learners.protonet import encode_tasks


class ClassTaskSource(Protocol):
    """A training-task source that can also build episodes of given dataset classes (``EpisodeSampler``)."""

    def sample_with_classes(self, classes: list[list[int]]) -> EpisodeBatch: ...


def worst_classes(logits: torch.Tensor, query_y: torch.Tensor, ways: int) -> torch.Tensor:
    """Label ``(tasks,)`` of each task's hardest class: lowest query accuracy, ties broken by the highest mean
    query cross-entropy (then the lowest label).

    Args:
        logits: query logits ``(tasks, N*Q, ways)``.
        query_y: query labels ``(tasks, N*Q)`` in ``0..ways-1``.
        ways: classes per task.
    """
    one_hot = F.one_hot(query_y, ways).to(logits.dtype)  # (tasks, N*Q, ways)
    counts = one_hot.sum(1).clamp_min(1)
    correct = (logits.argmax(-1) == query_y).to(logits.dtype)
    losses = F.cross_entropy(logits.flatten(0, 1), query_y.flatten(), reduction="none").view_as(correct)
    accuracy = torch.einsum("tn,tnw->tw", correct, one_hot) / counts
    loss = torch.einsum("tn,tnw->tw", losses, one_hot) / counts
    lowest = accuracy == accuracy.min(-1, keepdim=True).values
    return torch.where(lowest, loss, torch.full_like(loss, -torch.inf)).argmax(-1)


def scaled_and_shifted_tensors(encoder: nn.Module) -> tuple[list[str], list[str | None], list[int]]:
    """Per convolution of ``encoder``: the parameter SS scales, the one it shifts (``None``: none) and the
    number of filters. A batch norm registered right after the convolution, with as many channels, takes both
    (its ``weight`` and ``bias``); otherwise the convolution's own ``weight`` and ``bias`` (if any)."""
    scaled: list[str] = []
    shifted: list[str | None] = []
    filters: list[int] = []
    pending: tuple[str, nn.Conv2d] | None = None

    def own(name: str, conv: nn.Conv2d) -> None:
        scaled.append(f"{name}.weight")
        shifted.append(f"{name}.bias" if conv.bias is not None else None)
        filters.append(conv.out_channels)

    for name, module in encoder.named_modules():
        if isinstance(module, nn.Conv2d):
            if pending is not None:
                own(*pending)
            pending = (name, module)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and pending is not None:
            if module.affine and module.num_features == pending[1].out_channels:
                scaled.append(f"{name}.weight")
                shifted.append(f"{name}.bias")
                filters.append(module.num_features)
            else:
                own(*pending)
            pending = None
    if pending is not None:
        own(*pending)
    return scaled, shifted, filters


class MetaTransferLearner(FewShotLearner):
    """MTL with scaling-and-shifting of a pre-trained backbone (see the module docstring).

    Args:
        encoder: the backbone (e.g. ``Conv4`` without head), pre-trained in phase 1, frozen in phase 2.
        ways: classes of the meta-transfer classifier.
        pretrain_iterations: meta-iterations of all-class pre-training before meta-transfer (0: none).
        inner_lr: step size of the classifier's inner loop (the paper: 0.01 on miniImageNet).
        inner_steps: inner steps in meta-training; ``eval_inner_steps`` at evaluation (default the same).
        hard_tasks: add a hard task built from the previous meta-batch's worst classes to each meta-transfer
            meta-batch (SS+HT); the run passes the task source with :meth:`set_task_source`.
        hard_task_seed: seed of the generator that picks the hard task's classes.
    """

    def __init__(
        self,
        encoder: nn.Module,
        ways: int = 5,
        pretrain_iterations: int = 1000,
        inner_lr: float = 0.1,
        inner_steps: int = 10,
        eval_inner_steps: int | None = None,
        hard_tasks: bool = False,
        hard_task_seed: int = 0,
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
        self.scaled, shifted, filters = scaled_and_shifted_tensors(encoder)
        self.shifted = [name for name in shifted if name is not None]
        self.scales = nn.ParameterList([nn.Parameter(torch.ones(n)) for n in filters])
        self.shifts = nn.ParameterList(
            [nn.Parameter(torch.zeros(n)) for n, name in zip(filters, shifted, strict=True) if name]
        )
        self.classifier = nn.Linear(dim, ways)
        self.pretrain_head: nn.Linear | None = None
        self.ways = ways
        self.pretrain_iterations = int(pretrain_iterations)
        self.inner_lr = float(inner_lr)
        self.inner_steps = int(inner_steps)
        self.eval_inner_steps = int(inner_steps if eval_inner_steps is None else eval_inner_steps)
        self.register_buffer("pretrain_done", torch.zeros((), dtype=torch.long))
        self.hard_tasks = bool(hard_tasks)
        self.train_classes: int | None = None
        self.task_source: ClassTaskSource | None = None
        if self.hard_tasks:
            # The next hard task's dataset classes (-1: none yet); only in SS+HT runs, so SS checkpoints are as before.
            self.register_buffer("hard_task_classes", torch.full((ways,), -1, dtype=torch.long))
            self.hard_task_generator = torch.Generator().manual_seed(int(hard_task_seed))

    def generators(self) -> dict[str, torch.Generator]:
        """The hard-task class generator (SS+HT), saved in checkpoints for exact resumption."""
        return {"hard_tasks": self.hard_task_generator} if self.hard_tasks else {}

    def set_task_source(self, source: ClassTaskSource) -> None:
        """The training-task source that builds the hard tasks (the run calls this)."""
        self.task_source = source

    def set_train_classes(self, classes: int) -> None:
        """Build the all-class pre-training classifier for the ``classes`` training classes (the run calls this)."""
        self.train_classes = int(classes)
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
        support, query = encode_tasks(self.encoder, batch)  # each episode's batch statistics, as in phase 2
        labels = batch.class_ids.gather(1, torch.cat([batch.support_y, batch.query_y], 1))
        logits = self.pretrain_head(torch.cat([support, query], 1).flatten(0, 1))
        loss = F.cross_entropy(logits, labels.flatten())
        return loss, {"accuracy": float((logits.argmax(-1) == labels.flatten()).float().mean())}

    def train_step(self, batch: EpisodeBatch, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """A pre-training step while ``pretrain_done < pretrain_iterations``, else a meta-transfer step."""
        if not self.pretraining:
            if self.hard_tasks:
                return self.hard_task_step(batch, optimizer)
            return super().train_step(batch, optimizer)
        optimizer.zero_grad(set_to_none=True)
        loss, metrics = self.pretrain_loss(batch)
        loss.backward()
        optimizer.step()
        self.pretrain_done += 1
        return {"loss": float(loss.detach()), **metrics, "pretraining": 1.0}

    # -- phase 2 --------------------------------------------------------------------------------------------
    def scaled_and_shifted(self) -> dict[str, torch.Tensor]:
        """The frozen backbone's parameters with SS applied to every filter (see the module docstring):
        ``gamma * s`` and ``beta + t`` of the batch norm after a convolution, else ``W * s`` and ``b + t``."""
        params = {n: p.detach() for n, p in self.encoder.named_parameters()}
        for name, scale in zip(self.scaled, self.scales, strict=True):
            weight = params[name]
            params[name] = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
        for name, shift in zip(self.shifted, self.shifts, strict=True):
            params[name] = params[name] + shift
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

    # -- hard-task meta-batches --------------------------------------------------------------------------------
    def hard_task_step(self, batch: EpisodeBatch, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One SS+HT meta-update: ``batch`` plus the hard task of the previous meta-batch's worst classes."""
        if self.task_source is None or self.train_classes is None or batch.class_ids is None:
            raise UserError(
                "hard_tasks=true needs a dataset task source and its class count (set_task_source, "
                "set_train_classes) and batches with class_ids; the few-shot run provides them"
            )
        tasks = batch.num_tasks
        have_hard = bool((self.hard_task_classes >= 0).all())
        if have_hard:
            hard = self.task_source.sample_with_classes([self.hard_task_classes.tolist()])
            batch = concat_batches(batch, hard)
        optimizer.zero_grad(set_to_none=True)
        logits = self.adapted_logits(batch, self.inner_steps)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten())
        loss.backward()
        optimizer.step()
        correct = (logits.detach().argmax(-1) == batch.query_y).float()
        worst = worst_classes(logits.detach()[:tasks], batch.query_y[:tasks], batch.ways)
        self.record_hard_classes(batch.class_ids[:tasks].gather(1, worst[:, None]).squeeze(1))
        stats = {"loss": float(loss.detach()), "accuracy": float(correct[:tasks].mean())}
        if have_hard:
            stats["hard_task_accuracy"] = float(correct[tasks:].mean())
        return stats

    def record_hard_classes(self, failed: torch.Tensor) -> None:
        """Choose the next hard task's ``ways`` classes from the dataset classes ``failed`` (one per task).

        Distinct failed classes in random order, the first ``ways`` of them; when there are fewer, random other
        training classes fill the task.
        """
        distinct = torch.unique(failed)
        chosen = distinct[torch.randperm(len(distinct), generator=self.hard_task_generator)][: self.ways]
        if len(chosen) < self.ways:
            others = torch.ones(self.train_classes, dtype=torch.bool)
            others[chosen] = False
            pool = others.nonzero().squeeze(1)
            extra = pool[
                torch.randperm(len(pool), generator=self.hard_task_generator)[: self.ways - len(chosen)]
            ]
            chosen = torch.cat([chosen, extra])
        self.hard_task_classes.copy_(chosen)

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
