"""The collective benchmark's loop, run by every rank: :class:`CommRun` probes each op's
implementation, warms the groups up, runs the straggler matmul, sweeps the message sizes with a
barrier before every timed iteration (MAX over ranks) and cross-checks the largest all_reduce
against an independent loop. Every step ends in a small MAX all_reduce that carries the stop flag.
Method: :mod:`profiler.comm.worker`.

Ranks exchange their identities and straggler figures as JSON in uint8 tensors
(:meth:`CommRun.gather`), not with ``dist.all_gather_object``: torch's object collectives need
numpy, which ``pip install "gpucost[profile]"`` does not bring.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from estimator.records.collectives import format_bytes

from profiler.comm.ops import BUDGETS, BUFFERS_PER_SIZE, CROSS_CHECK_ROUNDS, EMULATION, IMPLS, MEMORY_FRACTION, TORCH_DTYPE, CommConfig, GroupCtx, element_count, prepare
from profiler.comm.report import measured_row, straggler_notes, straggler_report
from profiler.comm.topology import Topology
from profiler.device import cpu_model_name
from profiler.kernels import matmul_kernel, matmul_precision
from profiler.nvml import THROTTLING_REASONS, open_device
from profiler.run import is_out_of_memory
from profiler.telemetry import Sampler, cpu_sample, read_cpu_clock_mhz, summarize
from profiler.timing import clock_for, measure

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

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (JSON-serialisable), in rank order, on every rank: the JSON text as
        a uint8 tensor, padded to the longest, through ``dist.all_gather``. Replaces
        ``dist.all_gather_object``, which pickles through numpy (absent from a ``[profile]`` install)."""
        data = json.dumps(value).encode("utf-8")
        length = torch.tensor([len(data)], dtype=torch.int64, device=self.ctrl_device)
        lengths = [torch.zeros_like(length) for _ in range(self.world)]
        dist.all_gather(lengths, length)
        sizes = [int(t.item()) for t in lengths]
        mine = torch.zeros(max(sizes), dtype=torch.uint8)
        mine[:len(data)] = torch.tensor(list(data), dtype=torch.uint8)
        mine = mine.to(self.ctrl_device)
        everyone = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(everyone, mine)
        return [json.loads(bytes(t[:size].tolist()).decode("utf-8")) for t, size in zip(everyone, sizes)]

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
        everyone = self.gather(mine)
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
