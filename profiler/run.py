"""The sweep: plan what to measure, run it with telemetry and progress, build the calibration record.

Ctrl-C (KeyboardInterrupt) stops the sweep and returns what was measured so far, marked
``partial: true``. A size that runs out of memory, or a kernel that fails, is recorded as skipped
with the reason and the sweep goes on.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from estimator.records.calibration import BENCHMARK_VERSION, SCHEMA_VERSION

from profiler.device import DeviceInfo, unsupported_reason
from profiler.kernels import DTYPES, CacheFlush, Kernel, copy_kernel, matmul_flops, matmul_kernel, matmul_precision, mlp_kernel, mlp_params, mlp_train_flops
from profiler.nvml import THROTTLING_REASONS, open_device
from profiler.sustained import DRIFT_LIMIT_PCT, Window, run_window
from profiler.telemetry import DEFAULT_INTERVAL_S, Sampler, cpu_sample, read_cpu_clock_mhz, summarize
from profiler.timing import Timing, clock_for, measure

MIB = 2**20
GIB = 2**30

Progress = Callable[[int, int, str], None]
ModelJob = Callable[[Callable[[str], None]], dict[str, Any]]  # progress messages -> the ``model`` section
MODEL_ONLY = "not measured: --model times the model's training step only; add --sweep to measure the device too"
Key = tuple[str, "str | None", tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class Budget:
    """Time rules for one measurement (seconds). A size whose iteration would take longer than
    ``max_iteration_s``, predicted from the best rate of the sizes of its series measured before,
    is skipped with that reason (so a slow dtype does not eat the run)."""

    warmup_s: float
    budget_s: float
    min_iters: int = 3
    max_iters: int = 10_000
    max_iteration_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Item:
    """One measurement: ``size`` is (m, n, k) for matmul, (width, tokens) for mlp, (bytes,) for bandwidth.

    The same size may be measured in several passes spread over the run; their iterations are
    pooled into one entry.
    """

    section: str
    dtype: str | None
    size: tuple[int, ...]
    budget: Budget
    pass_number: int = 1
    passes: int = 1

    @property
    def key(self) -> Key:
        return (self.section, self.dtype, self.size)

    @property
    def label(self) -> str:
        if self.section == "matmul":
            text = f"matmul {self.dtype} {'x'.join(map(str, self.size))}"
        elif self.section == "mlp":
            text = f"mlp {self.dtype} width {self.size[0]}, {self.size[1]} tokens"
        else:
            text = f"copy {self.size[0] / MIB:.0f} MiB"
        return text + (f" (pass {self.pass_number} of {self.passes})" if self.passes > 1 else "")


@dataclass(frozen=True)
class Plan:
    """What a run measures, in order, and why the rest is skipped (section -> dtype -> reason)."""

    mode: str  # quick | full | model (a model's training step only, no device sweep)
    items: tuple[Item, ...]
    skipped: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: {"matmul": {}, "mlp": {}})
    device_warmup_s: float = 1.0
    flush_bytes: int = 64 * MIB
    optimizer: str = "adamw"
    notes: tuple[str, ...] = ()
    sustained: Window | None = None  # each dtype's best matmul shape and MLP width, back to back (sustained.py)


def _squares(*sizes: int) -> tuple[tuple[int, int, int], ...]:
    return tuple((s, s, s) for s in sizes)


def flush_bytes_for(info: DeviceInfo) -> int:
    """Bytes written between iterations to evict caches: GPU max(256 MiB, 2 x L2) as mamf-finder;
    CPU 2 x the last-level cache, within [32 MiB, 512 MiB] (64 MiB when sysfs does not say)."""
    if info.backend != "cpu":
        return max(256 * MIB, 2 * (info.l2_cache_bytes or 0))
    if info.llc_bytes is None:
        return 64 * MIB
    return min(512 * MIB, max(32 * MIB, 2 * info.llc_bytes))


def bandwidth_bytes_for(info: DeviceInfo, free_bytes: int | None) -> int:
    """Copy buffer size: far beyond any cache (GPU 1 GiB, CPU max(256 MiB, 8 x LLC)), and at most an
    eighth of free memory (two buffers are allocated). Whole MiB."""
    want = GIB if info.backend != "cpu" else max(256 * MIB, 8 * (info.llc_bytes or 0))
    if free_bytes:
        want = min(want, free_bytes // 8)
    return max(want // MIB * MIB, MIB)


# Shapes and widths per device kind and mode. CPU sizes sit where CPU BLAS reaches its best
# (1024-2048 squares on a few cores); GPU sizes where cuBLAS does (4096-16384).
_CPU = {
    "quick": {
        "matmul": {"fp32": _squares(1024, 2048, 1536), "bf16": _squares(512, 1024), "fp16": _squares(256, 512)},
        "mlp": {"fp32": (256, 512, 1024), "bf16": (256, 512), "fp16": (256, 512)},
        "tokens": 1024,
    },
    "full": {
        "matmul": {"fp32": _squares(512, 1024, 1536, 2048, 3072, 4096) + ((4096, 4096, 1024), (1024, 1024, 4096)),
                   "bf16": _squares(512, 1024, 2048, 4096), "fp16": _squares(256, 512, 1024, 2048)},
        "mlp": {"fp32": (256, 512, 1024, 2048), "bf16": (256, 512, 1024), "fp16": (256, 512, 1024)},
        "tokens": 4096,
    },
}
_GPU_QUICK_SHAPES = _squares(2048, 4096, 6144, 8192) + ((16384, 8192, 8192),)
_GPU_FULL_SHAPES = _squares(*range(1024, 16385, 1024)) + tuple((m, 8192, 8192) for m in range(1024, 32769, 2048))
_GPU = {
    "quick": {"matmul": _GPU_QUICK_SHAPES, "mlp": (2048, 4096, 8192), "tokens": 8192},
    "full": {"matmul": _GPU_FULL_SHAPES, "mlp": (1024, 2048, 4096, 8192), "tokens": 16384},
}
_BUDGETS = {  # (device kind, mode) -> section -> Budget (per pass)
    ("cpu", "quick"): {"matmul": Budget(0.3, 2.0, max_iteration_s=2.0),
                       "mlp": Budget(0.3, 2.0, max_iteration_s=2.0),
                       "bandwidth": Budget(0.3, 1.5, min_iters=5)},
    ("cpu", "full"): {"matmul": Budget(0.5, 4.0, max_iteration_s=5.0),
                      "mlp": Budget(0.5, 5.0, max_iteration_s=5.0),
                      "bandwidth": Budget(0.5, 4.0, min_iters=10)},
    ("gpu", "quick"): {"matmul": Budget(0.2, 0.8, min_iters=5),
                       "mlp": Budget(0.3, 1.5, max_iteration_s=2.0),
                       "bandwidth": Budget(0.2, 1.0, min_iters=10)},
    ("gpu", "full"): {"matmul": Budget(0.5, 2.0, min_iters=10),
                      "mlp": Budget(0.5, 4.0, max_iteration_s=5.0),
                      "bandwidth": Budget(0.5, 3.0, min_iters=20)},
}
# A shared CPU's speed drifts with its neighbours' load over tens of seconds, so on a CPU the fp32
# matmul (the headline figure) is measured in passes spread over the run: start, middle, end.
_CPU_FP32_PASSES = {"quick": 3, "full": 2}
_MLP_FP8 = "not measured: an fp8 training step needs scaled-matmul recipes (Transformer Engine, torchao)"
_CPU_FP16 = "CPU fp16 matmul is usually emulated and very slow; measured with --full or --precision fp16"


def make_plan(info: DeviceInfo, dtypes: Sequence[str] | None = None, *, full: bool = False,
              free_bytes: int | None = None, optimizer: str = "adamw", sweep: bool = True,
              sustained_s: float | None = None) -> Plan:
    """The measurements for this device. ``dtypes`` None means every dtype the device supports.

    Order: copy bandwidth, matmul per dtype, MLP step per dtype (CPU fp32 matmul passes 2 and 3
    before the MLPs and at the end). Quick mode (default) takes about a minute; ``full`` sweeps
    many more shapes and widths. A CPU quick run skips fp16 unless it is asked for by name.
    ``sweep=False`` (``gpucost profile --model`` alone): nothing here, only the model step runs.
    ``sustained_s``: the sustained window's seconds (None: the device kind's default, 0: none).
    """
    if not sweep:
        return Plan(mode="model", items=(), device_warmup_s=0.0, flush_bytes=0, optimizer=optimizer)
    mode = "full" if full else "quick"
    kind = "cpu" if info.backend == "cpu" else "gpu"
    sizes = _CPU[mode] if kind == "cpu" else _GPU[mode]
    budgets = _BUDGETS[(kind, mode)]
    wanted = tuple(DTYPES) if dtypes is None else tuple(dtypes)
    skipped: dict[str, dict[str, str]] = {"matmul": {}, "mlp": {}}
    matmul: list[Item] = []
    mlp: list[Item] = []
    repeat: list[list[Item]] = []
    for dtype in wanted:
        reason = unsupported_reason(info, dtype)
        if reason is None and kind == "cpu" and dtype == "fp16" and dtypes is None and not full:
            reason = _CPU_FP16
        if reason is not None:
            skipped["matmul"][dtype] = skipped["mlp"][dtype] = reason
            continue
        shapes = sizes["matmul"] if kind == "gpu" else sizes["matmul"][dtype]
        passes = _CPU_FP32_PASSES[mode] if kind == "cpu" and dtype == "fp32" else 1
        matmul.extend(Item("matmul", dtype, s, budgets["matmul"], 1, passes) for s in shapes)
        repeat.extend([Item("matmul", dtype, s, budgets["matmul"], p, passes) for s in shapes]
                      for p in range(2, passes + 1))
        if dtype == "fp8":
            skipped["mlp"][dtype] = _MLP_FP8
            continue
        widths = sizes["mlp"] if kind == "gpu" else sizes["mlp"][dtype]
        mlp.extend(Item("mlp", dtype, (w, sizes["tokens"]), budgets["mlp"]) for w in widths)
    bandwidth = [Item("bandwidth", None, (bandwidth_bytes_for(info, free_bytes),), budgets["bandwidth"])]
    middle = [item for group in repeat[:-1] for item in group]
    last = repeat[-1] if repeat else []
    items = bandwidth + matmul + middle + mlp + last
    notes = [f"fp16: {_CPU_FP16}"] if skipped["matmul"].get("fp16") == _CPU_FP16 else []
    return Plan(mode=mode, items=tuple(items), skipped=skipped,
                device_warmup_s=(30.0 if full else 5.0) if kind == "gpu" else (3.0 if full else 1.0),
                flush_bytes=flush_bytes_for(info), optimizer=optimizer, notes=tuple(notes),
                sustained=None if sustained_s == 0 else Window.default(kind, sustained_s))


def is_out_of_memory(exc: BaseException) -> bool:
    """True for MemoryError, torch.OutOfMemoryError and RuntimeErrors that say so (CUDA, HIP, CPU)."""
    if isinstance(exc, MemoryError):
        return True
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _round(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def _pct(value: float | None, peak: float | None) -> float | None:
    return round(100.0 * value / peak, 2) if value is not None and peak else None


def _head(key: Key) -> dict[str, Any]:
    section, _, size = key
    if section == "matmul":
        return dict(zip("mnk", size, strict=True))
    if section == "mlp":
        return {"width": size[0], "tokens": size[1], "params": mlp_params(size[0])}
    return {"buffer_bytes": size[0]}


def _entry(key: Key, times_s: list[float] | None, skipped: str | None, work: float | None) -> dict[str, Any]:
    """The record entry of one size: head plus rate statistics, or plus ``skipped``."""
    if not times_s:
        return {**_head(key), "skipped": skipped or "not measured"}
    timing = Timing(tuple(times_s))
    scale, unit = (1e9, "gbps") if key[0] == "bandwidth" else (1e12, "tflops")
    rates = timing.rates(work)
    return {**_head(key), f"best_{unit}": _round(rates["best"] / scale),
            f"median_{unit}": _round(rates["median"] / scale), f"worst_{unit}": _round(rates["worst"] / scale),
            "stdev_pct": round(timing.stdev_pct, 2), "iterations": timing.iterations}


def _precision_section(entries: Mapping[str, list[dict[str, Any]]], skipped: Mapping[str, str],
                       peaks: Mapping[str, float], dtypes: Sequence[str], extra: Mapping[str, Any]) -> dict[str, Any]:
    section: dict[str, Any] = {}
    for dtype in dtypes:
        peak = peaks.get(dtype)
        if dtype in skipped:
            section[dtype] = {"skipped": skipped[dtype]}
            continue
        rows = entries.get(dtype)
        if not rows:
            section[dtype] = {"peak_tflops": peak, "skipped": "not measured: the run was interrupted"}
            continue
        measured = [e for e in rows if "best_tflops" in e]
        if measured:
            best = max(e["best_tflops"] for e in measured)
            head = {"best_tflops": best, "median_tflops": max(e["median_tflops"] for e in measured),
                    "peak_tflops": peak, "pct_of_peak": _pct(best, peak)}
        else:
            head = {"peak_tflops": peak, "skipped": "every size was skipped (see the list)"}
        section[dtype] = {**head, **extra, ("shapes" if "m" in rows[0] else "widths"): rows}
    return section


def item_work(item: Item) -> float:
    """FLOPs (matmul, mlp) or bytes moved (bandwidth) of one call of ``item``'s kernel."""
    if item.section == "matmul":
        return float(matmul_flops(*item.size))
    if item.section == "mlp":
        return float(mlp_train_flops(*item.size))
    return 2.0 * item.size[0]


def _telemetry_reader(info: DeviceInfo) -> tuple[Callable[[], Any] | None, str | None, Callable[[], None]]:
    """(read, source name, close) for this device's telemetry; read is None when nothing can be read."""
    if info.backend == "cuda":
        nvml = open_device(info.index or 0, info.uuid)
        if nvml is not None:
            return nvml.sample, "nvml", nvml.close
    elif info.backend == "cpu" and read_cpu_clock_mhz() is not None:
        return cpu_sample, "procfs", lambda: None
    return None, None, lambda: None


def _build(item: Item, device: torch.device, flush: CacheFlush | None, optimizer: str) -> Kernel:
    if item.section == "matmul":
        return matmul_kernel(*item.size, item.dtype, device, flush=flush)
    if item.section == "mlp":
        return mlp_kernel(item.size[0], item.size[1], item.dtype, device, optimizer=optimizer, flush=flush)
    return copy_kernel(item.size[0], device)


def _measure(item: Item, device: torch.device, clock: Any, flush: CacheFlush | None,
             optimizer: str) -> tuple[Timing | None, float | None, str | None]:
    """(timing, work per call, None) or (None, None, why it was skipped)."""
    kernel = None
    try:
        kernel = _build(item, device, flush, optimizer)
        with matmul_precision(item.dtype or "fp32"):
            timing = measure(kernel.run, clock, before=kernel.before, warmup_s=item.budget.warmup_s,
                             budget_s=item.budget.budget_s, min_iters=item.budget.min_iters,
                             max_iters=item.budget.max_iters)
        return timing, kernel.work, None
    except (RuntimeError, ValueError, TypeError, NotImplementedError, MemoryError) as exc:
        if is_out_of_memory(exc):
            return None, None, "out of memory"
        return None, None, f"failed: {(str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]}"
    finally:
        del kernel
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _warm_up_device(plan: Plan, device: torch.device, seconds: float) -> None:
    """Run the first matmul of the plan for ``seconds`` so clocks and libraries settle first."""
    first = next((i for i in plan.items if i.section == "matmul"), None)
    if first is None or seconds <= 0:
        return
    try:
        kernel = matmul_kernel(*first.size, first.dtype, device)
    except (RuntimeError, MemoryError):
        return  # the sweep will record the reason
    clock = clock_for(device)
    end = time.monotonic() + seconds
    with matmul_precision(first.dtype):
        while time.monotonic() < end:
            kernel.run()
            clock.synchronize()


def run_profile(plan: Plan, device: torch.device, info: DeviceInfo, *, command: str,
                progress: Progress | None = None, telemetry_interval_s: float = DEFAULT_INTERVAL_S,
                extra_notes: Sequence[str] = (), model: ModelJob | None = None) -> dict[str, Any]:
    """Run ``plan`` on ``device`` and return the calibration record (schema: estimator.records.calibration).

    One failing measurement never stops the run: out-of-memory and kernel errors become skipped
    entries. KeyboardInterrupt ends the sweep early and the record says ``partial: true``.
    ``model`` (``gpucost profile --model``): called first, with a function taking progress
    messages, it returns the record's ``model`` section (``profiler.model.profile_model``); its
    errors (the model does not fit, cannot be built) end the run.
    """
    started = time.monotonic()
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    notes = list(extra_notes) + list(plan.notes)
    times: dict[Key, list[float]] = {}
    work: dict[Key, float] = {}
    skipped: dict[Key, str] = {}
    failed: dict[tuple[str, str | None], str] = {}  # series -> the error that will fail its other sizes too
    rate: dict[tuple[str, str | None], float] = {}  # series -> best work per second measured so far
    pass_rates: dict[tuple[str, str | None], dict[int, float]] = {}  # multi-pass series -> pass -> best rate
    clock = clock_for(device)
    read, source, close = _telemetry_reader(info)
    sampler = Sampler(read, telemetry_interval_s) if read is not None else None
    partial, done, total = False, 0, len(plan.items) + (model is not None)
    model_section: dict[str, Any] | None = None
    sustained: dict[tuple[str, str | None], dict[str, Any]] = {}  # (section, dtype) -> the window's figures
    try:
        if sampler is not None:
            sampler.__enter__()
        try:
            flush: CacheFlush | None = CacheFlush(device, plan.flush_bytes)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            flush = None
            notes.append(f"no memory for the {plan.flush_bytes / MIB:.0f} MiB cache-flush buffer: caches not flushed")
        if model is not None:
            def say(message: str) -> None:
                if progress:
                    progress(done, total, f"model: {message}")

            model_section = model(say)
            done += 1
        if plan.items and progress:
            progress(done, total, f"warming up the device for {plan.device_warmup_s:g} s")
        _warm_up_device(plan, device, plan.device_warmup_s)
        for item in plan.items:
            if progress:
                progress(done, total, item.label)
            series = (item.section, item.dtype)
            limit_s = item.budget.max_iteration_s
            if item.key in skipped:
                pass  # skipped in an earlier pass: not retried
            elif series in failed:
                skipped[item.key] = failed[series]
            elif item.key not in times and series in rate and (predicted_s := item_work(item) / rate[series]) > limit_s:
                skipped[item.key] = (f"too slow on this device: about {predicted_s:.0f} s per iteration at the rate "
                                     f"of the sizes measured (limit {limit_s:g} s)")
                notes.append(f"{item.label}: skipped: {skipped[item.key]}")
            else:
                timing, kernel_work, reason = _measure(item, device, clock, flush, plan.optimizer)
                if timing is None:
                    skipped[item.key] = reason
                    notes.append(f"{item.label}: skipped: {reason}")
                    if reason != "out of memory":  # a failing kernel fails for every size
                        failed[series] = reason
                else:
                    times.setdefault(item.key, []).extend(timing.times_s)
                    work[item.key] = kernel_work
                    rate[series] = max(rate.get(series, 0.0), kernel_work / timing.best_s)
                    if item.passes > 1:
                        best = pass_rates.setdefault(series, {})
                        best[item.pass_number] = max(best.get(item.pass_number, 0.0), kernel_work / timing.best_s)
            done += 1
        if plan.sustained is not None:
            targets = _sustained_targets(plan, times, work)
            total += len(targets)
            for key in targets:
                if progress:
                    size = "x".join(map(str, key[2])) if key[0] == "matmul" else f"width {key[2][0]}, {key[2][1]} tokens"
                    progress(done, total, f"{key[0]} {key[1]} {size}, back to back for {plan.sustained.window_s:g} s "
                                          "(sustained)")
                figures, reason = _run_sustained(key, device, clock, plan, read, source)
                if figures is not None:
                    sustained[key[:2]] = {**_head(key), **figures}
                    if abs(figures["drift_pct"]) > DRIFT_LIMIT_PCT:
                        why = ("the clocks and power had not settled" if device.type == "cuda"
                               else "the speed changed (on a shared CPU, other processes)")
                        notes.append(f"{key[0]} {key[1]} sustained: the window's second half ran "
                                     f"{figures['drift_pct']:+.1f}% against its first: {why} in "
                                     f"{plan.sustained.window_s:g} s; a longer --sustained-s measures the settled "
                                     "figure")
                else:
                    notes.append(f"{key[0]} {key[1]} sustained window: skipped: {reason}")
                done += 1
        if progress:
            progress(done, total, "done")
    except KeyboardInterrupt:
        partial = True
        notes.append(f"interrupted (Ctrl-C) after {done} of {total} measurements: results are partial")
    finally:
        if sampler is not None:
            sampler.__exit__(None, None, None)
        close()
        flush = None
    notes.extend(_drift_notes(pass_rates))
    record = _record(plan, info, command, created, time.monotonic() - started, partial, notes,
                     times, work, skipped, sampler, source, telemetry_interval_s, sustained)
    if model_section is not None:
        record["model"] = model_section
    elif model is not None and partial:
        notes.append("the model step was interrupted: no model section")
    return record


def _sustained_targets(plan: Plan, times: Mapping[Key, list[float]], work: Mapping[Key, float]) -> list[Key]:
    """Per (section, dtype) of matmul and mlp, in plan order, the size with the highest median rate."""
    best: dict[tuple[str, str | None], tuple[float, Key]] = {}
    for key in dict.fromkeys(item.key for item in plan.items):
        if key[0] in ("matmul", "mlp") and times.get(key):
            rate = work[key] / Timing(tuple(times[key])).median_s
            if rate > best.get(key[:2], (0.0, key))[0]:
                best[key[:2]] = (rate, key)
    return [key for _, key in best.values()]


def _run_sustained(key: Key, device: torch.device, clock: Any, plan: Plan, read: Callable[[], Any] | None,
                   source: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The sustained window of one size (no cache flush, no re-randomising: back to back), or why not."""
    section, dtype, size = key
    kernel = None
    try:
        kernel = (matmul_kernel(*size, dtype, device) if section == "matmul"
                  else mlp_kernel(size[0], size[1], dtype, device, optimizer=plan.optimizer))
        assert plan.sustained is not None
        with matmul_precision(dtype or "fp32"):
            return run_window(kernel.run, kernel.work, clock, plan.sustained, read=read, source=source,
                              throttling_reasons=THROTTLING_REASONS), None
    except (RuntimeError, ValueError, TypeError, NotImplementedError, MemoryError) as exc:
        if is_out_of_memory(exc):
            return None, "out of memory"
        return None, f"failed: {(str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]}"
    finally:
        del kernel
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _drift_notes(pass_rates: Mapping[tuple[str, str | None], Mapping[int, float]],
                 tolerance: float = 1.2) -> list[str]:
    """A note for each series whose best rate changed by more than ``tolerance`` x between passes:
    the machine itself changed speed during the run (a shared or throttled host)."""
    notes = []
    for (section, dtype), by_pass in pass_rates.items():
        if len(by_pass) > 1 and max(by_pass.values()) > tolerance * min(by_pass.values()):
            rates = ", ".join(f"{by_pass[p] / 1e12:.3g}" for p in sorted(by_pass))
            notes.append(f"{section} {dtype}: the best TFLOP/s per pass were {rates}: this machine changed speed "
                         "during the run (a shared or throttled host?); the best is kept, compare with another run")
    return notes


def _record(plan: Plan, info: DeviceInfo, command: str, created: str, duration_s: float, partial: bool,
            notes: list[str], times: Mapping[Key, list[float]], work: Mapping[Key, float],
            skipped: Mapping[Key, str], sampler: Sampler | None, source: str | None,
            interval_s: float, sustained: Mapping[tuple[str, str | None], dict[str, Any]] | None = None
            ) -> dict[str, Any]:
    """Assemble the calibration record from the pooled per-size times and the sustained windows."""
    entries: dict[str, dict[str, list[dict[str, Any]]]] = {"matmul": {}, "mlp": {}, "bandwidth": {}}
    for key in dict.fromkeys(item.key for item in plan.items):  # plan order, each size once
        if key in times or key in skipped:
            entries[key[0]].setdefault(key[1], []).append(_entry(key, times.get(key), skipped.get(key), work.get(key)))
    telemetry = summarize(sampler.samples if sampler else [], source, interval_s, THROTTLING_REASONS)
    if source is None:
        notes.append("telemetry: no clock/power/temperature source on this device; throttling unknown")
    elif telemetry["throttled"]:
        notes.append(f"the device throttled during the run ({', '.join(telemetry['reasons'])}): "
                     "figures are below what a cooler or unconstrained device reaches")
    if info.catalog_id is None:
        notes.append(f"{info.name!r} is not in the accelerator catalog: no datasheet peak, pct_of_peak is null")
    planned = {section: [d for d in DTYPES if d in plan.skipped[section]
                         or any(i.section == section and i.dtype == d for i in plan.items)]
               for section in ("matmul", "mlp")}
    bandwidth_rows = entries["bandwidth"].get(None, [])
    peak_gbps = info.memory_bandwidth_gbps
    if not bandwidth_rows and plan.mode == "model":
        bandwidth: dict[str, Any] = {"skipped": MODEL_ONLY, "peak_gbps": peak_gbps}
    elif not bandwidth_rows:
        bandwidth = {"skipped": "not measured: the run was interrupted", "peak_gbps": peak_gbps}
    elif "skipped" in bandwidth_rows[0]:
        bandwidth = {"skipped": bandwidth_rows[0]["skipped"], "peak_gbps": peak_gbps}
    else:
        bandwidth = {**bandwidth_rows[0], "peak_gbps": peak_gbps,
                     "pct_of_peak": _pct(bandwidth_rows[0]["best_gbps"], peak_gbps)}
    matmul = _precision_section(entries["matmul"], plan.skipped["matmul"], info.peak_tflops, planned["matmul"], {})
    mlp = _precision_section(entries["mlp"], plan.skipped["mlp"], info.peak_tflops, planned["mlp"],
                             {"optimizer": plan.optimizer})
    for (section, dtype), figures in (sustained or {}).items():
        entry = (matmul if section == "matmul" else mlp).get(dtype)
        if entry is not None and "best_tflops" in entry:
            entry["sustained"] = figures
    return {
        "schema_version": SCHEMA_VERSION,
        "benchmark_version": BENCHMARK_VERSION,
        "created_utc": created,
        "command": command,
        "partial": partial,
        "duration_s": round(duration_s, 1),
        "device": info.record(),
        "software": dict(info.software),
        "telemetry": telemetry,
        "matmul": matmul,
        "mlp": mlp,
        "bandwidth": bandwidth,
        "notes": notes,
    }
