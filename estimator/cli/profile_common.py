"""Helpers shared by the three ``gpucost profile`` modules (profile.py: the device sweep and the
model step; profile_comm.py: --comm; profile_torch.py: --torch-model), which import them from here
so that none of the three imports another's internals. Everything heavy (the calibration module,
the catalog, the renderer) is imported inside the function that needs it, so importing the CLI
stays fast and never imports torch.
"""

from __future__ import annotations

import json
import os
import shlex
import warnings
from pathlib import Path
from typing import Any

from estimator.errors import CatalogError, GpucostError, InputError
from estimator.vocab import DEFAULT_CALIBRATION_FILE

# gpucost is installed from a checkout (it is not on PyPI): torch first, the build this machine needs
NO_TORCH = ("torch is not installed; from the gpucost checkout run: pip install torch==2.13.0 --index-url "
            "https://download.pytorch.org/whl/cpu (CPU; for a GPU, the CUDA build from pytorch.org/get-started) "
            "&& pip install \".[profile]\"")
# The device sweep's summary table (format_record): one row per benchmark and dtype.
SUMMARY_HEADERS = ("benchmark", "dtype", "best", "median", "peak", "% of peak", "detail")


def _check_output(output: Path) -> None:
    """Fail before measuring, not after a long run, when the file cannot be written."""
    folder = output.parent if str(output.parent) else Path(".")
    if output.is_dir():
        raise InputError(f"--output {output} is a directory; give a file name, "
                         f"e.g. {output / DEFAULT_CALIBRATION_FILE}")
    if not folder.is_dir():
        raise InputError(f"--output {output}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"--output {output}: folder {folder} is not writable")


def _command_line(device: str, dtypes: list[str] | None, full: bool, output: Path, fmt: str, quiet: bool,
                  model: dict[str, Any] | None = None) -> str:
    parts = ["gpucost", "profile", "--device", device]
    for option, value in (model or {}).items():
        if value is True:
            parts.append(f"--{option}")
        elif value is not None and value is not False:
            parts += [f"--{option}", str(value)]
    if dtypes:
        parts += ["--precision", ",".join(dtypes)]
    if full:
        parts.append("--full")
    parts += ["--output", str(output)]
    if fmt != "table":
        parts += ["--format", fmt]
    if quiet:
        parts.append("--quiet")
    return " ".join(shlex.quote(p) for p in parts)


def _import_torch() -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Failed to initialize NumPy" from CPU wheels
            import torch  # noqa: F401  (only: is it installed?)
    except ImportError as exc:
        raise GpucostError(NO_TORCH) from exc


def _summary_rows(record: dict[str, Any]) -> list:
    from estimator.records.calibration import summary_rows

    return summary_rows(record)


def catalog_or_note(notes: list[str], say: Any) -> Any:
    """The catalog, or None with a note (and a warning through ``say``) when it cannot be loaded:
    a profile still runs, and reports the device as unknown."""
    from estimator.catalog.core import load_catalog

    try:
        return load_catalog()
    except CatalogError as exc:
        notes.append(f"the accelerator catalog could not be loaded ({exc}); the device is reported as unknown")
        say(f"Warning: {notes[-1]}")
        return None


def format_record(record: dict[str, Any], fmt: str) -> str:
    """The record for stdout: json/yaml as in the file, table/markdown/csv as the summary rows."""
    if fmt == "json":
        return json.dumps(record, indent=2)
    if fmt == "yaml":
        from estimator.records.calibration import dump_calibration

        return dump_calibration(record).rstrip("\n")
    from estimator.cli.options import terminal_width
    from estimator.render import render

    if fmt == "csv":  # one row per measurement, as in the table
        from estimator.records.profile_rows import shape_rows

        return render(shape_rows(record), "csv")  # one row per shape, width, model step, copy and collective

    device = record["device"]
    telemetry = record["telemetry"]
    where = f"{device['backend']}"
    if device.get("num_threads"):
        where += f", {device['num_threads']} threads used; {device.get('num_cores', '?')} cores, " \
                 f"{device.get('num_logical_cpus', '?')} logical CPUs"
    if device.get("compute_capability"):
        where += f", compute capability {device['compute_capability']}"
    throttled = {True: f"YES ({', '.join(telemetry['reasons'])})", False: "no",
                 None: "unknown"}[telemetry["throttled"]]
    clock = telemetry.get("clock_mhz")
    clock_text = f"clock {clock['min']:.0f}-{clock['max']:.0f} MHz" if clock else "clock not read"
    lines = [
        f"device: {device['name']} ({where}); catalog: {device['catalog_id'] or 'unknown (no datasheet peak)'}",
        f"torch {record['software'].get('torch')}"
        + (f", CUDA {record['software']['cuda']}" if record["software"].get("cuda") else "")
        + (f", driver {record['software']['driver']}" if record["software"].get("driver") else "")
        + f"; {record['duration_s']:.0f} s" + ("; PARTIAL (interrupted)" if record["partial"] else "")
        + f"; {clock_text}; throttled: {throttled}",
        "",
        render({}, "markdown" if fmt == "markdown" else "table", rows=_summary_rows(record), headers=SUMMARY_HEADERS,
               width=terminal_width() if fmt == "table" else None),
    ]
    model = record.get("model")
    if model:
        for dtype, result in model["results"].items():
            if "tokens_per_s" in result:
                lines.append(f"{model['id']} {dtype}: {result['tokens_per_s']:,.4g} tokens/s (median), "
                             f"{result['flops_per_token']:.4g} training FLOPs per token of the timed stack, "
                             f"{result['iterations']} steps")
    notes = list(record["notes"]) + [f"{model['id']}: {note}" for note in (model or {}).get("notes", [])]
    if notes:
        lines += ["", "notes:"] + [f"  - {note}" for note in notes]
    return "\n".join(lines)


def existing_calibration(output: Path) -> dict[str, Any] | None:
    """The valid calibration file already at ``output`` (its other sections are kept), None if absent."""
    if not output.exists():
        return None
    from estimator.records.calibration import read_calibration

    try:
        return read_calibration(output)
    except CatalogError as exc:
        raise InputError(f"--output {output} exists and is not a valid calibration file ({exc}); "
                         "remove it or choose another file") from None


__all__ = ["NO_TORCH", "SUMMARY_HEADERS", "_check_output", "_command_line", "_import_torch", "catalog_or_note",
           "existing_calibration", "format_record"]
