"""Catalog listings: ``gpucost gpus``, ``gpucost prices``, ``gpucost models``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Optional

import typer

from estimator.catalog.core import load_catalog
from estimator.completion import complete_gpu
from estimator.numbers import si
from estimator.render import render
from estimator.cli.options import Format, Wide, check_format as _check_format, paragraph, records, terminal_width



def gpus_cmd(*, format: Format = "table", wide: Wide = False) -> None:
    """List the accelerator catalog: dense peak TFLOP/s per dtype, memory, bandwidth, power."""
    _check_format(format)
    accs = load_catalog().accelerators
    width = terminal_width(wide)
    data = [{"id": a.id, "name": a.name, "aliases": a.aliases, "peak_tflops": a.peak_tflops,
             "memory_gb": a.memory_gb, "memory_bandwidth_gbps": a.memory_bandwidth_gbps, "tdp_w": a.tdp_w,
             "interconnect": a.interconnect, "device_names": a.device_names, "source": a.source,
             "retrieved": a.retrieved} for a in accs]
    dtypes = ("fp32", "tf32", "bf16", "fp16", "fp8")
    table = [(a.id, ", ".join(a.aliases), *(f"{a.peak_tflops[d]:g}" if d in a.peak_tflops else "-" for d in dtypes),
              f"{a.memory_gb:g}", f"{a.memory_bandwidth_gbps:g}", f"{a.tdp_w:g}") for a in accs]
    typer.echo(render(records("accelerators", data, format), format, rows=table, headers=("id", "aliases", *(f"{d} TF" for d in dtypes), "mem GB", "BW GB/s", "TDP W"),
                      width=width, optional=("aliases", "tf32 TF", "fp16 TF", "fp32 TF", "TDP W")))
    if format in ("table", "markdown"):
        typer.echo(paragraph("\nPeaks are dense (no sparsity), TFLOP/s per device, from each vendor datasheet "
                             "(see --format json for sources).", width))


def prices_cmd(
    *,
    gpu: Annotated[Optional[str], typer.Option(autocompletion=complete_gpu, help="Only this accelerator's prices.")] = None,
    format: Format = "table",
    wide: Wide = False,
) -> None:
    """List the price catalog: USD per device-hour by provider and offer, with date and source."""
    _check_format(format)
    catalog = load_catalog()
    rows = catalog.prices_for(catalog.accelerator(gpu).id) if gpu is not None else sorted(
        catalog.prices, key=lambda p: (p.accelerator, p.usd_per_gpu_hour))
    data = [{"id": p.id, "accelerator": p.accelerator, "provider": p.provider, "offer": p.offer,
             "instance": p.instance, "usd_per_gpu_hour": p.usd_per_gpu_hour, "default": p.default,
             "observed": p.observed, "source": p.source, "notes": p.notes} for p in rows]
    table = [(p.accelerator, p.id, p.provider, p.offer, p.instance or "-", f"{p.usd_per_gpu_hour:g}",
              "yes" if p.default else "", p.observed.isoformat()) for p in rows]
    typer.echo(render(records("prices", data, format), format, rows=table, headers=("gpu", "id", "provider", "offer", "instance", "$/device-h", "default", "observed"),
                      width=terminal_width(wide), optional=("id", "instance", "observed")))


def models_cmd(ctx: typer.Context, *, format: Format = "table", wide: Wide = False) -> None:
    """List the model catalog (or `gpucost models show NAME` for one model's breakdown)."""
    if ctx.invoked_subcommand is not None:
        return
    _check_format(format)
    models = load_catalog().models
    data = [{"id": m.id, "name": m.name, "aliases": m.aliases, "params": m.params, "active_params": m.params_active,
             "training_tokens": m.training_tokens, "seq_len": m.seq_len, "source": m.source} for m in models]
    table = [(m.id, m.name, si(m.params), si(m.params_active), si(m.training_tokens) if m.training_tokens else "-",
              m.seq_len or "-") for m in models]
    typer.echo(render(records("models", data, format), format, rows=table, headers=("id", "name", "params", "active", "tokens", "seq len"),
                      width=terminal_width(wide), optional=("name",)))




def systems_cmd(*, gpu: Annotated[Optional[str], typer.Option(autocompletion=complete_gpu,
                                                              help="Only the systems of this accelerator.")] = None,
                format: Format = "table", wide: Wide = False) -> None:
    """List the node types the step-time model runs on: accelerators per node, the scale-up link and
    the network between nodes, with the published measured bus bandwidths."""
    _check_format(format)
    catalog = load_catalog()
    width = terminal_width(wide)
    systems = catalog.systems
    if gpu is not None:
        acc = catalog.accelerator(gpu)
        systems = tuple(s for s in systems if s.accelerator == acc.id)
    data = [{f: getattr(s, f) for f in s.__dataclass_fields__} for s in systems]
    table = [(s.id, s.accelerator, str(s.accelerators_per_node), f"{s.scale_up} {s.scale_up_gbps:g}",
              f"{s.scale_up_allreduce_busbw_gbps:g}" if s.scale_up_allreduce_busbw_gbps else "-",
              (f"{s.scale_out_nics_per_node} x {s.scale_out_gbps_per_nic:g} Gb/s {s.scale_out}"
               if s.scale_out_nics_per_node else s.scale_out),
              f"{s.scale_out_allreduce_busbw_gbps:g}" if s.scale_out_allreduce_busbw_gbps else "-",
              ", ".join(s.default_for) or "-") for s in systems]
    typer.echo(render(records("systems", data, format), format, rows=table, headers=(
        "id", "gpu", "per node", "scale-up GB/s", "all-reduce busbw", "scale-out", "busbw across nodes", "default for"),
        width=width, optional=("default for", "all-reduce busbw", "busbw across nodes", "per node"),
        whole=("id", "gpu")))
    if format in ("table", "markdown"):
        typer.echo(paragraph("\nScale-up GB/s is per accelerator and direction; bus bandwidths (GB/s) are published "
                             "nccl-tests measurements (see --format json for sources).", width))


def stacks_cmd(*, format: Format = "table", wide: Wide = False) -> None:
    """List the training stacks (`estimate --stack NAME`): engine, the parallelism each runs, torch.compile,
    master weights, attention and loss path (see --format json for every number and its source)."""
    from estimator.catalog.stacks import load_stacks
    from estimator.catalog.fields import catalog_dir

    _check_format(format)
    width = terminal_width(wide)
    stacks = load_stacks(catalog_dir())
    data = [{f: (dict(getattr(s, f)) if isinstance(getattr(s, f), Mapping) else getattr(s, f))
             for f in s.__dataclass_fields__} for s in stacks]
    short = {"data": "DP", "zero1": "Z1", "zero2": "Z2", "zero3": "Z3", "tensor": "TP", "pipeline": "PP",
             "interleaved": "VPP", "context": "CP", "expert": "EP", "sequence": "SP"}

    def kernels(stack) -> str:
        if not stack.attention_fraction:
            return "fitted"
        rest = [k for k in stack.attention_fraction if k != stack.attention_kernel]
        return stack.attention_kernel + (f" ({', '.join(rest)})" if rest else "")

    table = [(s.id, s.frameworks[0], s.engine, " ".join(short[p] for p in s.parallelism), "yes" if s.compile else "-",
              "/".join(s.master_weights), kernels(s), f"{s.allocator_reserve_gb:g}") for s in stacks]
    typer.echo(render(records("stacks", data, format), format, rows=table, headers=(
        "id", "framework", "engine", "parallelism", "compile", "master wt", "attention", "reserve GB"),
        width=width, optional=("reserve GB", "framework"), whole=("id",)))
    if format in ("table", "markdown"):
        typer.echo(paragraph("\nfused: Megatron-style kernels (the step model's layer); eager: every op of the modules, "
                             "timed\nfrom its probed kernels and bytes (benchmarks/stack_probe.py).\nVPP: interleaved "
                             "pipeline stages (--virtual-stages). Default --stack: megatron.\nattention: the "
                             "kernel timed (others with --attention-kernel); fitted: in the step model's fitted "
                             "layer.", width))


def datasets_cmd(*, format: Format = "table", wide: Wide = False) -> None:
    """List the datasets for workloads in samples and epochs (`estimate --dataset NAME --epochs E`)."""
    _check_format(format)
    datasets = load_catalog().datasets
    data = [{f: getattr(d, f) for f in d.__dataclass_fields__} for d in datasets]
    table = [(d.id, d.name, f"{d.samples:,}", d.sample, str(d.seq_len or "-")) for d in datasets]
    typer.echo(render(records("datasets", data, format), format, rows=table, headers=("id", "name", "samples per epoch", "sample", "tokens/sample"),
                      width=terminal_width(wide), optional=("name",)))
