"""The README's headline results are the committed result summaries' numbers (docs/results/data/): the results
page is generated from those files, and the README, which GitHub shows as it is, may not drift from them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "results" / "data"


def _headline_rows() -> dict[str, list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Headline results", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def _cell(summary: str, learner: str, step: int) -> str:
    values = json.loads((DATA / summary).read_text())["learners"][learner]
    return f"{values['mean'][step]:.2f} ± {values['ci'][step]:.2f}"


@pytest.mark.parametrize(
    ("row", "summary", "learner"),
    [
        ("MAML-TRPO (`maml-trpo/navigation2d`)", "maml-trpo-navigation2d.json", "maml-trpo"),
        ("Reptile-PG (`reptile/navigation2d`)", "reptile-navigation2d.json", "reptile"),
        ("pretrained on the task mixture", "maml-trpo-navigation2d.json", "pretrained"),
        ("RL² (`rl2/navigation2d`): its 1st and 2nd episode on the task", "rl2-navigation2d.json", "rl2"),
    ],
)
def test_a_headline_row_is_its_summary_before_and_after_one_step(row, summary, learner):
    assert _headline_rows()[row][:2] == [_cell(summary, learner, 0), _cell(summary, learner, 1)]


def test_the_oracle_and_sb3_rows_are_their_committed_numbers():
    rows = _headline_rows()
    assert rows["oracle (sees the goal)"][0] == _cell("maml-trpo-navigation2d.json", "oracle", 0)
    with open(DATA / "sb3_ppo_navigation2d_eval.csv", newline="") as f:
        mixture = next(
            r
            for r in csv.DictReader(f)
            if r["trained_on"] == "mixture" and r["evaluated_on"] == "held-out goals"
        )
    expected = f"{float(mixture['mean_return']):.2f} ± {float(mixture['ci95']):.2f}"
    assert rows["Stable-Baselines3 PPO on the task mixture (no adaptation)"][0] == expected


def test_the_halfcheetah_sentence_is_the_comparison_summary():
    text = (ROOT / "README.md").read_text(encoding="utf-8").split("## Headline results", 1)[1]
    text = " ".join(text.split())  # the sentence wraps
    pearl = _cell("halfcheetah-vel-compare.json", "pearl-halfcheetah-vel-small", 1)
    values = json.loads((DATA / "halfcheetah-vel-compare.json").read_text())["learners"][
        "maml-trpo-halfcheetah-vel"
    ]
    maml = f"{values['mean'][1]:.2f} ± {values['ci'][1]:.2f}"  # its first step, at 20 episodes of experience
    assert values["experience"][1] == 20
    assert f"PEARL after one episode on a held-out task scores {pearl}" in text
    assert f"MAML-TRPO after its step of 20 episodes {maml}" in text
