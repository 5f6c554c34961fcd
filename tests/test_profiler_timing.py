"""The timing method: warm-up by time, untimed before-hook, per-iteration statistics."""

from __future__ import annotations

import itertools
import time

import pytest

pytest.importorskip("torch")

from profiler.timing import CpuClock, Timing, measure  # noqa: E402


class FakeClock:
    """A device clock whose time only moves when the fake work says so (seconds)."""

    def __init__(self):
        self.now = 0.0
        self.syncs = 0

    def mark(self):
        return self.now

    def elapsed_s(self, start, end):
        return end - start

    def synchronize(self):
        self.syncs += 1

    def work(self, durations_s):
        cycle = itertools.cycle(durations_s)

        def fn():
            self.now += next(cycle)

        return fn


def test_timing_statistics_for_known_durations():
    timing = Timing((1.0, 2.0, 3.0, 4.0, 10.0))
    assert (timing.best_s, timing.median_s, timing.worst_s, timing.mean_s) == (1.0, 3.0, 10.0, 4.0)
    assert timing.stdev_pct == pytest.approx(100 * 10**0.5 / 4.0)  # pstdev = sqrt(10)
    assert timing.rates(10.0) == {"best": 10.0, "median": pytest.approx(10 / 3), "worst": 1.0}
    assert timing.iterations == 5


@pytest.mark.parametrize("times", [(), (0.0,), (1.0, -1.0), (float("nan"),)])
def test_timing_rejects_empty_or_non_positive_times(times):
    with pytest.raises(ValueError):
        Timing(times)


def test_measure_excludes_the_before_hook_from_the_timed_region():
    clock = FakeClock()

    def flush():
        clock.now += 1.0  # a slow cache flush must not show up in the times

    timing = measure(clock.work([0.25]), clock, before=flush, warmup_s=0.0, budget_s=0.0, min_iters=4,
                     now_s=lambda: clock.now)
    assert timing.times_s == (0.25, 0.25, 0.25, 0.25)


def test_measure_warms_up_by_time_then_sizes_iterations_from_budget():
    clock = FakeClock()
    calls = []
    step = clock.work([2**-7])

    def fn():
        calls.append(clock.now)
        step()

    timing = measure(fn, clock, warmup_s=2**-4, budget_s=2**-1, now_s=lambda: clock.now)
    assert timing.iterations == 64  # budget / time per iteration
    assert len(calls) - timing.iterations == 8  # warm-up ran until 2**-4 s had passed


def test_measure_reports_best_median_and_worst_of_varying_iterations():
    clock = FakeClock()
    timing = measure(clock.work([0.003, 0.001, 0.002]), clock, warmup_s=0.0, budget_s=0.0, min_iters=6,
                     now_s=lambda: clock.now)
    assert timing.iterations == 6
    assert (timing.best_s, timing.median_s, timing.worst_s) == pytest.approx((0.001, 0.002, 0.003))


def test_measure_caps_iterations_at_max_iters():
    clock = FakeClock()
    timing = measure(clock.work([1e-6]), clock, warmup_s=0.0, budget_s=10.0, max_iters=7, now_s=lambda: clock.now)
    assert timing.iterations == 7


def test_measure_rejects_inconsistent_iteration_limits():
    clock = FakeClock()
    with pytest.raises(ValueError):
        measure(clock.work([1.0]), clock, min_iters=5, max_iters=2)


def test_cpu_clock_times_real_work():
    timing = measure(lambda: time.sleep(0.002), CpuClock(), warmup_s=0.0, budget_s=0.0, min_iters=5)
    assert timing.iterations == 5
    assert timing.best_s >= 0.002
    assert timing.median_s < 0.05
