"""The collective benchmark: all_reduce, all_gather, reduce_scatter, all_to_all, broadcast and
send/recv over torch.distributed (NCCL on CUDA GPUs, gloo on CPUs), run by every rank.

:func:`run_worker` is what each rank runs, under torchrun or as one of the local workers that
:mod:`profiler.comm_launch` starts; rank 0 returns the result (the ``collectives`` section plus
its own device record), the other ranks ``None``. Method (nccl-tests ``doc/PERFORMANCE.md`` and
stas00's ``all_reduce_bench.py``):

- message sizes swept by a factor of 2, payloads bf16 and fp32 (positive random values, never
  zeros; reductions grow them towards +inf, which costs the same as any number);
- per size: warm-up iterations, then a barrier of the group before every timed iteration, each
  iteration timed on its own (CUDA events on a GPU, ``time.perf_counter`` on a CPU); the per-rank
  times are reduced with MAX over the world, so every iteration counts the slowest rank; the row
  keeps the median and the best of those;
- the number of timed iterations (at most 20, as nccl-tests) comes from the slowest rank's warm-up,
  so every rank runs the same number; a size whose iteration would exceed the limit is skipped;
- every step ends in a small MAX all_reduce that also carries each rank's stop flag (Ctrl-C), so
  all ranks stop at the same point and the run is never left waiting in a collective;
- with more than one node, the intra-node and inter-node groups are measured as well
  (:mod:`profiler.comm_topology`); before the sweep every rank runs the same matmul at the same
  moment (stragglers); after the world all_reduce sweep, an independent timing loop of plain
  ``dist.all_reduce`` calls on the largest size cross-checks the benchmark's figure.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import signal
import socket
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.distributed as dist

from estimator.records.collectives import COMM_DTYPES, OPS, format_bytes
from estimator.errors import GpucostError, InputError

from .comm_report import DEFAULT_MARGIN_PCT, build_section, measured_row, straggler_notes, straggler_report
from .comm_topology import Topology, plan_groups
from .device import cpu_model_name
from .kernels import matmul_kernel, matmul_precision
from .nvml import THROTTLING_REASONS, open_device
from .progress import ProgressBar
from .run import is_out_of_memory
from .telemetry import DEFAULT_INTERVAL_S, Sampler, cpu_sample, read_cpu_clock_mhz, summarize
from .timing import clock_for, measure

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
    command: str = "profiler.comm"
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


# -- the run --------------------------------------------------------------------------------------


class _Stop(Exception):
    """Every rank agreed to stop (a Ctrl-C or SIGTERM reached one of them)."""


@dataclass
class _Series:
    kind: str
    op: str
    dtype: str
    sizes: tuple[int, ...]


@dataclass
class _State:
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cross_check: dict[str, Any] | None = None
    stragglers: dict[str, Any] | None = None
    done: int = 0
    total: int = 0


@contextlib.contextmanager
def _stop_signals(flag: Callable[[], None]) -> Iterator[None]:
    """SIGINT / SIGTERM set the stop flag instead of raising (main thread only), restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        flag()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text[:300]


def _pci_bus_id(index: int, nvml: Any, props: Any) -> str | None:
    """The GPU's PCI bus id: from NVML where profiler/nvml.py offers it, else torch's device properties."""
    getter = getattr(nvml, "pci_bus_id", None)
    if callable(getter):
        value = getter()
        if value:
            return str(value)
    domain, bus, dev = (getattr(props, name, None) for name in ("pci_domain_id", "pci_bus_id", "pci_device_id"))
    if bus is None or dev is None:
        return None
    return f"{int(domain or 0):08X}:{int(bus):02X}:{int(dev):02X}.0"


def _telemetry(device: torch.device) -> tuple[Callable[[], Any] | None, str | None, Callable[[], None]]:
    """(read, source, close) for this rank's device (NVML on NVIDIA GPUs, /proc/cpuinfo on CPUs)."""
    if device.type == "cuda" and not getattr(torch.version, "hip", None):
        props = torch.cuda.get_device_properties(device.index)
        uuid = getattr(props, "uuid", None)
        nvml = open_device(device.index, str(uuid) if uuid else None)
        if nvml is not None:
            return nvml.sample, "nvml", nvml.close
    elif device.type == "cpu" and read_cpu_clock_mhz() is not None:
        return cpu_sample, "procfs", lambda: None
    return None, None, lambda: None


class CommRun:
    """One rank's benchmark run (use :func:`run_worker`)."""

    def __init__(self, config: CommConfig, rank: int, world_size: int, local_rank: int, device: torch.device,
                 backend: str, progress: Callable[[int, int, str], None] | None = None):
        self.config = config
        self.rank, self.world, self.local_rank = rank, world_size, local_rank
        self.device, self.backend = device, backend
        self.kind = "cpu" if device.type == "cpu" else "gpu"
        self.budget = BUDGETS[(self.kind, "full" if config.full else "quick")]
        self.ctrl_device = device if backend == "nccl" else torch.device("cpu")
        self.clock = clock_for(device)
        self.progress = progress
        self.interrupted = False  # set by this rank's signal handler (local; only sync() shares it)
        self.agreed_stop = False  # every rank saw a stop flag in the same sync: stop after this step
        self.parent_pid = os.getppid() if config.launcher == "local" else None
        self.early_stop: Callable[[], bool] | None = None
        self.phase = "starting"
        self.state = _State()
        self.groups: dict[str, GroupCtx | None] = {}
        self.kind_size: dict[str, int] = {}
        self.impls: dict[tuple[str, str], tuple[str, bool] | None] = {}

    # -- control messages: a MAX all_reduce over the world that also carries the stop flag --

    def stop_requested(self) -> bool:
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            self.interrupted = True  # the launcher died: stop as if interrupted
        if self.early_stop is not None and self.early_stop():
            self.interrupted = True
        return self.interrupted

    def sync(self, *values: float) -> tuple[bool, list[float]]:
        """(someone wants to stop, the MAX over ranks of each value)."""
        tensor = torch.tensor([1.0 if self.stop_requested() else 0.0, *values], dtype=torch.float64,
                              device=self.ctrl_device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        out = tensor.tolist()
        return out[0] > 0, out[1:]

    def barrier(self, g: GroupCtx) -> None:
        if self.backend == "nccl":
            dist.barrier(group=g.pg, device_ids=[self.device.index])
        else:
            dist.barrier(group=g.pg)

    def say(self, label: str) -> None:
        if self.progress is not None and self.rank == 0:
            self.progress(self.state.done, self.state.total, label)

    # -- setup --

    def identity(self, host: str) -> dict[str, Any]:
        index = pci = None
        if self.device.type == "cuda":
            index = self.device.index
            props = torch.cuda.get_device_properties(index)
            uuid = getattr(props, "uuid", None)
            nvml = open_device(index, str(uuid) if uuid else None) if not getattr(torch.version, "hip", None) else None
            static = nvml.static() if nvml is not None else None
            name = (static.name if static and static.name else props.name)
            pci = _pci_bus_id(index, nvml, props)
            if nvml is not None:
                nvml.close()
        else:
            name = cpu_model_name()
        return {"rank": self.rank, "local_rank": self.local_rank, "host": host, "device": name,
                "device_index": index, "pci_bus_id": pci, "pid": os.getpid()}

    def make_groups(self, topology: Topology) -> None:
        """Create every group (all ranks call new_group for each, in the same order) and keep this
        rank's one per kind. Groups of a kind smaller than the kind's usual size idle (noted)."""
        for kind in topology.kinds():
            of_kind = [g for g in topology.groups if g.kind == kind]
            size = statistics.mode(len(g.ranks) for g in of_kind)
            self.kind_size[kind] = size
            mine: GroupCtx | None = None
            for group in of_kind:
                pg = None if kind == "all" else dist.new_group(list(group.ranks),
                                                               timeout=_dt.timedelta(seconds=self.config.timeout_s))
                if self.rank in group.ranks and len(group.ranks) == size:
                    mine = GroupCtx(kind, pg, group.ranks, group.ranks.index(self.rank))
            if any(len(g.ranks) != size for g in of_kind):
                self.state.notes.append(f"{kind} groups differ in size; only those of {size} ranks were measured")
            self.groups[kind] = mine

    def probe(self, ops: Sequence[str], dtypes: Sequence[str]) -> None:
        """Pick each (op, dtype)'s implementation: the first that runs and moves the data right."""
        world = self.groups["all"]
        assert world is not None
        for op in ops:
            candidates = IMPLS[op]
            if op in self.config.emulate:
                candidates = tuple(c for c in candidates if c[1]) or candidates
            for dtype in dtypes:
                self.phase = f"probing {op} {dtype}"
                chosen, reasons = None, []
                for impl, emulated in candidates:
                    failed = 0.0
                    try:
                        run, verify = prepare(op, impl, dtype, 4 * world.n, world, self.device, check=True)
                        run()
                        self.clock.synchronize()
                        if not verify():
                            failed, why = 1.0, "gave wrong results"
                    except (RuntimeError, ValueError, TypeError, NotImplementedError, AttributeError) as exc:
                        failed, why = 1.0, _first_line(exc)
                    stop, (any_failed,) = self.sync(failed)
                    if stop:
                        raise _Stop
                    if not any_failed:
                        chosen = (impl, emulated)
                        break
                    reasons.append(f"{impl}: {why if failed else 'failed on another rank'}")
                self.impls[(op, dtype)] = chosen
                if chosen is None:
                    reason = f"no implementation works on {self.backend}: {'; '.join(reasons)}"
                    for kind in self.groups:
                        self.state.skipped.append({"op": op, "group": kind, "dtype": dtype, "reason": reason})
                elif chosen[1]:
                    why = ("forced by the test settings" if op in self.config.emulate
                           else f"{self.backend} has no {op} here ({'; '.join(reasons)})")
                    note = f"{op}: emulated with {chosen[0]}, {EMULATION[chosen[0]]}: {why}; rows say emulated: true"
                    if note not in self.state.notes:
                        self.state.notes.append(note)

    def warm_up(self) -> None:
        """A few small all_reduces in every group (NCCL builds its communicators on first use)."""
        for kind, g in self.groups.items():
            self.phase = f"warming up the {kind} group"
            if g is not None:
                x = torch.ones(1024, device=self.device)
                for _ in range(3):
                    dist.all_reduce(x, group=g.pg)
                self.clock.synchronize()
            stop, _ = self.sync()
            if stop:
                raise _Stop

    def max_message_bytes(self) -> int:
        """The largest message that fits with room to spare on every rank (bytes)."""
        if self.device.type == "cuda":
            free = torch.cuda.mem_get_info(self.device)[0]
            share = 1
        else:
            free = _available_memory_bytes() or 2**34
            share = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0) or self.world
        own = int(free * MEMORY_FRACTION / BUFFERS_PER_SIZE / share)
        stop, (smallest,) = self.sync(-float(own))
        if stop:
            raise _Stop
        return int(-smallest)

    # -- stragglers: every rank runs the same matmul at the same moment --

    def stragglers(self, hosts: Sequence[str]) -> None:
        self.phase = "straggler matmul"
        gpu = self.device.type == "cuda"
        size = self.config.matmul_size or (8192 if gpu else 1024)
        capability = torch.cuda.get_device_capability(self.device) if gpu else (0, 0)
        dtype = "bf16" if gpu and capability >= (8, 0) else "fp32"
        kernel = matmul_kernel(size, size, size, dtype, self.device)
        factor = self.config.slow_factor if self.config.slow_rank == self.rank else 1

        def run() -> None:
            for _ in range(max(1, factor)):
                kernel.run()

        read, _, close = _telemetry(self.device)
        sampler = Sampler(read, 0.1) if read is not None else None
        self.barrier(self.groups["all"])  # type: ignore[arg-type]
        try:
            if sampler is not None:
                sampler.__enter__()
            with matmul_precision(dtype):
                timing = measure(run, self.clock, before=kernel.before, warmup_s=1.0 if gpu else 0.3,
                                 budget_s=1.0, min_iters=3)
        finally:
            if sampler is not None:
                sampler.__exit__(None, None, None)
            close()
        telemetry = summarize(sampler.samples if sampler else [], "nvml" if gpu else None, 0.1, THROTTLING_REASONS)
        rates = timing.rates(kernel.work)
        mine = {"rank": self.rank, "host": hosts[self.rank], "best_tflops": rates["best"] / 1e12,
                "median_tflops": rates["median"] / 1e12, "iterations": timing.iterations,
                "throttled": telemetry["throttled"] if gpu else None, "reasons": telemetry["reasons"]}
        everyone: list[Any] = [None] * self.world
        dist.all_gather_object(everyone, mine)
        report = straggler_report(everyone, {"m": size, "n": size, "k": size, "dtype": dtype},
                                  self.config.margin_pct)
        self.state.stragglers = report
        self.state.notes.extend(straggler_notes(report))
        if factor > 1:
            self.state.notes.append(f"rank {self.rank}: its straggler matmul ran {factor} times per iteration "
                                    "(injected by the test settings)")
        self.state.done += 1
        stop, _ = self.sync()
        if stop:
            raise _Stop

    # -- the sweep --

    def plan(self, sizes: Sequence[int], ops: Sequence[str], dtypes: Sequence[str]) -> list[_Series]:
        series = []
        for kind in self.groups:
            for op in ops:
                for dtype in dtypes:
                    if self.impls.get((op, dtype)) is not None:
                        series.append(_Series(kind, op, dtype, tuple(sizes)))
        return series

    def point(self, s: _Series, size_bytes: int, impl: str) -> tuple[list[float] | None, str | None, int]:
        """Time ``s.op`` on one message size: (per-iteration MAX-over-ranks times, None, count),
        or (None, why skipped, count)."""
        g = self.groups[s.kind]
        n = self.kind_size[s.kind]
        count = element_count(s.op, size_bytes, TORCH_DTYPE[s.dtype].itemsize, n)
        if self.config.delay_s:
            time.sleep(self.config.delay_s)
        run, oom = None, 0.0
        if g is not None:
            try:
                run, _ = prepare(s.op, impl, s.dtype, count, g, self.device)
            except (RuntimeError, MemoryError) as exc:
                if not is_out_of_memory(exc):
                    raise
                oom = 1.0
        stop, (any_oom,) = self.sync(oom)
        if stop:
            raise _Stop
        if any_oom:
            return None, "out of memory", count
        warm = []
        if run is not None:
            for _ in range(self.budget.warmup_iters):
                self.barrier(g)
                start = time.perf_counter()
                run()
                self.clock.synchronize()
                warm.append(time.perf_counter() - start)
        own = statistics.median(warm[1:] or warm) if warm else 0.0
        stop, (per_iter_s,) = self.sync(own)
        if stop:
            raise _Stop
        iters = self.config.iterations or max(self.budget.min_iters, min(
            self.budget.max_iters, int(self.budget.point_budget_s / max(per_iter_s, 1e-9))))
        times = [0.0] * iters
        if run is not None:
            marks = []
            for _ in range(iters):
                self.barrier(g)
                start_mark = self.clock.mark()
                run()
                marks.append((start_mark, self.clock.mark()))
            self.clock.synchronize()
            times = [max(self.clock.elapsed_s(a, b), 1e-9) for a, b in marks]
        del run
        stop, slowest = self.sync(*times)
        if stop:
            self.agreed_stop = True  # keep this size, stop after it (every rank saw the flag)
        return slowest, None, count

    def sweep(self, series: Sequence[_Series]) -> None:
        for s in series:
            impl, emulated = self.impls[(s.op, s.dtype)]  # type: ignore[misc]
            measured_sizes: set[int] = set()
            for index, size in enumerate(s.sizes):
                label = f"{s.op} {s.dtype} {_bytes(size)} ({s.kind}, {self.kind_size[s.kind]} ranks)"
                self.phase = label
                self.say(label)
                times, reason, count = self.point(s, size, impl)
                actual = count * TORCH_DTYPE[s.dtype].itemsize
                self.state.done += 1
                if times is None:
                    self.state.skipped.append({"op": s.op, "group": s.kind, "dtype": s.dtype, "size_bytes": actual,
                                               "reason": f"{reason}; larger sizes not tried"})
                    self.state.done += len(s.sizes) - index - 1
                    break
                if actual not in measured_sizes:  # tiny sizes round up to the same count
                    measured_sizes.add(actual)
                    self.state.rows.append(measured_row(s.op, s.kind, self.kind_size[s.kind], s.dtype, actual, count,
                                                        times, impl, emulated))
                if self.agreed_stop:
                    raise _Stop
                median = statistics.median(times)
                if index + 1 < len(s.sizes) and 2 * median > self.budget.max_iteration_s:
                    nxt = s.sizes[index + 1]
                    self.state.skipped.append({
                        "op": s.op, "group": s.kind, "dtype": s.dtype, "size_bytes": nxt,
                        "reason": f"too slow: about {2 * median:.2g} s per iteration predicted from the smaller "
                                  f"size (limit {self.budget.max_iteration_s:g} s); larger sizes not tried"})
                    self.state.done += len(s.sizes) - index - 1
                    break
            if s.kind == "all" and s.op == "all_reduce" and s.dtype == self.check_dtype:
                self.cross_check(s, impl)

    @property
    def check_dtype(self) -> str:
        dtypes = [d for d in self.config.dtypes if self.impls.get(("all_reduce", d)) is not None]
        return "fp32" if "fp32" in dtypes else (dtypes[0] if dtypes else "")

    def independent_all_reduce(self, x: torch.Tensor, calls: int) -> list[float]:
        """This rank's seconds for each of ``calls`` back-to-back plain ``dist.all_reduce(x)`` on the
        world group: no barriers, ``time.perf_counter`` around each call (after a device sync)."""
        sync = (lambda: torch.cuda.synchronize(self.device)) if self.device.type == "cuda" else (lambda: None)
        sync()
        dist.barrier()  # once, to start together
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            dist.all_reduce(x)
            sync()
            times.append(time.perf_counter() - start)
        return times

    def cross_check(self, s: _Series, impl: str, rounds: int = CROSS_CHECK_ROUNDS) -> None:
        """Check the largest all_reduce row against an independent timing, interleaved in time.

        ``rounds`` times, a few iterations each: the benchmark's method on that size (barrier, then
        the iteration timed on the device clock; MAX over ranks per iteration), then
        :meth:`independent_all_reduce` on a fresh tensor. Interleaving makes both sample the same
        fast and slow phases of a shared host; the benchmark's iterations replace the sweep's in its
        row. Independent figure: each rank's median per-call time, the slowest rank's;
        busbw = S / t x 2(n-1)/n, computed here.
        """
        indexes = [i for i, r in enumerate(self.state.rows)
                   if r["group"] == "all" and r["op"] == "all_reduce" and r["dtype"] == s.dtype]
        if not indexes:
            return
        index = max(indexes, key=lambda i: self.state.rows[i]["size_bytes"])
        row = self.state.rows[index]
        self.phase = f"cross-check: all_reduce {s.dtype} {_bytes(row['size_bytes'])}"
        self.say(self.phase)
        n, g = self.world, self.groups["all"]
        assert g is not None
        calls = self.config.iterations or max(2, min(10, int(0.2 / row["time_s"])))
        run, _ = prepare("all_reduce", impl, s.dtype, row["count"], g, self.device)
        x = torch.ones(row["count"], dtype=TORCH_DTYPE[s.dtype], device=self.device)
        for _ in range(2):
            dist.all_reduce(x)  # warm-up
        marks, independent, done = [], [], 0
        for _ in range(rounds):
            for _ in range(calls):
                self.barrier(g)
                start_mark = self.clock.mark()
                run()
                marks.append((start_mark, self.clock.mark()))
            independent += self.independent_all_reduce(x, calls)
            done += 1
            stop, _ = self.sync()
            if stop:
                self.agreed_stop = True
                break
        self.clock.synchronize()
        own = [max(self.clock.elapsed_s(a, b), 1e-9) for a, b in marks]
        del run, x
        stop, values = self.sync(statistics.median(independent), *own)
        independent_s, slowest = values[0], values[1:]
        self.state.rows[index] = measured_row("all_reduce", "all", row["num_ranks"], s.dtype, row["size_bytes"],
                                              row["count"], slowest, row["impl"], row["emulated"])
        busbw = row["size_bytes"] / independent_s / 1e9 * 2 * (n - 1) / n
        bench_busbw = self.state.rows[index]["busbw_gbps"]
        self.state.cross_check = {
            "op": "all_reduce", "group": "all", "dtype": s.dtype, "size_bytes": row["size_bytes"],
            "iterations": len(independent),
            "method": f"independent loop, interleaved with the benchmark's own timing of this size in {done} rounds "
                      f"of {calls} (those iterations are the row's): back-to-back dist.all_reduce on a fresh tensor, "
                      "no barriers, perf_counter around each call (after a device sync); the median call of each "
                      "rank, the slowest rank's",
            "time_s": float(f"{independent_s:.6g}"), "busbw_gbps": float(f"{busbw:.6g}"),
            "benchmark_busbw_gbps": bench_busbw,
            "diff_pct": round(100.0 * (bench_busbw - busbw) / busbw, 2) if busbw > 0 else 0.0}
        if self.agreed_stop or stop:
            raise _Stop


def _bytes(value: int) -> str:
    return format_bytes(value)


def _available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Launch:
    """How this rank was started and how it joins the others."""

    rank: int
    world_size: int
    local_rank: int
    store: Any = None  # a TCPStore to join (local launcher), else the env:// rendezvous (torchrun)


def launch_from_env(environ: Any = os.environ) -> Launch | None:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), or None when absent."""
    if not all(name in environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        return None
    try:
        return Launch(int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", "0")))
    except ValueError:
        raise GpucostError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)") from None


def run_worker(config: CommConfig, launch: Launch,
               stopped: Callable[[], bool] | None = None) -> dict[str, Any] | None:
    """Run the benchmark as rank ``launch.rank``; rank 0 returns
    ``{"collectives": section, "device": ..., "software": ..., "telemetry": ...}``, others None.

    Raises GpucostError (one line naming the rank and what it was doing) when a collective fails
    or times out. A SIGINT/SIGTERM on any rank stops every rank at the next step; the section is
    then ``partial: true``. ``stopped``: a stop requested before this function took over the
    signals (the local worker installs its handler before importing torch).
    """
    dtypes = check_dtypes(config.dtypes)
    ops = tuple(config.ops or OPS)
    for op in ops:
        if op not in OPS:
            raise InputError(f"unknown collective {op!r}; use one of {', '.join(OPS)}")
    if launch.world_size < 2 and not config.allow_one_rank:
        raise InputError("the collective benchmark needs at least 2 ranks (torchrun --nproc-per-node 2, or --nproc 2)")
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    device = comm_device(config.device, launch.local_rank)
    backend = backend_for(device.type)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    elif config.launcher == "local":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // launch.world_size))
    started = time.monotonic()
    created = _now_utc()
    progress = ProgressBar(sys.stderr, enabled=not config.quiet) if launch.rank == 0 else None
    bench = CommRun(config, launch.rank, launch.world_size, launch.local_rank, device, backend, progress)
    bench.early_stop = stopped

    def flag() -> None:
        bench.interrupted = True

    timeout = _dt.timedelta(seconds=config.timeout_s)
    partial = False
    topology: Topology | None = None
    identities: list[Any] | None = None
    read, source, close_telemetry = _telemetry(device) if launch.rank == 0 else (None, None, lambda: None)
    sampler = Sampler(read, DEFAULT_INTERVAL_S) if read is not None else None
    with _stop_signals(flag):
        try:
            bench.phase = "joining the process group"
            kwargs: dict[str, Any] = {"backend": backend, "timeout": timeout, "rank": launch.rank,
                                      "world_size": launch.world_size}
            if launch.store is not None:
                kwargs["store"] = launch.store
            else:
                kwargs["init_method"] = "env://"
            if backend == "nccl":
                kwargs["device_id"] = device
            dist.init_process_group(**kwargs)
        except (RuntimeError, ValueError) as exc:
            raise GpucostError(f"rank {launch.rank}: could not join the process group ({backend}, timeout "
                               f"{config.timeout_s:g} s): {_first_line(exc)}") from None
        failed = True
        try:
            if sampler is not None:
                sampler.__enter__()
            bench.phase = "exchanging identities"
            host = config.hosts[launch.rank] if config.hosts else socket.gethostname()
            gathered: list[Any] = [None] * launch.world_size
            dist.all_gather_object(gathered, bench.identity(host))
            identities = gathered
            hosts = [i["host"] for i in identities]
            topology = plan_groups(hosts)
            bench.make_groups(topology)
            sizes = config.sizes or message_sizes(bench.kind, config.full, bench.max_message_bytes())
            bench.probe(ops, dtypes)
            series = bench.plan(sizes, ops, dtypes)
            bench.state.total = sum(len(s.sizes) for s in series) + 1
            if launch.rank == 0 and not config.quiet:
                print(f"Measuring collectives over {backend}: {launch.world_size} ranks on {topology.num_nodes} "
                      f"node(s), groups {', '.join(topology.kinds())}, {len(series)} series x {len(sizes)} sizes "
                      f"({_bytes(sizes[0])}-{_bytes(sizes[-1])}). Ctrl-C stops and keeps the results so far.",
                      file=sys.stderr, flush=True)
            bench.warm_up()
            bench.say("straggler check: the same matmul on every rank")
            bench.stragglers(hosts)
            bench.sweep(series)
            bench.say("done")
            failed = False
        except _Stop:
            partial, failed = True, False
        except (RuntimeError, ValueError) as exc:
            raise GpucostError(f"rank {launch.rank}: {bench.phase}: {_first_line(exc)}") from None
        finally:
            if sampler is not None:
                sampler.__exit__(None, None, None)
            close_telemetry()
            if progress is not None:
                progress.close()
            if not failed:  # every rank got here at the same step: safe to meet once more
                with contextlib.suppress(RuntimeError):
                    dist.barrier()
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
    if launch.rank != 0:
        return None
    from estimator.catalog.core import load_catalog

    from .device import describe

    try:
        catalog = load_catalog()
    except GpucostError:
        catalog = None
    info = describe(device, catalog)
    telemetry = summarize(sampler.samples if sampler else [], source, DEFAULT_INTERVAL_S, THROTTLING_REASONS)
    result = {"collectives": None, "device": info.record(), "software": dict(info.software), "telemetry": telemetry}
    if topology is None or identities is None:
        return result  # interrupted before the ranks knew each other: nothing measured
    state = bench.state
    notes = list(state.notes)
    hooks = config.hooks_in_effect()
    if hooks:
        notes.insert(0, "test settings in effect (GPUCOST_COMM_TEST): "
                        + ", ".join(f"{k}={v}" for k, v in hooks.items()))
    if partial:
        notes.append(f"interrupted after {state.done} of {state.total} measurements: results are partial")
    if device.type == "cpu" and launch.world_size > (os.cpu_count() or 1):
        notes.append(f"{launch.world_size} ranks share {os.cpu_count()} CPUs: ranks compete for cores")
    if backend == "gloo":
        notes.append("gloo moves data through host memory and TCP: these figures describe the CPU path, not a "
                     "GPU fabric")
    groups = [{"kind": g.kind, "index": g.index, **({"host": g.host} if g.host else {}), "ranks": list(g.ranks)}
              for g in topology.groups]
    result["collectives"] = build_section(
        created_utc=created, command=config.command, partial=partial, duration_s=time.monotonic() - started,
        backend=backend, launcher=config.launcher, world_size=launch.world_size, num_nodes=topology.num_nodes,
        mode=config.mode, dtypes=dtypes, timeout_s=config.timeout_s, groups=groups, ranks=identities,
        rows=state.rows, skipped=state.skipped, cross_check=state.cross_check, stragglers=state.stragglers,
        notes=notes)
    return result
