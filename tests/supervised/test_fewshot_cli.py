"""`metarl fewshot train|evaluate` end to end on synthetic data, and user errors that exit 2 with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metarl.cli import main
from metarl.training import shipped_config_dir

CONFIGS = shipped_config_dir() / "fewshot"

TINY = [
    "data.dataset=synthetic",
    "data.image_size=16",
    "data.ways=3",
    "data.eval_queries=3",
    "model.hidden=8",
    "meta_batch_size=2",
    "iterations=3",
    "eval_episodes=10",
    "eval_batch=5",
    "val_every=0",
    "log_every=1",
]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "metarl.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_train_then_evaluate_in_a_subprocess(tmp_path):
    done = run_cli(
        "fewshot", "train", "--learner", "maml", "--run-root", "runs", "--no-progress", *TINY, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    run = tmp_path / "runs" / "maml-synthetic-3w1s-s0"
    assert "test accuracy" in done.stdout
    for name in ("config.yaml", "checkpoint.pt", "metrics.jsonl", "eval.json", "adaptation_curve.png"):
        assert (run / name).is_file(), name
    result = json.loads((run / "eval.json").read_text())
    assert result["episodes"] == 10 and result["iterations"] == 3 and 0.0 <= result["mean"] <= 1.0
    assert result["per_step"]["steps"] == [0, 1]  # maml default: as many test steps as training steps
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "losses/meta_loss" in r] == [1, 2, 3]
    assert "meta/test_accuracy" in records[-1]

    evaluated = run_cli(
        "fewshot", "evaluate", str(run), "--episodes", "10", "--output", "again.json", cwd=tmp_path
    )
    assert evaluated.returncode == 0, evaluated.stderr
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["mean"] == pytest.approx(result["mean"])  # same weights, same evaluation episodes
    assert again["train_seconds"] == result["train_seconds"] > 0  # the training time of those weights

    extended = run_cli(
        "fewshot", "train", "--resume", str(run), "iterations=5", "--no-progress", cwd=tmp_path
    )
    assert extended.returncode == 0, extended.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "losses/meta_loss" in r] == [1, 2, 3, 4, 5]
    assert "iterations: 5" in (run / "config.yaml").read_text()

    bad = run_cli("fewshot", "train", "--learner", "mamal", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "unknown learner 'mamal'" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fewshot", "train", "data.waze=5"], "unknown config key 'data.waze'"),
        (["fewshot", "train", "meta_batch_size=0"], "config key 'meta_batch_size' must be >= 1"),
        (["fewshot", "train", "data.shots=two"], "config key 'data.shots' must be"),
        (["fewshot", "train", "learner=nope"], "unknown learner 'nope'"),
        (["fewshot", "train", "data.queries=0"], "data.queries=0 leaves no query set for the maml meta-loss"),
        (
            ["fewshot", "train", "learner_options={inner_rate: 1}", *TINY],
            "does not take option(s) inner_rate",
        ),
        (["fewshot", "train", "data.root=/no/such/omniglot", "iterations=1"], "/no/such/omniglot"),
        (["fewshot", "train", "--config", "/no/such.yaml"], "config file /no/such.yaml not found"),
        (["fewshot", "train", "--resume", "/no/such/run"], "run directory /no/such/run not found"),
        (["fewshot", "train", "--resume", "/no/such/run", "--seed", "3"], "--resume continues a run"),
        (["fewshot", "train", "--resume", "/no/such/run", "learner=reptile"], "only checkpoint_every"),
        (["fewshot", "evaluate", "/no/such/run"], "run directory /no/such/run not found"),
        (["fewshot", "evaluate", ".", "--episodes", "0"], "--episodes must be >= 1"),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (
        main([*argv, "--run-root", str(tmp_path)] if argv[1] == "train" and "--resume" not in argv else argv)
        == 2
    )
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_evaluate_rejects_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["fewshot", "evaluate", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_keys_lists_every_config_key(capsys):
    assert main(["fewshot", "keys"]) == 0
    out = capsys.readouterr().out
    for key in ("learner (str, default maml)", "data.shots", "model.downsample", "eval_episodes"):
        assert key in out


def test_fomaml_runs_on_the_shared_omniglot(shared_data, tmp_path):
    from metarl.supervised import runner
    from metarl.supervised.config import FewShotConfig
    from metarl.training import load_config

    overrides = [
        "learner=fomaml",
        f"data.root={shared_data / 'omniglot'}",
        "model.downsample=stride",
        "meta_batch_size=2",
        "iterations=2",
        "eval_episodes=4",
        "eval_batch=2",
        "val_every=0",
        f"run_root={tmp_path}",
    ]
    config = load_config(FewShotConfig, CONFIGS / "fomaml-omniglot-5w1s.yaml", overrides)
    result = runner.train(config, progress=False, echo=lambda _: None)
    assert (
        result["split"] == "test" and result["ways"] == 5 and result["shots"] == 1 and result["queries"] == 15
    )
    assert len(result["per_step"]["mean"]) == 4  # 0..3 inner steps at test, as in the MAML protocol
    assert 0.0 <= result["mean"] <= 1.0


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_reference_config_loads(path):
    from metarl.supervised.config import FewShotConfig
    from metarl.training import load_config

    config = load_config(FewShotConfig, path)
    assert path.stem.startswith(config.learner)


@pytest.mark.parametrize(
    "name",
    ["maml-omniglot-20w1s", "mtl-omniglot-20w1s", "meta-lstm-omniglot-20w1s", "metanet-omniglot-20w1s"],
)
def test_20_way_configs_train_and_test_20_way_episodes(tmp_path, name):
    from conftest import synthetic_run_overrides

    from metarl.supervised import runner
    from metarl.supervised.config import FewShotConfig
    from metarl.training import load_config

    overrides = synthetic_run_overrides(
        tmp_path,
        "model.hidden=4",
        "iterations=2",
        "meta_batch_size=2",
        *(["learner_options.pretrain_iterations=1"] if name.startswith("mtl") else []),
    )
    config = load_config(FewShotConfig, CONFIGS / f"{name}.yaml", overrides)
    assert config.data.ways == 20 and config.learner_options.get("ways", 20) == 20
    result = runner.train(config, progress=False, echo=lambda _: None)
    assert result["ways"] == 20 and result["iterations"] == 2
    assert 0.0 <= result["mean"] <= 1.0


def test_within_alphabet_needs_omniglot(capsys):
    assert main(["fewshot", "train", "data.dataset=synthetic", "data.within_alphabet=true"]) == 2
    assert "data.within_alphabet needs Omniglot's alphabets" in capsys.readouterr().err
