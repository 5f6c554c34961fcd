"""Timing a kernel: warm-up by time, per-iteration clock marks, statistics. Seconds throughout.

Method after stas00/ml-engineering ``mamf-finder.py``: a ``before`` hook (L2/LLC flush, output
re-randomisation) runs before every iteration OUTSIDE the timed region; each iteration is timed on
its own (CUDA events on a GPU; ``time.perf_counter`` after a device sync on a CPU), and we report
the best, the median and the spread, never a single average.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Clock(Protocol):
    """Marks points in the device's stream of work and reads the seconds between two marks."""

    def mark(self) -> Any: ...

    def elapsed_s(self, start: Any, end: Any) -> float: ...

    def synchronize(self) -> None: ...


class CpuClock:
    """Host clock: ``time.perf_counter`` read after a device sync (a no-op for CPU tensors)."""

    def __init__(self) -> None:
        import torch

        self._sync = torch.cpu.synchronize

    def synchronize(self) -> None:
        self._sync()

    def mark(self) -> float:
        self.synchronize()
        return time.perf_counter()

    def elapsed_s(self, start: float, end: float) -> float:
        return end - start


class CudaClock:
    """CUDA events recorded in the current stream; read them only after :meth:`synchronize`."""

    def __init__(self, device: Any):
        self.device = device

    def synchronize(self) -> None:
        import torch

        torch.cuda.synchronize(self.device)

    def mark(self) -> Any:
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def elapsed_s(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds


def clock_for(device: Any) -> Clock:
    """The clock for a ``torch.device``: CUDA events on cuda (and ROCm), perf_counter on cpu."""
    return CudaClock(device) if device.type == "cuda" else CpuClock()


@dataclass(frozen=True, slots=True)
class Timing:
    """Per-iteration times (s) of one measured kernel, with the statistics we report."""

    times_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.times_s:
            raise ValueError("Timing.times_s must hold at least one iteration")
        if any(not math.isfinite(t) or t <= 0 for t in self.times_s):
            raise ValueError(f"Timing.times_s must be positive, got {self.times_s!r}")

    @property
    def iterations(self) -> int:
        return len(self.times_s)

    @property
    def best_s(self) -> float:
        return min(self.times_s)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def worst_s(self) -> float:
        return max(self.times_s)

    @property
    def mean_s(self) -> float:
        return statistics.fmean(self.times_s)

    @property
    def stdev_pct(self) -> float:
        """Population standard deviation of the times, as a percentage of their mean."""
        return 100.0 * statistics.pstdev(self.times_s) / self.mean_s

    def rates(self, work: float) -> dict[str, float]:
        """``work`` per second (e.g. FLOP/s or B/s) at the best, median and worst iteration."""
        return {"best": work / self.best_s, "median": work / self.median_s, "worst": work / self.worst_s}


def measure(fn: Callable[[], Any], clock: Clock, *, before: Callable[[], Any] | None = None,
            warmup_s: float = 0.25, budget_s: float = 1.0, min_iters: int = 3, max_iters: int = 10_000,
            now_s: Callable[[], float] = time.perf_counter) -> Timing:
    """Time ``fn`` per iteration after a warm-up.

    1. Warm-up by time: run ``before(); fn()`` and sync until ``warmup_s`` has passed (at least once);
       this also estimates the wall time of one iteration, hook included.
    2. Timed: ``clamp(budget_s / that estimate, min_iters, max_iters)`` iterations, each ``before()``
       (untimed), then ``mark, fn(), mark``; one sync at the end, then read every interval.

    ``now_s`` is the wall clock used only for the budget (tests pass a fake one).
    """
    if min_iters < 1 or max_iters < min_iters:
        raise ValueError("measure needs 1 <= min_iters <= max_iters")
    warm_iters_s: list[float] = []
    clock.synchronize()
    deadline = now_s() + warmup_s
    while True:
        start = now_s()
        if before is not None:
            before()
        fn()
        clock.synchronize()
        end = now_s()
        warm_iters_s.append(end - start)
        if end >= deadline:
            break
    per_iter_s = statistics.median(warm_iters_s[1:] or warm_iters_s)
    iters = max(min_iters, min(max_iters, int(budget_s / max(per_iter_s, 1e-9))))
    marks = []
    for _ in range(iters):
        if before is not None:
            before()
        start_mark = clock.mark()
        fn()
        marks.append((start_mark, clock.mark()))
    clock.synchronize()
    return Timing(tuple(clock.elapsed_s(a, b) for a, b in marks))
