"""Few-shot meta-training throughput: metarl vs ``higher`` vs a clone-the-module-per-task reference loop.

Two workloads, side by side in one run, on random Omniglot-shaped data (timing does not depend on the pixels):

* **MAML meta-iteration**: 5-way 1-shot, 1 query per class (the MAML Omniglot protocol), meta-batch 32, one
  second-order inner SGD step (lr 0.4) on a Conv4 (64 filters, batch norm without running statistics), query
  loss backward to the initialisation, Adam step. Reported as meta-iterations per second. Two Conv4 variants:
  2x2 max-pooling (the common Conv4) and stride-2 convolutions (the MAML Omniglot network). A third row runs the
  MAML sinusoid protocol (40x40 MLP, 10 shots, meta-batch 25, inner lr 0.01), where per-task overhead dominates.

  - *metarl*: ``metarl.supervised.learners.maml.MAML.train_step``: the whole meta-batch adapts in one
    ``metarl.core.adapt`` call on task-expanded parameters; Conv4 runs the tasks as channel groups of one batch
    (``Conv4.forward_tasks``: grouped convolutions, a batch norm with a closed-form second derivative,
    max-pooling found in channels-last layout, tasks in cache-sized chunks, one backward pass per 8 tasks), the
    sinusoid MLP runs per task under ``torch.func.vmap``.
  - *higher*: the library's documented MAML loop, ``higher.innerloop_ctx`` per task with a differentiable SGD
    optimizer, query loss ``backward()`` per task.
  - *clone loop*: ``copy.deepcopy`` of the module per task, ``torch.autograd.grad(create_graph=True)`` on the
    copy's parameters, fast weights written into the copy, query loss ``backward()`` and the copy's gradients
    (the same as the original's, since the copy starts equal) added to the original.

* **ProtoNet episodes per second**: 5-way 1-shot 15-query episodes through a Conv4 encoder (no head), squared
  Euclidean distances to class means, cross-entropy, Adam; 32 episodes per optimizer step.

  - *metarl*: ``metarl.supervised.learners.protonet.PrototypicalNetwork.train_step`` (one encoder pass per
    episode, so batch norm sees the statistics of one episode; the learner keeps the encoder and the images in
    channels_last memory format, where CPU max-pooling and batch norm are several times faster, and runs the
    backward pass in chunks of 8 episodes, gradients accumulated; ``Conv4.embed`` pools before the ReLU,
    which commutes with max-pooling, so it rectifies four times fewer entries).
  - *reference loop*: the original implementation's structure: one episode at a time, embed with the
    original block order (conv, batch norm, ReLU, max-pool: ``Conv4.features`` as a plain ``nn.Sequential``),
    prototypes, loss, ``backward()``; gradients accumulated over the 32 episodes, one optimizer step;
    PyTorch's default memory layout.
  - *higher*: not applicable (there is no inner loop to differentiate through).

* **MANN, Meta-LSTM, MetaNet, MTL meta-iterations per second** (``--families``), at their shipped configs' sizes
  (MANN: 5 classes x 10 instances of 20x20 images, LRUA memory 128x40, 4 heads, 200-unit controller; the others:
  Conv4 64 on 28x28 5-way 1-shot 5-query, Meta-LSTM 5 first-order LSTM steps, MetaNet first order, MTL 10 inner
  steps) with ``--family-meta-batch`` tasks (MANN: ``--mann-meta-batch``, as its reference loop takes tens of
  seconds per sequence). No public implementation of these runs here, so the other column is
  a straightforward loop (``scripts/fewshot_reference_loops.py``): one task (sequence, support example) at a
  time with ``torch.autograd.grad`` per task, MANN's memory as a Python list of slots. Each reference computes
  the same loss as metarl from the same weights (checked before timing).

Each figure is the median over ``--repeats`` timed rounds; in every round each implementation runs once, in turn,
so that load from other processes on a shared machine affects them alike; the process CPU time of each call is
reported next to the wall-clock (on a machine shared with other jobs, CPU time measures the work itself).
Speedup = metarl / fastest other.

Usage::

    python scripts/bench_fewshot.py                      # full sizes
    python scripts/bench_fewshot.py --quick              # smaller meta-batches, fewer repeats, a few minutes
    python scripts/bench_fewshot.py --json bench.json
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from metarl.memory import keep_freed_memory
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.maml import MAML
from metarl.supervised.models import MLP, Conv4

WAYS, SHOTS = 5, 1


def random_batch(tasks: int, queries: int, size: int, seed: int) -> EpisodeBatch:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(WAYS)
    return EpisodeBatch(
        torch.rand(tasks, WAYS * SHOTS, 1, size, size, generator=gen),
        labels.repeat_interleave(SHOTS).expand(tasks, -1).contiguous(),
        torch.rand(tasks, WAYS * queries, 1, size, size, generator=gen),
        labels.repeat_interleave(queries).expand(tasks, -1).contiguous(),
        WAYS,
        SHOTS,
        queries,
    )


def sinusoid_batch(tasks: int, shots: int, seed: int) -> EpisodeBatch:
    from metarl.supervised.data import SinusoidTasks

    return SinusoidTasks(seed).sample(tasks, shots, shots)


# ----------------------------------------------------------------------------------------------- MAML


def _task_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(outputs, targets) if targets.is_floating_point() else F.cross_entropy(outputs, targets)


def maml_metarl(
    model: nn.Module, inner_lr: float, loss: str = "cross_entropy"
) -> Callable[[EpisodeBatch], None]:
    learner = MAML(model, inner_lr=inner_lr, inner_steps=1, loss=loss)
    optimizer = torch.optim.Adam(learner.parameters(), 1e-3)
    return lambda batch: learner.train_step(batch, optimizer)


def maml_higher(model: nn.Module, inner_lr: float, loss: str = "") -> Callable[[EpisodeBatch], None]:
    import higher

    meta_optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    inner_optimizer = torch.optim.SGD(model.parameters(), lr=inner_lr)

    def step(batch: EpisodeBatch) -> None:
        meta_optimizer.zero_grad()
        for t in range(batch.num_tasks):
            with higher.innerloop_ctx(model, inner_optimizer, copy_initial_weights=False) as (
                fmodel,
                diffopt,
            ):
                diffopt.step(_task_loss(fmodel(batch.support_x[t]), batch.support_y[t]))
                query_loss = _task_loss(fmodel(batch.query_x[t]), batch.query_y[t])
                (query_loss / batch.num_tasks).backward()
        meta_optimizer.step()

    return step


def _set_fast_weights(module: nn.Module, fast: dict[str, torch.Tensor]) -> None:
    for name, value in fast.items():
        owner_name, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        owner._parameters[attr] = value  # a non-leaf tensor: the forward pass differentiates through it


def maml_clone_loop(model: nn.Module, inner_lr: float, loss: str = "") -> Callable[[EpisodeBatch], None]:
    meta_optimizer = torch.optim.Adam(model.parameters(), 1e-3)

    def step(batch: EpisodeBatch) -> None:
        meta_optimizer.zero_grad()
        for t in range(batch.num_tasks):
            clone = copy.deepcopy(model)
            names, params = zip(*clone.named_parameters(), strict=True)
            support_loss = _task_loss(clone(batch.support_x[t]), batch.support_y[t])
            grads = torch.autograd.grad(support_loss, params, create_graph=True)
            _set_fast_weights(
                clone, {n: p - inner_lr * g for n, p, g in zip(names, params, grads, strict=True)}
            )
            query_loss = _task_loss(clone(batch.query_x[t]), batch.query_y[t])
            (query_loss / batch.num_tasks).backward(inputs=list(params))
            for original, copied in zip(model.parameters(), params, strict=True):
                original.grad = copied.grad if original.grad is None else original.grad + copied.grad
        meta_optimizer.step()

    return step


# -------------------------------------------------------------------------------------------- ProtoNet


def prototypical_loss(
    support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor, query_y: torch.Tensor
):
    one_hot = F.one_hot(support_y, WAYS).to(support.dtype)
    prototypes = one_hot.transpose(-1, -2) @ support / one_hot.sum(-2).unsqueeze(-1)
    logits = -(query.unsqueeze(-2) - prototypes.unsqueeze(-3)).pow(2).sum(-1)
    return F.cross_entropy(logits.reshape(-1, WAYS), query_y.reshape(-1))


def protonet_metarl(encoder: nn.Module) -> Callable[[EpisodeBatch], None]:
    from metarl.supervised.learners.protonet import PrototypicalNetwork

    learner = PrototypicalNetwork(encoder)
    optimizer = torch.optim.Adam(learner.parameters(), 1e-3)
    return lambda batch: learner.train_step(batch, optimizer)


def protonet_reference(encoder: nn.Module) -> Callable[[EpisodeBatch], None]:
    """The original ProtoNet training step; the encoder runs as the original's ``nn.Sequential`` of blocks
    (conv, batch norm, ReLU, max-pool), with the weights of ``encoder`` (a Conv4)."""
    optimizer = torch.optim.Adam(encoder.parameters(), 1e-3)

    def step(batch: EpisodeBatch) -> None:
        optimizer.zero_grad()
        for t in range(batch.num_tasks):
            n = batch.support_x.shape[1]
            features = encoder.features(torch.cat([batch.support_x[t], batch.query_x[t]])).flatten(1)
            loss = prototypical_loss(features[:n], batch.support_y[t], features[n:], batch.query_y[t])
            (loss / batch.num_tasks).backward()
        optimizer.step()

    return step


# ------------------------------------------------------------------------------------------------ timing


def time_round_robin(
    steps: dict[str, Callable[[EpisodeBatch], None]], batch: EpisodeBatch, repeats: int
) -> dict[str, tuple[float, float]]:
    """Median (wall-clock, process CPU) seconds per call of each step function.

    Calls are interleaved so that machine load hits all implementations alike. Process CPU time is not inflated
    by other processes taking the cores (only by cache effects), so on a shared machine it compares the
    implementations' work more faithfully than wall-clock; with one torch thread it is also the wall-clock an
    idle core would give.
    """
    for step in steps.values():
        step(batch)  # warm-up (allocations, vmap tracing, oneDNN primitive caches)
    walls: dict[str, list[float]] = {name: [] for name in steps}
    cpus: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            wall, cpu = time.perf_counter(), time.process_time()
            step(batch)
            cpus[name].append(time.process_time() - cpu)
            walls[name].append(time.perf_counter() - wall)
    return {name: (statistics.median(walls[name]), statistics.median(cpus[name])) for name in steps}


def higher_available() -> bool:
    try:
        import higher  # noqa: F401
    except ImportError:
        return False
    return True


def maml_row(
    label: str, model: nn.Module, batch: EpisodeBatch, inner_lr: float, loss: str, repeats: int
) -> dict:
    """Meta-iterations per second of every MAML implementation, each on its own copy of ``model``."""
    makers = {"metarl": maml_metarl, "clone loop": maml_clone_loop}
    if higher_available():
        makers["higher"] = maml_higher
    steps = {name: make(copy.deepcopy(model), inner_lr, loss) for name, make in makers.items()}
    seconds = time_round_robin(steps, batch, repeats)
    return {
        "workload": label,
        "unit": "meta-iterations/s",
        "rates": {n: 1.0 / wall for n, (wall, _) in seconds.items()},
        "cpu_rates": {n: 1.0 / cpu for n, (_, cpu) in seconds.items()},
    }


def family_rows(args: argparse.Namespace) -> list[dict]:
    """Meta-iterations/s of MANN, Meta-LSTM, MetaNet and MTL against straightforward reference loops."""
    import fewshot_reference_loops as ref  # next to this script

    from metarl.supervised.learners.mann import MemoryAugmentedNetwork
    from metarl.supervised.learners.meta_lstm import MetaLSTM
    from metarl.supervised.learners.metanet import MetaNetwork
    from metarl.supervised.learners.mtl import MetaTransferLearner

    tasks = args.family_meta_batch
    size = args.image_size
    builds = {
        f"MANN LRUA 128x40, 4 heads, 5 classes x 10 instances 20px, meta-batch {args.mann_meta_batch}": (
            lambda: MemoryAugmentedNetwork(Conv4(1, 20, ways=None), ways=WAYS),
            ref.mann_loss,
            random_batch(args.mann_meta_batch, 9, 20, 2),
        ),
        f"Meta-LSTM first-order, 5 steps, Conv4 {size}px 5-way 1-shot, meta-batch {tasks}": (
            lambda: MetaLSTM(Conv4(1, size, ways=WAYS), inner_steps=5, first_order=True),
            ref.meta_lstm_loss,
            random_batch(tasks, 5, size, 3),
        ),
        f"MetaNet first-order, Conv4 {size}px 5-way 1-shot, meta-batch {tasks}": (
            lambda: MetaNetwork(Conv4(1, size, ways=None), ways=WAYS),
            ref.metanet_loss,
            random_batch(tasks, 5, size, 4),
        ),
        f"MTL (SS, meta-transfer phase), 10 inner steps, Conv4 {size}px 5-way 1-shot, meta-batch {tasks}": (
            lambda: MetaTransferLearner(Conv4(1, size, ways=None), ways=WAYS, pretrain_iterations=0),
            ref.mtl_loss,
            random_batch(tasks, 5, size, 5),
        ),
    }
    rows = []
    for label, (build, reference, batch) in builds.items():
        torch.manual_seed(0)
        ours, theirs = build(), build()
        theirs.load_state_dict(ours.state_dict())
        loss_fn = reference(theirs)
        ref.check_same_loss(theirs, loss_fn, batch)
        optimizer = torch.optim.Adam([p for p in ours.parameters() if p.requires_grad], 1e-3)
        steps = {
            "metarl": lambda b, learner=ours, opt=optimizer: learner.train_step(b, opt),
            "reference loop": ref.training_step(theirs, loss_fn),
        }
        seconds = time_round_robin(steps, batch, args.family_repeats)
        rows.append(
            {
                "workload": label,
                "unit": "meta-iterations/s",
                "rates": {n: 1.0 / wall for n, (wall, _) in seconds.items()},
                "cpu_rates": {n: 1.0 / cpu for n, (_, cpu) in seconds.items()},
            }
        )
    return rows


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    if not args.system_malloc:
        keep_freed_memory()  # as training runs do by default; the same for all implementations in this process
    seed = 0
    rows = []
    mb = args.meta_batch
    for downsample in args.downsample:
        torch.manual_seed(seed)
        model = Conv4(1, args.image_size, ways=WAYS, downsample=downsample)
        batch = random_batch(mb, args.maml_queries, args.image_size, seed)
        label = f"MAML 2nd-order, Conv4 {downsample} {args.image_size}px, {WAYS}-way {SHOTS}-shot, meta-batch {mb}"
        rows.append(maml_row(label, model, batch, args.inner_lr, "cross_entropy", args.repeats))
    if args.sinusoid:
        torch.manual_seed(seed)
        tasks = args.sinusoid_meta_batch
        label = f"MAML 2nd-order, sinusoid MLP 40x40, 10-shot, meta-batch {tasks}"
        rows.append(maml_row(label, MLP(), sinusoid_batch(tasks, 10, seed), 0.01, "mse", args.repeats * 5))
    encoder = Conv4(1, args.image_size, ways=None)
    proto_batch = random_batch(args.meta_batch, args.proto_queries, args.image_size, seed + 1)
    proto_steps = {"reference loop": protonet_reference}
    try:
        proto_steps = {"metarl": protonet_metarl, **proto_steps}
        protonet_metarl(copy.deepcopy(encoder))
    except ImportError:
        del proto_steps["metarl"]
    seconds = time_round_robin(
        {name: make(copy.deepcopy(encoder)) for name, make in proto_steps.items()}, proto_batch, args.repeats
    )
    rows.append(
        {
            "workload": f"ProtoNet, Conv4 maxpool, {WAYS}-way {SHOTS}-shot {args.proto_queries}-query, "
            f"{args.meta_batch} episodes/step",
            "unit": "episodes/s",
            "rates": {name: args.meta_batch / wall for name, (wall, _) in seconds.items()},
            "cpu_rates": {name: args.meta_batch / cpu for name, (_, cpu) in seconds.items()},
        }
    )
    if args.families:
        rows.extend(family_rows(args))
    for row in rows:
        for key, suffix in (("rates", ""), ("cpu_rates", "_cpu")):
            ours = {k: v for k, v in row[key].items() if k.startswith("metarl")}
            others = {k: v for k, v in row[key].items() if not k.startswith("metarl")}
            best_ours, best_other = max(ours, key=ours.get), max(others, key=others.get)
            row["speedup" + suffix] = ours[best_ours] / others[best_other]
            row["speedup_vs" + suffix] = f"{best_ours} / {best_other}"
    return {
        "rows": rows,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
    }


def format_table(result: dict) -> str:
    """Markdown table: each cell is ``wall-clock rate (CPU-time rate)``; speedups of metarl over the best other."""
    names = sorted(
        {name for row in result["rows"] for name in row["rates"]},
        key=lambda n: (not n.startswith("metarl"), n),
    )
    header = f"| workload | unit: wall (CPU time) | {' | '.join(names)} | speedup wall | speedup CPU time |"
    lines = [header, "|" + "---|" * (len(names) + 4)]
    for row in result["rows"]:
        cells = [
            f"{row['rates'][n]:.3g} ({row['cpu_rates'][n]:.3g})" if n in row["rates"] else "n/a"
            for n in names
        ]
        lines.append(
            f"| {row['workload']} | {row['unit']} | {' | '.join(cells)} | {row['speedup']:.2f}x | "
            f"{row['speedup_cpu']:.2f}x ({row['speedup_vs_cpu']}) |"
        )
    settings, machine = result["settings"], result["machine"]
    lines.append(
        f"\nmedian of {settings['repeats']} interleaved rounds, {settings['threads']} torch thread(s), "
        f"freed memory kept: {'no' if settings['system_malloc'] else 'yes'}, "
        f"torch {machine['torch']}, {machine['cpus']} CPUs, 1-min load average at the end "
        f"{machine['load_average_1min']:.1f}"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="meta-batch 4 (2 for the MANN..MTL rows), 2 rounds (1), max-pool only",
    )
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--maml-queries", type=int, default=1, help="query images per class for MAML")
    parser.add_argument("--proto-queries", type=int, default=15, help="query images per class for ProtoNet")
    parser.add_argument("--inner-lr", type=float, default=0.4)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument(
        "--downsample",
        nargs="+",
        choices=("maxpool", "stride"),
        default=["maxpool", "stride"],
        help="Conv4 variants for the MAML rows (stride = the MAML Omniglot network)",
    )
    parser.add_argument(
        "--sinusoid", action=argparse.BooleanOptionalAction, default=True, help="MAML sinusoid row"
    )
    parser.add_argument("--sinusoid-meta-batch", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--families",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="MANN, Meta-LSTM, MetaNet and MTL rows against straightforward reference loops",
    )
    parser.add_argument(
        "--family-meta-batch", type=int, default=16, help="tasks per meta-iteration of those rows"
    )
    parser.add_argument(
        "--mann-meta-batch",
        type=int,
        default=2,
        help="sequences per meta-iteration of the MANN row (its reference loop is slow)",
    )
    parser.add_argument(
        "--family-repeats", type=int, default=3, help="timed rounds of those rows (slow loops)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", help="also write the results as JSON to this path")
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc as it is (training runs call metarl.memory.keep_freed_memory)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.meta_batch, args.repeats = min(args.meta_batch, 4), min(args.repeats, 2)
        args.family_meta_batch, args.family_repeats = min(args.family_meta_batch, 2), 1
        args.mann_meta_batch = 1
        args.downsample = args.downsample[:1]
    if (
        min(args.meta_batch, args.repeats, args.family_meta_batch, args.mann_meta_batch, args.family_repeats)
        < 1
    ):
        parser.error("--meta-batch, --repeats and the --family-*/--mann-* sizes must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    print(format_table(result))
    if args.json:
        from metarl.training import write_json_atomic

        write_json_atomic(args.json, result)
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
