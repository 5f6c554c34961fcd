"""``gpucost profile --comm``: measure collectives over torch.distributed and write them to the
calibration file's ``collectives`` section (schema: estimator/records/collectives.py).

Called from ``estimator/cli/profile.py``. torch and the profiler are imported inside the function,
so importing the CLI never imports torch. Under torchrun (RANK, WORLD_SIZE, MASTER_ADDR/PORT in
the environment) this process is one rank; otherwise it starts ``--nproc`` local workers.
Rank 0 prints the result and writes the file; the other ranks print nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from estimator.records.calibration import BENCHMARK_VERSION, SCHEMA_VERSION, dump_calibration, write_calibration
from estimator.records.collectives import format_bytes, format_gbps, format_seconds, summary_rows
from estimator.errors import GpucostError, InputError
from estimator.cli.profile_common import _check_output, _command_line, _import_torch, existing_calibration

TEST_ENV = "GPUCOST_COMM_TEST"  # JSON of CommConfig test/expert hooks (see profiler/comm/worker.py); noted in the file
NOT_MEASURED = "not measured: --comm"
ROW_HEADERS = ("op", "group", "ranks", "dtype", "size", "time (median)", "best", "algbw GB/s", "busbw GB/s", "impl")
COMM_SUMMARY_HEADERS = ("op", "group", "dtype", "large-message busbw GB/s", "small-message latency", "ranks")


def partial_path(output: Path) -> Path:
    """Where a partial run goes when ``output`` holds a complete file: ``cal.yaml`` -> ``cal.partial.yaml``."""
    if output.suffix in (".yaml", ".yml"):
        return output.with_name(f"{output.stem}.partial{output.suffix}")
    return output.with_name(f"{output.name}.partial.yaml")


def _test_hooks() -> dict[str, Any]:
    text = os.environ.get(TEST_ENV)
    if not text:
        return {}
    from profiler.comm.ops import CommConfig

    try:
        hooks = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{TEST_ENV} is not valid JSON: {exc}") from None
    allowed = set(CommConfig.HOOKS) | {"timeout_s", "margin_pct"}
    if not isinstance(hooks, dict) or set(hooks) - allowed:
        raise InputError(f"{TEST_ENV} must be a JSON object with keys among {', '.join(sorted(allowed))}")
    for name in ("ops", "sizes", "emulate", "hosts"):
        if hooks.get(name) is not None:
            hooks[name] = tuple(hooks[name])
    return hooks


def _command(device: str, dtypes: list[str] | None, full: bool, output: Path, fmt: str, quiet: bool,
             nproc: int | None, launcher: str, world_size: int) -> str:
    text = _command_line(device, dtypes, full, output, fmt, quiet, {"comm": True, "nproc": nproc})
    return f"{text} (under torchrun, {world_size} ranks)" if launcher == "torchrun" else text


def build_record(result: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
    """The calibration record to write: ``existing`` with its ``collectives`` replaced, or a new
    record whose device sweep sections are empty (bandwidth ``skipped: not measured: --comm``)."""
    section = result["collectives"]
    if existing is not None:
        record = dict(existing)
        record["collectives"] = section
        record["partial"] = bool(existing["partial"] or section["partial"])
        rank0 = section["ranks"][0]["device"]
        if rank0 != existing["device"]["name"]:
            note = (f"collectives measured on {rank0} ({section['backend']}, {section['world_size']} ranks), "
                    f"a different device from the one above")
            record["notes"] = [n for n in existing["notes"] if not n.startswith("collectives measured on ")] + [note]
        return record
    return {
        "schema_version": SCHEMA_VERSION,
        "benchmark_version": BENCHMARK_VERSION,
        "created_utc": section["created_utc"],
        "command": section["command"],
        "partial": section["partial"],
        "duration_s": section["duration_s"],
        "device": result["device"],
        "software": result["software"],
        "telemetry": result["telemetry"],
        "matmul": {},
        "mlp": {},
        "bandwidth": {"skipped": NOT_MEASURED},
        "notes": [],
        "collectives": section,
    }


def _impl(row: dict[str, Any]) -> str:
    return f"{row['impl']} (emulated)" if row["emulated"] else row["impl"]


def format_comm(record: dict[str, Any], fmt: str) -> str:
    """stdout for ``--comm``: json/yaml the record as in the file; csv one row per measurement;
    table/markdown the measurements, a summary per (op, group, dtype), the cross-check, stragglers, notes."""
    section = record["collectives"]
    if fmt == "json":
        return json.dumps(record, indent=2)
    if fmt == "yaml":
        return dump_calibration(record).rstrip("\n")
    from estimator.render import render

    if fmt == "csv":
        return render([dict(r) for r in section["rows"]], "csv") if section["rows"] else ",".join(
            ("op", "group", "num_ranks", "dtype", "size_bytes", "time_s", "busbw_gbps"))
    style = "markdown" if fmt == "markdown" else "table"
    hosts = sorted({r["host"] for r in section["ranks"]})
    lines = [f"collectives: {section['backend']}, {section['world_size']} ranks on {section['num_nodes']} node(s) "
             f"({', '.join(hosts)}); {section['ranks'][0]['device']}; {section['mode']} sweep; "
             f"{section['duration_s']:.0f} s" + ("; PARTIAL (interrupted)" if section["partial"] else ""), ""]
    rows = [(r["op"], r["group"], r["num_ranks"], r["dtype"], format_bytes(r["size_bytes"]), format_seconds(r["time_s"]),
             format_seconds(r["best_time_s"]), format_gbps(r["algbw_gbps"]), format_gbps(r["busbw_gbps"]), _impl(r))
            for r in section["rows"]]
    lines.append(render({}, style, rows=rows, headers=ROW_HEADERS) if rows else "(no measurements)")
    summary = summary_rows(section)
    if summary:
        lines += ["", "summary per op (busbw: best median over the largest sizes; latency: median time of the "
                      "smallest size):", render({}, style, rows=summary, headers=COMM_SUMMARY_HEADERS)]
    cross = section.get("cross_check")
    if cross:
        lines += ["", f"cross-check: an independent timing loop of dist.all_reduce ({cross['dtype']}, "
                      f"{format_bytes(cross['size_bytes'])}, {cross['iterations']} calls) gives busbw "
                      f"{format_gbps(cross['busbw_gbps'])} GB/s; the benchmark {format_gbps(cross['benchmark_busbw_gbps'])} "
                      f"GB/s ({cross['diff_pct']:+.1f}%)"]
    stragglers = section.get("stragglers")
    if stragglers:
        bench = stragglers["benchmark"]
        per_rank = ", ".join(f"rank {r['rank']} {r['median_tflops']:.4g}" + (" SLOW" if r["slow"] else "")
                             + (" THROTTLED" if r["throttled"] else "") for r in stragglers["ranks"])
        verdict = (f"flagged: rank(s) {', '.join(map(str, stragglers['flagged']))}" if stragglers["flagged"]
                   else f"no rank more than {stragglers['margin_pct']:g}% below the median")
        lines += ["", f"stragglers: {bench['dtype']} matmul {bench['m']}x{bench['n']}x{bench['k']} on every rank at "
                      f"once, median TFLOP/s: {per_rank}; spread {stragglers['spread_pct']:.1f}%; {verdict}"]
    skipped = section.get("skipped") or []
    notes = [f"skipped {s['op']} {s['group']} {s['dtype']}"
             + (f" from {format_bytes(s['size_bytes'])}" if s.get("size_bytes") else "") + f": {s['reason']}"
             for s in skipped] + list(section["notes"])
    if notes:
        lines += ["", "notes:"] + [f"  - {note}" for note in notes]
    return "\n".join(lines)


def profile_comm(*, device: str, dtypes: list[str] | None, full: bool, output: Path, fmt: str, quiet: bool,
                 nproc: int | None) -> None:
    """Run the collective benchmark (under torchrun, or on ``nproc`` local workers) and write the
    ``collectives`` section of ``output``, keeping the file's other sections when it exists."""
    def say(message: str) -> None:
        if not quiet:
            typer.echo(message, err=True)

    output = Path(output)
    _import_torch()
    from profiler.comm.ops import CommConfig, check_dtypes
    from profiler.comm.worker import launch_from_env, run_worker

    hooks = _test_hooks()
    if nproc is not None and nproc < (1 if hooks.get("allow_one_rank") else 2):
        raise InputError(f"--nproc must be at least 2 (the collectives need two ranks), got {nproc}")
    payloads = check_dtypes(dtypes)
    launch = launch_from_env()
    if launch is None or launch.rank == 0:  # only rank 0 writes (its folder may exist on its node only)
        _check_output(output)
        existing_calibration(output)  # fail before measuring, not after, when the file there is not a calibration file
    if launch is not None:  # torchrun: this process is one rank
        if nproc is not None:
            raise InputError("--nproc starts local workers; under torchrun (RANK and WORLD_SIZE are set) leave it "
                             "out and use torchrun's --nproc-per-node")
        command = _command(device, dtypes, full, output, fmt, quiet, nproc, "torchrun", launch.world_size)
        config = CommConfig(device=device, dtypes=payloads, full=full, command=command, quiet=quiet,
                            launcher="torchrun", **hooks)
        result = run_worker(config, launch)
        if launch.rank != 0:
            return
        interrupted = bool(result is None or result["collectives"] is None or result["collectives"]["partial"])
    else:
        import torch

        from profiler.comm.launch import launch_local

        cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise GpucostError(f"--device {device} was requested but torch sees no CUDA GPU "
                               f"(torch {torch.__version__}); use --device cpu")
        if nproc is None:
            nproc = max(torch.cuda.device_count(), 1) if cuda else 2
            if nproc < 2:
                raise InputError("one GPU is visible: the collectives need two ranks; use --device cpu --nproc 2 "
                                 "or run under torchrun across nodes")
        if cuda and nproc > torch.cuda.device_count():
            raise InputError(f"--nproc {nproc}: only {torch.cuda.device_count()} GPU(s) visible (one rank per GPU)")
        command = _command(device, dtypes, full, output, fmt, quiet, nproc, "local", nproc)
        config = CommConfig(device=device, dtypes=payloads, full=full, command=command, quiet=quiet,
                            launcher="local", **hooks)
        say(f"Starting {nproc} local workers ({'nccl' if cuda else 'gloo'}) for the collective benchmark.")
        result, interrupted = launch_local(config, nproc, cuda=cuda)
    section = (result or {}).get("collectives")
    if section is None or (section["partial"] and not section["rows"]):
        say("Interrupted before anything was measured: nothing written.")
        raise typer.Exit(130)
    existing = existing_calibration(output)  # as it is now, not as it was when the run started
    record = build_record(result, existing)
    target = output
    if record["collectives"]["partial"] and existing is not None and not existing["partial"]:
        target = partial_path(output)
    typer.echo(format_comm(record, fmt))
    write_calibration(record, target)
    if interrupted or record["collectives"]["partial"]:
        if target != output:
            say(f"Interrupted: {output} is complete and was left as it was; the results measured so far were "
                f"written beside it to {target} (partial: true).")
        else:
            say(f"Interrupted: the results measured so far were written to {target} (partial: true).")
        raise typer.Exit(130)
    say(f"Wrote the collectives section to {target}"
        + (" (its other sections kept)" if existing is not None else ""))
    sys.stderr.flush()
