"""Write metarl/envs/metaworld/goals_seed0.json: the goals of Meta-World's ML1 (all 50 families), ML10 and
ML45 benchmarks for benchmark seed 0, as ``metaworld.ML1(name, seed=0)``, ``metaworld.ML10(seed=0)`` and
``metaworld.ML45(seed=0)`` draw them (about 6 minutes on one core: Meta-World resets every env 50 times per
split). tests/envs/test_metaworld_goals.py checks the shipped file against Meta-World.

    python scripts/metaworld_goals.py [--output PATH]
"""

from __future__ import annotations

import argparse
import json
from importlib import metadata
from pathlib import Path

from metarl.envs.metaworld.tasks import (
    DEFAULT_BENCHMARK_SEED,
    ML1_ENV_NAMES,
    SHIPPED_GOALS,
    goals_from_metaworld,
)

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "metarl" / "envs" / "metaworld" / SHIPPED_GOALS


def as_json(table) -> dict:
    return {
        split: {name: goals.tolist() for name, goals in families.items()} for split, families in table.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    seed = DEFAULT_BENCHMARK_SEED
    data = {"benchmark_seed": seed, "metaworld": metadata.version("metaworld")}
    data["ML1"] = {name: as_json(goals_from_metaworld("ML1", name, seed)) for name in ML1_ENV_NAMES}
    for benchmark in ("ML10", "ML45"):
        data[benchmark] = as_json(goals_from_metaworld(benchmark, None, seed))
    args.output.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
