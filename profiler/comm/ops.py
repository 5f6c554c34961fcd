"""What the collective benchmark measures: the ops and their implementations, the payload dtypes,
the message sizes and iteration budgets, the run's settings (:class:`CommConfig`), and each
collective allocated and ready to run (:func:`prepare`). The method is described in
:mod:`profiler.comm.worker`; the loop that times these is :mod:`profiler.comm.bench`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.distributed as dist

from estimator.records.collectives import COMM_DTYPES, OPS
from estimator.errors import GpucostError, InputError

from profiler.comm.report import DEFAULT_MARGIN_PCT

TORCH_DTYPE = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
DEFAULT_DTYPES = ("bf16", "fp32")
DEFAULT_TIMEOUT_S = 120.0
SPLIT_OPS = ("all_gather", "reduce_scatter", "all_to_all")  # the message is split in num_ranks chunks
# Implementations per op, in order of preference: (name, emulated). The first that works is used.
IMPLS: dict[str, tuple[tuple[str, bool], ...]] = {
    "all_reduce": (("all_reduce", False),),
    "all_gather": (("all_gather_into_tensor", False), ("all_gather_single", False), ("all_gather", False)),
    "reduce_scatter": (("reduce_scatter_tensor", False), ("reduce_scatter_single", False), ("reduce_scatter", False),
                       ("all_reduce+slice", True)),
    "all_to_all": (("all_to_all_single", False), ("all_to_all", False), ("isend/irecv", True)),
    "broadcast": (("broadcast", False),),
    "send_recv": (("isend/irecv ring", False),),
}
EMULATION = {
    "all_reduce+slice": "all_reduce of the whole array, then each rank keeps its slice (moves 2x the data of "
                        "a real reduce_scatter)",
    "isend/irecv": "num_ranks - 1 rounds of point-to-point isend/irecv between all pairs",
}


@dataclass(frozen=True, slots=True)
class SweepBudget:
    """Iteration rules for one message size (seconds)."""

    warmup_iters: int
    max_iters: int
    min_iters: int
    point_budget_s: float  # timed iterations = point_budget_s / warm-up time per iteration, within [min, max]
    max_iteration_s: float  # a larger size predicted to take longer per iteration is skipped


BUDGETS = {
    ("cpu", "quick"): SweepBudget(3, 20, 5, 0.5, 2.0),
    ("cpu", "full"): SweepBudget(5, 20, 5, 2.0, 5.0),
    ("gpu", "quick"): SweepBudget(5, 20, 5, 0.5, 1.0),
    ("gpu", "full"): SweepBudget(5, 20, 5, 3.0, 5.0),
}
QUICK_SIZES = {"cpu": (2**10, 2**26), "gpu": (2**12, 2**30)}  # smallest, largest message (bytes)
FULL_SMALLEST = 8
FULL_CAP = {"cpu": 2**31, "gpu": 2**34}
MEMORY_FRACTION = 0.7  # of free memory, shared by the ~3 buffers of the largest size
BUFFERS_PER_SIZE = 3  # all_to_all in + out, plus the cross-check's tensor
CROSS_CHECK_ROUNDS = 12


@dataclass(frozen=True)
class CommConfig:
    """What to measure. JSON-serialisable (the local launcher hands it to its workers).

    The fields after ``margin_pct`` are test and expert hooks (gpucost sets them from the
    ``GPUCOST_COMM_TEST`` environment variable; the record's notes say when any is in effect).
    """

    device: str = "auto"
    dtypes: tuple[str, ...] = DEFAULT_DTYPES
    full: bool = False
    command: str = "profiler.comm.worker"
    quiet: bool = True
    launcher: str = "torchrun"
    timeout_s: float = DEFAULT_TIMEOUT_S
    margin_pct: float = DEFAULT_MARGIN_PCT
    ops: tuple[str, ...] | None = None  # a subset of OPS
    sizes: tuple[int, ...] | None = None  # explicit message sizes in bytes (mode "custom")
    iterations: int | None = None  # a fixed number of timed iterations per size
    emulate: tuple[str, ...] = ()  # use the emulation although the backend has the op (reduce_scatter, all_to_all)
    slow_rank: int | None = None  # this rank runs its straggler matmul slow_factor times per iteration
    slow_factor: int = 1
    hosts: tuple[str, ...] | None = None  # a fake host name per rank (multi-node grouping on one machine)
    matmul_size: int | None = None  # the straggler matmul's m = n = k
    delay_s: float = 0.0  # sleep before each size (lets a test interrupt mid-run)
    allow_one_rank: bool = False  # a 1-rank run: exercises a single GPU's code path (busbw 0, latency only)

    HOOKS = ("ops", "sizes", "iterations", "emulate", "slow_rank", "slow_factor", "hosts", "matmul_size", "delay_s",
             "allow_one_rank")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CommConfig:
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InputError(f"unknown collective-benchmark setting(s): {', '.join(sorted(unknown))}")
        for name in ("dtypes", "ops", "sizes", "emulate", "hosts"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(**data)

    def hooks_in_effect(self) -> dict[str, Any]:
        defaults = CommConfig()
        return {name: getattr(self, name) for name in self.HOOKS if getattr(self, name) != getattr(defaults, name)}

    @property
    def mode(self) -> str:
        return "custom" if self.sizes else "full" if self.full else "quick"


def check_dtypes(dtypes: Sequence[str] | None) -> tuple[str, ...]:
    """The payload dtypes to measure (default bf16, fp32); InputError for others (tf32, fp8)."""
    if not dtypes:
        return DEFAULT_DTYPES
    for dtype in dtypes:
        if dtype not in COMM_DTYPES:
            raise InputError(f"--dtype {dtype} does not apply to --comm; payload dtypes: {', '.join(COMM_DTYPES)}")
    return tuple(dtypes)


def backend_for(device_type: str) -> str:
    """nccl for CUDA (RCCL on ROCm builds), gloo for CPU; anything else is an error."""
    if device_type == "cuda":
        if not dist.is_nccl_available():
            raise GpucostError(f"torch {torch.__version__} has no NCCL backend: cannot measure GPU collectives")
        return "nccl"
    if device_type == "cpu":
        if not dist.is_gloo_available():
            raise GpucostError(f"torch {torch.__version__} has no gloo backend: cannot measure CPU collectives")
        return "gloo"
    raise GpucostError(f"collectives on {device_type!r} devices are not supported: use CUDA GPUs (nccl) or the CPU "
                       "(gloo)")


def comm_device(requested: str, local_rank: int) -> torch.device:
    """The device of this rank: the CPU, or GPU ``local_rank`` (``--device auto`` picks CUDA if present)."""
    text = requested.strip().lower()
    if text == "cpu" or (text == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if text in ("auto", "cuda"):
        if not torch.cuda.is_available():
            raise GpucostError(f"--device {requested} was requested but torch sees no CUDA GPU "
                               f"(torch {torch.__version__}); use --device cpu")
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise GpucostError(f"local rank {local_rank} has no GPU: {count} visible; start at most {count} "
                               "processes per node")
        return torch.device("cuda", local_rank)
    raise InputError(f"--device {requested} does not apply to --comm: use auto, cpu or cuda (each rank takes GPU "
                     "LOCAL_RANK; choose GPUs with CUDA_VISIBLE_DEVICES)")


def message_sizes(kind: str, full: bool, max_bytes: int | None = None) -> tuple[int, ...]:
    """Message sizes (bytes), powers of 2: quick CPU 1 KiB-64 MiB, GPU 4 KiB-1 GiB; full 8 B up to the
    largest that fits (``max_bytes``), at most 2 GiB on a CPU and 16 GiB on a GPU."""
    if full:
        smallest, largest = FULL_SMALLEST, FULL_CAP[kind]
    else:
        smallest, largest = QUICK_SIZES[kind]
    if max_bytes is not None:
        largest = min(largest, max(smallest, 1 << (max(int(max_bytes), 1).bit_length() - 1)))
    sizes, size = [], smallest
    while size <= largest:
        sizes.append(size)
        size *= 2
    return tuple(sizes)


def element_count(op: str, size_bytes: int, itemsize: int, num_ranks: int) -> int:
    """Elements of the (whole) message: ``size_bytes / itemsize``, for split ops a multiple of num_ranks."""
    count = max(size_bytes // itemsize, 1)
    if op in SPLIT_OPS:
        count = max(count // num_ranks, 1) * num_ranks
    return count


# -- one collective, ready to run ------------------------------------------------------------------


@dataclass(frozen=True)
class GroupCtx:
    """This rank's view of a process group: the handle (None: the world), global ranks, own index."""

    kind: str
    pg: Any
    ranks: tuple[int, ...]
    me: int

    @property
    def n(self) -> int:
        return len(self.ranks)


def _call(name: str, *args: Any, **kwargs: Any) -> Any:
    function = getattr(dist, name, None)
    if function is None:
        raise NotImplementedError(f"torch.distributed.{name} does not exist in torch {torch.__version__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # all_gather_into_tensor -> all_gather_single renames
        return function(*args, **kwargs)


def _wait(works: Sequence[Any]) -> None:
    for work in works:
        work.wait()


def prepare(op: str, impl: str, dtype: str, count: int, g: GroupCtx, device: torch.device,
            check: bool = False) -> tuple[Callable[[], None], Callable[[], bool]]:
    """Allocate the buffers of ``op`` on ``count`` elements (the whole message) and return
    ``(run, verify)``. ``check``: fill known values so that ``verify()`` after one ``run()`` tells
    whether the implementation moved the data right (the probe); else random positive values."""
    td = TORCH_DTYPE[dtype]
    n, me, pg = g.n, g.me, g.pg
    chunk = count // n if op in SPLIT_OPS else count

    def rand(length: int) -> torch.Tensor:
        return torch.rand(length, dtype=td, device=device).add_(1)  # in place: one buffer, not two

    def chunks(values: Sequence[float]) -> torch.Tensor:  # chunk k of the message holds values[k]
        return torch.tensor(values, dtype=td, device=device).repeat_interleave(chunk)

    def close(actual: torch.Tensor, expected: torch.Tensor) -> bool:
        rtol = 1e-5 if td == torch.float32 else 2e-2 + n * 2**-8
        return bool(torch.allclose(actual.float(), expected.float(), rtol=rtol, atol=0.0))

    def peer(offset: int) -> int:
        return g.ranks[(me + offset) % n]

    if op == "all_reduce":
        x = torch.ones(count, dtype=td, device=device) if check else rand(count)

        def run() -> None:
            dist.all_reduce(x, group=pg)

        return run, lambda: close(x, torch.full_like(x, n))
    if op == "all_gather":
        inp = torch.full((chunk,), me + 1, dtype=td, device=device) if check else rand(chunk)
        out = torch.empty(count, dtype=td, device=device)
        if impl == "all_gather":
            views = list(out.chunk(n))

            def run() -> None:
                dist.all_gather(views, inp, group=pg)
        else:
            def run() -> None:
                _call(impl, out, inp, group=pg)

        return run, lambda: close(out, chunks([k + 1 for k in range(n)]))
    if op == "reduce_scatter":
        inp = chunks([k + 1 for k in range(n)]) if check else rand(count)
        out = torch.empty(chunk, dtype=td, device=device)
        if impl == "all_reduce+slice":
            mine = slice(me * chunk, (me + 1) * chunk)

            def run() -> None:
                dist.all_reduce(inp, group=pg)
                out.copy_(inp[mine])
        elif impl == "reduce_scatter":
            views = list(inp.chunk(n))

            def run() -> None:
                dist.reduce_scatter(out, views, group=pg)
        else:
            def run() -> None:
                _call(impl, out, inp, group=pg)

        return run, lambda: close(out, torch.full_like(out, n * (me + 1)))
    if op == "all_to_all":
        inp = chunks([me * n + k + 1 for k in range(n)]) if check else rand(count)
        out = torch.empty(count, dtype=td, device=device)
        ins, outs = list(inp.chunk(n)), list(out.chunk(n))
        if impl == "all_to_all_single":
            def run() -> None:
                dist.all_to_all_single(out, inp, group=pg)
        elif impl == "all_to_all":
            def run() -> None:
                dist.all_to_all(outs, ins, group=pg)
        else:  # isend/irecv: every pair exchanges its chunks directly
            def run() -> None:
                outs[me].copy_(ins[me])
                ops = []
                for k in range(1, n):
                    ops.append(dist.P2POp(dist.isend, ins[(me + k) % n], peer(k), pg))
                    ops.append(dist.P2POp(dist.irecv, outs[(me - k) % n], peer(-k), pg))
                _wait(dist.batch_isend_irecv(ops))

        return run, lambda: close(out, chunks([k * n + me + 1 for k in range(n)]))
    if op == "broadcast":
        x = torch.full((count,), 3.0 if me == 0 else 0.5, dtype=td, device=device) if check else rand(count)

        def run() -> None:
            dist.broadcast(x, src=g.ranks[0], group=pg)

        return run, lambda: close(x, torch.full_like(x, 3.0))
    if op == "send_recv":
        send = torch.full((count,), me + 1, dtype=td, device=device) if check else rand(count)
        recv = torch.empty(count, dtype=td, device=device)

        def run() -> None:  # a ring: each rank sends to the next and receives from the previous
            _wait(dist.batch_isend_irecv([dist.P2POp(dist.isend, send, peer(1), pg),
                                          dist.P2POp(dist.irecv, recv, peer(-1), pg)]))

        return run, lambda: close(recv, torch.full_like(recv, (me - 1) % n + 1))
    raise ValueError(f"unknown collective {op!r}; use one of {', '.join(OPS)}")
