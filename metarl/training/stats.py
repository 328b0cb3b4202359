"""Confidence intervals for evaluation results (mean return over held-out tasks, accuracy over test episodes)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["format_ci", "mean_ci"]


def mean_ci(values: Iterable[float], z: float = 1.96) -> tuple[float, float]:
    """Mean and confidence-interval half-width ``z * std(ddof=1) / sqrt(n)`` (normal approximation).

    With the default ``z=1.96`` this is the 95% interval used by the few-shot literature
    (mean +- 1.96 sigma / sqrt(600) over 600 test episodes) and by the meta-RL evaluation over held-out tasks.

    Args:
        values: The per-task (or per-episode) results.
        z: Normal quantile of the interval (> 0).

    Returns:
        ``(mean, half_width)``. With a single value the spread is unknown and the half-width is ``nan``
        (``format_ci`` prints it as ``± n/a``), rather than a misleading ``0``. Any NaN or infinite value
        gives ``(nan, nan)``, so a diverged method shows up as ``nan`` in the results instead of
        aborting a whole evaluation.

    Raises:
        ValueError: no values, or ``z`` is not a positive finite number.
    """
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    if not isinstance(values, np.ndarray):
        values = list(values)
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError("mean_ci needs at least one value, got none")
    if not (math.isfinite(z) and z > 0):
        raise ValueError(f"z must be a positive number (1.96 for a 95% interval), got {z}")
    if not np.all(np.isfinite(array)):
        return math.nan, math.nan
    mean = float(array.mean())
    if array.size == 1:
        return mean, math.nan
    half_width = float(z * array.std(ddof=1) / math.sqrt(array.size))
    return mean, half_width


def format_ci(mean: float, half: float, digits: int = 2) -> str:
    """``"12.34 ± 0.56"``; an unknown half-width (``nan``) prints as ``"12.34 ± n/a"``."""
    if half is None or math.isnan(half):
        return f"{mean:.{digits}f} ± n/a"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"
