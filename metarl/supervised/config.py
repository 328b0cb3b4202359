"""The few-shot run config (one dataclass, YAML + ``key=value`` overrides) and what it builds: data and model.

Field docstrings (``metadata["help"]``) are the documentation of every key; ``metarl fewshot train --help``
prints them. The reference configs shipped in ``metarl/configs/fewshot/`` (``--config fewshot/<name>``) set the
paper protocols.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from torch import nn

from metarl.errors import MissingFileError, UserError
from metarl.supervised.data.base import ClassIndexedDataset
from metarl.supervised.data.cache import default_cache_dir
from metarl.supervised.learners import learner_entry
from metarl.supervised.models import MLP, Conv4, ResNet12
from metarl.training.config import check_declared_bounds, doc, run_field

MAX_EXAMPLES = 100_000  # classes per task, and examples per class, far beyond any few-shot protocol


@dataclass
class DataConfig:
    """Which tasks to train and evaluate on."""

    dataset: Literal["omniglot", "miniimagenet", "orl_faces", "folder", "sinusoid", "synthetic"] = doc(
        "task source; 'orl_faces' is the ORL face database (one class per subject); 'synthetic' is a small "
        "generated image dataset for smoke tests",
        default="omniglot",
    )
    root: str | None = doc(
        "dataset folder (Omniglot zips, miniImageNet pickles/images, or an image folder); "
        "default $METARL_DATA/<dataset>, else ~/.cache/metarl/data/<dataset> ($METARL_CACHE/data/<dataset>)",
        default=None,
    )
    split_scheme: Literal["vinyals", "lake", "finn"] = doc(
        "Omniglot split scheme: 'vinyals' (alphabet-disjoint 1028/172/423 characters), 'lake' (background/"
        "evaluation alphabets) or 'finn' (MAML's code: 1100/100/423 characters shuffled irrespective of alphabet)",
        default="vinyals",
    )
    train_split: str = doc("split to meta-train on", default="train")
    val_split: str | None = doc("split for validation during training (None: no validation)", default="val")
    test_split: str = doc("split of the final evaluation", default="test")
    image_size: int = doc(
        "side of the square images (28 Omniglot, 84 miniImageNet)", default=28, minimum=1, maximum=2048
    )
    rotations: list[int] = doc(
        "Omniglot: rotations in degrees, each a class of its own (Vinyals et al.: [0, 90, 180, 270])",
        default_factory=lambda: [0, 90, 180, 270],
    )
    channels: int = doc(
        "image channels of a 'folder' dataset (1 grayscale, 3 RGB)", default=3, minimum=1, maximum=4
    )
    resample: str = doc("resize filter: lanczos, bilinear, bicubic or nearest", default="lanczos")
    cache_dir: str | None = doc(
        "decoded-image cache (default $METARL_CACHE or ~/.cache/metarl)", default=None
    )
    ways: int = doc("classes per training task (N)", default=5, minimum=1, maximum=MAX_EXAMPLES)
    shots: int = doc(
        "support examples per class during training (K); points per task for sinusoid",
        default=1,
        minimum=1,
        maximum=MAX_EXAMPLES,
    )
    queries: int = doc(
        "query examples per class during training (0 allowed for Reptile)",
        default=1,
        minimum=0,
        maximum=MAX_EXAMPLES,
    )
    eval_ways: int | None = doc(
        "classes per evaluation task (default: ways)", default=None, minimum=1, maximum=MAX_EXAMPLES
    )
    eval_shots: int | None = doc(
        "support examples per class at evaluation (default: shots)",
        default=None,
        minimum=1,
        maximum=MAX_EXAMPLES,
    )
    eval_queries: int = doc(
        "query examples per class at evaluation (evaluation scores the query set)",
        default=15,
        minimum=1,
        maximum=MAX_EXAMPLES,
    )

    within_alphabet: bool = doc(
        "Omniglot: draw each training episode's classes from one alphabet, the alphabet uniformly among those "
        "with at least `ways` classes (harder negatives; Lake's one-shot runs are within-alphabet, and Koch et "
        "al. sample their verification pairs alphabet by alphabet); evaluation episodes are unchanged",
        default=False,
    )

    def __post_init__(self) -> None:
        check_declared_bounds(self, "data.")
        if self.within_alphabet and self.dataset != "omniglot":
            raise UserError(
                f"data.within_alphabet needs Omniglot's alphabets, not dataset {self.dataset!r}: set it to false"
            )

    @property
    def test_ways(self) -> int:
        """Ways of evaluation tasks."""
        return self.eval_ways or self.ways

    @property
    def test_shots(self) -> int:
        """Shots of evaluation tasks."""
        return self.eval_shots or self.shots


@dataclass
class ModelConfig:
    """The backbone network."""

    kind: Literal["conv4", "resnet12", "mlp"] = doc(
        "conv4 or resnet12 for images, mlp for vectors (sinusoid)", default="conv4"
    )
    hidden: int = doc(
        "filters per Conv4 block (64; MAML used 32 on miniImageNet)", default=64, minimum=1, maximum=4096
    )
    downsample: Literal["maxpool", "stride"] = doc(
        "Conv4 down-sampling: maxpool (Vinyals/Snell) or stride-2 convolutions (MAML Omniglot)",
        default="maxpool",
    )
    mlp_hidden: list[int] = doc(
        "hidden layer sizes of the MLP", default_factory=lambda: [40, 40], minimum=1, maximum=65_536
    )
    widths: list[int] = doc(
        "filters of ResNet-12's four blocks (MetaOptNet's 64-160-320-640; TADAM's 64-128-256-512)",
        default_factory=lambda: [64, 160, 320, 640],
        minimum=1,
        maximum=4096,
    )

    def __post_init__(self) -> None:
        check_declared_bounds(self, "model.")


@dataclass
class FewShotConfig:
    """A few-shot meta-training run: learner, data, model, outer loop, evaluation and bookkeeping."""

    RESUMABLE: ClassVar[tuple[str, ...]] = ("val_every", "val_episodes")  # besides training.RESUMABLE_KEYS
    RENAMED: ClassVar[dict[str, str]] = {"meta_batch": "meta_batch_size", "threads": "torch_threads"}

    learner: str = doc(
        "maml, fomaml, meta-sgd, anil, reptile, protonet, matching, relation, siamese, mann, meta-lstm, metanet, "
        "mtl",
        default="maml",
    )
    learner_options: dict[str, Any] = doc(
        "keyword arguments of the learner (e.g. inner_lr, inner_steps, eval_inner_steps)",
        default_factory=dict,
    )
    data: DataConfig = doc("tasks", default_factory=DataConfig)
    model: ModelConfig = doc("backbone", default_factory=ModelConfig)
    meta_batch_size: int = run_field("meta_batch_size", default=32)
    iterations: int = run_field("iterations", default=60000)
    outer_lr: float = doc("Adam learning rate of the meta-parameters", default=1e-3, above=0)
    lr_halve_every: int = doc(
        "halve the outer learning rate every this many iterations (0: never)", default=0, minimum=0
    )
    eval_episodes: int = doc(
        "test episodes of the final evaluation (600 in the literature)", default=600, minimum=1, maximum=10**7
    )
    eval_batch: int = doc("test episodes evaluated together", default=20, minimum=1, maximum=10_000)
    eval_seed: int = doc(
        "seed of the evaluation episodes (the same for every run)", default=1234, minimum=0, maximum=2**63 - 1
    )
    verification: bool = doc(
        "also report verification ROC AUC and equal error rate over the (query, support) pairs of each test "
        "episode (learners that score pairs: siamese, protonet)",
        default=False,
    )
    val_every: int = doc("validate every this many iterations (0: never)", default=1000, minimum=0)
    val_episodes: int = doc("episodes per validation", default=100, minimum=0, maximum=10**7)
    log_every: int = run_field("log_every", default=10)
    checkpoint_every: int = run_field("checkpoint_every", default=100)
    time_limit_seconds: float | None = run_field("time_limit_seconds", default=None)
    seed: int = run_field("seed", default=0)
    torch_threads: int | None = run_field("torch_threads", default=1)
    keep_freed_memory: bool = run_field("keep_freed_memory", default=True)
    run_root: str = doc("parent folder of run directories", default="runs")
    run_name: str | None = doc(
        "run directory name (default <learner>-<dataset>-<ways>w<shots>s-s<seed>)", default=None
    )

    def __post_init__(self) -> None:
        check_declared_bounds(self)
        learner_entry(self.learner)  # unknown names fail at load time, with the list of known ones
        if self.data.queries == 0 and self.learner != "reptile":
            raise UserError(
                f"data.queries=0 leaves no query set for the {self.learner} meta-loss; set data.queries >= 1 "
                "(only reptile meta-trains on support sets alone)"
            )

    def default_run_name(self) -> str:
        """``<learner>-<dataset>-<ways>w<shots>s-s<seed>`` (sinusoid: ``<learner>-sinusoid-<shots>shot-s<seed>``)."""
        if self.data.dataset == "sinusoid":
            return f"{self.learner}-sinusoid-{self.data.shots}shot-s{self.seed}"
        return f"{self.learner}-{self.data.dataset}-{self.data.ways}w{self.data.shots}s-s{self.seed}"


DATA_ENV_VAR = "METARL_DATA"
DATASETS_ON_DISK = ("omniglot", "miniimagenet", "orl_faces", "folder")


def default_data_root(dataset: str) -> str:
    """``$METARL_DATA/<dataset>`` if set, else ``<cache>/data/<dataset>`` in the user cache directory
    (``$METARL_CACHE`` or ``~/.cache/metarl``), which does not depend on where a command runs."""
    base = os.environ.get(DATA_ENV_VAR) or os.fspath(default_cache_dir() / "data")
    return os.path.join(os.path.expanduser(base), dataset)


def synthetic_dataset(
    classes: int, per_class: int, image_size: int, channels: int = 1, seed: int = 0
) -> ClassIndexedDataset:
    """A generated class-indexed dataset: each class is a random binary template, its samples noisy copies.

    Classes are easy to tell apart from one example, so a few meta-iterations already beat chance: it is the
    data of smoke tests and benchmarks, not a benchmark itself.
    """
    rng = np.random.default_rng(seed)
    templates = rng.random((classes, 1, channels, image_size, image_size)) < 0.3
    flips = rng.random((classes, per_class, channels, image_size, image_size)) < 0.05
    images = (templates ^ flips).astype(np.uint8) * 255
    offsets = np.arange(classes + 1) * per_class
    return ClassIndexedDataset(
        images.reshape(-1, channels, image_size, image_size), offsets, [f"c{c}" for c in range(classes)]
    )


def build_dataset(data: DataConfig, split: str) -> ClassIndexedDataset:
    """The class-indexed dataset of ``split`` (not used for the sinusoid).

    Raises:
        FileNotFoundError / ValueError: from the dataset loader, with the fix in the message.
    """
    root = data.root or default_data_root(data.dataset)
    if data.root is None and data.dataset in DATASETS_ON_DISK and not os.path.isdir(root):
        raise MissingFileError(
            f"no {data.dataset} data at the default location {root}: pass --data-root DIR (data.root=DIR) with "
            f"the folder that holds it, or set {DATA_ENV_VAR} to a folder with a {data.dataset}/ subfolder"
        )
    if data.dataset == "omniglot":
        from metarl.supervised.data.omniglot import Omniglot

        return Omniglot(
            root,
            split,
            split_scheme=data.split_scheme,
            image_size=data.image_size,
            rotations=data.rotations,
            resample=data.resample,
            cache_dir=data.cache_dir,
        )
    if data.dataset == "miniimagenet":
        from metarl.supervised.data.miniimagenet import MiniImageNet

        return MiniImageNet(
            root, split, image_size=data.image_size, cache_dir=data.cache_dir, resample=data.resample
        )
    if data.dataset == "orl_faces":
        from metarl.supervised.data.orl_faces import ORLFaces
        from metarl.supervised.data.registry import dataset_root

        return ORLFaces(
            dataset_root("orl_faces", root), split, image_size=data.image_size, resample=data.resample
        )
    if data.dataset == "folder":
        from metarl.supervised.data.image_folder import ImageFolderDataset

        return ImageFolderDataset(
            os.path.join(root, split),
            data.image_size,
            data.channels,
            resample=data.resample,
            cache_dir=data.cache_dir,
        )
    if data.dataset == "synthetic":
        seeds = {"train": 0, "val": 1, "test": 2}
        if split not in seeds:
            raise UserError(f"the synthetic dataset has splits {sorted(seeds)}, got {split!r}")
        return synthetic_dataset(classes=20, per_class=20, image_size=data.image_size, seed=seeds[split])
    raise UserError(f"dataset {data.dataset!r} has no class-indexed splits")


def build_model(config: FewShotConfig, in_channels: int, head: bool) -> nn.Module:
    """The backbone: Conv4 or ResNet-12 (with a ``ways``-output head if ``head``), or the MLP (1 -> hidden -> 1
    for sinusoid)."""
    if config.model.kind == "mlp":
        out = 1 if config.data.dataset == "sinusoid" else config.data.ways
        return MLP(in_features=in_channels, out_features=out, hidden=tuple(config.model.mlp_hidden))
    if config.data.dataset == "sinusoid":
        raise UserError("the sinusoid tasks need model.kind=mlp")
    if head and config.data.test_ways != config.data.ways:
        raise UserError(
            f"a learner with a classifier head needs data.eval_ways == data.ways, got {config.data.test_ways} and "
            f"{config.data.ways}; train a separate model per number of ways"
        )
    if config.model.kind == "resnet12":
        return ResNet12(in_channels, ways=config.data.ways if head else None, widths=config.model.widths)
    return Conv4(
        in_channels=in_channels,
        image_size=config.data.image_size,
        ways=config.data.ways if head else None,
        hidden=config.model.hidden,
        downsample=config.model.downsample,
    )
