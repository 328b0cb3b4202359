"""Per-task replay buffers, all tasks in one tensor per field, filled and sampled for many tasks at once.

PEARL (Rakelly et al. 2019) keeps one buffer of transitions per training task (oyster's MultiTaskReplayBuffer
of SimpleReplayBuffers). Here the buffers of all tasks share one ``(tasks, slots, width)`` tensor per field;
each task has its own size and write position, so adding the episodes of several tasks and drawing a batch for
a meta-batch of tasks are single tensor operations. Each buffer is a ring of ``capacity`` transitions (the
oldest is overwritten first); the tensors grow (doubling) as the buffers fill, up to ``capacity`` slots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from metarl.errors import UserError


class TaskReplayBuffers:
    """One ring buffer of transitions per task.

    Args:
        num_tasks: number of task buffers.
        widths: field name -> width of one transition's entry (e.g. ``{"obs": 17, "reward": 1}``).
        capacity: transitions each task's buffer holds.
    """

    def __init__(self, num_tasks: int, widths: Mapping[str, int], capacity: int) -> None:
        self.num_tasks = int(num_tasks)
        self.widths = dict(widths)
        self.capacity = int(capacity)
        self.sizes = torch.zeros(self.num_tasks, dtype=torch.long)
        self.tops = torch.zeros(self.num_tasks, dtype=torch.long)  # next slot written, per task
        self.data = {name: torch.zeros(self.num_tasks, 0, w) for name, w in self.widths.items()}

    def add(self, rows: torch.Tensor, fields: Mapping[str, torch.Tensor], valid: torch.Tensor) -> None:
        """Append the valid transitions of each row, in order, to that row's task buffer.

        Args:
            rows: ``(R,)`` distinct task indices.
            fields: name -> ``(R, N, width)`` transitions (every field of the buffers).
            valid: ``(R, N)`` bool: which of the ``N`` transitions of a row exist (finished episodes' padding not).
        """
        rows = torch.as_tensor(rows, dtype=torch.long)
        valid = valid.to(torch.bool)
        rank = torch.cumsum(valid.long(), dim=1) - 1  # order of each valid transition within its row
        counts = valid.sum(dim=1)
        # a row adding more than `capacity` keeps only its last `capacity` (so no slot is written twice)
        valid = valid & (rank >= (counts - self.capacity).unsqueeze(1))
        slots = (self.tops[rows].unsqueeze(1) + rank) % self.capacity
        self._reserve(int((self.sizes[rows] + counts).clamp(max=self.capacity).max()))
        task_index = rows.unsqueeze(1).expand_as(valid)[valid]
        slot_index = slots[valid]
        for name, tensor in self.data.items():
            tensor[task_index, slot_index] = fields[name][valid].to(tensor.dtype)
        self.tops[rows] = (self.tops[rows] + counts) % self.capacity
        self.sizes[rows] = (self.sizes[rows] + counts).clamp(max=self.capacity)

    def sample(self, rows: torch.Tensor, count: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``count`` transitions per row, drawn uniformly with replacement from that row's task buffer.

        Returns:
            name -> ``(R, count, width)``.

        Raises:
            UserError: a row's buffer is empty.
        """
        rows = torch.as_tensor(rows, dtype=torch.long)
        sizes = self.sizes[rows]
        if bool((sizes == 0).any()):
            raise UserError("a task's replay buffer is empty: collect episodes on every task before sampling")
        uniform = torch.rand(len(rows), int(count), generator=generator, dtype=torch.float64)
        slots = (uniform * sizes.unsqueeze(1)).long().clamp(max=sizes.unsqueeze(1) - 1)
        tasks = rows.unsqueeze(1).expand_as(slots)
        return {name: tensor[tasks, slots] for name, tensor in self.data.items()}

    def clear(self, rows: torch.Tensor) -> None:
        """Empty the buffers of ``rows`` (PEARL refills a task's encoder buffer with fresh context)."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        self.sizes[rows] = 0
        self.tops[rows] = 0

    def _reserve(self, slots: int) -> None:
        allocated = next(iter(self.data.values())).shape[1]
        if slots <= allocated:
            return
        grown = min(self.capacity, max(slots, 2 * allocated))
        for name, tensor in self.data.items():
            pad = torch.zeros(self.num_tasks, grown - allocated, tensor.shape[2], dtype=tensor.dtype)
            self.data[name] = torch.cat([tensor, pad], dim=1)

    # --- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Sizes, write positions and the filled slots only (up to the largest buffer's size)."""
        used = int(self.sizes.max()) if self.num_tasks else 0
        return {
            "sizes": self.sizes.clone(),
            "tops": self.tops.clone(),
            "data": {name: tensor[:, :used].clone() for name, tensor in self.data.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (same tasks and fields)."""
        data = state["data"]
        if set(data) != set(self.widths) or tuple(state["sizes"].shape) != (self.num_tasks,):
            raise UserError("checkpoint's replay buffers do not match the configured tasks and networks")
        self.sizes = state["sizes"].clone()
        self.tops = state["tops"].clone()
        self.data = {name: data[name].clone() for name in self.widths}
