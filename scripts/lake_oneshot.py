"""Score a trained few-shot run on Lake et al.'s 20 within-alphabet 20-way one-shot runs (Koch et al.'s protocol).

Each of the 20 runs has one training drawing of each of 20 characters of one evaluation alphabet and 20 test
drawings to match; the score is the fraction of the 400 test drawings matched to the right character (Koch et
al. 2015 report 92.0% for Siamese nets, Lake et al. 2015 report 95.2% for people). The interval is
1.96 sigma / sqrt(20) over the per-run accuracies.

Usage::

    python scripts/lake_oneshot.py runs/siamese-omniglot-2w1s-s0 --data-root ../shared/data/omniglot

The result file can be made a result summary: ``python scripts/results.py extract RUN/lake_oneshot.json --name
siamese-omniglot-lake-runs``.

The run's learner must not have seen the evaluation alphabets: train on the Lake "background" split
(``data.split_scheme: lake``). The Vinyals training split contains 7 of the 20 evaluation alphabets, so a model
trained on it is scored only on the runs whose 20 characters are all Vinyals test characters when
``--vinyals-test-only`` is given (runs are matched to characters by comparing their drawings with
images_evaluation.zip).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from metarl.errors import UserError
from metarl.supervised.config import FewShotConfig
from metarl.supervised.data.lake_runs import LakeOneShotRuns
from metarl.supervised.data.omniglot import Omniglot
from metarl.supervised.data.omniglot_splits import vinyals_characters
from metarl.supervised.runner import build_run_learner
from metarl.training import RunDir, load_checkpoint, load_config, mean_ci, write_json_atomic


def run_characters(runs: LakeOneShotRuns, evaluation: Omniglot) -> list[list[str]]:
    """The ``Alphabet/characterNN`` of each run's training drawings, found by matching them pixel for pixel
    against the drawings of images_evaluation.zip ("?" when a drawing is not found)."""
    index = {}
    for c, name in enumerate(evaluation.class_names):
        for image in evaluation.class_images(c):
            index[image.tobytes()] = name.rsplit("/", 1)[0]
    return [[index.get(image.tobytes(), "?") for image in run.training_images] for run in runs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="run directory written by `metarl fewshot train`")
    parser.add_argument("--data-root", default="../shared/data/omniglot", help="folder with all_runs.zip")
    parser.add_argument(
        "--vinyals-test-only",
        action="store_true",
        help="score only runs whose characters are all in the Vinyals test split",
    )
    parser.add_argument("--output", help="JSON result (default RUN_DIR/lake_oneshot.json)")
    args = parser.parse_args(argv)
    run = RunDir.open(args.run_dir)
    if not run.config_path.is_file():
        raise UserError(f"{run.path} has no config.yaml: pass a directory written by `metarl fewshot train`")
    config = load_config(FewShotConfig, run.config_path)
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    state = load_checkpoint(run.checkpoint_path, required_keys=("learner", "iteration"))
    learner = build_run_learner(config)
    learner.load_state_dict(state["learner"])
    learner.eval()
    runs = LakeOneShotRuns(args.data_root, image_size=config.data.image_size, resample=config.data.resample)
    evaluation = Omniglot(
        args.data_root,
        "evaluation",
        split_scheme="lake",
        image_size=config.data.image_size,
        rotations=(0,),
        resample=config.data.resample,
        cache_dir=config.data.cache_dir,
    )
    characters = run_characters(runs, evaluation)
    alphabets = [" + ".join(sorted({c.split("/")[0] for c in chars})) for chars in characters]
    with torch.no_grad():
        per_run = learner.accuracy(runs.episodes()).double().numpy()
    selected = np.arange(len(per_run))
    if args.vinyals_test_only:
        test_characters = set(vinyals_characters("test"))
        selected = np.array([i for i, chars in enumerate(characters) if test_characters.issuperset(chars)])
        if len(selected) == 0:
            raise UserError("no Lake run consists only of Vinyals test characters")
    mean, ci = mean_ci(per_run[selected])
    result = {
        "protocol": "Lake et al. 2015 within-alphabet 20-way one-shot runs",
        "runs": [runs[i].name for i in selected],
        "alphabets": [alphabets[i] for i in selected],
        "per_run_accuracy": per_run[selected].tolist(),
        "mean": mean,
        "ci95": ci,
        "trials": int(20 * len(selected)),
        "iterations": state["iteration"],
        "learner": config.learner,
        "train_split": f"{config.data.split_scheme}/{config.data.train_split}",
        # the fields of a `metarl fewshot evaluate` result, so that scripts/results.py extract takes this file
        "metric": "accuracy",
        "dataset": "omniglot (Lake's within-alphabet runs)",
        "split": "evaluation" if not args.vinyals_test_only else "evaluation (Vinyals test characters only)",
        "ways": 20,
        "shots": 1,
        "queries": 1,
        "episodes": len(selected),
        "per_step": {"steps": [0], "mean": [mean], "ci": [ci]},
        **({"train_seconds": float(state["elapsed"])} if "elapsed" in state else {}),
    }
    target = Path(args.output) if args.output else run.path / "lake_oneshot.json"
    write_json_atomic(target, result)
    for name, alphabet, accuracy in zip(
        result["runs"], result["alphabets"], result["per_run_accuracy"], strict=True
    ):
        print(f"{name}  {alphabet:32s} {100 * accuracy:5.1f}%")
    print(
        f"{run.path} (iteration {state['iteration']}): Lake one-shot {100 * mean:.2f}% ± {100 * ci:.2f}% "
        f"over {len(selected)} runs ({result['trials']} trials); written to {target}"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
