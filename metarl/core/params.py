"""Named-parameter dictionaries: the functional view of an ``nn.Module``.

Adapted parameters are plain ``dict[str, Tensor]`` that are run through the module with
:func:`torch.func.functional_call`, so a module is never mutated during adaptation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

Params = dict[str, torch.Tensor]


def named_params(module: nn.Module, *, trainable_only: bool = True) -> Params:
    """Return the module's parameters as an ordered ``{name: tensor}`` dict (the tensors themselves).

    Args:
        module: the model whose parameters are the meta-parameters.
        trainable_only: skip parameters with ``requires_grad=False``.
    """
    return {n: p for n, p in module.named_parameters() if p.requires_grad or not trainable_only}


def stack_over_tasks(params: Mapping[str, torch.Tensor], num_tasks: int, *, copy: bool) -> Params:
    """Each parameter repeated for ``num_tasks`` tasks on a new leading axis, ``(num_tasks, *shape)``.

    Gradients of the stacked tensors flow back to ``params``, summed over the tasks; as tasks share no entry of
    the stacked tensors, a sum of per-task losses gives each task's slice exactly its own gradient.

    Args:
        params: the parameters shared by every task.
        num_tasks: the number of tasks.
        copy: give every task its own contiguous memory (per-task parameters that are later updated or read
            by batched matmuls); ``False`` returns expanded views of ``params`` that take no memory (the
            starting point of a differentiable inner loop, whose steps create new tensors anyway).
    """
    stacked = {name: p.unsqueeze(0).expand(num_tasks, *p.shape) for name, p in params.items()}
    return {name: p.clone() for name, p in stacked.items()} if copy else stacked


def functional_forward(
    module: nn.Module, params: Mapping[str, torch.Tensor], *args: Any, **kwargs: Any
) -> Any:
    """Run ``module(*args, **kwargs)`` with ``params`` in place of its own parameters.

    Parameters missing from ``params`` (e.g. frozen ones) fall back to the module's own.
    """
    return torch.func.functional_call(module, dict(params), args, kwargs, strict=False)


def detach_params(params: Mapping[str, torch.Tensor], *, requires_grad: bool = False) -> Params:
    """A copy of ``params`` cut from the autograd graph (optionally a new leaf that requires grad)."""
    return {n: p.detach().clone().requires_grad_(requires_grad) for n, p in params.items()}


def load_params_(module: nn.Module, params: Mapping[str, torch.Tensor]) -> None:
    """Copy ``params`` into the module's parameters in place (for outer, meta-level updates only)."""
    own = dict(module.named_parameters())
    unknown = set(params) - set(own)
    if unknown:
        raise KeyError(f"parameters {sorted(unknown)} are not in the module; known: {sorted(own)}")
    with torch.no_grad():
        for name, value in params.items():
            own[name].copy_(value)


def flatten(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one flat vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten_like(vector: torch.Tensor, like: Mapping[str, torch.Tensor]) -> Params:
    """Split a flat vector back into a dict shaped like ``like``."""
    out, offset = {}, 0
    for name, ref in like.items():
        n = ref.numel()
        out[name] = vector[offset : offset + n].view_as(ref)
        offset += n
    if offset != vector.numel():
        raise ValueError(f"vector has {vector.numel()} entries, parameters need {offset}")
    return out


def unflatten_rows(vectors: torch.Tensor, like: Mapping[str, torch.Tensor]) -> Params:
    """Rows of ``vectors`` (``(S, dim)``, each a flat parameter vector) as stacked parameters ``{name: (S, *shape)}``,
    the per-task layout of the batched policies (one row per task slot)."""
    out, offset = {}, 0
    for name, ref in like.items():
        n = ref.numel()
        out[name] = vectors[:, offset : offset + n].reshape(vectors.shape[0], *ref.shape)
        offset += n
    if offset != vectors.shape[-1]:
        raise ValueError(f"vectors have {vectors.shape[-1]} entries, parameters need {offset}")
    return out
