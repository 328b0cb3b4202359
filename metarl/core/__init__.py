"""Meta-optimizers shared by meta-RL and few-shot learning. Imports only torch."""

from metarl.core.adapt import LearnedLearningRates, adapt, gradient_step
from metarl.core.params import (
    Params,
    detach_params,
    flatten,
    functional_forward,
    load_params_,
    named_params,
    unflatten_like,
)
from metarl.core.reptile import linear_anneal, reptile_direction, reptile_gradient, reptile_update

__all__ = [
    "LearnedLearningRates",
    "Params",
    "adapt",
    "detach_params",
    "flatten",
    "functional_forward",
    "gradient_step",
    "linear_anneal",
    "load_params_",
    "named_params",
    "reptile_direction",
    "reptile_gradient",
    "reptile_update",
    "unflatten_like",
]
