"""The `metarl` command in a subprocess: envs, train, evaluate, kill-and-resume, and user errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metarl.cli import parse_args

OPTIONS = ["--env", "MetaRL/Navigation2D-v0", "--no-progress"]
OVERRIDES = [
    "meta_batch_size=3",
    "episodes_per_task=4",
    "env_kwargs={horizon: 10}",
    "policy.hidden_sizes=[8,8]",
]


def metarl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "metarl.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def _records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("charts/")} for line in lines]


def test_envs_lists_the_registered_ids():
    result = metarl("envs")
    assert result.returncode == 0
    assert "MetaRL/Navigation2D-v0" in result.stdout and "MetaRL/TabularMDP-v0" in result.stdout


def test_train_then_evaluate_tiny_run(tmp_path):
    run = tmp_path / "run"
    result = metarl("train", *OPTIONS, "--run-dir", str(run), *OVERRIDES, "iterations=2")
    assert result.returncode == 0, result.stderr
    assert "metarl evaluate" in result.stdout
    assert len(_records(run)) == 2 and (run / "checkpoint.pt").is_file() and (run / "config.yaml").is_file()
    assert any((run / "tb").iterdir())
    result = metarl("evaluate", str(run), "--tasks", "3", "--adapt-steps", "1", "--baseline-iterations", "1")
    assert result.returncode == 0, result.stderr
    results = json.loads((run / "eval.json").read_text())
    assert set(results["learners"]) == {"maml-trpo", "pretrained", "random-init", "oracle"}
    for learner in results["learners"].values():
        assert len(learner["mean"]) == 2 and len(learner["per_task"]) == 3
    oracle = results["learners"]["oracle"]["mean"]
    assert oracle[0] == oracle[1] and "oracle not fine-tuned" in result.stdout
    assert len(json.loads((run / "tasks.json").read_text())["tasks"]) == 3
    assert (run / "adaptation_curve.png").stat().st_size > 1000
    assert "maml-trpo" in result.stdout and "random-init" in result.stdout
    # Another protocol written to --output leaves eval.json and its plot as they were.
    before = (run / "eval.json").read_bytes(), (run / "adaptation_curve.png").read_bytes()
    other = run / "eval-other.json"
    args = ["--tasks", "3", "--adapt-steps", "1", "--episodes", "2", "--baselines", "random-init"]
    result = metarl("evaluate", str(run), *args, "--output", str(other))
    assert result.returncode == 0, result.stderr
    assert json.loads(other.read_text())["episodes_per_task"] == 2 and str(other) in result.stdout
    assert other.with_suffix(".png").stat().st_size > 1000
    assert ((run / "eval.json").read_bytes(), (run / "adaptation_curve.png").read_bytes()) == before
    alone = run / "eval-alone.json"
    result = metarl("evaluate", str(run), *args[:-2], "--no-baselines", "--output", str(alone))
    assert result.returncode == 0, result.stderr
    assert set(json.loads(alone.read_text())["learners"]) == {"maml-trpo"}
    result = metarl("evaluate", str(run), *args, "--output", str(run / "eval.txt"))
    assert result.returncode == 2 and "output (--output) must name a .json file" in result.stderr
    # --resume extends the budget; changing the algorithm of a run is refused with exit status 2.
    result = metarl("train", "--resume", str(run), "--no-progress", "iterations=3")
    assert result.returncode == 0, result.stderr
    assert len(_records(run)) == 3
    result = metarl("train", "--resume", str(run), "inner.lr=0.5")
    assert result.returncode == 2 and "inner.lr" in result.stderr and "Traceback" not in result.stderr


DEMO_OVERRIDES = [
    "meta_batch_size=2",
    "episodes_per_task=2",
    "policy.hidden_sizes=[8,8]",
    "evaluation.tasks=3",
    "evaluation.episodes_per_task=2",
    "evaluation.adapt_steps=1",
]


def test_demo_trains_evaluates_and_shows_the_table(tmp_path):
    result = metarl("demo", "--runs-root", str(tmp_path), "--no-progress", *DEMO_OVERRIDES, "iterations=2")
    assert result.returncode == 0, result.stderr
    (run,) = tmp_path.glob("demo-maml-trpo-navigation2d-*")
    results = json.loads((run / "eval.json").read_text())
    assert results["meta_iterations"] == 2 and results["baseline_iterations"] == 2 and results["tasks"] == 3
    assert set(results["learners"]) == {"maml-trpo", "pretrained", "random-init", "oracle"}
    for name in results["learners"]:
        assert name in result.stdout
    assert str(run / "adaptation_curve.png") in result.stdout and "tensorboard --logdir" in result.stdout
    assert "--resume" not in result.stdout and "time limit" not in result.stderr


def test_demo_says_when_its_time_limit_cut_training_short(tmp_path):
    # An iteration takes far longer than 1 ms, so the limit stops training after the first one.
    overrides = [
        *DEMO_OVERRIDES,
        "iterations=3",
        "time_limit_seconds=0.001",
        "evaluation.baselines=[random-init]",
    ]
    result = metarl("demo", "--runs-root", str(tmp_path), "--no-progress", *overrides)
    assert result.returncode == 0, result.stderr
    (run,) = tmp_path.glob("demo-*")
    assert "time limit of 0.001 s reached: stopped at iteration 1 of 3" in result.stderr
    assert f"Continue with: metarl train --resume {run} " in result.stdout and "(now 1/3)" in result.stdout
    assert json.loads((run / "eval.json").read_text())["meta_iterations"] == 1
    # The run keeps its limit: a plain resume trains one more iteration and says the same of itself.
    result = metarl("train", "--resume", str(run), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "stopped at iteration 2 of 3" in result.stderr
    assert f"continue with: metarl train --resume {run} " in result.stdout
    assert "time_limit_seconds=null" in result.stdout and "(now 2/3)" in result.stdout
    result = metarl("train", "--resume", str(run), "--no-progress", "time_limit_seconds=null")
    assert result.returncode == 0, result.stderr
    assert len(_records(run)) == 3


def test_overrides_may_come_anywhere_between_options():
    args = parse_args(["train", "inner.lr=0.05", "--seed", "3", "iterations=2", "--env", "E", "gamma=0.9"])
    assert args.overrides == ["inner.lr=0.05", "iterations=2", "gamma=0.9"]
    assert args.seed == 3 and args.env == "E"
    args = parse_args(
        ["fewshot", "evaluate", "run", "--episodes", "5", "data.eval_ways=20", "--output", "o.json"]
    )
    assert args.overrides == ["data.eval_ways=20"] and args.output == "o.json"
    # Both command families take --runs-root (and its alias --run-root).
    assert parse_args(["train", "--run-root", "r"]).runs_root == "r"
    assert parse_args(["fewshot", "train", "--runs-root", "r"]).run_root == "r"
    for bad in (["train", "a=1", "--seed", "3", "stray"], ["envs", "a=b"], ["train", "--no-such-flag"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_a_command_without_overrides_says_so(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["evaluate", "run", "torch_threads=1"])
    assert exit_info.value.code == 2
    assert "`metarl evaluate` takes no key=value overrides, got torch_threads=1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("train", "--env", "MetaRL/NoSuchEnv-v0"), "unknown env id"),
        (("train", "inner.lr=fast"), "inner.lr"),
        (("train", "inner.dice_lambda=1.5"), "inner.dice_lambda"),
        (("train", "meta_batch_size=0"), "meta_batch_size"),
        (("train", "no_such_key=1"), "no_such_key"),
        (("train", "--config", "does/not/exist.yaml"), "not found"),
        (("demo", "iterations=many"), "iterations"),
        (("evaluate", "does/not/exist"), "not found"),
        (("train", "--algo", "pearl", "--env", "MetaRL/Bandit-K5-v0"), "PEARL needs continuous"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_no_traceback(tmp_path, args, needle):
    extra = {"train": ["--run-dir", str(tmp_path / "r")], "demo": ["--runs-root", str(tmp_path)]}.get(
        args[0], []
    )
    result = metarl(*args, *extra)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists(), "a refused run leaves no run directory behind"


@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_identical_numbers(tmp_path):
    iterations = "iterations=60"
    reference = tmp_path / "reference"
    assert metarl("train", *OPTIONS, "--run-dir", str(reference), *OVERRIDES, iterations).returncode == 0

    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "metarl.cli",
            "train",
            *OPTIONS,
            "--run-dir",
            str(killed),
            *OVERRIDES,
            iterations,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert 1 <= state["iteration"] < 60, "the run was not interrupted mid-way; the test proves nothing"
    result = metarl("train", "--resume", str(killed), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert _records(killed) == _records(reference)
    final_killed = torch.load(killed / "checkpoint.pt", weights_only=False)
    final_reference = torch.load(reference / "checkpoint.pt", weights_only=False)
    for name, value in final_reference["policy"].items():
        assert torch.equal(value, final_killed["policy"][name]), name
