"""The step model answering a request: the default global batch, the layouts a request leaves
open, the fewest devices that hold it, and the search for the fastest layout that fits memory
(:func:`step_estimate`), with the assumptions it prints."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from estimator.model.arch import Architecture
from estimator.catalog.records import Accelerator
from estimator.catalog.core import Catalog
from estimator.errors import InputError
from estimator.timing.layout import Layout, candidates
from estimator.request import EstimateRequest
from estimator.timing.roofline import HBM_EFFICIENCY, Constants, Shape, StepTime, matmul_fraction, shape_of
from estimator.timing.comm import links_for, num_hosts
from estimator.timing.stacks import attention_rate, eager_compute, stack_choice, stack_report
from estimator.timing.step import eager_memory, layout_memory, layout_memory_gb, time_layout
ERROR_BAND = 0.15  # the printed band around a step-model estimate (see `gpucost validate`)
DEFAULT_BATCH_TOKENS = 4 * 2**20  # global batch when neither the user nor the catalog gives one
MAX_CANDIDATES = 20000
MAX_PLANNED_DEVICES = 1 << 17  # the largest run a device count is searched up to (131,072)


_LAYOUT_FIELDS = ("tensor_parallel", "pipeline_parallel", "virtual_stages", "context_parallel", "expert_parallel",
                  "zero_stage", "micro_batch", "recompute", "sequence_parallel")


def usable_memory_gb(acc: Accelerator, stack: Any = None) -> float:
    """What one device holds for training (decimal GB): its capacity less the reserve for the CUDA
    context, NCCL buffers and the allocator's slack (the stack's, else estimator.model.memory's)."""
    from estimator.model.memory import DEFAULT_RESERVE_GB, GB, capacity_bytes

    reserve = stack.stack.allocator_reserve_gb if stack is not None else DEFAULT_RESERVE_GB
    return capacity_bytes(acc.memory_gb) / GB - reserve


def stack_and_fixed(request: EstimateRequest, work: Any, catalog: Catalog) -> tuple[Any, dict[str, Any]]:
    """(the training stack, the layout sizes the request and the stack fix): an eager stack times
    data-parallel and ZeRO layouts only, and a stack that cannot run a kind of parallelism holds it at 1."""

    arch = work.architecture
    fixed = {name: getattr(request, name) for name in _LAYOUT_FIELDS}
    stack = stack_choice(request, catalog.directory)  # refuses a layout the stack cannot run
    if stack.eager and fixed["recompute"] == "selective":
        raise InputError(f"--stack {stack.stack.id} recomputes whole layers (gradient checkpointing): "
                         "use --recompute full or none")
    for name, kind in (("tensor_parallel", "tensor"), ("pipeline_parallel", "pipeline"),
                       ("context_parallel", "context"), ("expert_parallel", "expert")):
        if stack.eager and (fixed[name] or 1) > 1:  # the stack may run it; its eager layer is timed on one device
            raise InputError(f"the eager step model of --stack {stack.stack.id} times data-parallel and ZeRO layouts; "
                             f"--{name.replace('_', '-')} {fixed[name]} is not modelled for it: drop it")
        if fixed[name] is None and (stack.eager or not stack.stack.runs(kind)) and (kind != "expert" or arch.moe):
            fixed[name] = 1
    if fixed["virtual_stages"] is None and not stack.stack.runs("interleaved"):
        fixed["virtual_stages"] = 1  # its pipeline schedule is plain 1F1B
    return stack, fixed


def leanest_layout(request: EstimateRequest, work: Any, acc: Accelerator, system: Any, catalog: Catalog,
                   num_gpus: int) -> tuple[Layout, float] | None:
    """The layout of ``num_gpus`` devices that needs the least memory, and that memory (GB): the
    candidates the step model searches, with what the request leaves open set to its most frugal
    value (ZeRO 3, full recompute). A memory check only, nothing is timed; None when no layout
    splits the devices. It stops at the first layout that fits."""
    arch = work.architecture
    batch, _ = default_global_batch(request, work, num_gpus)
    stack, fixed = stack_and_fixed(request, work, catalog)
    frugal = {**fixed, "zero_stage": 3 if fixed["zero_stage"] is None else fixed["zero_stage"],
              "recompute": fixed["recompute"] or "full"}
    flash = request.flash_attention is not False
    usable = usable_memory_gb(acc, stack)
    best: tuple[Layout, float] | None = None
    seen = 0
    for layout in candidates(num_devices=num_gpus, num_layers=arch.num_layers, num_heads=arch.num_heads,
                             num_kv_heads=arch.num_kv_heads, seq_len=work.seq_len, global_batch=batch,
                             per_node=system.scale_up_group,
                             num_experts=arch.moe.num_experts if arch.moe else None, fixed=frugal):
        if (layout.virtual_stages > 1 and fixed["virtual_stages"] is None) or (
                layout.micro_batch > 1 and fixed["micro_batch"] is None):
            continue  # interleaving and larger micro-batches only add memory
        seen += 1
        if seen > MAX_CANDIDATES:
            break
        memory = layout_memory_gb(arch, layout, work.seq_len, flash_attention=flash, stack=stack,
                                  finetune=getattr(work, "finetune", None))
        if best is None or memory < best[1]:
            best = (layout, memory)
        if memory <= usable:
            break
    return best


def device_counts(per_node: int, start: int = 1) -> Any:
    """The device counts a run is planned on, in order from ``start``: powers of two up to a node,
    then whole nodes."""
    n = 1
    while n < per_node:
        if n >= start:
            yield n
        n *= 2
    k = max(1, -(-start // per_node))
    while k * per_node <= MAX_PLANNED_DEVICES:
        yield k * per_node
        k += 1


def _planned(per_node: int, n: int) -> int:
    """The smallest planned device count (:func:`device_counts`) of at least ``n``."""
    return next(device_counts(per_node, n), n)


def search_devices(per_node: int, ok: Any, start: int = 1) -> int | None:
    """The fewest planned devices (:func:`device_counts`) from ``start`` for which ``ok(n)`` holds,
    assuming it keeps holding for more devices: from ``start`` up through the powers of two until it
    holds (a power-of-two count splits a power-of-two batch and layer count; doubling a count of 5
    nodes would keep its factor 5), then a binary search over whole nodes between the last count that
    failed and the first that held. The answer always holds; where ``ok`` is not monotone (a count in
    between that no layout splits) a smaller one may hold too. None if none up to
    ``MAX_PLANNED_DEVICES`` does."""
    n = _planned(per_node, start)
    failed = None
    while n <= MAX_PLANNED_DEVICES:
        if ok(n):
            break
        failed = n
        n = _planned(per_node, 1 << n.bit_length())  # the next power of two: batches and layers split it
    else:
        return None
    if failed is None:
        return n
    lo = _planned(per_node, failed + 1)
    if lo >= n:  # below a node the planned counts double: nothing lies between
        return n
    lo_k, hi_k = lo // per_node, n // per_node  # whole nodes: the answer is in [lo_k, hi_k]
    while lo_k < hi_k:
        mid = (lo_k + hi_k) // 2
        if ok(mid * per_node):
            hi_k = mid
        else:
            lo_k = mid + 1
    return hi_k * per_node


def fewest_devices(request: EstimateRequest, work: Any, acc: Accelerator, catalog: Catalog,
                   start: int = 1) -> int:
    """The fewest devices (powers of two up to a node, whole nodes above it) on which some layout
    of ``work`` fits memory (:func:`leanest_layout`), searched by doubling and bisection on the
    memory check alone. Raises InputError when none up to ``MAX_PLANNED_DEVICES`` does."""
    system = catalog.system_for(acc.id, request.system)
    stack, fixed = stack_and_fixed(request, work, catalog)
    check_fixed_layout(request, work, system, fixed)
    per_node = system.scale_up_group
    usable = usable_memory_gb(acc, stack)

    def fits(n: int) -> bool:
        if n > per_node and not system.scale_out_nics_per_node:
            return False
        found = leanest_layout(request, work, acc, system, catalog, n)
        return found is not None and found[1] <= usable

    found = search_devices(per_node, fits, start)
    if found is None:
        fixed = ", ".join(f"{k.replace('_', '-')} {v}" for k in _LAYOUT_FIELDS
                          if (v := getattr(request, k)) is not None and v is not False)
        raise InputError(f"no layout of up to {MAX_PLANNED_DEVICES:,} x {acc.id} ({acc.memory_gb:g} GB) holds "
                         f"{work.model} at sequence length {work.seq_len:,}" + (f" with {fixed}" if fixed else "")
                         + ": lower --seq-len" + (" or change the layout options" if fixed else "")
                         + ", or use larger devices")
    return found


def memory_text(arch: Architecture, layout: Layout, seq_len: int, flash_attention: bool, stack: Any = None,
                finetune: Any = None) -> str:
    """What fills one device's memory in ``layout``, in GB."""
    mem = layout_memory(arch, layout, seq_len, flash_attention=flash_attention, stack=stack, finetune=finetune)
    if not hasattr(mem, "weights_bytes"):  # an eager stack's peak, by its own parts
        return f"{mem.total_bytes / 1e9:.1f} GB ({mem.describe()})"
    return (f"{mem.total_bytes / 1e9:.1f} GB: weights {mem.weights_bytes / 1e9:.1f}, gradients "
            f"{mem.gradients_bytes / 1e9:.1f}, optimizer states {mem.optimizer_bytes / 1e9:.1f}, activations "
            f"{mem.activations_bytes / 1e9:.1f}")


@dataclass(frozen=True)
class StepEstimate:
    """The step model's answer for a request: the chosen layout, its time, and the runners-up."""

    layout: Layout
    step_time_s: float
    tokens_per_s: float
    mfu: float | None
    hfu: float | None
    breakdown_s: dict[str, float]
    memory_gb: float
    system: Any
    ranked: tuple[StepTime, ...]
    error_band: float = ERROR_BAND
    assumptions: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)
    stack: Any = None  # estimator.timing.stacks.StackReport


def default_global_batch(request: EstimateRequest, work: Any, num_gpus: int) -> tuple[int, str]:
    """(sequences per step, where it came from): --global-batch, the catalog model's published batch,
    else about ``DEFAULT_BATCH_TOKENS`` tokens, at least one sequence per device."""
    if request.global_batch is not None:
        return request.global_batch, "--global-batch"
    finetune_batch = getattr(work, "finetune_batch", None)
    if finetune_batch is not None:  # a fine-tune: tens of sequences, not a pre-training batch
        sequences, source = finetune_batch
        batch = num_gpus * math.ceil(sequences / num_gpus) if sequences % num_gpus else sequences
        return batch, (source + (f", rounded up to {batch:,}, a multiple of the {num_gpus:,} devices"
                                 if batch != sequences else "") + "; set --global-batch")
    record = work.catalog_model
    published = getattr(record, "global_batch_tokens", None) if record is not None else None
    if published:
        sequences = max(1, round(published / work.seq_len))
        # rounded to a multiple of the largest power of two that divides the devices and moves it by
        # at most 10%, so that data-parallel sizes divide it (GPT-3's 3.2M tokens: 1,536 sequences)
        step = 1 << ((num_gpus & -num_gpus).bit_length() - 1)
        while step > 1 and abs(round(sequences / step) * step - sequences) > 0.10 * sequences:
            step //= 2
        batch = max(step, round(sequences / step) * step)
        return batch, (f"the model's published batch, {published / 1e6:.3g}M tokens = {sequences:,} sequences"
                       + (f", rounded to {batch:,} (a multiple of {step})" if batch != sequences else ""))
    rule = max(1, round(DEFAULT_BATCH_TOKENS / work.seq_len))
    batch = num_gpus * math.ceil(rule / num_gpus)  # a multiple of the devices, so any DP size divides it
    return batch, (f"default: about {DEFAULT_BATCH_TOKENS / 2**20:g}M tokens per step ({rule:,} sequences of "
                   f"{work.seq_len:,}) rounded up to a multiple of the {num_gpus:,} devices; set --global-batch")


def request_choices(request: EstimateRequest) -> dict[str, Any]:
    """The memory-relevant choices the user made (None where the search or a default decides), so
    that advice never repeats one of them."""
    return {"recompute": request.recompute, "zero_stage": request.zero_stage, "micro_batch": request.micro_batch,
            "finetune": getattr(request, "finetune", None), "num_gpus": request.num_gpus}


def _stack_assumptions(request: EstimateRequest, stack: Any, shape: Shape, layout: Layout, acc: Accelerator,
                       e_max: float, flash: bool, finetune: Any = None) -> tuple[list[str], Any]:
    """What the stack launches and keeps, in words and as a :class:`~estimator.timing.stacks.StackReport`:
    its kernels and, for an eager stack, the micro-batch's device and host time and the memory peak by part."""

    default = "" if request.stack else " (the default: the step model's own fused kernels; --stack hf|fsdp|deepspeed)"
    if not request.stack and layout.num_devices == 1:  # one device: most such runs are Hugging Face ones
        default += ("; a Hugging Face Trainer, accelerate or PEFT run launches every op of its modules: "
                    "--stack hf times that (docs/stacks.md)")
    lines = [f"stack: {stack.describe()}{default}"]
    attention = attention_rate(stack, acc)
    rate = (f"at {attention[1]:.0%} of the 16-bit dense peak forward and backward ({attention[2]})" if attention
            else "at the matmul rate (the step model's fused layer)")
    if not stack.eager:
        lines.append((f"attention: a fused kernel (FlashAttention) {rate}; --no-flash-attention for an unfused softmax"
                      if flash else "attention: unfused (the scores and their softmax go through HBM)")
                     + (", sequence parallelism with tensor parallelism (--no-sequence-parallel to drop it)"
                        if request.sequence_parallel is not False else ", no sequence parallelism"))
        return lines, stack_report(stack)

    peak = acc.peak_for(request.precision) * 1e12
    timed = eager_compute(shape, stack, tokens=layout.micro_batch * shape.seq_len, recompute=layout.recompute,
                          flop_rate=peak * e_max, attention_flops=attention[0],
                          hbm_bytes_per_s=acc.memory_bandwidth_gbps * 1e9 * HBM_EFFICIENCY)
    memory = eager_memory(shape.arch, stack, layout, shape.seq_len, finetune)
    lines += [
        f"attention: {stack.stack.attention}, {rate}",
        f"per micro-batch: {timed.kernels:,.0f} kernels; device {timed.device_s:.3g} s ("
        + ", ".join(f"{k} {v:.3g}" for k, v in timed.parts_s.items()) + f" s), host {timed.host_s:.3g} s "
        f"({'compiled graph' if stack.compile else 'eager Python and dispatch'}): {timed.bound}-bound",
        f"memory (torch.cuda.max_memory_allocated): {memory.describe()}",
    ]
    if finetune is not None and finetune.frozen:
        lines.insert(-1, "fine-tune: the frozen weights' matmuls skip their weight gradients and the adapters' add theirs "
                         "(in the step time; the micro-batch line above is the whole model's)")
    return lines, stack_report(stack, timed, memory)


def check_fixed_layout(request: EstimateRequest, work: Any, system: Any, fixed: dict[str, Any] | None = None) -> None:
    """InputError when a layout size the request (or ``fixed``, the sizes the request and the stack
    fix) sets cannot apply to ``work`` on ``system``, whatever the device count."""
    arch = work.architecture
    seq_len = work.seq_len
    per_node = system.scale_up_group
    if fixed is None:
        fixed = {name: getattr(request, name) for name in _LAYOUT_FIELDS}
    if fixed["tensor_parallel"] and fixed["tensor_parallel"] > per_node:
        raise InputError(f"--tensor-parallel {fixed['tensor_parallel']} exceeds the {per_node} "
                         f"accelerators of a {system.id} node (tensor parallelism stays within a node)")
    if fixed["tensor_parallel"]:
        t = fixed["tensor_parallel"]
        if arch.num_heads % t or (arch.num_kv_heads % t and t % arch.num_kv_heads):
            raise InputError(f"--tensor-parallel {t} does not divide the {arch.num_heads} attention heads "
                             f"({arch.num_kv_heads} KV heads) of {work.model}")
    if fixed["virtual_stages"] and fixed["virtual_stages"] > 1:
        if fixed["pipeline_parallel"] == 1:
            raise InputError("--virtual-stages interleaves pipeline stages; it needs --pipeline-parallel above 1")
        if fixed["pipeline_parallel"] and -(-arch.num_layers // fixed["pipeline_parallel"]) < fixed["virtual_stages"]:
            raise InputError(f"--virtual-stages {fixed['virtual_stages']} needs a layer per chunk: a stage of "
                             f"{work.model} holds {-(-arch.num_layers // fixed['pipeline_parallel'])} layers")
    if fixed["pipeline_parallel"] and fixed["pipeline_parallel"] > arch.num_layers:
        raise InputError(f"--pipeline-parallel {fixed['pipeline_parallel']} exceeds the {arch.num_layers} "
                         f"layers of {work.model}")
    if fixed["expert_parallel"]:
        if arch.moe is None:
            raise InputError(f"--expert-parallel needs a mixture-of-experts model; {work.model} is dense")
        if arch.moe.num_experts % fixed["expert_parallel"]:
            raise InputError(f"--expert-parallel {fixed['expert_parallel']} does not divide the "
                             f"{arch.moe.num_experts} experts of {work.model}")
    if fixed["context_parallel"] and seq_len % fixed["context_parallel"]:
        raise InputError(f"--context-parallel {fixed['context_parallel']} does not divide the sequence length {seq_len}")


def step_estimate(request: EstimateRequest, work: Any, acc: Accelerator, catalog: Catalog, *, num_gpus: int,
                  calibration: Any = None, constants: Constants = Constants()) -> StepEstimate:
    """Time ``work`` on ``num_gpus`` x ``acc`` with the step model: the fastest layout that fits
    memory among the candidates the request leaves open (or the layout it fixes)."""
    arch = work.architecture
    system = catalog.system_for(acc.id, request.system)
    links = links_for(system, calibration)
    seq_len = work.seq_len
    batch, batch_source = default_global_batch(request, work, num_gpus)
    stack, fixed = stack_and_fixed(request, work, catalog)
    flash = request.flash_attention is not False
    per_node = system.scale_up_group  # a node, or a TPU slice's ICI domain
    check_fixed_layout(request, work, system, fixed)
    if num_gpus > per_node and not system.scale_out_nics_per_node:
        raise InputError(f"{system.id} has no network between its scale-up domains: at most {per_node} devices")
    shape = shape_of(arch, seq_len)
    finetune = getattr(work, "finetune", None)
    e_max, e_source = matmul_fraction(acc, request.precision, calibration)
    compute_scale, scale_note, scale_warnings = 1.0, "", []
    if calibration is not None:  # the device's own measured step sets the compute (the links stay)
        # imported here, not at the top: the calibration records cost start-up time (benchmarks/cold_start.py)
        from estimator.timing.measured import measured_compute_scale

        compute_scale, scale_note, scale_warnings = measured_compute_scale(
            calibration, work, acc, request.precision, links, e_max=e_max, flash_attention=flash, constants=constants,
            stack=stack)
    reserve_gb = stack.stack.allocator_reserve_gb  # CUDA context, NCCL buffers, allocator slack
    usable_gb = usable_memory_gb(acc, stack)
    # ZeRO 1 (the distributed optimizer) moves the same bytes as plain data parallelism and holds
    # less, so ZeRO 0 never wins. ZeRO 2 (gradients sharded too: DeepSpeed's stage 2, Llama 3's FSDP
    # that keeps the weights gathered after forward) moves the same bytes again, so it takes the same
    # time and holds less: a layout that does not fit with ZeRO 1, the usual Megatron stack, is tried
    # with ZeRO 2 before a slower one is. ZeRO 3 gathers the weights for every micro-batch: only when
    # nothing fits with ZeRO 2. Every candidate is timed (cheap), then memory is checked fastest first
    # until enough layouts fit.
    stages = [fixed["zero_stage"]] if fixed["zero_stage"] is not None else [1 if stack.stack.runs("zero1") else 2, 3]
    timed: list[StepTime] = []
    checked = 0
    memo: dict = {}  # per-layer compute shared by the layouts (time_layout)
    closest: dict[int, float] = {}  # ZeRO stage -> the least memory any of its layouts needs (GB)
    for zero in stages:
        pending = []
        for layout in candidates(num_devices=num_gpus, num_layers=arch.num_layers, num_heads=arch.num_heads,
                                 num_kv_heads=arch.num_kv_heads, seq_len=seq_len, global_batch=batch,
                                 per_node=per_node,
                                 num_experts=arch.moe.num_experts if arch.moe else None,
                                 fixed={**fixed, "zero_stage": zero},
                                 # an eager stack pays its launches per micro-batch: larger ones amortise them
                                 micro_batches=(1, 2, 4, 8, 16, 32, 64) if stack.eager else (1, 2, 4, 8)):
            if stack.eager and layout.recompute == "selective":
                continue  # eager stacks checkpoint whole layers
            checked += 1
            if checked > MAX_CANDIDATES:
                break
            pending.append(time_layout(shape, layout, acc, request.precision, links, constants=constants,
                                       e_max=e_max, flash_attention=flash, stack=stack, finetune=finetune,
                                       compute_scale=compute_scale, memo=memo))
        pending.sort(key=lambda r: (r.step_time_s, r.layout.tensor_parallel * r.layout.pipeline_parallel))
        also_zero2 = zero == 1 and fixed["zero_stage"] is None  # ZeRO 2: the same time, less memory
        for candidate in pending:
            options = [candidate.layout] + ([replace(candidate.layout, zero_stage=2)] if also_zero2 else [])
            for layout in options:
                memory = layout_memory_gb(arch, layout, seq_len, flash_attention=flash, stack=stack, finetune=finetune)
                closest[layout.zero_stage] = min(memory, closest.get(layout.zero_stage, math.inf))
                if memory <= usable_gb:
                    timed.append(replace(candidate, layout=layout, memory_gb=memory))
                    break
            if len(timed) >= max(1, request.num_layouts):
                break
        if timed:
            break
    fixed_text = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in fixed.items() if v is not None and v is not False)
    if checked == 0:
        raise InputError(f"no layout splits {num_gpus:,} devices into TP x CP x PP x DP for {work.model} "
                         f"(TP within a {per_node}-accelerator node dividing the heads, PP dividing the "
                         f"{arch.num_layers} layers, the global batch of {batch:,} a multiple of DP x micro-batch"
                         + (f", {fixed_text}" if fixed_text else "") + "); change --num-gpus or --global-batch")
    if not timed:
        leanest = leanest_layout(request, work, acc, system, catalog, num_gpus)
        fill = (f"; the leanest layout ({leanest[0].describe()}) needs "
                + memory_text(arch, leanest[0], seq_len, flash, stack, finetune)
                + f" of {usable_gb:.1f} GB usable") if leanest is not None else ""
        try:
            fewest = f"; the fewest that fit: {fewest_devices(request, work, acc, catalog, num_gpus + 1):,} devices"
        except InputError:
            fewest = "; no device count up to the largest searched fits it"
        from estimator.model.memory import what_would_fit

        options = what_would_fit(arch, acc.memory_gb, num_gpus=num_gpus, seq_len=seq_len, given=request_choices(request),
                                 finetune=finetune, flash_attention=flash, devices=False)
        raise InputError(f"no layout of {num_gpus:,} x {acc.id} ({acc.memory_gb:g} GB) holds {work.model} at sequence "
                         f"length {seq_len:,} and a global batch of {batch:,}"
                         + (f" with {fixed_text}" if fixed_text else "") + fill + fewest
                         + " (--num-gpus, or leave it out for the fewest)"
                         + (f"; on {num_gpus:,} device{'s' if num_gpus > 1 else ''}: {options}" if options else ""))
    timed.sort(key=lambda r: (r.step_time_s, r.layout.tensor_parallel * r.layout.pipeline_parallel))
    best = timed[0]
    tokens_per_s = batch * seq_len / best.step_time_s
    hosts = num_hosts(best.layout.num_devices, links.per_node)
    assumptions = [
        f"layout: {best.layout.describe()} (the fastest that fits memory, of {checked:,} layouts timed)",
        f"step: {best.step_time_s:.3g} s for {batch:,} sequences of {seq_len:,} tokens ({batch_source}); "
        f"{tokens_per_s:,.0f} tokens/s; MFU {best.mfu:.1%} of the "
        + ("fine-tune's count (the detailed count less the frozen weights' gradients, plus the adapters)"
           if finetune is not None and finetune.frozen else "detailed count") + f", HFU {best.hfu:.1%}",
        "step breakdown: " + ", ".join(f"{k.replace('_', ' ')} {v:.3g} s" for k, v in best.breakdown_s.items()),
        f"matmuls at {e_max:.3f} x the dense peak at most ({e_source}), "
        f"or their bytes at the HBM bandwidth if longer, + {constants.kernel_overhead_s * 1e6:.3g} us per kernel; elementwise work at "
        f"{HBM_EFFICIENCY:.0%} of {acc.memory_bandwidth_gbps:g} GB/s HBM",
        f"links: {links.source}; {constants.dp_overlap:.0%} of a bucketed data-parallel reduction hidden behind "
        "backward (per-layer ZeRO collectives are timed layer by layer); tensor, context and expert-parallel "
        "collectives not overlapped" + (f"; stragglers: the expected slowest of {hosts:,} hosts (MegaScale's 0.5% "
                                        "of hosts 10% slower)" if hosts > 1 else ""),
        f"memory: {best.memory_gb:.1f} GB on the most loaded device, of {usable_gb:.1f} GB usable (the datasheet's "
        f"{acc.memory_gb:g} GB are GiB, {usable_gb + reserve_gb:.1f}e9 bytes, less {reserve_gb:g} GB reserved)",
    ]
    stack_lines, report = _stack_assumptions(request, stack, shape, best.layout, acc, e_max, flash, finetune)
    assumptions[5:5] = stack_lines
    if scale_note:
        assumptions.insert(4, scale_note)  # after the matmul rate it scales
    warnings = list(scale_warnings)
    if best.layout.zero_stage == 3 and 2 in closest:
        warnings.append(f"no layout fits with ZeRO 1 or 2 (the closest needs {closest[2]:.1f} GB of {usable_gb:.1f} "
                        f"GB usable), so this one shards the weights too (ZeRO 3) and all-gathers them every "
                        f"micro-batch: {best.breakdown_s.get('data_parallel', 0.0):.3g} s of data-parallel traffic "
                        "per step; more devices, --recompute or a smaller --micro-batch avoid it")
    if calibration is not None and calibration.collectives:
        backend = calibration.collectives.get("backend")
        if calibration.device.catalog_id != acc.id or backend == "gloo":
            warnings.append(f"the calibration file's collectives were measured on {calibration.device.name} over "
                            f"{backend}, the estimate is for {acc.id} on {system.id}: its link figures replace "
                            "the system's as asked, but describe another fabric")
    return StepEstimate(layout=best.layout, step_time_s=best.step_time_s, tokens_per_s=tokens_per_s, mfu=best.mfu,
                        hfu=best.hfu, breakdown_s=best.breakdown_s, memory_gb=best.memory_gb, system=system,
                        ranked=tuple(timed[:max(1, request.num_layouts)]), assumptions=tuple(assumptions),
                        warnings=tuple(warnings), stack=report)


__all__ = ["DEFAULT_BATCH_TOKENS", "ERROR_BAND", "MAX_CANDIDATES", "MAX_PLANNED_DEVICES", "StepEstimate",
           "check_fixed_layout", "default_global_batch", "device_counts", "fewest_devices", "leanest_layout",
           "memory_text", "request_choices", "search_devices", "stack_and_fixed", "step_estimate",
           "usable_memory_gb"]
