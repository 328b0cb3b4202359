"""Duan et al. 2016 ("RL^2"), Tables 1 and 2: the reference algorithms on metarl's envs, next to the paper.

Table 1: Bernoulli bandits (``MetaRL/Bandit-K{5,10,50}-v0``), total reward over n = 10, 100, 500 pulls.
Table 2: random tabular MDPs (``MetaRL/TabularMDP-v0``, 10 states, 5 actions, 10 steps per episode), total
reward over n = 10, 25, 50, 75, 100 episodes. Each cell: mean ± 95% CI over held-out tasks, then the paper's
number in parentheses. The algorithms are in ``metarl.agents.references``.

Hyperparameters (epsilon, UCB1's c, OTS's and OPSRL's samples, Gittins' discount, BEB's beta, UCRL2's radius
scale) are chosen per row on separate tuning tasks (best mean total), then evaluated on the held-out tasks.

RL^2's own results fill the ``rl2`` column from JSON files named on the command line::

    --rl2 k5-n10=runs/rl2-k5-n10/eval.json --rl2 mdp-n10=runs/rl2-mdp-n10/eval.json

each either the ``eval.json`` that ``metarl evaluate`` wrote for an RL^2 run (a trial's total: the sum of its
episodes' returns) or ``{"per_task": [total reward of each held-out trial, ...]}`` or ``{"mean": m, "ci": half_width}``.

Usage::

    python scripts/duan_tables.py                       # 1000 held-out tasks per row (a few minutes)
    python scripts/duan_tables.py --quick               # 100 tasks, n <= 100, small grids (seconds)
    python scripts/duan_tables.py --json docs/results/data/duan2016/tables.json
    # a new RL^2 cell: keep the reference columns of the committed tables, refill the rl2 column (seconds)
    python scripts/duan_tables.py --references docs/results/data/duan2016/tables.json \
        --json docs/results/data/duan2016/tables.json --rl2 k5-n10=runs/rl2-k5-n10/eval.json ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import metarl.envs  # noqa: F401  (registers the envs)
from metarl.agents import references as refs
from metarl.envs import sample_tasks
from metarl.errors import UserError
from metarl.training import format_ci, mean_ci, write_json_atomic

PAPER = 'Duan et al., "RL^2: Fast Reinforcement Learning via Slow Reinforcement Learning", arXiv:1611.02779 (2016)'

# Published numbers (references, not our results): Duan et al. 2016, Table 1, total reward over n pulls,
# keyed (arms, pulls). Transcribed from the table as reproduced in lucaslingle/pytorch_rl2's README (not re-checked
# against the PDF).
PUBLISHED_BANDITS: dict[tuple[int, int], dict[str, float]] = {
    (5, 10): dict(random=5.0, gittins=6.6, ts=5.7, ots=6.5, ucb1=6.7, eps_greedy=6.6, greedy=6.6, rl2=6.7),
    (10, 10): dict(random=5.0, gittins=6.6, ts=5.5, ots=6.2, ucb1=6.7, eps_greedy=6.6, greedy=6.6, rl2=6.7),
    (50, 10): dict(random=5.1, gittins=6.5, ts=5.2, ots=5.5, ucb1=6.6, eps_greedy=6.5, greedy=6.5, rl2=6.8),
    (5, 100): dict(
        random=49.9, gittins=78.3, ts=74.7, ots=77.9, ucb1=78.0, eps_greedy=75.4, greedy=74.8, rl2=78.7
    ),
    (10, 100): dict(
        random=49.9, gittins=82.8, ts=76.7, ots=81.4, ucb1=82.4, eps_greedy=77.4, greedy=77.1, rl2=83.5
    ),
    (50, 100): dict(
        random=49.8, gittins=85.2, ts=64.5, ots=67.7, ucb1=84.3, eps_greedy=78.3, greedy=78.0, rl2=84.9
    ),
    (5, 500): dict(
        random=249.8,
        gittins=405.8,
        ts=402.0,
        ots=406.7,
        ucb1=405.8,
        eps_greedy=388.2,
        greedy=380.6,
        rl2=401.6,
    ),
    (10, 500): dict(
        random=249.0,
        gittins=437.8,
        ts=429.5,
        ots=438.9,
        ucb1=437.1,
        eps_greedy=408.0,
        greedy=395.0,
        rl2=432.5,
    ),
    (50, 500): dict(
        random=249.6,
        gittins=463.7,
        ts=427.2,
        ots=437.6,
        ucb1=457.6,
        eps_greedy=413.6,
        greedy=402.8,
        rl2=438.9,
    ),
}
# Duan et al. 2016, Table 2, total reward over n episodes, keyed n (same source).
PUBLISHED_MDPS: dict[int, dict[str, float]] = {
    10: dict(
        random=100.1,
        psrl=138.1,
        opsrl=144.1,
        ucrl2=146.6,
        beb=150.2,
        eps_greedy=132.8,
        greedy=134.8,
        rl2=156.2,
    ),
    25: dict(
        random=250.2,
        psrl=408.8,
        opsrl=425.2,
        ucrl2=424.1,
        beb=427.8,
        eps_greedy=377.3,
        greedy=368.8,
        rl2=445.7,
    ),
    50: dict(
        random=499.7,
        psrl=904.4,
        opsrl=930.7,
        ucrl2=918.9,
        beb=917.8,
        eps_greedy=823.3,
        greedy=769.3,
        rl2=936.1,
    ),
    75: dict(
        random=749.9,
        psrl=1417.1,
        opsrl=1449.2,
        ucrl2=1427.6,
        beb=1422.6,
        eps_greedy=1293.9,
        greedy=1172.9,
        rl2=1428.8,
    ),
    100: dict(
        random=999.4,
        psrl=1939.5,
        opsrl=1973.9,
        ucrl2=1942.1,
        beb=1935.1,
        eps_greedy=1778.2,
        greedy=1578.5,
        rl2=1913.7,
    ),
}
BANDIT_COLUMNS = ("random", "gittins", "ts", "ots", "ucb1", "eps_greedy", "greedy", "rl2")
MDP_COLUMNS = ("random", "psrl", "opsrl", "ucrl2", "beb", "eps_greedy", "greedy", "rl2")
BANDIT_ENV = "MetaRL/Bandit-K{arms}-v0"
MDP_ENV = "MetaRL/TabularMDP-v0"
TUNING_OFFSET = 1_000_000  # tuning tasks and their env seeds live far from the held-out ones


def bandit_grids(quick: bool) -> dict[str, list[refs.BanditPolicy]]:
    """The candidates of every bandit column (one candidate: nothing to tune)."""
    if quick:
        return {
            "random": [refs.RandomArm()],
            "gittins": [refs.Gittins(g) for g in (0.9, 0.98)],
            "ts": [refs.Thompson(1)],
            "ots": [refs.Thompson(m) for m in (2, 5)],
            "ucb1": [refs.UCB1(c) for c in (0.2, 1.0)],
            "eps_greedy": [refs.EpsilonGreedy(e) for e in (0.02, 0.1)],
            "greedy": [refs.EpsilonGreedy(0.0)],
        }
    return {
        "random": [refs.RandomArm()],
        "gittins": [refs.Gittins(g) for g in (0.7, 0.9, 0.95, 0.98, 0.99, 0.995)],
        "ts": [refs.Thompson(1)],
        "ots": [refs.Thompson(m) for m in (2, 3, 5, 10)],
        "ucb1": [refs.UCB1(c) for c in (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)],
        "eps_greedy": [refs.EpsilonGreedy(e) for e in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)],
        "greedy": [refs.EpsilonGreedy(0.0)],
    }


def mdp_grids(quick: bool) -> dict[str, list[refs.MDPPolicy]]:
    """The candidates of every MDP column."""
    if quick:
        return {
            "random": [refs.MDPPolicy()],
            "psrl": [refs.PosteriorSampling(1)],
            "opsrl": [refs.PosteriorSampling(m) for m in (2, 5)],
            "ucrl2": [refs.UCRL2(s) for s in (0.05, 0.2)],
            "beb": [refs.BEB(b) for b in (0.5, 2.0)],
            "eps_greedy": [refs.CertaintyEquivalent(e) for e in (0.02, 0.1)],
            "greedy": [refs.CertaintyEquivalent(0.0)],
        }
    return {
        "random": [refs.MDPPolicy()],
        "psrl": [refs.PosteriorSampling(1)],
        "opsrl": [refs.PosteriorSampling(m) for m in (2, 3, 5, 10)],
        "ucrl2": [refs.UCRL2(s) for s in (0.02, 0.05, 0.1, 0.2)],
        "beb": [refs.BEB(b) for b in (0.25, 0.5, 1.0, 2.0, 4.0)],
        "eps_greedy": [refs.CertaintyEquivalent(e) for e in (0.01, 0.02, 0.05, 0.1, 0.2)],
        "greedy": [refs.CertaintyEquivalent(0.0)],
    }


def tasks_of(env_id: str, count: int, seed: int) -> list:
    env = gym.make(env_id)
    try:
        return sample_tasks(env, count, seed)
    finally:
        env.close()


def cell(values: np.ndarray, policy, published: float | None) -> dict[str, Any]:
    mean, ci = mean_ci(values)
    return {"mean": mean, "ci": ci, "settings": policy.settings(), "published": published}


def bandit_row(arms: int, pulls: int, args, grids) -> dict[str, Any]:
    env_id = BANDIT_ENV.format(arms=arms)
    held_out = tasks_of(env_id, args.tasks, args.seed)
    tuning = tasks_of(env_id, args.tuning_tasks, args.seed + TUNING_OFFSET)
    published = PUBLISHED_BANDITS.get((arms, pulls), {})
    results = {}
    for column, candidates in grids.items():
        best = candidates[0]
        if len(candidates) > 1:
            scores = [
                refs.run_bandit(p, env_id, tuning, pulls, args.seed + TUNING_OFFSET).mean()
                for p in candidates
            ]
            best = candidates[int(np.argmax(scores))]
        totals = refs.run_bandit(best, env_id, held_out, pulls, args.seed)
        results[column] = cell(totals, best, published.get(column))
    return {"arms": arms, "pulls": pulls, "env": env_id, "results": results}


def mdp_rows(episode_counts: list[int], args, grids) -> list[dict[str, Any]]:
    """All MDP rows from one trial of the longest length per candidate (the policies are anytime)."""
    longest = max(episode_counts)
    held_out = tasks_of(MDP_ENV, args.tasks, args.seed)
    tuning = tasks_of(MDP_ENV, args.tuning_tasks, args.seed + TUNING_OFFSET)
    rows = {n: {"episodes": n, "env": MDP_ENV, "results": {}} for n in episode_counts}
    for column, candidates in grids.items():
        choice = {n: candidates[0] for n in episode_counts}
        if len(candidates) > 1:
            tuned = [refs.run_mdp(p, MDP_ENV, tuning, longest, args.seed + TUNING_OFFSET) for p in candidates]
            for n in episode_counts:
                scores = [returns[:, :n].sum(axis=1).mean() for returns in tuned]
                choice[n] = candidates[int(np.argmax(scores))]
        runs = {}
        for n in episode_counts:
            policy = choice[n]
            if id(policy) not in runs:
                runs[id(policy)] = refs.run_mdp(policy, MDP_ENV, held_out, longest, args.seed)
            totals = runs[id(policy)][:, :n].sum(axis=1)
            rows[n]["results"][column] = cell(totals, policy, PUBLISHED_MDPS.get(n, {}).get(column))
    return [rows[n] for n in episode_counts]


def load_rl2(specs: list[str]) -> dict[str, dict[str, float]]:
    """``KEY=PATH`` pairs -> ``{KEY: {"mean", "ci"}}``; KEY is ``k5-n10`` or ``mdp-n10``."""
    found = {}
    for spec in specs:
        key, sep, path = spec.partition("=")
        if not sep or not (key.startswith("k") or key.startswith("mdp-n")):
            raise UserError(f"--rl2 takes KEY=PATH with KEY like k5-n10 or mdp-n10, got {spec!r}")
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise UserError(f"--rl2 {key}: cannot read {path}: {error}") from None
        source: Any = path
        if "learners" in data and "rl2" in data["learners"]:  # metarl evaluate's eval.json of an RL^2 run
            episodes = data["learners"]["rl2"]["per_task"]
            mean, ci = mean_ci([sum(trial) for trial in episodes])
            source = {"env": data["env"], "meta_iterations": data["meta_iterations"], "tasks": len(episodes)}
        elif "per_task" in data:
            mean, ci = mean_ci(data["per_task"])
        elif "mean" in data:
            mean, ci = float(data["mean"]), float(data.get("ci", float("nan")))
        else:
            raise UserError(
                f'--rl2 {key}: {path} is not an RL^2 eval.json and has neither "per_task" (a list of totals) nor '
                '"mean" and "ci"'
            )
        found[key] = {"mean": mean, "ci": ci, "source": source}
    return found


def load_tables(path: Path) -> dict[str, Any]:
    """The tables an earlier ``--json`` wrote.

    Raises:
        UserError: not such a file.
    """
    try:
        table = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"--references: cannot read {path}: {error}") from None
    if not isinstance(table, dict) or not {"bandits", "mdps", "protocol"} <= table.keys():
        raise UserError(
            f"--references: {path} is not a tables file written by --json (bandits, mdps, protocol)"
        )
    return table


def attach_rl2(table: dict[str, Any], rl2: dict[str, dict[str, float]]) -> None:
    for row in table["bandits"]:
        key = f"k{row['arms']}-n{row['pulls']}"
        published = PUBLISHED_BANDITS.get((row["arms"], row["pulls"]), {}).get("rl2")
        row["results"]["rl2"] = (
            {**rl2[key], "published": published} if key in rl2 else {"published": published}
        )
    for row in table["mdps"]:
        key = f"mdp-n{row['episodes']}"
        published = PUBLISHED_MDPS.get(row["episodes"], {}).get("rl2")
        row["results"]["rl2"] = (
            {**rl2[key], "published": published} if key in rl2 else {"published": published}
        )


def format_cell(result: dict[str, Any]) -> str:
    ours = format_ci(result["mean"], result["ci"], digits=1) if "mean" in result else ""
    paper = result.get("published")
    return f"{ours} ({paper})" if paper is not None else ours


def markdown(table: dict[str, Any]) -> str:
    lines = ["Table 1: Bernoulli bandits, total reward over n pulls: ours ± 95% CI (paper)", ""]
    lines += ["| K | n | " + " | ".join(BANDIT_COLUMNS) + " |", "|---|---|" + "---|" * len(BANDIT_COLUMNS)]
    for row in table["bandits"]:
        cells = [format_cell(row["results"][c]) if c in row["results"] else "" for c in BANDIT_COLUMNS]
        lines.append(f"| {row['arms']} | {row['pulls']} | " + " | ".join(cells) + " |")
    lines += ["", "Table 2: tabular MDPs, total reward over n episodes: ours ± 95% CI (paper)", ""]
    lines += ["| n | " + " | ".join(MDP_COLUMNS) + " |", "|---|" + "---|" * len(MDP_COLUMNS)]
    for row in table["mdps"]:
        cells = [format_cell(row["results"][c]) if c in row["results"] else "" for c in MDP_COLUMNS]
        lines.append(f"| {row['episodes']} | " + " | ".join(cells) + " |")
    lines += ["", "Tuned hyperparameters:", ""]
    for row in table["bandits"] + table["mdps"]:
        label = f"K={row['arms']} n={row['pulls']}" if "arms" in row else f"MDP n={row['episodes']}"
        tuned = ", ".join(
            f"{c} {k}={v}" for c, r in row["results"].items() for k, v in r.get("settings", {}).items()
        )
        lines.append(f"- {label}: {tuned}")
    return "\n".join(lines)


def reference_tables(args: argparse.Namespace) -> dict[str, Any]:
    """Both tables with every reference algorithm tuned and run (the rl2 column not yet attached)."""
    pulls = (10, 100) if args.quick else (10, 100, 500)
    started = time.perf_counter()
    table: dict[str, Any] = {
        "format": 1,
        "paper": PAPER,
        "protocol": {
            "tasks": args.tasks,
            "tuning_tasks": args.tuning_tasks,
            "seed": args.seed,
            "quick": args.quick,
            "metric": "total reward over the trial (n pulls / n episodes), mean and 95% CI half-width",
        },
        "bandits": [],
        "mdps": [],
    }
    if args.only != "mdps":
        grids = bandit_grids(args.quick)
        for n in pulls:
            for arms in (5, 10, 50):
                table["bandits"].append(bandit_row(arms, n, args, grids))
                print(f"bandits K={arms} n={n} done ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    if args.only != "bandits":
        table["mdps"] = mdp_rows([10, 25, 50, 75, 100], args, mdp_grids(args.quick))
    table["seconds"] = round(time.perf_counter() - started, 1)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=None, help="held-out tasks per row (default 1000)")
    parser.add_argument("--tuning-tasks", type=int, default=None, help="tasks to tune on (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="100 tasks, n <= 100, small grids")
    parser.add_argument("--only", choices=("bandits", "mdps"), default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the tables here")
    parser.add_argument("--rl2", action="append", default=[], metavar="KEY=PATH", help="RL^2 results")
    parser.add_argument(
        "--references",
        type=Path,
        default=None,
        metavar="JSON",
        help="take the reference columns from these tables (an earlier --json) instead of recomputing them; "
        "the rl2 column is refilled from --rl2",
    )
    args = parser.parse_args(argv)
    try:
        rl2 = load_rl2(args.rl2)
        table = load_tables(args.references) if args.references is not None else None
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if table is None:
        args.tasks = args.tasks or (100 if args.quick else 1000)
        args.tuning_tasks = args.tuning_tasks or (30 if args.quick else 200)
        if args.tasks < 2 or args.tuning_tasks < 1:
            print("error: --tasks must be >= 2 and --tuning-tasks >= 1", file=sys.stderr)
            return 2
        table = reference_tables(args)
    attach_rl2(table, rl2)
    print(markdown(table))
    if args.json:
        write_json_atomic(args.json, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
