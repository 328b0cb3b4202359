"""SIGKILL at random moments, then resume, until the run is done: the final parameters and the whole
metrics.jsonl equal an uninterrupted run's, and no temporary file is left behind.

The kills are real (the child process sends itself SIGKILL, so nothing is cleaned up); where they land is
drawn from a seeded generator: right after the k-th meta-iteration of a process (before its scalars are logged
or checkpointed; the first kill lands before the first checkpoint) or in the middle of its k-th checkpoint write
(the temporary file half written).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

CHILD = """
import os, signal, sys
from metarl import cli
from metarl.training import checkpoint, loop

kind, at = os.environ.get("KILL_KIND"), int(os.environ.get("KILL_AT", "-1"))
counter = {"saves": 0, "iterations": 0}  # kill points count what this process did
real_save, real_check = checkpoint.atomic_torch_save, loop.RunLoop._check_finite

def dying_save(state, path):
    counter["saves"] += 1
    if kind == "save" and counter["saves"] == at:
        tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".killed.tmp")
        with open(tmp, "wb") as handle:
            handle.write(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(state, path)

def dying_check(self, scalars):
    counter["iterations"] += 1
    if kind == "iteration" and counter["iterations"] == at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_check(self, scalars)

checkpoint.atomic_torch_save = dying_save
loop.RunLoop._check_finite = dying_check
sys.exit(cli.main(sys.argv[1:]))
"""

TINY_RL = [
    "meta_batch_size=2",
    "episodes_per_task=2",
    "policy.hidden_sizes=[8]",
    "env_kwargs={horizon: 10}",
    "torch_threads=1",
    "iterations=8",
    "checkpoint_every=2",
]
RUNS = {
    "maml-trpo": ["train", "--algo", "maml-trpo", "--env", "MetaRL/Navigation2D-v0", *TINY_RL],
    "reptile": ["train", "--algo", "reptile", "--env", "MetaRL/Navigation2D-v0", *TINY_RL, "inner.steps=2"],
    "fewshot-maml": [
        "fewshot",
        "train",
        "--learner",
        "maml",
        "data.dataset=sinusoid",
        "model.kind=mlp",
        "model.mlp_hidden=[8]",
        "iterations=8",
        "checkpoint_every=2",
        "log_every=1",
        "meta_batch_size=2",
        "eval_episodes=2",
        "eval_batch=2",
        "val_every=3",
        "val_episodes=2",
    ],
}


def _run(argv: list[str], cwd: Path, kill: tuple[str, int] | None = None) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kill is not None:
        env.update(KILL_KIND=kill[0], KILL_AT=str(kill[1]))
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], cwd=cwd, env=env, capture_output=True, timeout=300
    )
    assert result.returncode in (0, -9), result.stderr.decode()[-2000:]
    return result.returncode


def _start(name: str, run: Path) -> list[str]:
    if name.startswith("fewshot"):
        return [*RUNS[name], f"run_root={run.parent}", f"run_name={run.name}", "--no-progress"]
    return [*RUNS[name], "--run-dir", str(run), "--no-progress"]


def _resume(name: str, run: Path) -> list[str]:
    command = ["fewshot", "train"] if name.startswith("fewshot") else ["train"]
    return [*command, "--resume", str(run), "--no-progress"]


def _comparable(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.startswith("charts/")} for row in rows]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    return state["learner"] if "learner" in state else state["policy"]


@pytest.mark.parametrize("name", list(RUNS))
def test_runs_killed_at_random_moments_resume_to_the_uninterrupted_numbers(name, tmp_path):
    full = tmp_path / "full"
    assert _run(_start(name, full), tmp_path) == 0
    rng = np.random.default_rng(list(name.encode()))
    killed = tmp_path / "killed"
    kills = [("iteration", 1)]  # before the first checkpoint (after iteration 2)
    kills += [(str(rng.choice(["iteration", "save"])), int(rng.integers(1, 3))) for _ in range(4)]
    codes = []
    for k, kill in enumerate(kills):  # a run killed before its first checkpoint resumes from the start
        codes.append(_run(_resume(name, killed) if k else _start(name, killed), tmp_path, kill))
        if codes[-1] == 0:
            break
    else:
        assert _run(_resume(name, killed), tmp_path) == 0
    assert codes[0] == -9 and codes.count(-9) >= 4, codes  # at least 4 kills per run, 12 in all
    assert _comparable(killed) == _comparable(full)
    weights_full, weights_killed = _weights(full), _weights(killed)
    assert all(torch.equal(weights_full[k], weights_killed[k]) for k in weights_full)
    assert not list(killed.glob(".*.tmp"))
