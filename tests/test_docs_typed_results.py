"""No page types a result that a committed summary renders: the pages include the generated table instead
(``--8<-- "docs/results/generated/NAME.md"``), so a rerun that commits a new summary updates every page."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_spec = importlib.util.spec_from_file_location("results", ROOT / "scripts" / "results.py")
results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results)

_INTERVAL = re.compile(r"(-?\d+\.\d+) ± (\d+\.\d+)")


def rendered_intervals(data_dir: Path = results.DATA_DIR) -> dict[tuple[str, str], set[str]]:
    """Every ``mean ± ci`` the generated tables show, as (mean, ci) strings, with the files it comes from."""
    intervals: dict[tuple[str, str], set[str]] = {}
    for path in sorted(data_dir.glob("*.json")):
        table = results.summary_table(json.loads(path.read_text(encoding="utf-8")))
        for pair in _INTERVAL.findall(table):
            intervals.setdefault(pair, set()).add(path.name)
    for path in sorted(data_dir.glob("*_eval.csv")):  # a value column followed by its ci95 column
        for row in results._csv_rows(path):
            columns = list(row)
            for before, column in zip(columns, columns[1:], strict=False):
                if column == "ci95" and row[column] and not math.isnan(float(row[column])):
                    pair = (results._number(float(row[before])), results._number(float(row[column])))
                    intervals.setdefault(pair, set()).add(path.name)
    return intervals


def typed_results(text: str, intervals: dict[tuple[str, str], set[str]]) -> list[str]:
    """The rendered intervals ``text`` types, as "mean ± ci (summary)"; a % after either number (as the
    accuracy pages write them), ``+-`` for ``±``, and both numbers rounded to one decimal count as typing it too."""
    found = []
    for (mean, ci), sources in intervals.items():
        for m, c in {(mean, ci), (f"{float(mean):.1f}", f"{float(ci):.1f}")}:
            pattern = rf"(?<![\d.]){re.escape(m)}%?\s*(?:±|\+-|\+/-)\s*{re.escape(c)}(?![\d.]\d|\d)"
            if re.search(pattern, text):
                found.append(f"{mean} ± {ci} ({', '.join(sorted(sources))})")
                break
    return found


def _pages() -> list[Path]:
    skip = {DOCS / "results" / "generated", DOCS / "results" / "data"}
    return [page for page in sorted(DOCS.rglob("*.md")) if not any(page.is_relative_to(s) for s in skip)]


def test_no_page_types_a_result_that_a_summary_renders():
    intervals = rendered_intervals()
    typed = {
        str(page.relative_to(ROOT)): hits
        for page in _pages()
        if (hits := typed_results(page.read_text(encoding="utf-8"), intervals))
    }
    assert not typed, f'include docs/results/generated/NAME.md (--8<-- "...") instead of typing: {typed}'


def test_the_guard_sees_a_typed_result_in_the_forms_pages_write():
    intervals = rendered_intervals()
    assert len(intervals) > 50  # every committed summary's table, the sb3 evaluation too
    maml = next(pair for pair, source in intervals.items() if "maml-trpo-navigation2d.json" in source)
    sb3 = next(pair for pair, source in intervals.items() if "sb3_ppo_navigation2d_eval.csv" in source)
    for mean, ci in (maml, sb3):
        assert typed_results(f"| MAML-TRPO | **{mean} ± {ci}** |", intervals)
        assert typed_results(f"reaches {mean}% ± {ci}% on", intervals)
        assert typed_results(f"({mean} +- {ci})", intervals)
        assert typed_results(f"({float(mean):.1f} ± {float(ci):.1f}).", intervals)  # rounded to one decimal
        assert not typed_results(f"{mean} ± {ci}1 and 1{mean} ± {ci}", intervals)  # other numbers
    accuracy = next(pair for pair, source in intervals.items() if "relation-omniglot-5w1s.json" in source)
    relation = json.loads((ROOT / "docs/results/data/relation-omniglot-5w1s.json").read_text())["learners"]
    shown = (f"{100 * relation['relation']['mean'][0]:.2f}", f"{100 * relation['relation']['ci'][0]:.2f}")
    assert accuracy == shown  # accuracies as the table shows them, in percent
    # prose numbers, not in the "mean ± ci" form, are out of the guard's scope
    assert not typed_results("-37.6 after one step, -13.3 after one", intervals)
