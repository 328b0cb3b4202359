"""Run directories: unique names, standard file layout, clear errors when reopening something else."""

from __future__ import annotations

import pytest

from metarl.training.run_dir import RunDir


def test_create_appends_suffix_when_name_taken(tmp_path):
    first = RunDir.create(tmp_path / "runs", "maml-trpo-navigation2d-s0")
    second = RunDir.create(tmp_path / "runs", "maml-trpo-navigation2d-s0")
    third = RunDir.create(tmp_path / "runs", "maml-trpo-navigation2d-s0")
    assert [r.name for r in (first, second, third)] == [
        "maml-trpo-navigation2d-s0",
        "maml-trpo-navigation2d-s0-1",
        "maml-trpo-navigation2d-s0-2",
    ]
    assert all(r.path.is_dir() for r in (first, second, third))


def test_names_are_sanitised(tmp_path):
    run = RunDir.create(tmp_path, "reptile MetaRL/Navigation2D-v0")
    assert run.name == "reptile-MetaRL-Navigation2D-v0"
    assert run.path.parent == tmp_path


def test_layout(tmp_path):
    run = RunDir.create(tmp_path, "r")
    assert run.config_path == run.path / "config.yaml"
    assert run.checkpoint_path == run.path / "checkpoint.pt"
    assert run.metrics_path == run.path / "metrics.jsonl"
    assert run.tensorboard_dir == run.path / "tb"
    assert run.tasks_path == run.path / "tasks.json"
    assert run.eval_path == run.path / "eval.json"
    assert run.plot_path == run.path / "adaptation_curve.png"
    assert not run.has_checkpoint()


def test_open_existing_run(tmp_path):
    run = RunDir.create(tmp_path, "r")
    run.config_path.write_text("inner_lr: 0.1\n")
    assert RunDir.open(run.path) == run


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="run directory .*missing not found"):
        RunDir.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is not a run directory .*config.yaml"):
        RunDir.open(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a run directory"):
        RunDir.open(tmp_path / "file.txt")
