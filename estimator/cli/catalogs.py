"""Catalog listings: ``gpucost gpus``, ``gpucost prices``, ``gpucost models``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..catalog import load_catalog
from ..numbers import si
from ..render import render
from .options import Format, check_format as _check_format



def gpus_cmd(*, format: Format = "table") -> None:
    """List the accelerator catalog: dense peak TFLOP/s per dtype, memory, bandwidth, power."""
    _check_format(format)
    accs = load_catalog().accelerators
    data = [{"id": a.id, "name": a.name, "aliases": a.aliases, "peak_tflops": a.peak_tflops,
             "memory_gb": a.memory_gb, "memory_bandwidth_gbps": a.memory_bandwidth_gbps, "tdp_w": a.tdp_w,
             "interconnect": a.interconnect, "device_names": a.device_names, "source": a.source,
             "retrieved": a.retrieved} for a in accs]
    dtypes = ("fp32", "tf32", "bf16", "fp16", "fp8")
    table = [(a.id, ", ".join(a.aliases), *(f"{a.peak_tflops[d]:g}" if d in a.peak_tflops else "-" for d in dtypes),
              f"{a.memory_gb:g}", f"{a.memory_bandwidth_gbps:g}", f"{a.tdp_w:g}") for a in accs]
    typer.echo(render(data, format, rows=table, headers=("id", "aliases", *(f"{d} TF" for d in dtypes), "mem GB", "BW GB/s", "TDP W")))
    if format in ("table", "markdown"):
        typer.echo("\nPeaks are dense (no sparsity), TFLOP/s per device, from each vendor datasheet (see --format json for sources).")


def prices_cmd(
    *,
    gpu: Annotated[Optional[str], typer.Option(help="Only this accelerator's prices.")] = None,
    format: Format = "table",
) -> None:
    """List the price catalog: USD per device-hour by provider and offer, with date and source."""
    _check_format(format)
    catalog = load_catalog()
    rows = catalog.prices_for(catalog.accelerator(gpu).id) if gpu else sorted(
        catalog.prices, key=lambda p: (p.accelerator, p.usd_per_gpu_hour))
    data = [{"id": p.id, "accelerator": p.accelerator, "provider": p.provider, "offer": p.offer,
             "instance": p.instance, "usd_per_gpu_hour": p.usd_per_gpu_hour, "default": p.default,
             "observed": p.observed, "source": p.source, "notes": p.notes} for p in rows]
    table = [(p.accelerator, p.id, p.provider, p.offer, p.instance or "-", f"{p.usd_per_gpu_hour:g}",
              "yes" if p.default else "", p.observed.isoformat()) for p in rows]
    typer.echo(render(data, format, rows=table, headers=("gpu", "id", "provider", "offer", "instance", "$/device-h", "default", "observed")))


def models_cmd(ctx: typer.Context, *, format: Format = "table") -> None:
    """List the model catalog (or `gpucost models show NAME` for one model's breakdown)."""
    if ctx.invoked_subcommand is not None:
        return
    _check_format(format)
    models = load_catalog().models
    data = [{"id": m.id, "name": m.name, "aliases": m.aliases, "params": m.params, "active_params": m.params_active,
             "training_tokens": m.training_tokens, "seq_len": m.seq_len, "source": m.source} for m in models]
    table = [(m.id, m.name, si(m.params), si(m.params_active), si(m.training_tokens) if m.training_tokens else "-",
              m.seq_len or "-") for m in models]
    typer.echo(render(data, format, rows=table, headers=("id", "name", "params", "active", "tokens", "seq len")))


