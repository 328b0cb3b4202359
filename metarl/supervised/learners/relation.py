"""Relation Network (Sung, Yang, Zhang, Xiang, Torr & Hospedales, CVPR 2018).

Instead of a fixed distance, a learned relation module scores each (query, class) pair: the query's feature map
is concatenated along the channels with the class's feature map (the sum of its support feature maps when there
are several shots), and two conv blocks plus a two-layer MLP map it to a relation score in [0, 1]. Training
regresses the scores onto one-hot targets with the mean squared error.

The relation module needs the encoder's spatial feature MAP, not a flat embedding. Sung et al.'s encoder is a
Conv4 whose last two blocks do not pool, so that the map keeps some spatial extent (28x28 -> 64x7x7 with
padded convolutions, 84x84 -> 64x21x21). :func:`conv_feature_map` computes that map from the run's ``Conv4``
(``pooled_blocks=2``) by skipping the trailing max-pool of the later blocks; an encoder with its own
``feature_map(x)`` method is used as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from metarl.errors import UserError
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.base import FewShotLearner
from metarl.supervised.learners.protonet import encode_tasks, prefer_channels_last


def conv_feature_map(encoder: nn.Module, x: torch.Tensor, pooled_blocks: int) -> torch.Tensor:
    """Feature map of a block-structured conv encoder (``encoder.features``: blocks ending in ``MaxPool2d``).

    The first ``pooled_blocks`` blocks run whole; later blocks run without their final max-pool.
    """
    blocks = getattr(encoder, "features", None)
    if not isinstance(blocks, nn.Sequential) or not all(isinstance(b, nn.Sequential) for b in blocks):
        raise UserError(
            "the relation network needs a Conv4-like encoder (an nn.Sequential `features` of conv blocks) or an "
            f"encoder with a feature_map(x) method; got {type(encoder).__name__}"
        )
    for index, block in enumerate(blocks):
        if index >= pooled_blocks and isinstance(block[-1], nn.MaxPool2d):
            block = block[:-1]
        x = block(x)
    return x


def spatial_features(encoder: nn.Module, pooled_blocks: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The encoder's feature-map function: its ``feature_map`` method if it has one, else :func:`conv_feature_map`."""
    feature_map = getattr(encoder, "feature_map", None)
    if callable(feature_map):
        return feature_map
    return lambda x: conv_feature_map(encoder, x, pooled_blocks)


class RelationModule(nn.Module):
    """``g_phi``: two conv blocks (64 filters, 3x3, batch norm, ReLU, 2x2 max-pool) then FC-hidden-ReLU-FC-sigmoid.

    Args:
        feature_shape: ``(C, h, w)`` of one encoder feature map; the module's input has ``2*C`` channels.
        channels: filters of the two conv blocks.
        hidden: width of the hidden fully connected layer (8 in the paper).
    """

    def __init__(self, feature_shape: tuple[int, int, int], channels: int = 64, hidden: int = 8):
        super().__init__()
        in_channels, height, width = feature_shape
        blocks: list[nn.Module] = []
        c = 2 * in_channels
        for _ in range(2):
            # ceil_mode keeps a 1x1 map from Sung's 5x5 Omniglot features (5 -> 3 -> 2 -> 1).
            blocks += [
                nn.Conv2d(c, channels, 3, padding=1),
                nn.BatchNorm2d(channels, track_running_stats=False),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            c = channels
        self.convs = nn.Sequential(*blocks)
        with torch.no_grad():
            flat = self.convs(torch.zeros(2, 2 * in_channels, height, width)).flatten(1).shape[1]
        self.head = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self._init_like_sung()

    def _init_like_sung(self) -> None:
        """The reference initialisation: He-normal convs; linear weights N(0, 0.01) with biases 1.

        The unit biases keep the 8 hidden ReLUs active at the start; with PyTorch's default initialisation the
        MSE loss (whose trivial optimum is the constant 1/N) quickly kills all of them and the scores collapse
        to a constant.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.ones_(module.bias)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """Relation scores in [0, 1], shape ``(B,)``, of concatenated feature maps ``(B, 2C, h, w)``."""
        return torch.sigmoid(self.head(self.convs(pairs).flatten(1))).squeeze(-1)


class RelationNetwork(FewShotLearner):
    """Relation Network: learned relation scores between query and class feature maps, trained with MSE.

    Args:
        encoder: a Conv4-like encoder (``features`` = conv blocks) or one with a ``feature_map(x)`` method.
        pooled_blocks: blocks of a Conv4-like encoder that keep their max-pool (2 in the paper).
        feature_shape: ``(C, h, w)`` of the encoder's feature map; by default measured on a blank image of the
            encoder's ``in_channels`` x ``image_size`` x ``image_size`` (attributes of ``Conv4``).
        relation_channels: filters of the relation module's conv blocks.
        relation_hidden: width of its hidden fully connected layer.
    """

    def __init__(
        self,
        encoder: nn.Module,
        pooled_blocks: int = 2,
        feature_shape: tuple[int, int, int] | list[int] | None = None,
        relation_channels: int = 64,
        relation_hidden: int = 8,
    ):
        super().__init__()
        if pooled_blocks < 0:
            raise UserError(f"pooled_blocks must be >= 0, got {pooled_blocks}")
        self.encoder = encoder
        self.pooled_blocks = pooled_blocks
        if feature_shape is None:
            feature_shape = self._measure_feature_shape()
        if len(feature_shape) != 3 or min(feature_shape) < 1:
            raise UserError(f"feature_shape must be (channels, height, width), got {feature_shape!r}")
        self.feature_shape = tuple(int(n) for n in feature_shape)
        self.relation = RelationModule(self.feature_shape, relation_channels, relation_hidden)
        prefer_channels_last(self)

    def _measure_feature_shape(self) -> tuple[int, int, int]:
        in_channels, image_size = (
            getattr(self.encoder, "in_channels", None),
            getattr(self.encoder, "image_size", None),
        )
        if in_channels is None or image_size is None:
            raise UserError(
                "feature_shape is needed: the encoder has no in_channels/image_size attributes to measure it from"
            )
        with torch.no_grad():
            blank = torch.zeros(2, in_channels, image_size, image_size)
            return tuple(spatial_features(self.encoder, self.pooled_blocks)(blank).shape[1:])

    def relation_scores(self, batch: EpisodeBatch) -> torch.Tensor:
        """Relation scores ``(tasks, N*Q, ways)`` in [0, 1] between every query and every class."""
        support, query = encode_tasks(spatial_features(self.encoder, self.pooled_blocks), batch)
        if tuple(support.shape[2:]) != self.feature_shape:
            raise UserError(
                f"the encoder's feature maps are {tuple(support.shape[2:])} but the relation module was built for "
                f"{self.feature_shape}; set feature_shape to the encoder's output for this image size"
            )
        ways = batch.ways
        one_hot = F.one_hot(batch.support_y, ways).to(support.dtype)
        # Sum (not mean) of the support maps of each class, as in the paper's K-shot setting.
        class_maps = torch.einsum("tsw,tsd->twd", one_hot, support.flatten(2)).reshape(
            support.shape[0], ways, *self.feature_shape
        )
        tasks, n_query = query.shape[:2]
        pairs = torch.cat(
            [
                class_maps.unsqueeze(1).expand(tasks, n_query, *class_maps.shape[1:]),
                query.unsqueeze(2).expand(tasks, n_query, ways, *query.shape[2:]),
            ],
            dim=3,
        )  # (tasks, N*Q, ways, 2C, h, w)
        # One relation-module pass per task keeps its batch-norm statistics within the episode.
        scores = [self.relation(pairs[t].flatten(0, 1)).view(n_query, ways) for t in range(tasks)]
        return torch.stack(scores)

    def predict(self, batch: EpisodeBatch) -> torch.Tensor:
        """The relation scores themselves: the highest score is the predicted class."""
        return self.relation_scores(batch)

    def meta_loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        scores = self.relation_scores(batch)
        targets = F.one_hot(batch.query_y, batch.ways).to(scores.dtype)
        loss = F.mse_loss(scores, targets)
        accuracy = (scores.argmax(-1) == batch.query_y).float().mean()
        return loss, {"accuracy": float(accuracy)}
