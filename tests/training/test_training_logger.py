"""RunLogger: metrics.jsonl + TensorBoard, and a resumed run ends with the same log as an uninterrupted one."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from metarl.training.logger import ProgressBar, RunLogger, read_metrics
from metarl.training.run_dir import RunDir


def _scalars(step: int) -> dict[str, float]:
    return {"meta/return_before": -35.0 + step / 3, "losses/surrogate": 1.0 / (step + 1)}


def _tensorboard_scalars(run: RunDir, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run.tensorboard_dir))
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_log_writes_jsonl_and_tensorboard(tmp_path):
    run = RunDir.create(tmp_path, "r")
    with RunLogger(run) as logger:
        logger.log(0, {"meta/return_before": np.float32(-2.5), "charts/sps": torch.tensor(100.0)})
        logger.log(1, {"meta/return_before": -1, "flag": True})
    lines = run.metrics_path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 0, "meta/return_before": -2.5, "charts/sps": 100.0},
        {"step": 1, "meta/return_before": -1.0, "flag": 1.0},
    ]
    assert _tensorboard_scalars(run, "meta/return_before") == [(0, -2.5), (1, -1.0)]


def test_killed_and_resumed_run_has_identical_metrics(tmp_path):
    uninterrupted = RunDir.create(tmp_path, "full")
    with RunLogger(uninterrupted) as logger:
        for step in range(10):
            logger.log(step, _scalars(step))

    resumed = RunDir.create(tmp_path, "resumed")
    logger = RunLogger(resumed)
    for step in range(7):
        logger.log(step, _scalars(step))
        if step == 4:
            last_checkpointed_step = step  # the checkpoint is saved after logging step 4
    logger.flush()
    with open(resumed.metrics_path, "a") as handle:
        handle.write('{"step": 7, "meta/retu')  # killed in the middle of a write
    killed = logger  # SIGKILL: no close() before the new process starts

    with RunLogger(resumed, resume_step=last_checkpointed_step) as logger:
        for step in range(last_checkpointed_step + 1, 10):
            logger.log(step, _scalars(step))

    killed.close()  # only to release its files in this test process; it writes nothing more
    assert resumed.metrics_path.read_bytes() == uninterrupted.metrics_path.read_bytes()
    assert [r["step"] for r in read_metrics(resumed)] == list(range(10))
    expected = [(s, pytest.approx(_scalars(s)["meta/return_before"])) for s in range(10)]
    assert _tensorboard_scalars(resumed, "meta/return_before") == expected


def test_resume_without_metrics_file_and_without_tensorboard(tmp_path):
    run = RunDir.create(tmp_path, "r")
    with RunLogger(run, resume_step=3, tensorboard=False) as logger:
        logger.log(4, {"x": 1.0})
    assert read_metrics(run.metrics_path) == [{"step": 4, "x": 1.0}]
    assert not run.tensorboard_dir.exists()


def test_nan_is_kept_in_jsonl(tmp_path):
    run = RunDir.create(tmp_path, "r")
    with RunLogger(run, tensorboard=False) as logger:
        logger.log(0, {"loss": float("nan")})
    assert math.isnan(read_metrics(run)[0]["loss"])


def test_bad_input(tmp_path):
    run = RunDir.create(tmp_path, "r")
    logger = RunLogger(run, tensorboard=False)
    with pytest.raises(ValueError, match="scalar 'loss' must be a number, got str"):
        logger.log(0, {"loss": "low"})
    with pytest.raises(ValueError, match="scalar 'loss' must be a number, got str '1.5'"):
        logger.log(0, {"loss": "1.5"})
    with pytest.raises(ValueError, match="scalar 'w' must be a number, got Tensor"):
        logger.log(0, {"w": torch.ones(3)})
    with pytest.raises(ValueError, match="step must be an integer"):
        logger.log(1.5, {"loss": 1.0})
    with pytest.raises(ValueError, match="'step' is reserved"):
        logger.log(0, {"step": 1.0})
    logger.close()
    logger.close()
    with pytest.raises(RuntimeError, match="after close"):
        logger.log(0, {"loss": 1.0})
    assert read_metrics(run) == []


def test_progress_bar_shows_postfix(capsys):
    with ProgressBar(total=5, initial=2, desc="meta-train", disable=False) as bar:
        for _ in range(3):
            bar.update(1, ret_after=-9.87654, it=3)
        assert bar.n == 5
    err = capsys.readouterr().err
    assert "meta-train" in err and "5/5" in err
    assert "ret_after=-9.877" in err and "it=3" in err


def test_progress_bar_silent_when_not_a_terminal(capsys):
    with ProgressBar(total=3) as bar:
        bar.update(3, acc=0.5)
    assert capsys.readouterr().err == ""


def test_appending_after_a_torn_line_keeps_new_records_intact(tmp_path):
    run = RunDir.create(tmp_path, "r")
    run.metrics_path.write_text('{"step": 0, "x": 1.0}\n{"step": 1, "x"')
    with RunLogger(run, tensorboard=False) as logger:
        logger.log(1, {"x": 5.0})
    assert read_metrics(run) == [{"step": 0, "x": 1.0}, {"step": 1, "x": 5.0}]


def test_logger_accepts_a_plain_path(tmp_path):
    with RunLogger(tmp_path / "run", tensorboard=False) as logger:
        logger.log(0, {"x": 2.0})
    assert read_metrics(RunDir(tmp_path / "run")) == [{"step": 0, "x": 2.0}]
