"""The compute side of the step model: the maximum achievable matmul fraction per chip, the
fitted and anchored constants, a layer's matmul shapes (Shape) and each matmul on the roofline
(the longer of its FLOPs at peak x e_max and its bytes at HBM bandwidth, plus a kernel's overhead).
The bottom of the timing wing; estimator/timing/step.py says how the parts compose."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from estimator.model.arch import Architecture
from estimator.catalog.records import Accelerator
from estimator.timing.layout import Layout

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
DP_OVERLAP = 0.25  # share of a bucketed data-parallel reduction hidden behind the backward pass (fitted)

# -- anchored constants --------------------------------------------------------------------------
SOFTMAX_BYTES_PER_SCORE = 10.0  # unfused softmax + mask + dropout: read/write ~10 B per score, forward
OPTIMIZER_BYTES_PER_PARAM = 36.0  # AdamW step: read fp32 master, m, v, grad; write master, m, v, bf16 weight
HBM_EFFICIENCY = 0.85  # achievable share of the datasheet HBM bandwidth (stream copy, e.g. 2.8 of 3.35 TB/s)


@dataclass(frozen=True, slots=True)
class Constants:
    """The step model's tunable constants (the module-level defaults; the fit varies them)."""

    kernel_overhead_s: float = KERNEL_OVERHEAD_S
    elementwise_bytes_per_hidden: float = ELEMENTWISE_BYTES_PER_HIDDEN
    dp_overlap: float = DP_OVERLAP


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


__all__ = ["Constants", "DEFAULT_MAX_MATMUL_FRACTION", "DP_OVERLAP", "ELEMENTWISE_BYTES_PER_HIDDEN",
           "HBM_EFFICIENCY", "KERNEL_OVERHEAD_S", "MAX_MATMUL_FRACTION", "OPTIMIZER_BYTES_PER_PARAM",
           "SOFTMAX_BYTES_PER_SCORE", "Shape", "StepTime", "gemm_seconds", "matmul_fraction", "shape_of"]
