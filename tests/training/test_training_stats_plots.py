"""Confidence intervals against a hand computation, and the adaptation-curve PNG."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metarl.training.plots import plot_adaptation_curves
from metarl.training.stats import format_ci, mean_ci

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_mean_ci_matches_hand_computation():
    # values 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sum of squared deviations 32, sample variance 32/7.
    mean, half = mean_ci([2, 4, 4, 4, 5, 5, 7, 9])
    assert mean == pytest.approx(5.0)
    assert half == pytest.approx(1.96 * math.sqrt(32 / 7) / math.sqrt(8))
    assert half == pytest.approx(1.48162, abs=1e-5)  # 1.96 * 2.13809 / 2.82843
    _, half_99 = mean_ci([2, 4, 4, 4, 5, 5, 7, 9], z=2.576)
    assert half_99 == pytest.approx(2.576 / 1.96 * half)


def test_mean_ci_accepts_arrays_and_tensors():
    values = [0.1, 0.4, 0.35, 0.9]
    expected = mean_ci(values)
    assert mean_ci(np.array(values)) == pytest.approx(expected)
    assert mean_ci(torch.tensor(values, dtype=torch.float64)) == pytest.approx(expected)
    assert mean_ci(v for v in values) == pytest.approx(expected)


def test_mean_ci_edge_cases():
    mean, half = mean_ci([3.0])
    assert mean == 3.0 and math.isnan(half)
    assert mean_ci([1.0, 1.0, 1.0]) == (1.0, 0.0)
    mean, half = mean_ci([1.0, float("nan")])
    assert math.isnan(mean) and math.isnan(half)
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci([])
    with pytest.raises(ValueError, match="z must be a positive number"):
        mean_ci([1.0, 2.0], z=0)


def test_format_ci():
    assert format_ci(12.3449, 0.5551) == "12.34 ± 0.56"
    assert format_ci(-9.5, 1.25, digits=1) == "-9.5 ± 1.2"
    assert format_ci(0.981234, 0.0031, digits=4) == "0.9812 ± 0.0031"
    assert format_ci(3.0, float("nan")) == "3.00 ± n/a"


def _curves():
    return {
        "MAML": {"steps": [0, 1, 2, 3], "mean": [-35.0, -9.5, -8.0, -7.5], "ci": [2.0, 1.0, 0.8, 0.7]},
        "pretrained": {"steps": [0, 1, 2, 3], "mean": [-30.0, -28.0, -25.0, -22.0], "ci": [float("nan")] * 4},
        "oracle": {"steps": [0, 1, 2, 3], "mean": [-5.0] * 4},
    }


def test_plot_writes_png_atomically(tmp_path):
    target = tmp_path / "run" / "adaptation_curve.png"
    returned = plot_adaptation_curves(_curves(), target, title="Navigation2D")
    assert returned == target
    data = target.read_bytes()
    assert data.startswith(PNG_MAGIC)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (768, 528)  # 6.4 x 4.4 inches at 120 dpi
    assert sorted(p.name for p in target.parent.iterdir()) == ["adaptation_curve.png"]


def test_plot_failure_keeps_previous_png(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    target = plot_adaptation_curves(_curves(), tmp_path / "curve.png")
    before = target.read_bytes()

    def broken_savefig(self, handle, **kwargs):
        handle.write(PNG_MAGIC + b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot_adaptation_curves(_curves(), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png"]


@pytest.mark.parametrize(
    ("curves", "message"),
    [
        ({}, "at least one curve"),
        ({"a": {"mean": [1.0]}}, "curve 'a' must be a dict with 'steps', 'mean'"),
        ({"a": {"steps": [0, 1], "mean": [1.0]}}, "equal length, got 2, 1 and 1"),
        ({"a": {"steps": [0], "mean": ["x"]}}, "'mean' must be a list of numbers"),
    ],
)
def test_plot_rejects_malformed_curves(tmp_path, curves, message):
    with pytest.raises(ValueError, match=message):
        plot_adaptation_curves(curves, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
