"""The sustained window: one kernel run back to back for seconds, as a training run runs its steps.

The sweep (profiler/run.py) times each shape in short bursts, re-randomising the output and
flushing the caches before every iteration, so the device idles between kernels and starts each
shape cool. A training run does not idle: its matmuls come back to back for hours, at the clocks
the power limit allows. On one H200 (../shared/measurements/h200-2026-12/README.md) the burst gave a
bf16 median of 737-745 TFLOP/s; the same shapes back to back for 1.5 s after a 1 s warm-up
(mamf2.py) gave 668-686, with NVML reporting ``sw_power_cap`` and SM clocks down to 1,320 MHz.

So each dtype's best matmul shape and best MLP width also run here for a window:

- warm-up ``warmup_s`` back to back (untimed), then ``window_s`` back to back, every iteration
  timed (CUDA events on a GPU, ``perf_counter`` after a sync on a CPU), the device synchronised
  only every ~0.1 s of work so the queue never drains; no cache flush, no re-randomising (a
  training step's operands are hot too);
- the window's figure is the median iteration (as mamf2.py and mamf-finder report), beside the
  mean over the window (total work / total time), best, worst;
- telemetry sampled every 0.1 s during the window: SM clock, power, temperature, the throttle
  reasons seen;
- ``drift_pct``: the median of the window's second half against its first half. The power cap
  acts within about a second (the driver's power-management loop; mamf2.py's 1 s warm-up + 1.5 s
  window already read the capped figure), so by the window the clocks have settled; a drift of more
  than 2% says they had not (a longer window, ``--sustained-s``, is then worth it), and is noted.

Window length (``--sustained-s``): 5 s on a GPU after a 1 s warm-up (several periods of the power
loop, 6 s per dtype and benchmark, so a quick bf16 profile grows by 12 s); 1 s after 0.3 s on a CPU,
whose clocks do not cap under one process's load the same way (the window is there so both paths
run the same code). Thermal steady state takes minutes and is not what this measures: a device
that throttles for heat over an hour runs slower still (the file's telemetry says when it was hot).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from profiler.telemetry import Sampler, summarize
from profiler.timing import Clock

SUSTAINED_S = {"gpu": 5.0, "cpu": 1.0}  # the window's timed seconds (--sustained-s)
SUSTAINED_WARMUP_S = {"gpu": 1.0, "cpu": 0.3}
DRIFT_LIMIT_PCT = 2.0
SYNC_EVERY_S = 0.1  # work queued between two synchronisations
SAMPLE_INTERVAL_S = 0.1


@dataclass(frozen=True, slots=True)
class Window:
    """What to run back to back and for how long (seconds)."""

    window_s: float
    warmup_s: float

    @classmethod
    def default(cls, kind: str, window_s: float | None = None) -> Window:
        """The device kind's default (``kind``: gpu or cpu), or ``window_s`` with that kind's warm-up."""
        return cls(SUSTAINED_S[kind] if window_s is None else float(window_s), SUSTAINED_WARMUP_S[kind])


def _round(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def run_window(run: Callable[[], Any], work: float, clock: Clock, window: Window, *,
               read: Callable[[], Any] | None = None, source: str | None = None,
               throttling_reasons: frozenset[str] = frozenset(),
               now_s: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Run ``run`` back to back: ``window.warmup_s`` untimed, then ``window.window_s`` with every
    iteration timed; return the record's ``sustained`` figures (TFLOP/s for ``work`` in FLOPs).
    ``read``: the device's telemetry reader (None: clocks and reasons are not known)."""
    clock.synchronize()
    end = now_s() + window.warmup_s
    warm = 0
    started = now_s()
    while True:
        run()
        warm += 1
        if warm % 8 == 0 or now_s() >= end:
            clock.synchronize()
            if now_s() >= end:
                break
    per_iter_s = max((now_s() - started) / warm, 1e-9)
    chunk = max(1, int(SYNC_EVERY_S / per_iter_s))
    sampler = Sampler(read, SAMPLE_INTERVAL_S) if read is not None else None
    marks: list[tuple[Any, Any]] = []
    times: list[float] = []
    if sampler is not None:
        sampler.__enter__()
    try:
        t0 = now_s()
        deadline = t0 + window.window_s
        while True:
            for _ in range(chunk):
                start = clock.mark()
                run()
                marks.append((start, clock.mark()))
            clock.synchronize()
            times.extend(clock.elapsed_s(a, b) for a, b in marks)
            marks.clear()
            if now_s() >= deadline and len(times) >= 3:
                break
        wall_s = now_s() - t0
    finally:
        if sampler is not None:
            sampler.__exit__(None, None, None)
    times = [max(t, 1e-12) for t in times]
    half = len(times) // 2
    first, second = statistics.median(times[:half] or times), statistics.median(times[half:])
    telemetry = summarize(sampler.samples if sampler else [], source, SAMPLE_INTERVAL_S, throttling_reasons)
    mean = statistics.fmean(times)
    return {
        "window_s": _round(window.window_s, 4), "warmup_s": _round(window.warmup_s, 4),
        "duration_s": round(wall_s, 3), "iterations": len(times),
        "median_tflops": _round(work / statistics.median(times) / 1e12),
        "mean_tflops": _round(work * len(times) / sum(times) / 1e12),
        "best_tflops": _round(work / min(times) / 1e12), "worst_tflops": _round(work / max(times) / 1e12),
        "stdev_pct": round(100.0 * statistics.pstdev(times) / mean, 2) if mean > 0 else 0.0,
        "drift_pct": round(100.0 * (first / second - 1.0), 2),  # > 0: the second half ran faster
        "clock_mhz": telemetry["clock_mhz"], "power_w": telemetry["power_w"],
        "throttled": telemetry["throttled"], "reasons": telemetry["reasons"],
    }


__all__ = ["DRIFT_LIMIT_PCT", "SUSTAINED_S", "SUSTAINED_WARMUP_S", "Window", "run_window"]
