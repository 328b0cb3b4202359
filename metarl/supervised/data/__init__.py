"""Episodic few-shot data: class-indexed datasets, the N-way K-shot sampler and sinusoid regression tasks."""

from metarl.supervised.data.base import ClassIndexedDataset, to_float_tensor
from metarl.supervised.data.cache import default_cache_dir
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.data.image_folder import ImageFolderDataset
from metarl.supervised.data.lake_runs import LakeOneShotRuns, OneShotRun
from metarl.supervised.data.miniimagenet import MiniImageNet
from metarl.supervised.data.omniglot import Omniglot
from metarl.supervised.data.orl_faces import ORLFaces
from metarl.supervised.data.registry import make_dataset
from metarl.supervised.data.sampler import EpisodeSampler
from metarl.supervised.data.sinusoid import SinusoidTasks

__all__ = [
    "ClassIndexedDataset",
    "EpisodeBatch",
    "EpisodeSampler",
    "ImageFolderDataset",
    "LakeOneShotRuns",
    "MiniImageNet",
    "Omniglot",
    "ORLFaces",
    "OneShotRun",
    "SinusoidTasks",
    "default_cache_dir",
    "make_dataset",
    "to_float_tensor",
]
