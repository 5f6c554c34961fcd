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
   of a gradient on the wire, ZeRO-2 per layer, prefetch beside the neighbouring layer's compute) and
   so is a straggler stretch (MegaScale's slow-host share, :func:`straggler_factor`); their defaults
   keep today's answers.

The constants marked *fitted* were fitted on the published layouts in ``catalogs/layout_runs.yaml``
(``benchmarks/fit_step_model.py``; ``gpucost validate`` prints the error on every row, and
``tests/test_step.py`` fails if the constants drift from the fit). Not modelled: failures and
restarts, network congestion and topology beyond two tiers, kernel-level overlap of communication
with compute (DualPipe, TP overlap), load imbalance between experts, and the embedding and loss work
beyond their matmuls; stragglers only where asked.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Any

from estimator.model.arch import Architecture
from estimator.catalog.records import Accelerator
from estimator.catalog.core import Catalog
from estimator.errors import InputError
from estimator.timing.layout import Layout, candidates, group_span
from estimator.request import EstimateRequest

# Maximum achievable matmul TFLOP/s as a fraction of the dense peak (stas00/ml-engineering,
# compute/accelerator/README.md, "Maximum Achievable Matmul FLOPS" table: A100 SXM bf16 271.2/312,
# H100 SXM bf16 794.5/989, fp8 1402.6/1979, H200 fp8 1453.4/1979, B200 bf16 1745/2250, MI300X
# bf16 668.4/1300). The H800 is the H100's die; PCIe/NVL variants take their family's figure.
MAX_MATMUL_FRACTION = {
    "a100": {"default": 0.869},
    "h100": {"default": 0.803, "fp8": 0.709},
    "h800": {"default": 0.803, "fp8": 0.709},
    "h200": {"default": 0.803, "fp8": 0.734},
    "b200": {"default": 0.776},
    "mi300x": {"default": 0.514},
}
DEFAULT_MAX_MATMUL_FRACTION = 0.80  # the median of the table, for chips it lacks (stated in the output)

# -- fitted constants (benchmarks/fit_step_model.py on catalogs/layout_runs.yaml) ------------------
KERNEL_OVERHEAD_S = 20e-6  # launch and tail of one matmul kernel, s (fitted)
ELEMENTWISE_BYTES_PER_HIDDEN = 144.0  # HBM bytes moved per token per hidden unit per layer, forward (fitted)
DP_OVERLAP = 0.0  # share of the data-parallel gradient traffic hidden behind the backward pass (fitted)

# -- anchored constants --------------------------------------------------------------------------
SOFTMAX_BYTES_PER_SCORE = 10.0  # unfused softmax + mask + dropout: read/write ~10 B per score, forward
OPTIMIZER_BYTES_PER_PARAM = 36.0  # AdamW step: read fp32 master, m, v, grad; write master, m, v, bf16 weight
HBM_EFFICIENCY = 0.85  # achievable share of the datasheet HBM bandwidth (stream copy, e.g. 2.8 of 3.35 TB/s)
LINK_EFFICIENCY = 0.77  # nccl-tests all-reduce busbw / NVLink per-direction bandwidth (A100: 232 / 300)
NETWORK_EFFICIENCY = 0.96  # nccl-tests across nodes / NIC line rate (400 Gb/s NIC: 48 of 50 GB/s)
LATENCY_INTRA_S = 20e-6  # one small collective inside a node (nccl-tests small-message time, NVLink)
LATENCY_INTER_S = 40e-6  # one small collective step across nodes (InfiniBand/RoCE)
# NCCL's own cost model of a collective (NVIDIA/nccl src/graph/tuning.cc, ncclTunerConstantsDefaults
# and ncclTopoTuneModel, commit 5067397c26, 2026-06): a ring of n ranks on k nodes takes
# baseLatency + (steps - inter_steps) x intra hop + inter_steps x network hop, with steps = n - 1 for
# all-gather and reduce-scatter (2(n - 1) for all-reduce) and inter_steps = k - 1 (2(k - 1)); NCCL has
# no tree for all-gather or reduce-scatter, so their latency grows with the ranks, not log2 of them.
NCCL_BASE_LATENCY_S = 8.4e-6  # baseLatencies, Ring, Simple protocol (the large-message protocol)
NCCL_NVLINK_HOP_S = 3.4e-6  # hwLatencies NVLINK, Ring, Simple
NCCL_NET_HOP_S = 14.0e-6  # hwLatencies NET, Ring, Simple
# Stragglers (Jiang et al. 2024, MegaScale, arXiv 2402.15627): "a minor fraction of machines
# (approximately 0.5%) exhibit substantially slower performance ... The training efficiency is
# predominantly determined by the slowest machine's performance" (section 5.1); "specific hosts took
# approximately 10% more time to execute the same forward computations compared to other ranks"
# (section 6.3). A synchronous step waits for its slowest host: with k hosts the chance that at least
# one is slow is 1 - (1 - share)^k, and the compute of the step stretches by the slow host's excess.
SLOW_HOST_SHARE = 0.005
SLOW_HOST_EXCESS = 0.10
ERROR_BAND = 0.15  # the printed band around a step-model estimate (see `gpucost validate`)
DEFAULT_BATCH_TOKENS = 4 * 2**20  # global batch when neither the user nor the catalog gives one
MAX_CANDIDATES = 20000
MAX_PLANNED_DEVICES = 1 << 17  # the largest run a device count is searched up to (131,072)


@dataclass(frozen=True, slots=True)
class Constants:
    """The step model's tunable constants (the module-level defaults; the fit varies them)."""

    kernel_overhead_s: float = KERNEL_OVERHEAD_S
    elementwise_bytes_per_hidden: float = ELEMENTWISE_BYTES_PER_HIDDEN
    dp_overlap: float = DP_OVERLAP


@dataclass(frozen=True, slots=True)
class Links:
    """Bus bandwidths (GB/s) and latencies (s) of a system's two tiers, and where they came from."""

    per_node: int
    intra_allreduce_gbps: float
    intra_alltoall_gbps: float
    nic_gbps_per_gpu: float  # network bandwidth per accelerator, GB/s, x NETWORK_EFFICIENCY applied
    latency_intra_s: float = LATENCY_INTRA_S
    latency_inter_s: float = LATENCY_INTER_S
    source: str = ""

    def bandwidth(self, op: str, inside: bool, members_per_node: int) -> float:
        intra = self.intra_alltoall_gbps if op == "all_to_all" else self.intra_allreduce_gbps
        if inside:
            return intra
        if self.nic_gbps_per_gpu <= 0:
            raise InputError("this system has no network between nodes; use at most one node's accelerators")
        return min(intra, members_per_node * self.nic_gbps_per_gpu)


def links_for(system: Any, calibration: Any = None) -> Links:
    """The :class:`Links` of a systems.yaml entry, with measured figures from a calibration file's
    ``collectives`` section when it has them (estimator.records.collectives.link_figures)."""
    nvlink = system.scale_up_gbps
    intra_ar = system.scale_up_allreduce_busbw_gbps or nvlink * LINK_EFFICIENCY
    intra_a2a = system.scale_up_alltoall_busbw_gbps or intra_ar
    nics = system.scale_out_nics_per_node or 0
    nic = (nics * (system.scale_out_gbps_per_nic or 0) / 8.0 / system.accelerators_per_node) * NETWORK_EFFICIENCY
    source = (f"{system.id}: inside a node {intra_ar:g} GB/s all-reduce bus bandwidth "
              f"({'published nccl-tests' if system.scale_up_allreduce_busbw_gbps else f'{LINK_EFFICIENCY} x {nvlink:g} GB/s link'}), "
              + (f"across nodes {nic:.3g} GB/s per GPU ({nics} x {system.scale_out_gbps_per_nic:g} Gb/s per node x "
                 f"{NETWORK_EFFICIENCY})" if nics else "no network between nodes"))
    latency_intra, latency_inter = LATENCY_INTRA_S, LATENCY_INTER_S
    if calibration is not None and calibration.collectives:
        from estimator.records.collectives import link_figures

        figures = link_figures(calibration.collectives)
        measured = []
        if ("intra", "all_reduce") in figures:
            fig = figures[("intra", "all_reduce")]
            intra_ar, latency_intra = fig.busbw_gbps, fig.latency_s
            measured.append(fig.describe())
        if ("intra", "all_to_all") in figures:
            intra_a2a = figures[("intra", "all_to_all")].busbw_gbps
            measured.append(figures[("intra", "all_to_all")].describe())
        if ("inter", "all_reduce") in figures:  # one rank per node: what one GPU's share of the network moves
            fig = figures[("inter", "all_reduce")]
            nic, latency_inter = fig.busbw_gbps, fig.latency_s
            measured.append(fig.describe())
        if measured:
            source = f"{system.id}, with the calibration file's " + "; ".join(measured)
    return Links(system.scale_up_group, intra_ar, intra_a2a, nic, latency_intra, latency_inter, source)


def matmul_fraction(acc: Accelerator, precision: str, calibration: Any = None) -> tuple[float, str]:
    """(maximum achievable matmul fraction of the dense peak, where it comes from): a calibration
    file's best measured matmul on this accelerator, else the MAMF table, else its median."""
    if calibration is not None and calibration.device.catalog_id == acc.id:
        measured = calibration.matmul.get(precision)
        best = measured.best_tflops if measured is not None else None
        peak = acc.peak_for(precision)
        if best and peak:
            return min(1.0, best / peak), f"the calibration file's best {precision} matmul, {best:.4g} TFLOP/s"
    family = next((k for k in MAX_MATMUL_FRACTION if acc.id.startswith(k)), None)
    if family is None:
        return DEFAULT_MAX_MATMUL_FRACTION, "no MAMF figure for this chip: the median of the table"
    table = MAX_MATMUL_FRACTION[family]
    return table.get(precision, table["default"]), "stas00 MAMF table"


@dataclass(frozen=True, slots=True)
class StepTime:
    """One layout's step time (s), its breakdown, FLOPs, and memory on the most loaded device."""

    layout: Layout
    step_time_s: float
    breakdown_s: dict[str, float]
    model_flops: float  # per step, all devices: training model FLOPs (no recompute)
    hardware_flops: float  # per step, all devices, recompute included
    memory_gb: float
    fits: bool
    mfu: float | None = None
    hfu: float | None = None


@dataclass(frozen=True)
class Shape:
    """Per-architecture quantities the step model needs, computed once."""

    arch: Architecture
    seq_len: int
    causal: bool
    layer_gemms: tuple[tuple[float, float, float, float], ...]  # dense layer: (flops per token, m-factor, n, k)
    moe_gemms: tuple[tuple[float, float, float, float], ...]
    score_flops_per_token: float  # attention-score matmuls per token per layer, full s x s
    head_flops_per_token: float
    kv_dim: float
    num_dense_layers: int
    num_moe_layers: int
    train_model_per_token: float  # the full s x s scores (PaLM appendix B)
    total_params: float
    expert_params: float
    top_k: int
    num_experts: int
    # the same count with the masked half of causal scores skipped: what a fused (flash) kernel executes
    train_model_per_token_causal: float = 0.0
    layers_forward_per_token: float = 0.0  # forward of the transformer layers (full recompute reruns it)
    layers_forward_per_token_causal: float = 0.0

    def executed(self, flash_attention: bool) -> tuple[float, float, float]:
        """(training model FLOPs per token, forward FLOPs of the layers per token, share of the score
        matmuls run) under the convention the time is computed with: a fused kernel on causal attention
        skips the masked half of the scores, so the count it is reported against skips it too (one
        convention for the time and for MFU/HFU, so neither can exceed what the chip did)."""
        if flash_attention and self.causal:
            return self.train_model_per_token_causal, self.layers_forward_per_token_causal, 0.5
        return self.train_model_per_token, self.layers_forward_per_token, 1.0


@functools.lru_cache(maxsize=64)
def shape_of(arch: Architecture, seq_len: int) -> Shape:
    from estimator.model.flops import flops_per_token
    from estimator.model.params import count_params

    h = arch.hidden_size
    mla = arch.mla
    if mla is not None:
        q_out = arch.num_heads * mla.qk_head_dim
        kv_out = arch.num_heads * (mla.qk_nope_head_dim + mla.v_head_dim)
        proj = [(2 * h * q_out, 1, q_out, h), (2 * h * (mla.kv_lora_rank + mla.qk_rope_head_dim), 1,
                                               mla.kv_lora_rank, h),
                (2 * mla.kv_lora_rank * kv_out, 1, kv_out, mla.kv_lora_rank),
                (2 * arch.num_heads * mla.v_head_dim * h, 1, h, arch.num_heads * mla.v_head_dim)]
        qk, v = mla.qk_head_dim, mla.v_head_dim
        kv_dim = arch.num_heads * (qk + v) / 2
    else:
        proj = [(2 * h * (arch.q_dim + 2 * arch.kv_dim), 1, arch.q_dim + 2 * arch.kv_dim, h),
                (2 * arch.q_dim * h, 1, h, arch.q_dim)]
        qk = v = arch.head_dim
        kv_dim = arch.kv_dim
    mats = 3 if arch.gated_ffn else 2
    dense = proj + [(2 * mats * h * arch.ffn_size, 1, (mats - 1) * arch.ffn_size, h)]
    moe_gemms: list[tuple[float, float, float, float]] = []
    top_k = num_experts = 0
    expert_params = 0.0
    if arch.moe is not None:
        moe = arch.moe
        top_k, num_experts = moe.experts_per_token, moe.num_experts
        # routed experts: each token visits top_k of num_experts; m per expert = tokens x top_k / experts
        moe_gemms = proj + [(2 * mats * h * moe.expert_ffn_size * top_k, top_k / num_experts,
                             (mats - 1) * moe.expert_ffn_size, h)]
        if moe.num_shared_experts:
            moe_gemms.append((2 * mats * h * moe.shared_ffn_size, 1, (mats - 1) * moe.shared_ffn_size, h))
        counts = count_params(arch)
        expert_params = float(counts.breakdown.get("experts", 0))
    fpt = flops_per_token(arch, seq_len)
    fpt_causal = flops_per_token(arch, seq_len, causal=True)

    def layers_forward(f: Any) -> float:
        return f.forward - f.breakdown.get("output_head", 0.0) - f.breakdown.get("pooler", 0.0)

    head = 2 * h * arch.vocab_size if (arch.lm_head or arch.mlm_head) else 0.0
    return Shape(arch=arch, seq_len=seq_len, causal=arch.causal, layer_gemms=tuple(dense), moe_gemms=tuple(moe_gemms),
                 score_flops_per_token=2 * arch.num_heads * seq_len * (qk + v), head_flops_per_token=head,
                 kv_dim=kv_dim, num_dense_layers=arch.num_dense_layers, num_moe_layers=arch.num_moe_layers,
                 train_model_per_token=fpt.train_model, total_params=float(count_params(arch).total),
                 expert_params=expert_params, top_k=top_k, num_experts=num_experts,
                 train_model_per_token_causal=fpt_causal.train_model, layers_forward_per_token=layers_forward(fpt),
                 layers_forward_per_token_causal=layers_forward(fpt_causal))


def ring_latency_s(op: str, group: int, members_per_node: int) -> float:
    """NCCL's latency of one ring collective (Simple protocol) over ``group`` ranks placed
    ``members_per_node`` to a node: its base latency, an NVLink hop per step inside a node and a
    network hop per step between nodes (NVIDIA/nccl src/graph/tuning.cc; see ``NCCL_NET_HOP_S``)."""
    if group <= 1:
        return 0.0
    nodes = max(1, math.ceil(group / max(1, members_per_node)))
    twice = 2 if op == "all_reduce" else 1
    steps, inter_steps = twice * (group - 1), twice * (nodes - 1)
    return NCCL_BASE_LATENCY_S + (steps - inter_steps) * NCCL_NVLINK_HOP_S + inter_steps * NCCL_NET_HOP_S


def straggler_factor(num_nodes: int, slow_host_share: float = SLOW_HOST_SHARE,
                     slow_host_excess: float = SLOW_HOST_EXCESS) -> float:
    """The expected stretch of a synchronous step's compute by its slowest host: each of ``num_nodes``
    hosts is slow (``slow_host_excess`` more time) with probability ``slow_host_share``, and the step
    waits for the slowest, so 1 + excess x P(at least one slow host) (MegaScale, sections 5.1 and 6.3)."""
    if num_nodes <= 1:
        return 1.0 + slow_host_excess * slow_host_share * max(0, num_nodes)
    return 1.0 + slow_host_excess * (1.0 - (1.0 - slow_host_share) ** num_nodes)


def sharded_exposed_s(gather_s: float, scatter_s: float, layers: int, forward_s: float, backward_s: float,
                      micro_batches: int, zero_stage: int) -> float:
    """Seconds of sharded data-parallel traffic that show when each layer's collectives run beside the
    neighbouring layer's compute (FSDP's forward and backward prefetch; Zhao et al. 2023, arXiv 2304.11277,
    section 3.3): per pass over the layers, the first layer's collectives cannot hide and every other
    layer's show only where they are longer than a layer's compute.

    ``gather_s`` and ``scatter_s`` are one layer's all-gather (16-bit weights) and reduce-scatter
    (gradients); ``forward_s`` and ``backward_s`` one layer's compute per micro-batch. ZeRO-3 gathers
    every layer for every micro-batch's forward and again for its backward; ZeRO-2 gathers once per
    step (the updated weights); both reduce-scatter every layer's gradients every micro-batch."""
    def one_pass(comm: float, work: float) -> float:
        return comm + (layers - 1) * max(0.0, comm - work) if layers > 0 else 0.0

    forward_passes = micro_batches if zero_stage == 3 else 1
    backward_comm = scatter_s + (gather_s if zero_stage == 3 else 0.0)
    return forward_passes * one_pass(gather_s, forward_s) + micro_batches * one_pass(backward_comm, backward_s)


def _collective(op: str, size_bytes: float, group: int, inside: bool, per_node: int, links: Links,
                chunks: int = 1) -> float:
    """Seconds of one collective of ``size_bytes`` (the nccl-tests S) over ``group`` ranks, issued as
    ``chunks`` equal collectives (a per-layer ZeRO-3 gather, a gradient bucket): each pays the latency.

    Inside a node: the small-collective latency. Across nodes: all-gather and reduce-scatter have only
    rings in NCCL, whose latency grows with every rank and node (:func:`ring_latency_s`); an all-reduce
    has NCCL's tree and keeps ``latency_inter_s`` x log2 of the ranks (what the step model's constants
    were fitted with)."""
    if group <= 1 or size_bytes <= 0:
        return 0.0
    factor = {"all_reduce": 2 * (group - 1) / group, "p2p": 1.0}.get(op, (group - 1) / group)
    bw = links.bandwidth(op, inside, per_node) * 1e9
    if inside:
        latency = links.latency_intra_s
    elif op in ("all_gather", "reduce_scatter"):
        latency = ring_latency_s(op, group, per_node)
    else:  # all-reduce (NCCL's tree across nodes), all-to-all, point-to-point
        latency = links.latency_inter_s * max(1.0, math.log2(group))
    return max(1, chunks) * latency + size_bytes * factor / bw


def _matmul_seconds(flops: float, m: float, n: float, k: float, batch: float, flop_rate: float, hbm: float,
                    kernel_s: float) -> float:
    """A matmul on the roofline: the longer of its FLOPs at the achievable rate and its 16-bit
    operands and result at the HBM bandwidth, plus one kernel launch."""
    moved = 2.0 * batch * (m * k + k * n + m * n)
    return max(flops / flop_rate, moved / hbm) + kernel_s


def gemm_seconds(gemms: tuple[tuple[float, float, float, float], ...], tokens: float, split: int, flop_rate: float,
                 hbm: float, kernel_s: float) -> float:
    """Seconds of a layer's matmuls (:class:`Shape` rows: FLOPs per token, m-factor, n, k) for ``tokens``
    tokens, split ``split`` ways (tensor parallelism); routed experts run one matmul per local expert."""
    total = 0.0
    for flops_per_token, m_factor, n, k in gemms:
        m = tokens * m_factor
        experts = 1.0 / m_factor if m_factor < 1 else 1.0
        total += _matmul_seconds(flops_per_token * tokens / split, m, n / split, k, experts, flop_rate, hbm, kernel_s)
    return total


#: the at-scale arguments of time_layout when neither the caller nor the stack's catalog entry sets them
#: (the step model's fitted convention: 16-bit gradients, ZeRO 3 per layer, ZeRO 2 bucketed, no prefetch)
SCALE_DEFAULTS = {"grad_reduce_bytes": 2.0, "sharded_per_layer": True, "zero2_per_layer": False, "prefetch": False,
                  "grad_accumulation_bytes": 0.0}


def time_layout(shape: Shape, layout: Layout, acc: Accelerator, precision: str, links: Links, *,
                flash_attention: bool = True, memory_gb: float | None = None,
                constants: Constants = Constants(), e_max: float | None = None,
                grad_reduce_bytes: float | None = None, sharded_per_layer: bool | None = None,
                zero2_per_layer: bool | None = None, prefetch: bool | None = None, stragglers: bool = False,
                grad_accumulation_bytes: float | None = None, stack: Any = None,
                finetune: Any = None, compute_scale: float = 1.0) -> StepTime:
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
    communication is not scaled."""
    scale = {**SCALE_DEFAULTS, **(stack.stack.scale_arguments() if stack is not None else {})}
    grad_reduce_bytes = scale["grad_reduce_bytes"] if grad_reduce_bytes is None else grad_reduce_bytes
    sharded_per_layer = scale["sharded_per_layer"] if sharded_per_layer is None else sharded_per_layer
    zero2_per_layer = scale["zero2_per_layer"] if zero2_per_layer is None else zero2_per_layer
    prefetch = scale["prefetch"] if prefetch is None else prefetch
    if grad_accumulation_bytes is None:
        grad_accumulation_bytes = scale["grad_accumulation_bytes"]
    arch = shape.arch
    t, p, c, d, e = (layout.tensor_parallel, layout.pipeline_parallel, layout.context_parallel,
                     layout.data_parallel, layout.expert_parallel)
    b, s, h = layout.micro_batch, shape.seq_len, arch.hidden_size
    peak = acc.peak_for(precision)
    if peak is None:
        raise InputError(f"{acc.id} has no {precision} peak in the catalog")
    if e_max is None:
        e_max = matmul_fraction(acc, precision)[0]
    flop_rate = peak * 1e12 * e_max
    hbm = acc.memory_bandwidth_gbps * 1e9 * HBM_EFFICIENCY
    tokens = b * s / c  # tokens of one micro-batch on one device (CP splits the sequence)
    act_bytes = 2.0  # 16-bit activations on the wire

    def matmul_time(flops: float, m: float, n: float, k: float, batch: float = 1.0) -> float:
        return _matmul_seconds(flops, m, n, k, batch, flop_rate, hbm, constants.kernel_overhead_s)

    def gemm_time(gemms: tuple[tuple[float, float, float, float], ...], split: int) -> float:
        return gemm_seconds(gemms, tokens, split, flop_rate, hbm, constants.kernel_overhead_s)

    # attention scores: one batched matmul over micro-batch x local heads, each (s/c) x s x head width;
    # a fused kernel (flash attention) keeps the scores on chip and skips the masked half when causal
    score_flops = shape.score_flops_per_token * tokens / t * (0.5 if (flash_attention and shape.causal) else 1.0)
    head_width = arch.mla.qk_head_dim if arch.mla else arch.head_dim
    heads_local = max(1.0, arch.num_heads / t)
    score_time = (score_flops / flop_rate + constants.kernel_overhead_s if flash_attention else
                  matmul_time(score_flops, s / c, s, head_width, batch=b * heads_local))
    # elementwise traffic follows the activations it reads and writes (Korthikanti et al. 2022 section
    # 4.1: of 34 bytes per token per hidden unit, 10 are replicated across TP ranks unless sequence
    # parallelism splits them too)
    split = 1.0 / t if layout.sequence_parallel or t == 1 else (10 + 24 / t) / 34
    elem = constants.elementwise_bytes_per_hidden * tokens * h * split / hbm
    softmax = 0.0 if flash_attention else SOFTMAX_BYTES_PER_SCORE * arch.num_heads / t * tokens * s / hbm
    elem += softmax

    def layer_forward(moe: bool) -> float:
        gemms = shape.moe_gemms if moe else shape.layer_gemms
        return gemm_time(gemms, t) + score_time + elem

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
    fwd = layers_dense * layer_forward(False) + layers_moe * layer_forward(True)
    # selective recompute reruns the attention core: the score matmuls and, unfused, their softmax
    recompute = fwd if full else (layers_total / p * uneven * (score_time + softmax) if selective else 0.0)
    head = shape.head_flops_per_token * tokens / t
    head_time = matmul_time(head, tokens, arch.vocab_size / t, h) if head else 0.0
    compute = 3 * fwd + recompute + 3 * head_time  # backward = 2 x forward
    eager = stack is not None and stack.eager
    if eager:  # every op the stack's modules launch, on one device (TP, PP, CP, EP refused before)
        from estimator.timing.stacks import eager_compute

        timed = eager_compute(shape, stack, tokens=tokens, recompute=layout.recompute, flop_rate=flop_rate,
                              peak_flops=peak * 1e12, hbm_bytes_per_s=hbm)
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
            host_per = stack.stack.compiled["host_s_per_kernel"] if stack.compile else stack.stack.host_s_per_op
            compute = max(timed.device_s + device_delta,
                          timed.host_s + (adapter_kernels + dequant_kernels - skipped) * host_per)
        else:
            compute += device_delta
    fwd, recompute, head_time, compute = (x * compute_scale for x in (fwd, recompute, head_time, compute))
    num_layers_stage = layers_total / p * uneven
    tp_comm = num_layers_stage * tp_ar * (4 + (2 if full else 0))
    cp_comm = num_layers_stage * cp_kv * (2 + (1 if full else 0))
    ep_comm = layers_moe * ep_a2a * (6 + (2 if full else 0))
    pp_comm = 2 * _collective("p2p", activation / t if layout.sequence_parallel else activation, 2, inside_pp,
                              pp_node, links) if p > 1 else 0.0
    # each micro-batch's gradients added into the step's outside the weight-gradient matmuls (a stream pass
    # over this device's gradients, on the pipeline's critical path); none in an eager stack's own tables
    params_here = (finetune.trainable_params / (t * p) if frozen else  # frozen weights have no gradient
                   (shape.total_params - shape.expert_params) / (t * p) + shape.expert_params / (t * p * e))
    grad_accumulation = 0.0 if eager else params_here * grad_accumulation_bytes / hbm
    stage = compute + tp_comm + cp_comm + ep_comm + pp_comm * layout.virtual_stages + grad_accumulation
    m = layout.num_micro_batches
    bubble_factor = (p - 1) / layout.virtual_stages
    hosts = math.ceil(layout.num_devices / max(1, links.per_node))
    slowest = straggler_factor(hosts) if stragglers else 1.0
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
        if layered:  # the step's own reduction is per layer too: a reduce-scatter and an all-gather each
            dp_time = scatter + gather
        dp_exposed = (dp_time + zero3) * (1 - constants.dp_overlap) + sharded_grads
    shard = d if layout.zero_stage >= 1 else 1
    optimizer = (dense_params + expert_params) * OPTIMIZER_BYTES_PER_PARAM / shard / hbm
    if stack is not None and (eager or stack.master_weights == "bf16"):
        from estimator.timing.stacks import optimizer_seconds

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


def eager_memory(arch: Architecture, stack: Any, layout: Layout, seq_len: int, finetune: Any = None) -> Any:
    """An eager stack's peak memory (estimator.timing.stacks.StackMemory) for ``layout``; with a frozen-weight
    fine-tune, gradients and AdamW states for the adapters only, the frozen weights as stored (bf16 or NF4,
    so no autocast copies of them) and the adapters in the stack's weight dtype."""
    from estimator.timing.stacks import stack_memory

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
    from estimator.model.memory import Parallelism, training_memory

    if stack is not None and stack.eager:
        from estimator.timing.stacks import stack_memory

        return eager_memory(arch, stack, layout, seq_len, finetune)
    states = {} if stack is None or stack.master_weights == "fp32" else dict(weight_bytes=2.0, grad_bytes=2.0,
                                                                             optimizer_bytes=4.0)

    par = Parallelism(data=layout.data_parallel, tensor=layout.tensor_parallel, pipeline=layout.pipeline_parallel,
                      expert=layout.expert_parallel, sequence_parallel=layout.sequence_parallel,
                      zero_stage=layout.zero_stage)
    return training_memory(arch, seq_len=max(1, seq_len // layout.context_parallel), micro_batch=layout.micro_batch,
                           parallel=par, recompute=layout.recompute, flash_attention=flash_attention,
                           finetune=finetune, **states)


def layout_memory_gb(arch: Architecture, layout: Layout, seq_len: int, *, flash_attention: bool = True,
                     stack: Any = None, finetune: Any = None) -> float:
    """Training memory (decimal GB) on the most loaded device of ``layout`` (:func:`layout_memory`)."""
    return layout_memory(arch, layout, seq_len, flash_attention=flash_attention, stack=stack,
                         finetune=finetune).total_bytes / 1e9


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
    from estimator.timing.stacks import stack_choice

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
    from estimator.timing.stacks import eager_compute, stack_report

    default = "" if request.stack else " (the default: the step model's own fused kernels; --stack hf|fsdp|deepspeed)"
    lines = [f"stack: {stack.describe()}{default}"]
    if not stack.eager:
        lines.append(("attention: a fused kernel (FlashAttention; --no-flash-attention for an unfused softmax)" if flash
                      else "attention: unfused (the scores and their softmax go through HBM)")
                     + (", sequence parallelism with tensor parallelism (--no-sequence-parallel to drop it)"
                        if request.sequence_parallel is not False else ", no sequence parallelism"))
        return lines, stack_report(stack)

    peak = acc.peak_for(request.precision) * 1e12
    timed = eager_compute(shape, stack, tokens=layout.micro_batch * shape.seq_len, recompute=layout.recompute,
                          flop_rate=peak * e_max, peak_flops=peak,
                          hbm_bytes_per_s=acc.memory_bandwidth_gbps * 1e9 * HBM_EFFICIENCY)
    memory = eager_memory(shape.arch, stack, layout, shape.seq_len, finetune)
    lines += [
        f"attention: {stack.stack.attention}, at {stack.stack.attention_fraction:.0%} of the dense peak",
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
                                       compute_scale=compute_scale))
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
        f"links: {links.source}; {constants.dp_overlap:.0%} of data-parallel traffic hidden behind backward; "
        "tensor, context and expert-parallel collectives not overlapped",
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


__all__ = ["Constants", "ring_latency_s", "sharded_exposed_s", "straggler_factor", "KERNEL_OVERHEAD_S", "Links", "StepEstimate",
           "StepTime", "check_fixed_layout", "default_global_batch", "device_counts", "stack_and_fixed",
           "fewest_devices", "layout_memory", "layout_memory_gb", "leanest_layout", "links_for", "memory_text",
           "search_devices", "usable_memory_gb",
           "matmul_fraction", "shape_of", "step_estimate", "time_layout"]
