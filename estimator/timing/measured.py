"""Throughput from a calibration file (``gpucost profile``) instead of datasheet peak x MFU.

What a file measures is one device. Which number an estimate takes, closest to the run first:

1. ``model``: a forward + backward + optimizer step of the estimated model's own transformer layers
   (``gpucost profile --model NAME``), when the file's model is the estimated one;
2. ``mlp``: the MLP training step (Linear d->4d, GELU, Linear 4d->d, AdamW), a training-like kernel mix;
3. ``matmul``: the best matmul, an upper bound no training step reaches (used through the factor below).

The median of the chosen measurement is the central figure and its worst..best the band.

**At scale** (more than one device) an estimate also pays for communication, pipeline bubbles and
stragglers that one device never sees. No single-device training step has been published next to
at-scale runs on the same chips, but best-matmul throughput has: the at-scale figure is
``AT_SCALE_FRACTION_OF_MATMUL[peak class]`` x the file's best matmul for the precision, capped by the
single-device training step, where for each peak class (dense 16-bit peak under or at least
``PEAK_EDGE_TFLOPS``; the classes the per-kind defaults of :mod:`estimator.timing.utilisation` had
before they moved with machine balance; these fractions were derived then and are kept until a
calibrated run at scale replaces them)

    AT_SCALE_FRACTION_OF_MATMUL = the median default MFU while training of the class's dense 16-bit
        kinds (estimator.timing.utilisation, derived from catalogs/runs.yaml: <500 TFLOP/s 0.476, 0.434,
        0.346 -> 0.434; >=500 TFLOP/s 0.31, 0.215, 0.267 -> 0.267) / the best-matmul fraction of the
        dense peak of the class's chip with runs (A100 BF16 271.2 / 312 = 0.869, H100 BF16 794.5 / 989
        = 0.803; stas00/ml-engineering, "Maximum Achievable Matmul FLOPS") = 0.50 and 0.33,

and the band is that figure x the published runs' leave-one-out spread around their kind's median
(``estimator.timing.utilisation.RATIO_BAND``, 0.526-1.543). When the architecture is known, the step-time
model (estimator/timing/step.py) times the run instead, with the file's measured links.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from estimator.records.calibration import BENCHMARK_VERSION, Calibration, Measurement
from estimator.catalog.records import Accelerator
from estimator.catalog.core import Catalog
from estimator.errors import InputError
from estimator.numbers import count
from estimator.timing.throughput import Throughput, ThroughputKind

PEAK_EDGE_TFLOPS = 500.0  # the peak classes below: dense 16-bit peak under or at least 500 TFLOP/s
AT_SCALE_FRACTION_OF_MATMUL = {"<500": 0.50, ">=500": 0.33}  # by peak class; see the module docstring
MAMF_FRACTION = {"<500": 271.2 / 312, ">=500": 794.5 / 989}  # A100, H100 bf16 (stas00 MAMF table)
STALE_AFTER_DAYS = 180


def device_accelerator(record: Calibration, catalog: Catalog) -> Accelerator:
    """The accelerator a calibration file measured: its catalog entry, or (unknown device, CPU) a
    record with no datasheet peak, so MFU is reported as unknown."""
    device = record.device
    if device.catalog_id:
        return catalog.accelerator(device.catalog_id)
    return Accelerator(
        id=device.backend, name=device.name, vendor=device.backend, peak_tflops={},
        memory_gb=(device.memory_bytes or 0) / 1e9, memory_bandwidth_gbps=record.bandwidth_best_gbps or 0.0,
        tdp_w=None, interconnect="-", source=f"calibration file ({record.command})", retrieved=record.created,
    )


def _model_step(record: Calibration, model: str | None, precision: str) -> Measurement | None:
    if model is None or record.model is None or record.model.id != model:
        return None
    step = record.model.results.get(precision)
    return step if step is not None and step.measured else None


def measured_model_step(record: Calibration, model: str | None, precision: str) -> int | None:
    """The sequence length of the file's own training step of ``model`` at ``precision``, or None
    when the file has no such measurement (that step counted the detailed FLOPs, so an estimate
    from it must count the same)."""
    return record.model.seq_len if _model_step(record, model, precision) is not None else None


def calibrated_throughput(
    record: Calibration, acc: Accelerator, precision: str, *, num_gpus: int, model: str | None = None,
    today: _dt.date | None = None,
) -> tuple[Throughput, list[str], bool]:
    """Throughput per device (TFLOP/s) for an estimate from a calibration ``record``, and warnings
    about the file (other device, stale, older benchmark, partial), and whether the model's own
    training step was used (its FLOPs are the detailed count, so the estimate must use that count
    too). Raises InputError when the file has no measurement for ``precision``."""
    if not isinstance(record, Calibration):
        raise InputError(f"a Calibration is required (estimator.records.calibration.load_calibration), got {type(record).__name__}")
    warnings: list[str] = []
    device = record.device
    where = f"{device.name}, {record.created_utc[:10]}"
    if device.catalog_id and device.catalog_id != acc.id:
        warnings.append(f"the calibration file measured {device.catalog_id}, the estimate is for {acc.id}")
    elif not device.catalog_id and acc.peak_tflops:
        warnings.append(f"the calibration file measured {device.name} (not in the catalog), the estimate is for {acc.id}")
    if ((today or _dt.date.today()) - record.created).days > STALE_AFTER_DAYS:
        warnings.append(f"the calibration file is from {record.created}, more than {STALE_AFTER_DAYS} days ago; "
                        "profile again")
    if record.benchmark_version < BENCHMARK_VERSION:
        warnings.append(f"the calibration file is from benchmark version {record.benchmark_version}, "
                        f"current is {BENCHMARK_VERSION}; profile again")
    if record.partial:
        warnings.append("the calibration file is partial (the profile was interrupted)")

    step, label = _model_step(record, model, precision), f"{model} training step"
    model_step = step is not None
    if not model_step:
        step, label = record.mlp.get(precision), "MLP training step"
        if step is not None and not step.measured:  # a skipped measurement
            step = None
    matmul = record.matmul.get(precision)
    matmul_best = matmul.best_tflops if matmul is not None else None
    peak = acc.peak_for(precision)
    if step is None and matmul_best is None:
        torch_model = record.torch_model or {}
        measured = sorted({d for d, e in record.matmul.items() if e.measured}
                          | {d for d, e in record.mlp.items() if e.measured}
                          | {d for d, r in torch_model.get("results", {}).items() if "skipped" not in r})
        raise InputError(f"the calibration file has no {precision} measurement "
                         f"(it has: {', '.join(measured) or 'none'}); choose --precision or profile with --precision {precision}")

    from estimator.timing.utilisation import RATIO_BAND

    band_low, band_high = RATIO_BAND
    if num_gpus == 1 and step is not None:
        achieved = step.median_tflops
        band = (min(step.worst_tflops, achieved), max(step.best_tflops, achieved))
        source = f"calibration: {label} {precision} (median) on {where}"
    elif matmul_best is not None:
        from estimator.timing.utilisation import accelerator_peak

        peak = accelerator_peak(acc)
        fraction = AT_SCALE_FRACTION_OF_MATMUL[">=500" if peak and peak >= PEAK_EDGE_TFLOPS else "<500"]
        achieved = fraction * matmul_best
        cap = step.median_tflops if step is not None else None
        source = (f"calibration: {fraction} x best {precision} matmul {matmul_best:.4g} TFLOP/s on "
                  f"{where} (at-scale factor, see estimator.timing.measured)")
        if num_gpus == 1:
            source += "; no training step measured"
        if cap is not None and cap < achieved:
            achieved, source = cap, source + f", capped by the {label} {cap:.4g}"
        band = (achieved * band_low, achieved * band_high)
    else:
        achieved = step.median_tflops
        band = (achieved * band_low, achieved * band_high)
        source = f"calibration: {label} {precision} on {where} (no matmul measured: no at-scale factor applied)"
        warnings.append("the calibration file has no matmul measurement to map one device to many")
    return Throughput(achieved, peak, source, ThroughputKind.CALIBRATED, band), warnings, model_step and num_gpus == 1


def measured_sample_rate(record: Calibration, work: Any, acc: Accelerator, precision: str, *, num_gpus: int,
                         warnings: list[str]) -> Throughput | None:
    """The throughput of a workload in samples from the file's own training step of that model
    (``gpucost profile --torch-model``): the measured samples per second, as TFLOP/s of the
    workload's own FLOP count, so that the time is samples / measured rate. Used when the file's
    ``torch_model`` is the workload's model (or the workload gives no model name, only sizes). On
    several devices it assumes perfect scaling (a small model's step has little to communicate).
    None when the file has no such measurement."""
    section = record.torch_model
    if not section or work.model not in (section.get("id"), None):
        return None
    from estimator.records.torch_model import measured_samples_per_s

    measured = measured_samples_per_s(record.to_dict(), section["id"], precision)
    if measured is None:
        return None
    rate, info = measured
    warnings.extend(info["warnings"])
    if record.device.catalog_id and record.device.catalog_id != acc.id:
        warnings.append(f"the calibration file measured {record.device.catalog_id}, the estimate is for {acc.id}")
    flops_per_sample = work.flops / work.samples  # the workload's convention, so MFU compares with others
    low, high = info["band_samples_per_s"]
    scale = flops_per_sample / 1e12
    source = info["source"] + f": {count(rate)} samples/s" + (", perfect scaling to the devices" if num_gpus > 1 else "")
    return Throughput(rate * scale, acc.peak_for(precision), source, ThroughputKind.CALIBRATED,
                      (min(low, rate) * scale, max(high, rate) * scale))
