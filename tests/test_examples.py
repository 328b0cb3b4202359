"""The examples the documentation's guides include, run as a user runs them, with tiny budgets.

Every guide's code is one of these files (pymdownx.snippets includes it), so a guide whose code stops working
fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=600, env=ENV, cwd=cwd, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_task_api():
    out = _run(str(EXAMPLES / "task_api.py"))
    assert "40 tasks x 20 episodes standing still: mean return -" in out


def test_check_point_mass_ring():
    out = _run(str(EXAMPLES / "check_point_mass_ring.py"))
    assert "the checkers pass and the batched engine equals the single env" in out


def test_gymnasium_and_sb3():
    pytest.importorskip("stable_baselines3")
    out = _run(str(EXAMPLES / "gymnasium_sb3.py"), "--timesteps", "256")
    assert float(out.split("mean return")[1]) < 0  # Navigation2D's reward is minus a distance


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("examples") / "nav"
    out = _run(
        str(EXAMPLES / "train_and_evaluate.py"),
        "--run-dir",
        str(run_dir),
        "--adapt-steps",
        "1",
        "--tasks",
        "2",
        "iterations=2",
        "meta_batch_size=2",
        "episodes_per_task=2",
    )
    return run_dir, out


def test_train_and_evaluate(tiny_run):
    run_dir, out = tiny_run
    results = json.loads((run_dir / "eval.json").read_text())
    assert results["meta_iterations"] == 2 and results["tasks"] == 2
    assert set(results["learners"]) == {"maml-trpo", "pretrained", "random-init", "oracle"}
    assert all(len(learner["mean"]) == 2 for learner in results["learners"].values())
    assert "MetaRL/Navigation2D-v0: mean return" in out


def test_adapt_then_act(tiny_run):
    run_dir, _ = tiny_run
    out = _run(str(EXAMPLES / "adapt_then_act.py"), str(run_dir), "--steps", "1")
    assert out.startswith("return after 1 adaptation step(s): -")


def test_fewshot_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, classes in (("train", 5), ("test", 5)):
        for c in range(classes):
            folder = tmp_path / "images" / split / f"{split}-class{c}"
            folder.mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    out = _run(
        str(EXAMPLES / "fewshot_image_folder.py"),
        str(tmp_path / "images"),
        "--learner",
        "protonet",
        "--run-root",
        str(tmp_path / "runs"),
        "iterations=2",
        "meta_batch_size=2",
        "eval_episodes=4",
        "eval_batch=2",
        "data.eval_queries=1",
        "model.hidden=8",
        f"data.cache_dir={tmp_path / 'cache'}",
    )
    assert "protonet: test accuracy" in out
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "eval.json").read_text())["episodes"] == 4
