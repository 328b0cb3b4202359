"""scripts/results.py: eval.json files trimmed to summaries, and summaries rendered as tables and plots."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("results", ROOT / "scripts" / "results.py")
results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results)

META_RL_EVAL = {
    "env": "MetaRL/TabularMDP-v0",
    "algo": "maml-trpo",
    "run": "/somewhere/runs/maml-trpo-tabularmdp-s0",
    "meta_iterations": 500,
    "baseline_iterations": 500,
    "tasks": 40,
    "adapt_steps": 1,
    "episodes_per_task": 20,
    "later_steps_lr_scale": 1.0,
    "inner": {"steps": 1, "lr": 0.1, "algorithm": "vpg"},
    "baselines_copied_from": {},
    "learners": {
        "maml-trpo": {
            "steps": [0, 1],
            "mean": [10.0, 13.5],
            "ci": [0.5, 0.25],
            "per_task": [[1.0, 2.0]] * 40,
        },
        "oracle": {"steps": [0, 1], "mean": [14.0, 14.0], "ci": [float("nan"), float("nan")], "per_task": []},
    },
}
FEW_SHOT_EVAL = {
    "metric": "accuracy",
    "episodes": 600,
    "mean": 0.95,
    "ci95": 0.01,
    "per_step": {"steps": [0, 1, 2], "mean": [0.2, 0.9, 0.95], "ci": [0.02, 0.01, 0.01]},
    "learner": "maml",
    "dataset": "omniglot",
    "split": "test",
    "split_scheme": "vinyals",
    "ways": 5,
    "shots": 1,
    "queries": 15,
    "eval_seed": 1234,
    "iterations": 60000,
}


def test_extract_keeps_the_protocol_and_the_curves_only(tmp_path):
    (tmp_path / "eval.json").write_text(json.dumps(META_RL_EVAL))
    path = results.extract(tmp_path / "eval.json", "maml-trpo_tabular-mdp", tmp_path / "data")
    summary = json.loads(path.read_text())
    assert path.name == "maml-trpo_tabular-mdp.json" and path.stat().st_size < 1000
    assert summary["task"] == "MetaRL/TabularMDP-v0" and summary["iterations"] == 500
    assert summary["protocol"]["inner_lr"] == 0.1 and summary["protocol"]["tasks"] == 40
    assert summary["learners"]["maml-trpo"] == {"steps": [0, 1], "mean": [10.0, 13.5], "ci": [0.5, 0.25]}


def test_few_shot_summary():
    summary = results.summary_of(FEW_SHOT_EVAL)
    assert (summary["kind"], summary["task"], summary["metric"]) == (
        "few-shot",
        "omniglot 5-way 1-shot",
        "query accuracy",
    )
    assert summary["learners"] == {"maml": FEW_SHOT_EVAL["per_step"]}
    assert summary["protocol"]["split_scheme"] == "vinyals"
    finn = results.summary_of({**FEW_SHOT_EVAL, "split_scheme": "finn"})
    assert finn["task"] == "omniglot 5-way 1-shot (finn split)" and finn["protocol"]["split_scheme"] == "finn"


def test_extract_rejects_other_json():
    with pytest.raises(ValueError, match="not an eval.json"):
        results.summary_of({"mean": 1.0})


def test_render_tables_plots_and_missing_envs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "maml-trpo_tabular-mdp.json").write_text(json.dumps(results.summary_of(META_RL_EVAL)))
    for name in ("sb3_ppo_navigation2d_eval.csv", "sb3_ppo_navigation2d_curve.csv"):
        shutil.copy(results.DATA_DIR / name, data / name)
    out = tmp_path / "generated"
    markdown = results.render(data, out).read_text()

    assert "| learner | after 0 steps | after 1 step |" in markdown
    assert "| maml-trpo | 10.00 ± 0.50 | 13.50 ± 0.25 |" in markdown
    assert "| oracle | 14.00 | 14.00 |" in markdown  # an unknown interval is left out
    assert "| mixture | held-out goals | 40 | -38.95 | 4.40 |" in markdown
    assert (
        "| mixture | held-out goals | 40 | -38.95 | 4.40 |"
        in (out / "sb3_ppo_navigation2d_eval.md").read_text()
    )
    assert "![MetaRL/TabularMDP-v0: maml-trpo](generated/maml-trpo_tabular-mdp.png)" in markdown
    for png in ("maml-trpo_tabular-mdp.png", "sb3_ppo_navigation2d_curve.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")
    missing = markdown.split("without a committed meta-learner summary", 1)[1]
    assert "`MetaRL/Navigation2D-v0`" in missing and "TabularMDP" not in missing

    before = (out / "summaries.md").stat().st_mtime_ns
    results.render(data, out)  # nothing changed: nothing rewritten, so `mkdocs serve` does not loop
    assert (out / "summaries.md").stat().st_mtime_ns == before


def test_command_line(tmp_path, capsys):
    (tmp_path / "eval.json").write_text(json.dumps(FEW_SHOT_EVAL))
    assert (
        results.main(["extract", str(tmp_path / "eval.json"), "--name", "x", "--data-dir", str(tmp_path)])
        == 0
    )
    assert json.loads((tmp_path / "x.json").read_text())["algo"] == "maml"
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("command", [[], ["extract"], ["curve"], ["render"]])
def test_every_help_page_prints(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        results.main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


COMPARE = {
    "env": "MetaRL/Navigation2D-v0",
    "tasks": 40,
    "held_out_tasks": [{"goal": [0.1, 0.2]}] * 40,
    "task_seed": 0,
    "learners": {
        "maml": {
            "algo": "maml-trpo",
            "meta_iterations": 500,
            "training_env_steps": 8.0e7,
            "steps": [0, 1],
            "experience": [0, 20],
            "mean": [-37.6, -13.3],
            "ci": [4.7, 2.7],
            "per_task": [],
        },
        "rl2": {
            "algo": "rl2",
            "meta_iterations": 300,
            "training_env_steps": 1.2e7,
            "experience": [0, 1, 2],
            "mean": [-20.0, -6.0, -5.5],
            "ci": [1.0, 0.5, 0.5],
            "per_task": [],
        },
    },
}


def test_a_comparison_is_tabled_by_episodes_of_experience_with_blanks_where_a_run_was_not_measured(tmp_path):
    summary = results.summary_of(COMPARE)
    assert summary["kind"] == "comparison" and summary["axis"] == "experience"
    assert summary["algo"] == "maml-trpo vs rl2" and "per_task" not in summary["learners"]["rl2"]
    table = results.summary_table(summary)
    header = "| learner | train env steps | after 0 episodes | after 1 episode | after 2 episodes | after 20 episodes |"
    assert header in table
    assert "| maml | 8e+07 | -37.60 ± 4.70 |  |  | -13.30 ± 2.70 |" in table
    assert "| rl2 | 1.2e+07 | -20.00 ± 1.00 | -6.00 ± 0.50 | -5.50 ± 0.50 |  |" in table
    data = tmp_path / "data"
    data.mkdir()
    (data / "navigation2d-compare.json").write_text(json.dumps(summary))
    markdown = results.render(data, tmp_path / "generated").read_text()
    assert "maml-trpo vs rl2" in markdown and "maml 500, rl2 300 meta-iterations" in markdown
    assert (tmp_path / "generated" / "navigation2d-compare.png").is_file()
    # A comparison is not a meta-learner's own summary: the env still counts as without one.
    assert "`MetaRL/Navigation2D-v0`" in markdown.split("without a committed meta-learner summary", 1)[1]


def test_accuracies_are_tabled_in_percent():
    table = results.summary_table(results.summary_of(FEW_SHOT_EVAL))
    assert "| learner | after 0 steps | after 1 step | after 2 steps |" in table
    assert "| maml | 20.00 ± 2.00 | 90.00 ± 1.00 | 95.00 ± 1.00 |" in table


def test_a_learner_measured_once_is_headed_by_its_metric():
    evaluation = {**FEW_SHOT_EVAL, "learner": "protonet"}
    evaluation["per_step"] = {"steps": [0], "mean": [0.9], "ci": [0.01]}
    table = results.summary_table(results.summary_of(evaluation))
    assert table.splitlines()[0] == "| learner | query accuracy (%) |"
    assert "| protonet | 90.00 ± 1.00 |" in table


def test_a_published_number_is_a_last_row_under_its_step(tmp_path, capsys):
    (tmp_path / "eval.json").write_text(json.dumps(FEW_SHOT_EVAL))
    argv = ["extract", str(tmp_path / "eval.json"), "--name", "x", "--data-dir", str(tmp_path)]
    assert (
        results.main([*argv, "--published", "98.7", "--source", "Finn et al. 2017, Table 1", "--at", "1"])
        == 0
    )
    summary = json.loads((tmp_path / "x.json").read_text())
    assert summary["published"] == {"value": 98.7, "source": "Finn et al. 2017, Table 1", "at": 1}
    assert (
        results.summary_table(summary).splitlines()[-1]
        == "| published (Finn et al. 2017, Table 1) |  | 98.70 |  |"
    )
    del summary["published"]["at"]  # default: the last column
    assert results.summary_table(summary).splitlines()[-1].endswith("|  |  | 98.70 |")
    with pytest.raises(SystemExit):
        results.main([*argv, "--published", "98.7"])
    assert "--published and --source go together" in capsys.readouterr().err


def test_the_duan_tables_are_rendered_from_their_json(tmp_path):
    data = tmp_path / "data"
    (data / "duan2016").mkdir(parents=True)
    tables = json.loads((ROOT / "docs/results/data/duan2016/tables.json").read_text())
    tables["bandits"][0]["results"]["ts"].update(mean=1.3, ci=0.5)
    (data / "duan2016" / "tables.json").write_text(json.dumps(tables))
    results.render(data, tmp_path / "generated")
    markdown = (tmp_path / "generated" / "duan2016.md").read_text()
    assert markdown.startswith("Table 1: Bernoulli bandits")
    row = markdown.splitlines()[4]  # the first bandit row, K=5 n=10
    assert (
        row.startswith("| 5 | 10 |")
        and f"| 1.3 ± 0.5 ({tables['bandits'][0]['results']['ts']['published']}) |" in row
    )


def test_verification_metrics_are_kept_and_tabled_beside_the_accuracy():
    evaluation = {**FEW_SHOT_EVAL, "learner": "siamese"}
    evaluation["per_step"] = {"steps": [0], "mean": [0.8], "ci": [0.01]}
    evaluation["extra"] = {
        "verification_auc": {"mean": 0.9322, "ci95": 0.0006},
        "verification_eer": {"mean": 0.1199, "ci95": 0.0013},
    }
    summary = results.summary_of(evaluation)
    assert summary["learners"]["siamese"]["extra"] == {
        "verification_auc": [0.9322, 0.0006],
        "verification_eer": [0.1199, 0.0013],
    }
    lines = results.summary_table(summary).splitlines()
    assert lines[0] == "| learner | query accuracy (%) | verification ROC AUC | verification EER |"
    assert lines[2] == "| siamese | 80.00 ± 1.00 | 0.932 ± 0.001 | 0.120 ± 0.001 |"


def test_a_success_rate_is_kept_and_tabled_under_the_returns():
    evaluation = json.loads(json.dumps(META_RL_EVAL))
    evaluation["env"] = "MetaRL/MW-ML1-reach-v3-v0"
    evaluation["learners"]["maml-trpo"]["success"] = {
        "mean": [0.1, 0.25],
        "ci": [0.05, 0.125],
        "per_task": [],
    }
    summary = results.summary_of(evaluation)
    assert summary["learners"]["maml-trpo"]["success"] == {"mean": [0.1, 0.25], "ci": [0.05, 0.125]}
    assert "success" not in summary["learners"]["oracle"]
    lines = results.summary_table(summary).splitlines()
    assert lines[2:4] == [
        "| maml-trpo | 10.00 ± 0.50 | 13.50 ± 0.25 |",
        "| maml-trpo: success rate (%) | 10.00 ± 5.00 | 25.00 ± 12.50 |",
    ]


def test_numbered_metrics_are_tabled_in_numeric_order():
    """MANN's accuracy by instance: the 10th after the 9th, not after the 1st."""
    evaluation = {**FEW_SHOT_EVAL, "learner": "mann"}
    evaluation["per_step"] = {"steps": [0], "mean": [0.8], "ci": [0.01]}
    evaluation["extra"] = {f"instance_{k}_accuracy": {"mean": k / 10, "ci95": 0.01} for k in (10, 1, 2)}
    header = results.summary_table(results.summary_of(evaluation)).splitlines()[0]
    assert header.endswith("| instance 1 accuracy | instance 2 accuracy | instance 10 accuracy |")


def _metrics_file(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_learning_curve_of_two_runs_is_written_and_plotted_on_its_own(tmp_path, capsys):
    pearl = _metrics_file(
        tmp_path / "pearl.jsonl",
        [
            {"step": i, "meta/return_episode2": -100.0 + i, "charts/env_steps_total": 5000.0 * i}
            for i in (1, 2)
        ],
    )
    maml = _metrics_file(
        tmp_path / "maml.jsonl",
        [
            {"step": 1, "meta/return_after_step1": -300.0, "charts/env_steps_total": 320000.0},
            {"step": 2, "losses/kl": 0.01},  # a record without the metric is skipped
            {"step": 3, "meta/return_after_step1": -250.0, "charts/env_steps_total": 960000.0},
        ],
    )
    data = tmp_path / "data"
    argv = ["curve", "--name", "hc", "--data-dir", str(data)]
    argv += ["--series", "PEARL", str(pearl), "meta/return_episode2"]
    argv += ["--series", "MAML", str(maml), "meta/return_after_step1"]
    assert results.main(argv) == 0
    rows = (data / "hc_curve.csv").read_text().splitlines()
    assert rows == [
        "series,env_steps_total,mean_return",
        "PEARL,5000.0,-99.0",
        "PEARL,10000.0,-98.0",
        "MAML,320000.0,-300.0",
        "MAML,960000.0,-250.0",
    ]
    out = tmp_path / "out"
    markdown = results.render(data, out).read_text()
    assert "### hc\n" in markdown and "hc_curve.png" in markdown and "Evaluation" not in markdown
    assert (out / "hc_curve.png").read_bytes().startswith(b"\x89PNG")


def test_a_curve_of_a_metric_the_run_never_logged_is_refused_in_one_line(tmp_path, capsys):
    run = _metrics_file(tmp_path / "m.jsonl", [{"step": 1, "charts/env_steps_total": 1.0}])
    argv = ["curve", "--name", "x", "--data-dir", str(tmp_path), "--series", "a", str(run), "meta/nope"]
    with pytest.raises(SystemExit) as exit_info:
        results.main(argv)
    assert exit_info.value.code == 2
    assert "no record with both charts/env_steps_total and meta/nope" in capsys.readouterr().err
    assert not (tmp_path / "x_curve.csv").exists()
    argv[7] = str(tmp_path / "missing.jsonl")
    with pytest.raises(SystemExit) as exit_info:
        results.main(argv)
    assert exit_info.value.code == 2 and "missing.jsonl does not exist" in capsys.readouterr().err


def test_the_few_shot_summaries_of_one_dataset_are_tabled_side_by_side_by_setting():
    maml = results.summary_of({**FEW_SHOT_EVAL, "train_seconds": 7200.4})
    assert maml["train_seconds"] == 7200
    twenty = results.summary_of({**FEW_SHOT_EVAL, "learner": "protonet", "ways": 20})
    twenty["published"] = {"value": 96.0, "source": "Snell et al. 2017, Table 1"}
    mann = results.summary_of({**FEW_SHOT_EVAL, "learner": "mann"})  # its own sequence task: another name
    finn = results.summary_of({**FEW_SHOT_EVAL, "split_scheme": "finn"})
    mtl = results.summary_of({**FEW_SHOT_EVAL, "learner": "mtl"})
    table = results.fewshot_comparison(
        {
            "mtl-ss-ht-omniglot-5w1s": mtl,  # two variants of one algorithm: named as their summaries
            "mtl-ss-omniglot-5w1s": mtl,
            "protonet-omniglot-20w1s": twenty,
            "maml-omniglot-5w1s-finn": finn,
            "maml-omniglot-5w1s": maml,
            "mann-omniglot-5way": mann,
        }
    )
    rows = table.splitlines()
    assert rows[0].startswith("| setting | split | learner | query accuracy (%) | published |")
    assert rows[2:] == [
        "| 5-way 1-shot | vinyals | maml | 95.00 ± 1.00 |  | 60,000 | 2.0 | `maml-omniglot-5w1s.json` |",
        "| 5-way 1-shot | vinyals | mtl-ss | 95.00 ± 1.00 |  | 60,000 |  | `mtl-ss-omniglot-5w1s.json` |",
        "| 5-way 1-shot | vinyals | mtl-ss-ht | 95.00 ± 1.00 |  | 60,000 |  | `mtl-ss-ht-omniglot-5w1s.json` |",
        "| 5-way 1-shot | finn | maml | 95.00 ± 1.00 |  | 60,000 |  | `maml-omniglot-5w1s-finn.json` |",
        "| 20-way 1-shot | vinyals | protonet | 95.00 ± 1.00 | 96.00 (Snell et al. 2017, Table 1) | 60,000 |  "
        "| `protonet-omniglot-20w1s.json` |",
    ]
