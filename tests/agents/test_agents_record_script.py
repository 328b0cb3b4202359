"""scripts/record_adaptation.py: a GIF of one held-out task's episode before and after adaptation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from metarl.agents import MAMLTRPO, TrainConfig
from metarl.agents.config import PolicyConfig

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "record_adaptation.py"


def _script():
    spec = importlib.util.spec_from_file_location("record_adaptation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("env", "horizon", "panel_width"), [("MetaRL/Navigation2D-v0", 12, 256), ("MetaRL/Bandit-K5-v0", 6, 80)]
)
def test_the_gif_shows_both_episodes_side_by_side(tmp_path, env, horizon, panel_width):
    config = TrainConfig(
        env=env,
        iterations=1,
        meta_batch_size=2,
        episodes_per_task=3,
        env_kwargs={"horizon": horizon},
        policy=PolicyConfig(hidden_sizes=[8]),
    )
    MAMLTRPO(config).train(tmp_path / "run", progress=False)
    script = _script()
    report = script.record(str(tmp_path / "run"), task_index=1, adapt_steps=1)
    gif = Image.open(report["gif"])
    assert report["gif"] == str(tmp_path / "run" / "adaptation.gif")
    assert gif.n_frames == report["frames"] == horizon + 1  # the reset frame, then one per step
    assert gif.size[0] == 2 * panel_width + script.GAP
    assert script.main([str(tmp_path / "run"), "--output", str(tmp_path / "again.gif")]) == 0
    assert Image.open(tmp_path / "again.gif").n_frames == horizon + 1
