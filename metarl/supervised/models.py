"""Backbones of the few-shot literature: the Conv4 image encoder, ResNet-12 and the sinusoid MLP.

All are ordinary ``nn.Module``s whose parameters are the meta-parameters; gradient learners run them through
:func:`metarl.core.functional_forward` with adapted parameter dicts, so they never mutate them in place.
Batch norm keeps no running statistics (``track_running_stats=False``): every forward pass normalises with the
statistics of the batch it sees (one task's support or query set), as in MAML, so an adapted copy of the
parameters is all the state a task needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from metarl.errors import UserError
from metarl.supervised.batch_norm import batch_norm_batch_stats
from metarl.supervised.max_pool import max_pool_2x2

Downsample = Literal["maxpool", "stride"]

TASK_CHUNK_BYTES = 8 * 2**20
"""Size of the first activation map of one chunk of tasks in :meth:`Conv4.forward_tasks` (about a CPU's L2/L3
share per core; measured on 5-way 1-shot Omniglot batches: chunks of 8 tasks beat 2, 4, 16 and 32)."""


def conv_block(in_channels: int, out_channels: int, downsample: Downsample = "maxpool") -> nn.Sequential:
    """3x3 convolution (padding 1), batch norm with per-batch statistics, ReLU, then halve the resolution.

    ``downsample="maxpool"``: a 2x2 max-pool after the ReLU (Vinyals et al., Snell et al., MAML on miniImageNet).
    ``downsample="stride"``: the convolution itself has stride 2 and there is no pooling (MAML on Omniglot);
    about four times fewer multiply-adds, since every convolution runs at its output resolution.
    """
    if downsample == "maxpool":
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels, track_running_stats=False),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
    if downsample == "stride":
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(out_channels, track_running_stats=False),
            nn.ReLU(),
        )
    raise UserError(f"downsample must be 'maxpool' or 'stride', got {downsample!r}")


def conv4_feature_dim(
    image_size: int, hidden: int = 64, blocks: int = 4, downsample: Downsample = "maxpool"
) -> int:
    """Length of the Conv4 embedding.

    Max-pool blocks floor the side at each halving and the final map is flattened: 28x28 -> 64, 84x84 -> 1600
    (64 filters). Strided blocks round up (``ceil(side / 2)``) and the final map is averaged over space, as in
    the MAML Omniglot network, so the embedding has ``hidden`` entries.
    """
    side = image_size
    for _ in range(blocks):
        side = side // 2 if downsample == "maxpool" else (side + 1) // 2
    if side < 1:
        raise UserError(f"images of side {image_size} are too small for {blocks} max-pool blocks")
    return hidden * side * side if downsample == "maxpool" else hidden


class Conv4(nn.Module):
    """The four-block convolutional network of Vinyals et al. / Snell et al. / Finn et al.

    Each block is ``conv3x3(hidden) -> BatchNorm (no running stats) -> ReLU -> maxpool2x2``. A 28x28 image gives a
    64-dim embedding, an 84x84 image a 1600-dim one (64 filters). ``downsample="stride"`` gives the MAML Omniglot
    variant (stride-2 convolutions, no pooling, spatial mean of the last map: a ``hidden``-dim embedding). With ``ways`` set, a linear head maps the
    embedding to ``ways`` logits (the gradient learners' classifier); without it the forward pass returns the
    embedding (the metric learners' encoder).

    Args:
        in_channels: 1 (Omniglot) or 3 (miniImageNet).
        image_size: side of the square input, used to size the head (28 or 84 in the papers).
        ways: number of output logits; ``None`` for an embedding network without head.
        hidden: filters per convolution (64; MAML used 32 on miniImageNet).
        blocks: number of conv blocks (4).
        downsample: "maxpool" (default) or "stride" (see :func:`conv_block`).
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        ways: int | None = None,
        hidden: int = 64,
        blocks: int = 4,
        downsample: Downsample = "maxpool",
    ) -> None:
        super().__init__()
        if in_channels < 1 or hidden < 1 or blocks < 1:
            raise UserError(
                f"in_channels, hidden and blocks must be >= 1, got {in_channels}, {hidden}, {blocks}"
            )
        if ways is not None and ways < 1:
            raise UserError(f"ways must be >= 1 or None, got {ways}")
        self.in_channels, self.image_size, self.ways = in_channels, image_size, ways
        self.downsample = downsample
        self.embedding_dim = conv4_feature_dim(image_size, hidden, blocks, downsample)
        channels = [in_channels] + [hidden] * blocks
        self.features = nn.Sequential(
            *(
                conv_block(c_in, c_out, downsample)
                for c_in, c_out in zip(channels[:-1], channels[1:], strict=True)
            )
        )
        self.head = nn.Linear(self.embedding_dim, ways) if ways is not None else None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flat embeddings ``(B, embedding_dim)`` of images ``(B, C, H, W)``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise UserError(
                f"Conv4 expects images shaped (batch, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        h = x
        for block in self.features:
            h = block[1](block[0](h))  # convolution, batch norm
            if self.downsample == "maxpool":  # pooling commutes with ReLU: rectify four times fewer entries
                h = F.max_pool2d(h, 2)
            h = F.relu(h)
        return h.flatten(1) if self.downsample == "maxpool" else h.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, ways)`` with a head, else embeddings ``(B, embedding_dim)``."""
        z = self.embed(x)
        return self.head(z) if self.head is not None else z

    def forward_tasks(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Outputs ``(tasks, n, ...)`` of every task's images ``(tasks, n, C, H, W)`` under its own parameters.

        ``params`` holds each parameter stacked per task, ``(tasks, *shape)``, keyed as in ``named_parameters``.
        The tasks run side by side as channel groups of one batch: ``(n, tasks * C, H, W)`` through grouped
        convolutions, batch norm over ``tasks * C`` channels (each task's channels see only that task's
        statistics, as in a per-task forward), pooling and ReLU, which act on each channel alone. Batch norm uses
        :func:`~metarl.supervised.batch_norm.batch_norm_batch_stats`, whose second derivative is cheap, and
        pooling :func:`~metarl.supervised.max_pool.max_pool_2x2`. The numbers equal ``torch.func.vmap`` of the
        per-task forward; what MAML's meta-batch runs on.

        Tasks go through in chunks whose first activation map takes about ``TASK_CHUNK_BYTES`` (cache blocking:
        the elementwise passes of batch norm, pooling and their derivatives run on cache-sized tensors).
        """
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise UserError(
                f"Conv4.forward_tasks expects images shaped (tasks, n, {self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        tasks, n = x.shape[:2]
        first_map_bytes = n * self.features[0][0].out_channels * x.shape[-2] * x.shape[-1] * x.element_size()
        chunk = max(1, TASK_CHUNK_BYTES // first_map_bytes)
        if chunk >= tasks:
            return self._forward_task_group(params, x)
        return torch.cat(
            [
                self._forward_task_group(
                    {k: p[start : start + chunk] for k, p in params.items()}, x[start : start + chunk]
                )
                for start in range(0, tasks, chunk)
            ]
        )

    def _forward_task_group(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_tasks` for one chunk of tasks: the tasks as channel groups of one batch."""
        tasks, n = x.shape[:2]
        h = x.transpose(0, 1).reshape(n, tasks * self.in_channels, *x.shape[3:])
        for i, block in enumerate(self.features):
            conv = block[0]
            weight = params[f"features.{i}.0.weight"]
            h = F.conv2d(
                h,
                weight.reshape(-1, *weight.shape[2:]),
                params[f"features.{i}.0.bias"].reshape(-1),
                stride=conv.stride,
                padding=conv.padding,
                groups=tasks,
            )
            h = batch_norm_batch_stats(
                h,
                params[f"features.{i}.1.weight"].reshape(-1),
                params[f"features.{i}.1.bias"].reshape(-1),
                block[1].eps,
            )
            # Max-pooling commutes with ReLU: pooling first rectifies four times fewer entries.
            if self.downsample == "maxpool":
                h = max_pool_2x2(h)
            h = F.relu(h)
        maps = h.view(n, tasks, -1, *h.shape[2:])
        z = maps.flatten(2) if self.downsample == "maxpool" else maps.mean((3, 4))
        z = z.transpose(0, 1)
        if self.head is None:
            return z
        return torch.baddbmm(params["head.bias"].unsqueeze(1), z, params["head.weight"].transpose(1, 2))

    @property
    def head_names(self) -> list[str]:
        """Names of the head's parameters (what ANIL adapts)."""
        return [f"head.{n}" for n, _ in self.head.named_parameters()] if self.head is not None else []


class ResidualBlock(nn.Module):
    """One ResNet-12 block: three ``conv3x3 -> BatchNorm`` layers with leaky ReLUs between, a ``conv1x1 ->
    BatchNorm`` shortcut added to the third, a leaky ReLU, then a 2x2 max-pool (convolutions without bias: each
    feeds a batch norm)."""

    def __init__(self, in_channels: int, out_channels: int, slope: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels, track_running_stats=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, track_running_stats=False)
        self.conv3 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, track_running_stats=False)
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, track_running_stats=False),
        )
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.bn1(self.conv1(x)), self.slope)
        h = F.leaky_relu(self.bn2(self.conv2(h)), self.slope)
        h = self.bn3(self.conv3(h))
        return F.max_pool2d(F.leaky_relu(h + self.shortcut(x), self.slope), 2)


class ResNet12(nn.Module):
    """ResNet-12, the backbone of meta-transfer learning (Sun et al. 2019), TADAM and MetaOptNet.

    Four :class:`ResidualBlock` s of ``widths`` filters (64-160-320-640 in MetaOptNet, 64-128-256-512 in TADAM),
    each halving the resolution, then the spatial mean: an 84x84 image gives a ``widths[-1]``-dim embedding.
    Batch norm uses per-batch statistics, as in :class:`Conv4`. With ``ways`` set, a linear head maps the
    embedding to ``ways`` logits; without it the forward pass returns the embedding.

    Args:
        in_channels: 3 (miniImageNet) or 1 (Omniglot).
        ways: number of output logits; ``None`` for an embedding network without head.
        widths: filters of the four blocks.
    """

    def __init__(
        self, in_channels: int = 3, ways: int | None = None, widths: Sequence[int] = (64, 160, 320, 640)
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if in_channels < 1 or len(widths) != 4 or min(widths) < 1:
            raise UserError(
                f"ResNet-12 needs in_channels >= 1 and four block widths >= 1, got {in_channels} and {list(widths)}"
            )
        if ways is not None and ways < 1:
            raise UserError(f"ways must be >= 1 or None, got {ways}")
        self.in_channels, self.ways = in_channels, ways
        self.embedding_dim = widths[-1]
        channels = (in_channels, *widths)
        self.features = nn.Sequential(
            *(ResidualBlock(c_in, c_out) for c_in, c_out in zip(channels[:-1], channels[1:], strict=True))
        )
        self.head = nn.Linear(self.embedding_dim, ways) if ways is not None else None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(B, widths[-1])`` of images ``(B, C, H, W)`` (at least 16x16: four halvings)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels or min(x.shape[-2:]) < 16:
            raise UserError(
                f"ResNet-12 expects images shaped (batch, {self.in_channels}, H, W) with H, W >= 16, "
                f"got {tuple(x.shape)}"
            )
        return self.features(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, ways)`` with a head, else embeddings ``(B, embedding_dim)``."""
        z = self.embed(x)
        return self.head(z) if self.head is not None else z

    @property
    def head_names(self) -> list[str]:
        """Names of the head's parameters (what ANIL adapts)."""
        return [f"head.{n}" for n, _ in self.head.named_parameters()] if self.head is not None else []


class MLP(nn.Module):
    """A fully connected ReLU network, ``[in] -> hidden... -> [out]`` (the MAML sinusoid model is 1-40-40-1).

    Args:
        in_features: input size (1 for the sinusoid).
        out_features: output size (1 for the sinusoid, ``ways`` for classification).
        hidden: sizes of the hidden layers.
    """

    def __init__(self, in_features: int = 1, out_features: int = 1, hidden: Sequence[int] = (40, 40)) -> None:
        super().__init__()
        sizes = [in_features, *hidden]
        if any(s < 1 for s in [*sizes, out_features]):
            raise UserError(f"layer sizes must be >= 1, got {[*sizes, out_features]}")
        body: list[nn.Module] = []
        for size_in, size_out in zip(sizes[:-1], sizes[1:], strict=True):
            body += [nn.Linear(size_in, size_out), nn.ReLU()]
        self.features = nn.Sequential(*body)
        self.embedding_dim = sizes[-1]
        self.head = nn.Linear(sizes[-1], out_features)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden layer ``(B, hidden[-1])`` of inputs ``(B, in_features)``."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``(B, out_features)``."""
        return self.head(self.embed(x))

    @property
    def head_names(self) -> list[str]:
        """Names of the output layer's parameters (what ANIL adapts)."""
        return ["head.weight", "head.bias"]
