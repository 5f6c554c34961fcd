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
import math
from dataclasses import dataclass
from typing import Any

from estimator.records.calibration import BENCHMARK_VERSION, Calibration, Measurement
from estimator.catalog.records import Accelerator
from estimator.catalog.core import Catalog
from estimator.errors import InputError
from estimator.numbers import count
from estimator.records.torch_model import TorchModelRecord
from estimator.timing.layout import Layout
from estimator.timing.roofline import shape_of
from estimator.timing.step import time_layout
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
    today: _dt.date | None = None, work: Any = None,
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
        raise no_measurement(record, precision, work)

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


MATCH_REL_TOL = 2e-3  # trainable parameters: the architecture's count and the file's agree within this
FLOPS_REL_TOL = 1e-5  # the file keeps 6 significant digits (5e-6): FLOPs per sample agree within this
PARAMS_ONLY_REL_TOL = 0.01  # --params gives a rounded size ("1.24B"): the file's count within 1%


@dataclass(frozen=True, slots=True)
class TorchModelMatch:
    """How a calibration file's ``torch_model`` section matches the estimated model.

    ``tokens_per_sample`` is the sequence length of the profiled samples when the architecture is
    known (solved from the file's forward FLOPs per sample, which FlopCounterMode counts as the
    architecture's matmuls: ``forward(S) = a S + b S^2``, the projections, FFN and head linear in S,
    the attention scores quadratic, counted over the full ``S x S`` matrix as PyTorch's FLOP counter
    does for ``scaled_dot_product_attention``), None when it matched by name or by parameter count
    only. ``how`` says it in one line."""

    section: TorchModelRecord
    tokens_per_sample: int | None
    how: str


def _forward_flops_per_sample(arch: Any, seq_len: int, *, scores: bool = True) -> float:
    from estimator.model.flops import flops_per_token

    forward = flops_per_token(arch, seq_len)
    return (forward.forward - (0.0 if scores else forward.breakdown.get("attention_scores", 0.0))) * seq_len


def sequence_length_of(arch: Any, forward_flops_per_sample: float) -> tuple[int, bool] | None:
    """(the sequence length ``S``, whether the attention scores were counted) whose forward FLOPs
    of ``arch`` are the file's ``forward_flops_per_sample`` within ``FLOPS_REL_TOL``, or None.

    PyTorch's FlopCounterMode (torch/utils/flop_counter.py) counts the attention scores over the
    full ``S x S`` matrix where it has a formula for the kernel (the CUDA flash, memory-efficient
    and cuDNN ``scaled_dot_product_attention`` kernels, or plain matmuls): ``F = a S + b S^2`` with
    ``a + b = forward(1)`` and ``2a + 4b = forward(2)``. It has none for the CPU's fused kernel
    (``_scaled_dot_product_flash_attention_for_cpu``), which then counts nothing: ``F = a S``."""
    if forward_flops_per_sample <= 0:
        return None
    f1, f2 = _forward_flops_per_sample(arch, 1), _forward_flops_per_sample(arch, 2)
    b = (f2 - 2 * f1) / 2
    a = f1 - b
    full = forward_flops_per_sample / a if b <= 0 else (-a + math.sqrt(a * a + 4 * b * forward_flops_per_sample)) / (2 * b)
    linear = forward_flops_per_sample / _forward_flops_per_sample(arch, 1, scores=False)
    for root, scores in ((full, True), (linear, False)):
        seq_len = round(root)
        if seq_len < 1:
            continue
        modelled = _forward_flops_per_sample(arch, seq_len, scores=scores)
        if abs(modelled - forward_flops_per_sample) <= FLOPS_REL_TOL * forward_flops_per_sample:
            return seq_len, scores
    return None


def _file_model(section: TorchModelRecord) -> str:
    return (f"torch_model {section.id} ({count(section.params)} parameters, "
            f"{section.forward_flops_per_sample:.4g} forward FLOPs per sample)")


def match_torch_model(record: Calibration, work: Any) -> tuple[TorchModelMatch | None, str]:
    """(the match, "") when the file's ``torch_model`` is the estimated model, else (None, why not,
    one phrase naming what the file holds and what the estimate asks for; "" when the file has no
    such section). With an architecture (``--hf-config``, a catalog model that has one): equal
    trainable parameters (the architecture's count) and forward FLOPs per sample those of a whole
    sequence length of its layers (:func:`sequence_length_of`); without one: the catalog model's id
    (workloads in samples), or ``--params`` within 1% of the file's count."""
    if not record.torch_model:
        return None, ""
    section = TorchModelRecord.from_dict(record.torch_model)
    holds = _file_model(section)
    arch = getattr(work, "architecture", None)
    name = getattr(work, "model", None) or getattr(work, "name", None)  # a Workload or a ModelSize
    params = getattr(work, "params", None)
    if arch is not None:
        from estimator.model.params import count_params

        counted = count_params(arch).total
        asked = f"{name or 'the model'} ({count(counted)} parameters)"
        if abs(counted - section.params) > MATCH_REL_TOL * max(counted, section.params):
            return None, f"the calibration file holds {holds}, the estimate is for {asked}"
        solved = sequence_length_of(arch, section.forward_flops_per_sample)
        if solved is None:
            return None, (f"the calibration file holds {holds}, the estimate is for {asked}: the parameters agree, "
                          f"but no sequence length of {name or 'its'} layers gives those FLOPs (another shape)")
        seq_len, scores = solved
        return TorchModelMatch(section, seq_len, (
            f"matched to {name or 'the model'}'s architecture: the same {count(section.params)} parameters, and "
            f"{section.forward_flops_per_sample:.4g} forward FLOPs per sample = {count(seq_len)} tokens of its layers"
            + ("" if scores else " (attention scores not counted: PyTorch's FLOP counter has no formula for the CPU "
                                 "attention kernel)"))), ""
    if name is not None:
        if name == section.id:
            return TorchModelMatch(section, None, f"{section.id} by name"), ""
        return None, f"the calibration file holds {holds}, the estimate is for {name}"
    if params is not None:
        if abs(params - section.params) <= PARAMS_ONLY_REL_TOL * section.params:
            return TorchModelMatch(section, None, (
                f"{section.id} by parameter count only ({count(section.params)} within 1% of --params; "
                "--hf-config gives the shapes and the measured tokens/s)")), ""
        return None, f"the calibration file holds {holds}, the estimate is for {count(params)} parameters"
    return None, f"the calibration file holds {holds}, the estimate gives only FLOPs"


def profiled_seq_len(record: Calibration, size: Any, precision: str) -> int | None:
    """The sequence length of the file's ``torch_model`` samples when that section is ``size``'s
    architecture (a ModelSize or a Workload) measured at ``precision``: the estimate's default
    ``--seq-len``, so that it asks what was measured. None otherwise."""
    match, _ = match_torch_model(record, size)
    if match is None or match.tokens_per_sample is None or match.section.result(precision) is None:
        return None
    return match.tokens_per_sample


def measured_sample_rate(record: Calibration, work: Any, acc: Accelerator, precision: str, *, num_gpus: int,
                         warnings: list[str]) -> Throughput | None:
    """The throughput of ``work`` from the file's own training step of that model (``gpucost
    profile --torch-model``), when the file's ``torch_model`` is the workload's model
    (:func:`match_torch_model`), as TFLOP/s of the workload's own FLOP count, so that the time is
    what the measured rate gives:

    - an architecture: tokens / (samples per second x the profiled sequence length ``S0``), at the
      workload's sequence length ``S`` each token costing the detailed FLOPs per token at ``S`` over
      those at ``S0`` as much time (the same FLOP rate);
    - a catalog model counted in samples: samples / samples per second;
    - ``--params`` only: the file's FLOP rate (FlopCounterMode's count) applied to 6ND.

    On several devices this flat rate assumes perfect scaling; with an architecture the step model
    (estimator/timing/step.py) is used instead. None when the file has no such measurement."""
    match, _ = match_torch_model(record, work)
    if match is None:
        return None
    from estimator.records.torch_model import measured_samples_per_s

    measured = measured_samples_per_s(record.to_dict(), match.section.id, precision)
    if measured is None:
        return None
    rate, info = measured
    warnings.extend(info["warnings"])
    if record.device.catalog_id and record.device.catalog_id != acc.id:
        warnings.append(f"the calibration file measured {record.device.catalog_id}, the estimate is for {acc.id}")
    low, high = info["band_samples_per_s"]
    scaling = ", perfect scaling to the devices" if num_gpus > 1 else ""
    if match.tokens_per_sample is not None and work.tokens:
        seq0 = match.tokens_per_sample
        tokens_per_s = rate * seq0
        per_token = work.flops / work.tokens  # the workload's convention, so MFU compares with others
        stretch = 1.0
        note = ""
        if work.seq_len and work.seq_len != seq0:
            from estimator.model.flops import flops_per_token

            stretch = flops_per_token(work.architecture, work.seq_len).train_model /                 flops_per_token(work.architecture, seq0).train_model
            note = (f"; at sequence length {work.seq_len:,} each token does {stretch:.3g} x the FLOPs of one at "
                    f"{seq0:,}, at the same FLOP rate")
        scale = per_token / stretch / 1e12
        source = (info["source"] + f": {count(rate)} samples/s x {seq0:,} tokens = {count(tokens_per_s)} tokens/s "
                  f"({match.how}){note}{scaling}")
        return Throughput(tokens_per_s * scale, acc.peak_for(precision), source, ThroughputKind.CALIBRATED,
                          (min(low, rate) * seq0 * scale, max(high, rate) * seq0 * scale))
    if work.samples is not None and match.tokens_per_sample is None and work.architecture is None:
        scale = work.flops / work.samples / 1e12
        source = info["source"] + f": {count(rate)} samples/s" + scaling
    else:  # --params: no shapes, the file's FLOP rate
        scale = match.section.flops_per_sample / 1e12
        source = (info["source"] + f": {rate * scale:.4g} TFLOP/s of FlopCounterMode's count ({match.how})"
                  + scaling)
    return Throughput(rate * scale, acc.peak_for(precision), source, ThroughputKind.CALIBRATED,
                      (min(low, rate) * scale, max(high, rate) * scale))


@dataclass(frozen=True, slots=True)
class MeasuredStep:
    """One device's measured training step of the estimated model: ``micro_batch`` sequences of
    ``seq_len`` tokens in ``step_s`` seconds (forward, backward and the optimizer), and where it
    comes from. The step model (estimator/timing/step.py) times the same micro-batch on one device
    and scales its compute by measured / modelled."""

    seq_len: int
    micro_batch: int
    step_s: float
    source: str


def measured_device_step(record: Calibration, work: Any, precision: str) -> MeasuredStep | None:
    """The file's own training step of ``work``'s model at ``precision`` on one device: the
    ``torch_model`` section when it is that architecture (:func:`match_torch_model`; samples/s, the
    rate of back-to-back steps), else the ``model`` section of that model (its median step); None
    when the file has neither."""
    if getattr(work, "architecture", None) is None:
        return None
    match, _ = match_torch_model(record, work)
    if match is not None and match.tokens_per_sample is not None:
        result = match.section.result(precision)
        if result is not None:
            batch = match.section.batch_size
            return MeasuredStep(match.tokens_per_sample, batch, batch / float(result.samples_per_s),
                                f"torch_model {match.section.id} {precision}, batch {batch} x "
                                f"{match.tokens_per_sample:,} tokens ({match.how})")
    step = _model_step(record, work.model, precision)
    if step is not None and step.median_tflops:
        model = record.model
        flops = flops_per_token_of(record, precision) * model.micro_batch * model.seq_len
        return MeasuredStep(model.seq_len, model.micro_batch, flops / (step.median_tflops * 1e12),
                            f"{model.id} training step {precision} (gpucost's layers, median), micro-batch "
                            f"{model.micro_batch} x {model.seq_len:,} tokens")
    return None


def measured_compute_scale(record: Calibration, work: Any, acc: Accelerator, precision: str, links: Any, *,
                           e_max: float, flash_attention: bool, constants: Any,
                           stack: Any = None) -> tuple[float, str, list[str]]:
    """(the factor on the step model's per-device work, the assumption line, warnings) for a run
    timed by the step model with a calibration file: the file's own training step of the model on
    one device (:func:`measured_device_step`) / the step model's time for that same micro-batch
    and sequence length on one device (no parallelism, so no communication: compute, elementwise
    work and the optimizer). Every layout's per-device work is scaled by it; its communication and
    pipeline bubble are modelled as before (on the file's measured links where it has a
    ``collectives`` section). A file without that model's step: 1 (its best matmul already sets
    the matmul rate, :func:`estimator.timing.roofline.matmul_fraction`). ``stack`` is the request's
    training stack, so that the ratio corrects what the stack's model leaves out, not the stack.
    Raises InputError when the file measured nothing at ``precision``."""

    warnings: list[str] = []
    measured = measured_device_step(record, work, precision)
    if measured is None:
        matmul = record.matmul.get(precision)
        if matmul is None or not matmul.measured:
            mlp = record.mlp.get(precision)
            if mlp is None or not mlp.measured:
                raise no_measurement(record, precision, work)
            warnings.append(f"the calibration file has no {precision} matmul or training step of "
                            f"{work.model or 'this model'}: the step model's matmul rate is the published one")
        return 1.0, "", warnings
    if record.device.catalog_id != acc.id:
        warnings.append(f"the calibration file measured {record.device.catalog_id or record.device.name}, the "
                        f"estimate is for {acc.id}: its step scales the model of {acc.id}")
    one = Layout(1, 1, 1, micro_batch=measured.micro_batch, global_batch=measured.micro_batch, zero_stage=0)
    modelled = time_layout(shape_of(work.architecture, measured.seq_len), one, acc, precision, links,
                           flash_attention=flash_attention, constants=constants, e_max=e_max,
                           stack=stack).step_time_s
    scale = measured.step_s / modelled
    note = (f"measured compute: each device's work x {scale:.3g} = the calibration file's step on one device, "
            f"{measured.step_s:.4g} s ({measured.source}) / the step model's {modelled:.4g} s for that micro-batch "
            "on one device; communication and the pipeline bubble modelled on top")
    return scale, note, warnings


def flops_per_token_of(record: Calibration, precision: str) -> float:
    """The ``model`` section's FLOPs per token at ``precision`` (the detailed count it timed)."""
    return float(record.to_dict()["model"]["results"][precision]["flops_per_token"])


def no_measurement(record: Calibration, precision: str, work: Any = None) -> InputError:
    """The error for a file with nothing to time ``precision`` with: what it measured, and, when
    its only measurement of that precision is another model's training step, which model it holds
    and which the estimate asks for."""
    torch_model = record.torch_model or {}
    measured = sorted({d for d, e in record.matmul.items() if e.measured}
                      | {d for d, e in record.mlp.items() if e.measured}
                      | ({d for d, e in record.model.results.items() if e.measured} if record.model else set())
                      | {d for d, r in torch_model.get("results", {}).items() if "skipped" not in r})
    if precision in measured and work is not None:
        _, why = match_torch_model(record, work)
        if why:
            return InputError(f"{why}: its {precision} measurement is that model's training step; profile this "
                              f"model (gpucost profile --torch-model FILE:CALLABLE) or the device "
                              f"(gpucost profile --precision {precision}), or drop --calibration")
        if record.model is not None:
            return InputError(f"the calibration file's {precision} measurement is the training step of "
                              f"{record.model.id}, the estimate is for {getattr(work, 'model', None) or 'another model'}; "
                              f"profile the device (gpucost profile --precision {precision})")
    return InputError(f"the calibration file has no {precision} measurement "
                      f"(it has: {', '.join(measured) or 'none'}); choose --precision or profile with --precision {precision}")
