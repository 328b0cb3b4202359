"""scripts/fewshot_reference_loops.py: each straightforward reference loop that bench_fewshot times gives its
metarl learner's meta-loss (the bench refuses to time a loop that does not; this catches a learner change that
leaves its reference behind before anyone runs the bench)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from metarl.supervised.learners.mann import MemoryAugmentedNetwork
from metarl.supervised.learners.meta_lstm import MetaLSTM
from metarl.supervised.learners.metanet import MetaNetwork
from metarl.supervised.learners.mtl import MetaTransferLearner
from metarl.supervised.models import Conv4

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ref = _load("fewshot_reference_loops")
bench = _load("bench_fewshot")

LEARNERS = {
    "mann": (
        lambda: MemoryAugmentedNetwork(
            Conv4(1, 8, ways=None, blocks=2),
            ways=5,
            controller_size=16,
            memory_slots=8,
            memory_width=4,
            read_heads=2,
        ),
        ref.mann_loss,
        (2, 3, 8),
    ),
    "meta-lstm": (
        lambda: MetaLSTM(Conv4(1, 8, ways=5, hidden=3, blocks=2), hidden=4, inner_steps=2, first_order=True),
        ref.meta_lstm_loss,
        (2, 2, 8),
    ),
    "metanet": (
        lambda: MetaNetwork(Conv4(1, 8, ways=None, hidden=3, blocks=2), ways=5),
        ref.metanet_loss,
        (2, 2, 8),
    ),
    "mtl": (
        lambda: MetaTransferLearner(
            Conv4(1, 8, ways=None, hidden=3, blocks=2), ways=5, pretrain_iterations=0
        ),
        ref.mtl_loss,
        (2, 2, 8),
    ),
}


@pytest.mark.parametrize("name", list(LEARNERS))
def test_reference_loop_gives_the_learners_meta_loss(name):
    build, reference, (tasks, queries, size) = LEARNERS[name]
    torch.manual_seed(0)
    ours, theirs = build(), build()
    theirs.load_state_dict(ours.state_dict())
    ref.check_same_loss(theirs, reference(theirs), bench.random_batch(tasks, queries, size, 0))
