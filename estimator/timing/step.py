"""The step-time model: seconds per optimizer step of a transformer for a parallel layout on a
system, and the search for the fastest layout that fits memory.

One step of ``B`` sequences of ``s`` tokens on ``N = TP x CP x PP x DP`` devices (Megatron-LM's
schedule; Narayanan et al. 2021, arXiv 2104.04473; Korthikanti et al. 2022, arXiv 2205.05198):

1. **Compute, per micro-batch and pipeline stage.** Every matmul of the architecture's layers
   (:mod:`estimator.model.flops`: attention projections, attention scores, FFN or the routed and shared
   experts, the output head on the last stage), divided by TP (and CP for the tokens), each timed at
   on the roofline: the longer of its FLOPs at ``peak x e_max`` and its operands and result at the
   HBM bandwidth, plus ``KERNEL_OVERHEAD_S`` per kernel. ``e_max`` is the maximum achievable matmul
   fraction of the dense peak measured on that chip (``MAX_MATMUL_FRACTION``, stas00/ml-engineering
   "MAMF"), or the calibration file's best measured matmul.
   Backward = 2 x forward matmul work. Recompute adds the forward of every layer (full) or of the
   attention scores (selective). Causal attention with a fused (flash) kernel does half the score
   matmuls; without one (the 2021-22 Megatron runs) the full ``s x s`` matrix is computed.
   Memory-bound work (norms, activations, residuals, dropout; softmax over the scores without a
   fused kernel; the optimizer step) moves bytes at the HBM bandwidth.
2. **Tensor parallel:** 2 all-reduces of the layer's activations forward and 2 backward per layer
   (reduce-scatter + all-gather with sequence parallelism: the same bytes), one more pair per layer
   with full recompute; not overlapped with compute (Megatron's default).
   **Context parallel:** an all-gather of K and V forward and a reduce-scatter of their gradients
   backward per layer (Llama 3 section 3.3.2), exposed. **Expert parallel:** an all-to-all dispatch
   and combine per MoE layer forward, twice that backward, exposed. **Pipeline parallel:**
   point-to-point activations (forward) and gradients (backward) between stages, and the bubble:
   step = (m + (PP - 1) / v) x stage time for m micro-batches and v interleaved chunks (Narayanan
   et al. 2021, section 2.2). **Data parallel:** the gradient all-reduce (ZeRO 0) or reduce-scatter
   plus parameter all-gather (ZeRO 1-2; ZeRO 3 also gathers the weights for every micro-batch's
   forward and backward), ``DP_OVERLAP`` of it hidden behind the backward pass. ZeRO 2 and 3 hold
   only a shard of the gradients, so they also reduce-scatter them after each earlier micro-batch,
   beside the next one's backward: only what is longer than that backward shows.
3. **A collective** takes ``latency + bytes x factor / bus bandwidth`` with the nccl-tests factor
   (all-reduce 2(n-1)/n; all-gather, reduce-scatter, all-to-all (n-1)/n; point-to-point 1) and the
   bus bandwidth of the link the group spans: inside a node, the system's published measured
   nccl-tests bus bandwidth (else the per-GPU link bandwidth x ``LINK_EFFICIENCY``); across nodes,
   the members per node x the network bandwidth per GPU x ``NETWORK_EFFICIENCY`` (capped by the
   intra-node figure); a calibration file with a ``collectives`` section (``gpucost profile --comm``)
   replaces them with what was measured. The latency across nodes is NCCL's own: all-gather and
   reduce-scatter have only rings, a base latency plus a hop per ring step (``ring_latency_s``: it
   grows with every rank and node); an all-reduce takes the tree's ``LATENCY_INTER_S`` x log2(ranks).
4. **At scale** (docs/scale.md): ZeRO-3 gathers and scatters one layer at a time, each collective
   paying its latency; the training stack's choices are arguments of :func:`time_layout` (the bytes
   of a gradient on the wire, ZeRO-2 per layer, prefetch beside the neighbouring layer's compute, the
   share of the data-parallel reduction hidden behind backward) and so is the straggler stretch
   (MegaScale's slow-host share, :func:`straggler_factor`), on by default: a synchronous step waits
   for its slowest host.

The constants marked *fitted* were fitted on the published layouts in ``catalogs/layout_runs.yaml``
(``benchmarks/fit_step_model.py``; ``gpucost validate`` prints the error on every row, and
``tests/test_step.py`` fails if the constants drift from the fit). Not modelled: failures and
restarts, network congestion and topology beyond two tiers, kernel-level overlap of communication
with compute (DualPipe, TP overlap), load imbalance between experts, and the embedding and loss work
beyond their matmuls.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, NamedTuple

from estimator.model.arch import Architecture
from estimator.model.memory import Parallelism, layer_linears, plain_dense_layers, training_memory
from estimator.catalog.records import Accelerator
from estimator.errors import InputError
from estimator.timing.layout import Layout, group_span
from estimator.timing.roofline import (HBM_EFFICIENCY, OPTIMIZER_BYTES_PER_PARAM, SOFTMAX_BYTES_PER_SCORE, Constants,
                                       Shape, StepTime, _matmul_seconds, gemm_seconds, matmul_fraction)
from estimator.timing.comm import (SCALE_DEFAULTS, Links, _collective, num_hosts, sharded_exposed_s,
                                   straggler_factor)
from estimator.timing.stacks import (FLASH_BACKWARD_RATIO, attention_rate, eager_compute, optimizer_seconds,
                                     stack_memory)


def time_layout(shape: Shape, layout: Layout, acc: Accelerator, precision: str, links: Links, *,
                flash_attention: bool = True, memory_gb: float | None = None,
                constants: Constants = Constants(), e_max: float | None = None,
                grad_reduce_bytes: float | None = None, sharded_per_layer: bool | None = None,
                zero2_per_layer: bool | None = None, prefetch: bool | None = None, stragglers: bool = True,
                grad_accumulation_bytes: float | None = None, p2p_serial: bool | None = None,
                fp8_cast_bytes: Any = None, stack: Any = None, finetune: Any = None,
                compute_scale: float = 1.0, memo: dict | None = None) -> StepTime:
    """Seconds per optimizer step of ``layout`` (see the module docstring for what is counted).

    The at-scale terms take the training stack's choices as arguments (None: the stack's, else SCALE_DEFAULTS):
    ``grad_reduce_bytes`` bytes per gradient element on the data-parallel wire (2: bf16; 4: Megatron-LM's
    fp32 gradient reduction with bf16, ``accumulate_allreduce_grads_in_fp32``; FSDP's ``reduce_dtype``);
    ``sharded_per_layer``: ZeRO-3 gathers and scatters one layer at a time (FSDP wraps each block, DeepSpeed
    fetches each module), each collective paying its latency, rather than the whole model in one;
    ``zero2_per_layer``: ZeRO-2 does so too (FSDP's SHARD_GRAD_OP) instead of one bucketed reduction;
    ``prefetch``: each layer's collectives run beside the neighbouring layer's compute and only what is
    longer shows (:func:`sharded_exposed_s`; FSDP's forward and backward prefetch); ``stragglers``
    stretches the compute by the expected slowest host (:func:`straggler_factor`).
    ``grad_accumulation_bytes``: bytes moved per parameter of this device every micro-batch to accumulate
    its gradient outside the weight-gradient matmul (0: Megatron fuses it into the matmul; DeepSpeed's
    pipeline engine adds each micro-batch's bf16 gradients into fp32 ones, ``update_hp_grads``).
    The fitted ``constants.dp_overlap`` hides that share of a bucketed data-parallel reduction behind
    backward; collectives run one layer at a time (``sharded_per_layer``, ``zero2_per_layer``) are timed
    layer by layer instead (exposed, or beside the neighbouring layer with ``prefetch``).
    ``p2p_serial`` times each pipeline exchange (the activation forward, its gradient back)
    as two transfers one after the other (DeepSpeed's pipeline engine: a blocking recv, then a blocking
    send), not as one batched send/receive (Megatron's ``send_forward_recv_backward``).
    ``stack`` (a :class:`estimator.timing.stacks.StackChoice`): an eager stack's micro-batch and
    optimizer step replace the fused layer's (estimator/timing/stacks.py), and it reduces gradients in
    its weights' dtype; None is the fused stack. A stack's catalog entry sets the at-scale arguments it
    gives (:meth:`estimator.catalog.stacks.Stack.scale_arguments`: its gradient bytes, per-layer ZeRO and
    prefetch, gradient accumulation) where the caller gives none; what neither sets is SCALE_DEFAULTS.

    ``finetune`` (an :class:`estimator.model.finetune.FinetuneSpec`) with frozen weights (LoRA,
    QLoRA): their matmuls run the input-gradient backward only (one backward matmul per forward
    matmul, not two), the adapters' matmuls run forward and backward, QLoRA dequantises every
    NF4 weight before each forward and backward use (HBM-bound: read 4.127 bits, write 2 bytes per
    weight, one kernel per matrix), the gradient reduction and optimizer step cover the adapters, and
    ZeRO-3 gathers the frozen weights as stored. Model FLOPs (the MFU numerator) are the fine-tune's
    own count (FinetuneSpec.train_model_per_token).

    ``compute_scale`` multiplies the device's own work (matmuls, elementwise, the optimizer): a
    calibration's measured step / the modelled one (estimator.timing.measured.measured_compute_scale);
    communication is not scaled.

    ``memo``: a dict the caller keeps across the layouts of one request (the same shape, device,
    precision, stack and constants), in which each micro-batch's per-layer compute (:func:`layer_work`)
    is kept by TP, CP, micro-batch, recompute and sequence parallelism: a layout search times hundreds
    of layouts from a few dozen of them."""
    scale = {**SCALE_DEFAULTS, **(stack.stack.scale_arguments() if stack is not None else {})}
    grad_reduce_bytes = scale["grad_reduce_bytes"] if grad_reduce_bytes is None else grad_reduce_bytes
    sharded_per_layer = scale["sharded_per_layer"] if sharded_per_layer is None else sharded_per_layer
    zero2_per_layer = scale["zero2_per_layer"] if zero2_per_layer is None else zero2_per_layer
    prefetch = scale["prefetch"] if prefetch is None else prefetch
    if grad_accumulation_bytes is None:
        grad_accumulation_bytes = scale["grad_accumulation_bytes"]
    p2p_serial = scale["p2p_serial"] if p2p_serial is None else p2p_serial
    fp8_cast_bytes = scale["fp8_cast_bytes"] if fp8_cast_bytes is None else fp8_cast_bytes
    p2p_transfers = 2 if p2p_serial else 1  # per stage-boundary exchange, one after the other
    arch = shape.arch
    t, p, c, d, e = (layout.tensor_parallel, layout.pipeline_parallel, layout.context_parallel,
                     layout.data_parallel, layout.expert_parallel)
    b, s, h = layout.micro_batch, shape.seq_len, arch.hidden_size
    peak = acc.peak_for(precision)
    if peak is None:
        have = ", ".join(p for p in acc.peak_tflops if p in ("bf16", "fp16", "fp8", "fp32", "tf32")) or "none"
        raise InputError(f"{acc.id} has no {precision} peak in the catalog (it has: {have}); "
                         f"choose another --precision")
    if e_max is None:
        e_max = matmul_fraction(acc, precision)[0]
    flop_rate = peak * 1e12 * e_max
    hbm = acc.memory_bandwidth_gbps * 1e9 * HBM_EFFICIENCY
    tokens = b * s / c  # tokens of one micro-batch on one device (CP splits the sequence)
    act_bytes = 2.0  # 16-bit activations on the wire

    inside_tp, tp_node = group_span(1, t, links.per_node)
    inside_cp, cp_node = group_span(t, c, links.per_node)
    inside_ep, ep_node = group_span(t * c, e, links.per_node)
    inside_pp, pp_node = group_span(t * c, p, links.per_node)
    inside_dp, dp_node = group_span(t * c * p, d, links.per_node)
    activation = tokens * h * act_bytes  # one micro-batch's layer output on this device (bytes)
    tp_ar = _collective("all_reduce", activation, t, inside_tp, tp_node, links)
    cp_kv = _collective("all_gather", c * tokens * 2 * shape.kv_dim / t * act_bytes, c, inside_cp, cp_node, links)
    ep_a2a = _collective("all_to_all", tokens * max(shape.top_k, 1) * h * act_bytes / t, e, inside_ep, ep_node, links)

    full = layout.recompute == "full"
    selective = layout.recompute == "selective"
    # the slowest stage holds ceil(L / p) layers when p does not divide them (uneven stages)
    layers_total = shape.num_dense_layers + shape.num_moe_layers
    uneven = math.ceil(layers_total / p) * p / layers_total
    layers_dense = shape.num_dense_layers / p * uneven
    layers_moe = shape.num_moe_layers / p * uneven
    key = (t, c, b, layout.recompute, layout.sequence_parallel)
    work = memo.get(key) if memo is not None else None
    if work is None:
        attention = attention_rate(stack, acc) if stack is not None else None
        work = layer_work(shape, t, c, b, layout.recompute, layout.sequence_parallel, precision, flop_rate, hbm,
                          constants=constants, flash_attention=flash_attention, stack=stack,
                          fp8_cast_bytes=fp8_cast_bytes, attention_flops=attention[0] if attention else None)
        if memo is not None:
            memo[key] = work
    sac_share = work.sac_share
    fwd = layers_dense * work.dense_forward_s + layers_moe * work.moe_forward_s
    if sac_share:
        recompute = layers_dense * work.sac_recompute_s
    else:
        recompute = fwd if full else (layers_total / p * uneven * work.attention_core_s if selective else 0.0)
    head_time = work.head_s
    compute = 3 * fwd + recompute + 3 * head_time + layers_dense * work.fp8_cast_s  # backward = 2 x forward
    eager = stack is not None and stack.eager
    if eager:  # every op the stack's modules launch, on one device (TP, PP, CP, EP refused before)
        timed = work.eager
        fwd, head_time, compute = timed.forward_s, 0.0, timed.compute_s
        recompute = fwd if full else 0.0
    frozen = finetune is not None and finetune.frozen
    if frozen:
        # frozen weights: no weight-gradient matmul (the backward keeps the input gradient only); the
        # adapters' matmuls (2 forward, 4 backward, 2 more recomputed); QLoRA's dequantisation. Timed as the
        # stack times its matmuls (an eager stack: its sustained matmul rate and launch cost).
        rate, kernel_s = ((flop_rate * stack.stack.matmul_fraction_of_mamf, stack.stack.device_s_per_kernel) if eager
                          else (flop_rate, constants.kernel_overhead_s))

        def gemms_s(gemms: tuple[tuple[float, float, float, float], ...]) -> float:
            return gemm_seconds(gemms, tokens, t, rate, hbm, kernel_s)

        head_s = gemms_s(((shape.head_flops_per_token, 1, arch.vocab_size, h),)) if shape.head_flops_per_token else 0.0
        weight_grads = layers_dense * gemms_s(shape.layer_gemms) + layers_moe * gemms_s(shape.moe_gemms) + head_s
        adapters = layers_dense * gemms_s(finetune.adapter_gemms) + layers_moe * gemms_s(finetune.adapter_moe_gemms)
        passes = 3 if full else 2  # forward, backward (input gradient), and the recomputed forward
        dequant, dequant_kernels = 0.0, 0.0
        if finetune.quantized_params:
            from estimator.model.finetune import BF16_BYTES, NF4_BYTES_PER_PARAM

            stage_quantized = finetune.quantized_params / (t * p) * uneven
            dequant_kernels = passes * layers_total / p * uneven * finetune.quantized_matrices_per_layer
            dequant = passes * stage_quantized * (NF4_BYTES_PER_PARAM + BF16_BYTES) / hbm + dequant_kernels * kernel_s
        device_delta = -weight_grads + (passes + 1) * adapters + dequant
        if eager:  # the host launches the adapters' and dequantisation kernels, not the weight gradients'
            adapter_kernels = (passes + 1) * (layers_dense * len(finetune.adapter_gemms)
                                               + layers_moe * len(finetune.adapter_moe_gemms))
            skipped = layers_dense * len(shape.layer_gemms) + layers_moe * len(shape.moe_gemms) + 1
            host_per = timed.host_s_per_layer_kernel
            compute = timed.in_order_s(device_delta, (adapter_kernels + dequant_kernels - skipped) * host_per)
        else:
            compute += device_delta
    fwd, recompute, head_time, compute = (x * compute_scale for x in (fwd, recompute, head_time, compute))
    num_layers_stage = layers_total / p * uneven
    tp_comm = num_layers_stage * tp_ar * (4 + (2 if full else 0))
    cp_comm = num_layers_stage * cp_kv * (2 + (1 if full else 0))
    ep_comm = layers_moe * ep_a2a * (6 + (2 if full else 0))
    pp_comm = 2 * p2p_transfers * _collective("p2p", activation / t if layout.sequence_parallel else activation, 2,
                                              inside_pp, pp_node, links) if p > 1 else 0.0
    # each micro-batch's gradients added into the step's outside the weight-gradient matmuls (a stream pass
    # over this device's gradients, on the pipeline's critical path); none in an eager stack's own tables
    params_here = (finetune.trainable_params / (t * p) if frozen else  # frozen weights have no gradient
                   (shape.total_params - shape.expert_params) / (t * p) + shape.expert_params / (t * p * e))
    grad_accumulation = 0.0 if eager else params_here * grad_accumulation_bytes / hbm
    stage = compute + tp_comm + cp_comm + ep_comm + pp_comm * layout.virtual_stages + grad_accumulation
    m = layout.num_micro_batches
    bubble_factor = (p - 1) / layout.virtual_stages
    slowest = straggler_factor(num_hosts(layout.num_devices, links.per_node)) if stragglers else 1.0
    pipeline_time = (m + bubble_factor) * stage * slowest

    # data parallel: gradients of this device's parameters (bf16), expert parameters over d / e ranks
    dense_params = (shape.total_params - shape.expert_params) / (t * p)
    expert_params = shape.expert_params / (t * p * e)
    grad_bytes = stack.weight_bytes if eager else grad_reduce_bytes  # an eager stack reduces in its weights' dtype
    if frozen:  # only the adapters have gradients and optimizer states
        dense_params, expert_params = finetune.trainable_params / (t * p), 0.0
    dp_time = _collective("all_reduce", dense_params * grad_bytes, d, inside_dp, dp_node, links)
    if e > 1:
        exp_inside, exp_node = group_span(t * c * p * e, d // e, links.per_node)
        dp_time += _collective("all_reduce", expert_params * grad_bytes, d // e, exp_inside, exp_node, links)
    else:
        dp_time += _collective("all_reduce", expert_params * grad_bytes, d, inside_dp, dp_node, links)
    layered = (layout.zero_stage == 3 and sharded_per_layer) or (layout.zero_stage == 2 and zero2_per_layer)
    layers_here = max(1, math.ceil(num_layers_stage))
    chunks = layers_here if layered else 1
    sharded_bytes = dense_params + expert_params
    gather_bytes = sharded_bytes * 2.0
    if frozen and layout.zero_stage == 3:  # FSDP gathers the frozen weights as stored (bf16, or NF4 under QLoRA)
        held = (shape.total_params - shape.expert_params) / (t * p) + shape.expert_params / (t * p * e)
        gather_bytes = finetune.weight_bytes * held / shape.total_params
    gather = _collective("all_gather", gather_bytes, d, inside_dp, dp_node, links, chunks=chunks)
    scatter = _collective("reduce_scatter", sharded_bytes * grad_bytes, d, inside_dp, dp_node, links, chunks=chunks)
    if layered and prefetch:
        # every collective one layer at a time, beside the neighbouring layer's compute
        backward_layers = compute - fwd - 3 * head_time  # backward (2 x forward) and any recompute
        dp_exposed = sharded_exposed_s(gather / layers_here, scatter / layers_here, layers_here, fwd / layers_here,
                                       backward_layers / layers_here, m, layout.zero_stage)
    else:
        zero3 = 2 * m * gather if layout.zero_stage == 3 else 0.0  # weights gathered for every forward and backward
        sharded_grads = 0.0
        if layout.zero_stage >= 2 and m > 1:
            # ZeRO 2 and 3 keep only their shard of the gradients, so every micro-batch's are reduce-scattered
            # (ZeRO 1 accumulates the full gradients and reduces once per step). Each of the first m - 1 runs
            # on its own stream beside the next micro-batch's backward and shows only where it is longer;
            # the last is the step's own reduction, already in dp_time.
            backward = compute - fwd - head_time
            sharded_grads = (m - 1) * max(0.0, scatter - backward)
        if layout.zero_stage == 3:
            # ZeRO 3 reduce-scatters the gradients and gathers no weights after the step: every micro-batch's
            # forward gathers them (zero3)
            dp_time = scatter
        elif layered:  # the step's own reduction is per layer too: a reduce-scatter and an all-gather each
            dp_time = scatter + gather
        hidden = 0.0 if layered else constants.dp_overlap  # a per-layer path is timed layer by layer
        dp_exposed = (dp_time + zero3) * (1 - hidden) + sharded_grads
    shard = d if layout.zero_stage >= 1 else 1
    optimizer = (dense_params + expert_params) * OPTIMIZER_BYTES_PER_PARAM / shard / hbm
    if stack is not None and (eager or stack.master_weights == "bf16"):
        optimizer = optimizer_seconds(stack, dense_params + expert_params, hbm) / shard
    optimizer *= compute_scale

    step_time = pipeline_time + dp_exposed + optimizer
    tokens_step = layout.global_batch * s
    # model and hardware FLOPs in the convention the time was computed in (Shape.executed); a fine-tune with
    # frozen weights counts no weight gradients for them and its adapters' work (FinetuneSpec)
    per_token, layers_forward, score_share = shape.executed(flash_attention)
    if finetune is not None:
        per_token = finetune.train_model_per_token(per_token)
    model_flops = per_token * tokens_step
    per_device_peak = peak * 1e12 * layout.num_devices
    if full:  # every layer's forward again (not the output head)
        hw_extra = layers_forward * tokens_step
    elif sac_share:  # the unsaved matmuls' forward again
        hw_extra = sum(g[0] for g in shape.layer_gemms) * sac_share * layers_total * tokens_step
    elif selective:  # the attention-score matmuls' forward again
        hw_extra = shape.score_flops_per_token * score_share * layers_total * tokens_step
    else:
        hw_extra = 0.0
    breakdown = {
        "compute": m * compute, "tensor_parallel": m * tp_comm, "context_parallel": m * cp_comm,
        "expert_parallel": m * ep_comm, "pipeline_p2p": m * pp_comm * layout.virtual_stages,
        "gradient_accumulation": m * grad_accumulation,
        "pipeline_bubble": bubble_factor * stage, "stragglers": (m + bubble_factor) * stage * (slowest - 1.0),
        "data_parallel": dp_exposed, "optimizer": optimizer,
    }
    return StepTime(layout=layout, step_time_s=step_time, breakdown_s={k: v for k, v in breakdown.items() if v > 0},
                    model_flops=model_flops, hardware_flops=model_flops + hw_extra,
                    memory_gb=memory_gb if memory_gb is not None else 0.0, fits=True,
                    mfu=model_flops / (step_time * per_device_peak),
                    hfu=(model_flops + hw_extra) / (step_time * per_device_peak))


class LayerWork(NamedTuple):
    """One micro-batch's compute on one device, per layer (seconds): what :func:`time_layout` multiplies
    by the layers of a pipeline stage."""

    dense_forward_s: float  # a dense layer's forward: matmuls, attention core, elementwise work
    moe_forward_s: float  # a mixture-of-experts layer's forward
    attention_core_s: float  # the score matmuls and, unfused, their softmax (selective recompute)
    sac_share: float  # the share of a dense layer's matmul FLOPs the alternate-matmul policy reruns, else 0
    sac_recompute_s: float  # a dense layer's recompute under that policy: those matmuls and every elementwise op
    head_s: float  # the output head's forward (the last stage)
    fp8_cast_s: float  # a dense layer's float8 scaling casts (fp8_cast_seconds), else 0
    eager: Any  # an eager stack's whole micro-batch (estimator.timing.stacks.eager_compute), else None


def layer_work(shape: Shape, t: int, c: int, micro_batch: int, recompute: str, sequence_parallel: bool,
               precision: str, flop_rate: float, hbm: float, *, constants: Constants = Constants(),
               flash_attention: bool = True, stack: Any = None, fp8_cast_bytes: Any = None,
               attention_flops: float | None = None) -> LayerWork:
    """The per-layer compute of one micro-batch of ``micro_batch`` sequences on a device of a layout with
    tensor-parallel ``t`` and context-parallel ``c`` (module docstring, item 1): matmuls at ``flop_rate``
    (FLOP/s) on the roofline with ``hbm`` (bytes/s), elementwise traffic at ``hbm``; a flash-attention
    kernel at ``attention_flops`` (FLOP/s) where the stack gives one (the FlashAttention-2 accounting:
    backward 2.5 x forward; :func:`estimator.timing.stacks.attention_rate`), else at ``flop_rate``."""
    arch = shape.arch
    s, h = shape.seq_len, arch.hidden_size
    tokens = micro_batch * s / c  # tokens of one micro-batch on one device (CP splits the sequence)

    def gemm_time(gemms: tuple[tuple[float, float, float, float], ...]) -> float:
        return gemm_seconds(gemms, tokens, t, flop_rate, hbm, constants.kernel_overhead_s)

    # attention scores: one batched matmul over micro-batch x local heads, each (s/c) x s x head width;
    # a fused kernel (flash attention) keeps the scores on chip and skips the masked half when causal
    score_flops = shape.score_flops_per_token * tokens / t * (0.5 if (flash_attention and shape.causal) else 1.0)
    head_width = arch.mla.qk_head_dim if arch.mla else arch.head_dim
    heads_local = max(1.0, arch.num_heads / t)
    if attention_flops:  # forward time such that the layer's passes (3, or 4 recomputed) time 1 + 2.5 (+ 1)
        passes = 4.0 if recompute == "full" else 3.0
        score_rate = attention_flops * passes / (passes + FLASH_BACKWARD_RATIO - 2.0)
    else:
        score_rate = flop_rate
    score_time = (score_flops / score_rate + constants.kernel_overhead_s if flash_attention else
                  _matmul_seconds(score_flops, s / c, s, head_width, micro_batch * heads_local, flop_rate, hbm,
                                  constants.kernel_overhead_s))
    # elementwise traffic follows the activations it reads and writes (Korthikanti et al. 2022 section
    # 4.1: of 34 bytes per token per hidden unit, 10 are replicated across TP ranks unless sequence
    # parallelism splits them too)
    split = 1.0 / t if sequence_parallel or t == 1 else (10 + 24 / t) / 34
    elem = constants.elementwise_bytes_per_hidden * tokens * h * split / hbm
    softmax = 0.0 if flash_attention else SOFTMAX_BYTES_PER_SCORE * arch.num_heads / t * tokens * s / hbm
    elem += softmax
    dense_matmuls = gemm_time(shape.layer_gemms)
    # selective recompute reruns the attention core: the score matmuls and, unfused, their softmax; under
    # torchtitan's alternate-matmul policy, the unsaved matmuls' share of the layer's and every elementwise op
    sac_share = (recomputed_matmul_share(arch) if recompute == "selective" and alternate_matmuls(stack, arch)
                 else 0.0)
    head = shape.head_flops_per_token * tokens / t
    casts = fp8_cast_bytes if precision == "fp8" else None
    eager = stack is not None and stack.eager
    return LayerWork(
        dense_forward_s=dense_matmuls + score_time + elem,
        moe_forward_s=gemm_time(shape.moe_gemms) + score_time + elem if shape.num_moe_layers else 0.0,
        attention_core_s=score_time + softmax,
        sac_share=sac_share,
        sac_recompute_s=dense_matmuls * sac_share + elem,
        head_s=_matmul_seconds(head, tokens, arch.vocab_size / t, h, 1.0, flop_rate, hbm,
                               constants.kernel_overhead_s) if head else 0.0,
        # float8 scaling casts around every linear of the layers (fp8_cast_seconds)
        fp8_cast_s=(fp8_cast_seconds(arch, casts, tokens / t, recompute == "full", hbm)
                    if casts and plain_dense_layers(arch) else 0.0),
        eager=eager_compute(shape, stack, tokens=tokens, recompute=recompute, flop_rate=flop_rate,
                            attention_flops=attention_flops, hbm_bytes_per_s=hbm) if eager else None)


def alternate_matmuls(stack: Any, arch: Architecture) -> bool:
    """Whether ``--recompute selective`` runs torchtitan's alternate-matmul policy here (the stack's
    ``selective_policy``, on a dense non-MLA layer; estimator.model.memory.layer_linears)."""
    return stack is not None and stack.stack.selective_policy == "alternate_matmuls" and plain_dense_layers(arch)


def recomputed_matmul_share(arch: Architecture) -> float:
    """The share of a dense layer's matmul FLOPs that torchtitan's alternate-matmul policy reruns in
    backward (each matmul 2 x input width x output width per token)."""
    flops = [(k * n, saved) for _, k, n, saved in layer_linears(arch)]
    return sum(f for f, saved in flops if not saved) / sum(f for f, _ in flops)


def fp8_cast_seconds(arch: Architecture, casts: Any, tokens: float, full: bool, hbm_bytes_per_s: float) -> float:
    """One dense layer's float8 scaling casts for one micro-batch of ``tokens`` tokens on this device, at the
    HBM rate (torchao's float8 roofline, pytorch/ao torchao/testing/training/roofline_utils.py
    get_float8_mem_sympy: three tensors per linear). Forward: the input (``per_activation_element`` bytes per
    element: the amax fused with its producer, then a bf16 read and row- and column-major fp8 writes) and
    the weight (``per_weight_param``: its amax and a cast forward and again in backward); backward: the
    output gradient as the input. A full recompute casts the inputs again."""
    per_element = casts["per_activation_element"]
    linears = layer_linears(arch)
    inputs = sum(k for _, k, _, _ in linears)
    outputs = sum(n for _, _, n, _ in linears)
    weights = sum(k * n for _, k, n, _ in linears)
    activations = tokens * (inputs * (2 if full else 1) + outputs) * per_element
    return (activations + weights * casts["per_weight_param"]) / hbm_bytes_per_s


def eager_memory(arch: Architecture, stack: Any, layout: Layout, seq_len: int, finetune: Any = None) -> Any:
    """An eager stack's peak memory (estimator.timing.stacks.StackMemory) for ``layout``; with a frozen-weight
    fine-tune, gradients and AdamW states for the adapters only, the frozen weights as stored (bf16 or NF4,
    so no autocast copies of them) and the adapters in the stack's weight dtype."""

    frozen = finetune is not None and finetune.frozen
    memory = stack_memory(arch, stack, seq_len=seq_len, micro_batch=layout.micro_batch, recompute=layout.recompute,
                          data_parallel=layout.data_parallel, zero_stage=layout.zero_stage,
                          num_micro_batches=layout.num_micro_batches,
                          trainable_params=min(finetune.trainable_params, finetune.frozen_params) if frozen else None)
    if frozen:
        shard = layout.data_parallel if layout.zero_stage >= 3 else 1
        memory = replace(memory, weights_bytes=(finetune.frozen_weight_bytes + finetune.trainable_params
                                                * stack.weight_bytes) / shard, weight_copies_bytes=0.0)
    return memory


def layout_memory(arch: Architecture, layout: Layout, seq_len: int, *, flash_attention: bool = True,
                  stack: Any = None, finetune: Any = None) -> Any:
    """Training memory on the most loaded device of ``layout``: a MemoryBreakdown (estimator.model.memory),
    or an eager ``stack``'s peak allocated memory from estimator.timing.stacks; bf16 master weights hold
    2 + 2 + 4 bytes per parameter. Both have ``total_bytes``. A fine-tune with frozen weights
    (``finetune``) holds gradients and optimizer states for its adapters only, and its frozen weights as
    stored (bf16 or NF4): no autocast copies of them."""
    if stack is not None and stack.eager:
        return eager_memory(arch, stack, layout, seq_len, finetune)
    states = {} if stack is None or stack.master_weights == "fp32" else dict(weight_bytes=2.0, grad_bytes=2.0,
                                                                             optimizer_bytes=4.0)

    par = Parallelism(data=layout.data_parallel, tensor=layout.tensor_parallel, pipeline=layout.pipeline_parallel,
                      expert=layout.expert_parallel, sequence_parallel=layout.sequence_parallel,
                      zero_stage=layout.zero_stage)
    kept = stack.stack.memory_arguments() if stack is not None else {}
    return training_memory(arch, seq_len=max(1, seq_len // layout.context_parallel), micro_batch=layout.micro_batch,
                           parallel=par, recompute=layout.recompute, flash_attention=flash_attention,
                           finetune=finetune, **states, **kept)


def layout_memory_gb(arch: Architecture, layout: Layout, seq_len: int, *, flash_attention: bool = True,
                     stack: Any = None, finetune: Any = None) -> float:
    """Training memory (decimal GB) on the most loaded device of ``layout`` (:func:`layout_memory`)."""
    return layout_memory(arch, layout, seq_len, flash_attention=flash_attention, stack=stack,
                         finetune=finetune).total_bytes / 1e9


__all__ = ["LayerWork", "alternate_matmuls", "eager_memory", "fp8_cast_seconds", "layer_work", "layout_memory",
           "layout_memory_gb", "recomputed_matmul_share", "time_layout"]
