"""Training memory per device: weights, gradients, optimizer states and activations; fit checks.

Model states follow ZeRO (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training
Trillion Parameter Models", arXiv 1910.02054, section 3.1): mixed-precision Adam keeps 2 bytes of
fp16/bf16 weights, 2 bytes of gradients and K = 12 bytes of optimizer state (fp32 master weights,
momentum, variance) per parameter: 16 bytes. ZeRO stage 1 shards the optimizer states across the
data-parallel ranks, stage 2 also the gradients, stage 3 also the weights.

Activations follow Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models" (arXiv 2205.05198), section 4 and Table 2: per transformer layer, with 16-bit activations,
``s*b*h*(34 + 5*a*s/h)`` bytes without parallelism, divided as the table shows under tensor (t) and
sequence parallelism, ``34*s*b*h/t`` with selective recomputation (and sequence parallelism), and
``2*s*b*h`` with full recomputation. Units: bytes; ``_gb`` is decimal (1e9 bytes).

Capacity: a datasheet's "80GB" of HBM or GDDR is 80 GiB. ``nvidia-smi`` reports 81,920 MiB
(85.9e9 bytes) on an A100 80GB, 81,559 MiB (85.5e9) on an H100 80GB, 40,960 MiB on an A100 40GB
(modal-labs/modal-client PR 2797; NVIDIA/nccl issue 1264), so a device of the catalog's ``memory_gb``
holds ``memory_gb x 2**30`` bytes (``capacity_bytes``), less the reserve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from estimator.model.arch import Architecture
from estimator.model.finetune import (ADAPTER_GRAD_BYTES, ADAPTER_OPTIMIZER_BYTES, ADAPTER_WEIGHT_BYTES,
                                      BF16_BYTES, NF4_BYTES_PER_PARAM, FinetuneSpec)
from estimator.model.params import ParamCount, count_params, norm_params
from estimator.errors import InputError
from estimator.vocab import RECOMPUTE_MODES, SELECTIVE_POLICIES, ZERO_STAGES

DEFAULT_WEIGHT_BYTES = 2.0      # bf16/fp16 weights
DEFAULT_GRAD_BYTES = 2.0        # bf16/fp16 gradients
DEFAULT_OPTIMIZER_BYTES = 12.0  # AdamW mixed precision: fp32 master weights + m + v (ZeRO's K = 12)
DEFAULT_RESERVE_GB = 2.0        # per device, not available to the run: CUDA context, NCCL buffers, allocator slack
GB = 1e9
GIB = 2**30  # the unit of a datasheet's memory size (see the module docstring)


def capacity_bytes(memory_gb: float) -> float:
    """Bytes on a device whose datasheet (the catalog's ``memory_gb``) says ``memory_gb`` GB."""
    return memory_gb * GIB


def _positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class Parallelism:
    """How a run is split over devices: data (d), tensor (t), pipeline (p) and expert (e) parallel
    sizes, Megatron sequence parallelism (with tensor parallelism), and the ZeRO stage (0-3).

    Devices = d * t * p. Expert-parallel ranks are carved out of the data-parallel ranks
    (Megatron-Core), so ``e`` must divide ``d``; routed experts are sharded over e * t, and their
    ZeRO states over the d / e expert-data-parallel ranks.
    """

    data: int = 1
    tensor: int = 1
    pipeline: int = 1
    expert: int = 1
    sequence_parallel: bool = False
    zero_stage: int = 0

    def __post_init__(self) -> None:
        for name in ("data", "tensor", "pipeline", "expert"):
            _positive_int(f"parallelism.{name}", getattr(self, name))
        if self.zero_stage not in ZERO_STAGES:
            raise InputError(f"parallelism.zero_stage must be 0, 1, 2 or 3, got {self.zero_stage!r}")
        if self.data % self.expert:
            raise InputError(f"parallelism.expert ({self.expert}) must divide parallelism.data ({self.data}): "
                             "expert-parallel ranks are taken from the data-parallel ranks")

    @property
    def num_devices(self) -> int:
        return self.data * self.tensor * self.pipeline


@dataclass(frozen=True, slots=True)
class ModelStateMemory:
    """Per-device bytes of weights, gradients and optimizer states (ZeRO section 3.1)."""

    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.gradients_bytes + self.optimizer_bytes


def model_state_memory(params: float, *, data_parallel: int = 1, zero_stage: int = 0,
                       weight_bytes: float = DEFAULT_WEIGHT_BYTES, grad_bytes: float = DEFAULT_GRAD_BYTES,
                       optimizer_bytes: float = DEFAULT_OPTIMIZER_BYTES) -> ModelStateMemory:
    """Bytes per device for ``params`` parameters replicated over ``data_parallel`` ranks under ZeRO.

    Stage 0: (2 + 2 + K) * params; stage 1: optimizer / d; stage 2: also gradients / d; stage 3:
    also weights / d (Rajbhandari et al. 2020, Figure 1: 7.5B params, d = 64, K = 12 ->
    120 GB, 31.4 GB, 16.6 GB, 1.88 GB).
    """
    if params < 0:
        raise InputError(f"params must be non-negative, got {params!r}")
    _positive_int("data_parallel", data_parallel)
    if zero_stage not in ZERO_STAGES:
        raise InputError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage!r}")
    for name, value in (("weight_bytes", weight_bytes), ("grad_bytes", grad_bytes),
                        ("optimizer_bytes", optimizer_bytes)):
        if value < 0:
            raise InputError(f"{name} must be non-negative, got {value!r}")
    d = data_parallel
    return ModelStateMemory(
        weights_bytes=weight_bytes * params / (d if zero_stage >= 3 else 1),
        gradients_bytes=grad_bytes * params / (d if zero_stage >= 2 else 1),
        optimizer_bytes=optimizer_bytes * params / (d if zero_stage >= 1 else 1),
    )


# -- activations ---------------------------------------------------------------------------------


def layer_linears(arch: Architecture) -> tuple[tuple[str, float, float, bool], ...]:
    """A dense layer's linears in forward order: (name, input width, output width per token, saved under
    torchtitan's op-level selective activation checkpointing). The block calls wq, wk, wv, wo, then w1,
    w3, w2 (w1, w2 ungated); the policy counts the layer's ``aten.mm`` calls and saves the output of the
    odd-numbered ones (with SDPA's output and the layer input), recomputing the rest and every
    elementwise op in backward (pytorch/torchtitan torchtitan/models/llama3/infra/parallelize.py
    ``_apply_ac_to_transformer_block``: "Saves output of all compute ops, except every second mm")."""
    h, f = arch.hidden_size, arch.ffn_size
    order = [("wq", h, arch.q_dim), ("wk", h, arch.kv_dim), ("wv", h, arch.kv_dim), ("wo", arch.q_dim, h),
             ("w1", h, f)] + ([("w3", h, f)] if arch.gated_ffn else []) + [("w2", f, h)]
    return tuple((name, float(k), float(n), i % 2 == 0) for i, (name, k, n) in enumerate(order))


def plain_dense_layers(arch: Architecture) -> bool:
    """Whether :func:`layer_linears` describes the model's layers: dense, without MLA (otherwise
    torchtitan's policy and the float8 casts per linear are not modelled, and Megatron's terms apply)."""
    return arch.moe is None and arch.mla is None


def _alternate_matmuls(arch: Architecture, recompute: str, selective: str) -> bool:
    return recompute == "selective" and selective == "alternate_matmuls" and plain_dense_layers(arch)


def activation_bytes_per_layer(arch: Architecture, *, seq_len: int, micro_batch: int = 1, tensor: int = 1,
                               sequence_parallel: bool = False, recompute: str = "none",
                               flash_attention: bool = False, selective: str = "attention") -> float:
    """Activation bytes one transformer layer keeps for the backward pass (Korthikanti et al. 2022).

    Table 2 of the paper, for GPT-style layers (h-wide attention, 4h GELU MLP, 16-bit activations,
    1-byte dropout masks), per layer, with a = heads, t = tensor-parallel size::

        no parallelism                      s*b*h*(34 + 5*a*s/h)
        tensor parallel                     s*b*h*(10 + 24/t + 5*a*s/(h*t))
        tensor + sequence parallel          s*b*h*(34/t + 5*a*s/(h*t))
        tensor parallel + selective         s*b*h*(10 + 24/t)
        tensor + sequence par. + selective  s*b*h*34/t
        full recomputation                  s*b*h*2     (the layer input; / t with sequence parallel)

    The 34 is section 4.1's sum: attention 11 (QKV input 2, Q and K 4, V 2, output-projection
    input 2, dropout mask 1), MLP 19 (input 2, GELU input 8, second linear input 8, dropout mask 1),
    two norms 4; 10 of it is replicated across tensor-parallel ranks without sequence parallelism.
    Here the t-split part is derived from the architecture, so it reproduces 24 for the paper's GPT
    and generalises: Q is ``2*q_dim``, K and V ``2*kv_dim`` each (GQA shrinks them; MLA uses its
    decompressed per-head K and V), the output-projection input ``2*heads*v_dim``; the FFN stores
    ``4*f`` (GELU input, second-linear input) or, when gated, ``8*f`` unfused (gate and up outputs,
    activation output, product) and ``6*f`` fused (Megatron-core's SwiGLU saves only its input, the
    gate and up outputs, for backward: megatron/core/fusions/fused_bias_swiglu.py; plus the product
    the second linear keeps), with f = top-k * expert width + shared width for MoE layers. The score
    term ``5*a*s^2*b`` (softmax output 2, dropout mask 1, dropout output 2) disappears with selective
    recomputation or a flash-attention kernel (which keeps only O and the row log-sum-exp).
    ``flash_attention`` stands for the fused-kernel stack: both the attention kernel and the fused SwiGLU.

    ``selective="alternate_matmuls"`` (torchtitan's op-level policy, :func:`layer_linears`) keeps, in 16 bits,
    the layer input, the saved matmuls' outputs and SDPA's output, and SDPA's fp32 log-sum-exp (4 bytes
    per head per token); torchtitan runs tensor parallelism with sequence parallelism, so all of it is
    split over the t ranks.
    """
    if selective not in SELECTIVE_POLICIES:
        raise InputError(f"selective must be one of {', '.join(SELECTIVE_POLICIES)}, got {selective!r}")
    if recompute not in RECOMPUTE_MODES:
        raise InputError(f"recompute must be one of {', '.join(RECOMPUTE_MODES)}, got {recompute!r}")
    arch.check_seq_len(seq_len)
    _positive_int("micro_batch", micro_batch)
    _positive_int("tensor", tensor)
    s, b, h, t = seq_len, micro_batch, arch.hidden_size, tensor
    sbh = s * b * h
    if recompute == "full":
        return 2.0 * sbh / (t if sequence_parallel else 1)
    if _alternate_matmuls(arch, recompute, selective):
        kept = 2 * (arch.hidden_size + arch.q_dim) + 4 * arch.num_heads  # input, SDPA output and log-sum-exp
        kept += sum(2 * width for _, _, width, saved in layer_linears(arch) if saved)
        return kept * s * b / t
    if arch.mla is not None:
        q_dim = arch.num_heads * arch.mla.qk_head_dim
        k_dim = q_dim
        v_dim = arch.num_heads * arch.mla.v_head_dim
    else:
        q_dim, k_dim, v_dim = arch.q_dim, arch.kv_dim, arch.kv_dim
    out_in = arch.num_heads * (arch.mla.v_head_dim if arch.mla else arch.head_dim)

    def layer(moe_layer: bool) -> float:
        if moe_layer:
            moe = arch.moe
            assert moe is not None
            ffn = moe.experts_per_token * moe.expert_ffn_size + moe.shared_ffn_size
        else:
            ffn = arch.ffn_size
        ffn_bytes = (6 if flash_attention else 8) if arch.gated_ffn else 4
        split = 2 * q_dim + 2 * k_dim + 2 * v_dim + 2 * out_in + ffn_bytes * ffn  # x s*b
        replicated = 10 * sbh
        score = 5.0 * arch.num_heads * s * s * b
        if recompute == "selective" or flash_attention:
            score = 0.0
        if sequence_parallel:
            return (replicated + split * s * b + score) / t
        return replicated + (split * s * b + score) / t

    if arch.num_moe_layers == 0:
        return layer(False)
    # Mixed dense/MoE stacks: the layer average (callers multiply by the number of layers).
    return (layer(False) * arch.num_dense_layers + layer(True) * arch.num_moe_layers) / arch.num_layers


def activation_bytes(arch: Architecture, *, seq_len: int, micro_batch: int = 1, parallel: Parallelism | None = None,
                     recompute: str = "none", flash_attention: bool = False,
                     selective: str = "attention") -> tuple[float, float]:
    """(transformer-layer bytes, embedding + output-layer bytes) of activations on the most loaded
    device: the first pipeline stage. Full recomputation keeps every layer's input and, during the
    backward pass, the activations of the one layer being recomputed. With the 1F1B schedule that
    stage holds p micro-batches of L/p layers each, i.e. L layers' worth whatever p is (Korthikanti et al. section 4.2.2).
    The extras follow Megatron-LM's ``theoretical_memory_usage.py``: token ids (8*s*b*p) and the
    embedding dropout mask (s*b*h*p) for p micro-batches in flight; with p = 1 also the final
    norm, output layer and cross-entropy, 4*s*b*h*(1 + V/h); all divided by t.
    A layer recomputed in backward (full, or torchtitan's alternate-matmul policy) also holds, while its
    backward runs, its activations without recomputation."""
    parallel = parallel or Parallelism()
    per_layer = activation_bytes_per_layer(
        arch, seq_len=seq_len, micro_batch=micro_batch, tensor=parallel.tensor,
        sequence_parallel=parallel.sequence_parallel, recompute=recompute, flash_attention=flash_attention,
        selective=selective)
    layers = per_layer * arch.num_layers
    if recompute == "full" or _alternate_matmuls(arch, recompute, selective):
        # the backward pass reruns one layer's forward at a time and holds that layer's activations
        # until its backward is done: one layer's worth without recomputation on top of the inputs
        layers += activation_bytes_per_layer(
            arch, seq_len=seq_len, micro_batch=micro_batch, tensor=parallel.tensor,
            sequence_parallel=parallel.sequence_parallel, recompute="none", flash_attention=flash_attention)
    s, b, h, p, t = seq_len, micro_batch, arch.hidden_size, parallel.pipeline, parallel.tensor
    extras = 8.0 * s * b * p + s * b * h * p
    if p == 1 and (arch.lm_head or arch.mlm_head):
        extras += 4.0 * s * b * h * (1 + arch.vocab_size / h)
    return layers, extras / t


# -- the whole picture ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemoryBreakdown:
    """Training memory on the most loaded device (bytes), and the assumptions behind it."""

    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    activations_layers_bytes: float
    activations_other_bytes: float
    params_per_device: float
    parallel: Parallelism
    seq_len: int
    micro_batch: int
    recompute: str
    flash_attention: bool
    weight_bytes_per_param: float
    grad_bytes_per_param: float
    optimizer_bytes_per_param: float

    @property
    def model_states_bytes(self) -> float:
        return self.weights_bytes + self.gradients_bytes + self.optimizer_bytes

    @property
    def total_bytes(self) -> float:
        return self.model_states_bytes + self.activations_bytes

    def as_gb(self) -> Mapping[str, float]:
        """The breakdown in decimal GB, for people and renderers."""
        return MappingProxyType({
            "weights_gb": self.weights_bytes / GB, "gradients_gb": self.gradients_bytes / GB,
            "optimizer_gb": self.optimizer_bytes / GB, "activations_gb": self.activations_bytes / GB,
            "total_gb": self.total_bytes / GB,
        })


def _params_per_device(arch: Architecture, counts: ParamCount, parallel: Parallelism) -> tuple[float, float]:
    """(non-expert, routed-expert) parameters held by the most loaded device before ZeRO sharding.

    The first pipeline stage holds ceil(L/p) layers and the input embedding (and, with p = 1, the
    output head and final norm); tensor parallelism splits everything over t (norms are in fact
    replicated, a rounding error); routed experts are split over e * t.
    """
    b = counts.breakdown
    experts = b.get("experts", 0)
    embedding = b.get("embedding", 0)
    head = b.get("output_head", 0) + b.get("pooler", 0) + b.get("mlm_head", 0)
    final_norm = norm_params(arch, arch.hidden_size) if arch.final_norm else 0
    layers_other = counts.total - experts - embedding - head - final_norm
    p, t, e = parallel.pipeline, parallel.tensor, parallel.expert
    share = math.ceil(arch.num_layers / p) / arch.num_layers
    non_expert = layers_other * share + embedding + ((head + final_norm) if p == 1 else 0)
    return non_expert / t, experts * share / (t * e)


def training_memory(arch: Architecture, *, seq_len: int, micro_batch: int = 1, parallel: Parallelism | None = None,
                    recompute: str = "none", flash_attention: bool = False,
                    weight_bytes: float = DEFAULT_WEIGHT_BYTES, grad_bytes: float = DEFAULT_GRAD_BYTES,
                    optimizer_bytes: float = DEFAULT_OPTIMIZER_BYTES,
                    finetune: FinetuneSpec | None = None, selective: str = "attention") -> MemoryBreakdown:
    """Training memory on the most loaded device (bytes): weights, gradients and optimizer states
    (ZeRO, Rajbhandari et al. 2020) plus activations (Korthikanti et al. 2022, Table 2).

    ``finetune`` (:mod:`estimator.model.finetune`) with LoRA or QLoRA: the frozen weights in bf16 or
    NF4 (sharded only by ZeRO 3 / FSDP, which shards every weight), gradients and optimizer states
    only for the adapters (``weight_bytes`` etc. then describe the adapters' 2 + 2 + 12 bytes), and
    the adapters' rank-r intermediates on top of the layers' activations (none kept with full
    recomputation). Full fine-tuning is pre-training's memory.

    Defaults: AdamW in mixed precision, 2 + 2 + 12 = 16 bytes per parameter; no recomputation; no
    flash attention; one device. MoE: total parameters are held (routed experts split over expert
    and tensor parallel ranks), activations follow the active experts. Not modelled: temporary
    buffers (all-gather / reduce-scatter buckets, logits in fp32 copies), fragmentation, the
    MTP modules, pipeline bubbles' micro-batches beyond p, and the CUDA context (see the reserve of
    :func:`fit_check`).
    """
    if not isinstance(arch, Architecture):
        raise InputError(f"an Architecture is required, got {type(arch).__name__}")
    parallel = parallel or Parallelism()
    for name, value in (("weight_bytes", weight_bytes), ("grad_bytes", grad_bytes),
                        ("optimizer_bytes", optimizer_bytes)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InputError(f"{name} must be a finite, non-negative number of bytes per parameter, got {value!r}")
    t = parallel.tensor
    # Megatron splits the query heads over the tensor ranks, and the KV heads too (or replicates
    # each on t / num_kv_heads ranks when there are fewer KV heads than ranks)
    if arch.num_heads % t or (arch.num_kv_heads % t and t % arch.num_kv_heads):
        raise InputError(f"tensor parallel size {t} must divide the {arch.num_heads} attention heads and the "
                         f"{arch.num_kv_heads} KV heads (or be a multiple of the KV heads) of {arch.name}")
    if parallel.pipeline > arch.num_layers:
        raise InputError(f"pipeline parallel size {parallel.pipeline} exceeds the {arch.num_layers} layers of {arch.name}")
    if parallel.expert > 1 and not arch.is_moe:
        raise InputError("expert parallelism needs a mixture-of-experts model")
    if arch.moe is not None and arch.moe.num_experts % parallel.expert:
        raise InputError(f"parallelism.expert ({parallel.expert}) must divide the {arch.moe.num_experts} experts")
    counts = count_params(arch)
    non_expert, expert = _params_per_device(arch, counts, parallel)
    dense_states = model_state_memory(non_expert, data_parallel=parallel.data, zero_stage=parallel.zero_stage,
                                      weight_bytes=weight_bytes, grad_bytes=grad_bytes,
                                      optimizer_bytes=optimizer_bytes)
    expert_states = model_state_memory(expert, data_parallel=parallel.data // parallel.expert,
                                       zero_stage=parallel.zero_stage, weight_bytes=weight_bytes,
                                       grad_bytes=grad_bytes, optimizer_bytes=optimizer_bytes)
    layers, other = activation_bytes(arch, seq_len=seq_len, micro_batch=micro_batch, parallel=parallel,
                                     recompute=recompute, flash_attention=flash_attention, selective=selective)
    weights = dense_states.weights_bytes + expert_states.weights_bytes
    grads = dense_states.gradients_bytes + expert_states.gradients_bytes
    optimizer = dense_states.optimizer_bytes + expert_states.optimizer_bytes
    if finetune is not None and finetune.frozen:
        # this device's share of the frozen weights and of the adapters (which follow the weights they
        # adapt), non-expert over the data-parallel ranks and routed experts over the expert-data ranks
        expert_total = float(counts.breakdown.get("experts", 0))
        expert_bytes = NF4_BYTES_PER_PARAM if finetune.method == "qlora" else BF16_BYTES
        dense_bytes = (finetune.frozen_weight_bytes - expert_total * expert_bytes) / (counts.total - expert_total)
        per_param = finetune.trainable_params / counts.total
        z3 = parallel.zero_stage >= 3
        frozen = (dense_bytes * non_expert / (parallel.data if z3 else 1)
                  + expert_bytes * expert / (parallel.data // parallel.expert if z3 else 1))
        adapters = [model_state_memory(n * per_param, data_parallel=d, zero_stage=parallel.zero_stage,
                                       weight_bytes=ADAPTER_WEIGHT_BYTES, grad_bytes=ADAPTER_GRAD_BYTES,
                                       optimizer_bytes=ADAPTER_OPTIMIZER_BYTES)
                    for n, d in ((non_expert, parallel.data), (expert, parallel.data // parallel.expert))]
        weights = frozen + sum(a.weights_bytes for a in adapters)
        grads = sum(a.gradients_bytes for a in adapters)
        optimizer = sum(a.optimizer_bytes for a in adapters)
        weight_bytes, grad_bytes, optimizer_bytes = ADAPTER_WEIGHT_BYTES, ADAPTER_GRAD_BYTES, ADAPTER_OPTIMIZER_BYTES
        if recompute != "full":
            layers += (finetune.adapter_activation_bytes_per_token_layer * seq_len * micro_batch
                       * math.ceil(arch.num_layers / parallel.pipeline) * parallel.pipeline / parallel.tensor)
    return MemoryBreakdown(
        weights_bytes=weights, gradients_bytes=grads, optimizer_bytes=optimizer,
        activations_bytes=layers + other, activations_layers_bytes=layers, activations_other_bytes=other,
        params_per_device=non_expert + expert, parallel=parallel, seq_len=seq_len, micro_batch=micro_batch,
        recompute=recompute, flash_attention=flash_attention, weight_bytes_per_param=weight_bytes,
        grad_bytes_per_param=grad_bytes, optimizer_bytes_per_param=optimizer_bytes,
    )


# -- fitting on devices --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FitCheck:
    """Whether a memory breakdown fits one device of ``capacity_bytes`` less ``reserve_bytes``."""

    capacity_bytes: float
    reserve_bytes: float
    required_bytes: float

    @property
    def usable_bytes(self) -> float:
        return self.capacity_bytes - self.reserve_bytes

    @property
    def fits(self) -> bool:
        return self.required_bytes <= self.usable_bytes

    @property
    def headroom_bytes(self) -> float:
        """Usable minus required (negative: short by that much)."""
        return self.usable_bytes - self.required_bytes


def fit_check(memory: MemoryBreakdown, memory_gb: float, *, reserve_gb: float = DEFAULT_RESERVE_GB) -> FitCheck:
    """Does ``memory`` fit a device of ``memory_gb`` as its datasheet counts (the catalog's
    ``memory_gb``: :func:`capacity_bytes`), keeping ``reserve_gb`` (decimal) for the CUDA context,
    communication buffers and allocator slack?"""
    if memory_gb <= 0:
        raise InputError(f"memory_gb must be positive, got {memory_gb!r}")
    if reserve_gb < 0 or reserve_gb >= memory_gb:
        raise InputError(f"reserve_gb must be in [0, memory_gb), got {reserve_gb!r}")
    return FitCheck(capacity_bytes=capacity_bytes(memory_gb), reserve_bytes=reserve_gb * GB,
                    required_bytes=memory.total_bytes)


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """The smallest layout found that holds the run: devices, parallel sizes, memory and fit."""

    num_devices: int
    parallel: Parallelism
    memory: MemoryBreakdown
    fit: FitCheck


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


def min_devices(arch: Architecture, memory_gb: float, *, seq_len: int, micro_batch: int = 1, zero_stage: int = 0,
                recompute: str = "none", flash_attention: bool = False, sequence_parallel: bool = False,
                tensor: int | None = None, pipeline: int | None = None, expert: int | None = None,
                reserve_gb: float = DEFAULT_RESERVE_GB, max_devices: int = 1 << 20,
                weight_bytes: float = DEFAULT_WEIGHT_BYTES, grad_bytes: float = DEFAULT_GRAD_BYTES,
                optimizer_bytes: float = DEFAULT_OPTIMIZER_BYTES, finetune: FinetuneSpec | None = None) -> DevicePlan:
    """The fewest devices of ``memory_gb`` each that hold one training replica's memory.

    Searches tensor sizes 1, 2, 4, 8 (within a node; they must divide the query and KV heads),
    pipeline sizes dividing the layer count, expert sizes dividing the expert count (MoE), and, with
    ZeRO stage >= 1, the data-parallel size that shards the states enough; a size given as an
    argument is held fixed. Ties go to less model parallelism. Raises InputError when nothing up to
    ``max_devices`` fits (activations of one micro-batch can exceed a device whatever the split).
    """
    if memory_gb <= 0:
        raise InputError(f"memory_gb must be positive, got {memory_gb!r}")
    if reserve_gb < 0 or reserve_gb >= memory_gb:
        raise InputError(f"reserve_gb must be in [0, memory_gb), got {reserve_gb!r}")
    _positive_int("max_devices", max_devices)
    capacity_check = dict(reserve_gb=reserve_gb)
    tensors = [tensor] if tensor else [t for t in (1, 2, 4, 8) if arch.num_heads % t == 0 and arch.num_kv_heads % t == 0]
    pipelines = [pipeline] if pipeline else _divisors(arch.num_layers)
    if expert:
        experts = [expert]
    elif arch.moe is not None:
        experts = [e for e in _divisors(arch.moe.num_experts) if e & (e - 1) == 0]
    else:
        experts = [1]

    best: DevicePlan | None = None

    def plan(t: int, p: int, e: int, d: int) -> DevicePlan:
        par = Parallelism(data=d, tensor=t, pipeline=p, expert=e, sequence_parallel=sequence_parallel and t > 1,
                          zero_stage=zero_stage)
        mem = training_memory(arch, seq_len=seq_len, micro_batch=micro_batch, parallel=par, recompute=recompute,
                              flash_attention=flash_attention, weight_bytes=weight_bytes, grad_bytes=grad_bytes,
                              optimizer_bytes=optimizer_bytes, finetune=finetune)
        return DevicePlan(num_devices=par.num_devices, parallel=par, memory=mem,
                          fit=fit_check(mem, memory_gb, **capacity_check))

    for t in tensors:
        for p in pipelines:
            for e in experts:
                if t * p * e > max_devices:
                    continue
                first = plan(t, p, e, e)
                if first.fit.fits:
                    found = first
                elif zero_stage == 0:
                    continue
                else:
                    # Memory falls as d grows (ZeRO shards states); find the smallest multiple k of e.
                    limit = max_devices // (t * p * e)
                    top = plan(t, p, e, e * limit)
                    if not top.fit.fits:
                        continue
                    lo, hi = 1, limit
                    while lo < hi:
                        mid = (lo + hi) // 2
                        if plan(t, p, e, e * mid).fit.fits:
                            hi = mid
                        else:
                            lo = mid + 1
                    found = plan(t, p, e, e * lo)
                key = (found.num_devices, t * p, t)
                if best is None or key < (best.num_devices, best.parallel.tensor * best.parallel.pipeline,
                                          best.parallel.tensor):
                    best = found
    if best is None:
        raise InputError(f"no layout up to {max_devices} devices of {memory_gb:g} GB holds this run "
                         f"(seq_len {seq_len}, micro-batch {micro_batch}, ZeRO stage {zero_stage}, recompute "
                         f"{recompute}); try recompute, a smaller micro-batch, ZeRO, or larger devices")
    return best


# 8-bit optimizer states (Dettmers et al. 2021, "8-bit Optimizers via Block-wise Quantization",
# arXiv 2110.02861; bitsandbytes' AdamW8bit): momentum and variance in 1 byte each beside the fp32
# master weights: 4 + 1 + 1 = 6 bytes of the 12.
OPTIMIZER_8BIT_BYTES = 6.0


def what_would_fit(arch: Architecture, memory_gb: float, *, num_gpus: int, seq_len: int, given: Mapping[str, object],
                   finetune: FinetuneSpec | None = None, flash_attention: bool = True,
                   reserve_gb: float = DEFAULT_RESERVE_GB, devices: bool = True) -> str:
    """What would make a run that does not fit ``num_gpus`` devices of ``memory_gb`` fit, each with the
    memory per device it needs: the fewest devices, LoRA or QLoRA, full recomputation, ZeRO 3
    (FSDP), 8-bit optimizer states. A choice the user already made (``given``: recompute,
    zero_stage, micro_batch, finetune set to a value) is kept and never suggested again. ``devices``
    False leaves the fewest devices out (the caller names them).

    The base is the user's choices, else no recomputation, ZeRO 1 over several devices, micro-batch
    1, no tensor or pipeline parallelism; each option changes one thing from it."""
    from estimator.model.finetune import finetune_spec

    usable = capacity_bytes(memory_gb) - reserve_gb * GB
    recompute = str(given.get("recompute") or "none")
    zero = given.get("zero_stage")
    zero = int(zero) if zero is not None else (1 if num_gpus > 1 else 0)
    micro = int(given.get("micro_batch") or 1)
    method = finetune.method if finetune is not None else "full"

    def need(*, rc: str = recompute, z: int = zero, spec: FinetuneSpec | None = finetune,
             optimizer: float = DEFAULT_OPTIMIZER_BYTES, devices: int = num_gpus) -> float:
        par = Parallelism(data=devices, zero_stage=z)
        return training_memory(arch, seq_len=seq_len, micro_batch=micro, parallel=par, recompute=rc,
                               flash_attention=flash_attention, optimizer_bytes=optimizer, finetune=spec).total_bytes

    def text(label: str, required: float) -> str:
        return f"{label} {required / GB:.1f} GB ({'fits' if required <= usable else 'still too much'})"

    options = []
    try:
        if not devices:  # the caller names the fewest devices itself
            raise InputError("")
        fewest = min_devices(arch, memory_gb, seq_len=seq_len, micro_batch=micro,
                             zero_stage=3 if given.get("zero_stage") is None else int(given["zero_stage"]),
                             recompute="full" if given.get("recompute") is None else recompute,
                             flash_attention=flash_attention, sequence_parallel=True, finetune=finetune,
                             reserve_gb=reserve_gb, max_devices=1 << 16)
        if fewest.num_devices > num_gpus:
            par = fewest.parallel
            options.append(f"at least {fewest.num_devices} devices (--num-gpus {fewest.num_devices}: TP {par.tensor} x "
                           f"PP {par.pipeline} x DP {par.data}, ZeRO {par.zero_stage}, recompute "
                           f"{fewest.memory.recompute}) {fewest.memory.total_bytes / GB:.1f} GB each")
    except InputError:
        pass
    if method == "full":
        options.append(text("--finetune lora (rank 16, frozen bf16 weights)", need(spec=finetune_spec(arch, "lora"))))
    if method != "qlora":
        options.append(text("--finetune qlora (NF4 weights)", need(spec=finetune_spec(arch, "qlora"))))
    if given.get("recompute") is None:
        options.append(text("--recompute full", need(rc="full")))
    if given.get("zero_stage") is None and num_gpus > 1:
        options.append(text(f"--zero-stage 3 (FSDP) over {num_gpus} devices", need(z=3)))
    if method == "full":
        options.append(text("8-bit AdamW states (bitsandbytes; Dettmers et al. 2021)",
                            need(optimizer=OPTIMIZER_8BIT_BYTES)))
    if not options:
        return "larger devices" if devices else ""
    return "; ".join(options) + f" (of {usable / GB:.1f} GB usable per device)"


__all__ = [
    "what_would_fit", "OPTIMIZER_8BIT_BYTES",
    "RECOMPUTE_MODES", "ZERO_STAGES", "DEFAULT_RESERVE_GB", "Parallelism", "ModelStateMemory", "MemoryBreakdown",
    "FitCheck", "DevicePlan", "model_state_memory", "activation_bytes_per_layer", "activation_bytes",
    "training_memory", "fit_check", "min_devices", "layer_linears", "plain_dense_layers",
]
