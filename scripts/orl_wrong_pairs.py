"""Draw the verification pairs a trained run gets wrong, as a PNG grid (e.g. Siamese or ProtoNet on ORL faces).

The run's learner scores every (query, support) pair of ``--episodes`` test episodes (the run's evaluation
episodes, seed ``eval_seed``); pairs are accepted as "same person" when the score reaches the equal-error-rate
threshold of all pairs pooled. Each tile of the grid is one wrong pair side by side: a red bar under a false
accept (different people taken for one), a blue bar under a false reject (one person taken for two); the most
confident mistakes come first.

Usage::

    python scripts/orl_wrong_pairs.py runs/siamese-orl_faces-5w1s-s0               # -> RUN/wrong_pairs.png
    python scripts/orl_wrong_pairs.py RUN --episodes 50 --max-pairs 48 --output wrong.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from metarl.supervised.config import FewShotConfig
from metarl.supervised.evaluate import make_task_source
from metarl.supervised.runner import build_run_learner, load_learner_weights
from metarl.supervised.verification import equal_error_rate, pair_scores, same_class
from metarl.training import RunDir, load_checkpoint, load_config

FALSE_ACCEPT, FALSE_REJECT = (220, 40, 40), (40, 90, 220)


def wrong_pairs(run_dir: str, episodes: int) -> tuple[list[dict], float, int]:
    """Every misjudged pair ``{"left", "right", "kind", "margin"}`` (images ``(H, W)`` uint8), the EER threshold
    and the number of pairs scored."""
    run = RunDir.open(run_dir)
    config = load_config(FewShotConfig, run.config_path)
    torch.set_num_threads(config.torch_threads or 1)
    learner = build_run_learner(config)
    load_learner_weights(learner, load_checkpoint(run.checkpoint_path, required_keys=("learner",))["learner"])
    learner.eval()
    source = make_task_source(
        config.data, config.data.test_split, 1, config.eval_seed, evaluation=True, cache={}
    )
    pairs = []
    with torch.no_grad():
        for _ in range(episodes):
            batch = source.sample()
            scores, same = pair_scores(learner, batch)[0], same_class(batch)[0]
            for q, s in np.ndindex(*scores.shape):
                pairs.append(
                    (float(scores[q, s]), bool(same[q, s]), batch.query_x[0, q], batch.support_x[0, s])
                )
    all_scores = np.array([p[0] for p in pairs])
    all_same = np.array([p[1] for p in pairs])
    _, threshold = equal_error_rate(all_scores, all_same)
    wrong = []
    for score, same, left, right in pairs:
        if (score >= threshold) != same:
            wrong.append(
                {
                    "left": to_uint8(left),
                    "right": to_uint8(right),
                    "kind": "false reject" if same else "false accept",
                    "margin": abs(score - threshold),
                }
            )
    wrong.sort(key=lambda w: -w["margin"])
    return wrong, threshold, len(pairs)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """A ``(1, H, W)`` float image in [0, 1] as ``(H, W)`` uint8."""
    return (image[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def render_grid(wrong: list[dict], columns: int = 6, scale: int = 3) -> Image.Image:
    """Tiles of (left | right) pairs, ``scale`` x enlarged, a colour bar under each saying the kind of error."""
    height, width = wrong[0]["left"].shape
    tile_w, tile_h, bar, gap = (
        2 * width * scale + gap_px(scale),
        height * scale + 4 * scale,
        3 * scale,
        4 * scale,
    )
    rows = -(-len(wrong) // columns)
    canvas = Image.new("RGB", (columns * (tile_w + gap) + gap, rows * (tile_h + gap) + gap), "white")
    for i, pair in enumerate(wrong):
        x = gap + (i % columns) * (tile_w + gap)
        y = gap + (i // columns) * (tile_h + gap)
        for j, key in enumerate(("left", "right")):
            face = Image.fromarray(pair[key]).resize(
                (width * scale, height * scale), Image.Resampling.NEAREST
            )
            canvas.paste(face.convert("RGB"), (x + j * (width * scale + gap_px(scale)), y))
        colour = FALSE_ACCEPT if pair["kind"] == "false accept" else FALSE_REJECT
        canvas.paste(colour, (x, y + height * scale + scale, x + tile_w, y + height * scale + scale + bar))
    return canvas


def gap_px(scale: int) -> int:
    return 2 * scale


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run directory written by `metarl fewshot train`")
    parser.add_argument("--episodes", type=int, default=20, help="test episodes to score (default 20)")
    parser.add_argument("--max-pairs", type=int, default=36, help="wrong pairs to draw, most confident first")
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--output", help="PNG path (default RUN/wrong_pairs.png)")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.max_pairs < 1 or args.columns < 1:
        parser.error("--episodes, --max-pairs and --columns must be >= 1")
    wrong, threshold, scored = wrong_pairs(args.run, args.episodes)
    counts = {kind: sum(w["kind"] == kind for w in wrong) for kind in ("false accept", "false reject")}
    print(
        f"{scored} pairs, threshold {threshold:.4g} (equal error rate): {counts['false accept']} false accepts, "
        f"{counts['false reject']} false rejects"
    )
    if not wrong:
        print("no wrong pairs: nothing to draw")
        return
    output = Path(args.output or Path(args.run) / "wrong_pairs.png")
    render_grid(wrong[: args.max_pairs], args.columns).save(output)
    print(f"written to {output} (red: false accept, blue: false reject)")


if __name__ == "__main__":
    main()
