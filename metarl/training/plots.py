"""The adaptation-curve plot: mean return (or accuracy) after 0..k adaptation steps, one line per method."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from metarl.training.io import atomic_open

__all__ = ["plot_adaptation_curves"]


def _as_floats(name: str, key: str, values: Any) -> list[float]:
    try:
        return [float(v) if v is not None else math.nan for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"curve {name!r}: '{key}' must be a list of numbers, got {values!r}") from None


def _check_curve(name: str, curve: Mapping[str, Any]) -> tuple[list[float], list[float], list[float]]:
    if not isinstance(curve, Mapping) or "steps" not in curve or "mean" not in curve:
        raise ValueError(
            f"curve {name!r} must be a dict with 'steps', 'mean' and optionally 'ci', got {curve!r}"
        )
    steps = _as_floats(name, "steps", curve["steps"])
    mean = _as_floats(name, "mean", curve["mean"])
    ci = _as_floats(name, "ci", curve["ci"]) if curve.get("ci") is not None else [math.nan] * len(mean)
    if not (len(steps) == len(mean) == len(ci)) or not steps:
        raise ValueError(
            f"curve {name!r}: 'steps', 'mean' and 'ci' must be non-empty and of equal length, "
            f"got {len(steps)}, {len(mean)} and {len(ci)}"
        )
    return steps, mean, ci


def plot_adaptation_curves(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    xlabel: str = "adaptation steps",
    ylabel: str = "mean return",
    log_x: bool = False,
) -> Path:
    """Plot one line per method with its confidence band and save it as a PNG, atomically.

    Args:
        curves: Method name -> ``{"steps": [0, 1, 2, 3], "mean": [...], "ci": [...]}`` where ``ci`` holds
            confidence-interval half-widths (``nan`` or a missing ``ci`` draws no band).
        path: Destination PNG (``run.plot_path``); written to a temporary file and renamed.
        title: Figure title.
        xlabel: Label of the x axis.
        ylabel: Label of the y axis.
        log_x: a logarithmic x axis (linear between 0 and 1, so that x = 0 has its place).

    Returns:
        The destination path.

    Raises:
        ValueError: no curves, or a curve is malformed (missing keys, unequal lengths, non-numbers).
    """
    # The object-oriented API with an Agg canvas: no pyplot global state, no change to the user's backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("plot_adaptation_curves needs at least one curve")
    checked = {name: _check_curve(name, curve) for name, curve in curves.items()}
    figure = Figure(figsize=(6.4, 4.4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    all_steps: set[float] = set()
    for name, (steps, mean, ci) in checked.items():
        line = axes.errorbar(
            steps,
            mean,
            yerr=[0.0 if math.isnan(c) else c for c in ci],
            marker="o",
            capsize=3,
            linewidth=1.8,
            label=str(name),
        )
        lower = [m - (0.0 if math.isnan(c) else c) for m, c in zip(mean, ci, strict=True)]
        upper = [m + (0.0 if math.isnan(c) else c) for m, c in zip(mean, ci, strict=True)]
        axes.fill_between(steps, lower, upper, alpha=0.15, color=line.lines[0].get_color(), linewidth=0)
        all_steps.update(steps)
    if log_x:
        axes.set_xscale("symlog", linthresh=1.0)
    # a tick at every step of a short, small-integer axis (steps, episodes); matplotlib's own ticks otherwise,
    # where a label at each of many large values (tasks or env steps seen) would overlap
    if (
        all(float(s).is_integer() for s in all_steps)
        and len(all_steps) <= 20
        and max(all_steps, default=0) < 1000
    ):
        axes.set_xticks(sorted(all_steps), [f"{s:g}" for s in sorted(all_steps)])
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    target = Path(path)
    with atomic_open(target, "wb") as handle:
        figure.savefig(handle, format="png")
    return target
