"""Checkpoints: round trip of model/optimizer/RNG state, and clear errors for missing or damaged files."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from metarl.training.checkpoint import (
    capture_rng_states,
    load_checkpoint,
    restore_rng_states,
    save_checkpoint,
)


def _draw(np_gen: np.random.Generator, torch_gen: torch.Generator) -> list[float]:
    return [
        random.random(),
        float(np.random.rand()),  # noqa: NPY002 - the legacy global state is part of what we restore
        float(torch.rand(1)),
        float(np_gen.normal()),
        float(torch.rand(1, generator=torch_gen)),
    ]


def test_rng_states_restore_the_same_draws(tmp_path):
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002
    torch.manual_seed(3)
    np_gen, torch_gen = np.random.default_rng(4), torch.Generator().manual_seed(5)
    _draw(np_gen, torch_gen)
    generators = {"tasks": np_gen, "sampler": torch_gen}
    save_checkpoint(tmp_path / "checkpoint.pt", {"rng": capture_rng_states(generators)})
    expected = [_draw(np_gen, torch_gen) for _ in range(3)]

    # A fresh process would build new generators and restore them from the file.
    fresh_np, fresh_torch = np.random.default_rng(99), torch.Generator().manual_seed(99)
    random.seed(99)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    restore_rng_states(state["rng"], {"tasks": fresh_np, "sampler": fresh_torch})
    assert [_draw(fresh_np, fresh_torch) for _ in range(3)] == expected


def test_model_and_optimizer_round_trip(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    path = save_checkpoint(
        tmp_path / "run" / "checkpoint.pt",
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": 7},
    )
    state = load_checkpoint(path, required_keys=("model", "optimizer", "iteration"))
    restored = torch.nn.Linear(3, 2)
    restored.load_state_dict(state["model"])
    restored_opt = torch.optim.Adam(restored.parameters(), lr=0.01)
    restored_opt.load_state_dict(state["optimizer"])
    assert state["iteration"] == 7
    for a, b in zip(model.parameters(), restored.parameters(), strict=True):
        assert torch.equal(a, b)
    exp_avg = optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(restored_opt.state_dict()["state"][0]["exp_avg"], exp_avg)
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]


def test_missing_checkpoint_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*checkpoint.pt not found"):
        load_checkpoint(tmp_path / "checkpoint.pt")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_checkpoint_gives_one_line_error(tmp_path, damage):
    path = save_checkpoint(tmp_path / "checkpoint.pt", {"w": torch.randn(100, 100), "iteration": 3})
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"this is not a checkpoint" * 10)
    else:
        path.write_bytes(b"")
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"checkpoint {path} is corrupt or truncated (")
    assert message.endswith("delete it to restart, or resume from an earlier copy")
    assert "\n" not in message


def test_not_a_dict_and_missing_keys(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(torch.zeros(2), path)
    with pytest.raises(ValueError, match="holds a Tensor, not a checkpoint dict"):
        load_checkpoint(path)
    save_checkpoint(path, {"model": {}})
    with pytest.raises(ValueError, match="lacks 'optimizer'"):
        load_checkpoint(path, required_keys=("model", "optimizer"))


def test_restore_rejects_unknown_or_mismatched_generators():
    state = capture_rng_states({"tasks": np.random.default_rng(0)})
    with pytest.raises(ValueError, match="no saved state for generator 'sampler'"):
        restore_rng_states(state, {"sampler": torch.Generator()})
    with pytest.raises(ValueError, match="saved state is a numpy state"):
        restore_rng_states(state, {"tasks": torch.Generator()})
    with pytest.raises(TypeError, match="expected numpy.random.Generator or torch.Generator"):
        capture_rng_states({"bad": random.Random(0)})
    with pytest.raises(ValueError, match="not made by capture_rng_states"):
        restore_rng_states({"python": random.getstate()})
