"""The site's results, generated from the result summaries committed under ``docs/results/data/``.

Nothing on the results page is typed by hand: a rerun that writes a new summary updates the page at the next
build (``mkdocs.yml`` names this file as a hook, so ``make docs`` runs ``render``).

Three commands::

    python scripts/results.py extract runs/maml-trpo-navigation2d-s0/eval.json --name maml-trpo_navigation2d
    python scripts/results.py curve --name pearl-halfcheetah-vel \
        --series "PEARL, episode 2" runs/pearl-hc/metrics.jsonl meta/return_episode2
    python scripts/results.py render     # docs/results/generated/: summaries.md and one PNG per figure

``extract`` trims the ``eval.json`` of ``metarl evaluate`` or ``metarl fewshot train|evaluate``, or the
``compare.json`` of ``metarl compare``, to a summary,
``docs/results/data/NAME.json`` (a few hundred bytes: the per-task and per-episode values are dropped)::

    {
      "format": 1,
      "kind": "meta-rl",                     # or "few-shot", or "comparison" (metarl compare)
      "task": "MetaRL/Navigation2D-v0",      # the env id, or the dataset with its ways and shots
      "algo": "maml-trpo",
      "metric": "mean return",               # or "query accuracy" / "query MSE"
      "axis": "steps",                       # or "experience": episodes of experience (RL², PEARL, compare)
      "iterations": 500,                     # meta-iterations of the run
      "train_seconds": 13153,                # a few-shot run's training wall-clock, when its eval.json has it
      "protocol": {"tasks": 40, "episodes_per_task": 20, "inner_lr": 0.1, ...},
      "learners": {"maml-trpo": {"steps": [0, 1, 2, 3], "mean": [...], "ci": [...]}, "pretrained": ...},
      # a few-shot learner's further per-episode metrics, [mean, ci]: "extra": {"verification_auc": [0.93, 0.001]}
      # a meta-RL learner on an env that reports success (Meta-World): "success": {"mean": [...], "ci": [...]}
      "published": {"value": 98.1, "at": 0, "source": "Vinyals et al. 2016, Table 1"}   # optional
    }

``published`` (``extract --published VALUE --source TEXT [--at STEP]``) is the paper's number for the same
protocol, as the paper prints it (accuracies in %), shown as a last row of the table under the column ``at``
(default: the last one).

``ci`` holds 95% confidence-interval half-widths. ``render`` writes, for every summary, a table (one row per
learner, one column per adaptation step) and its adaptation-curve plot, also the table alone as ``NAME.md`` for
the pages that discuss one result; for every CSV file ``NAME_eval.csv`` (as ``scripts/sb3_ppo_navigation.py``
writes it) the evaluation as a table (also alone as ``NAME_eval.md``); for every ``NAME_curve.csv`` (that script's,
or ``curve``'s: one metric of ``metrics.jsonl`` files against the runs' env steps) the learning curves as a plot
``NAME_curve.png`` (the curve file's columns: series, x, y, ...; the x axis is logarithmic when it spans more than
two decades); the tables of ``duan2016/tables.json`` (``scripts/duan_tables.py``) as ``duan2016.md``; the few-shot
summaries named ``ALGO-omniglot-{W}w{S}s`` side by side as ``fewshot-omniglot.md``; and the list of metarl's
task distributions that have no committed summary yet. The generated folder is not committed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "docs" / "results" / "data"
OUT_DIR = ROOT / "docs" / "results" / "generated"
FORMAT = 1
METRIC_LABELS = {"verification_auc": "verification ROC AUC", "verification_eer": "verification EER"}


def summary_of(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The summary of one ``eval.json`` (meta-RL or few-shot), in the format of this module's docstring.

    Raises:
        ValueError: ``evaluation`` is neither a meta-RL nor a few-shot evaluation.
    """
    if "held_out_tasks" in evaluation:  # metarl compare
        return {
            "format": FORMAT,
            "kind": "comparison",
            "task": evaluation["env"],
            "algo": " vs ".join(learner["algo"] for learner in evaluation["learners"].values()),
            "metric": "mean return",
            "axis": "experience",
            "iterations": {name: v["meta_iterations"] for name, v in evaluation["learners"].items()},
            "protocol": {"tasks": evaluation["tasks"]},
            "learners": {
                name: {key: learner[key] for key in ("experience", "mean", "ci", "training_env_steps")}
                for name, learner in evaluation["learners"].items()
            },
        }
    if "learners" in evaluation:  # metarl evaluate
        gradient = "adapt_steps" in evaluation  # else a context-based agent (RL², PEARL)
        if gradient:
            protocol = {
                "tasks": evaluation["tasks"],
                "episodes_per_task": evaluation["episodes_per_task"],
                "inner_lr": evaluation["inner"]["lr"],
                "later_steps_lr_scale": evaluation["later_steps_lr_scale"],
                "baseline_iterations": evaluation["baseline_iterations"],
            }
        else:
            protocol = {
                "tasks": evaluation["tasks"],
                "experience_episodes": evaluation["experience_episodes"],
            }
        axis = "steps" if gradient else "experience"
        return {
            "format": FORMAT,
            "kind": "meta-rl",
            "task": evaluation["env"],
            "algo": evaluation["algo"],
            "metric": "mean return",
            "axis": axis,
            "iterations": evaluation["meta_iterations"],
            "protocol": protocol,
            "learners": {
                name: {
                    **{key: learner[key] for key in (axis, "mean", "ci")},
                    # an env that reports success (Meta-World): the success rate at the same points
                    **(
                        {"success": {key: learner["success"][key] for key in ("mean", "ci")}}
                        if "success" in learner
                        else {}
                    ),
                }
                for name, learner in evaluation["learners"].items()
            },
        }
    if "per_step" in evaluation:  # metarl fewshot train / evaluate
        regression = evaluation["metric"] == "mse"
        task = evaluation["dataset"]
        if not regression:
            task += f" {evaluation['ways']}-way {evaluation['shots']}-shot"
        if evaluation.get("split_scheme", "vinyals") != "vinyals":  # Omniglot's other splits are other tasks
            task += f" ({evaluation['split_scheme']} split)"
        return {
            "format": FORMAT,
            "kind": "few-shot",
            "task": task,
            "algo": evaluation["learner"],
            "metric": "query MSE" if regression else "query accuracy",
            "iterations": evaluation.get("iterations"),
            **(
                {"train_seconds": round(evaluation["train_seconds"])}
                if evaluation.get("train_seconds") is not None
                else {}
            ),
            "protocol": {
                "episodes": evaluation["episodes"],
                "queries": evaluation["queries"],
                "split": evaluation["split"],
                **({"split_scheme": evaluation["split_scheme"]} if "split_scheme" in evaluation else {}),
                **({"eval_seed": evaluation["eval_seed"]} if "eval_seed" in evaluation else {}),
            },
            "learners": {
                evaluation["learner"]: {
                    **{key: evaluation["per_step"][key] for key in ("steps", "mean", "ci")},
                    # further per-episode metrics (verification ROC AUC and EER): [mean, ci]
                    **(
                        {"extra": {k: [v["mean"], v["ci95"]] for k, v in evaluation["extra"].items()}}
                        if evaluation.get("extra")
                        else {}
                    ),
                }
            },
        }
    raise ValueError("not an eval.json of metarl evaluate or metarl fewshot train/evaluate")


def extract(
    eval_path: Path, name: str, data_dir: Path = DATA_DIR, published: dict[str, Any] | None = None
) -> Path:
    """Write the summary of ``eval_path`` as ``data_dir/NAME.json`` (atomically) and return its path.

    Args:
        published: ``{"value", "source"[, "at"]}``, the paper's number for the same protocol (see the module's
            docstring).
    """
    from metarl.training.io import atomic_write_text

    summary = summary_of(json.loads(eval_path.read_text(encoding="utf-8")))
    if published is not None:
        summary["published"] = published
    return atomic_write_text(data_dir / f"{name}.json", json.dumps(summary, indent=1) + "\n")


def learning_curve(
    name: str,
    series: list[tuple[str, Path, str]],
    x: str = "charts/env_steps_total",
    data_dir: Path = DATA_DIR,
    y_label: str = "mean_return",
) -> Path:
    """Write ``data_dir/NAME_curve.csv`` (atomically): for each ``(label, metrics.jsonl, metric)``, the metric
    of every logged iteration against ``x`` (by default the run's env steps so far), in a column named
    ``y_label``; returns its path.

    Raises:
        ValueError: a file that does not exist or has no record with both keys.
    """
    from metarl.training.io import atomic_open
    from metarl.training.logger import read_metrics

    rows = []
    for label, metrics_path, metric in series:
        if not Path(metrics_path).is_file():
            raise ValueError(f"{metrics_path} does not exist: pass a run's metrics.jsonl")
        records = [r for r in read_metrics(metrics_path) if metric in r and x in r]
        if not records:
            raise ValueError(f"{metrics_path} has no record with both {x} and {metric}")
        rows += [(label, r[x], r[metric]) for r in records]
    path = data_dir / f"{name}_curve.csv"
    with atomic_open(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(["series", x.rsplit("/", 1)[-1], y_label])
        writer.writerows(rows)
    return path


def _number(value: float, digits: int = 2) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _with_ci(mean: float, ci: float, digits: int = 2) -> str:
    if ci is None or math.isnan(ci):
        return _number(mean, digits)
    return f"{_number(mean, digits)} ± {_number(ci, digits)}"


def _columns(summary: dict[str, Any], points: list[int]) -> list[str]:
    """The column headers of a summary's table: "after 1 step", "after 2 episodes", ...; a learner measured
    once, without adapting (a metric-based few-shot learner), gets its metric as the one header."""
    axis = summary.get("axis", "steps")
    if axis == "steps" and points == [0]:
        return [summary["metric"] + (" (%)" if summary["metric"] == "query accuracy" else "")]
    unit = "step" if axis == "steps" else "episode"
    return [f"after {x} {unit}{'' if x == 1 else 's'}" for x in points]


def summary_table(summary: dict[str, Any]) -> str:
    """The markdown table of a summary: one row per learner, one column per adaptation step, or per number
    of episodes of experience on the task (a blank where a learner was not measured)."""
    axis = summary.get("axis", "steps")
    points = sorted({x for learner in summary["learners"].values() for x in learner[axis]})
    extra = ["train env steps"] if summary["kind"] == "comparison" else []
    metrics = sorted(
        {k for learner in summary["learners"].values() for k in learner.get("extra", {})},
        key=lambda name: [
            int(part) if part.isdigit() else part for part in name.split("_")
        ],  # instance_2 < _10
    )
    lines = [
        "| learner | "
        + " | ".join(
            extra + _columns(summary, points) + [METRIC_LABELS.get(m, m.replace("_", " ")) for m in metrics]
        )
        + " |",
        "|---|" + "---|" * (len(extra) + len(points) + len(metrics)),
    ]
    percent = 100.0 if summary["metric"] == "query accuracy" else 1.0  # accuracies in %, as papers give them
    for name, learner in summary["learners"].items():
        pairs = [
            tuple(None if v is None else v * percent for v in (m, c))
            for m, c in zip(learner["mean"], learner["ci"], strict=True)
        ]
        at = dict(zip(learner[axis], pairs, strict=True))
        cells = [_with_ci(*at[x]) if x in at else "" for x in points]
        if extra:
            steps = learner["training_env_steps"]
            cells.insert(0, "" if steps is None else f"{steps:.3g}")
        cells += [
            _with_ci(*learner["extra"][m], digits=3) if m in learner.get("extra", {}) else "" for m in metrics
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if "success" in learner:  # the success rate in %, a row under the learner's returns
            rates = dict(
                zip(
                    learner[axis],
                    zip(learner["success"]["mean"], learner["success"]["ci"], strict=True),
                    strict=True,
                )
            )
            cells = [_with_ci(100 * rates[x][0], 100 * rates[x][1]) if x in rates else "" for x in points]
            lines.append(f"| {name}: success rate (%) | " + " | ".join([""] * len(extra) + cells) + " |")
    if "published" in summary:
        published = summary["published"]
        at = published.get("at", points[-1])
        cells = [_number(published["value"]) if x == at else "" for x in points]
        cells = [""] * len(extra) + cells + [""] * len(metrics)
        lines.append(f"| published ({published['source']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fewshot_comparison(summaries: dict[str, dict[str, Any]], dataset: str = "omniglot") -> str:
    """One table of every few-shot summary named ``LEARNER-DATASET-{W}w{S}s`` (``protonet-omniglot-20w1s``), or
    ``...-{W}w{S}s-SCHEME`` for a split other than Vinyals' (``maml-omniglot-5w1s-finn``): a row per learner,
    setting and split, grouped by setting, the learner named as in the summary's name (so variants of one
    algorithm stay apart: ``mtl-ss``, ``mtl-ss-ht``), with its accuracy after its last test step, the paper's
    number, the meta-iterations and the training wall-clock (``train_seconds`` of the run's ``eval.json``; blank
    for summaries extracted before it was kept)."""
    rows = []
    for name, summary in summaries.items():
        match = re.fullmatch(
            rf"(?P<learner>.+)-{re.escape(dataset)}-(?P<ways>\d+)w(?P<shots>\d+)s(-[a-z]+)?", name
        )
        if summary["kind"] != "few-shot" or not match:
            continue
        scheme = summary["protocol"].get("split_scheme", "vinyals")
        learner = summary["learners"][summary["algo"]]
        published = summary.get("published")
        seconds = summary.get("train_seconds")
        rows.append(
            (
                (int(match["ways"]), int(match["shots"]), scheme != "vinyals", scheme, match["learner"]),
                [
                    f"{match['ways']}-way {match['shots']}-shot",
                    scheme,
                    match["learner"],
                    _with_ci(100 * learner["mean"][-1], 100 * learner["ci"][-1]),
                    "" if published is None else f"{_number(published['value'])} ({published['source']})",
                    f"{summary['iterations']:,}",
                    "" if seconds is None else f"{seconds / 3600:.1f}",
                    f"`{name}.json`",
                ],
            )
        )
    header = "| setting | split | learner | query accuracy (%) | published | meta-iterations | training (h) | summary |"
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(cells) + " |" for _, cells in sorted(rows)]
    return "\n".join(lines)


def _protocol(summary: dict[str, Any]) -> str:
    shown = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in summary["protocol"].items())
    iterations = summary["iterations"]
    if isinstance(iterations, dict):  # a comparison: each run's
        iterations = ", ".join(f"{name} {count}" for name, count in iterations.items())
    return f"{summary['metric']} ± 95% CI; {iterations} meta-iterations; {shown}"


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _csv_table(rows: list[dict[str, str]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(c.replace("_", " ") for c in columns) + " |", "|---" * len(columns) + "|"]
    for row in rows:
        cells = []
        for column in columns:
            try:
                value = float(row[column])
            except ValueError:
                cells.append(row[column])
            else:
                cells.append(row[column] if value.is_integer() else _number(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _csv_curves(rows: list[dict[str, str]]) -> tuple[dict[str, dict[str, list[float]]], str, str]:
    series, x, y = list(rows[0])[:3]
    curves: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        curve = curves.setdefault(row[series], {"steps": [], "mean": []})
        curve["steps"].append(float(row[x]))
        curve["mean"].append(float(row[y]))
    return curves, x.replace("_", " "), y.replace("_", " ")


def _write_if_changed(path: Path, data: bytes) -> None:
    # an unchanged file keeps its time stamp, so that `mkdocs serve` does not rebuild in a loop
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def _plot(curves: dict, path: Path, **labels: Any) -> None:
    from metarl.training import plot_adaptation_curves

    scratch = path.with_suffix(".tmp.png")
    plot_adaptation_curves(curves, scratch, **labels)
    _write_if_changed(path, scratch.read_bytes())
    scratch.unlink()


def _sibling_script(name: str) -> Any:
    """A script of this folder, imported as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def registered_env_ids() -> list[str]:
    """metarl's own task distributions (``MetaRL/...`` ids), sorted."""
    import gymnasium as gym

    import metarl  # noqa: F401  (registers the ids)

    return sorted(env_id for env_id in gym.registry if env_id.startswith("MetaRL/"))


def render(data_dir: Path = DATA_DIR, out_dir: Path = OUT_DIR) -> Path:
    """Write ``out_dir/summaries.md`` and its PNGs from the files of ``data_dir``; returns the markdown's path.

    Image links are relative to the page that includes the markdown, ``docs/results/index.md``.
    """
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    link = out_dir.name
    sections: list[str] = []
    with_results: set[str] = set()
    summaries: dict[str, dict[str, Any]] = {}
    for path in sorted(data_dir.glob("*.json")):
        summary = json.loads(path.read_text(encoding="utf-8"))
        if summary.get("format") != FORMAT:
            raise ValueError(f"{path}: not a result summary of format {FORMAT} (see scripts/results.py)")
        summaries[path.stem] = summary
        if summary["kind"] == "meta-rl":
            with_results.add(summary["task"])
        title = f"{summary['task']}: {summary['algo']}"
        axis = summary.get("axis", "steps")
        curves = {name: {**v, "steps": v[axis]} for name, v in summary["learners"].items()}
        # a comparison's title names every run: wrapped, it stays inside the figure
        labels = {"title": textwrap.fill(title, 60, break_on_hyphens=False), "ylabel": summary["metric"]}
        if axis == "experience":
            labels["xlabel"] = "episodes of experience on the task"
        _plot(curves, out_dir / f"{path.stem}.png", log_x=summary["kind"] == "comparison", **labels)
        # each table alone too, for the pages that discuss one result (--8<-- "docs/results/generated/NAME.md")
        _write_if_changed(out_dir / f"{path.stem}.md", f"{summary_table(summary)}\n".encode())
        sections.append(
            f"### {title}\n\n{_protocol(summary)} (`{path.name}`).\n\n{summary_table(summary)}\n\n"
            f"![{title}]({link}/{path.stem}.png)\n"
        )
    csv_names = {
        p.name.rsplit("_", 1)[0] for p in [*data_dir.glob("*_eval.csv"), *data_dir.glob("*_curve.csv")]
    }
    for name in sorted(csv_names):
        section = f"### {name}\n"
        eval_path, curve_path = data_dir / f"{name}_eval.csv", data_dir / f"{name}_curve.csv"
        if eval_path.exists():
            table = _csv_table(_csv_rows(eval_path))
            _write_if_changed(out_dir / f"{name}_eval.md", f"{table}\n".encode())
            section += f"\nEvaluation (`{eval_path.name}`):\n\n{table}\n"
        if curve_path.exists():
            curves, xlabel, ylabel = _csv_curves(_csv_rows(curve_path))
            xs = [x for curve in curves.values() for x in curve["steps"] if x > 0]
            log_x = bool(xs) and max(xs) > 100 * min(xs)
            _plot(
                curves, out_dir / f"{name}_curve.png", title=name, xlabel=xlabel, ylabel=ylabel, log_x=log_x
            )
            section += f"\nLearning curves (`{curve_path.name}`):\n\n![{name}]({link}/{name}_curve.png)\n"
        sections.append(section)
    # the few-shot learners side by side (docs/results/omniglot.md)
    _write_if_changed(out_dir / "fewshot-omniglot.md", f"{fewshot_comparison(summaries)}\n".encode())
    duan = data_dir / "duan2016" / "tables.json"
    if duan.exists():  # the references of RL² (scripts/duan_tables.py), shown on docs/results/duan2016.md
        tables = _sibling_script("duan_tables").markdown(json.loads(duan.read_text(encoding="utf-8")))
        _write_if_changed(out_dir / "duan2016.md", f"{tables}\n".encode())
    missing = [env_id for env_id in registered_env_ids() if env_id not in with_results]
    sections.append(
        "### Task distributions without a committed meta-learner summary\n\n"
        + ", ".join(f"`{env_id}`" for env_id in missing)
        + "\n"
    )
    markdown = out_dir / "summaries.md"
    _write_if_changed(markdown, "\n".join(sections).encode("utf-8"))
    return markdown


def on_pre_build(config: Any) -> None:
    """The site's build hook (``hooks:`` in ``mkdocs.yml``): render the results before the pages are read."""
    docs = Path(config["docs_dir"])
    render(docs / "results" / "data", docs / "results" / "generated")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("extract", help="trim an eval.json to a result summary under docs/results/data/")
    p.add_argument("eval_json", type=Path, help="RUN/eval.json of metarl evaluate or metarl fewshot")
    p.add_argument("--name", required=True, help="the summary's file name, without .json")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where summaries live")
    p.add_argument(
        "--published", type=float, help="the paper's number for this protocol, as printed (%% for accuracy)"
    )
    p.add_argument(
        "--source", help="with --published: where it is published, e.g. 'Vinyals et al. 2016, Table 1'"
    )
    p.add_argument(
        "--at", type=int, help="with --published: the step (or episodes) it is measured at (default: last)"
    )
    p = sub.add_parser("curve", help="one metric of metrics.jsonl files against env steps, as NAME_curve.csv")
    p.add_argument("--name", required=True, help="the curve file's name, without _curve.csv")
    p.add_argument(
        "--series",
        nargs=3,
        action="append",
        required=True,
        metavar=("LABEL", "METRICS_JSONL", "METRIC"),
        help="a line of the plot: its label, a run's metrics.jsonl and the metric (repeatable)",
    )
    p.add_argument("--x", default="charts/env_steps_total", help="the x axis's metric (default: env steps)")
    p.add_argument("--y-label", default="mean_return", help="the y axis's name (default: mean_return)")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where summaries live")
    p = sub.add_parser("render", help="write the results' markdown and plots")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where summaries live")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="where the markdown and PNGs go")
    args = parser.parse_args(argv)
    if args.command == "extract":
        published = None
        if (args.published is None) != (args.source is None):
            parser.error("--published and --source go together: the number and where it is published")
        if args.published is not None:
            published = {"value": args.published, "source": args.source}
            if args.at is not None:
                published["at"] = args.at
        print(f"wrote {extract(args.eval_json, args.name, args.data_dir, published)}")
    elif args.command == "curve":
        series = [(label, Path(path), metric) for label, path, metric in args.series]
        try:
            path = learning_curve(args.name, series, args.x, args.data_dir, args.y_label)
        except (OSError, ValueError) as exc:
            parser.exit(2, f"results.py curve: {exc}\n")
        print(f"wrote {path}")
    else:
        print(f"wrote {render(args.data_dir, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
