"""``gpucost models`` and ``gpucost models show``: the model catalog, and one model's parameters,
FLOPs per token and training memory."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from estimator.errors import InputError
from estimator.vocab import RECOMPUTE_MODES
from estimator.completion import complete_gpu, complete_model
from estimator.vocab import FORMATS as SHOW_FORMATS
from estimator.cli.options import Format, Wide, choices_metavar, completer, terminal_width

if TYPE_CHECKING:
    from estimator.model.report import ModelReport

# memory.py's defaults, repeated as literals so that importing the CLI does not load the memory model
# (tests/test_arch_show.py checks they agree)
DEFAULT_WEIGHT_BYTES, DEFAULT_GRAD_BYTES, DEFAULT_OPTIMIZER_BYTES, DEFAULT_RESERVE_GB = 2.0, 2.0, 12.0, 2.0


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _gb(value: float) -> str:
    return f"{value:,.2f}"


def render_report(report: ModelReport, fmt: str, width: int | None = None) -> str:
    """Render a :class:`~estimator.model.report.ModelReport`: tables (table/markdown) or json/yaml/csv;
    with ``width`` (a terminal's), the tables and titles are fitted to it."""
    if fmt not in SHOW_FORMATS:
        raise InputError(f"unknown --format {fmt!r}; use one of {', '.join(SHOW_FORMATS)}")
    if fmt in ("json", "yaml", "csv"):
        from estimator.render import render

        from estimator.estimate import SCHEMA_VERSION

        data = report.to_dict()
        return render({"schema_version": SCHEMA_VERSION, **data} if fmt != "csv" else data, fmt)
    from tabulate import tabulate

    style = "github" if fmt == "markdown" else "simple"

    if fmt != "table":
        width = None

    def table(rows: list, headers: list[str], align: tuple[str, ...] | None = None) -> str:
        if width is not None:
            from estimator.render import fit_table

            rows, headers, _ = fit_table(rows, headers, width)
        return tabulate(rows, headers=headers, tablefmt=style, disable_numparse=True,
                        colalign=align or ("left",) + ("right",) * (len(headers) - 1))

    def title(text: str) -> str:
        from estimator.cli.options import paragraph

        return paragraph(text, width)

    a = report.architecture
    heading = (f"{report.model} ({a['model_type']}): {a['num_layers']} layers, d_model {a['hidden_size']}, "
             f"{a['num_heads']} heads / {a['num_kv_heads']} KV, FFN {a['ffn_size']}"
             f"{' SwiGLU' if a['gated_ffn'] else ''}, vocab {a['vocab_size']}")
    if "moe" in a:
        m = a["moe"]
        heading += (f"; MoE {m['num_experts']} experts, top-{m['experts_per_token']}"
                  f"{', ' + str(m['num_shared_experts']) + ' shared' if m['num_shared_experts'] else ''}"
                  f", {m['num_moe_layers']} MoE layers")
    parts = [title(heading), ""]

    total, active = report.params_breakdown, report.params_active_breakdown
    rows = [(k, _n(v), _n(active.get(k, 0))) for k, v in total.items()]
    rows.append(("total", _n(report.params_total), _n(report.params_active)))
    if report.params_mtp_total is not None:
        rows.append(("MTP modules (not in total)", _n(report.params_mtp_total), _n(report.params_mtp_active)))
    parts += ["Parameters", table(rows, ["component", "total", "active"]), ""]

    f = report.flops_per_token
    attn = "causal (halved)" if report.causal else "full s x s matrix (PaLM convention; --causal halves it)"
    rows = [(k, f"{v:.4g}") for k, v in f.forward_breakdown.items()]
    rows += [
        ("forward", f"{f.forward:.4g}"),
        ("train, model FLOPs (3 x forward)", f"{f.train_model:.4g}"),
        (f"train, hardware (recompute: {f.recompute})", f"{f.train_hardware:.4g}"),
        ("6N (N = active params)", f"{f.six_n:.4g}"),
        ("PaLM 6N + 12LHQT", f"{f.palm_6n_12lhqt:.4g}"),
        ("detailed / 6N", f"{f.detailed_over_six_n:.3f}"),
    ]
    if f.mtp_forward is not None:
        rows.append(("MTP forward (not included)", f"{f.mtp_forward:.4g}"))
    parts += [title(f"FLOPs per token at seq_len {report.seq_len} ({report.seq_len_source}); attention: {attn}"),
              table(rows, ["quantity", "FLOPs/token"]), ""]

    m = report.memory
    p = m.parallel
    b = m.bytes_per_param
    sp = " + sequence parallel" if p["sequence_parallel"] and p["tensor"] > 1 else ""
    layout = (f"data {p['data']}, tensor {p['tensor']}{sp}, "
              f"pipeline {p['pipeline']}, expert {p['expert']}, ZeRO stage {p['zero_stage']}")
    rows = [
        ("weights", _gb(m.weights_gb), f"{b['weights']:g} B/param"),
        ("gradients", _gb(m.gradients_gb), f"{b['gradients']:g} B/param"),
        ("optimizer states", _gb(m.optimizer_gb), f"{b['optimizer']:g} B/param (AdamW: fp32 master, m, v)"),
        ("activations", _gb(m.activations_gb),
         f"micro-batch {m.micro_batch}, recompute {m.recompute}, "
         f"flash attention {'on' if m.flash_attention else 'off'} (Korthikanti et al. 2022)"),
        ("total", _gb(m.total_gb), f"{_n(m.params_per_device)} params on this device"),
    ]
    parts += [title(f"Training memory per device (most loaded; GB = 1e9 bytes): {layout}"),
              table(rows, ["item", "GB", "assumption"], ("left", "right", "left"))]

    if report.fit is not None:
        fit = report.fit
        rows = [
            ("device", fit.gpu),
            ("capacity", f"{fit.memory_gb:g} GB as the datasheet counts (GiB) = {fit.usable_gb + fit.reserve_gb:.2f} GB, "
                         f"{fit.reserve_gb:g} GB reserved -> {fit.usable_gb:.2f} GB usable"),
            ("this layout", f"{fit.required_gb:.2f} GB: {'fits' if fit.fits else 'does NOT fit'}"),
        ]
        if fit.min_devices is None:
            rows.append(("minimum devices", fit.min_devices_note))
        else:
            lay = fit.min_layout
            rows.append(("minimum devices", f"{fit.min_devices} (data {lay['data']}, tensor {lay['tensor']}, "
                                            f"pipeline {lay['pipeline']}, expert {lay['expert']}, ZeRO "
                                            f"{lay['zero_stage']}: {lay['required_gb']:.2f} GB each)"))
        parts += ["", "Fit check", table(rows, ["", ""], ("left", "left"))]
    return "\n".join(parts)


def show(
    name: Annotated[Optional[str], typer.Argument(autocompletion=complete_model, help="Catalog model id or alias, e.g. llama-3.1-70b.")] = None,
    *,
    hf_config: Annotated[Optional[Path], typer.Option("--hf-config", help="A Hugging Face config.json to read instead of a catalog model (read from disk; no network).")] = None,
    seq_len: Annotated[Optional[str], typer.Option(help="Sequence length in tokens (8192, or 8K: K = 1,024 and M = 1,048,576 for lengths, as model cards write them). Default: the catalog's pre-training length, else the config's original_max_position_embeddings, else 4,096 or the context window if shorter.")] = None,
    micro_batch: Annotated[int, typer.Option(help="Micro-batch size per device (sequences) for activation memory.")] = 1,
    data_parallel: Annotated[int, typer.Option(help="Data-parallel size (ZeRO shards over it).")] = 1,
    tensor_parallel: Annotated[Optional[int], typer.Option(help="Tensor-parallel size. Default 1; the --gpu device search tries 1-8 unless given.")] = None,
    pipeline_parallel: Annotated[Optional[int], typer.Option(help="Pipeline-parallel size. Default 1; the --gpu device search tries divisors of the layer count unless given.")] = None,
    expert_parallel: Annotated[Optional[int], typer.Option(help="Expert-parallel size (MoE; must divide --data-parallel). Default 1; searched for --gpu unless given.")] = None,
    sequence_parallel: Annotated[bool, typer.Option("--sequence-parallel/--no-sequence-parallel", help="Megatron sequence parallelism with tensor parallelism (Korthikanti et al. 2022).")] = False,
    zero_stage: Annotated[int, typer.Option(help="ZeRO stage 0-3: 1 shards optimizer states, 2 also gradients, 3 also weights over data-parallel ranks.")] = 0,
    recompute: Annotated[str, typer.Option(metavar=choices_metavar(RECOMPUTE_MODES), autocompletion=completer(RECOMPUTE_MODES), show_default=True, help="Activation recomputation (selective = attention scores only).")] = "none",
    flash_attention: Annotated[bool, typer.Option("--flash-attention/--no-flash-attention", help="Fused kernels: an attention kernel that stores no s x s scores, and a SwiGLU that saves only its input.")] = False,
    causal: Annotated[bool, typer.Option("--causal/--no-causal", help="Halve the attention-score FLOPs for causal masking. Default off: the full s x s matrix (PaLM appendix B).")] = False,
    gpu: Annotated[Optional[str], typer.Option(autocompletion=complete_gpu, help="Catalog GPU for a fit check and the minimum device count, e.g. h100-sxm.")] = None,
    reserve_gb: Annotated[float, typer.Option(help="GB per device kept back from the run (CUDA context, NCCL buffers) in the fit check.")] = DEFAULT_RESERVE_GB,
    weight_bytes: Annotated[float, typer.Option(help="Bytes per parameter for weights (bf16: 2).")] = DEFAULT_WEIGHT_BYTES,
    grad_bytes: Annotated[float, typer.Option(help="Bytes per parameter for gradients (bf16: 2).")] = DEFAULT_GRAD_BYTES,
    optimizer_bytes: Annotated[float, typer.Option(help="Bytes per parameter for optimizer states (AdamW mixed precision: 12).")] = DEFAULT_OPTIMIZER_BYTES,
    mlm_head: Annotated[bool, typer.Option("--mlm-head/--no-mlm-head", help="BERT: count the masked-LM head (BertForMaskedLM) too.")] = False,
    format: Format = "table",
    wide: Wide = False,
) -> None:
    """Show a model's exact parameter breakdown, FLOPs per token (forward/train, 6N vs detailed)
    and training memory per device, optionally with a fit check on a GPU."""
    from estimator.model.memory import Parallelism
    from estimator.model.report import model_report, resolve_architecture

    if format not in SHOW_FORMATS:
        raise InputError(f"unknown --format {format!r}; use one of {', '.join(SHOW_FORMATS)}")
    if recompute not in RECOMPUTE_MODES:
        raise InputError(f"unknown --recompute {recompute!r}; use one of {', '.join(RECOMPUTE_MODES)}")
    arch, catalog_seq_len = resolve_architecture(name, hf_config, mlm_head=mlm_head)
    from estimator.numbers import parse_seq_len
    from estimator.vocab import resolve_seq_len

    given = parse_seq_len(seq_len) if seq_len is not None else None
    if given is None and catalog_seq_len is None and arch.default_seq_len is None:
        raise InputError("the config gives no sequence length; pass --seq-len")
    seq_len, source = resolve_seq_len(given, catalog_seq_len, arch.default_seq_len, arch.max_position_embeddings)
    for option, value in (("--tensor-parallel", tensor_parallel), ("--pipeline-parallel", pipeline_parallel),
                          ("--expert-parallel", expert_parallel)):
        if value is not None and value < 1:
            raise InputError(f"{option} must be a positive whole number, got {value}")
    for option, value in (("--reserve-gb", reserve_gb), ("--weight-bytes", weight_bytes),
                          ("--grad-bytes", grad_bytes), ("--optimizer-bytes", optimizer_bytes)):
        if not math.isfinite(value) or value < 0:
            raise InputError(f"{option} must be a finite, non-negative number, got {value}")
    parallel = Parallelism(data=data_parallel, tensor=tensor_parallel or 1, pipeline=pipeline_parallel or 1,
                           expert=expert_parallel or 1, sequence_parallel=sequence_parallel, zero_stage=zero_stage)
    accelerator = None
    if gpu is not None:
        from estimator.catalog.core import load_catalog

        accelerator = load_catalog().accelerator(gpu)
    report = model_report(
        arch, seq_len=seq_len, seq_len_source=source, causal=causal, recompute=recompute, micro_batch=micro_batch,
        parallel=parallel, flash_attention=flash_attention, weight_bytes=weight_bytes, grad_bytes=grad_bytes,
        optimizer_bytes=optimizer_bytes, gpu=accelerator, reserve_gb=reserve_gb,
        search={"tensor": tensor_parallel, "pipeline": pipeline_parallel, "expert": expert_parallel},
    )
    typer.echo(render_report(report, format, terminal_width(wide)))


__all__ = ["render_report", "show"]
