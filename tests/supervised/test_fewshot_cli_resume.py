"""A few-shot run killed between checkpoints and resumed ends with the same numbers as an uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch

from metarl.supervised import runner
from metarl.supervised.config import FewShotConfig
from metarl.training import RunDir, load_checkpoint, load_config, loop

SYNTHETIC = [
    "data.dataset=synthetic",
    "data.image_size=16",
    "data.ways=3",
    "data.queries=2",
    "data.eval_queries=3",
    "model.hidden=8",
]
SINUSOID = ["data.dataset=sinusoid", "data.eval_queries=20", "model.kind=mlp", "model.mlp_hidden=[16, 16]"]
COMMON = [
    "meta_batch_size=2",
    "iterations=6",
    "checkpoint_every=2",
    "log_every=1",
    "val_every=3",
    "val_episodes=4",
    "eval_episodes=10",
    "eval_batch=5",
]


class Killed(Exception):
    pass


def comparable(run: RunDir) -> list[dict]:
    """metrics.jsonl without wall-clock measurements."""
    records = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("charts/")} for r in records]


@pytest.mark.parametrize(
    ("learner", "data", "options"),
    [
        ("maml", SYNTHETIC, "{inner_steps: 1, eval_inner_steps: 2}"),
        ("reptile", SYNTHETIC, "{inner_steps: 2, inner_batch: 2, eval_inner_steps: 2}"),
        ("meta-sgd", SINUSOID, "{inner_steps: 1}"),
        ("meta-lstm", SYNTHETIC, "{inner_steps: 2, eval_inner_steps: 2, hidden: 4}"),
        ("metanet", SYNTHETIC, "{ways: 3, representation_dim: 4, generator_hidden: 4}"),
        ("mann", SYNTHETIC, "{ways: 3, controller_size: 8, memory_slots: 6, memory_width: 4, read_heads: 2}"),
    ],
)
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, monkeypatch, learner, data, options):
    overrides = [f"learner={learner}", f"learner_options={options}", *data, *COMMON]
    config = load_config(FewShotConfig, None, [*overrides, f"run_root={tmp_path}"])
    full = RunDir.create(tmp_path, "full")
    expected = runner.train(config, run_dir=full, progress=False, echo=lambda _: None)

    killed = RunDir.create(tmp_path, "killed")
    real_save = loop.save_checkpoint

    def save_or_die(path, state):
        if state["iteration"] == 6:  # die after logging iterations 5 and 6, before their checkpoint
            raise Killed
        real_save(path, state)

    monkeypatch.setattr(loop, "save_checkpoint", save_or_die)
    with pytest.raises(Killed):
        runner.train(config, run_dir=killed, progress=False, echo=lambda _: None)
    assert load_checkpoint(killed.checkpoint_path)["iteration"] == 4
    assert max(r["step"] for r in comparable(killed)) == 6  # lines the resumed run must replace
    monkeypatch.setattr(loop, "save_checkpoint", real_save)

    resumed_config = load_config(FewShotConfig, killed.config_path)
    assert resumed_config == config
    resumed = runner.train(resumed_config, run_dir=killed, resume=True, progress=False, echo=lambda _: None)

    assert comparable(killed) == comparable(full)
    assert resumed["mean"] == expected["mean"] and resumed["per_step"] == expected["per_step"]
    weights_full = load_checkpoint(full.checkpoint_path)["learner"]
    weights_resumed = load_checkpoint(killed.checkpoint_path)["learner"]
    assert all(torch.equal(weights_full[k], weights_resumed[k]) for k in weights_full)
    # Training moved the weights: the comparison is not between two untouched initialisations.
    torch.manual_seed(config.seed)
    initial = runner.build_run_learner(config).state_dict()
    assert any(
        not torch.equal(initial[k], weights_full[k]) for k in initial if initial[k].is_floating_point()
    )


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    overrides = ["learner=maml", *SINUSOID, *COMMON, "val_every=0", f"run_root={tmp_path}"]
    first = runner.train(load_config(FewShotConfig, None, overrides), progress=False, echo=lambda _: None)
    second = runner.train(load_config(FewShotConfig, None, overrides), progress=False, echo=lambda _: None)
    other = runner.train(
        load_config(FewShotConfig, None, [*overrides, "seed=1"]), progress=False, echo=lambda _: None
    )
    assert first["mean"] == second["mean"]
    assert other["mean"] != first["mean"]


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(tmp_path):
    config = load_config(FewShotConfig, None, ["learner=maml", *SINUSOID, *COMMON, "val_every=0"])
    full = runner.train(config, run_dir=RunDir.create(tmp_path, "full"), progress=False, echo=lambda _: None)
    early = RunDir.create(tmp_path, "early")
    (early.path / "metrics.jsonl").write_text('{"step": 1, "losses/meta_loss": 9.0}\n')  # logged, then killed
    resumed = runner.train(config, run_dir=early, resume=True, progress=False, echo=lambda _: None)
    assert resumed["mean"] == full["mean"]
    assert comparable(early) == comparable(RunDir(tmp_path / "full"))
