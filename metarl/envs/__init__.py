"""Task-distribution Gymnasium envs, their batched engines and the generic batched fallback."""

from metarl.envs.base import (
    Task,
    TaskEnv,
    check_array,
    check_interval,
    check_range,
    check_real,
    register_task_type,
    task_from_dict,
    task_to_dict,
)
from metarl.envs.batched import BatchedEnv, GenericBatchedEnv, make_batched
from metarl.envs.registration import register_envs, registered_ids

register_envs()

__all__ = [
    "BatchedEnv",
    "GenericBatchedEnv",
    "Task",
    "TaskEnv",
    "check_array",
    "check_interval",
    "check_range",
    "check_real",
    "make_batched",
    "register_envs",
    "register_task_type",
    "registered_ids",
    "task_from_dict",
    "task_to_dict",
]
