"""Clock, power, temperature and throttling samples taken in the background while benchmarks run.

A :class:`Sampler` calls a reader (NVML on NVIDIA GPUs, ``/proc/cpuinfo`` on CPUs) every
``interval_s`` seconds in a daemon thread; :func:`summarize` turns the samples into the ``telemetry``
section of the calibration record. Units: MHz, W, degrees C, seconds.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True)
class TelemetrySample:
    """One reading. A field the device cannot report is None (``reasons`` None: cannot tell)."""

    time_s: float
    clock_mhz: float | None
    power_w: float | None
    temperature_c: float | None
    reasons: tuple[str, ...] | None


def read_cpu_clock_mhz(cpuinfo: Path = Path("/proc/cpuinfo")) -> float | None:
    """Mean current core clock (MHz) over the ``cpu MHz`` lines of /proc/cpuinfo; None elsewhere."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    values = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "cpu MHz":
            try:
                values.append(float(value))
            except ValueError:
                pass
    return sum(values) / len(values) if values else None


def cpu_sample() -> TelemetrySample:
    """A CPU reading: the core clock only (power, temperature and throttle reasons are not read)."""
    return TelemetrySample(time.monotonic(), read_cpu_clock_mhz(), None, None, None)


class Sampler:
    """Context manager sampling ``read()`` at start, every ``interval_s`` seconds, and at exit.

    A reader that raises is skipped for that tick; the benchmark never sees the error.
    """

    def __init__(self, read: Callable[[], TelemetrySample], interval_s: float = DEFAULT_INTERVAL_S):
        self.read = read
        self.interval_s = interval_s
        self.samples: list[TelemetrySample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpucost-telemetry", daemon=True)

    def _take(self) -> None:
        try:
            self.samples.append(self.read())
        except Exception:
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._take()

    def __enter__(self) -> Sampler:
        self._take()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5 * self.interval_s + 1.0)
        self._take()


def _stats(values: Iterable[float | None]) -> dict[str, float] | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {"min": round(min(present), 3), "median": round(statistics.median(present), 3),
            "max": round(max(present), 3)}


def summarize(samples: list[TelemetrySample], source: str | None, interval_s: float,
              throttling_reasons: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The ``telemetry`` record section: min/median/max of each quantity and whether it throttled.

    ``throttled`` is True when any sample carried a reason in ``throttling_reasons``, False when
    reasons were read and none did, and None when the device reported no reasons at all.
    """
    read_reasons = [s.reasons for s in samples if s.reasons is not None]
    seen = sorted({r for reasons in read_reasons for r in reasons if r in throttling_reasons})
    return {
        "source": source if samples else None,
        "samples": len(samples),
        "interval_s": interval_s,
        "clock_mhz": _stats(s.clock_mhz for s in samples),
        "power_w": _stats(s.power_w for s in samples),
        "temperature_c": _stats(s.temperature_c for s in samples),
        "throttled": bool(seen) if read_reasons else None,
        "reasons": seen,
    }
