"""A user's task distribution through the command line only: examples/point_mass_ring.py trained with
``--import``, evaluated and resumed in new processes that were told nothing, a run of the Python API evaluated
by the CLI, and ``metarl envs`` listing entry points' envs (``python -m metarl``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "point_mass_ring.py"
TINY = ["meta_batch_size=3", "episodes_per_task=4", "policy.hidden_sizes=[8,8]", "env_kwargs={horizon: 10}"]
EVALUATE = ["--tasks", "3", "--adapt-steps", "1", "--baseline-iterations", "1", "--no-progress"]


def metarl(*args: str, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    paths = [str(ROOT), *([str(pythonpath)] if pythonpath else [])]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(paths))
    return subprocess.run(
        [sys.executable, "-m", "metarl", *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )


def test_the_example_env_trains_evaluates_and_resumes_through_the_cli_only(tmp_path):
    run = tmp_path / "run"
    result = metarl(
        "train", "--import", str(EXAMPLE.relative_to(ROOT)), "--env", "MyLab/PointMassRing-v0",
        "--run-dir", str(run), "--no-progress", "iterations=2", *TINY, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["imports"] == [str(EXAMPLE)]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = metarl("evaluate", str(run), *EVALUATE, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    learners = json.loads((run / "eval.json").read_text())["learners"]
    assert set(learners) == {"maml-trpo", "pretrained", "random-init", "oracle"}
    assert all(len(learner["per_task"]) == 3 for learner in learners.values())
    assert json.loads((run / "tasks.json").read_text())["tasks"][0]["type"] == "RingGoalTask"

    result = metarl("train", "--resume", str(run), "iterations=3", "--no-progress", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_a_run_of_the_python_api_is_evaluated_by_the_cli_in_a_new_process(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "mylab_envs.py")
    script = (
        "import mylab_envs\n"
        "from metarl.agents import MAMLTRPO\n"
        "from metarl.agents.config import TrainConfig\n"
        "from metarl.training import load_config\n"
        f"config = load_config(TrainConfig, None, ['env=MyLab/PointMassRing-v0', 'iterations=1', *{TINY!r}])\n"
        "MAMLTRPO(config).train('run', progress=False)\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    trained = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )
    assert trained.returncode == 0, trained.stderr
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["imports"] == ["mylab_envs"]
    result = metarl("evaluate", "run", *EVALUATE, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "eval.json").is_file()


def test_an_unregistered_env_is_a_one_line_error_that_says_how_to_import_it(tmp_path):
    result = metarl(
        "train", "--env", "MyLab/PointMassRing-v0", "--run-dir", str(tmp_path / "run"), cwd=tmp_path
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "pass `--import MODULE`" in result.stderr
    assert not (tmp_path / "run").exists()


def test_envs_lists_what_imports_and_entry_points_register(tmp_path):
    result = metarl("envs", "--import", str(EXAMPLE), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("MyLab/PointMassRing-v0"))
    assert "goal angle ~ U[0, 2 pi)" in line and f"[--import {EXAMPLE}]" in line

    plugin = tmp_path / "plugin"
    info = plugin / "mylab-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mylab\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[metarl.envs]\nring = point_mass_ring:register\n")
    shutil.copy(EXAMPLE, plugin / "point_mass_ring.py")
    result = metarl("envs", cwd=tmp_path, pythonpath=plugin)
    assert result.returncode == 0, result.stderr
    assert (
        "MyLab/PointMassRing-v0" in result.stdout
        and "[entry point ring = point_mass_ring:register]" in result.stdout
    )
