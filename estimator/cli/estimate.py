"""``gpucost estimate`` and ``gpucost compare``: build an EstimateRequest from the flags, answer
it, render it.

No ``from __future__ import annotations`` here: typer reads every option's annotation at each start,
and string annotations cost a compile and an eval each (about 2 ms of a cold ``gpucost estimate``,
benchmarks/cold_start.py)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from estimator.catalog.core import load_catalog
from estimator.errors import InputError
from estimator.estimate import Estimate, estimate
from estimator.timing.layout import describe_layout
from estimator.numbers import DURATION_UNITS_TEXT, count, days, si, usd
from estimator.render import render
from estimator.request import DEFAULT_ELECTRICITY_USD_PER_KWH, DEFAULT_GPU, DEFAULT_LIFE_YEARS, DEFAULT_PUE, EstimateRequest
from estimator.vocab import DEFAULT_PRECISION, FINETUNE_METHODS, PRECISIONS, RECOMPUTE_MODES, FlopsMethod, TimeModel

FLOPS_METHODS = tuple(m.value for m in FlopsMethod)
TIME_MODELS = tuple(m.value for m in TimeModel)
from estimator.completion import (complete_dataset, complete_gpu, complete_model, complete_precision, complete_provider, complete_system)
from estimator.cli.options import (Format, Wide, check_format, choices_metavar, completer, paragraph, records, terminal_width,
                                   wrap_list)

COUNT = "a whole number; 1K = 1,000"
Model = Annotated[Optional[str], typer.Option(autocompletion=complete_model, help="Catalog model (see `gpucost models`), e.g. gpt3-175b, deepseek-v3.")]
HfConfig = Annotated[Optional[Path], typer.Option(help="A Hugging Face config.json instead of a catalog model (exact parameters, detailed FLOPs, memory check, step-time model).")]
Params = Annotated[Optional[str], typer.Option(help="Total parameters, e.g. 175B or 1.75e11.")]
ActiveParams = Annotated[Optional[str], typer.Option(help="Parameters active per token (MoE), e.g. 37B. Default: all.")]
Flops = Annotated[Optional[str], typer.Option(help="Total training FLOPs instead of a model, e.g. 3.15e23.")]
Tokens = Annotated[Optional[str], typer.Option(help="Training tokens, e.g. 300B. Default: the model's published count.")]
FlopsMethodOpt = Annotated[str, typer.Option("--flops-method", metavar=choices_metavar(FLOPS_METHODS), autocompletion=completer(FLOPS_METHODS), show_default=True, help="FLOPs for the time: 6nd (Kaplan; the MFU defaults are derived with it) or detailed (needs a model with an architecture).")]
SeqLen = Annotated[Optional[str], typer.Option(help="Training sequence length in tokens (8192, or 8K: K = 1,024 and M = 1,048,576 for lengths, as model cards write them; 128K = 131,072) for the detailed FLOPs, memory and the step model. Default: the catalog's published pre-training length, else the config's original_max_position_embeddings, else 4,096 (or the context window if shorter), as the assumptions say.")]
Precision = Annotated[str, typer.Option(metavar=choices_metavar(PRECISIONS), autocompletion=complete_precision, show_default=True, help="Training precision (bfloat16, float16, float32, tf32 spellings accepted); picks the dense peak.")]
NumGpus = Annotated[Optional[str], typer.Option(help=f"Number of devices ({COUNT}). Default: 1.")]
NumGpusList = Annotated[Optional[list[str]], typer.Option("--num-gpus", help=f"Number of devices ({COUNT}); repeat it for a scaling table (--num-gpus 256 --num-gpus 1024). Default: 1.")]
Mfu = Annotated[Optional[float], typer.Option(help="Model FLOPs utilisation while training: fraction of the dense peak, in (0, 1] (the flat time model). Default: by kind of run (see `gpucost validate`), printed.")]
Tflops = Annotated[Optional[str], typer.Option(help="Achieved TFLOP/s per device (the flat time model, instead of --mfu).")]
GpuHours = Annotated[Optional[str], typer.Option(help="Reported device-hours: report the throughput and MFU they imply (the inverse question).")]
Calibration = Annotated[Optional[Path], typer.Option(help="A `gpucost profile` file: take the throughput from what was measured (see docs/profile.md, Calibrated estimates).")]
Price = Annotated[Optional[str], typer.Option(help="USD per device-hour. Default: the catalog's default offer for the GPU.")]
Provider = Annotated[Optional[str], typer.Option(autocompletion=complete_provider, help="Take the price from this provider (or price id) in the catalog, e.g. aws, lambda.")]
Deadline = Annotated[Optional[str], typer.Option(help=f"Finish within this wall-clock time, e.g. 30d or 12h (units: {DURATION_UNITS_TEXT}): answers the devices needed.")]
Budget = Annotated[Optional[str], typer.Option(help="USD to spend (1M, 250K): answers the tokens it buys for the model, or with --chinchilla the compute-optimal size.")]
Pue = Annotated[float, typer.Option(show_default=True, help="Power usage effectiveness for energy (facility / IT power), 1-10.")]
TimeModelOpt = Annotated[Optional[str], typer.Option("--time-model", metavar=choices_metavar(TIME_MODELS), autocompletion=completer(TIME_MODELS), help="step (parallel layout, communication, bubble; the default when the architecture is known) or flat (device-hours / devices at one MFU).")]
System = Annotated[Optional[str], typer.Option(autocompletion=complete_system, help="Node type (see `gpucost systems`), e.g. dgx-h100. Default: the accelerator's default system.")]
TP = Annotated[Optional[str], typer.Option("--tensor-parallel", help="Tensor-parallel size (within a node). Default: searched.")]
PP = Annotated[Optional[str], typer.Option("--pipeline-parallel", help="Pipeline-parallel size (divides the layers). Default: searched.")]
VP = Annotated[Optional[str], typer.Option("--virtual-stages", help="Interleaved chunks per pipeline stage (Megatron's virtual pipeline size; 1: no interleaving, as in DeepSpeed's and GPipe's schedules). Default: searched (1, 2 or 4).")]
CP = Annotated[Optional[str], typer.Option("--context-parallel", help="Context-parallel size (splits the sequence). Default: searched for long sequences, else 1.")]
EP = Annotated[Optional[str], typer.Option("--expert-parallel", help="Expert-parallel size (MoE; divides the experts and the data-parallel size). Default: searched.")]
Zero = Annotated[Optional[int], typer.Option("--zero-stage", help="ZeRO stage 0-3 over the data-parallel ranks (1: the distributed optimizer). Default: searched.")]
GlobalBatch = Annotated[Optional[str], typer.Option(help="Sequences per optimizer step. Default: the model's published batch, else about 4M tokens (printed).")]
MicroBatch = Annotated[Optional[str], typer.Option(help="Sequences per micro-batch per pipeline. Default: searched.")]
Finetune = Annotated[Optional[str], typer.Option(metavar=choices_metavar(FINETUNE_METHODS), autocompletion=completer(FINETUNE_METHODS), help="Fine-tune the model: full (every weight), lora (adapters on frozen bf16 weights) or qlora (adapters on frozen 4-bit NF4 weights). Sets a fine-tuning batch (32 sequences, or the dataset's published one) and sequence length (the dataset's, else 2048).")]
LoraRank = Annotated[Optional[str], typer.Option(help="LoRA rank r (with --finetune lora/qlora). Default: 16.")]
LoraTargets = Annotated[Optional[str], typer.Option(help="Projections LoRA adapts, comma-separated from q,k,v,o,gate,up,down, or all. Default: all of them (every linear projection of the blocks).")]
Recompute = Annotated[Optional[str], typer.Option(metavar=choices_metavar(RECOMPUTE_MODES), autocompletion=completer(RECOMPUTE_MODES), help="Activation recomputation. Default: searched.")]
SeqParallel = Annotated[Optional[bool], typer.Option("--sequence-parallel/--no-sequence-parallel", help="Megatron sequence parallelism with tensor parallelism (Korthikanti et al. 2022). Default: on.")]
FlashAttention = Annotated[Optional[bool], typer.Option("--flash-attention/--no-flash-attention", help="Megatron-family fused kernels: an attention kernel (FlashAttention) that keeps the scores on chip, and a SwiGLU that saves only its input. Default: on; off for 2021-22 era stacks.")]
StackOpt = Annotated[Optional[str], typer.Option("--stack", metavar="[megatron|deepspeed|fsdp|hf]", help="The training software (see `gpucost stacks`): what it launches and keeps per layer, and the parallelism it runs. Default: megatron.")]
CompileOpt = Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile (with --stack fsdp or hf). Default: off.")]
AttentionKernel = Annotated[Optional[str], typer.Option("--attention-kernel", metavar="[flash2|flash1]", help="The attention kernel (with --stack fsdp or hf; see `gpucost stacks`): flash2, FlashAttention-2 (PyTorch SDPA, flash-attn 2); flash1, FlashAttention-1 and Triton kernels of its class (llm-foundry's attn_impl triton). Default: the stack's, flash2.")]
MasterWeights = Annotated[Optional[str], typer.Option("--master-weights", metavar="[fp32|bf16]", help="fp32: mixed precision, fp32 master weights and AdamW states (16 B/param); bf16: weights, gradients and AdamW states in bf16 (8 B/param). Default: fp32.")]
Layouts = Annotated[int, typer.Option("--layouts", show_default=True, help="How many of the fastest layouts to show (the chosen one first), 1-50.")]
Dataset = Annotated[Optional[str], typer.Option(autocompletion=complete_dataset, help="Train on this dataset (see `gpucost datasets`): samples per epoch, e.g. imagenet, mnist, squad.")]
Samples = Annotated[Optional[str], typer.Option(help="Samples per epoch (images, sequences), e.g. 1.28M; instead of --dataset.")]
Epochs = Annotated[Optional[str], typer.Option(help="Passes over --dataset/--samples. Default: 1.")]
FlopsPerSample = Annotated[Optional[str], typer.Option(help="FORWARD FLOPs of one sample (training = 3 x forward), for a model the catalog has no count for.")]
Goodput = Annotated[Optional[float], typer.Option(help="Share of wall-clock that trains, in (0, 1] (failures, restarts, checkpoints, evaluation). Default: 0.9 (Llama 3) with the default MFU and the step model; 1 with --tflops/--mfu/--calibration.")]
Scope = Annotated[Optional[str], typer.Option(metavar="[pretrain|all]", autocompletion=completer(("pretrain", "all")), help="What the hours cover: pretrain (the default) or all (pre- and post-training: x the published overhead; with --gpu-hours, the reported hours cover all).")]


def estimate_rows(est: Estimate) -> list[tuple[str, str, str]]:
    """The human table of an estimate: quantity, value with units, and what it rests on."""
    work = []
    if est.active_params is not None and est.active_params != est.params:
        work.append(f"{si(est.active_params)} active of {si(est.params)} params")
    elif est.params is not None:
        work.append(f"{si(est.params)} params")
    if est.samples is not None:
        work.append(f"{si(est.samples)} samples" + (f" ({est.epochs:g} epochs of {est.dataset})" if est.dataset
                                                     else f" ({est.epochs:g} epochs)" if est.epochs != 1 else ""))
    elif est.tokens is not None:
        work.append(f"{si(est.tokens)} tokens")
    if est.finetune is not None:
        ft = est.finetune
        work.append("full fine-tune" if ft["method"] == "full" else
                    f"{'QLoRA' if ft['method'] == 'qlora' else 'LoRA'} rank {ft['lora_rank']}: "
                    f"{si(ft['trainable_params'])} trainable")
    mfu = f"MFU {est.mfu:.1%} of {est.peak_tflops:g} dense {est.precision}" if est.mfu is not None else "MFU unknown"
    if est.mfu_while_training is not None:
        mfu += f" ({est.mfu_while_training:.1%} while training at the assumed goodput)"
    elif est.goodput < 1:
        mfu += f" while training, {est.goodput:.0%} goodput"
    rows = []
    plan = est.plan
    if plan is not None and plan.num_gpus_needed is not None:
        rows.append(("devices needed", f"{plan.num_gpus_needed:,} x {est.gpu}",
                     f"to finish within {plan.deadline_days:g} days at the throughput below"))
    if plan is not None and plan.budget_usd is not None:
        rows.append(("budget buys", f"{si(plan.tokens)} tokens" + (f" for {si(plan.params)} params" if est.model is None else ""),
                     f"{usd(plan.budget_usd)} = {plan.budget_gpu_hours:,.0f} device-hours = {si(plan.budget_flops, 'FLOP')}"))
        if plan.tokens_low is not None:
            rows.append(("tokens range", f"{si(plan.tokens_low)} - {si(plan.tokens_high)} tokens",
                         "at the slow and fast ends of the utilisation band"))
    rows += [
        ("model", est.model or "-", ", ".join(work) or est.flops_method),
        ("training compute", si(est.flops, "FLOP"), est.flops_method),
    ]
    if est.flops_detailed is not None:
        used = est.flops == est.flops_detailed
        rows.append(("detailed count", si(est.flops_detailed, "FLOP"),
                     f"architecture at seq {est.seq_len}, {est.flops_detailed / est.flops_6nd - 1:+.1%} vs 6ND; "
                     + ("used for the time" if used else "not used for the time (--flops-method detailed)")))
    if est.min_gpus_to_fit is not None:
        rows.append(("memory", f"needs >= {est.min_gpus_to_fit:,} x {est.gpu}",
                     "to hold weights, grads, AdamW states, activations (ZeRO-3, full recompute, flash attention)"))
    if est.time_model == "step":
        layout = est.layout
        rows.append(("layout", describe_layout(layout).split(", micro-batch")[0],
                     f"micro-batch {layout['micro_batch']}, global batch {layout['global_batch']:,} sequences, "
                     f"recompute {layout['recompute']}, ZeRO {layout['zero_stage']}, on {est.system}"))
        top = sorted(est.time_breakdown_s.items(), key=lambda kv: -kv[1])
        rows.append(("step time", f"{est.step_time_s:.3g} s",
                     ", ".join(f"{k.replace('_', ' ')} {v / est.step_time_s:.0%}" for k, v in top[:4])
                     + f"; {est.tokens_per_s:,.0f} tokens/s, HFU {est.hfu:.1%}"))
    rows += [
        ("throughput", f"{est.achieved_tflops_per_gpu:.4g} TFLOP/s per device", f"{mfu}; "
         + ("step-time model (see layout)" if est.time_model == "step" else est.throughput_source)),
        ("wall-clock", days(est.wall_clock_days), f"{est.num_gpus:,} x {est.gpu} ({est.gpu_name})"
         + ("" if est.num_gpus_given else "; set --num-gpus")),
        *([("from FLOPs alone", days(est.default_wall_clock_days), "at the default MFU for the kind of run, beside "
            "the ported measurement above")] if est.default_wall_clock_days is not None else []),
        ("device-hours", f"{count(est.gpu_hours)} {est.gpu}-hours", ""),
        ("cost", usd(est.cost_usd),
         f"${est.price_usd_per_gpu_hour:g}/device-hour, {est.price_source}" if est.price_usd_per_gpu_hour else "no price: give --price"),
        ("energy", f"{est.energy_kwh:,.0f} kWh, {usd(est.energy_cost_usd)}" if est.energy_kwh is not None else "n/a",
         f"TDP x device-hours x PUE {est.pue:g}, at ${est.electricity_usd_per_kwh:g}/kWh"
         if est.energy_kwh is not None else "no TDP known for this device"),
    ]
    if est.own_cost_usd is not None:
        rows.append(("cost if owned", usd(est.own_cost_usd), "purchase price amortised + electricity (see assumptions)"))
    if est.range is not None:
        r = est.range
        cost = f", {usd(r.cost_usd_low)} - {usd(r.cost_usd_high)}" if r.cost_usd_low is not None else ""
        rows.append(("range", f"{days(r.wall_clock_days_low)} - {days(r.wall_clock_days_high)}{cost}",
                     f"MFU {r.mfu_high:.0%} (fast end) to {r.mfu_low:.0%} (slow end)" if r.mfu_low is not None else
                     f"{r.tflops_high:.4g} (fast end) to {r.tflops_low:.4g} (slow end) TFLOP/s per device"))
    return rows


NARROW = 100  # below this many columns an estimate puts each basis under its value, not beside it


def _emit_estimate(est: Estimate, fmt: str, wide: bool = False) -> None:
    if fmt in ("table", "markdown"):
        width = terminal_width(wide) if fmt == "table" else None
        rows = estimate_rows(est)
        if width is not None and width < NARROW:
            rows = [(q, f"{v}\n{b}" if b else v)
                    for q, v, b in rows]
            typer.echo(render({}, fmt, rows=rows, headers=("quantity", "value (basis below)"), width=width))
        else:
            typer.echo(render({}, fmt, rows=rows, headers=("quantity", "value", "basis"), width=width))
        if len(est.layouts) > 1:
            typer.echo("\nlayouts (fastest first):\n" + render({}, fmt, rows=layout_rows(est), width=width,
                                                                 headers=("layout", "step time", "MFU (detailed count)", "memory/device")))
        typer.echo("\nassumptions:\n" + wrap_list(list(est.assumptions), width))
    else:
        typer.echo(render(est.to_dict(), fmt))
    for warning in est.warnings:
        typer.echo(f"Warning: {warning}", err=True)


def layout_rows(est: Estimate) -> list[tuple[str, str, str, str]]:
    """The layouts the step model ranked, fastest first."""
    return [(describe_layout(s.layout), f"{s.step_time_s:.3g} s", f"{s.mfu:.1%}" if s.mfu is not None else "-",
             f"{s.memory_gb:.1f} GB") for s in est.layouts]


def estimate_cmd(
    *,
    model: Model = None,
    hf_config: HfConfig = None,
    params: Params = None,
    active_params: ActiveParams = None,
    flops: Flops = None,
    tokens: Tokens = None,
    dataset: Dataset = None,
    samples: Samples = None,
    epochs: Epochs = None,
    flops_per_sample: FlopsPerSample = None,
    flops_method: FlopsMethodOpt = "6nd",
    seq_len: SeqLen = None,
    gpu: Annotated[Optional[str], typer.Option(autocompletion=complete_gpu, help=f"Accelerator id, alias or driver name (see `gpucost gpus`). Default: the calibration file's device, else {DEFAULT_GPU}.")] = None,
    num_gpus: NumGpus = None,
    precision: Precision = DEFAULT_PRECISION,
    mfu: Mfu = None,
    tflops: Tflops = None,
    calibration: Calibration = None,
    gpu_hours: GpuHours = None,
    measured_time: Annotated[Optional[str], typer.Option(help="A reported wall-clock time of this run (30min, 6h), with --measured-gpu: its MFU there, moved to --gpu.")] = None,
    measured_gpu: Annotated[Optional[str], typer.Option(autocompletion=complete_gpu, help="The accelerator --measured-time was measured on.")] = None,
    measured_num_gpus: Annotated[Optional[str], typer.Option(help="How many of them. Default: 1.")] = None,
    price: Price = None,
    provider: Provider = None,
    deadline: Deadline = None,
    budget: Budget = None,
    chinchilla: Annotated[bool, typer.Option("--chinchilla", help="With --budget: choose params and tokens compute-optimally (20 tokens per parameter, Hoffmann et al. 2022).")] = False,
    time_model: TimeModelOpt = None,
    system: System = None,
    tensor_parallel: TP = None,
    pipeline_parallel: PP = None,
    virtual_stages: VP = None,
    context_parallel: CP = None,
    expert_parallel: EP = None,
    zero_stage: Zero = None,
    global_batch: GlobalBatch = None,
    micro_batch: MicroBatch = None,
    recompute: Recompute = None,
    finetune: Finetune = None,
    lora_rank: LoraRank = None,
    lora_targets: LoraTargets = None,
    sequence_parallel: SeqParallel = None,
    flash_attention: FlashAttention = None,
    stack: StackOpt = None,
    compile: CompileOpt = None,
    master_weights: MasterWeights = None,
    attention_kernel: AttentionKernel = None,
    layouts: Layouts = 2,
    goodput: Goodput = None,
    scope: Scope = None,
    pue: Pue = DEFAULT_PUE,
    electricity_price: Annotated[float, typer.Option(show_default=True, help="Electricity price, USD per kWh (default: US industrial average 2024, EIA).")] = DEFAULT_ELECTRICITY_USD_PER_KWH,
    life_years: Annotated[float, typer.Option(show_default=True, help="Amortisation life of an owned accelerator, years (for the cost of owning).")] = DEFAULT_LIFE_YEARS,
    format: Format = "table",
    wide: Wide = False,
) -> None:
    """Training compute, wall-clock, device-hours, cost and energy of one run.

    Example: gpucost estimate --params 175B --tokens 300B --gpu a100 --num-gpus 1024 --tflops 80
    """
    check_format(format)
    request = EstimateRequest(
        model=model, hf_config=hf_config, params=params, active_params=active_params, flops=flops, tokens=tokens,
        dataset=dataset, samples=samples, epochs=epochs, flops_per_sample=flops_per_sample,
        flops_method=flops_method, seq_len=seq_len, gpu=gpu, num_gpus=num_gpus, precision=precision, mfu=mfu,
        tflops=tflops, calibration=calibration, gpu_hours=gpu_hours, measured_time_s=measured_time,
        measured_gpu=measured_gpu, measured_num_gpus=measured_num_gpus, price=price, provider=provider,
        deadline_s=deadline, budget_usd=budget, chinchilla=chinchilla, time_model=time_model, system=system,
        tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel, virtual_stages=virtual_stages,
        context_parallel=context_parallel,
        expert_parallel=expert_parallel, zero_stage=zero_stage, global_batch=global_batch, micro_batch=micro_batch,
        recompute=recompute, sequence_parallel=sequence_parallel, flash_attention=flash_attention,
        finetune=finetune, lora_rank=lora_rank, lora_targets=lora_targets,
        stack=stack, compile=compile, master_weights=master_weights, attention_kernel=attention_kernel,
        num_layouts=layouts, goodput=goodput, scope=scope, pue=pue,
        electricity_usd_per_kwh=electricity_price, life_years=life_years)
    _emit_estimate(estimate(request), format, wide)


def compare_cmd(
    *,
    model: Model = None,
    hf_config: HfConfig = None,
    params: Params = None,
    active_params: ActiveParams = None,
    flops: Flops = None,
    tokens: Tokens = None,
    dataset: Dataset = None,
    samples: Samples = None,
    epochs: Epochs = None,
    flops_per_sample: FlopsPerSample = None,
    flops_method: FlopsMethodOpt = "6nd",
    seq_len: SeqLen = None,
    gpu: Annotated[Optional[list[str]], typer.Option(autocompletion=complete_gpu, help="Accelerators to compare (repeat, or comma-separate). Default: every one with a peak for the precision.")] = None,
    num_gpus: NumGpusList = None,
    precision: Precision = DEFAULT_PRECISION,
    mfu: Mfu = None,
    time_model: TimeModelOpt = None,
    tensor_parallel: TP = None,
    pipeline_parallel: PP = None,
    virtual_stages: VP = None,
    context_parallel: CP = None,
    expert_parallel: EP = None,
    zero_stage: Zero = None,
    global_batch: GlobalBatch = None,
    micro_batch: MicroBatch = None,
    recompute: Recompute = None,
    finetune: Finetune = None,
    lora_rank: LoraRank = None,
    lora_targets: LoraTargets = None,
    sequence_parallel: SeqParallel = None,
    flash_attention: FlashAttention = None,
    stack: StackOpt = None,
    compile: CompileOpt = None,
    master_weights: MasterWeights = None,
    attention_kernel: AttentionKernel = None,
    goodput: Goodput = None,
    scope: Scope = None,
    provider: Provider = None,
    deadline: Deadline = None,
    budget: Budget = None,
    all_offers: Annotated[bool, typer.Option("--all-offers", help="One row per price offer, not just each GPU's default.")] = False,
    format: Format = "table",
    wide: Wide = False,
) -> None:
    """One row per accelerator (and price offer), cheapest first: which GPU is cheapest for this run?

    Each accelerator runs on its own default system (see `gpucost systems`); where the architecture is
    known, the step-time model finds each one's fastest layout that fits.
    """
    check_format(format)
    counts = [EstimateRequest(params=1, tokens=1, num_gpus=n).num_gpus for n in num_gpus] if num_gpus else None
    base = EstimateRequest(
        model=model, hf_config=hf_config, params=params, active_params=active_params, flops=flops, tokens=tokens,
        dataset=dataset, samples=samples, epochs=epochs, flops_per_sample=flops_per_sample,
        flops_method=flops_method, seq_len=seq_len, num_gpus=counts[0] if counts else None, precision=precision, mfu=mfu,
        time_model=time_model, tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel,
        virtual_stages=virtual_stages, context_parallel=context_parallel, expert_parallel=expert_parallel,
        zero_stage=zero_stage, global_batch=global_batch, micro_batch=micro_batch, recompute=recompute,
        sequence_parallel=sequence_parallel, flash_attention=flash_attention, stack=stack, compile=compile,
        master_weights=master_weights, attention_kernel=attention_kernel, goodput=goodput, scope=scope,
        provider=provider, deadline_s=deadline,
        budget_usd=budget, finetune=finetune, lora_rank=lora_rank, lora_targets=lora_targets)
    from estimator.compare import compare

    rows = compare(base, gpus=_split_names(gpu), all_offers=all_offers, device_counts=counts,
                   catalog=load_catalog())
    data = [r.to_dict() for r in rows]
    table = [(r.gpu, f"{r.num_gpus:,}", f"{r.achieved_tflops_per_gpu:.4g}" if r.fits else "-", f"{r.mfu:.1%}" if r.mfu is not None and r.fits else "-",
              f"{r.wall_clock_days:,.1f}" if r.fits else "-", f"{r.gpu_hours:,.0f}" if r.fits else "-",
              f"{r.price_usd_per_gpu_hour:g}" if r.price_usd_per_gpu_hour else "-",
              usd(r.cost_usd) if r.fits else "-", r.layout_text if r.fits else f"does not fit: {r.note}",
              r.price_source or "no price in catalog") for r in rows]
    headers = ("gpu", "devices", "TFLOP/s/device", "MFU", "days", "device-hours", "$/device-h", "cost", "layout",
               "price source")
    if base.budget_usd is not None:  # what the budget buys on each
        table = [(*t[:2], si(r.tokens) if r.fits and r.tokens else "-", *t[2:]) for t, r in zip(table, rows)]
        headers = (*headers[:2], "tokens", *headers[2:])
    width = terminal_width(wide)
    typer.echo(render(records("rows", data, format), format, rows=table, width=width, headers=headers,
                      optional=("price source", "$/device-h", "TFLOP/s/device", "device-hours", "layout")))
    if format in ("table", "markdown") and rows:
        first = rows[0]
        same = len({r.num_gpus for r in rows}) == 1
        each = ("the devices each needs to finish within the deadline" if base.deadline_s is not None
                else f"{first.num_gpus:,} device(s) each" if same and (counts or first.num_gpus == 1)
                else "devices as listed" if counts else "the fewest devices that hold it on each, as listed")
        compute = (f"FLOPs: what {usd(base.budget_usd)} buys on each ({first.flops_method})" if base.budget_usd is not None
                   else f"{si(first.flops, 'FLOP')} ({first.flops_method})")
        sources = {r.throughput_source for r in rows}
        throughput = ("" if first.time_model == "step" else
                      f"; throughput = {first.throughput_source}" if len(sources) == 1 else
                      "; throughput = each accelerator's default MFU for the kind of run at its machine balance "
                      "(peak / HBM bandwidth; docs/defaults.md)" if all(
                          (r.throughput_source or "default MFU").startswith("default MFU") for r in rows) else
                      "; throughput per accelerator (see --format json)")
        typer.echo(paragraph(f"\n{compute}; {each}; {base.precision}; time model: {first.time_model}{throughput}",
                             width))


def _split_names(values: list[str] | str | None, option: str = "--gpu") -> list[str] | None:
    """``["h100,a100", "h800"]`` -> ``["h100", "a100", "h800"]``; an empty item is an error."""
    if values is None or values == []:
        return None
    names = []
    for value in [values] if isinstance(values, str) else values:
        for name in value.split(","):
            if not name.strip():
                raise InputError(f"{option} must not be empty")
            names.append(name.strip())
    return names
