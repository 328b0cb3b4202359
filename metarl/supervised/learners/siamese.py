"""Siamese networks for one-shot image recognition (Koch, Zemel & Salakhutdinov, ICML DL workshop 2015).

A twin convnet embeds two images; the verification score is ``sigmoid(sum_j alpha_j |h1_j - h2_j| + b)``, the
probability that both show the same class, trained with binary cross-entropy on balanced same/different pairs
from the background classes. One-shot classification labels a query with the class of the support item it is
most likely to match.

Architecture, adapted from 105x105 to the 28x28 images used by every other few-shot learner here: Koch's twin
has four valid convs (64@10x10, 128@7x7, 128@4x4, 256@4x4, ReLU, max-pool after the first three) and a 4096-unit
sigmoid layer. At 28x28 the kernels shrink with the image (64@5x5, then 3x3 convs with padding 1) so that the
last map keeps 3x3 spatial cells, like Koch's 6x6 map relative to its input, and the sigmoid layer has 1024 units.
28x28 lets Siamese nets share the one uint8 Omniglot cache with the episodic learners and has 14x fewer pixels
per image: about 28M multiply-adds per image instead of Koch's 0.9G (32x fewer), which is what makes training
affordable on CPUs.
Koch's affine distortions (rotation, shear, scale, translation, each applied with probability 1/2) are available
as :class:`AffineDistortion`.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metarl.errors import UserError
from metarl.supervised.data.base import ClassIndexedDataset, to_float_tensor
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.base import FewShotLearner


class KochTwin(nn.Module):
    """Koch et al.'s twin convnet, scaled to ``image_size`` x ``image_size`` inputs (28 by default).

    Args:
        in_channels: image channels (1 for Omniglot).
        image_size: input height and width.
        hidden: units of the final sigmoid layer (4096 in the paper at 105x105).
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, hidden: int = 1024):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(128, 128, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(128, 256, 3, padding=1),
            nn.ReLU(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, image_size, image_size)).numel()
        self.embedding = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(B, hidden)`` in (0, 1) of images ``(B, C, H, W)``."""
        return self.embedding(self.features(x))

    embed = forward


class AffineDistortion:
    """Koch et al.'s random affine distortions, each component applied independently with probability 1/2.

    Args:
        rotation_degrees: rotation drawn from U[-r, r] degrees (paper: 10).
        shear: shear factors from U[-s, s] (paper: 0.3).
        scale: ``(low, high)`` scale factors (paper: 0.8 to 1.2).
        translation: shift as a fraction of the image side (paper: 2 px of 105; 0.02).
        seed: seed of the generator the distortions are drawn from.
    """

    def __init__(
        self,
        rotation_degrees: float = 10.0,
        shear: float = 0.3,
        scale: tuple[float, float] = (0.8, 1.2),
        translation: float = 0.02,
        seed: int = 0,
    ):
        self.rotation = math.radians(rotation_degrees)
        self.shear = shear
        self.scale = scale
        self.translation = translation
        self.generator = torch.Generator().manual_seed(seed)

    def _draw(self, n: int, low: float, high: float, neutral: float) -> torch.Tensor:
        values = low + (high - low) * torch.rand(n, generator=self.generator)
        keep = torch.rand(n, generator=self.generator) < 0.5
        return torch.where(keep, values, torch.full_like(values, neutral))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """A distorted copy of ``images`` ``(B, C, H, W)`` (background 0 stays 0: zeros are padded in)."""
        n = images.shape[0]
        angle = self._draw(n, -self.rotation, self.rotation, 0.0)
        shear_x = self._draw(n, -self.shear, self.shear, 0.0)
        shear_y = self._draw(n, -self.shear, self.shear, 0.0)
        scale_x = self._draw(n, *self.scale, 1.0)
        scale_y = self._draw(n, *self.scale, 1.0)
        # affine_grid works in [-1, 1] coordinates: a fraction f of the side is a shift of 2f.
        shift_x = self._draw(n, -2 * self.translation, 2 * self.translation, 0.0)
        shift_y = self._draw(n, -2 * self.translation, 2 * self.translation, 0.0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        shearing = torch.stack(
            [torch.stack([torch.ones(n), shear_x], -1), torch.stack([shear_y, torch.ones(n)], -1)], -2
        )
        scaling = torch.diag_embed(torch.stack([scale_x, scale_y], -1))
        # The grid maps output to input coordinates, so the inverse of the forward transform is used.
        linear = torch.linalg.inv(rotation @ shearing @ scaling)
        theta = torch.cat([linear, -(linear @ torch.stack([shift_x, shift_y], -1).unsqueeze(-1))], dim=-1)
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


class VerificationPairSampler:
    """Balanced same/different image pairs from a class-indexed dataset (Koch et al.'s verification task).

    Each batch holds exactly ``pairs_per_batch / 2`` same-class pairs (a class drawn uniformly, then two distinct
    drawings of it) and as many different-class pairs (two distinct classes, one drawing each), shuffled.

    Args:
        dataset: the background classes (e.g. ``Omniglot(root, "background", split_scheme="lake")``).
        pairs_per_batch: an even number of pairs per batch.
        seed: seed of the sampler's ``numpy`` generator.
    """

    def __init__(self, dataset: ClassIndexedDataset, pairs_per_batch: int = 128, seed: int = 0):
        if pairs_per_batch < 2 or pairs_per_batch % 2:
            raise UserError(
                f"pairs_per_batch must be an even number >= 2 (half same, half different), got {pairs_per_batch}"
            )
        if dataset.num_classes < 2 or int(dataset.class_sizes.max()) < 2:
            raise UserError(
                "verification pairs need at least 2 classes and a class with 2 samples; "
                f"got {dataset.num_classes} classes with at most {int(dataset.class_sizes.max())} samples"
            )
        self.dataset = dataset
        self.pairs_per_batch = pairs_per_batch
        self.rng = np.random.default_rng(seed)
        self._offsets = dataset.class_offsets[:-1]
        self._pairable = np.flatnonzero(dataset.class_sizes >= 2)

    def sample_indices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(left, right, same)``: sample indices into ``dataset.images`` and the 0/1 same-class flags."""
        half, rng, sizes = self.pairs_per_batch // 2, self.rng, self.dataset.class_sizes
        same_classes = rng.choice(self._pairable, half)
        first = rng.integers(0, sizes[same_classes])
        # A different drawing of the same class: shift by 1..size-1 around the class.
        second = (first + rng.integers(1, sizes[same_classes])) % sizes[same_classes]
        left_classes = rng.integers(0, self.dataset.num_classes, half)
        right_classes = (
            left_classes + rng.integers(1, self.dataset.num_classes, half)
        ) % self.dataset.num_classes
        left = np.concatenate(
            [
                self._offsets[same_classes] + first,
                self._offsets[left_classes] + rng.integers(0, sizes[left_classes]),
            ]
        )
        right = np.concatenate(
            [
                self._offsets[same_classes] + second,
                self._offsets[right_classes] + rng.integers(0, sizes[right_classes]),
            ]
        )
        same = np.concatenate([np.ones(half), np.zeros(half)])
        order = rng.permutation(self.pairs_per_batch)
        return left[order], right[order], same[order]

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch: ``left`` and ``right`` images ``(pairs, C, H, W)`` in [0, 1] and ``same`` ``(pairs,)`` float."""
        left, right, same = self.sample_indices()
        images = self.dataset.images
        return to_float_tensor(images[left]), to_float_tensor(images[right]), torch.from_numpy(same).float()


class SiameseNetwork(FewShotLearner):
    """Pair verification by a twin network; one-shot classification by the best-matching support item.

    Args:
        backbone: the run's backbone network (e.g. ``Conv4``). With ``twin="koch"`` it only tells the image
            channels and size (its ``in_channels`` / ``image_size`` attributes; 1 and 28 if absent) and a
            :class:`KochTwin` of that size is built instead; with ``twin="backbone"`` it is the twin itself.
        twin: ``"koch"`` (Koch et al.'s architecture, the default) or ``"backbone"``.
        embedding_dim: hidden units of the Koch twin, or the backbone's output size with ``twin="backbone"``
            (default: its ``embedding_dim`` attribute).
        distort: apply Koch's random affine distortions to every training image (:class:`AffineDistortion`).
        distortion_seed: seed of the distortions' generator.
    """

    def __init__(
        self,
        backbone: nn.Module | None = None,
        twin: Literal["koch", "backbone"] = "koch",
        embedding_dim: int | None = None,
        distort: bool = False,
        distortion_seed: int = 0,
    ):
        super().__init__()
        if twin == "koch":
            in_channels = getattr(backbone, "in_channels", 1)
            image_size = getattr(backbone, "image_size", 28)
            embedding_dim = embedding_dim or 1024
            self.twin: nn.Module = KochTwin(in_channels, image_size, hidden=embedding_dim)
        elif twin == "backbone":
            if backbone is None:
                raise UserError("twin='backbone' needs a backbone network")
            embedding_dim = embedding_dim or getattr(backbone, "embedding_dim", None)
            if not embedding_dim:
                raise UserError("twin='backbone' needs embedding_dim (the backbone's output size)")
            self.twin = backbone
        else:
            raise UserError(f"twin must be 'koch' or 'backbone', got {twin!r}")
        self.distance_weights = nn.Linear(embedding_dim, 1)
        self.distortion = AffineDistortion(seed=distortion_seed) if distort else None

    def generators(self) -> dict[str, torch.Generator]:
        """Random generators whose state a checkpoint must keep (the distortions'), for exact resumption."""
        return {"distortion": self.distortion.generator} if self.distortion is not None else {}

    def pair_logits_from_embeddings(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Same-class logits of embedding pairs broadcast over leading dimensions: ``alpha . |l - r| + b``."""
        return self.distance_weights((left - right).abs()).squeeze(-1)

    def verification_logits(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Same-class logits ``(B,)`` of image pairs ``left[i]``, ``right[i]`` (sigmoid = probability)."""
        embeddings = self.twin(torch.cat([left, right]))
        return self.pair_logits_from_embeddings(embeddings[: len(left)], embeddings[len(left) :])

    def pair_loss(self, left: torch.Tensor, right: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of the verification scores against ``same`` (1 = same class)."""
        if self.training and self.distortion is not None:
            left, right = self.distortion(left), self.distortion(right)
        return F.binary_cross_entropy_with_logits(self.verification_logits(left, right), same.to(left.dtype))

    def support_scores(self, batch: EpisodeBatch) -> torch.Tensor:
        """Verification logits ``(tasks, N*Q, N*K)`` of every query against every support item."""
        n_support = batch.support_x.shape[1]
        images = torch.cat([batch.support_x, batch.query_x], dim=1)
        embeddings = self.twin(images.flatten(0, 1)).unflatten(0, images.shape[:2])
        support, query = embeddings[:, :n_support], embeddings[:, n_support:]
        return self.pair_logits_from_embeddings(query.unsqueeze(2), support.unsqueeze(1))

    def pair_scores(self, batch: EpisodeBatch) -> torch.Tensor:
        """Verification scores ``(tasks, N*Q, N*K)`` of (query, support item) pairs: the same-class logits."""
        return self.support_scores(batch)

    def predict(self, batch: EpisodeBatch) -> torch.Tensor:
        """Per-class logits ``(tasks, N*Q, ways)``: the best verification score among the class's support items."""
        scores = self.support_scores(batch)
        one_hot = F.one_hot(batch.support_y, batch.ways).bool().unsqueeze(1)  # (tasks, 1, N*K, ways)
        masked = scores.unsqueeze(-1).masked_fill(~one_hot, float("-inf"))
        return masked.amax(dim=2)

    def meta_loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Class-balanced pair BCE over all (query, support) pairs of the episodes.

        Same-class and different-class pairs each carry half of the weight, so an episode of N ways counts as
        a balanced verification batch; 2-way 1-shot 1-query episodes are exactly Koch's balanced random pairs.
        """
        if self.training and self.distortion is not None:
            batch = EpisodeBatch(
                self.distortion(batch.support_x.flatten(0, 1)).view_as(batch.support_x),
                batch.support_y,
                self.distortion(batch.query_x.flatten(0, 1)).view_as(batch.query_x),
                batch.query_y,
                batch.ways,
                batch.shots,
                batch.queries,
            )
        scores = self.support_scores(batch)
        same = (batch.query_y.unsqueeze(2) == batch.support_y.unsqueeze(1)).to(scores.dtype)
        weights = torch.where(same.bool(), 0.5 / same.sum(), 0.5 / (1 - same).sum())
        loss = F.binary_cross_entropy_with_logits(scores, same, weight=weights, reduction="sum")
        predictions = self.predict_from_scores(scores, batch)
        return loss, {"accuracy": float((predictions == batch.query_y).float().mean())}

    @staticmethod
    def predict_from_scores(scores: torch.Tensor, batch: EpisodeBatch) -> torch.Tensor:
        """Class of the best-matching support item for each query: ``(tasks, N*Q)``."""
        best = scores.argmax(dim=2)
        return torch.gather(batch.support_y, 1, best)
