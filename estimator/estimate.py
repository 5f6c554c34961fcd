"""Throughput, wall-clock, device-hours, cost and energy of a training run: the Estimate record.

Two ways to an answer (Epoch AI's two methods, run in either direction):

- forward: FLOPs / (achieved FLOP/s per device x devices) = wall-clock, where the achieved rate is
  ``--tflops``, or ``--mfu`` x the catalog's dense peak for the precision, or a calibration file;
- inverse: reported device-hours -> achieved FLOP/s per device = FLOPs / (device-hours x 3600),
  and MFU = achieved / dense peak (the DeepSeek-V3 question: 3.3e24 FLOPs in 2.664M H800-hours).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .catalog import Accelerator, Catalog, Model, Price, load_catalog
from .errors import InputError
from .flops import train_flops_6nd
from .numbers import parse_quantity

PRECISIONS = ("bf16", "fp16", "fp8", "tf32", "fp32")
DEFAULT_PRECISION = "bf16"
DEFAULT_GPU = "h100"
DEFAULT_PUE = 1.2  # data-centre power usage effectiveness assumed for energy (typical hyperscale 1.1-1.2)
# US industrial average 2024 (EIA Electric Power Monthly, Table 5.6.B: about 8.1 cents per kWh).
DEFAULT_ELECTRICITY_USD_PER_KWH = 0.08
DEFAULT_LIFE_YEARS = 3.0  # straight-line amortisation life for owned accelerators

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


def device_hours(flops: float, tflops_per_device: float) -> float:
    """Device-hours that ``flops`` take at ``tflops_per_device`` achieved TFLOP/s."""
    return flops / (tflops_per_device * 1e12) / 3600.0


def achieved_tflops(flops: float, hours: float) -> float:
    """TFLOP/s per device that ``flops`` in ``hours`` device-hours imply (the inverse question)."""
    return flops / (hours * 3600.0) / 1e12


@dataclass(frozen=True, slots=True)
class Workload:
    """What is trained: total training FLOPs and how they were obtained."""

    flops: float
    flops_method: str
    tokens: float | None = None
    params: float | None = None
    active_params: float | None = None
    model: str | None = None
    seq_len: int | None = None
    flops_6nd: float | None = None
    flops_detailed: float | None = None  # architecture-aware count (estimator.flops), when known
    architecture: Any = field(default=None, repr=False, compare=False)


FLOPS_METHODS = ("6nd", "detailed")


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
class Plan:
    """A planning question (``--deadline``, ``--budget``) and its answer. Unset fields are None."""

    question: str
    deadline_days: float | None = None
    num_gpus_needed: int | None = None
    budget_usd: float | None = None
    budget_gpu_hours: float | None = None
    budget_flops: float | None = None
    params: float | None = None
    tokens: float | None = None
    tokens_low: float | None = None  # what the budget buys at the slow end of the utilisation band
    tokens_high: float | None = None


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
    plan: Plan | None = None
    num_gpus_given: bool = True
    seq_len: int | None = None
    flops_6nd: float | None = None
    flops_detailed: float | None = None
    min_gpus_to_fit: int | None = None
    assumptions: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict. Its keys are a stable contract (see README "JSON output")."""
        data = asdict(self)
        data["assumptions"] = list(self.assumptions)
        data["warnings"] = list(self.warnings)
        return data


def workload(
    *,
    model: str | Model | None = None,
    params: float | str | None = None,
    active_params: float | str | None = None,
    tokens: float | str | None = None,
    flops: float | str | None = None,
    flops_method: str = "6nd",
    seq_len: int | None = None,
    hf_config: str | Path | None = None,
    catalog: Catalog | None = None,
) -> Workload:
    """Build a Workload from a catalog model, or parameters (+ active parameters for MoE), or FLOPs.

    Training FLOPs are 6 x active parameters x tokens (Kaplan et al. 2020) unless ``flops`` is
    given. ``tokens`` defaults to the model's published training tokens. For a catalog model with
    an architecture, the detailed count (matmuls incl. attention scores and output head at
    ``seq_len``, see :mod:`estimator.flops`) is computed too; ``flops_method="detailed"`` makes the
    time use it. The default stays 6ND because the default MFU band was derived with 6ND counts.
    ``hf_config`` (a ``config.json`` path) stands in for a catalog model, with exact parameter counts.
    """
    catalog = catalog or load_catalog()
    if flops_method not in FLOPS_METHODS:
        raise InputError(f"unknown --flops-method {flops_method!r}; use one of {', '.join(FLOPS_METHODS)}")
    if seq_len is not None and (isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1):
        raise InputError(f"--seq-len must be a positive whole number, got {seq_len!r}")
    given = [name for name, v in (("--model", model), ("--hf-config", hf_config), ("--params", params),
                                  ("--flops", flops)) if v is not None]
    if len(given) > 1:
        raise InputError(f"give only one of --model, --hf-config, --params or --flops (got {' and '.join(given)})")
    if not given:
        raise InputError("say what is trained: --model NAME, --hf-config PATH, --params N (with --tokens), or --flops F")
    if active_params is not None and params is None and model is None:
        raise InputError("--active-params needs --params (the total) or --model")
    tok = parse_quantity(tokens, what="--tokens") if tokens is not None else None
    if flops is not None:
        if tokens is not None:
            raise InputError("--tokens has no effect with --flops; drop one of them")
        return Workload(flops=parse_quantity(flops, what="--flops"), flops_method="given (--flops)")
    name, total, active, published_tokens = resolve_params(
        model=model, params=params, active_params=active_params, hf_config=hf_config, catalog=catalog)
    if tok is None:
        if published_tokens is None:
            raise InputError(f"model {name!r} has no published training tokens; give --tokens" if name
                             else "--params needs --tokens (the number of training tokens, e.g. 300B)")
        tok = published_tokens
    six_nd = train_flops_6nd(active, tok)
    method = "6 x active params x tokens (Kaplan et al. 2020)" if active != total else "6 x params x tokens (Kaplan et al. 2020)"
    arch = detailed = None
    if name is not None:
        from .hf_config import architecture_for_model, load_hf_config
        from .flops import train_flops

        if hf_config is not None:
            arch, published_seq_len = load_hf_config(hf_config), None
        else:
            record = catalog.model(name)
            arch, published_seq_len = architecture_for_model(record, catalog.directory / "architectures"), record.seq_len
        if arch is not None:
            seq_len = seq_len or published_seq_len or arch.default_seq_len or 2048
            detailed = train_flops(arch, tok, seq_len)
    if flops_method == "detailed":
        if detailed is None:
            raise InputError("--flops-method detailed needs a catalog model with an architecture "
                             "(see `gpucost models show NAME`)")
        chosen = detailed
        method = f"detailed count from the architecture at sequence length {seq_len} (PaLM appendix B convention)"
    else:
        chosen = six_nd
    return Workload(flops=chosen, flops_method=method, tokens=tok, params=total, active_params=active, model=name,
                    seq_len=seq_len if arch is not None else None, flops_6nd=six_nd, flops_detailed=detailed,
                    architecture=arch)


def resolve_params(
    *, model: str | Model | None, params: float | str | None, active_params: float | str | None,
    hf_config: str | Path | None = None, catalog: Catalog | None = None,
) -> tuple[str | None, float, float, float | None]:
    """(model id, total params, active params, published tokens) from a catalog model, a Hugging
    Face ``config.json`` (exact counts; the id is the file's stem, as `gpucost profile` names it)
    or ``params``."""
    if hf_config is not None:
        from .hf_config import load_hf_config
        from .params import count_params

        arch = load_hf_config(hf_config)
        counts = count_params(arch)
        name, total, tokens, active = arch.name, float(counts.total), None, float(counts.active)
    elif model is not None:
        record = model if isinstance(model, Model) else (catalog or load_catalog()).model(model)
        name, total, tokens = record.id, record.params, record.training_tokens
        active = record.params_active
    elif params is not None:
        name, total, tokens = None, parse_quantity(params, what="--params"), None
        active = total
    else:
        raise InputError("give --model NAME or --params N")
    if active_params is not None:
        active = parse_quantity(active_params, what="--active-params")
    if active > total:
        raise InputError(f"--active-params ({active:.4g}) exceeds the total parameters ({total:.4g})")
    return name, total, active, tokens


def _check_fraction(value: float, what: str) -> float:
    if not 0 < value <= 1:
        raise InputError(f"{what} must be a fraction in (0, 1], e.g. 0.4 for 40%, got {value:g}")
    return value


def resolve_price(
    accelerator: Accelerator, *, price: float | str | None, provider: str | None, catalog: Catalog
) -> tuple[float | None, str | None, Price | None]:
    """(USD per device-hour, where it came from, the catalog row) for --price, --provider or the default."""
    if price is not None and provider is not None:
        raise InputError("give --price or --provider, not both")
    if price is not None:
        return parse_quantity(price, what="--price"), "given (--price)", None
    row = catalog.price(accelerator.id, provider)
    if row is None:
        return None, None, None
    where = f"{row.provider} {row.offer}{(' ' + row.instance) if row.instance else ''}, observed {row.observed.isoformat()}"
    return row.usd_per_gpu_hour, where + ("" if provider else " (catalog default)"), row


@dataclass(frozen=True, slots=True)
class Throughput:
    """Achieved TFLOP/s per device, the dense peak it is measured against, and where it came from."""

    achieved_tflops: float
    peak_tflops: float | None
    source: str
    band_tflops: tuple[float, float] | None = None  # (slow, fast) end of the utilisation band

    @property
    def mfu(self) -> float | None:
        """Model FLOPs utilisation: achieved / dense peak (None without a peak)."""
        return self.achieved_tflops / self.peak_tflops if self.peak_tflops else None


def check_precision(acc: Accelerator, precision: str) -> float | None:
    """Validate ``precision`` and return the accelerator's dense peak for it (None if it has none)."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return acc.peak_for(precision)


def throughput(
    acc: Accelerator, precision: str = DEFAULT_PRECISION, *, mfu: float | None = None,
    tflops: float | str | None = None,
) -> Throughput:
    """Achieved TFLOP/s per device: ``tflops`` as given, or ``mfu`` (default ``DEFAULT_MFU``) x dense peak.

    The band is ``MFU_BAND`` for the precision, widened to include the chosen point.
    """
    if mfu is not None and tflops is not None:
        raise InputError("give only one of --mfu or --tflops")
    peak = check_precision(acc, precision)
    if tflops is not None:
        achieved, source = parse_quantity(tflops, what="--tflops"), "given (--tflops)"
    else:
        if peak is None:
            have = ", ".join(p for p in PRECISIONS if acc.peak_for(p)) or "none"
            raise InputError(f"{acc.id} has no {precision} peak in the catalog (it has: {have}); "
                             f"choose another --precision or give --tflops")
        if mfu is not None:
            achieved, source = _check_fraction(float(mfu), "--mfu") * peak, "given --mfu x dense peak"
        else:
            achieved = DEFAULT_MFU[precision] * peak
            source = f"default MFU {DEFAULT_MFU[precision]:.0%} for {precision} x dense peak (see `gpucost validate`)"
    band = None
    if peak is not None:
        low, high = MFU_BAND[precision]
        band = (min(low * peak, achieved), max(high * peak, achieved))
    return Throughput(achieved, peak, source, band)


def _min_devices_to_fit(work: Workload, acc: Accelerator, warnings: list[str]) -> int | None:
    """Fewest devices that hold the run's training memory in the most frugal common layout
    (ZeRO-3, full recompute, flash attention, sequence parallel, micro-batch 1): a lower bound."""
    from .memory import min_devices

    try:
        return min_devices(work.architecture, acc.memory_gb, seq_len=work.seq_len, zero_stage=3, recompute="full",
                           flash_attention=True, sequence_parallel=True).num_devices
    except InputError as exc:
        warnings.append(f"memory check: {exc}")
        return None


def estimate(
    work: Workload,
    gpu: str | Accelerator,
    *,
    num_gpus: int | None = None,
    precision: str = DEFAULT_PRECISION,
    mfu: float | None = None,
    tflops: float | str | None = None,
    gpu_hours: float | str | None = None,
    rate: Throughput | None = None,
    price: float | str | None = None,
    provider: str | None = None,
    pue: float = DEFAULT_PUE,
    electricity_usd_per_kwh: float = DEFAULT_ELECTRICITY_USD_PER_KWH,
    life_years: float = DEFAULT_LIFE_YEARS,
    plan: Plan | None = None,
    catalog: Catalog | None = None,
) -> Estimate:
    """Estimate wall-clock, device-hours, cost and energy of ``work`` on ``num_gpus`` x ``gpu``.

    Throughput is exactly one of: ``tflops`` (achieved TFLOP/s per device), ``mfu`` (fraction of
    the catalog's dense peak for ``precision``), ``gpu_hours`` (the inverse: reported device-hours
    imply the achieved rate), a ready ``rate`` (e.g. from a calibration file), or else the default
    MFU for the precision (``DEFAULT_MFU``).
    """
    given = [n for n, v in (("--mfu", mfu), ("--tflops", tflops), ("--gpu-hours", gpu_hours),
                            ("a calibration", rate)) if v is not None]
    if len(given) > 1:
        raise InputError(f"give only one of --mfu, --tflops or --gpu-hours (got {' and '.join(given)})")
    catalog = catalog or load_catalog()
    acc = gpu if isinstance(gpu, Accelerator) else catalog.accelerator(gpu)
    devices_note = "" if num_gpus is not None else " (default; set --num-gpus)"
    num_gpus = 1 if num_gpus is None else num_gpus
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or num_gpus < 1:
        raise InputError(f"--num-gpus must be a positive whole number, got {num_gpus!r}")
    if not (isinstance(pue, (int, float)) and pue >= 1):
        raise InputError(f"--pue must be at least 1.0, got {pue!r}")
    if not electricity_usd_per_kwh >= 0:
        raise InputError(f"--electricity-price must be non-negative, got {electricity_usd_per_kwh!r}")
    if not life_years > 0:
        raise InputError(f"--life-years must be positive, got {life_years!r}")

    if gpu_hours is not None:
        hours = parse_quantity(gpu_hours, what="--gpu-hours")
        rate = Throughput(achieved_tflops(work.flops, hours), check_precision(acc, precision),
                          "implied by --gpu-hours (FLOPs / device-seconds)")
    elif rate is None:
        rate = throughput(acc, precision, mfu=mfu, tflops=tflops)
    hours = device_hours(work.flops, rate.achieved_tflops)

    assumptions = [f"training FLOPs: {work.flops_method}"]
    warnings: list[str] = []
    if rate.peak_tflops is None:
        warnings.append(f"{acc.id} has no {precision} peak in the catalog; MFU is unknown")
    else:
        assumptions.append(f"peak: {rate.peak_tflops:g} TFLOP/s dense {precision} per {acc.id}, {acc.source}")
        if rate.mfu > 1:
            warnings.append(f"implied MFU {rate.mfu:.0%} exceeds the dense {precision} peak: check the inputs")
    assumptions.append(f"throughput: {rate.achieved_tflops:.4g} TFLOP/s per device, {rate.source}")
    assumptions.append(f"devices: {num_gpus} x {acc.id}{devices_note}, perfect scaling (time = device-hours / devices)")

    usd_per_hour, price_source, _ = resolve_price(acc, price=price, provider=provider, catalog=catalog)
    if usd_per_hour is None:
        warnings.append(f"no price for {acc.id} in the catalog; give --price USD per device-hour")
    else:
        assumptions.append(f"price: ${usd_per_hour:g} per device-hour, {price_source}")
    energy_kwh = energy_cost = own_cost = None
    if acc.tdp_w is not None:
        energy_kwh = acc.tdp_w * hours * pue / 1000.0
        energy_cost = energy_kwh * electricity_usd_per_kwh
        assumptions.append(f"energy: {acc.tdp_w:g} W TDP x device-hours x PUE {pue:g}, "
                           f"${electricity_usd_per_kwh:g}/kWh")
    if acc.purchase_price_usd is not None and energy_cost is not None:
        own_cost = hours * acc.purchase_price_usd / (life_years * 365 * 24) + energy_cost
        assumptions.append(f"owning: ${acc.purchase_price_usd:,.0f} per device amortised over {life_years:g} years "
                           f"of continuous use, plus electricity")

    min_fit = None
    if work.architecture is not None:
        min_fit = _min_devices_to_fit(work, acc, warnings)
        if min_fit is not None and num_gpus < min_fit:
            warnings.append(f"the run does not fit {num_gpus} x {acc.id}: it needs at least {min_fit} devices of "
                            f"{acc.memory_gb:g} GB even with ZeRO-3, full recompute and flash attention "
                            f"(see `gpucost models show {work.model} --gpu {acc.id} --zero-stage 3 --recompute full "
                            f"--flash-attention --sequence-parallel`)")
    if work.flops_detailed is not None:
        assumptions.append(f"detailed FLOPs at sequence length {work.seq_len}: {work.flops_detailed:.3g} "
                           f"({work.flops_detailed / work.flops_6nd - 1:+.1%} vs 6ND); the time uses "
                           + ("the detailed count" if work.flops == work.flops_detailed else "6ND (--flops-method detailed to switch)"))

    band = None
    if rate.band_tflops is not None:
        slow_h, fast_h = (device_hours(work.flops, t) for t in rate.band_tflops)
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
                           + (f" (MFU {band.mfu_low:.0%}-{band.mfu_high:.0%})" if band.mfu_low else ""))

    return Estimate(
        flops=work.flops, flops_method=work.flops_method, gpu=acc.id, gpu_name=acc.name,
        num_gpus=num_gpus, precision=precision, peak_tflops=rate.peak_tflops,
        achieved_tflops_per_gpu=rate.achieved_tflops, mfu=rate.mfu, throughput_source=rate.source,
        wall_clock_days=hours / num_gpus / 24.0, gpu_hours=hours,
        price_usd_per_gpu_hour=usd_per_hour, price_source=price_source,
        cost_usd=hours * usd_per_hour if usd_per_hour is not None else None,
        energy_kwh=energy_kwh, pue=pue, electricity_usd_per_kwh=electricity_usd_per_kwh,
        energy_cost_usd=energy_cost, own_cost_usd=own_cost, range=band,
        model=work.model, params=work.params, active_params=work.active_params, tokens=work.tokens,
        plan=plan, num_gpus_given=not devices_note, seq_len=work.seq_len, flops_6nd=work.flops_6nd,
        flops_detailed=work.flops_detailed, min_gpus_to_fit=min_fit, assumptions=tuple(assumptions), warnings=tuple(warnings),
    )
