"""``gpucost estimate`` and ``gpucost compare``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..catalog import load_catalog
from ..estimate import (DEFAULT_ELECTRICITY_USD_PER_KWH, DEFAULT_GPU, DEFAULT_LIFE_YEARS, DEFAULT_PRECISION, DEFAULT_PUE,
                        PRECISIONS, Estimate, estimate, workload)
from ..numbers import count, days, si, usd
from ..plan import plan_estimate
from ..render import render
from .options import Format, check_format as _check_format


Model = Annotated[Optional[str], typer.Option(help="Catalog model (see `gpucost models`), e.g. gpt3-175b, deepseek-v3.")]
Params = Annotated[Optional[str], typer.Option(help="Total parameters, e.g. 175B or 1.75e11.")]
ActiveParams = Annotated[Optional[str], typer.Option(help="Parameters active per token (MoE), e.g. 37B. Default: all.")]
Flops = Annotated[Optional[str], typer.Option(help="Total training FLOPs instead of a model, e.g. 3.15e23.")]
Tokens = Annotated[Optional[str], typer.Option(help="Training tokens, e.g. 300B. Default: the model's published count.")]
FlopsMethod = Annotated[str, typer.Option(help="FLOPs for the time: 6nd (Kaplan, the default; the MFU defaults are derived with it) or detailed (needs a model with an architecture).")]
SeqLen = Annotated[Optional[int], typer.Option(help="Training sequence length for the detailed FLOPs and the memory check. Default: the model's.")]
Precision = Annotated[str, typer.Option(help=f"Training precision: {', '.join(PRECISIONS)}. Picks the dense peak.")]
NumGpus = Annotated[Optional[int], typer.Option(help="Number of devices (perfect scaling assumed). Default: 1.")]
Mfu = Annotated[Optional[float], typer.Option(help="Model FLOPs utilisation: fraction of the dense peak, in (0, 1]. Default: per precision, printed.")]
Tflops = Annotated[Optional[str], typer.Option(help="Achieved TFLOP/s per device (instead of --mfu).")]
GpuHours = Annotated[Optional[str], typer.Option(help="Reported device-hours: report the throughput and MFU they imply (the inverse question).")]
Price = Annotated[Optional[str], typer.Option(help="USD per device-hour. Default: the catalog's default offer for the GPU.")]
Provider = Annotated[Optional[str], typer.Option(help="Take the price from this provider (or price id) in the catalog, e.g. aws, lambda.")]
Pue = Annotated[float, typer.Option(help="Power usage effectiveness for energy (facility / IT power).")]


def estimate_rows(est: Estimate) -> list[tuple[str, str, str]]:
    """The human table of an estimate: quantity, value with units, and what it rests on."""
    work = []
    if est.active_params is not None and est.active_params != est.params:
        work.append(f"{si(est.active_params)} active of {si(est.params)} params")
    elif est.params is not None:
        work.append(f"{si(est.params)} params")
    if est.tokens is not None:
        work.append(f"{si(est.tokens)} tokens")
    mfu = f"MFU {est.mfu:.1%} of {est.peak_tflops:g} dense {est.precision}" if est.mfu is not None else "MFU unknown"
    rows = []
    plan = est.plan
    if plan is not None and plan.num_gpus_needed is not None:
        rows.append(("devices needed", f"{plan.num_gpus_needed:,} x {est.gpu}",
                     f"to finish within {plan.deadline_days:g} days at the throughput below"))
    if plan is not None and plan.budget_usd is not None:
        rows.append(("budget buys", f"{si(plan.tokens)} tokens" + (f" for {si(plan.params)} params" if est.model is None else ""),
                     f"{usd(plan.budget_usd)} = {plan.budget_gpu_hours:,.0f} device-hours = {si(plan.budget_flops, 'FLOP')}"))
        if plan.tokens_low is not None:
            rows.append(("tokens range", f"{si(plan.tokens_low)} - {si(plan.tokens_high)} tokens",
                         "at the slow and fast ends of the utilisation band"))
    rows += [
        ("model", est.model or "-", ", ".join(work) or est.flops_method),
        ("training compute", si(est.flops, "FLOP"), est.flops_method),
    ]
    if est.flops_detailed is not None:
        used = est.flops == est.flops_detailed
        rows.append(("detailed count", si(est.flops_detailed, "FLOP"),
                     f"architecture at seq {est.seq_len}, {est.flops_detailed / est.flops_6nd - 1:+.1%} vs 6ND; "
                     + ("used for the time" if used else "not used for the time (--flops-method detailed)")))
    if est.min_gpus_to_fit is not None:
        rows.append(("memory", f"needs >= {est.min_gpus_to_fit:,} x {est.gpu}",
                     "to hold weights, grads, AdamW states, activations (ZeRO-3, full recompute, flash attention)"))
    rows += [
        ("throughput", f"{est.achieved_tflops_per_gpu:.4g} TFLOP/s per device", f"{mfu}; {est.throughput_source}"),
        ("wall-clock", days(est.wall_clock_days), f"{est.num_gpus:,} x {est.gpu} ({est.gpu_name})"
         + ("" if est.num_gpus_given else "; set --num-gpus")),
        ("device-hours", f"{count(est.gpu_hours)} {est.gpu}-hours", ""),
        ("cost", usd(est.cost_usd),
         f"${est.price_usd_per_gpu_hour:g}/device-hour, {est.price_source}" if est.price_usd_per_gpu_hour else "no price: give --price"),
        ("energy", f"{est.energy_kwh:,.0f} kWh, {usd(est.energy_cost_usd)}" if est.energy_kwh is not None else "n/a",
         f"TDP x device-hours x PUE {est.pue:g}, at ${est.electricity_usd_per_kwh:g}/kWh"
         if est.energy_kwh is not None else "no TDP known for this device"),
    ]
    if est.own_cost_usd is not None:
        rows.append(("cost if owned", usd(est.own_cost_usd), "purchase price amortised + electricity (see assumptions)"))
    if est.range is not None:
        r = est.range
        cost = f", {usd(r.cost_usd_low)} - {usd(r.cost_usd_high)}" if r.cost_usd_low is not None else ""
        rows.append(("range", f"{days(r.wall_clock_days_low)} - {days(r.wall_clock_days_high)}{cost}",
                     f"MFU {r.mfu_high:.0%} (fast end) to {r.mfu_low:.0%} (slow end)" if r.mfu_low is not None else
                     f"{r.tflops_high:.4g} (fast end) to {r.tflops_low:.4g} (slow end) TFLOP/s per device"))
    return rows


def _emit_estimate(est: Estimate, fmt: str) -> None:
    if fmt in ("table", "markdown"):
        typer.echo(render({}, fmt, rows=estimate_rows(est), headers=("quantity", "value", "basis")))
        typer.echo("\nassumptions:\n" + "\n".join(f"  - {a}" for a in est.assumptions))
    else:
        typer.echo(render(est.to_dict(), fmt))
    for warning in est.warnings:
        typer.echo(f"Warning: {warning}", err=True)


def estimate_cmd(
    *,
    model: Model = None,
    hf_config: Annotated[Optional[Path], typer.Option(help="A Hugging Face config.json instead of a catalog model (exact parameters, detailed FLOPs, memory check).")] = None,
    params: Params = None,
    active_params: ActiveParams = None,
    flops: Flops = None,
    tokens: Tokens = None,
    flops_method: FlopsMethod = "6nd",
    seq_len: SeqLen = None,
    gpu: Annotated[Optional[str], typer.Option(help=f"Accelerator id or alias (see `gpucost gpus`). Default: the calibration file's device, else {DEFAULT_GPU}.")] = None,
    num_gpus: NumGpus = None,
    precision: Precision = DEFAULT_PRECISION,
    mfu: Mfu = None,
    tflops: Tflops = None,
    calibration: Annotated[Optional[Path], typer.Option(help="A `gpucost profile` file: take the throughput from what was measured (see README, Calibrated estimates).")] = None,
    gpu_hours: GpuHours = None,
    price: Price = None,
    provider: Provider = None,
    deadline: Annotated[Optional[str], typer.Option(help="Finish within this wall-clock time (30d, 12h, 2w): answers the devices needed.")] = None,
    budget: Annotated[Optional[str], typer.Option(help="USD to spend (1M, 250K): answers the tokens it buys for the model, or with --chinchilla the compute-optimal size.")] = None,
    chinchilla: Annotated[bool, typer.Option("--chinchilla", help="With --budget: choose params and tokens compute-optimally (20 tokens per parameter, Hoffmann et al. 2022).")] = False,
    pue: Pue = DEFAULT_PUE,
    electricity_price: Annotated[float, typer.Option(help="Electricity price, USD per kWh (default: US industrial average 2024, EIA).")] = DEFAULT_ELECTRICITY_USD_PER_KWH,
    life_years: Annotated[float, typer.Option(help="Amortisation life of an owned accelerator, years (for the cost of owning).")] = DEFAULT_LIFE_YEARS,
    format: Format = "table",
) -> None:
    """Training compute, wall-clock, device-hours, cost and energy of one run.

    Example: gpucost estimate --params 175B --tokens 300B --gpu a100 --num-gpus 1024 --tflops 80
    """
    _check_format(format)
    est = plan_estimate(
        gpu=gpu, deadline=deadline, budget=budget, chinchilla=chinchilla, model=model, hf_config=hf_config, params=params,
        active_params=active_params, tokens=tokens, flops=flops, flops_method=flops_method, seq_len=seq_len,
        num_gpus=num_gpus, precision=precision,
        mfu=mfu, tflops=tflops, calibration=calibration, gpu_hours=gpu_hours, price=price, provider=provider, pue=pue,
        electricity_usd_per_kwh=electricity_price, life_years=life_years)
    _emit_estimate(est, format)


def compare_cmd(
    *,
    model: Model = None,
    params: Params = None,
    active_params: ActiveParams = None,
    flops: Flops = None,
    tokens: Tokens = None,
    gpu: Annotated[Optional[list[str]], typer.Option(help="Accelerators to compare (repeat). Default: every one with a peak for the precision.")] = None,
    num_gpus: NumGpus = None,
    precision: Precision = DEFAULT_PRECISION,
    mfu: Mfu = None,
    all_offers: Annotated[bool, typer.Option("--all-offers", help="One row per price offer, not just each GPU's default.")] = False,
    format: Format = "table",
) -> None:
    """One row per accelerator (and price offer), cheapest first: which GPU is cheapest for this run?"""
    _check_format(format)
    catalog = load_catalog()
    work = workload(model=model, params=params, active_params=active_params, tokens=tokens, flops=flops)
    accs = [catalog.accelerator(g) for g in gpu] if gpu else [a for a in catalog.accelerators if a.peak_for(precision)]
    rows = []
    for acc in accs:
        offers = catalog.prices_for(acc.id) if all_offers else [catalog.price(acc.id)]
        for offer in offers or [None]:
            est = estimate(work, acc, num_gpus=num_gpus, precision=precision, mfu=mfu,
                           provider=offer.id if offer else None, catalog=catalog)
            rows.append(est)
    rows.sort(key=lambda e: (e.cost_usd is None, e.cost_usd or 0.0, e.wall_clock_days))
    keys = ("gpu", "price_source", "price_usd_per_gpu_hour", "peak_tflops", "mfu", "achieved_tflops_per_gpu",
            "wall_clock_days", "gpu_hours", "cost_usd")
    data = [{k: getattr(e, k) for k in keys} for e in rows]
    table = [(e.gpu, f"{e.achieved_tflops_per_gpu:.4g}", f"{e.wall_clock_days:,.1f}", f"{e.gpu_hours:,.0f}",
              f"{e.price_usd_per_gpu_hour:g}" if e.price_usd_per_gpu_hour else "-", usd(e.cost_usd),
              e.price_source or "no price in catalog") for e in rows]
    typer.echo(render(data, format, rows=table, headers=(
        "gpu", "TFLOP/s/device", "days", "device-hours", "$/device-h", "cost", "price source")))
    if format in ("table", "markdown") and rows:
        typer.echo(f"\n{si(work.flops, 'FLOP')} ({work.flops_method}); {num_gpus or 1} device(s) each; "
                   f"{precision}; throughput = {rows[0].throughput_source}")


