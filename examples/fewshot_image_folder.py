"""Few-shot classification on your own images: one folder per class, one folder per split.

::

    my-images/
      train/  cat/ 001.png 002.png ...   dog/ ...   (classes to meta-train on)
      test/   fox/ ...                               (other classes, for the final evaluation)

    python examples/fewshot_image_folder.py my-images --learner protonet
    python examples/fewshot_image_folder.py my-images --learner maml iterations=2000 data.shots=5

Any ``key=value`` of ``metarl fewshot train --help-config`` overrides the config.
"""

from __future__ import annotations

import argparse

# --8<-- [start:fewshot]
from metarl.supervised import FewShotConfig, train
from metarl.training import load_config


def train_on_folder(root: str, learner: str, overrides: list[str], run_root: str = "runs") -> dict:
    """Meta-train ``learner`` on the classes of ``root/train`` and test it on those of ``root/test``."""
    config = load_config(
        FewShotConfig,
        overrides=[
            f"learner={learner}",
            "data.dataset=folder",
            f"data.root={root}",
            "data.val_split=null",  # no root/val folder: no validation during training
            "data.image_size=28",
            "data.channels=1",  # grayscale; 3 for RGB
            "data.ways=5",
            "data.shots=1",
            f"run_root={run_root}",
            *overrides,
        ],
    )
    result = train(config)  # meta-trains, then evaluates on test episodes: RUN/eval.json
    print(f"{learner}: test accuracy {result['mean']:.3f} ± {result['ci95']:.3f}")
    return result
    # --8<-- [end:fewshot]


def main() -> None:
    parser = argparse.ArgumentParser(description="Few-shot learning on a folder of class sub-folders.")
    parser.add_argument("root", help="folder with train/ and test/ sub-folders of class folders")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--learner", default="protonet", help="maml, fomaml, meta-sgd, anil, reptile, ...")
    parser.add_argument("--run-root", default="runs", help="parent folder of the run directory")
    args = parser.parse_intermixed_args()  # key=value overrides before or after the options
    train_on_folder(args.root, args.learner, args.overrides, args.run_root)


if __name__ == "__main__":
    main()
