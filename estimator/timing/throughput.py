"""Achieved TFLOP/s per device, the dense peak it is measured against, and where it came from.

Four sources (Epoch AI's device-time method, run in either direction):

- ``datasheet``: the default MFU for the kind of run (:mod:`estimator.timing.utilisation`: dense or MoE,
  16-bit or FP8, size class; derived from published runs) x the catalog's dense peak;
- ``given``: ``--tflops`` (achieved TFLOP/s per device) or ``--mfu`` x the dense peak;
- ``implied``: reported device-hours -> achieved = FLOPs / (device-hours x 3600) (the inverse,
  the DeepSeek-V3 question: 3.3e24 FLOPs in 2.664M H800-hours);
- ``calibrated``: measured by ``gpucost profile`` (:mod:`estimator.timing.measured`);
- ``ported``: a reported time of the same run on other hardware gives the MFU it reached there,
  applied to this accelerator's peak (the slides' "30 minutes on a DGX, so 0.5 x 8 x 1.5 hours on
  a 4090" made explicit);
- ``step``: predicted by the step-time model for a parallel layout (:mod:`estimator.timing.step`).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

from estimator.catalog.records import Accelerator
from estimator.errors import InputError
from estimator.vocab import PRECISIONS

class ThroughputKind(str, enum.Enum):
    DATASHEET = "datasheet"
    GIVEN = "given"
    IMPLIED = "implied"
    CALIBRATED = "calibrated"
    PORTED = "ported"
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


def _band(peak: float | None, achieved: float, low: float, high: float) -> tuple[float, float] | None:
    if peak is None:
        return None
    return (min(low * peak, achieved), max(high * peak, achieved))


def default_utilisation_for(acc: Accelerator, params: float | None, active_params: float | None,
                            precision: str) -> Any:
    """The per-kind default utilisation (:mod:`estimator.timing.utilisation`) of a run on ``acc``, at its
    machine balance; a bare ``--flops`` (no parameter count) takes the dense 20-100B kind, and says so."""
    from estimator.timing.utilisation import Kind, default_utilisation, machine_balance, precision_class, utilisation_for

    balance = machine_balance(acc)
    if params is None:
        return default_utilisation(Kind("dense", precision_class(precision), "20-100B")).at(balance)
    return utilisation_for(params, active_params, precision, balance=balance)


def datasheet_throughput(acc: Accelerator, precision: str, *, mfu: float | None = None,
                         params: float | None = None, active_params: float | None = None,
                         in_samples: bool = False) -> Throughput:
    """``mfu`` (default: the per-kind default MFU while training, :mod:`estimator.timing.utilisation`) x
    the dense peak, with the kind's band (or, for a given ``mfu``, the band of its kind around it).
    ``in_samples``: a workload counted in samples with forward FLOPs per sample (a convnet), which
    takes the default of the published sample-counted runs instead of the token runs'."""
    peak = peak_for(acc, precision)
    if peak is None:
        have = ", ".join(p for p in PRECISIONS if acc.peak_for(p)) or "none"
        raise InputError(f"{acc.id} has no {precision} peak in the catalog (it has: {have}); "
                         f"choose another --precision or give --tflops")
    from estimator.timing.utilisation import BALANCE_EXPONENT, BALANCE_REF

    if in_samples:
        from estimator.timing.utilisation import machine_balance, sample_utilisation

        u = sample_utilisation(precision, balance=machine_balance(acc))
    else:
        u = default_utilisation_for(acc, params, active_params, precision)
    if mfu is not None:
        return Throughput(mfu * peak, peak, "given --mfu x dense peak", ThroughputKind.GIVEN,
                          _band(peak, mfu * peak, u.band_low, u.band_high))
    runs = (f"median of {u.num_runs} published runs of {u.basis}, only {u.kind_runs} of its own kind"
            if u.fallback_note else f"{u.num_runs} {u.basis}" if in_samples else f"{u.num_runs} published runs")
    missing = "; no parameter count, so the dense 20-100B kind" if params is None else ""
    where = (f" at {u.balance:.0f} FLOP/byte (peak / HBM bandwidth; runs moved by x balance^-{BALANCE_EXPONENT:g})"
             if u.balance != BALANCE_REF else "")
    source = f"default MFU {u.mfu:.1%} while training for {u.kind.label}{where} ({runs}{missing}; `gpucost validate`)"
    return Throughput(u.mfu * peak, peak, source, ThroughputKind.DATASHEET, _band(peak, u.mfu * peak, u.band_low,
                                                                                  u.band_high))


def given_throughput(acc: Accelerator, precision: str, tflops: float, *, params: float | None = None,
                     active_params: float | None = None) -> Throughput:
    """``--tflops``: the achieved rate as given, with the band of published runs of its kind
    (widened to hold the given rate) when the accelerator has a peak for the precision."""
    peak = peak_for(acc, precision)
    u = default_utilisation_for(acc, params, active_params, precision)
    return Throughput(tflops, peak, "given (--tflops)", ThroughputKind.GIVEN,
                      _band(peak, tflops, u.band_low, u.band_high))


def implied_throughput(acc: Accelerator, precision: str, flops: float, hours: float) -> Throughput:
    """The inverse question: the rate that ``hours`` device-hours for ``flops`` imply."""
    achieved = achieved_tflops(flops, hours)
    if not math.isfinite(achieved):
        raise InputError(f"--gpu-hours {hours:g} is too few for {flops:.3g} FLOPs: the implied throughput overflows")
    return Throughput(achieved, peak_for(acc, precision), "implied by --gpu-hours (FLOPs / device-seconds)",
                      ThroughputKind.IMPLIED)


def ported_throughput(acc: Accelerator, precision: str, flops: float, *, measured: Accelerator, seconds: float,
                      devices: int, params: float | None = None, active_params: float | None = None) -> Throughput:
    """The MFU that ``flops`` in ``seconds`` on ``devices`` x ``measured`` imply, applied to ``acc``'s
    dense peak for ``precision``; the band is the published runs' spread around it."""
    ref_peak = peak_for(measured, precision)
    peak = peak_for(acc, precision)
    if ref_peak is None or peak is None:
        missing = measured.id if ref_peak is None else acc.id
        raise InputError(f"{missing} has no {precision} peak in the catalog; choose another --precision")
    achieved_ref = flops / (seconds * devices) / 1e12
    mfu = achieved_ref / ref_peak
    u = default_utilisation_for(acc, params, active_params, precision)
    ratio_low, ratio_high = u.band_low / u.mfu, u.band_high / u.mfu
    source = (f"ported: {flops:.3g} FLOPs in {seconds / 3600:.3g} h on {devices} x {measured.id} = {achieved_ref:.4g} "
              f"TFLOP/s per device, MFU {mfu:.1%} of its {ref_peak:g} dense {precision}, applied to {acc.id}")
    return Throughput(mfu * peak, peak, source, ThroughputKind.PORTED,
                      (mfu * peak * ratio_low, mfu * peak * ratio_high))


__all__ = ["Throughput", "ThroughputKind", "achieved_tflops", "datasheet_throughput",
           "default_utilisation_for", "device_hours", "given_throughput", "ported_throughput", "implied_throughput", "peak_for"]
