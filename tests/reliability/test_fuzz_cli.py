"""What a careless user types at the ``metarl`` command, and what a crash or a hand edit leaves in a run
directory: every case ends with exit status 2 and one line on stderr, never a traceback, a hang or a silent
success. Each case runs in-process under a time limit."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from metarl import cli

TINY_RL = [
    "--algo",
    "maml-trpo",
    "--env",
    "MetaRL/Navigation2D-v0",
    "iterations=1",
    "meta_batch_size=2",
    "episodes_per_task=2",
    "policy.hidden_sizes=[4]",
    "env_kwargs={horizon: 5}",
    "torch_threads=1",
]
TINY_FEWSHOT = [
    "--learner",
    "maml",
    "data.dataset=sinusoid",
    "model.kind=mlp",
    "model.mlp_hidden=[4]",
    "iterations=1",
    "meta_batch_size=2",
    "eval_episodes=2",
    "eval_batch=2",
    "val_every=0",
]
SECONDS = 60  # a case that takes longer hangs


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    def timeout(signum, frame):
        raise TimeoutError(f"metarl {' '.join(argv)} hung")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(SECONDS)
    try:
        try:
            code = cli.main(argv)
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, Path]:
    """One tiny meta-RL run and one tiny few-shot run, trained once; cases work on copies."""
    root = tmp_path_factory.mktemp("trained")
    assert cli.main(["train", *TINY_RL, "--run-dir", str(root / "rl"), "--no-progress"]) == 0
    fewshot = [*TINY_FEWSHOT, f"run_root={root}", "run_name=fewshot"]
    assert cli.main(["fewshot", "train", *fewshot, "--no-progress"]) == 0
    return {"rl": root / "rl", "fewshot": root / "fewshot"}


def _edit_yaml(path: Path, edit: Callable[[dict], None]) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))


# Each case: (argv with {placeholders}, what to do to the copied runs first).
SETUPS: dict[str, Callable[[Path], None]] = {
    "config_not_yaml": lambda run: (run / "config.yaml").write_text("inner: [unclosed\n"),
    "config_a_list": lambda run: (run / "config.yaml").write_text("- 1\n- 2\n"),
    "config_drifted_lr": lambda run: _edit_yaml(run / "config.yaml", lambda d: d["inner"].update(lr=0.5)),
    "config_drifted_seed": lambda run: _edit_yaml(run / "config.yaml", lambda d: d.update(seed=7)),
    "fewshot_drifted_model": lambda run: _edit_yaml(
        run / "config.yaml", lambda d: d["model"].update(mlp_hidden=[8])
    ),
    "fewshot_other_learner": lambda run: _edit_yaml(
        run / "config.yaml", lambda d: d.update(learner="protonet")
    ),
    "checkpoint_a_dir": lambda run: ((run / "checkpoint.pt").unlink(), (run / "checkpoint.pt").mkdir()),
    "checkpoint_junk": lambda run: (run / "checkpoint.pt").write_bytes(b"not a checkpoint"),
    "metrics_a_dir": lambda run: ((run / "metrics.jsonl").unlink(), (run / "metrics.jsonl").mkdir()),
    "tb_a_file": lambda run: (shutil.rmtree(run / "tb"), (run / "tb").write_text("x")),
    "no_config": lambda run: (run / "config.yaml").unlink(),
}

RL_CASES = [
    ("unknown-command", ["nope"], None),
    ("no-command", [], None),
    ("unknown-flag", ["train", "--nope"], None),
    ("envs-extra", ["envs", "extra"], None),
    ("unknown-algo", ["train", "--algo", "nope"], None),
    ("seed-not-int", ["train", "--seed", "abc"], None),
    ("unknown-env", ["train", "--env", "MetaRL/Nope-v0", "iterations=1"], None),
    ("not-a-task-env", ["train", "--env", "CartPole-v1", "iterations=1"], None),
    ("config-missing", ["train", "--config", "{tmp}/missing.yaml"], None),
    ("config-a-dir", ["train", "--config", "{tmp}"], None),
    ("config-not-yaml", ["train", "--config", "{bad_yaml}"], None),
    ("config-a-list", ["train", "--config", "{list_yaml}"], None),
    ("run-dir-a-file", ["train", *TINY_RL, "--run-dir", "{file}"], None),
    ("run-dir-under-a-file", ["train", *TINY_RL, "--run-dir", "{file}/run"], None),
    ("runs-root-a-file", ["train", *TINY_RL, "--runs-root", "{file}"], None),
    ("run-dir-not-empty", ["train", *TINY_RL, "--run-dir", "{rl}"], None),
    ("resume-missing", ["train", "--resume", "{tmp}/missing"], None),
    ("resume-a-file", ["train", "--resume", "{file}"], None),
    ("resume-not-a-run", ["train", "--resume", "{tmp}"], None),
    ("resume-config-not-yaml", ["train", "--resume", "{rl}"], "config_not_yaml"),
    ("resume-config-a-list", ["train", "--resume", "{rl}"], "config_a_list"),
    ("resume-config-drifted-lr", ["train", "--resume", "{rl}", "iterations=2"], "config_drifted_lr"),
    ("resume-config-drifted-seed", ["train", "--resume", "{rl}", "iterations=2"], "config_drifted_seed"),
    ("resume-override-refused", ["train", "--resume", "{rl}", "inner.lr=0.5"], None),
    ("resume-with-flags", ["train", "--resume", "{rl}", "--seed", "3"], None),
    ("resume-checkpoint-a-dir", ["train", "--resume", "{rl}", "iterations=2"], "checkpoint_a_dir"),
    ("resume-checkpoint-junk", ["train", "--resume", "{rl}", "iterations=2"], "checkpoint_junk"),
    ("resume-metrics-a-dir", ["train", "--resume", "{rl}", "iterations=2"], "metrics_a_dir"),
    ("resume-tb-a-file", ["train", "--resume", "{rl}", "iterations=2"], "tb_a_file"),
    ("resume-no-config", ["train", "--resume", "{rl}"], "no_config"),
    ("torch-threads-0", ["train", *TINY_RL, "torch_threads=0"], None),
    ("torch-threads-negative", ["train", *TINY_RL, "torch_threads=-1"], None),
    ("huge-hidden", ["train", *TINY_RL, "policy.hidden_sizes=[1000000000]"], None),
    ("huge-meta-batch", ["train", *TINY_RL, "meta_batch_size=1000000000000"], None),
    ("iterations-float", ["train", *TINY_RL, "iterations=1e30"], None),
    ("huge-horizon", ["train", *TINY_RL, "env_kwargs={horizon: 100000000}"], None),
    ("bad-env-kwarg", ["train", *TINY_RL, "env_kwargs={nope: 1}"], None),
    ("lr-inf", ["train", *TINY_RL, "inner.lr=inf"], None),
    ("lr-overflow", ["train", *TINY_RL, "inner.lr=1e400"], None),
    ("lr-int-overflow", ["train", *TINY_RL, f"inner.lr={10**400}"], None),
    ("lr-diverges", ["train", *TINY_RL, "inner.lr=1e300", "--run-dir", "{tmp}/diverges"], None),
    ("cg-damping-negative", ["train", *TINY_RL, "trpo.cg_damping=-1"], None),
    ("time-limit-negative", ["train", *TINY_RL, "time_limit_seconds=-1"], None),
    ("override-not-key-value", ["train", *TINY_RL, "inner.lr"], None),
    ("override-into-scalar-section", ["train", "--config", "{scalar_section_yaml}", "inner.lr=0.2"], None),
    ("eval-missing", ["evaluate", "{tmp}/missing"], None),
    ("eval-huge-tasks", ["evaluate", "{rl}", "--tasks", "1000000000"], None),
    ("eval-huge-steps", ["evaluate", "{rl}", "--adapt-steps", "1000000000"], None),
    ("eval-lr-scale-inf", ["evaluate", "{rl}", "--later-lr-scale", "inf"], None),
    ("eval-lr-scale-negative", ["evaluate", "{rl}", "--later-lr-scale", "-1"], None),
    ("eval-one-task", ["evaluate", "{rl}", "--tasks", "1"], None),
    ("eval-no-episodes", ["evaluate", "{rl}", "--episodes", "0"], None),
    (
        "eval-output-under-a-file",
        ["evaluate", "{rl}", "--output", "{file}/eval.json", "--no-baselines"],
        None,
    ),
    ("eval-output-a-dir", ["evaluate", "{rl}", "--output", "{tmp}", "--no-baselines"], None),
    ("eval-unknown-baseline", ["evaluate", "{rl}", "--baselines", "nope"], None),
    ("eval-baselines-and-none", ["evaluate", "{rl}", "--baselines", "oracle", "--no-baselines"], None),
    ("eval-config-not-yaml", ["evaluate", "{rl}"], "config_not_yaml"),
    ("eval-config-a-list", ["evaluate", "{rl}"], "config_a_list"),
    ("eval-checkpoint-junk", ["evaluate", "{rl}"], "checkpoint_junk"),
    ("demo-bad-override", ["demo", "iterations=abc"], None),
    ("demo-runs-root-a-file", ["demo", "--runs-root", "{file}", "iterations=1"], None),
]
FEWSHOT_CASES = [
    ("fs-unknown-learner", ["fewshot", "train", "--learner", "nope"], None),
    ("fs-unknown-option", ["fewshot", "train", *TINY_FEWSHOT, "learner_options={nope: 1}"], None),
    (
        "fs-huge-inner-steps",
        ["fewshot", "train", *TINY_FEWSHOT, "learner_options={inner_steps: 1000000000}"],
        None,
    ),
    ("fs-negative-inner-lr", ["fewshot", "train", *TINY_FEWSHOT, "learner_options={inner_lr: -1}"], None),
    ("fs-outer-lr-inf", ["fewshot", "train", *TINY_FEWSHOT, "outer_lr=inf"], None),
    ("fs-data-root-missing", ["fewshot", "train", "--learner", "maml", "--data-root", "{tmp}/missing"], None),
    (
        "fs-data-section-scalar",
        ["fewshot", "train", "--config", "{sinusoid_scalar_yaml}", "--data-root", "{tmp}"],
        None,
    ),
    ("fs-runs-root-a-file", ["fewshot", "train", *TINY_FEWSHOT, "--runs-root", "{file}"], None),
    ("fs-resume-missing", ["fewshot", "train", "--resume", "{tmp}/missing"], None),
    (
        "fs-resume-override-refused",
        ["fewshot", "train", "--resume", "{fewshot}", "model.mlp_hidden=[8]"],
        None,
    ),
    (
        "fs-resume-drifted-model",
        ["fewshot", "train", "--resume", "{fewshot}", "iterations=2"],
        "fewshot_drifted_model",
    ),
    (
        "fs-resume-other-learner",
        ["fewshot", "train", "--resume", "{fewshot}", "iterations=2"],
        "fewshot_other_learner",
    ),
    (
        "fs-resume-checkpoint-junk",
        ["fewshot", "train", "--resume", "{fewshot}", "iterations=2"],
        "checkpoint_junk",
    ),
    ("fs-resume-config-a-list", ["fewshot", "train", "--resume", "{fewshot}"], "config_a_list"),
    ("fs-eval-missing", ["fewshot", "evaluate", "{tmp}/missing"], None),
    ("fs-eval-no-episodes", ["fewshot", "evaluate", "{fewshot}", "--episodes", "0"], None),
    ("fs-eval-output-under-a-file", ["fewshot", "evaluate", "{fewshot}", "--output", "{file}/x.json"], None),
    ("fs-eval-config-not-yaml", ["fewshot", "evaluate", "{fewshot}"], "config_not_yaml"),
    ("fs-eval-checkpoint-junk", ["fewshot", "evaluate", "{fewshot}"], "checkpoint_junk"),
]


def _fill(token: str, places: dict[str, Path]) -> str:
    for name, path in places.items():
        token = token.replace(f"{{{name}}}", str(path))
    return token


@pytest.mark.parametrize(
    ("argv", "setup"), [pytest.param(a, s, id=i) for i, a, s in RL_CASES + FEWSHOT_CASES]
)
def test_a_bad_command_line_is_one_line_and_exit_status_2(argv, setup, trained, tmp_path, capsys):
    places = {"tmp": tmp_path}
    for name, source in trained.items():
        places[name] = tmp_path / name
        shutil.copytree(source, places[name])
        if setup is not None and f"{{{name}}}" in " ".join(argv):
            SETUPS[setup](places[name])
    (tmp_path / "file").write_text("a file")
    places["file"] = tmp_path / "file"
    for name, text in {
        "bad_yaml": "inner: [unclosed\n",
        "list_yaml": "- 1\n",
        "scalar_section_yaml": "inner: 0.1\n",
        "sinusoid_scalar_yaml": "learner: maml\ndata: sinusoid\n",
    }.items():
        places[name] = tmp_path / f"{name}.yaml"
        places[name].write_text(text)
    code, out, err = run_cli([_fill(token, places) for token in argv], capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err


def test_the_case_list_is_long():
    assert len(RL_CASES) + len(FEWSHOT_CASES) >= 75
