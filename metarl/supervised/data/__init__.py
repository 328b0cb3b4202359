"""Episodic few-shot data: class-indexed datasets, the N-way K-shot sampler and sinusoid regression tasks."""

from metarl.supervised.data.base import ClassIndexedDataset, to_float_tensor
from metarl.supervised.data.cache import default_cache_dir
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.data.omniglot import Omniglot
from metarl.supervised.data.sampler import EpisodeSampler
from metarl.supervised.data.sinusoid import SinusoidTasks

__all__ = [
    "ClassIndexedDataset",
    "EpisodeBatch",
    "EpisodeSampler",
    "Omniglot",
    "SinusoidTasks",
    "default_cache_dir",
    "to_float_tensor",
]
