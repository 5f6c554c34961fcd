"""``gpucost validate``: the back-test against published runs."""

from __future__ import annotations

import typer

from ..estimate import SCHEMA_VERSION
from ..numbers import si
from ..render import render
from ..throughput import DEFAULT_MFU, MFU_BAND
from ..validate import validate
from ..validate_step import validate_step
from .options import Format, check_format as _check_format


def validate_cmd(*, format: Format = "table") -> None:
    """Back-test gpucost against published runs: the default (flat) estimate against every run's
    reported device-hours, and the step-time model against every published layout's step time."""
    _check_format(format)
    result = validate()
    step = validate_step()
    if format == "csv":  # one row per check; the summaries are derived from them
        rows = [{"kind": "flat", **r} for r in result.to_dict()["runs"]]
        rows += [{"kind": "step", **r} for r in step.to_dict()["rows"]]
        typer.echo(render(rows, format))
        return
    if format not in ("table", "markdown"):
        typer.echo(render({"schema_version": SCHEMA_VERSION, **result.to_dict(), "step": step.to_dict()}, format))
        return
    table = [(c.id, c.accelerator, c.precision, si(c.flops, "FLOP"),
              f"{c.reported_gpu_hours:,.0f}" if c.reported_gpu_hours else "-", f"{c.estimated_gpu_hours:,.0f}",
              f"{c.gpu_hours_low:,.0f} - {c.gpu_hours_high:,.0f}",
              f"{c.error:+.0%}" if c.error is not None else "-",
              {True: "yes", False: "NO", None: "-"}[c.inside_range],
              f"{c.implied_mfu:.1%}" if c.implied_mfu is not None else "-") for c in result.runs]
    typer.echo(render({}, format, rows=table, headers=(
        "run", "gpu", "precision", "FLOPs (6ND)", "reported device-h", "estimated device-h", "range device-h",
        "error", "in range", "implied MFU")))
    mfu = ", ".join(f"{p} {v:.1%}" for p, v in result.median_implied_mfu.items())
    typer.echo(f"\n{result.num_with_hours} runs report device-hours: median absolute error "
               f"{result.median_abs_error:.0%}, {result.num_inside_range} of {result.num_with_hours} inside the printed range."
               f"\nMedian implied MFU by precision: {mfu}. Defaults: "
               + ", ".join(f"{p} {DEFAULT_MFU[p]:.0%} ({MFU_BAND[p][0]:.0%}-{MFU_BAND[p][1]:.0%})" for p in ("bf16", "fp8")) + ".")



    table = [(r.id, r.accelerator, f"{r.num_devices:,}", r.layout.split(", micro-batch")[0],
              f"{r.implied_step_time_s:.3g}", f"{r.predicted_step_time_s:.3g}", f"{r.error:+.1%}") for r in step.rows]
    typer.echo("\nStep-time model on published layouts (seconds per optimizer step):\n" + render({}, format, rows=table, headers=(
        "layout run", "gpu", "devices", "layout", "implied s", "predicted s", "error")))
    typer.echo(f"\n{len(step.rows)} published layouts: median absolute error {step.median_abs_error:.1%}, "
               f"mean {step.mean_abs_error:.1%}, max {step.max_abs_error:.1%}; {step.num_within_10pct} within 10%, "
               f"{step.num_within_25pct} within 25%. Implied = the reported TFLOP/s, MFU or iteration time turned "
               "into seconds by each source's own FLOPs formula (catalogs/layout_runs.yaml).")
