"""Back-test of the stacks (``--stack``): every measured run in the catalog's ``stack_runs*.yaml``
files (``catalogs/stack_runs.yaml``: real Hugging Face training steps on one H200; other files may
add rows of any stack) estimated with the run's own command, against its measured step time and
peak memory, per stack, the rows the stack's constants were fitted on (``train``) apart from the
ones they were not (``held_out``).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from estimator.catalog.core import Catalog, load_catalog
from estimator.catalog.stacks import StackRun, load_stack_runs, load_stacks
from estimator.request import EstimateRequest

RUNS_GLOB = "stack_runs*.yaml"
TARGET_WITHIN = 0.15  # the single-device target: 80% of rows within 15% on time and on memory


@dataclass(frozen=True, slots=True)
class StackCheck:
    """One measured run: predicted vs measured step time (s) and peak memory (GB), relative errors."""

    id: str
    stack: str
    split: str
    mode: str
    num_gpus: int
    measured_step_time_s: float
    predicted_step_time_s: float
    time_error: float  # predicted / measured - 1
    measured_memory_gb: float | None
    predicted_memory_gb: float
    memory_error: float | None
    source: str


@dataclass(frozen=True, slots=True)
class StackSummary:
    """Errors of one stack on one split."""

    stack: str
    split: str
    at_scale: bool  # runs on more than one device (data, tensor, pipeline parallel), else one device
    num_rows: int
    median_abs_time_error: float
    num_time_within_15pct: int
    num_memory_rows: int
    median_abs_memory_error: float | None
    num_memory_within_15pct: int


@dataclass(frozen=True, slots=True)
class StackValidation:
    rows: tuple[StackCheck, ...]
    summaries: tuple[StackSummary, ...]
    files: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def config_path(run: StackRun, directory: Path) -> Path | None:
    """The run's config.json: ``architectures/<architecture>.json`` or ``hf_config`` beside the runs file."""
    if run.architecture:
        return directory / "architectures" / f"{run.architecture}.json"
    return (directory / run.hf_config).resolve() if run.hf_config else None


def run_args(run: StackRun, directory: Path) -> list[str]:
    """The ``gpucost estimate`` arguments of a measured run (what benchmarks/stack_single_gpu.py prints)."""
    config = config_path(run, directory)
    model = ["--hf-config", str(config)] if config else ["--model", str(run.model)]
    return ["estimate", *model, *run.options()]


def run_mode(run: StackRun) -> str:
    parts = ["bf16" if run.master_weights == "bf16" else "amp"]
    if run.recompute == "full":
        parts.append("ckpt")
    if run.compile:
        parts.append("compile")
    if run.attention_kernel is not None:
        parts.append(run.attention_kernel)
    return "+".join(parts)


def check_stack_run(run: StackRun, catalog: Catalog) -> StackCheck:
    """Estimate one measured run with its own command (in-process) and compare."""
    from estimator.estimate import estimate

    request = EstimateRequest(
        hf_config=config_path(run, catalog.directory),
        model=run.model, gpu=run.accelerator, num_gpus=run.num_gpus, global_batch=run.global_batch,
        micro_batch=run.micro_batch, seq_len=run.seq_len, recompute=run.recompute, precision=run.precision,
        stack=run.stack, compile=run.compile or None, master_weights=run.master_weights,
        tensor_parallel=run.tensor_parallel, pipeline_parallel=run.pipeline_parallel,
        context_parallel=run.context_parallel, expert_parallel=run.expert_parallel,
        virtual_stages=run.virtual_stages, zero_stage=run.zero_stage,
        flash_attention=run.flash_attention, sequence_parallel=run.sequence_parallel,
        attention_kernel=run.attention_kernel, tokens=1e9)
    est = estimate(request, catalog=catalog)
    time = est.step_time_s or 0.0
    memory = est.layouts[0].memory_gb if est.layouts else 0.0
    return StackCheck(id=run.id, stack=run.stack, split=run.split, mode=run_mode(run), num_gpus=run.num_gpus,
                      measured_step_time_s=run.step_time_s, predicted_step_time_s=time,
                      time_error=time / run.step_time_s - 1, measured_memory_gb=run.peak_memory_gb,
                      predicted_memory_gb=memory,
                      memory_error=memory / run.peak_memory_gb - 1 if run.peak_memory_gb else None, source=run.source)


def _summary(stack: str, split: str, at_scale: bool, rows: list[StackCheck]) -> StackSummary:
    times = [abs(r.time_error) for r in rows]
    memories = [abs(r.memory_error) for r in rows if r.memory_error is not None]
    return StackSummary(stack=stack, split=split, at_scale=at_scale, num_rows=len(rows), median_abs_time_error=statistics.median(times),
                        num_time_within_15pct=sum(e <= TARGET_WITHIN for e in times), num_memory_rows=len(memories),
                        median_abs_memory_error=statistics.median(memories) if memories else None,
                        num_memory_within_15pct=sum(e <= TARGET_WITHIN for e in memories))


def stack_runs(catalog: Catalog, files: tuple[Path, ...] | None = None) -> tuple[tuple[StackRun, ...], tuple[Path, ...]]:
    """The measured runs of every ``stack_runs*.yaml`` in the catalog folder (or of ``files``)."""
    stacks = load_stacks(catalog.directory)
    paths = tuple(sorted(catalog.directory.glob(RUNS_GLOB))) if files is None else tuple(files)
    runs: list[StackRun] = []
    for path in paths:
        runs += load_stack_runs(path, stacks)
    return tuple(runs), paths


def validate_stacks(catalog: Catalog | None = None, files: tuple[Path, ...] | None = None) -> StackValidation:
    """Back-test every stack on its measured runs (``gpucost validate``)."""
    catalog = catalog or load_catalog()
    runs, paths = stack_runs(catalog, files)
    rows = tuple(check_stack_run(run, catalog) for run in runs)
    summaries = []
    for at_scale in (False, True):  # one device apart from many: the per-stack error at each
        for stack in dict.fromkeys(r.stack for r in rows):
            for split in ("train", "held_out"):
                chosen = [r for r in rows if r.stack == stack and r.split == split and (r.num_gpus > 1) == at_scale]
                if chosen:
                    summaries.append(_summary(stack, split, at_scale, chosen))
    return StackValidation(rows=rows, summaries=tuple(summaries), files=tuple(p.name for p in paths))


__all__ = ["RUNS_GLOB", "StackCheck", "StackSummary", "StackValidation", "check_stack_run", "run_args", "stack_runs",
           "validate_stacks"]
