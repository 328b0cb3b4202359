"""End to end: a run killed with SIGKILL and resumed from its checkpoint ends exactly like an uninterrupted one.

The tiny training loop below uses every piece a real agent uses (config, run directory, logger, atomic
checkpoints holding model, optimizer, iteration and RNG states, explicit generators plus the global torch RNG
through dropout); the killed copy runs in a subprocess that SIGKILLs itself between two checkpoints.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys

import torch

TRAIN_SCRIPT = """
import dataclasses, os, signal, sys

import numpy as np
import torch

from metarl.training import (
    RunDir, RunLogger, capture_rng_states, load_checkpoint, load_config, restore_rng_states,
    save_checkpoint, save_config,
)


@dataclasses.dataclass
class TinyConfig:
    iterations: int = 12
    lr: float = 0.05
    checkpoint_every: int = 3
    seed: int = 0


def train(run_path, resume=False, kill_at=None):
    torch.set_num_threads(1)
    if resume:
        run = RunDir.open(run_path)
        config = load_config(TinyConfig, run.config_path)
    else:
        run = RunDir(run_path)
        run.path.mkdir(parents=True)
        config = load_config(TinyConfig)
        save_config(config, run.config_path)
        torch.manual_seed(config.seed)
    tasks = np.random.default_rng(config.seed)
    batches = torch.Generator().manual_seed(config.seed + 1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    start, resume_step = 0, None
    if resume:
        state = load_checkpoint(run.checkpoint_path, required_keys=("model", "optimizer", "iteration", "rng"))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_rng_states(state["rng"], {"tasks": tasks, "batches": batches})
        resume_step = state["iteration"]  # the last iteration logged before that checkpoint
        start = resume_step + 1
    with RunLogger(run, resume_step=resume_step) as logger:
        for iteration in range(start, config.iterations):
            slope = torch.as_tensor(tasks.normal(size=(4, 1)), dtype=torch.float32)
            x = torch.randn(32, 4, generator=batches)
            loss = torch.nn.functional.mse_loss(model(x), x @ slope)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            logger.log(iteration, {"losses/mse": loss.item()})
            if (iteration + 1) % config.checkpoint_every == 0:
                logger.flush()
                save_checkpoint(run.checkpoint_path, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration,
                    "rng": capture_rng_states({"tasks": tasks, "batches": batches}),
                })
            if iteration == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
    return model


if __name__ == "__main__":
    train(sys.argv[1], kill_at=int(sys.argv[2]))
"""


def _load_script(tmp_path):
    path = tmp_path / "train_tiny.py"
    path.write_text(TRAIN_SCRIPT)
    spec = importlib.util.spec_from_file_location("train_tiny", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    script, module = _load_script(tmp_path)
    reference = module.train(tmp_path / "uninterrupted")

    killed_dir = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # Killed after logging iteration 7; the last checkpoint holds iteration 5, so 6 and 7 are logged twice.
    result = subprocess.run(
        [sys.executable, str(script), str(killed_dir), "7"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    lines = (killed_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 8
    assert torch.load(killed_dir / "checkpoint.pt", weights_only=False)["iteration"] == 5

    resumed = module.train(killed_dir, resume=True)

    expected = (tmp_path / "uninterrupted" / "metrics.jsonl").read_bytes()
    assert (killed_dir / "metrics.jsonl").read_bytes() == expected
    assert len(expected.splitlines()) == 12
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert sorted(p.name for p in killed_dir.iterdir()) == [
        "checkpoint.pt",
        "config.yaml",
        "metrics.jsonl",
        "tb",
    ]
