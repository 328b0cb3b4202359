"""scripts/duan_tables.py: RL^2 results read from JSON, cells formatted with the paper's numbers, one quick row."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from metarl.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("duan_tables", ROOT / "scripts" / "duan_tables.py")
duan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(duan)


def test_rl2_results_fill_their_cells_and_others_stay_blank(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"per_task": [6.0, 7.0, 8.0]}))
    (tmp_path / "b.json").write_text(json.dumps({"mean": 150.0, "ci": 3.0}))
    rl2 = duan.load_rl2([f"k5-n10={tmp_path / 'a.json'}", f"mdp-n10={tmp_path / 'b.json'}"])
    assert rl2["k5-n10"]["mean"] == pytest.approx(7.0)
    table = {
        "bandits": [{"arms": 5, "pulls": 10, "results": {}}, {"arms": 10, "pulls": 10, "results": {}}],
        "mdps": [{"episodes": 10, "results": {}}],
    }
    duan.attach_rl2(table, rl2)
    assert duan.format_cell(table["bandits"][0]["results"]["rl2"]).endswith("(6.7)")
    assert duan.format_cell(table["bandits"][1]["results"]["rl2"]) == " (6.7)"  # blank, paper only
    assert duan.format_cell(table["mdps"][0]["results"]["rl2"]) == "150.0 ± 3.0 (156.2)"


def test_an_rl2_eval_json_counts_each_trial_as_the_sum_of_its_episodes(tmp_path):
    evaluation = {
        "env": "MetaRL/TabularMDP-v0",
        "algo": "rl2",
        "meta_iterations": 500,
        "learners": {"rl2": {"per_task": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}},
    }
    (tmp_path / "eval.json").write_text(json.dumps(evaluation))
    rl2 = duan.load_rl2([f"mdp-n10={tmp_path / 'eval.json'}"])["mdp-n10"]
    assert rl2["mean"] == pytest.approx(10.5)  # trials of 6 and 15
    assert rl2["source"] == {"env": "MetaRL/TabularMDP-v0", "meta_iterations": 500, "tasks": 2}


@pytest.mark.parametrize("spec", ["k5-n10", "nonsense=x.json", "k5-n10=/does/not/exist.json"])
def test_bad_rl2_arguments_are_user_errors(spec):
    with pytest.raises(UserError):
        duan.load_rl2([spec])


def test_a_bandit_row_tunes_on_separate_tasks_and_reports_the_paper():
    args = SimpleNamespace(tasks=40, tuning_tasks=10, seed=0)
    grids = {"random": [duan.refs.RandomArm()], "ucb1": [duan.refs.UCB1(c) for c in (0.2, 1.0)]}
    row = duan.bandit_row(5, 10, args, grids)
    assert row["results"]["ucb1"]["published"] == 6.7 and row["results"]["random"]["published"] == 5.0
    assert row["results"]["ucb1"]["settings"]["c"] in (0.2, 1.0)
    assert row["results"]["ucb1"]["mean"] > row["results"]["random"]["mean"]


def test_every_published_row_has_every_column():
    for values in duan.PUBLISHED_BANDITS.values():
        assert set(values) == set(duan.BANDIT_COLUMNS)
    for values in duan.PUBLISHED_MDPS.values():
        assert set(values) == set(duan.MDP_COLUMNS)


def test_references_are_reused_and_only_the_rl2_column_is_refilled(tmp_path, capsys):
    tables = {
        "format": 1,
        "protocol": {"tasks": 1000},
        "bandits": [
            {"arms": 5, "pulls": 10, "results": {"random": {"mean": 5.0, "ci": 0.1}, "rl2": {"mean": 1.0}}}
        ],
        "mdps": [{"episodes": 10, "results": {"psrl": {"mean": 140.0, "ci": 1.0}}}],
    }
    (tmp_path / "tables.json").write_text(json.dumps(tables))
    (tmp_path / "cell.json").write_text(json.dumps({"mean": 150.0, "ci": 3.0}))
    out = tmp_path / "new.json"
    code = duan.main(
        [
            "--references",
            str(tmp_path / "tables.json"),
            "--json",
            str(out),
            "--rl2",
            f"mdp-n10={tmp_path / 'cell.json'}",
        ]
    )
    assert code == 0
    written = json.loads(out.read_text())
    assert written["bandits"][0]["results"]["random"] == {"mean": 5.0, "ci": 0.1}
    assert written["bandits"][0]["results"]["rl2"] == {"published": 6.7}  # not passed again: blank
    assert written["mdps"][0]["results"]["rl2"]["mean"] == 150.0
    assert "150.0 ± 3.0 (156.2)" in capsys.readouterr().out


def test_a_references_file_that_is_not_tables_is_a_user_error(tmp_path, capsys):
    (tmp_path / "x.json").write_text(json.dumps({"learners": {}}))
    assert duan.main(["--references", str(tmp_path / "x.json")]) == 2
    assert "not a tables file" in capsys.readouterr().err
