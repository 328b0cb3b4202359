"""Few-shot learners and the registry that builds them by name.

Every learner is built as ``Learner(model, **options)`` where ``model`` is the backbone the run builds from its
config (``Conv4``, ``MLP``) and ``options`` are the learner's own keyword arguments (``learner_options`` in the
config). Learner modules are imported only when they are used, so a learner whose module is missing (or fails
to import) leaves the others working and gives a clear error when asked for.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from metarl.errors import UserError
from metarl.supervised.learners.base import FewShotLearner
from metarl.training.config_types import Mismatch, coerce_value, describe_type


@dataclass(frozen=True)
class LearnerEntry:
    """Where a learner lives and how the run builds it.

    Attributes:
        module: the module that defines the class.
        class_name: the ``FewShotLearner`` subclass.
        defaults: keyword arguments the name implies (``fomaml`` = ``MAML(first_order=True)``).
        head: whether the backbone needs a linear head with ``ways`` outputs (gradient learners) or is a pure
            embedding network (metric learners).
        description: one line for ``--help`` listings.
    """

    module: str
    class_name: str
    defaults: dict[str, Any] = field(default_factory=dict)
    head: bool = True
    description: str = ""


LEARNERS: dict[str, LearnerEntry] = {
    "maml": LearnerEntry(
        "metarl.supervised.learners.maml", "MAML", {}, True, "MAML, second-order meta-gradient"
    ),
    "fomaml": LearnerEntry(
        "metarl.supervised.learners.maml", "MAML", {"first_order": True}, True, "first-order MAML"
    ),
    "meta-sgd": LearnerEntry(
        "metarl.supervised.learners.maml", "MetaSGD", {}, True, "Meta-SGD, learned per-parameter inner rates"
    ),
    "anil": LearnerEntry("metarl.supervised.learners.maml", "ANIL", {}, True, "ANIL, only the head adapts"),
    "reptile": LearnerEntry(
        "metarl.supervised.learners.reptile",
        "Reptile",
        {},
        True,
        "Reptile, inner Adam, interpolated outer step",
    ),
    "protonet": LearnerEntry(
        "metarl.supervised.learners.protonet", "PrototypicalNetwork", {}, False, "Prototypical Networks"
    ),
    "matching": LearnerEntry(
        "metarl.supervised.learners.matching", "MatchingNetwork", {}, False, "Matching Networks"
    ),
    "relation": LearnerEntry(
        "metarl.supervised.learners.relation", "RelationNetwork", {}, False, "Relation Network"
    ),
    "siamese": LearnerEntry(
        "metarl.supervised.learners.siamese", "SiameseNetwork", {}, False, "Siamese network (Koch et al.)"
    ),
    "mann": LearnerEntry(
        "metarl.supervised.learners.mann",
        "MemoryAugmentedNetwork",
        {},
        False,
        "memory-augmented neural network with LRUA memory (Santoro et al.)",
    ),
    "meta-lstm": LearnerEntry(
        "metarl.supervised.learners.meta_lstm",
        "MetaLSTM",
        {},
        True,
        "LSTM meta-learner, the optimizer as a coordinate-wise LSTM (Ravi & Larochelle)",
    ),
    "metanet": LearnerEntry(
        "metarl.supervised.learners.metanet",
        "MetaNetwork",
        {},
        False,
        "Meta Networks, fast weights from gradients, memory and attention (Munkhdalai & Yu)",
    ),
    "mtl": LearnerEntry(
        "metarl.supervised.learners.mtl",
        "MetaTransferLearner",
        {},
        False,
        "meta-transfer learning, scaling and shifting of a pre-trained backbone (Sun et al.)",
    ),
}


def learner_entry(name: str) -> LearnerEntry:
    """The registry entry of ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in LEARNERS:
        raise UserError(f"unknown learner {name!r}; choose one of {', '.join(LEARNERS)}")
    return LEARNERS[name]


def learner_class(name: str) -> type[FewShotLearner]:
    """Import and return the class behind ``name``.

    Raises:
        ValueError: unknown name, or its module cannot be imported / lacks the class.
    """
    entry = learner_entry(name)
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise UserError(
            f"learner {name!r} is not available: importing {entry.module} failed ({exc})"
        ) from None
    cls = getattr(module, entry.class_name, None)
    if cls is None:
        raise UserError(f"learner {name!r} is not available: {entry.module} has no class {entry.class_name}")
    return cls


def build_learner(name: str, model: nn.Module, options: dict[str, Any] | None = None) -> FewShotLearner:
    """Build learner ``name`` around ``model`` with ``options`` on top of the name's defaults.

    Each option is checked against the type the learner's constructor declares for it (as config keys are),
    and step and batch counts are bounded, so a bad value fails here with one line naming it.

    Raises:
        UserError: unknown learner, an option the learner does not take (the message lists the valid ones),
            or a value of the wrong type or out of range.
    """
    entry = learner_entry(name)
    cls = learner_class(name)
    kwargs = {**entry.defaults, **(options or {})}
    accepted = _accepted_options(cls)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise UserError(
            f"learner {name!r} does not take option(s) {', '.join(unknown)}; "
            f"valid learner_options: {', '.join(sorted(accepted)) or 'none'}"
        )
    for option, value in kwargs.items():
        kwargs[option] = _checked_option(option, value, accepted[option])
    try:
        return cls(model, **kwargs)
    except TypeError as exc:
        raise UserError(f"bad learner_options for {name!r}: {exc}") from None


MAX_COUNT = 100_000  # an inner step or batch count beyond any protocol: larger ones would only hang a run


def _checked_option(option: str, value: Any, annotation: Any) -> Any:
    try:
        checked = coerce_value(value, annotation, None)
    except Mismatch:
        raise UserError(
            f"learner_options.{option} must be {describe_type(annotation)}, got {value!r}"
        ) from None
    is_count = (
        option.endswith(("_steps", "_batch")) and isinstance(checked, int) and not isinstance(checked, bool)
    )
    if is_count and not 0 <= checked <= MAX_COUNT:
        raise UserError(f"learner_options.{option} must be in [0, {MAX_COUNT}], got {checked}")
    return checked


def _accepted_options(cls: type) -> dict[str, Any]:
    """Keyword arguments of ``cls`` after the model and their annotations, following ``**kwargs`` into base
    classes."""
    accepted: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass in (FewShotLearner, nn.Module, object):
            continue
        hints = typing.get_type_hints(klass.__init__)
        parameters = list(inspect.signature(klass.__init__).parameters.values())[2:]  # self, model
        for p in parameters:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                accepted.setdefault(p.name, hints.get(p.name, Any))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return accepted


__all__ = ["LEARNERS", "FewShotLearner", "LearnerEntry", "build_learner", "learner_class", "learner_entry"]
