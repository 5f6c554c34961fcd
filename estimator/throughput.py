"""Achieved TFLOP/s per device, the dense peak it is measured against, and where it came from.

Four sources (Epoch AI's device-time method, run in either direction):

- ``datasheet``: the default MFU for the precision x the catalog's dense peak;
- ``given``: ``--tflops`` (achieved TFLOP/s per device) or ``--mfu`` x the dense peak;
- ``implied``: reported device-hours -> achieved = FLOPs / (device-hours x 3600) (the inverse,
  the DeepSeek-V3 question: 3.3e24 FLOPs in 2.664M H800-hours);
- ``calibrated``: measured by ``gpucost profile`` (:mod:`estimator.measured`);
- ``step``: predicted by the step-time model for a parallel layout (:mod:`estimator.step`).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from .catalog import Accelerator
from .errors import InputError
from .vocab import PRECISIONS

# Default model-FLOPs utilisation (of the DENSE peak for the precision) and the band printed with
# every estimate, derived from the published runs in catalogs/runs.yaml (`gpucost validate` prints
# them; tests/test_validate.py fails if these constants drift from the data):
#   16-bit runs (A100, H100, TPU v4; 16 runs) imply MFU 0.14-0.51, median 0.40; 15 of 16 lie in
#   0.25-0.55. Below it: Llama 3.1 8B, whose model-card hours include more than pre-training.
#   FP8: one run, DeepSeek-V3 on H800, implies 0.17 of the FP8 peak (0.35 of the BF16 peak).
# TF32/FP32 have no published large runs; they take the 16-bit fraction of their own (lower) peak.
DEFAULT_MFU: dict[str, float] = {"bf16": 0.40, "fp16": 0.40, "tf32": 0.40, "fp32": 0.40, "fp8": 0.20}
MFU_BAND: dict[str, tuple[float, float]] = {
    "bf16": (0.25, 0.55), "fp16": (0.25, 0.55), "tf32": (0.25, 0.55), "fp32": (0.25, 0.55),
    "fp8": (0.12, 0.35),
}


class ThroughputKind(str, enum.Enum):
    DATASHEET = "datasheet"
    GIVEN = "given"
    IMPLIED = "implied"
    CALIBRATED = "calibrated"
    STEP = "step"


@dataclass(frozen=True, slots=True)
class Throughput:
    """Achieved TFLOP/s per device, the dense peak it is measured against, and where it came from."""

    achieved_tflops: float
    peak_tflops: float | None
    source: str
    kind: ThroughputKind = ThroughputKind.GIVEN
    band_tflops: tuple[float, float] | None = None  # (slow, fast) end of the utilisation band

    def __post_init__(self) -> None:
        if not self.achieved_tflops > 0 or self.achieved_tflops == float("inf"):
            raise InputError(f"the throughput must be a positive, finite TFLOP/s figure, got {self.achieved_tflops!r} "
                             f"({self.source})")

    @property
    def mfu(self) -> float | None:
        """Model FLOPs utilisation: achieved / dense peak (None without a peak)."""
        return self.achieved_tflops / self.peak_tflops if self.peak_tflops else None


def device_hours(flops: float, tflops_per_device: float) -> float:
    """Device-hours that ``flops`` take at ``tflops_per_device`` achieved TFLOP/s."""
    return flops / (tflops_per_device * 1e12) / 3600.0


def achieved_tflops(flops: float, hours: float) -> float:
    """TFLOP/s per device that ``flops`` in ``hours`` device-hours imply (the inverse question)."""
    return flops / (hours * 3600.0) / 1e12


def peak_for(acc: Accelerator, precision: str) -> float | None:
    """The accelerator's dense peak for ``precision`` (None if it has none); InputError for an
    unknown precision."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return acc.peak_for(precision)


def _band(peak: float | None, precision: str, achieved: float) -> tuple[float, float] | None:
    if peak is None:
        return None
    low, high = MFU_BAND[precision]
    return (min(low * peak, achieved), max(high * peak, achieved))


def datasheet_throughput(acc: Accelerator, precision: str, *, mfu: float | None = None) -> Throughput:
    """``mfu`` (default ``DEFAULT_MFU`` for the precision) x the dense peak."""
    peak = peak_for(acc, precision)
    if peak is None:
        have = ", ".join(p for p in PRECISIONS if acc.peak_for(p)) or "none"
        raise InputError(f"{acc.id} has no {precision} peak in the catalog (it has: {have}); "
                         f"choose another --precision or give --tflops")
    if mfu is not None:
        achieved, source, kind = mfu * peak, "given --mfu x dense peak", ThroughputKind.GIVEN
    else:
        achieved = DEFAULT_MFU[precision] * peak
        source = f"default MFU {DEFAULT_MFU[precision]:.0%} for {precision} x dense peak (see `gpucost validate`)"
        kind = ThroughputKind.DATASHEET
    return Throughput(achieved, peak, source, kind, _band(peak, precision, achieved))


def given_throughput(acc: Accelerator, precision: str, tflops: float) -> Throughput:
    """``--tflops``: the achieved rate as given, with the utilisation band around it when the
    accelerator has a peak for the precision."""
    peak = peak_for(acc, precision)
    return Throughput(tflops, peak, "given (--tflops)", ThroughputKind.GIVEN, _band(peak, precision, tflops))


def implied_throughput(acc: Accelerator, precision: str, flops: float, hours: float) -> Throughput:
    """The inverse question: the rate that ``hours`` device-hours for ``flops`` imply."""
    achieved = achieved_tflops(flops, hours)
    if not math.isfinite(achieved):
        raise InputError(f"--gpu-hours {hours:g} is too few for {flops:.3g} FLOPs: the implied throughput overflows")
    return Throughput(achieved, peak_for(acc, precision), "implied by --gpu-hours (FLOPs / device-seconds)",
                      ThroughputKind.IMPLIED)


__all__ = ["DEFAULT_MFU", "MFU_BAND", "Throughput", "ThroughputKind", "achieved_tflops", "datasheet_throughput",
           "device_hours", "given_throughput", "implied_throughput", "peak_for"]
