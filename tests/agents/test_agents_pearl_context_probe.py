"""scripts/pearl_context_probe.py: a PEARL run's return on training tasks for three kinds of context."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from test_agents_pearl import tiny

from metarl.agents import PEARL

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pearl_context_probe.py"
_spec = importlib.util.spec_from_file_location("pearl_context_probe", SCRIPT)
pearl_context_probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pearl_context_probe)


def test_the_probe_reports_each_context_reproducibly(tmp_path, capsys):
    PEARL(tiny()).train(tmp_path / "run")
    first = pearl_context_probe.probe(str(tmp_path / "run"), num_tasks=3, seed=0)
    assert list(first) == ["encoder buffer", "deterministic prior episode", "stochastic prior episode"]
    # Navigation2D's rewards are minus distances: 10-step returns are negative and finite
    assert all(math.isfinite(v) and v < 0 for v in first.values())
    assert pearl_context_probe.probe(str(tmp_path / "run"), num_tasks=3, seed=0) == first
    assert pearl_context_probe.main([str(tmp_path / "run"), "--tasks", "3"]) == 0
    assert "encoder buffer" in capsys.readouterr().out


def test_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    assert pearl_context_probe.main([str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
