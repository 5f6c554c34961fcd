"""Wall-clock, device-hours, cost and energy of a training run: the :class:`Estimate` record and
:func:`estimate`, which answers an :class:`~estimator.request.EstimateRequest`.

The request is resolved against the catalog (:mod:`estimator.resolve`: the workload, the
accelerator, the throughput, the price, and the answers to planning questions); the time comes
from one of two models:

- ``flat``: device-hours = FLOPs / achieved FLOP/s per device; wall-clock = device-hours / devices
  (perfect scaling), at the default MFU, a given ``--mfu``/``--tflops``, a calibration file, or the
  rate that reported ``--gpu-hours`` imply;
- ``step``: the step-time model of a parallel layout (:mod:`estimator.timing.step`): compute, the
  collectives of tensor/context/expert/pipeline/data parallelism on the links of the system, and
  the pipeline bubble, for one optimizer step; wall-clock = steps x step time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from estimator.catalog.core import Catalog, load_catalog
from estimator.errors import InputError
from estimator.plan import Plan
from estimator.request import EstimateRequest
from estimator.timing.goodput import DEFAULT_GOODPUT
from estimator.timing.throughput import ThroughputKind, device_hours

SCHEMA_VERSION = 1  # of the JSON/YAML record (docs/json.md)


@dataclass(frozen=True, slots=True)
class Range:
    """Low/high of an estimate for the utilisation band (low MFU -> long, high MFU -> short)."""

    tflops_low: float
    tflops_high: float
    mfu_low: float | None
    mfu_high: float | None
    wall_clock_days_low: float
    wall_clock_days_high: float
    gpu_hours_low: float
    gpu_hours_high: float
    cost_usd_low: float | None
    cost_usd_high: float | None


@dataclass(frozen=True, slots=True)
class LayoutSummary:
    """A parallel layout the step model timed, for the ``layouts`` list of an estimate."""

    layout: dict[str, Any]
    step_time_s: float
    mfu: float | None
    memory_gb: float


@dataclass(frozen=True, slots=True)
class Estimate:
    """The answer to "what does training this cost?" with every assumption that produced it."""

    flops: float
    flops_method: str
    gpu: str
    gpu_name: str
    num_gpus: int
    precision: str
    peak_tflops: float | None
    achieved_tflops_per_gpu: float
    mfu: float | None
    throughput_source: str
    wall_clock_days: float
    gpu_hours: float
    price_usd_per_gpu_hour: float | None
    price_source: str | None
    cost_usd: float | None
    energy_kwh: float | None
    pue: float
    electricity_usd_per_kwh: float
    energy_cost_usd: float | None
    own_cost_usd: float | None
    range: Range | None
    model: str | None = None
    params: float | None = None
    active_params: float | None = None
    tokens: float | None = None
    samples: float | None = None  # workloads in samples: samples trained over all epochs
    epochs: float | None = None
    dataset: str | None = None
    plan: Plan | None = None
    num_gpus_given: bool = True
    seq_len: int | None = None
    flops_6nd: float | None = None
    flops_detailed: float | None = None
    min_gpus_to_fit: int | None = None
    time_model: str = "flat"
    step_time_s: float | None = None
    tokens_per_s: float | None = None
    hfu: float | None = None
    layout: dict[str, Any] | None = None
    time_breakdown_s: dict[str, float] | None = None
    system: str | None = None
    layouts: tuple[LayoutSummary, ...] = ()
    goodput: float = 1.0
    mfu_while_training: float | None = None  # the inverse question: implied MFU / assumed goodput
    default_wall_clock_days: float | None = None  # a ported run: the estimate from FLOPs at the default MFU
    scope: str = "pretrain"
    stack: dict[str, Any] | None = None  # the training stack (--stack) and, eager, its kernels and memory peak
    finetune: dict[str, Any] | None = None  # method, lora_rank, lora_targets, trainable_params, frozen_weights_gb
    assumptions: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_finite(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict. Its keys are a stable contract (docs/json.md)."""
        data = {"schema_version": SCHEMA_VERSION, **asdict(self)}
        data["assumptions"] = list(self.assumptions)
        data["warnings"] = list(self.warnings)
        data["layouts"] = [asdict(s) for s in self.layouts]
        return data


def check_finite(record: Any, where: str = "") -> None:
    """Raise InputError when any number in ``record`` (a dataclass, nested) is NaN or infinite: a
    result that overflowed. Inputs are validated, so this means the inputs are too extreme."""
    for f in fields(record):
        value = getattr(record, f.name)
        name = f"{where}{f.name}"
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"the result {name} is not a finite number ({value}): the inputs are too extreme "
                             "(check the FLOPs, tokens, throughput and device count)")
        if isinstance(value, (Range, Plan)):
            check_finite(value, f"{name}.")
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, float) and not math.isfinite(item):
                    raise InputError(f"the result {name}.{key} is not a finite number ({item}): the inputs are too extreme")


def estimate(request: EstimateRequest | None = None, /, *, catalog: Catalog | None = None, **options: Any) -> Estimate:
    """Answer an estimate request: wall-clock, device-hours, cost and energy of one training run.

    ``estimate(EstimateRequest(...))`` or the same fields as keywords:
    ``estimate(params="175B", tokens="300B", gpu="a100", num_gpus=1024, tflops=80, precision="tf32")``.
    """
    if request is not None and not isinstance(request, EstimateRequest):  # estimate("7B", gpu="h100")
        raise InputError(f"estimate() takes an EstimateRequest or keyword options, got {type(request).__name__} "
                         f"{request!r} as its first argument (write estimate(params=\"7B\", tokens=\"1T\", gpu=\"h100\"))")
    if request is None:
        request = EstimateRequest(**options)
    elif options:
        request = request.with_(**options)
    from estimator.resolve import resolve

    catalog = catalog or load_catalog()
    parts = resolve(request, catalog)
    work, acc, rate, price = parts.workload, parts.accelerator, parts.throughput, parts.price
    num_gpus = parts.num_gpus
    assumptions = [f"training FLOPs: {work.flops_method}", *work.finetune_notes]
    warnings = list(parts.warnings)
    if rate.peak_tflops is None:
        warnings.append(f"{acc.id} has no {request.precision} peak in the catalog; MFU is unknown")
    else:
        assumptions.append(f"peak: {rate.peak_tflops:g} TFLOP/s dense {request.precision} per {acc.id}, {acc.source}")
        if rate.mfu > 1:
            warnings.append(f"implied MFU {rate.mfu:.0%} exceeds the dense {request.precision} peak: check the inputs")
    goodput = parts.goodput
    overhead = parts.scope_factor / goodput  # device-hours per device-hour of pre-training while training
    hours = device_hours(work.flops, rate.achieved_tflops) * overhead
    step = parts.step
    assumptions.append(f"throughput: {rate.achieved_tflops:.4g} TFLOP/s per device, {rate.source}")
    if parts.devices_source:
        devices_note = f", {parts.devices_source}"
    else:
        devices_note = "" if parts.num_gpus_given else " (default; set --num-gpus)"
    if step is None:
        assumptions.append(f"devices: {num_gpus:,} x {acc.id}{devices_note}; perfect scaling "
                           "(time = device-hours / devices)")
    else:
        if parts.devices_source:
            assumptions.append(f"devices: {num_gpus:,} x {acc.id}, {parts.devices_source}")
        assumptions.extend(step.assumptions)
    if goodput < 1:
        assumptions.append(f"goodput: {goodput:.0%} of wall-clock trains ({parts.goodput_source}); "
                           "wall-clock and device-hours include the rest (--goodput to change)")
    if parts.scope_factor != 1:
        assumptions.append(f"scope: all of training, {parts.scope_factor:g} x the pre-training device-hours "
                           f"({parts.scope_source})")
    default_days = None
    if rate.kind is ThroughputKind.PORTED:  # beside the port, the estimate from FLOPs alone
        from estimator.timing.throughput import datasheet_throughput

        default = datasheet_throughput(acc, request.precision, params=work.params, active_params=work.active_params)
        default_days = device_hours(work.flops, default.achieved_tflops) / DEFAULT_GOODPUT / num_gpus / 24.0
        assumptions.append(f"from FLOPs alone: {default_days * 24:.3g} hours on {num_gpus} x {acc.id} at "
                           f"{default.source.replace('default MFU', 'the default MFU')}, {DEFAULT_GOODPUT:.0%} goodput")
    mfu_while_training = None
    if rate.kind is ThroughputKind.IMPLIED and rate.mfu is not None:
        assumed = request.goodput or DEFAULT_GOODPUT
        mfu_while_training = rate.mfu / assumed
        assumptions.append(f"implied MFU: {rate.mfu:.1%} over all reported device-hours; {mfu_while_training:.1%} "
                           f"while training at {assumed:.0%} goodput"
                           + ("" if request.goodput else " (the published default; --goodput to change)"))

    usd_per_hour = price.usd_per_gpu_hour
    if usd_per_hour is None:
        warnings.append(f"no price for {acc.id} in the catalog; give --price USD per device-hour")
    else:
        assumptions.append(f"price: ${usd_per_hour:g} per device-hour, {price.source}")
    energy_kwh = energy_cost = own_cost = None
    if acc.tdp_w is not None:
        energy_kwh = acc.tdp_w * hours * request.pue / 1000.0
        energy_cost = energy_kwh * request.electricity_usd_per_kwh
        assumptions.append(f"energy: {acc.tdp_w:g} W TDP x device-hours x PUE {request.pue:g}, "
                           f"${request.electricity_usd_per_kwh:g}/kWh")
    if acc.purchase_price_usd is not None and energy_cost is not None:
        own_cost = hours * acc.purchase_price_usd / (request.life_years * 365 * 24) + energy_cost
        assumptions.append(f"owning: ${acc.purchase_price_usd:,.0f} per device amortised over {request.life_years:g} "
                           "years of continuous use, plus electricity")
    if work.flops_detailed is not None:
        causal = work.architecture is not None and work.architecture.causal and request.flash_attention is not False
        assumptions.append(f"sequence length: {work.seq_len:,} ({work.seq_len_source})")
        assumptions.append(f"detailed FLOPs at sequence length {work.seq_len}"
                           + (" (causal attention at half the score matmuls, as the fused kernel runs them)"
                              if causal else "") + f": {work.flops_detailed:.3g} "
                           f"({work.flops_detailed / work.flops_6nd - 1:+.1%} vs 6ND); the time uses "
                           + ("the detailed count" if work.flops == work.flops_detailed
                              else "6ND (--flops-method detailed to switch)"))

    band = None
    if rate.band_tflops is not None:
        slow_h, fast_h = (device_hours(work.flops, t) * overhead for t in rate.band_tflops)
        band = Range(
            tflops_low=rate.band_tflops[0], tflops_high=rate.band_tflops[1],
            mfu_low=rate.band_tflops[0] / rate.peak_tflops if rate.peak_tflops else None,
            mfu_high=rate.band_tflops[1] / rate.peak_tflops if rate.peak_tflops else None,
            wall_clock_days_low=fast_h / num_gpus / 24.0, wall_clock_days_high=slow_h / num_gpus / 24.0,
            gpu_hours_low=fast_h, gpu_hours_high=slow_h,
            cost_usd_low=fast_h * usd_per_hour if usd_per_hour is not None else None,
            cost_usd_high=slow_h * usd_per_hour if usd_per_hour is not None else None,
        )
        assumptions.append(f"range: {rate.band_tflops[0]:.4g}-{rate.band_tflops[1]:.4g} TFLOP/s per device"
                           + (f" (MFU {band.mfu_low:.0%}-{band.mfu_high:.0%})" if band.mfu_low else "")
                           + (f", {parts.band_source}" if parts.band_source else ""))

    return Estimate(
        flops=work.flops, flops_method=work.flops_method, gpu=acc.id, gpu_name=acc.name,
        num_gpus=num_gpus, precision=request.precision, peak_tflops=rate.peak_tflops,
        achieved_tflops_per_gpu=rate.achieved_tflops, mfu=rate.mfu, throughput_source=rate.source,
        wall_clock_days=hours / num_gpus / 24.0, gpu_hours=hours,
        price_usd_per_gpu_hour=usd_per_hour, price_source=price.source,
        cost_usd=hours * usd_per_hour if usd_per_hour is not None else None,
        energy_kwh=energy_kwh, pue=request.pue, electricity_usd_per_kwh=request.electricity_usd_per_kwh,
        energy_cost_usd=energy_cost, own_cost_usd=own_cost, range=band,
        model=work.model, params=work.params, active_params=work.active_params, tokens=work.tokens,
        samples=work.samples, epochs=work.epochs, dataset=work.dataset,
        plan=parts.plan, num_gpus_given=parts.num_gpus_given, seq_len=work.seq_len, flops_6nd=work.flops_6nd,
        flops_detailed=work.flops_detailed, min_gpus_to_fit=parts.min_gpus_to_fit,
        time_model="step" if step is not None else "flat",
        step_time_s=step.step_time_s if step else None,
        tokens_per_s=step.tokens_per_s if step else None,
        hfu=step.hfu if step else None,
        layout=step.layout.to_dict() if step else None,
        time_breakdown_s=dict(step.breakdown_s) if step else None,
        system=step.system.id if step else None,
        layouts=tuple(LayoutSummary(c.layout.to_dict(), c.step_time_s, c.mfu, c.memory_gb)
                      for c in step.ranked) if step else (),
        stack=asdict(step.stack) if step is not None and step.stack is not None else None,
        goodput=goodput, mfu_while_training=mfu_while_training, default_wall_clock_days=default_days, scope=request.scope or "pretrain",
        finetune=_finetune_dict(work.finetune),
        assumptions=tuple(assumptions), warnings=tuple(warnings),
    )


def _finetune_dict(spec: Any) -> dict[str, Any] | None:
    """The JSON of a fine-tune (estimator.model.finetune.FinetuneSpec), None for pre-training."""
    if spec is None:
        return None
    return {"method": spec.method, "lora_rank": spec.rank, "lora_targets": list(spec.targets),
            "trainable_params": spec.trainable_params, "frozen_weights_gb": spec.frozen_weight_bytes / 1e9}


__all__ = ["Estimate", "LayoutSummary", "Range", "SCHEMA_VERSION", "check_finite", "estimate"]
