"""Back-test: gpucost's default estimate for each published training run against what was reported.

For every run in ``catalogs/runs.yaml``: the estimate from its size, tokens, accelerator, precision
and scope alone (:func:`estimator.estimate`, flat time model: the per-kind default MFU while
training, the default goodput, and for ``scope: all`` the scope overhead; see
:mod:`estimator.timing.utilisation`), the relative error of the estimated device-hours against the reported
ones (or wall-clock days x devices), whether the reported hours fall inside the printed band, and
the MFU the run implies, FLOPs / (device-hours x 3600 x dense peak). Runs that report only a
throughput contribute their implied MFU to the statistics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from estimator.catalog.core import Catalog, load_catalog
from estimator.catalog.records import Run
from estimator.estimate import estimate
from estimator.timing.throughput import achieved_tflops


@dataclass(frozen=True, slots=True)
class RunCheck:
    """One published run compared with gpucost's default estimate."""

    id: str
    accelerator: str
    precision: str
    scope: str
    kind: str
    num_devices: int
    flops: float
    reported_gpu_hours: float | None
    estimated_gpu_hours: float
    gpu_hours_low: float
    gpu_hours_high: float
    error: float | None  # (estimated - reported) / reported
    inside_range: bool | None
    implied_mfu: float | None
    source: str


@dataclass(frozen=True, slots=True)
class KindDefault:
    """The default utilisation of one kind of run, and the rule behind it."""

    kind: str
    mfu: float
    band_low: float
    band_high: float
    num_runs: int
    basis: str
    fallback_note: str | None


@dataclass(frozen=True, slots=True)
class Validation:
    """Every run's check, the per-kind defaults and the summary statistics."""

    runs: tuple[RunCheck, ...]
    defaults: tuple[KindDefault, ...]
    num_with_hours: int
    num_inside_range: int
    num_within_1_5x: int
    median_abs_error: float | None
    median_implied_mfu: dict[str, float]
    goodput: float
    band_quantiles: tuple[float, float]

    def to_dict(self) -> dict:
        return asdict(self)


def reported_gpu_hours(run: Run) -> float | None:
    """Reported device-hours, else reported wall-clock days x devices x 24, else None."""
    if run.device_hours is not None:
        return run.device_hours
    if run.wall_clock_days is not None:
        return run.wall_clock_days * 24.0 * run.num_devices
    return None


def check_run(run: Run, catalog: Catalog) -> RunCheck:
    """Compare one run's reported device-hours with gpucost's default estimate."""
    from estimator.timing.utilisation import run_kind

    total = run.total_params or run.params
    est = estimate(params=total, active_params=run.params, tokens=run.tokens, gpu=run.accelerator,
                   num_gpus=run.num_devices, precision=run.precision, scope=run.scope or "pretrain", catalog=catalog)
    reported = reported_gpu_hours(run)
    implied = None
    if reported is not None and est.peak_tflops:
        implied = achieved_tflops(est.flops, reported) / est.peak_tflops
    elif run.reported_mfu is not None:
        implied = run.reported_mfu
    elif run.reported_tflops_per_device is not None and est.peak_tflops:
        implied = run.reported_tflops_per_device / est.peak_tflops
    band = est.range
    return RunCheck(
        id=run.id, accelerator=run.accelerator, precision=run.precision, scope=est.scope,
        kind=run_kind(total, run.params, run.precision).label, num_devices=run.num_devices,
        flops=est.flops, reported_gpu_hours=reported, estimated_gpu_hours=est.gpu_hours,
        gpu_hours_low=band.gpu_hours_low, gpu_hours_high=band.gpu_hours_high,
        error=(est.gpu_hours - reported) / reported if reported else None,
        inside_range=(band.gpu_hours_low <= reported <= band.gpu_hours_high) if reported else None,
        implied_mfu=implied, source=run.source,
    )


def validate(catalog: Catalog | None = None) -> Validation:
    """Back-test every published run in the catalog (``gpucost validate``)."""
    import statistics  # here, not at the top: `gpucost estimate` imports this module and never needs it
    from estimator.timing.utilisation import BAND_QUANTILES, DEFAULT_GOODPUT, DEFAULTS

    catalog = catalog or load_catalog()
    checks = tuple(check_run(run, catalog) for run in catalog.runs)
    timed = [c for c in checks if c.error is not None]
    by_precision: dict[str, list[float]] = {}
    for c in checks:
        if c.implied_mfu is not None:
            by_precision.setdefault(c.precision, []).append(c.implied_mfu)
    defaults = tuple(KindDefault(kind=k.label, mfu=u.mfu, band_low=u.band_low, band_high=u.band_high,
                                 num_runs=u.num_runs, basis=u.basis, fallback_note=u.fallback_note)
                     for k, u in sorted(DEFAULTS.items()))
    return Validation(
        runs=checks, defaults=defaults,
        num_with_hours=len(timed),
        num_inside_range=sum(bool(c.inside_range) for c in timed),
        num_within_1_5x=sum(1 / 1.5 <= 1 + c.error <= 1.5 for c in timed),
        median_abs_error=statistics.median(abs(c.error) for c in timed) if timed else None,
        median_implied_mfu={p: statistics.median(v) for p, v in sorted(by_precision.items())},
        goodput=DEFAULT_GOODPUT, band_quantiles=BAND_QUANTILES,
    )


__all__ = ["KindDefault", "RunCheck", "Validation", "check_run", "reported_gpu_hours", "validate"]
