"""``gpucost validate``: the back-test against published runs."""

from __future__ import annotations

import typer

from estimator.estimate import SCHEMA_VERSION
from estimator.numbers import si
from estimator.render import render
from estimator.cli.options import Format, Wide, check_format as _check_format, paragraph, terminal_width


def validate_cmd(*, format: Format = "table", wide: Wide = False) -> None:
    """Back-test gpucost against published runs: the default (flat) estimate against every run's
    reported device-hours, and the step-time model against every published layout's step time."""
    from estimator.validation.runs import validate
    from estimator.validation.stack_runs import validate_stacks
    from estimator.validation.layouts import validate_step

    _check_format(format)
    result = validate()
    step = validate_step()
    stacks = validate_stacks()
    if format == "csv":  # one row per check; the summaries are derived from them
        rows = [{"check": "flat", **r} for r in result.to_dict()["runs"]]
        rows += [{"check": "step", **r} for r in step.to_dict()["rows"]]
        rows += [{"check": "stack", **r} for r in stacks.to_dict()["rows"]]
        typer.echo(render(rows, format))
        return
    if format not in ("table", "markdown"):
        typer.echo(render({"schema_version": SCHEMA_VERSION, **result.to_dict(), "step": step.to_dict(),
                           "stacks": stacks.to_dict()}, format))
        return
    width = terminal_width(wide) if format == "table" else None
    table = [(c.id, c.accelerator, c.precision, c.scope, c.kind, si(c.flops, "FLOP"),
              f"{c.reported_gpu_hours:,.0f}" if c.reported_gpu_hours else "-", f"{c.estimated_gpu_hours:,.0f}",
              f"{c.gpu_hours_low:,.0f} - {c.gpu_hours_high:,.0f}",
              f"{c.error:+.0%}" if c.error is not None else "-",
              {True: "yes", False: "NO", None: "-"}[c.inside_range],
              f"{c.implied_mfu:.1%}" if c.implied_mfu is not None else "-") for c in result.runs]
    typer.echo(render({}, format, rows=table, headers=(
        "run", "gpu", "precision", "scope", "kind", "FLOPs (6ND)", "reported device-h", "estimated device-h",
        "range device-h", "error", "in range", "implied MFU"), width=width,
        optional=("range device-h", "kind", "precision", "scope", "FLOPs (6ND)", "implied MFU")))
    n = result.num_with_hours
    low_q, high_q = (round(100 * q) for q in result.band_quantiles)
    typer.echo(paragraph(f"\n{n} runs report device-hours: median absolute error {result.median_abs_error:.0%}, "
               f"{result.num_within_1_5x} of {n} ({result.num_within_1_5x / n:.0%}) within a factor of 1.5, "
               f"{result.num_inside_range} of {n} ({result.num_inside_range / n:.0%}) inside the printed range "
               f"(the {low_q}th-{high_q}th percentile of the runs' leave-one-out error around their kind's median).", width))
    rows = [(d.kind, f"{d.mfu:.1%}", f"{d.band_low:.1%} - {d.band_high:.1%}", str(d.num_runs), d.basis,
             d.fallback_note or "") for d in result.defaults]
    typer.echo(paragraph(f"\nDefault MFU while training by kind of run (goodput {result.goodput:.0%} applied on top; "
                         "estimator/timing/utilisation.py):", width) + "\n" + render({}, format, rows=rows, headers=(
                   "kind", "MFU", "band", "runs", "median over", "fallback"), width=width,
                   optional=("fallback", "median over")))

    table = [(r.id, r.accelerator, f"{r.num_devices:,}", r.layout.split(", micro-batch")[0],
              f"{r.implied_step_time_s:.3g}", f"{r.predicted_step_time_s:.3g}", f"{r.error:+.1%}") for r in step.rows]
    typer.echo("\nStep-time model on published layouts (seconds per optimizer step):\n" + render({}, format, rows=table, headers=(
        "layout run", "gpu", "devices", "layout", "implied s", "predicted s", "error"), width=width,
        optional=("layout", "devices", "gpu")))
    typer.echo(paragraph(f"\n{len(step.rows)} published layouts: median absolute error {step.median_abs_error:.1%}, "
               f"mean {step.mean_abs_error:.1%}, max {step.max_abs_error:.1%}; {step.num_within_10pct} within 10%, "
               f"{step.num_within_25pct} within 25%. Implied = the reported TFLOP/s, MFU or iteration time turned "
               "into seconds by each source's own FLOPs formula (catalogs/layout_runs.yaml).", width))

    table = [(r.id, r.stack, r.split, r.mode, f"{r.measured_step_time_s:.4g}", f"{r.predicted_step_time_s:.4g}",
              f"{r.time_error:+.1%}", f"{r.measured_memory_gb:.4g}" if r.measured_memory_gb else "-",
              f"{r.predicted_memory_gb:.4g}", f"{r.memory_error:+.1%}" if r.memory_error is not None else "-")
             for r in stacks.rows if r.num_gpus == 1]  # the runs at scale are summarised below (--format json: each)
    typer.echo("\nStacks on measured training steps (" + ", ".join(stacks.files) + "):\n" + render({}, format, rows=table, headers=(
        "run", "stack", "split", "mode", "measured s", "predicted s", "time error", "measured GB", "predicted GB",
        "memory error"), width=width, optional=("mode", "measured GB", "predicted GB")))
    lines = []
    for s in stacks.summaries:
        memory = (f"; peak memory {s.num_memory_within_15pct} of {s.num_memory_rows} within 15%, median |error| "
                  f"{s.median_abs_memory_error:.1%}" if s.median_abs_memory_error is not None else "")
        where = "at scale" if s.at_scale else "one device"
        lines.append(f"{s.stack} {s.split.replace('_', '-')}, {where}: step time {s.num_time_within_15pct} of "
                     f"{s.num_rows} within 15%, median |error| {s.median_abs_time_error:.1%}{memory}")
    lines.append("train: the rows the stack's fitted constants were fitted on (benchmarks/stack_single_gpu.py --fit; "
                 "at scale: read from the projects' own documents); held-out: never fitted (at scale: read from papers, "
                 "or added after the stacks' at-scale terms were set). "
                 "At scale: published steps on 8 to 12,288 GPUs (stack_runs_at_scale.yaml; each row in --format json); "
                 "rows the model cannot run are left out and named in that file's header "
                 "(benchmarks/holdout_stacks.py counts them as misses).")
    typer.echo(paragraph("\n".join(lines), width))
