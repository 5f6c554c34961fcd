"""Back-test of the step-time model: each published layout in ``catalogs/layout_runs.yaml``
(Narayanan et al. 2021 Table 1, Korthikanti et al. 2022 Table 5, Llama 3 Table 4, DeepSeek-V3)
timed by :mod:`estimator.timing.step` with the row's own layout, against the step time its reported
figure implies by its source's own FLOPs formula (:func:`estimator.catalog.systems.implied_step_time_s`).

A row that does not publish its micro-batch, recompute mode or interleaving (chunks per pipeline
stage: 1, 2 or 4) gets the fastest that fits memory, as a tuned run would. The 2021-22 Megatron rows computed the full attention matrix (no fused
flash-attention kernel); later rows use one.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from estimator.model.arch import Architecture
from estimator.catalog.core import Catalog, load_catalog
from estimator.errors import InputError
from estimator.timing.layout import Layout
from estimator.timing.roofline import Constants, shape_of
from estimator.timing.step import layout_memory_gb, time_layout
from estimator.timing.comm import links_for
from estimator.vocab import RECOMPUTE_MODES

UNFUSED_ATTENTION_SOURCES = ("narayanan2021", "korthikanti2022")


@dataclass(frozen=True, slots=True)
class StepCheck:
    """One published layout: the predicted and the implied step time (s) and the relative error."""

    id: str
    source_table: str
    accelerator: str
    num_devices: int
    layout: str
    implied_step_time_s: float
    predicted_step_time_s: float
    error: float  # (predicted - implied) / implied
    predicted_mfu: float | None
    source: str


@dataclass(frozen=True, slots=True)
class StepValidation:
    rows: tuple[StepCheck, ...]
    median_abs_error: float
    mean_abs_error: float
    max_abs_error: float
    num_within_10pct: int
    num_within_25pct: int

    def to_dict(self) -> dict:
        return asdict(self)


def run_architecture(run, catalog: Catalog) -> Architecture:
    """The architecture of a layout row: a catalog architecture by id, else GPT-style from its shape
    (Megatron-LM's GPT: learned positions, LayerNorm, biases, tied embeddings; SwiGLU rows take
    the Llama conventions: rotary, RMSNorm, no biases)."""
    if run.architecture:
        from estimator.model.hf_config import load_architecture

        arch = load_architecture(run.architecture, catalog.directory / "architectures")
        if arch is None:
            raise InputError(f"layout_runs.yaml: {run.id}: no architecture file {run.architecture}.json")
        return arch
    gated = bool(run.gated_ffn)
    return Architecture(
        name=run.model, model_type="gpt", num_layers=run.num_layers, hidden_size=run.hidden_size,
        num_heads=run.num_heads, num_kv_heads=run.kv_heads, head_dim=run.hidden_size // run.num_heads,
        ffn_size=run.ffn or 4 * run.hidden_size, vocab_size=run.vocab_size, gated_ffn=gated,
        tie_embeddings=not gated, position_embedding="rotary" if gated else "learned",
        max_position_embeddings=None if gated else run.seq_len, qkv_bias=not gated, attn_out_bias=not gated,
        mlp_bias=not gated, norm="rmsnorm" if gated else "layernorm", causal=True)


def check_layout_run(run, catalog: Catalog, constants: Constants = Constants()) -> StepCheck:
    """Time one published layout with the step model and compare it with the implied step time."""
    from estimator.catalog.systems import implied_step_time_s

    arch = run_architecture(run, catalog)
    acc = catalog.accelerator(run.accelerator)
    links = links_for(catalog.system(run.system))
    shape = shape_of(arch, run.seq_len)
    flash = not run.source_table.startswith(UNFUSED_ATTENTION_SOURCES)
    per_rank = run.global_batch // run.data_parallel
    micros = [run.micro_batch] if run.micro_batch else [b for b in (1, 2, 4, 8) if per_rank % b == 0]
    recomputes = [run.recompute] if run.recompute else list(RECOMPUTE_MODES)
    if run.virtual_stages:
        chunks = [run.virtual_stages]
    elif run.pipeline_parallel > 1:  # interleaving not published: the best of 1, 2 and 4 chunks per stage
        chunks = [1, 2, 4]
    else:
        chunks = [1]
    best = best_any = None
    for b, v in ((b, v) for b in micros for v in chunks):
        for r in recomputes:
            layout = Layout(tensor_parallel=run.tensor_parallel, pipeline_parallel=run.pipeline_parallel,
                            data_parallel=run.data_parallel, context_parallel=run.context_parallel,
                            expert_parallel=run.expert_parallel, micro_batch=b, global_batch=run.global_batch,
                            recompute=r, zero_stage=run.zero_stage or 0,
                            sequence_parallel=bool(run.sequence_parallel) if run.sequence_parallel is not None
                            else False, virtual_stages=v)
            timed = time_layout(shape, layout, acc, run.precision, links, flash_attention=flash, constants=constants)
            if best_any is None or timed.step_time_s < best_any.step_time_s:
                best_any = timed
            if layout_memory_gb(arch, layout, run.seq_len, flash_attention=flash) > acc.memory_gb - 2:
                continue
            if best is None or timed.step_time_s < best.step_time_s:
                best = timed
    # the run happened, so when the memory model holds none of the open choices, take the fastest
    best = best or best_any
    implied = implied_step_time_s(run)
    return StepCheck(id=run.id, source_table=run.source_table, accelerator=acc.id, num_devices=run.num_devices,
                     layout=best.layout.describe(), implied_step_time_s=implied,
                     predicted_step_time_s=best.step_time_s, error=best.step_time_s / implied - 1,
                     predicted_mfu=best.mfu, source=run.source)


def validate_step(catalog: Catalog | None = None, constants: Constants = Constants()) -> StepValidation:
    """Back-test the step model on every published layout (``gpucost validate``)."""
    from estimator.catalog.systems import load_layout_runs

    catalog = catalog or load_catalog()
    rows = tuple(check_layout_run(run, catalog, constants) for run in load_layout_runs(catalog.directory))
    errors = [abs(r.error) for r in rows]
    return StepValidation(rows=rows, median_abs_error=statistics.median(errors), mean_abs_error=statistics.fmean(errors),
                          max_abs_error=max(errors), num_within_10pct=sum(e <= 0.10 for e in errors),
                          num_within_25pct=sum(e <= 0.25 for e in errors))


__all__ = ["StepCheck", "StepValidation", "check_layout_run", "run_architecture", "validate_step"]
