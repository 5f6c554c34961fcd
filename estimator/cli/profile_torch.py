"""``gpucost profile --torch-model SPEC``: time the user's own PyTorch model's training step
(profiler/torch_model/step.py measures), print it, and write it into the calibration file. torch is
imported inside the command, so importing the CLI never imports it."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import typer

from estimator.cli.profile_common import catalog_or_note, existing_calibration, format_record

def format_torch_model(record: Mapping[str, Any], fmt: str) -> str:
    """stdout for ``--torch-model``: json/yaml the record as in the file; csv one row per dtype;
    table/markdown a line on the device, the per-dtype table, the counts, notes."""
    import json

    from estimator.records.calibration import dump_calibration
    from estimator.render import render
    from estimator.records.torch_model import SUMMARY_HEADERS, summary_rows

    if fmt == "json":
        return json.dumps(record, indent=2)
    if fmt == "yaml":
        return dump_calibration(record).rstrip("\n")
    section = record.get("torch_model")
    if section is None:
        return "(nothing measured)"
    if fmt == "csv":
        rows = [{"id": section["id"], "dtype": d, **r} for d, r in section["results"].items()]
        return render(rows, "csv")
    device = record["device"]
    lines = [f"{section['id']} ({section['spec']}) on {device['name']} ({device['backend']}"
             + (f", {device['num_threads']} threads" if device.get("num_threads") else "") + ")"
             + (f"; {section['duration_s']:.0f} s" if section.get("duration_s") is not None else "")
             + ("; PARTIAL (interrupted)" if section.get("partial") else ""),
             f"{section['params']:,} parameters; batch {section['batch_size']}; {section['optimizer']}; "
             f"loss {section.get('loss', '?')}",
             f"FLOPs per sample (FlopCounterMode): forward {section['forward_flops_per_sample']:.4g}, training "
             f"(forward + backward) {section['flops_per_sample']:.4g}; the optimizer's update is not counted",
             "",
             render({}, "markdown" if fmt == "markdown" else "table", rows=summary_rows(section),
                    headers=SUMMARY_HEADERS)]
    notes = list(section.get("notes", []))
    if notes:
        lines += ["", "notes:"] + [f"  - {note}" for note in notes]
    if record.get("matmul") or record.get("mlp"):  # --sweep: the device sweep's own table first
        lines = [format_record(record, fmt), ""] + lines
    return "\n".join(lines)


def profile_cli(*, spec: str, device: str, dtypes: list[str] | None, full: bool, sweep: bool,
                micro_batch: int | None, output: Path, fmt: str, quiet: bool, command: str,
                sustained_s: float | None = None, memory_format: str | None = None) -> None:
    """``gpucost profile --torch-model SPEC``: measure, print, and write ``output``: into an existing
    calibration file of the same device only the ``torch_model`` section is replaced; an
    interrupted run never replaces a complete file (estimator.records.calibration.output_for)."""
    from profiler.progress import ProgressBar
    from profiler.torch_model.step import profile_torch_model
    from profiler.torch_model.spec import resolve_spec

    from estimator.records.calibration import output_for, write_calibration
    from estimator.records.torch_model import merge_torch_model

    def say(message: str) -> None:
        if not quiet:
            typer.echo(message, err=True)

    existing_calibration(output)  # fail before measuring, not after, when the file there is not a calibration file
    resolved = resolve_spec(spec)
    notes: list[str] = []
    catalog = catalog_or_note(notes, say)

    def announce(info: Any, plan: Any, measured: Sequence[str]) -> None:
        why = " (--device auto: torch sees no CUDA GPU)" if device == "auto" and info.backend == "cpu" else ""
        say(f"Profiling {spec}'s training step ({', '.join(measured) or 'nothing'}) on {info.name}{why} "
            f"({info.backend}; catalog: {info.catalog_id or 'unknown'})"
            + (f", then the device in {plan.mode} mode ({len(plan.items)} measurements)" if plan.items else "")
            + ". Ctrl-C stops and keeps the results so far.")

    bar = ProgressBar(sys.stderr, enabled=not quiet)
    try:
        record = profile_torch_model(resolved, device, dtypes, batch_size=micro_batch, memory_format=memory_format,
                                     sweep=sweep, full=full,
                                     catalog=catalog, command=command, progress=bar, notes=notes, announce=announce,
                                     sustained_s=sustained_s)
    finally:
        bar.close()
    if "torch_model" not in record and not (record.get("matmul") or record.get("mlp")):
        say("Interrupted before anything was measured: nothing written.")
        raise typer.Exit(130)
    existing = existing_calibration(output)  # as it is now, not as it was when the run started
    merged, how = merge_torch_model(record, existing)
    typer.echo(format_torch_model(merged if fmt in ("json", "yaml") else record, fmt))
    target = output_for(merged, output)
    write_calibration(merged, target)
    if record["partial"]:
        kept = f"; {output} (complete) was kept as it was" if target != output else ""
        say(f"Interrupted: the results measured so far were written to {target} (partial: true){kept}.")
        raise typer.Exit(130)
    if how == "merged":
        say(f"Wrote the torch_model section to {target} (its other sections kept)")
    elif how == "replaced":
        say(f"Wrote calibration to {target}; it held a calibration of {existing['device']['name']}, "
            "another device, which this one replaces")
    else:
        say(f"Wrote calibration to {target}")


__all__ = ["format_torch_model", "profile_cli"]
