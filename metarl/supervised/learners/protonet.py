"""Prototypical Networks (Snell, Swersky & Zemel, NeurIPS 2017).

Each class is represented by the mean of its support embeddings (its prototype); a query is classified by a
softmax over negative squared Euclidean distances to the prototypes. Training minimises the query cross-entropy
of whole episodes, so there is no inner loop: the encoder is the only meta-parameter.

Paper protocol (Omniglot, 28x28, Conv4): train with 60 classes per episode, as many shots as at test time and
5 queries per class, Adam at 1e-3 halved every 2000 episodes; test on 5-way and 20-way episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from metarl.errors import UserError
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.base import FewShotLearner

Distance = Literal["squared_euclidean", "cosine"]


def encode_tasks(
    encode: Callable[[torch.Tensor], torch.Tensor], batch: EpisodeBatch
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed the support and query sets of every task, one forward pass per task.

    Support and query images of a task go through ``encode`` together, so an encoder with batch norm in
    per-batch mode (no running statistics) normalises with the statistics of that one episode, as in the
    reference implementation, and never mixes statistics of different tasks.

    Args:
        encode: maps images ``(B, C, H, W)`` to features ``(B, ...)`` (flat embeddings or feature maps).
        batch: the episodes.

    Returns:
        ``(support, query)`` shaped ``(tasks, N*K, ...)`` and ``(tasks, N*Q, ...)``.
    """
    n_support = batch.support_x.shape[1]
    support, query = [], []
    for task in range(batch.num_tasks):
        images = torch.cat([batch.support_x[task], batch.query_x[task]], dim=0)
        if images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        features = encode(images)
        support.append(features[:n_support])
        query.append(features[n_support:])
    return torch.stack(support), torch.stack(query)


def class_means(support: torch.Tensor, support_y: torch.Tensor, ways: int) -> torch.Tensor:
    """Per-class mean of support features: ``(tasks, N*K, ...)`` -> ``(tasks, ways, ...)``.

    Works for any label order (labels need not be grouped), as long as every class 0..ways-1 has support items.
    """
    one_hot = F.one_hot(support_y, ways).to(support.dtype)  # (tasks, N*K, ways)
    counts = one_hot.sum(1)  # (tasks, ways)
    if bool((counts == 0).any()):
        raise UserError(
            f"every class 0..{ways - 1} needs at least one support example; got counts {counts.tolist()}"
        )
    flat = support.flatten(2)
    sums = torch.einsum("tsw,tsd->twd", one_hot, flat)
    return (sums / counts.unsqueeze(-1)).reshape(support.shape[0], ways, *support.shape[2:])


def squared_euclidean(query: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Squared distances ``(tasks, Q, P)`` between ``query`` ``(tasks, Q, D)`` and ``prototypes`` ``(tasks, P, D)``."""
    # ||q - p||^2 expanded as ||q||^2 - 2 q.p + ||p||^2 would be cheaper but loses precision for nearby points.
    return (query.unsqueeze(2) - prototypes.unsqueeze(1)).pow(2).sum(-1)


def prefer_channels_last(module: nn.Module) -> nn.Module:
    """Store ``module``'s 4-D parameters in channels_last memory format (same values, in place).

    On CPU, max-pooling and batch norm run several times faster in that layout and convolutions as fast, so the
    metric learners keep their networks that way and :func:`encode_tasks` feeds images that way
    (``BENCHMARKS.md``).
    """
    return module.to(memory_format=torch.channels_last)


def flat_embedding(encoder: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The encoder's flat embedding function: its ``embed`` method when it has one, else its output flattened."""
    embed = getattr(encoder, "embed", None)
    if callable(embed):
        return embed
    return lambda x: encoder(x).flatten(1)


class PrototypicalNetwork(FewShotLearner):
    """Prototypical Networks: logits are negative squared distances to class-mean embeddings.

    Args:
        encoder: the embedding network (e.g. ``Conv4``); its ``embed`` method is used when it has one,
            otherwise its forward output, flattened.
        distance: ``"squared_euclidean"`` (the paper's choice, a linear classifier in embedding space) or
            ``"cosine"`` (the ablation in the paper's table 1, scaled by ``cosine_scale``).
        cosine_scale: multiplier of cosine similarities, which otherwise give too flat a softmax.
    """

    def __init__(
        self, encoder: nn.Module, distance: Distance = "squared_euclidean", cosine_scale: float = 10.0
    ):
        super().__init__()
        if distance not in ("squared_euclidean", "cosine"):
            raise UserError(f"distance must be 'squared_euclidean' or 'cosine', got {distance!r}")
        self.encoder = prefer_channels_last(encoder)
        self.backward_chunk = 8  # episodes per backward pass: faster than one pass over 32 (BENCHMARKS.md)
        self.distance = distance
        self.cosine_scale = cosine_scale

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flat embeddings ``(B, D)`` of images ``(B, C, H, W)``."""
        return flat_embedding(self.encoder)(x)

    def logits_from_embeddings(
        self, support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor, ways: int
    ) -> torch.Tensor:
        """Query logits ``(tasks, N*Q, ways)`` from support and query embeddings ``(tasks, n, D)``."""
        prototypes = class_means(support, support_y, ways)
        if self.distance == "cosine":
            return self.cosine_scale * F.cosine_similarity(
                query.unsqueeze(2), prototypes.unsqueeze(1), dim=-1
            )
        return -squared_euclidean(query, prototypes)

    def pair_scores(self, batch: EpisodeBatch) -> torch.Tensor:
        """Verification scores ``(tasks, N*Q, N*K)`` of (query, support item) pairs: the negative squared
        distance of their embeddings (cosine similarity with ``distance="cosine"``), as the classifier uses."""
        support, query = encode_tasks(self.embed, batch)
        if self.distance == "cosine":
            return F.cosine_similarity(query.unsqueeze(2), support.unsqueeze(1), dim=-1)
        return -squared_euclidean(query, support)

    def predict(self, batch: EpisodeBatch) -> torch.Tensor:
        support, query = encode_tasks(self.embed, batch)
        return self.logits_from_embeddings(support, batch.support_y, query, batch.ways)

    def meta_loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.predict(batch)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten())
        accuracy = (logits.argmax(-1) == batch.query_y).float().mean()
        return loss, {"accuracy": float(accuracy)}
