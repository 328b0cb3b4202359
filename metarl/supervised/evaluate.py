"""Evaluation of few-shot learners on held-out episodes: mean +- 1.96 sigma / sqrt(n) over test episodes.

Classification scores query accuracy per episode; regression (sinusoid) scores query mean squared error per task.
Gradient learners also report the metric after 0, 1, ..., k inner steps (the adaptation curve). Further
per-episode metrics go to ``result["extra"]``, each with its own CI: a learner's own ``extra_metrics(batch)``
(e.g. MANN's accuracy by instance) and, with ``verification=True``, ROC AUC and equal error rate of its pair
scores (:mod:`metarl.supervised.verification`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from metarl.supervised.config import DataConfig, build_dataset
from metarl.supervised.data.base import ClassIndexedDataset
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.data.sampler import EpisodeSampler
from metarl.supervised.data.sinusoid import SinusoidTasks
from metarl.supervised.learners.base import FewShotLearner
from metarl.supervised.verification import pair_scores, verification_metrics
from metarl.training.stats import mean_ci


class TaskSource(Protocol):
    """Anything that hands out :class:`EpisodeBatch` es and can save/restore its random state."""

    def sample(self) -> EpisodeBatch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class SinusoidSource:
    """Batches of sinusoid tasks with fixed sizes, in the :class:`TaskSource` form."""

    tasks: SinusoidTasks
    tasks_per_batch: int
    shots: int
    queries: int

    def sample(self) -> EpisodeBatch:
        return self.tasks.sample(self.tasks_per_batch, self.shots, self.queries)

    def state_dict(self) -> dict[str, Any]:
        return self.tasks.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tasks.load_state_dict(state)


def make_task_source(
    data: DataConfig,
    split: str,
    tasks_per_batch: int,
    seed: int,
    *,
    evaluation: bool,
    cache: dict | None = None,
) -> TaskSource:
    """The training (``evaluation=False``) or evaluation episodes of ``split``.

    Training tasks use ``ways/shots/queries``; evaluation tasks ``eval_ways/eval_shots/eval_queries``. For the
    sinusoid, ``shots`` are the support points and ``queries`` the query points of a task, and the split only
    changes the seed stream. ``cache`` (split -> dataset) avoids loading a split twice.
    """
    ways = data.test_ways if evaluation else data.ways
    shots = data.test_shots if evaluation else data.shots
    queries = data.eval_queries if evaluation else data.queries
    if data.dataset == "sinusoid":
        return SinusoidSource(SinusoidTasks(seed), tasks_per_batch, shots, queries)
    dataset = load_split(data, split, cache)
    # data.within_alphabet is refused for any dataset but Omniglot (DataConfig), whose classes know their alphabet
    groups = dataset.class_alphabets if data.within_alphabet and not evaluation else None
    return EpisodeSampler(
        dataset, ways, shots, queries, tasks_per_batch=tasks_per_batch, seed=seed, groups=groups
    )


def load_split(data: DataConfig, split: str, cache: dict | None = None) -> ClassIndexedDataset:
    """The dataset of ``split``, loaded once per ``cache`` (split -> dataset)."""
    if cache is not None and split in cache:
        return cache[split]
    dataset = build_dataset(data, split)
    if cache is not None:
        cache[split] = dataset
    return dataset


def is_regression(data: DataConfig) -> bool:
    """Whether the tasks are regression (scored by MSE) rather than classification (accuracy)."""
    return data.dataset == "sinusoid"


def episode_metrics(learner: FewShotLearner, batch: EpisodeBatch, regression: bool) -> list[torch.Tensor]:
    """Per-episode metric after each adaptation step the learner reports (one entry for metric learners)."""
    per_step = getattr(learner, "per_step_metrics", None)
    if callable(per_step):
        return per_step(batch)
    outputs = learner.predict(batch)
    if regression:
        return [(outputs - batch.query_y).pow(2).flatten(1).mean(1)]
    return [(outputs.argmax(-1) == batch.query_y).float().mean(-1)]


def episode_extras(
    learner: FewShotLearner, batch: EpisodeBatch, verification: bool
) -> dict[str, torch.Tensor]:
    """Further per-episode metrics ``{name: (tasks,)}``: the learner's ``extra_metrics`` and verification."""
    extras: dict[str, torch.Tensor] = {}
    own = getattr(learner, "extra_metrics", None)
    if callable(own):
        extras.update(own(batch))
    if verification:
        extras.update(verification_metrics(pair_scores(learner, batch), batch))
    return extras


def evaluate_learner(
    learner: FewShotLearner,
    source: TaskSource,
    episodes: int,
    *,
    regression: bool = False,
    verification: bool = False,
) -> dict[str, Any]:
    """Score ``learner`` on ``episodes`` episodes from ``source``.

    Args:
        learner: the learner.
        source: the episodes.
        episodes: how many to score.
        regression: score MSE instead of accuracy.
        verification: also score ROC AUC and EER of the learner's pair scores per episode.

    Returns:
        ``{"metric", "episodes", "mean", "ci95", "per_step": {"steps", "mean", "ci"}, "extra": {name: {"mean",
        "ci95"}}, "seconds"}``; the last entry of the per-step curve is the reported result. Accuracies are
        fractions in [0, 1].
    """
    start = time.perf_counter()
    was_training = learner.training
    learner.eval()
    per_step: list[list[np.ndarray]] = []
    extra: dict[str, list[np.ndarray]] = {}
    done = 0
    try:
        with torch.no_grad():
            while done < episodes:
                batch = source.sample()
                values = episode_metrics(learner, batch, regression)
                take = min(batch.num_tasks, episodes - done)
                if not per_step:
                    per_step = [[] for _ in values]
                for k, v in enumerate(values):
                    per_step[k].append(v[:take].double().cpu().numpy())
                for name, v in episode_extras(learner, batch, verification).items():
                    extra.setdefault(name, []).append(v[:take].double().cpu().numpy())
                done += take
    finally:
        learner.train(was_training)
    curves = [mean_ci(np.concatenate(chunks)) for chunks in per_step]
    mean, ci = curves[-1]
    extra_ci = {name: mean_ci(np.concatenate(chunks)) for name, chunks in extra.items()}
    result = {
        "metric": "mse" if regression else "accuracy",
        "episodes": episodes,
        "mean": mean,
        "ci95": ci,
        "per_step": {
            "steps": list(range(len(curves))),
            "mean": [m for m, _ in curves],
            "ci": [0.0 if math.isnan(c) else c for _, c in curves],
        },
        "seconds": time.perf_counter() - start,
    }
    if extra_ci:
        result["extra"] = {name: {"mean": m, "ci95": c} for name, (m, c) in extra_ci.items()}
    return result


def format_result(result: dict[str, Any]) -> str:
    """``accuracy 97.12% ± 0.45% over 600 episodes`` or ``mse 0.412 ± 0.030 over 600 tasks``, then any extra
    metrics (``; verification_auc 0.9712 ± 0.0045``)."""
    if result["metric"] == "accuracy":
        text = f"accuracy {100 * result['mean']:.2f}% ± {100 * result['ci95']:.2f}% over {result['episodes']} episodes"
    else:
        text = f"mse {result['mean']:.4f} ± {result['ci95']:.4f} over {result['episodes']} tasks"
    for name, value in result.get("extra", {}).items():
        text += f"; {name} {value['mean']:.4f} ± {value['ci95']:.4f}"
    return text
