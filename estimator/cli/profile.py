"""``gpucost profile``: measure the local device and write a calibration file.

Registered in ``estimator/cli/app.py`` with ``app.command("profile")(profile)``. torch and the profiler
are imported inside the command, so importing the CLI never imports torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from estimator.completion import complete_dtype
from estimator.errors import InputError
from estimator.vocab import DEFAULT_CALIBRATION_FILE, FORMATS, PROFILE_DTYPES as DTYPES, normalize_precision
from estimator.cli.profile_common import _check_output, _command_line, _import_torch, catalog_or_note, format_record

DEVICES = ("auto", "cpu", "cuda")


def parse_dtypes(values: list[str] | None) -> list[str] | None:
    """``["bf16,fp8", "float32"]`` -> ``["bf16", "fp8", "fp32"]`` (the spellings --precision takes
    elsewhere; deduplicated, in order); None stays None. InputError names the bad value."""
    if not values:
        return None
    out: list[str] = []
    for value in values:
        for name in (v.strip() for v in value.split(",")):
            if not name:
                continue
            key = normalize_precision(name, what="--precision", choices=DTYPES)
            if key not in out:
                out.append(key)
    if not out:
        raise InputError(f"--precision is empty; valid values: {', '.join(DTYPES)}")
    return out


def _check_device(device: str) -> str:
    text = device.strip().lower()
    if text in DEVICES or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise InputError(f"unknown --device {device!r}; use one of {', '.join(DEVICES)} (or cuda:N)")


def _resolve_model(model: str | None, hf_config: Path | None) -> tuple[Any, int | None, str, str]:
    """(architecture, the catalog's training seq_len or None, model id, source) for --model or
    --hf-config. Unknown name: UnknownNameError with close matches; no architecture: InputError."""
    from estimator.model.hf_config import architectures_dir
    from estimator.model.report import resolve_architecture as resolve

    if model is not None and hf_config is not None:
        raise InputError("give --model NAME or --hf-config PATH, not both")
    arch, catalog_seq_len = resolve(model, hf_config)
    if hf_config is not None:
        return arch, None, arch.name, str(hf_config)
    folder = architectures_dir()
    if (folder / f"{arch.name}.json").is_file():
        source = f"{folder.parent.name}/architectures/{arch.name}.json"
    else:
        source = f"{folder.parent.name}/models.yaml (inline architecture)"
    return arch, catalog_seq_len, arch.name, source


def profile(
    *,
    device: Annotated[str, typer.Option(
        help="Device to measure: auto (a CUDA GPU if torch sees one, else the CPU), cpu, or cuda (cuda:N).")] = "auto",
    dtype: Annotated[Optional[list[str]], typer.Option(
        "--precision", "--dtype", metavar=f"[{'|'.join(DTYPES)}]", autocompletion=complete_dtype,
        help="Precision to measure (bfloat16, float16, float32 spellings accepted; --dtype is the old name); "
             f"repeat or comma-separate ({', '.join(DTYPES)}). "
             "Default: every one the device supports (CPU quick mode skips fp16, see docs).")] = None,
    full: Annotated[bool, typer.Option(
        "--full",
        help="Thorough sweep: many more matmul shapes and MLP widths (minutes instead of about one).")] = False,
    output: Annotated[Path, typer.Option(
        "--output", "-o", help=f"Calibration file to write (YAML). Default: {DEFAULT_CALIBRATION_FILE} "
                               "in the current directory.")] = Path(DEFAULT_CALIBRATION_FILE),
    format: Annotated[str, typer.Option(
        "--format", "-f", help=f"What to print on stdout: {', '.join(FORMATS)} "
                               "(json and yaml print the same record as the file).")] = "table",
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bar or messages on stderr; results still go to stdout.")] = False,
    model: Annotated[Optional[str], typer.Option(
        help="Time a training step (forward, backward, AdamW) of this catalog model's own layers at its real "
             "widths (see `gpucost models`); only that step runs unless --sweep or --full.")] = None,
    hf_config: Annotated[Optional[Path], typer.Option(
        "--hf-config", help="Like --model, for a Hugging Face config.json read from disk; the file name "
                            "(without .json) is the model id in the calibration file.")] = None,
    seq_len: Annotated[Optional[str], typer.Option(
        help="With --model: sequence length of the timed step (2048, or 2K: K = 1,024 for lengths). Default: "
             "the catalog's training length, else the config's original_max_position_embeddings, else 4,096 "
             "or the context window if shorter.")] = None,
    micro_batch: Annotated[Optional[int], typer.Option(
        help="With --model: sequences per step. Default: the largest power of two that fits in memory and "
             "keeps a step short (a few seconds on a GPU, ~10 s on a CPU).")] = None,
    max_layers: Annotated[Optional[int], typer.Option(
        help="With --model: time at most this many of its layers. Default: all that fit in memory "
             "(embedding and output head are always included).")] = None,
    sweep: Annotated[bool, typer.Option(
        "--sweep", help="With --model: also run the quick device sweep (matmul, MLP, bandwidth); "
                        "--full runs the thorough one.")] = False,
    comm: Annotated[bool, typer.Option(
        "--comm", help="Measure collectives (all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, "
                       "send/recv) over torch.distributed: under torchrun, or with --nproc on this machine "
                       "(see docs/profile.md).")] = False,
    nproc: Annotated[Optional[int], typer.Option(
        help="With --comm and no launcher: start this many local worker processes "
             "(default: the visible GPUs, or 2 on a CPU).")] = None,
    sustained_s: Annotated[Optional[float], typer.Option(
        "--sustained-s", metavar="SECONDS",
        help="After the sweep, run each dtype's best matmul shape and MLP width back to back for this long, as "
             "training does (clocks and power settle; the file records both figures and estimate uses this one). "
             "Default: 5 on a GPU, 1 on a CPU; 0 skips it.")] = None,
    memory_format: Annotated[Optional[str], typer.Option(
        "--memory-format", metavar="[nchw|channels_last]",
        help="With --torch-model: the layout a callable that takes memory_format builds in (builtin:resnet-50: "
             "channels_last on CUDA, nchw on a CPU by default).")] = None,
    torch_model: Annotated[Optional[str], typer.Option(
        "--torch-model", metavar="SPEC",
        help="Time a training step (forward, backward, optimizer) of your own PyTorch model: module:callable, "
             "path/to/file.py:callable (returning (model, batch) or a dict, see docs/profile.md), or "
             "builtin:mnist-mlp / builtin:resnet-50; written to the file's torch_model section.")] = None,
) -> None:
    """Measure what this device delivers (matmul and MLP-training TFLOP/s per dtype, memory
    bandwidth, clocks and throttling) and write a calibration file for `gpucost estimate`.

    Quick mode takes about a minute; Ctrl-C stops early and keeps what was measured (partial: true).
    With --model NAME (or --hf-config PATH) it times a training step of that model's own layers
    instead (about a minute for a small model on a CPU), for `gpucost estimate --calibration`.
    """
    if format not in FORMATS:
        raise InputError(f"unknown --format {format!r}; use one of {', '.join(FORMATS)}")
    device = _check_device(device)
    if sustained_s is not None and not 0 <= sustained_s <= 3600:
        raise InputError(f"--sustained-s must be from 0 to 3600 seconds, got {sustained_s:g}")
    if seq_len is not None:
        from estimator.numbers import parse_seq_len

        seq_len = parse_seq_len(seq_len)
    if torch_model is not None:  # profiler/torch_model/step.py: the user's own nn.Module
        for option, value in (("--model", model), ("--hf-config", hf_config), ("--comm", comm or None),
                              ("--seq-len", seq_len), ("--max-layers", max_layers), ("--nproc", nproc)):
            if value is not None:
                raise InputError(f"{option} does not apply to --torch-model (it times the model the SPEC returns)")
        if micro_batch is not None and micro_batch <= 0:
            raise InputError(f"--micro-batch must be a positive integer, got {micro_batch}")
        dtypes, output = parse_dtypes(dtype), Path(output)
        _check_output(output)
        _import_torch()
        from estimator.cli.profile_torch import profile_cli  # deferred (as profile_comm below): keeps the CLI's start-up light

        if memory_format is not None and memory_format not in ("nchw", "channels_last"):
            raise InputError(f"unknown --memory-format {memory_format!r}; use nchw or channels_last")
        profile_cli(spec=torch_model, device=device, dtypes=dtypes, full=full, sweep=sweep, micro_batch=micro_batch,
                    output=output, fmt=format, quiet=quiet, sustained_s=sustained_s, memory_format=memory_format,
                    command=_command_line(device, dtypes, full, output, format, quiet,
                                          {"torch-model": torch_model, "micro-batch": micro_batch,
                                           "memory-format": memory_format, "sweep": sweep,
                                           "sustained-s": sustained_s}))
        return
    if memory_format is not None:
        raise InputError("--memory-format applies to --torch-model (the layout its callable builds in)")
    if comm:
        from estimator.cli.profile_comm import profile_comm

        for option, value in (("--model", model), ("--hf-config", hf_config), ("--seq-len", seq_len),
                              ("--micro-batch", micro_batch), ("--max-layers", max_layers), ("--sweep", sweep or None),
                              ("--sustained-s", sustained_s)):
            if value is not None:
                raise InputError(f"{option} does not apply to --comm; run the model profile separately")
        profile_comm(device=device, dtypes=parse_dtypes(dtype), full=full, output=Path(output), fmt=format,
                     quiet=quiet, nproc=nproc)
        return
    if nproc is not None:
        raise InputError("--nproc applies to --comm (the collective benchmark)")
    dtypes = parse_dtypes(dtype)
    output = Path(output)
    for option, value in (("--seq-len", seq_len), ("--micro-batch", micro_batch), ("--max-layers", max_layers)):
        if value is not None and value <= 0:
            raise InputError(f"{option} must be a positive integer, got {value}")
    profiling_model = model is not None or hf_config is not None
    if not profiling_model:
        for option, value in (("--seq-len", seq_len), ("--micro-batch", micro_batch), ("--max-layers", max_layers),
                              ("--sweep", sweep or None)):
            if value is not None:
                raise InputError(f"{option} applies to a model profile; add --model NAME or --hf-config PATH")
    arch = None
    if profiling_model:
        arch, catalog_seq_len, model_id, source = _resolve_model(model, hf_config)
        if seq_len is None and catalog_seq_len is None and arch.default_seq_len is None:
            raise InputError(f"{model_id} gives no sequence length; pass --seq-len")
        from estimator.vocab import resolve_seq_len

        seq_len = resolve_seq_len(seq_len, catalog_seq_len, arch.default_seq_len, arch.max_position_embeddings)[0]
        arch.check_seq_len(seq_len)
    _check_output(output)
    _import_torch()
    from profiler.api import profile as run
    from profiler.progress import ProgressBar

    def say(message: str) -> None:
        if not quiet:
            typer.echo(message, err=True)

    notes: list[str] = []
    catalog = catalog_or_note(notes, say)

    def announce(info: Any, plan: Any, model_dtypes: Any) -> None:
        why = " (--device auto: torch sees no CUDA GPU)" if device == "auto" and info.backend == "cpu" else ""
        where = f"{info.backend}; catalog: {info.catalog_id or 'unknown'}"
        if arch is not None:
            say(f"Profiling {model_id}'s training step ({', '.join(model_dtypes) or 'nothing'}, seq_len {seq_len}) "
                f"on {info.name}{why} ({where})"
                + (f", then the device in {plan.mode} mode ({len(plan.items)} measurements)" if plan.items else "")
                + ". Ctrl-C stops and keeps the results so far.")
        else:
            say(f"Profiling {info.name}{why} ({where}) in {plan.mode} mode, {len(plan.items)} measurements"
                f"{', about a minute' if plan.mode == 'quick' else ''}. Ctrl-C stops and keeps the results so far.")

    model_options = {"model": model, "hf-config": hf_config, "seq-len": seq_len, "micro-batch": micro_batch,
                     "max-layers": max_layers, "sweep": sweep} if arch is not None else {}
    model_options["sustained-s"] = f"{sustained_s:g}" if sustained_s is not None else None
    bar = ProgressBar(sys.stderr, enabled=not quiet)
    try:
        record = run(device, dtypes, full=full, arch=arch, model_id=model_id if arch is not None else None,
                     source=source if arch is not None else None, seq_len=seq_len, micro_batch=micro_batch,
                     max_layers=max_layers, sweep=sweep, catalog=catalog, progress=bar, notes=notes,
                     announce=announce, sustained_s=sustained_s,
                     command=_command_line(device, dtypes, full, output, format, quiet, model_options))
    finally:
        bar.close()
    typer.echo(format_record(record, format))
    from estimator.records.calibration import output_for, write_calibration

    target = output_for(record, output)
    write_calibration(record, target)
    if record["partial"]:
        kept = f"; {output} (complete) was kept as it was" if target != output else ""
        say(f"Interrupted: the results measured so far were written to {target} (partial: true){kept}.")
        raise typer.Exit(130)
    say(f"Wrote calibration to {output}")
