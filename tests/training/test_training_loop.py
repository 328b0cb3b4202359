"""The one run loop (metarl.training.RunLoop): step numbering, averaging, checkpoints, time limit and resume."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from metarl.errors import TrainingDiverged, UserError
from metarl.training import RunDir, RunLoop, load_checkpoint, read_metrics, run_field


@dataclass
class CountingConfig:
    iterations: int = run_field("iterations", default=6)
    log_every: int = run_field("log_every", default=1)
    checkpoint_every: int = run_field("checkpoint_every", default=2)
    time_limit_seconds: float | None = run_field("time_limit_seconds", default=None)
    torch_threads: int | None = run_field("torch_threads", default=None)
    keep_freed_memory: bool = run_field("keep_freed_memory", default=False)


class Counting(RunLoop):
    """Iteration ``i`` logs ``value = i`` and adds it to a running total, its whole state."""

    throughput = ("items", "charts/items_per_second")

    def __init__(self, config: CountingConfig, die_at: int | None = None) -> None:
        super().__init__(config)
        self.total = 0
        self.die_at = die_at

    def meta_iteration(self, iteration: int) -> dict[str, float]:
        if iteration == self.die_at:
            raise KeyboardInterrupt  # a kill between two iterations
        self.total += iteration
        return {"losses/value": float(iteration), "items": 10}

    def algorithm_state(self) -> dict:
        return {"total": self.total}

    def load_algorithm_state(self, state) -> None:
        self.total = state["total"]


def _steps_and_values(run: RunDir) -> list[tuple[int, float]]:
    return [(row["step"], row["losses/value"]) for row in read_metrics(run) if "losses/value" in row]


def test_iteration_i_is_logged_at_step_i_and_the_checkpoint_holds_the_loop_state(tmp_path):
    algorithm = Counting(CountingConfig())
    history = algorithm.train(tmp_path / "run", progress=False)
    run = RunDir(tmp_path / "run")
    assert _steps_and_values(run) == [(i + 1, float(i)) for i in range(6)]
    assert [h["losses/value"] for h in history] == [float(i) for i in range(6)]
    assert all(h["charts/items_per_second"] > 0 for h in history)
    state = load_checkpoint(run.checkpoint_path)
    assert state["iteration"] == 6 and state["total"] == 15 and state["window"] == {}
    assert state["elapsed"] == algorithm.elapsed_seconds > 0


def test_scalars_are_averaged_over_log_every_iterations(tmp_path):
    Counting(CountingConfig(iterations=5, log_every=2)).train(tmp_path / "run", progress=False)
    assert _steps_and_values(RunDir(tmp_path / "run")) == [(2, 0.5), (4, 2.5), (5, 4.0)]


@pytest.mark.parametrize("die_at", [1, 3])  # before the first checkpoint (after 2 iterations), and after it
def test_a_killed_run_resumes_to_the_same_curve_without_logging_anything_twice(tmp_path, die_at):
    config = CountingConfig(log_every=1, checkpoint_every=2)
    Counting(config).train(tmp_path / "full", progress=False)
    with pytest.raises(KeyboardInterrupt):
        Counting(config, die_at=die_at).train(tmp_path / "killed", progress=False)
    run = RunDir(tmp_path / "killed")
    resumed = Counting(config)
    if run.has_checkpoint():
        resumed.load_state_dict(load_checkpoint(run.checkpoint_path))
    assert resumed.iteration == (2 if die_at == 3 else 0)
    resumed.train(run, progress=False)
    assert _steps_and_values(run) == _steps_and_values(RunDir(tmp_path / "full"))
    assert resumed.total == 15
    totals = [row["charts/items_total"] for row in read_metrics(run)]
    assert totals == [10.0 * (i + 1) for i in range(6)]  # the running count of items survives the resume


def test_a_window_cut_by_a_checkpoint_is_carried_across_the_resume(tmp_path):
    config = CountingConfig(iterations=4, log_every=3, checkpoint_every=2)
    Counting(config).train(tmp_path / "full", progress=False)
    with pytest.raises(KeyboardInterrupt):
        Counting(config, die_at=2).train(tmp_path / "killed", progress=False)
    resumed = Counting(config)
    resumed.load_state_dict(load_checkpoint(RunDir(tmp_path / "killed").checkpoint_path))
    resumed.train(tmp_path / "killed", progress=False)
    assert _steps_and_values(RunDir(tmp_path / "killed")) == [(3, 1.0), (4, 3.0)]
    assert _steps_and_values(RunDir(tmp_path / "full")) == [(3, 1.0), (4, 3.0)]


def test_the_time_limit_stops_after_one_iteration_says_how_to_resume_and_checkpoints(tmp_path, capsys):
    algorithm = Counting(CountingConfig(time_limit_seconds=0.0, checkpoint_every=100))
    assert len(algorithm.train(tmp_path / "run", progress=False)) == 1
    err = capsys.readouterr().err
    assert "time limit of 0 s reached: stopped at iteration 1 of 6" in err
    assert f"resume it from its checkpoint in {tmp_path / 'run'}" in err
    assert load_checkpoint(RunDir(tmp_path / "run").checkpoint_path)["iteration"] == 1
    assert len(algorithm.train(tmp_path / "run", progress=False)) == 1  # every call makes progress
    assert algorithm.iteration == 2


def test_torch_threads_is_applied_by_the_loop(tmp_path):
    before = torch.get_num_threads()
    try:
        Counting(CountingConfig(torch_threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


class Diverging(Counting):
    """Logs NaN from iteration ``nan_at`` on."""

    nan_at = 3

    def meta_iteration(self, iteration: int) -> dict[str, float]:
        scalars = super().meta_iteration(iteration)
        if iteration >= self.nan_at:
            scalars["losses/value"] = float("nan")
        return scalars


def test_a_non_finite_scalar_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match="training diverged at iteration 4: scalars losses/value"):
        Diverging(CountingConfig(checkpoint_every=1)).train(tmp_path / "run", progress=False)
    run = RunDir(tmp_path / "run")
    assert load_checkpoint(run.checkpoint_path)["iteration"] == 3
    assert [step for step, _ in _steps_and_values(run)] == [1, 2, 3]


def test_a_non_finite_parameter_stops_the_run(tmp_path):
    class NaNWeights(Counting):
        def trained_parameters(self):
            return [torch.tensor([1.0, float("nan") if self.iteration >= 1 else 0.0])]

    with pytest.raises(TrainingDiverged, match="iteration 2: the parameters are no longer finite"):
        NaNWeights(CountingConfig()).train(tmp_path / "run", progress=False)


def test_a_checkpoint_made_with_another_config_is_refused_naming_the_keys(tmp_path):
    @dataclass
    class Tuned(CountingConfig):
        lr: float = 0.1

    class TunedCounting(Counting):
        pass

    TunedCounting(Tuned()).train(tmp_path / "run", progress=False)
    state = load_checkpoint(RunDir(tmp_path / "run").checkpoint_path)
    TunedCounting(Tuned(lr=0.1, iterations=9)).load_state_dict(state)  # budget changes are allowed
    with pytest.raises(UserError, match="differs from the one its checkpoint was made with in lr"):
        TunedCounting(Tuned(lr=0.5)).load_state_dict(state)


def test_temporary_files_a_killed_write_left_are_removed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    Counting(CountingConfig(iterations=1)).train(run, progress=False)
    assert not list(run.glob(".*.tmp"))


@pytest.mark.parametrize("entry", ["checkpoint.pt", "metrics.jsonl", "config.yaml"])
def test_a_run_file_that_is_a_folder_is_refused_before_training(tmp_path, entry):
    (tmp_path / "run" / entry).mkdir(parents=True)
    algorithm = Counting(CountingConfig())
    with pytest.raises(UserError, match=f"{entry} is a folder"):
        algorithm.train(tmp_path / "run", progress=False)
    assert algorithm.iteration == 0
