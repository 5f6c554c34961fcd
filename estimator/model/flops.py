"""Training and inference FLOPs.

The simple rule: training compute C = 6 * N * D (N parameters, active ones for MoE; D tokens):
2 FLOPs per parameter per token for the forward pass and 4 for the backward pass.
Kaplan et al. 2020, "Scaling Laws for Neural Language Models" (arXiv 2001.08361), section 2.1.

The detailed count (:func:`flops_per_token`) adds up the matrix multiplications of one token's
forward pass for a given :class:`~estimator.model.arch.Architecture`, including the attention scores over
the sequence and the output head, and multiplies by 3 for training (the backward pass runs two
matmuls per forward matmul). Conventions follow PaLM (Chowdhery et al. 2022, arXiv 2204.02311,
appendix B) and Megatron-LM's ``num_floating_point_operations``; recomputation follows Korthikanti
et al. 2022 (arXiv 2205.05198). Units: FLOPs (floating-point operations, one multiply-add = 2).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from estimator.errors import InputError
from estimator.vocab import RECOMPUTE_MODES

if TYPE_CHECKING:  # the 6ND rule is on the estimate hot path; the architecture code loads on demand
    from estimator.model.arch import Architecture



#: Compute-optimal training tokens per parameter, D ~ 20 N (Hoffmann et al. 2022, "Training
#: Compute-Optimal Large Language Models", arXiv 2203.15556, Table 3).
CHINCHILLA_TOKENS_PER_PARAM = 20.0


def train_flops_6nd(params: float, tokens: float) -> float:
    """Training FLOPs by 6 * params * tokens (Kaplan et al. 2020). ``params``: active parameters."""
    return 6.0 * params * tokens


@dataclass(frozen=True, slots=True)
class FlopsPerToken:
    """FLOPs per token (per position of a ``seq_len`` sequence) for one architecture.

    ``forward``: model FLOPs of one forward pass; ``train_model``: forward + backward = 3 x forward,
    the numerator of MFU (no recomputation, PaLM appendix B); ``train_hardware``: what the device
    executes with activation recomputation ``recompute`` (HFU numerator). ``breakdown``: forward
    FLOPs by component (sums to ``forward``). ``six_n``: 6 x active parameters (Kaplan et al.);
    ``palm``: 6N + 12 L H Q T (PaLM appendix B). ``mtp_forward``: DeepSeek multi-token-prediction
    modules' forward FLOPs, NOT included in ``forward`` (DeepSeek's 37B-active convention).
    """

    seq_len: int
    causal: bool
    recompute: str
    forward: float
    train_model: float
    train_hardware: float
    breakdown: Mapping[str, float]
    six_n: float
    palm: float
    mtp_forward: float = 0.0

    @property
    def recompute_extra(self) -> float:
        """Extra FLOPs per token spent recomputing activations (``train_hardware - train_model``)."""
        return self.train_hardware - self.train_model

    @property
    def attention_fraction(self) -> float:
        """Share of forward FLOPs in the attention-score matmuls (QK^T and AV)."""
        return self.breakdown.get("attention_scores", 0.0) / self.forward


def _check(arch: Architecture, seq_len: int, recompute: str) -> None:
    from estimator.model.arch import Architecture

    if not isinstance(arch, Architecture):
        raise InputError(f"an Architecture is required, got {type(arch).__name__}")
    arch.check_seq_len(seq_len)
    if recompute not in RECOMPUTE_MODES:
        raise InputError(f"recompute must be one of {', '.join(RECOMPUTE_MODES)}, got {recompute!r}")


def _layer_forward(arch: Architecture, seq_len: int, moe_layer: bool, causal: bool) -> dict[str, float]:
    """Forward FLOPs per token of one transformer layer, by component."""
    h = arch.hidden_size
    heads = arch.num_heads
    out: dict[str, float] = {}
    # 1. Attention projections: 2 FLOPs per weight of each projection (a matmul of a token's
    #    n_in-vector by an n_in x n_out matrix is 2 * n_in * n_out FLOPs). Biases, norms, rotary
    #    embeddings and softmax are element-wise and not counted.
    if arch.mla is not None:
        m = arch.mla
        # MLA (DeepSeek-V2 section 2.1): q = W_qb(norm(W_qa x)) or W_q x; [c_kv, k_rope] = W_kva x;
        # [k_nope, v] = W_kvb c_kv per head; out = W_o [heads * v_head_dim]. Keys/values are
        # decompressed as in the training path (not the absorbed inference path).
        q = (2 * h * heads * m.qk_head_dim if m.q_lora_rank is None
             else 2 * h * m.q_lora_rank + 2 * m.q_lora_rank * heads * m.qk_head_dim)
        kv = (2 * h * (m.kv_lora_rank + m.qk_rope_head_dim)
              + 2 * m.kv_lora_rank * heads * (m.qk_nope_head_dim + m.v_head_dim))
        out["attention_proj"] = q + kv + 2 * heads * m.v_head_dim * h
        qk_dim, v_dim = m.qk_head_dim, m.v_head_dim
    else:
        # q: h -> heads*head_dim; k, v: h -> kv_heads*head_dim each (GQA shares k/v across a group);
        # o: heads*head_dim -> h.
        out["attention_proj"] = 2 * h * arch.q_dim + 2 * 2 * h * arch.kv_dim + 2 * arch.q_dim * h
        qk_dim = v_dim = arch.head_dim
    # 2. Attention scores: each query attends to seq_len keys: QK^T costs 2 * seq_len * qk_dim and
    #    AV costs 2 * seq_len * v_dim per head per token. Default (PaLM appendix B, nanoGPT): the
    #    full seq_len x seq_len matrix is counted, causal masking NOT exploited. causal=True halves it
    #    (Megatron-LM convention), for decoder models only. GQA does not reduce this term.
    scores = 2 * heads * seq_len * (qk_dim + v_dim)
    out["attention_scores"] = scores * (0.5 if causal and arch.causal else 1.0)
    # 3. FFN: gated (SwiGLU): gate, up, down = 3 matmuls of h x width; otherwise 2.
    #    MoE: only the top-k routed experts a token is sent to, plus the shared experts, plus the
    #    router's h x num_experts logits (and Qwen2-MoE's h x 1 shared-expert gate). Capacity-factor
    #    padding and dropped tokens are not counted.
    matrices = 3 if arch.gated_ffn else 2
    if moe_layer:
        moe = arch.moe
        assert moe is not None
        out["experts"] = 2 * matrices * h * moe.expert_ffn_size * moe.experts_per_token
        if moe.num_shared_experts:
            out["shared_experts"] = 2 * matrices * h * moe.shared_ffn_size
        # Qwen2-MoE's shared-expert gate: one more h x 1 matmul per token.
        out["router"] = 2 * h * moe.num_experts + (2 * h if moe.shared_expert_gate else 0)
    else:
        out["mlp"] = 2 * matrices * h * arch.ffn_size
    return out


def _add(into: dict[str, float], more: Mapping[str, float], times: float = 1) -> None:
    if times == 0:
        return
    for key, value in more.items():
        into[key] = into.get(key, 0.0) + value * times


def forward_flops_breakdown(arch: Architecture, seq_len: int, *, causal: bool = False) -> dict[str, float]:
    """Forward FLOPs per token by component (see :func:`flops_per_token`)."""
    _check(arch, seq_len, "none")
    h = arch.hidden_size
    out: dict[str, float] = {}
    if arch.num_dense_layers:
        _add(out, _layer_forward(arch, seq_len, False, causal), arch.num_dense_layers)
    if arch.num_moe_layers:
        _add(out, _layer_forward(arch, seq_len, True, causal), arch.num_moe_layers)
    # 4. Output head: logits over the vocabulary, 2 * h * vocab per token (tied or not: the matmul
    #    runs either way). BERT's masked-LM head (opt-in) adds its h x h transform. Input embedding
    #    look-ups are not matmuls and cost nothing.
    if arch.lm_head:
        out["output_head"] = 2 * h * arch.vocab_size
    if arch.mlm_head:
        out["output_head"] = 2 * h * h + 2 * h * arch.vocab_size
    # 5. BERT pooler: one h x h matmul on the first token of each sequence, spread over seq_len tokens.
    if arch.pooler:
        out["pooler"] = 2 * h * h / seq_len
    return out


def _mtp_forward(arch: Architecture, seq_len: int, causal: bool) -> float:
    if not arch.num_mtp_layers:
        return 0.0
    h = arch.hidden_size
    last_is_moe = arch.moe is not None and arch.moe.is_moe_layer(arch.num_layers - 1)
    layer = sum(_layer_forward(arch, seq_len, last_is_moe, causal).values())
    # eh_proj (2h -> h), one transformer layer, and the shared output head.
    return arch.num_mtp_layers * (2 * 2 * h * h + layer + 2 * h * arch.vocab_size)


@functools.lru_cache(maxsize=256)
def flops_per_token(arch: Architecture, seq_len: int, *, causal: bool = False,
                    recompute: str = "none") -> FlopsPerToken:
    """Model and hardware FLOPs per token of training ``arch`` on sequences of ``seq_len`` tokens.

    Counted (forward, per token; see the numbered comments in ``_layer_forward``): 1. attention
    projections (MLA per its real down/up projections); 2. attention scores QK^T and AV over the full
    sequence (``causal=True`` halves them); 3. dense FFN, or MoE top-k routed + shared experts +
    router; 4. output head (logits); 5. BERT pooler. Not counted: element-wise work (norms,
    activations, softmax, rotary, residuals, biases), embedding look-ups, the optimizer step.

    Training (model FLOPs) = 3 x forward: the backward pass computes the gradient with respect to
    the input and to the weights of every matmul, two matmuls of the forward's size.
    Hardware FLOPs add recomputation (Korthikanti et al. 2022): ``"selective"`` recomputes the
    attention-score matmuls once more (their forward); ``"full"`` recomputes the forward of every
    transformer layer (the output head is not recomputed). MoE FLOPs use active experts only.
    """
    _check(arch, seq_len, recompute)
    breakdown = forward_flops_breakdown(arch, seq_len, causal=causal)
    forward = sum(breakdown.values())
    # 6. Training model FLOPs = 3 x forward: per matmul the backward pass computes the gradient with
    #    respect to the input and to the weight, each as large as the forward matmul (the embedding's
    #    sparse gradient is not a matmul). Recomputation is NOT part of model FLOPs (PaLM: MFU).
    train_model = 3.0 * forward
    # 7. Hardware FLOPs = model FLOPs + recomputed forward work (Korthikanti et al. 2022): selective
    #    reruns QK^T and AV; full reruns every transformer layer's forward, not the output head.
    if recompute == "selective":
        extra = breakdown.get("attention_scores", 0.0)
    elif recompute == "full":
        extra = forward - breakdown.get("output_head", 0.0) - breakdown.get("pooler", 0.0)
    else:
        extra = 0.0
    from estimator.model.params import count_params

    params = count_params(arch)
    return FlopsPerToken(
        seq_len=seq_len, causal=bool(causal and arch.causal), recompute=recompute, forward=forward,
        train_model=train_model, train_hardware=train_model + extra, breakdown=MappingProxyType(breakdown),
        six_n=6.0 * params.active, palm=train_flops_per_token_palm(arch, seq_len),
        mtp_forward=_mtp_forward(arch, seq_len, causal),
    )


def train_flops_per_token_palm(arch: Architecture, seq_len: int) -> float:
    """PaLM's training FLOPs per token: 6N + 12 L H Q T (Chowdhery et al. 2022, appendix B;
    nanoGPT ``estimate_mfu``). Full attention matrix (no causal halving), no recomputation.

    N: active parameters less the input embedding tables (token, position, token-type), with the
    output head counted once (so a tied head is counted through the shared table), i.e. the weights
    that take part in a matmul. 12 L H Q T generalises to 6 L H T (d_qk + d_v) for MLA.
    """
    _check(arch, seq_len, "none")
    from estimator.model.params import count_params

    params = count_params(arch)
    n = params.active - params.embedding
    if arch.lm_head and arch.tie_embeddings:
        n += arch.vocab_size * arch.hidden_size
    if arch.mla is not None:
        qk, v = arch.mla.qk_head_dim, arch.mla.v_head_dim
    else:
        qk = v = arch.head_dim
    return 6.0 * n + 6.0 * arch.num_layers * arch.num_heads * seq_len * (qk + v)


def train_flops(arch: Architecture, tokens: float, seq_len: int, *, causal: bool = False) -> float:
    """Training model FLOPs for ``tokens`` tokens at ``seq_len`` (detailed count x tokens)."""
    if tokens <= 0:
        raise InputError(f"tokens must be positive, got {tokens!r}")
    return flops_per_token(arch, seq_len, causal=causal).train_model * tokens


__all__ = [
    "CHINCHILLA_TOKENS_PER_PARAM", "RECOMPUTE_MODES", "FlopsPerToken", "train_flops_6nd", "flops_per_token", "forward_flops_breakdown",
    "train_flops_per_token_palm", "train_flops",
]
