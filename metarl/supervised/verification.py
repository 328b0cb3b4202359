"""Face/character verification metrics from a few-shot learner's pair scores: ROC AUC and equal error rate.

A verification pair is (query, support item) of one test episode; it is positive when both show the same class.
The learner scores every pair (:meth:`pair_scores`: higher = more alike; Siamese: its same-class logit,
ProtoNet: the negative squared distance of the two embeddings), and each episode gets its own AUC and EER, so
the run reports mean +- 1.96 sigma / sqrt(n) over test episodes like every other metric here. An N-way 1-shot
Q-query episode holds N*Q positive and N*Q*(N-1) negative pairs.
"""

from __future__ import annotations

import numpy as np
import torch

from metarl.errors import UserError
from metarl.supervised.data.episodes import EpisodeBatch


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties count 1/2.

    Computed as the Mann-Whitney U statistic from average ranks, exact for tied scores.

    Raises:
        UserError: no positive or no negative pair.
    """
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise UserError(f"ROC AUC needs positive and negative pairs, got {n_pos} and {n_neg}")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    # Average rank (1-based) over each run of equal scores.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + 1 + end) / 2
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_points(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(false_accept, true_accept, thresholds)``: the ROC curve from (0, 0), accepting ``score >= threshold``
    for each distinct score from the highest down (the first threshold is +inf: accept nothing)."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    thresholds = np.r_[np.inf, np.unique(scores)[::-1]]
    accepted = scores[None, :] >= thresholds[:, None]
    false_accept = (accepted & ~positive).sum(1) / max(int((~positive).sum()), 1)
    true_accept = (accepted & positive).sum(1) / max(int(positive.sum()), 1)
    return false_accept, true_accept, thresholds


def equal_error_rate(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """``(eer, threshold)``: the rate where false accepts equal false rejects, linearly interpolated between the
    two ROC points around the crossing, and the threshold of the ROC point closest to it.

    Raises:
        UserError: no positive or no negative pair.
    """
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        raise UserError(
            f"the equal error rate needs positive and negative pairs, got {int(positive.sum())} of "
            f"{len(positive)} positive"
        )
    false_accept, true_accept, thresholds = roc_points(scores, positive)
    false_reject = 1.0 - true_accept
    gap = false_accept - false_reject  # rises from -1 (accept nothing) to +1 (accept everything)
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0 or i == 0:
        return float(false_accept[i]), float(thresholds[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    eer = false_accept[i - 1] + t * (false_accept[i] - false_accept[i - 1])
    return float(eer), float(thresholds[i if t >= 0.5 else i - 1])


def same_class(batch: EpisodeBatch) -> torch.Tensor:
    """``(tasks, N*Q, N*K)`` bool: whether query ``q`` and support item ``s`` share their class."""
    return batch.query_y.unsqueeze(2) == batch.support_y.unsqueeze(1)


def pair_scores(learner: torch.nn.Module, batch: EpisodeBatch) -> torch.Tensor:
    """The learner's ``(tasks, N*Q, N*K)`` similarity of every (query, support) pair.

    Raises:
        UserError: the learner scores no pairs.
    """
    score = getattr(learner, "pair_scores", None)
    if not callable(score):
        raise UserError(
            f"verification needs a learner that scores pairs (siamese, protonet); {type(learner).__name__} does "
            "not: set verification=false"
        )
    return score(batch)


def verification_metrics(scores: torch.Tensor, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
    """Per-episode ``verification_auc`` and ``verification_eer``, each ``(tasks,)``, from ``scores``
    ``(tasks, N*Q, N*K)`` over the episode's (query, support) pairs."""
    same = same_class(batch)
    aucs, eers = [], []
    for task in range(scores.shape[0]):
        s, p = scores[task].detach().double().flatten().numpy(), same[task].flatten().numpy()
        aucs.append(roc_auc(s, p))
        eers.append(equal_error_rate(s, p)[0])
    return {
        "verification_auc": torch.tensor(aucs, dtype=torch.float64),
        "verification_eer": torch.tensor(eers, dtype=torch.float64),
    }
