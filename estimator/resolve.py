"""``resolve(request, catalog)``: an :class:`~estimator.request.EstimateRequest` against the
catalogs, into typed parts: the workload, the accelerator, the throughput (with its kind), the
price, the device count and the answers to planning questions.

Planning answers ``--deadline`` with the devices and ``--budget`` with the tokens (or with
``--chinchilla`` the compute-optimal split D ~ 20 N, Hoffmann et al. 2022, arXiv 2203.15556, so
C = 6 N D = 120 N^2), through the same time model as a plain estimate: with a known architecture
the step model (the device count is searched, since the rate per device depends on it), else the
flat one (FLOPs = devices x seconds x achieved FLOP/s per device). Both count goodput and scope,
so the answer's wall-clock is within the deadline and its cost within the budget.

Without ``--num-gpus``, a model with an architecture is answered on the fewest devices on which a
layout fits memory (:func:`estimator.timing.search.fewest_devices`).
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
from estimator.timing.goodput import DEFAULT_GOODPUT, GOODPUT_SOURCES
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
    devices_source: str = ""  # why this device count, when the request did not give it


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

        if work is not None:  # the file timed this model's own training step (torch_model)
            rate = measured_sample_rate(record, work, acc, request.precision, num_gpus=num_gpus, warnings=warnings)
            if rate is not None:
                return rate
        rate, file_warnings, _ = calibrated_throughput(record, acc, request.precision, num_gpus=num_gpus,
                                                       model=work.model if work else None, work=work)
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
    in_samples = work is not None and work.samples is not None and work.architecture is None
    return datasheet_throughput(acc, request.precision, mfu=request.mfu, params=params, active_params=active,
                                in_samples=in_samples)


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

    if record is not None and request.architecture_known and request.seq_len is None:
        from estimator.timing.measured import profiled_seq_len  # the user's own model, timed at its length

        torch_seq = profiled_seq_len(record, model_size(request, catalog), request.precision)
        if torch_seq is not None:
            request = request.with_(seq_len=torch_seq)
    if record is not None and request.architecture_known:  # the model's own measured step counts detailed FLOPs
        from estimator.timing.measured import measured_model_step

        step_seq = measured_model_step(record, model_size(request, catalog).name, request.precision)
        if step_seq is not None and (request.num_gpus or 1) == 1 and request.deadline_s is None:
            request = request.with_(flops_method=FlopsMethod.DETAILED, seq_len=request.seq_len or step_seq)

    num_gpus = request.num_gpus or 1
    devices_source = ""
    # the step model times the run when the architecture is known and nothing fixes the rate; with a
    # calibration file when the run spans devices (its measured compute per device, the fabric it
    # measured with --comm or the system's): a single device takes the file's own training step (the
    # flat model), and so does a device with no datasheet peak or system (a CPU)
    rate_given = (request.mfu is not None or request.tflops is not None or request.gpu_hours is not None
                  or request.measured_time_s is not None)
    calibrated_scale = record is not None and acc.peak_for(request.precision) is not None
    step_wanted = request.time_model is TimeModel.STEP or (
        request.time_model is None and request.architecture_known and not rate_given
        and (record is None or calibrated_scale))
    scope_factor, scope_source = 1.0, ""
    if request.scope == "all":
        from estimator.timing.utilisation import SCOPE_OVERHEAD, SCOPE_OVERHEAD_SOURCE

        scope_factor, scope_source = SCOPE_OVERHEAD, SCOPE_OVERHEAD_SOURCE

    if request.budget_usd is not None:
        size = None if request.chinchilla else model_size(request, catalog)
        # a provisional workload (the tokens are what the budget answers) for the layout and step
        work = build_workload(request, catalog, tokens=1e9) if size is not None and size.architecture else None
    else:
        work = build_workload(request, catalog)
    arch_known = work is not None and work.architecture is not None
    if request.time_model is TimeModel.STEP and not arch_known:
        raise InputError(f"the step-time model needs an architecture; {work.model if work else 'the model'!r} has "
                         "none (pass its config.json with --hf-config, or --time-model flat)")
    if arch_known and request.num_gpus is None and request.deadline_s is None:
        num_gpus = _fewest(request, work, acc, catalog, warnings)
        devices_source = ("the fewest on which a layout fits memory (powers of two within a node, whole nodes "
                          "above one; set --num-gpus)")
    use_step = step_wanted and arch_known and (
        record is None or request.time_model is TimeModel.STEP
        or (calibrated_scale and (request.deadline_s is not None or num_gpus > 1)))

    plan: dict[str, Any] | None = None
    step = None
    rate = None
    if use_step:
        from estimator.timing.search import step_estimate

        goodput = request.goodput if request.goodput is not None else DEFAULT_GOODPUT
        overhead = scope_factor / goodput  # wall-clock per second of training

        def timed(n: int, w: Workload) -> Any:
            return step_estimate(request, w, acc, catalog, num_gpus=n, calibration=record)

        if request.budget_usd is not None:
            if price.usd_per_gpu_hour is None:
                raise InputError(f"--budget needs a price for {acc.id}: give --price USD per device-hour or --provider")
            hours = request.budget_usd / price.usd_per_gpu_hour
            if request.deadline_s is not None:
                # spending the budget takes its device-hours whatever the rate: wall-clock = hours / devices,
                # so the deadline needs hours / deadline devices (and at least those that hold the run)
                num_gpus, step = _devices_for_budget_and_deadline(request, work, acc, catalog, hours, timed, warnings)
                devices_source = "the fewest that spend the budget within the deadline (whole nodes above one node)"
            else:
                step = timed(num_gpus, work)
            # cost = tokens / tokens_per_s x overhead x devices x price: the tokens that spend the budget
            tokens = hours * 3600.0 * step.tokens_per_s / (num_gpus * overhead)
            work = build_workload(request, catalog, tokens=tokens)
            plan = dict(budget_usd=request.budget_usd, budget_gpu_hours=hours, budget_flops=work.flops,
                        params=work.params, tokens=work.tokens, tokens_low=tokens / (1 + step.error_band),
                        tokens_high=tokens / (1 - step.error_band))
            if request.deadline_s is not None:
                plan.update(deadline_days=request.deadline_s / 86400.0, num_gpus_needed=num_gpus)
        elif request.deadline_s is not None:
            num_gpus, step = _devices_for_deadline_step(request, work, acc, catalog, overhead, timed, warnings)
            plan = {"deadline_days": request.deadline_s / 86400.0, "num_gpus_needed": num_gpus}
            devices_source = "the fewest that finish within the deadline (whole nodes above one node)"
        if step is None:
            step = timed(num_gpus, work)
    else:
        if request.budget_usd is not None:
            size = size if size is not None or request.chinchilla else model_size(request, catalog)
            rate = _rate(request, acc, None, record, num_gpus if request.deadline_s is None else 2, warnings, size)
            if price.usd_per_gpu_hour is None:
                raise InputError(f"--budget needs a price for {acc.id}: give --price USD per device-hour or --provider")
            goodput = goodput_for(request, rate)[0]
            hours = request.budget_usd / price.usd_per_gpu_hour
            # the device-hours include lost time (goodput) and the rest of training (--scope all)
            compute = hours * 3600.0 * rate.achieved_tflops * 1e12 * goodput / scope_factor
            if request.chinchilla:
                n, d = chinchilla_for_flops(compute)
                work = Workload(flops=compute, tokens=d, params=n, active_params=n,
                                flops_method="6 x params x tokens, compute-optimal D = 20 N (Hoffmann et al. 2022)")
            else:
                work = build_workload(request, catalog, tokens=compute / (6.0 * size.active_params))
            questions: dict[str, Any] = dict(budget_usd=request.budget_usd, budget_gpu_hours=hours,
                                             budget_flops=compute, params=work.params, tokens=work.tokens)
            if rate.band_tflops is not None and not request.chinchilla:
                low, high = (work.tokens * t / rate.achieved_tflops for t in rate.band_tflops)
                questions.update(tokens_low=low, tokens_high=high)
            rate = dataclasses.replace(rate, band_tflops=None)  # the budget fixes the cost; the tokens vary
            plan = questions
        if request.deadline_s is not None:
            rate = rate or _rate(request, acc, work, record, 2, warnings)
            goodput = goodput_for(request, rate)[0]
            num_gpus = devices_for_deadline(work.flops * scope_factor / goodput, rate.achieved_tflops,
                                            request.deadline_s)
            if work.architecture is not None:  # at least the devices that hold it
                num_gpus = max(num_gpus, _fewest(request, work, acc, catalog, warnings))
            num_gpus = _whole_nodes(request, acc, catalog, num_gpus)
            plan = {**(plan or {}), "deadline_days": request.deadline_s / 86400.0, "num_gpus_needed": num_gpus}
    if work.tokens_assumed:
        warnings.append(work.tokens_assumed)
    if plan is not None:
        question = " and ".join(q for q, on in (("deadline", request.deadline_s is not None),
                                                 ("budget", request.budget_usd is not None)) if on)
        plan = Plan(question=question, **plan)

    band_source = ""
    if request.gpu_hours is not None:  # hours that cover all of training hold the pre-training ones
        rate = implied_throughput(acc, request.precision, work.flops, request.gpu_hours / scope_factor)
    elif step is not None:
        achieved = work.flops * step.tokens_per_s / work.tokens / num_gpus / 1e12
        peak = peak_for(acc, request.precision)
        rate = Throughput(achieved, peak, f"step-time model, layout {step.layout.describe()} on {step.system.id}",
                          ThroughputKind.STEP, (achieved / (1 + step.error_band), achieved / (1 - step.error_band)))
        band_source = f"the step model's validation error band (+-{step.error_band:.0%}, `gpucost validate`)"
        warnings.extend(step.warnings)
    elif rate is None:
        rate = _rate(request, acc, work, record, num_gpus, warnings)

    if (rate.kind is ThroughputKind.DATASHEET and work.samples is not None and work.architecture is None
            and work.model not in {r.model for r in catalog.sample_runs}):
        warnings.append(f"no published runs of {work.model or 'this model'}'s kind: the default is the convnet one "
                        "(ResNet-50 runs, catalogs/sample_runs.yaml); a small network is often bound by kernel launches "
                        "and slower. Time it on your device with `gpucost profile --torch-model ...` and --calibration")
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
                    devices_source=devices_source,
                    step=step, min_gpus_to_fit=min_fit, goodput=goodput, goodput_source=goodput_source,
                    scope_factor=scope_factor, scope_source=scope_source, band_source=band_source,
                    warnings=tuple(warnings))


def goodput_for(request: EstimateRequest, rate: Throughput) -> tuple[float, str]:
    """(share of wall-clock that trains, where it came from): ``--goodput``; else the published
    default (:data:`estimator.timing.goodput.DEFAULT_GOODPUT`) for the default MFU and the step model,
    whose rates are while training; a given ``--tflops``/``--mfu``, a calibration and reported
    ``--gpu-hours`` are taken as they are (goodput 1 unless ``--goodput`` is given)."""
    if rate.kind is ThroughputKind.IMPLIED:
        return 1.0, ""  # reported hours already include the lost time
    if request.goodput is not None:
        return request.goodput, "given (--goodput)"
    if rate.kind in (ThroughputKind.DATASHEET, ThroughputKind.STEP):
        return DEFAULT_GOODPUT, f"published default: {GOODPUT_SOURCES[0][0]}"
    return 1.0, ""


def _fewest(request: EstimateRequest, work: Workload, acc: Accelerator, catalog: Catalog, warnings: list[str]) -> int:
    """The fewest devices on which a layout of ``work`` fits (:func:`estimator.timing.search.fewest_devices`);
    for an accelerator without a system in the catalog, the memory model's lower bound."""
    from estimator.timing.search import fewest_devices

    try:
        catalog.system_for(acc.id, request.system)
    except InputError:
        return _min_devices_to_fit(work, acc, []) or 1  # its own warning comes with the memory check below
    return fewest_devices(request, work, acc, catalog)


def _devices_for_deadline_step(request: EstimateRequest, work: Workload, acc: Accelerator, catalog: Catalog,
                               overhead: float, timed: Any, warnings: list[str]) -> tuple[int, Any]:
    """(devices, their step estimate): the fewest planned devices (powers of two within a node, whole
    nodes above it) whose wall-clock by the step model, goodput and scope included, is within the
    deadline: from the fewest that hold the run, doubling, then bisecting over whole nodes
    (:func:`estimator.timing.search.search_devices`)."""
    from estimator.timing.search import MAX_PLANNED_DEVICES, fewest_devices, search_devices

    system = catalog.system_for(acc.id, request.system)
    per_node = system.scale_up_group
    first = fewest_devices(request, work, acc, catalog)
    results: dict[int, Any] = {}

    def wall_s(n: int) -> float:
        if n not in results:
            try:
                results[n] = timed(n, work)
            except InputError:
                results[n] = None
        step = results[n]
        return math.inf if step is None else work.tokens / step.tokens_per_s * overhead

    def meets(n: int) -> bool:
        return wall_s(n) <= request.deadline_s

    found = search_devices(per_node, meets, first)
    if found is not None and found > per_node:
        # the step model's rate is not monotone in the devices (a count that splits the batch and the
        # layers well can beat a larger one), so the node counts of the form 2^a 3^b between the last
        # power of two that missed and the answer are tried too, fewest first
        below = max((n for n in results if n <= found // 2 and not meets(n)), default=first)
        for nodes in _smooth_between(below // per_node, found // per_node):
            if meets(nodes * per_node):
                found = nodes * per_node
                break
    if found is None:
        timed_ok = {n: wall_s(n) for n, step in results.items() if step is not None}
        best = min(timed_ok, key=timed_ok.get) if timed_ok else None
        fastest = (f"; the fastest found is {timed_ok[best] / 86400:,.3g} days on {best:,} devices (a global batch "
                   f"of {results[best].layout.global_batch:,} sequences bounds the data parallelism: --global-batch)"
                   if best is not None else "")
        raise InputError(f"the deadline of {request.deadline_s / 86400:.3g} days cannot be met with up to "
                         f"{MAX_PLANNED_DEVICES:,} x {acc.id}{fastest}; allow more time or train less")
    return found, results[found]


def _devices_for_budget_and_deadline(request: EstimateRequest, work: Workload, acc: Accelerator, catalog: Catalog,
                                     hours: float, timed: Any, warnings: list[str]) -> tuple[int, Any]:
    """(devices, their step estimate) for a budget of ``hours`` device-hours spent within the deadline:
    the fewest planned devices, at least those that hold the run, with hours / devices <= deadline."""
    from estimator.timing.search import MAX_PLANNED_DEVICES, device_counts, fewest_devices

    per_node = catalog.system_for(acc.id, request.system).scale_up_group
    needed = max(fewest_devices(request, work, acc, catalog), math.ceil(hours * 3600.0 / request.deadline_s - 1e-9))
    for n in device_counts(per_node, needed):
        try:
            return n, timed(n, work)
        except InputError:
            continue  # no layout splits this count: the next one
    raise InputError(f"the budget cannot be spent within the deadline on up to {MAX_PLANNED_DEVICES:,} x {acc.id}")


def _smooth_between(low: int, high: int) -> list[int]:
    """The numbers 2^a 3^b strictly between ``low`` and ``high``, ascending."""
    out = []
    power3 = 1
    while power3 < high:
        value = power3
        while value < high:
            if value > low:
                out.append(value)
            value *= 2
        power3 *= 3
    return sorted(out)


def _whole_nodes(request: EstimateRequest, acc: Accelerator, catalog: Catalog, num_gpus: int) -> int:
    """``num_gpus`` rounded up to a planned count (a power of two within a node, whole nodes above
    one) on the accelerator's system; as it is when the catalog has no system for it."""
    from estimator.timing.search import device_counts

    try:
        per_node = catalog.system_for(acc.id, request.system).scale_up_group
    except InputError:
        return num_gpus
    return next(device_counts(per_node, num_gpus), num_gpus)


def _min_devices_to_fit(work: Workload, acc: Accelerator, warnings: list[str]) -> int | None:
    """Fewest devices that hold the run's training memory in the most frugal common layout
    (ZeRO-3, full recompute, flash attention, sequence parallel, micro-batch 1): a lower bound."""
    from estimator.model.memory import min_devices

    try:
        return min_devices(work.architecture, acc.memory_gb, seq_len=work.seq_len, zero_stage=3, recompute="full",
                           flash_attention=True, sequence_parallel=True, finetune=work.finetune).num_devices
    except InputError as exc:
        warnings.append(f"memory check: {exc}")
        return None


__all__ = ["CHINCHILLA_TOKENS_PER_PARAM", "Resolved", "chinchilla_for_flops", "devices_for_deadline", "resolve"]
