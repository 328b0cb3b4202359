"""Task-distribution Gymnasium envs, their batched engines and the generic batched fallback."""

from metarl.envs.base import (
    Task,
    TaskEnv,
    check_array,
    check_interval,
    check_range,
    check_real,
    register_task_type,
    sample_tasks,
    task_from_dict,
    task_to_dict,
)
from metarl.envs.batched import BatchedEnv, GenericBatchedEnv, make_batched
from metarl.envs.registration import register_envs, registered_ids
from metarl.envs.trials import BatchedTrials, TrialWrapper, make_batched_trials

register_envs()

__all__ = [
    "BatchedEnv",
    "BatchedTrials",
    "GenericBatchedEnv",
    "Task",
    "TaskEnv",
    "TrialWrapper",
    "check_array",
    "check_interval",
    "check_range",
    "check_real",
    "make_batched",
    "make_batched_trials",
    "register_envs",
    "register_task_type",
    "registered_ids",
    "sample_tasks",
    "task_from_dict",
    "task_to_dict",
]
