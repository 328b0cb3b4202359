"""Meta-optimizers shared by meta-RL and few-shot learning. Imports only torch."""

from metarl.core.adapt import (
    LearnedLearningRates,
    LearningRate,
    adapt,
    gradient_step,
    loss_gradients,
    sgd_step,
)
from metarl.core.es import (
    FitnessShaping,
    antithetic_directions,
    antithetic_gradient,
    antithetic_population,
    centered_ranks,
    es_gradient,
)
from metarl.core.params import (
    Params,
    detach_params,
    flatten,
    functional_forward,
    load_params_,
    named_params,
    stack_over_tasks,
    unflatten_like,
    unflatten_rows,
)
from metarl.core.reptile import linear_anneal, reptile_direction, reptile_gradient, reptile_update

__all__ = [
    "FitnessShaping",
    "LearnedLearningRates",
    "LearningRate",
    "Params",
    "adapt",
    "antithetic_directions",
    "antithetic_gradient",
    "antithetic_population",
    "centered_ranks",
    "detach_params",
    "es_gradient",
    "flatten",
    "functional_forward",
    "gradient_step",
    "linear_anneal",
    "load_params_",
    "loss_gradients",
    "named_params",
    "reptile_direction",
    "reptile_gradient",
    "reptile_update",
    "sgd_step",
    "stack_over_tasks",
    "unflatten_like",
    "unflatten_rows",
]
