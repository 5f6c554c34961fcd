"""``resolve(request, catalog)``: an :class:`~estimator.request.EstimateRequest` against the
catalogs, into typed parts: the workload, the accelerator, the throughput (with its kind), the
price, the device count and the answers to planning questions.

Planning inverts FLOPs = devices x seconds x achieved FLOP/s per device (Kaplan's 6ND for the
FLOPs): ``--deadline`` gives the devices, ``--budget`` the tokens, or with ``--chinchilla`` the
compute-optimal split D ~ 20 N (Hoffmann et al. 2022, arXiv 2203.15556), so C = 6 N D = 120 N^2.
Planning uses the flat time model (the rate does not depend on the device count there).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from estimator.catalog.records import Accelerator
from estimator.catalog.core import Catalog
from estimator.errors import CatalogError, InputError, UnknownNameError
from estimator.plan import Plan
from estimator.catalog.pricing import PriceChoice, resolve_price
from estimator.request import DEFAULT_GPU, EstimateRequest
from estimator.timing.throughput import (Throughput, ThroughputKind, datasheet_throughput, given_throughput, implied_throughput, peak_for, ported_throughput)
from estimator.vocab import FlopsMethod, TimeModel
from estimator.model.flops import CHINCHILLA_TOKENS_PER_PARAM
from estimator.workload import Workload, build_workload, model_size


def devices_for_deadline(flops: float, achieved_tflops: float, deadline_s: float) -> int:
    """Smallest device count that finishes ``flops`` within ``deadline_s`` at ``achieved_tflops`` each
    (perfect scaling assumed)."""
    needed = flops / (achieved_tflops * 1e12 * deadline_s)
    if not math.isfinite(needed) or needed > 1e9:
        raise InputError(f"the deadline needs about {needed:.3g} devices: more than any cluster; "
                         "allow more time or train less")
    return max(1, math.ceil(needed - 1e-9))


def chinchilla_for_flops(flops: float, tokens_per_param: float = CHINCHILLA_TOKENS_PER_PARAM) -> tuple[float, float]:
    """Compute-optimal (params, tokens) for ``flops``: D = r N and C = 6 N D, so N = sqrt(C / (6 r))."""
    params = math.sqrt(flops / (6.0 * tokens_per_param))
    return params, tokens_per_param * params


@dataclass(frozen=True, slots=True)
class Resolved:
    """The typed parts of a resolved request (see :func:`resolve`)."""

    workload: Workload
    accelerator: Accelerator
    throughput: Throughput
    price: PriceChoice
    num_gpus: int
    num_gpus_given: bool
    plan: Plan | None = None
    step: Any = None  # step.StepEstimate when the step model timed the run
    min_gpus_to_fit: int | None = None
    goodput: float = 1.0
    goodput_source: str = ""
    scope_factor: float = 1.0  # device-hours of all of training / of pre-training (--scope all)
    scope_source: str = ""
    band_source: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _check_calibration_device(record: Any, catalog: Catalog, file: str) -> None:
    """A calibration file's ``device.catalog_id`` must name a catalog accelerator (or be null):
    CatalogError naming the file and the field, with close matches, where it does not."""
    catalog_id = record.device.catalog_id
    if catalog_id is None:
        return
    try:
        catalog.accelerator(catalog_id)
    except UnknownNameError as exc:
        raise CatalogError(file, "device", "catalog_id", f"{exc} (a catalogs/gpus.yaml id, or null for a "
                                                          "device the catalog does not know)") from None


def _accelerator(request: EstimateRequest, catalog: Catalog, record: Any) -> Accelerator:
    if request.gpu is not None:
        return catalog.accelerator(request.gpu)
    if record is not None:
        from estimator.timing.measured import device_accelerator

        return device_accelerator(record, catalog)
    return catalog.accelerator(DEFAULT_GPU)


def _rate(request: EstimateRequest, acc: Accelerator, work: Workload | None, record: Any, num_gpus: int,
          warnings: list[str], size: Any = None) -> Throughput:
    """The throughput of the flat model (or of planning) for ``request``; ``size`` (a ModelSize, or the
    workload) picks the kind of run for the default utilisation."""
    if record is not None:
        from estimator.timing.measured import calibrated_throughput, measured_sample_rate

        if work is not None and work.samples is not None:  # the file timed this model's own training step
            rate = measured_sample_rate(record, work, acc, request.precision, num_gpus=num_gpus, warnings=warnings)
            if rate is not None:
                return rate
        rate, file_warnings, _ = calibrated_throughput(record, acc, request.precision, num_gpus=num_gpus,
                                                       model=work.model if work else None)
        warnings.extend(file_warnings)
        return rate
    size = size or work
    params = getattr(size, "params", None)
    active = getattr(size, "active_params", None)
    if request.measured_time_s is not None:
        from estimator.catalog.core import load_catalog

        measured = load_catalog().accelerator(request.measured_gpu)
        rate = ported_throughput(acc, request.precision, work.flops, measured=measured, seconds=request.measured_time_s,
                                 devices=request.measured_num_gpus or 1, params=params, active_params=active)
        if rate.mfu > 1:
            warnings.append(f"the measured time implies MFU {rate.mfu:.0%} on {measured.id}, above its dense "
                            f"{request.precision} peak: check the time, the epochs and the precision")
        return rate
    if request.tflops is not None:
        return given_throughput(acc, request.precision, request.tflops, params=params, active_params=active)
    return datasheet_throughput(acc, request.precision, mfu=request.mfu, params=params, active_params=active)


def resolve(request: EstimateRequest, catalog: Catalog) -> Resolved:
    """Resolve ``request``: names against the catalog, the workload, the throughput, the price, and
    the answers to ``--deadline`` and ``--budget``. Raises GpucostError subclasses."""

    warnings: list[str] = []
    record = None
    if request.calibration is not None:
        from estimator.records.calibration import load_calibration

        record = load_calibration(request.calibration)
        _check_calibration_device(record, catalog, str(request.calibration))
    acc = _accelerator(request, catalog, record)
    peak_for(acc, request.precision)
    price = resolve_price(acc, price=request.price, provider=request.provider, catalog=catalog)

    if record is not None and request.architecture_known:  # the model's own measured step counts detailed FLOPs
        from estimator.timing.measured import measured_model_step

        step_seq = measured_model_step(record, model_size(request, catalog).name, request.precision)
        if step_seq is not None and (request.num_gpus or 1) == 1 and request.deadline_s is None:
            request = request.with_(flops_method=FlopsMethod.DETAILED, seq_len=request.seq_len or step_seq)

    plan = None
    num_gpus = request.num_gpus or 1
    if request.budget_usd is not None:
        size = None if request.chinchilla else model_size(request, catalog)
        rate = _rate(request, acc, None, record, num_gpus if request.deadline_s is None else 2, warnings, size)
        if price.usd_per_gpu_hour is None:
            raise InputError(f"--budget needs a price for {acc.id}: give --price USD per device-hour or --provider")
        hours = request.budget_usd / price.usd_per_gpu_hour
        compute = hours * 3600.0 * rate.achieved_tflops * 1e12
        if request.chinchilla:
            n, d = chinchilla_for_flops(compute)
            work = Workload(flops=compute, tokens=d, params=n, active_params=n,
                            flops_method="6 x params x tokens, compute-optimal D = 20 N (Hoffmann et al. 2022)")
        else:
            work = build_workload(request, catalog, tokens=compute / (6.0 * size.active_params))
        questions: dict[str, Any] = dict(budget_usd=request.budget_usd, budget_gpu_hours=hours, budget_flops=compute,
                                         params=work.params, tokens=work.tokens)
        if rate.band_tflops is not None and not request.chinchilla:
            low, high = (work.tokens * t / rate.achieved_tflops for t in rate.band_tflops)
            questions.update(tokens_low=low, tokens_high=high)
        rate = dataclasses.replace(rate, band_tflops=None)  # the budget fixes the cost; the tokens vary
        plan = questions
    else:
        work = build_workload(request, catalog)
        rate = None
    if work.tokens_assumed:
        warnings.append(work.tokens_assumed)
    if request.deadline_s is not None:
        rate = rate or _rate(request, acc, work, record, 2, warnings)
        num_gpus = devices_for_deadline(work.flops, rate.achieved_tflops, request.deadline_s)
        plan = {**(plan or {}), "deadline_days": request.deadline_s / 86400.0, "num_gpus_needed": num_gpus}
    if plan is not None:
        question = " and ".join(q for q, on in (("deadline", request.deadline_s is not None),
                                                 ("budget", request.budget_usd is not None)) if on)
        plan = Plan(question=question, **plan)

    step = None
    # a calibration file times the run with the step model when it measured the fabric (--comm) and
    # the run spans devices; a single device takes the file's own training step (the flat model)
    measured_fabric = record is not None and bool(record.collectives) and num_gpus > 1
    use_step = (request.time_model is TimeModel.STEP or (
        request.time_model is None and work.architecture is not None and plan is None
        and (record is None or measured_fabric)
        and request.mfu is None and request.tflops is None and request.gpu_hours is None
        and request.measured_time_s is None))
    if use_step and work.architecture is None:
        raise InputError(f"the step-time model needs an architecture; {work.model!r} has none "
                         "(pass its config.json with --hf-config, or --time-model flat)")
    if use_step and plan is not None:
        raise InputError("--deadline and --budget use the flat time model; drop --time-model step")
    band_source = ""
    scope_factor, scope_source = 1.0, ""
    if request.scope == "all":
        from estimator.timing.utilisation import SCOPE_OVERHEAD, SCOPE_OVERHEAD_SOURCE

        scope_factor, scope_source = SCOPE_OVERHEAD, SCOPE_OVERHEAD_SOURCE
    if request.gpu_hours is not None:  # hours that cover all of training hold the pre-training ones
        rate = implied_throughput(acc, request.precision, work.flops, request.gpu_hours / scope_factor)
    elif use_step:
        from estimator.timing.step import step_estimate

        step = step_estimate(request, work, acc, catalog, num_gpus=num_gpus, calibration=record)
        achieved = work.flops * step.tokens_per_s / work.tokens / num_gpus / 1e12
        peak = peak_for(acc, request.precision)
        rate = Throughput(achieved, peak, f"step-time model, layout {step.layout.describe()} on {step.system.id}",
                          ThroughputKind.STEP, (achieved / (1 + step.error_band), achieved / (1 - step.error_band)))
        band_source = f"the step model's validation error band (+-{step.error_band:.0%}, `gpucost validate`)"
        warnings.extend(step.warnings)
    elif rate is None:
        rate = _rate(request, acc, work, record, num_gpus, warnings)

    min_fit = None
    if work.architecture is not None and step is None:
        min_fit = _min_devices_to_fit(work, acc, warnings)
        if min_fit is not None and num_gpus < min_fit:
            warnings.append(f"the run does not fit {num_gpus} x {acc.id}: it needs at least {min_fit} devices of "
                            f"{acc.memory_gb:g} GB even with ZeRO-3, full recompute and flash attention "
                            f"(see `gpucost models show {work.model} --gpu {acc.id} --zero-stage 3 --recompute full "
                            f"--flash-attention --sequence-parallel`)")
    goodput, goodput_source = goodput_for(request, rate)
    return Resolved(workload=work, accelerator=acc, throughput=rate, price=price, num_gpus=num_gpus,
                    num_gpus_given=request.num_gpus is not None or request.deadline_s is not None, plan=plan,
                    step=step, min_gpus_to_fit=min_fit, goodput=goodput, goodput_source=goodput_source,
                    scope_factor=scope_factor, scope_source=scope_source, band_source=band_source,
                    warnings=tuple(warnings))


def goodput_for(request: EstimateRequest, rate: Throughput) -> tuple[float, str]:
    """(share of wall-clock that trains, where it came from): ``--goodput``; else the published
    default (:data:`estimator.timing.utilisation.DEFAULT_GOODPUT`) for the default MFU and the step model,
    whose rates are while training; a given ``--tflops``/``--mfu``, a calibration and reported
    ``--gpu-hours`` are taken as they are (goodput 1 unless ``--goodput`` is given)."""
    from estimator.timing.utilisation import DEFAULT_GOODPUT, GOODPUT_SOURCES

    if rate.kind is ThroughputKind.IMPLIED:
        return 1.0, ""  # reported hours already include the lost time
    if request.goodput is not None:
        return request.goodput, "given (--goodput)"
    if rate.kind in (ThroughputKind.DATASHEET, ThroughputKind.STEP):
        return DEFAULT_GOODPUT, f"published default: {GOODPUT_SOURCES[0][0]}"
    return 1.0, ""


def _min_devices_to_fit(work: Workload, acc: Accelerator, warnings: list[str]) -> int | None:
    """Fewest devices that hold the run's training memory in the most frugal common layout
    (ZeRO-3, full recompute, flash attention, sequence parallel, micro-batch 1): a lower bound."""
    from estimator.model.memory import min_devices

    try:
        return min_devices(work.architecture, acc.memory_gb, seq_len=work.seq_len, zero_stage=3, recompute="full",
                           flash_attention=True, sequence_parallel=True).num_devices
    except InputError as exc:
        warnings.append(f"memory check: {exc}")
        return None


__all__ = ["CHINCHILLA_TOKENS_PER_PARAM", "Resolved", "chinchilla_for_flops", "devices_for_deadline", "resolve"]
