"""The collective benchmark: all_reduce, all_gather, reduce_scatter, all_to_all, broadcast and
send/recv over torch.distributed (NCCL on CUDA GPUs, gloo on CPUs), run by every rank.

:func:`run_worker` (here) is what each rank runs, under torchrun or as one of the local workers that
:mod:`profiler.comm.launch` starts; rank 0 returns the result (the ``collectives`` section plus
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
  (:mod:`profiler.comm.topology`); before the sweep every rank runs the same matmul at the same
  moment (stragglers); after the world all_reduce sweep, an independent timing loop of plain
  ``dist.all_reduce`` calls on the largest size cross-checks the benchmark's figure.

Modules: :mod:`profiler.comm.ops` (ops, sizes, budgets, settings), :mod:`profiler.comm.bench` (the
loop each rank runs), this one (a rank's start, signals and the record rank 0 returns),
:mod:`profiler.comm.report` (rows and summaries), :mod:`profiler.comm.launch` (local workers).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from estimator.records.collectives import OPS
from estimator.errors import GpucostError, InputError

from profiler.comm.bench import CommRun, _bytes, _first_line, _Stop, _telemetry
from profiler.comm.ops import CommConfig, backend_for, check_dtypes, comm_device, message_sizes
from profiler.comm.report import build_section
from profiler.comm.topology import Topology, plan_groups
from profiler.nvml import THROTTLING_REASONS
from profiler.progress import ProgressBar
from profiler.telemetry import DEFAULT_INTERVAL_S, Sampler, summarize


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
            identities = bench.gather(bench.identity(host))
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

    from profiler.device import describe

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

