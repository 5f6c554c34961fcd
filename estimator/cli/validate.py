"""``gpucost validate``: the back-test against published runs."""

from __future__ import annotations

from ..throughput import DEFAULT_MFU, MFU_BAND
from ..validate import validate
from ..numbers import si
from ..render import render
import typer

from .options import Format, check_format as _check_format

def validate_cmd(*, format: Format = "table") -> None:
    """Back-test the default estimate against every published training run in the catalog."""
    _check_format(format)
    result = validate()
    if format == "csv":  # one row per run; the summary is derived from them
        typer.echo(render(result.to_dict()["runs"], format))
        return
    if format not in ("table", "markdown"):
        typer.echo(render(result.to_dict(), format))
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


