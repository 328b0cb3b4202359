"""`metarl compare`: runs of one env on the same held-out tasks, on the axis of episodes of experience."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metarl.agents import MAMLTRPO, RL2, ReptilePG, RL2Config, TrainConfig, evaluate_run
from metarl.agents.compare import compare_runs, format_comparison, training_env_steps
from metarl.agents.config import InnerConfig, PolicyConfig
from metarl.agents.evaluate import format_results
from metarl.cli import main
from metarl.errors import UserError
from metarl.training import RunDir, read_metrics


def _tiny(algo: str, **changes) -> TrainConfig:
    settings = dict(
        algo=algo,
        iterations=2,
        meta_batch_size=3,
        episodes_per_task=4,
        torch_threads=1,
        policy=PolicyConfig(hidden_sizes=[8]),
        inner=InnerConfig(steps=1, lr=0.1),
    )
    settings.update(changes)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    MAMLTRPO(_tiny("maml-trpo")).train(root / "maml", progress=False)
    ReptilePG(_tiny("reptile", seed=3)).train(root / "reptile", progress=False)
    rl2 = RL2Config(episodes_per_trial=3, hidden_size=8, epochs=1, minibatches=1)
    RL2(_tiny("rl2", episodes_per_task=2, rl2=rl2)).train(root / "rl2", progress=False)
    return root


def test_runs_are_paired_on_the_first_runs_held_out_tasks_and_placed_by_episodes_of_experience(
    runs, tmp_path
):
    results = compare_runs([runs / "maml", runs / "reptile"], tmp_path / "out", num_tasks=4, adapt_steps=2)
    maml, reptile = results["learners"]["maml"], results["learners"]["reptile"]
    assert maml["experience"] == reptile["experience"] == [0, 4, 8]  # step j after j x 4 episodes
    assert maml["steps"] == [0, 1, 2] and maml["algo"] == "maml-trpo" and reptile["algo"] == "reptile"
    # Training env steps are the runs' running count: at most 2 iterations x 3 tasks x 4 episodes x 100 steps x
    # 2 sampling rounds (an episode ends early at the goal), and what the iterations' throughput says.
    for name in ("maml", "reptile"):
        rows = read_metrics(runs / name / "metrics.jsonl")
        counted = sum(row["charts/sps"] * row["charts/seconds_per_iteration"] for row in rows)
        steps = results["learners"][name]["training_env_steps"]
        assert steps == pytest.approx(counted, abs=1) and 3000 < steps <= 2 * 3 * 4 * 100 * 2
    # The first run's numbers are its own evaluation's: same held-out tasks, same noise.
    own = evaluate_run(runs / "maml", adapt_steps=2, num_tasks=4, baselines=[])
    np.testing.assert_array_equal(own["learners"]["maml-trpo"]["per_task"], maml["per_task"])
    assert own["learners"]["maml-trpo"]["experience"] == [0, 4, 8]
    # Reptile (seed 3) is evaluated on the maml run's (seed 0) tasks, not on its own.
    saved = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert saved["held_out_tasks"] == json.loads((runs / "maml" / "tasks.json").read_text())["tasks"]
    assert (tmp_path / "out" / "compare.png").stat().st_size > 0
    table = format_comparison(results)
    assert table.splitlines()[1].split()[-3:] == ["0", "4", "8"] and "reptile" in table


def test_points_a_run_was_not_measured_at_stay_blank(runs, tmp_path):
    results = compare_runs([runs / "maml", runs / "reptile"], tmp_path / "out", num_tasks=3, adapt_steps=1)
    results["learners"]["reptile"]["experience"] = [0, 5]  # as if it fine-tuned on 5 episodes per step
    header, _, maml_row, reptile_row = format_comparison(results).splitlines()[1:]
    assert header.split()[-3:] == ["0", "4", "5"]
    assert len(maml_row.split("±")) == 3 and len(reptile_row.split("±")) == 3


def test_runs_of_different_envs_or_untrained_runs_are_refused(runs, tmp_path):
    bandit = _tiny("maml-trpo", env="MetaRL/Bandit-K5-v0", iterations=1)
    MAMLTRPO(bandit).train(tmp_path / "bandit", progress=False)
    with pytest.raises(UserError, match="compare runs of one task distribution"):
        compare_runs([runs / "maml", tmp_path / "bandit"], tmp_path / "out")
    with pytest.raises(UserError, match="named twice"):
        compare_runs([runs / "maml", runs / "maml"], tmp_path / "out")


def test_the_cli_prints_the_table_and_says_where_the_files_are(runs, tmp_path, capsys):
    assert (
        main(
            [
                "compare",
                str(runs / "maml"),
                str(runs / "reptile"),
                "--output",
                str(tmp_path / "o"),
                "--tasks",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "same 3 held-out tasks" in out and str(tmp_path / "o" / "compare.png") in out
    assert main(["compare", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 2


def test_a_context_based_run_is_placed_by_its_episodes_and_evaluated_the_same_way_alone(runs, tmp_path):
    results = compare_runs([runs / "maml", runs / "rl2"], tmp_path / "out", num_tasks=4, adapt_steps=1)
    rl2 = results["learners"]["rl2"]
    assert rl2["experience"] == [0, 1, 2] and "steps" not in rl2  # one trial of 3 episodes
    own = evaluate_run(runs / "rl2", num_tasks=4)
    assert own["experience_episodes"] == 3 and "adapt_steps" not in own
    np.testing.assert_array_equal(own["learners"]["rl2"]["per_task"], rl2["per_task"])
    assert own["learners"]["rl2"]["experience"] == [0, 1, 2]
    longer = evaluate_run(runs / "rl2", num_tasks=4, experience_episodes=5, output=tmp_path / "five.json")
    assert np.array(longer["learners"]["rl2"]["per_task"]).shape == (4, 5)
    assert "episode 5" in format_results(longer)
    header = format_comparison(results).splitlines()[1].split()
    assert header[-4:] == ["0", "1", "2", "4"]  # maml: step 1 after 4 episodes; rl2: its three episodes


def test_runs_logged_before_the_running_count_get_it_back_from_their_rates(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    rows = [  # log_every=2: each row averages two iterations
        {"step": 2, "charts/sps": 1000.0, "charts/seconds_per_iteration": 0.5},
        {"step": 4, "charts/sps": 2000.0, "charts/seconds_per_iteration": 0.25},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert training_env_steps(RunDir(run)) == 2 * 500 + 2 * 500
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "losses/x": 1.0}) + "\n")
    assert training_env_steps(RunDir(run)) is None
