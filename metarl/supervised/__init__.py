"""Few-shot learning: episodic data, Conv4/MLP backbones, gradient and metric meta-learners, runs.

* ``metarl.supervised.data``: Omniglot, miniImageNet, image folders, sinusoid tasks, the episode sampler.
* ``metarl.supervised.models``: ``Conv4`` and ``MLP``.
* ``metarl.supervised.learners``: MAML, FOMAML, Meta-SGD, ANIL, Reptile, ProtoNet, Matching, Relation, Siamese,
  built by name with ``build_learner``.
* ``metarl.supervised.runner.train(config)``: a whole run; ``metarl fewshot train|evaluate`` on the command line.

Heavy modules load on first use, so ``import metarl.supervised`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Conv4": "metarl.supervised.models",
    "MLP": "metarl.supervised.models",
    "EpisodeBatch": "metarl.supervised.data.episodes",
    "FewShotLearner": "metarl.supervised.learners.base",
    "build_learner": "metarl.supervised.learners",
    "FewShotConfig": "metarl.supervised.config",
    "train": "metarl.supervised.runner",
    "evaluate_learner": "metarl.supervised.evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'metarl.supervised' has no attribute {name!r}")
