"""Atomic writes: the destination is either the old file or the complete new one, and no temp file remains."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from metarl.training import io as training_io
from metarl.training.io import (
    atomic_open,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    read_json,
    write_json_atomic,
)


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_writes_create_parents_and_leave_no_temp_files(tmp_path):
    target = tmp_path / "a" / "b" / "out.bin"
    atomic_write_bytes(target, b"\x00\x01payload")
    assert target.read_bytes() == b"\x00\x01payload"
    atomic_write_text(tmp_path / "a" / "note.txt", "héllo\nworld\n")
    assert (tmp_path / "a" / "note.txt").read_text(encoding="utf-8") == "héllo\nworld\n"
    assert _leftovers(target.parent) == []
    assert _leftovers(tmp_path / "a") == []


def test_failure_mid_write_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "results.txt"
    atomic_write_text(target, "old complete contents\n")
    with pytest.raises(RuntimeError, match="disk full"), atomic_open(target, "w") as handle:
        handle.write("new partial con")
        raise RuntimeError("disk full")
    assert target.read_text() == "old complete contents\n"
    assert _leftovers(tmp_path) == []


def test_failure_in_replace_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    write_json_atomic(target, {"version": 1})

    def failing_replace(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(training_io.os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        write_json_atomic(target, {"version": 2})
    monkeypatch.undo()
    assert read_json(target) == {"version": 1}
    assert _leftovers(tmp_path) == []


def test_torch_save_failing_midway_never_truncates_checkpoint(tmp_path):
    target = tmp_path / "checkpoint.pt"
    atomic_torch_save({"step": 1, "w": torch.arange(3.0)}, target)

    def half_save(obj, handle):
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # a kill during torch.save

    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"step": 2}, target, save=half_save)
    loaded = torch.load(target, weights_only=False)
    assert loaded["step"] == 1
    assert torch.equal(loaded["w"], torch.arange(3.0))
    assert _leftovers(tmp_path) == []


def test_unserialisable_json_leaves_previous_file(tmp_path):
    target = tmp_path / "eval.json"
    write_json_atomic(target, {"ok": True})
    with pytest.raises(TypeError, match="not JSON serialisable"):
        write_json_atomic(target, {"bad": object()})
    assert read_json(target) == {"ok": True}


def test_json_converts_numpy_values(tmp_path):
    target = tmp_path / "eval.json"
    write_json_atomic(target, {"mean": np.float32(1.5), "curve": np.arange(3), "n": np.int64(40)})
    assert json.loads(target.read_text()) == {"mean": 1.5, "curve": [0, 1, 2], "n": 40}


def test_permissions_follow_umask_and_existing_file(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "x")
    assert target.stat().st_mode & 0o777 == 0o666 & ~training_io._UMASK
    os.chmod(target, 0o600)
    atomic_write_text(target, "y")
    assert target.stat().st_mode & 0o777 == 0o600


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": 1')
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON"):
        read_json(broken)


def test_atomic_open_rejects_other_modes(tmp_path):
    with pytest.raises(ValueError, match="modes"), atomic_open(tmp_path / "x", "a"):
        pass
