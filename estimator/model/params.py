"""Exact parameter counts of an :class:`~estimator.model.arch.Architecture`.

:func:`count_params` counts parameters exactly as the reference implementations build them
(Hugging Face ``transformers`` modeling files; for DeepSeek-V3 also the checkpoint, which stores the
router's score-correction bias): total, active per token (MoE), and a per-component breakdown.
Pure Python; no torch.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from estimator.model.arch import Architecture


@dataclass(frozen=True, slots=True)
class ParamCount:
    """Parameter counts (elements, not bytes).

    ``total``: every parameter of the model (MoE: all experts); ``active``: parameters a token
    passes through (MoE: top-k routed + shared experts + router; embeddings included).
    ``breakdown`` / ``active_breakdown`` split them by component and sum to ``total`` / ``active``.
    ``mtp_total`` / ``mtp_active``: DeepSeek multi-token-prediction modules (their embedding and
    output head are shared with the main model), NOT included in ``total``, as DeepSeek reports.
    """

    total: int
    active: int
    breakdown: Mapping[str, int]
    active_breakdown: Mapping[str, int]
    mtp_total: int = 0
    mtp_active: int = 0

    @property
    def embedding(self) -> int:
        """Input embedding tables (token, position, token-type, embedding norm)."""
        return self.breakdown.get("embedding", 0)

    @property
    def active_non_embedding(self) -> int:
        """Active parameters less the input embedding tables: DeepSeek's "activated" convention."""
        return self.active - self.embedding


def norm_params(arch: Architecture, width: int) -> int:
    """Parameters of one norm of ``arch`` over ``width`` channels: RMSNorm a weight, LayerNorm a
    weight and a bias, a non-parametric LayerNorm (OLMo 1) none."""
    return width * {"layernorm": 2, "rmsnorm": 1}.get(arch.norm, 0)


_norm_params = norm_params


def _linear(n_in: int, n_out: int, bias: bool) -> int:
    return n_in * n_out + (n_out if bias else 0)


def _ffn_params(arch: Architecture, width: int, bias: bool) -> int:
    h = arch.hidden_size
    if arch.gated_ffn:  # gate_proj, up_proj: h -> width; down_proj: width -> h
        return 2 * _linear(h, width, bias) + _linear(width, h, bias)
    return _linear(h, width, bias) + _linear(width, h, bias)


def _attention_params(arch: Architecture) -> int:
    h = arch.hidden_size
    if arch.mla is not None:
        m = arch.mla
        heads = arch.num_heads
        bias = arch.qkv_bias
        if m.q_lora_rank is None:
            q = _linear(h, heads * m.qk_head_dim, False)
        else:  # q_a_proj, q_a_layernorm (RMSNorm), q_b_proj
            q = _linear(h, m.q_lora_rank, bias) + m.q_lora_rank + _linear(m.q_lora_rank, heads * m.qk_head_dim, False)
        kv = (_linear(h, m.kv_lora_rank + m.qk_rope_head_dim, bias)  # kv_a_proj_with_mqa
              + m.kv_lora_rank  # kv_a_layernorm (RMSNorm)
              + _linear(m.kv_lora_rank, heads * (m.qk_nope_head_dim + m.v_head_dim), False))  # kv_b_proj
        out = _linear(heads * m.v_head_dim, h, arch.attn_out_bias)
        return q + kv + out
    qkv = _linear(h, arch.q_dim, arch.qkv_bias) + 2 * _linear(h, arch.kv_dim, arch.qkv_bias)
    out = _linear(arch.q_dim, h, arch.attn_out_bias)
    if not arch.qk_norm:
        qk_norm = 0
    elif arch.qk_norm_full_width:  # OLMo 2: q_norm over heads*head_dim, k_norm over kv_heads*head_dim
        qk_norm = _norm_params(arch, arch.q_dim) + _norm_params(arch, arch.kv_dim)
    else:  # Qwen3, Gemma 3: one head_dim norm each for q and k, shared by the heads
        qk_norm = 2 * _norm_params(arch, arch.head_dim)
    return qkv + out + qk_norm


def _layer_components(arch: Architecture, moe_layer: bool) -> tuple[dict[str, int], dict[str, int]]:
    """(total, active) parameters of one transformer layer by component."""
    total = {"attention": _attention_params(arch),
             "norms": arch.norms_per_layer * _norm_params(arch, arch.hidden_size)}
    active = dict(total)
    if not moe_layer:
        total["mlp"] = active["mlp"] = _ffn_params(arch, arch.ffn_size, arch.mlp_bias)
        return total, active
    moe = arch.moe
    assert moe is not None
    per_expert = _ffn_params(arch, moe.expert_ffn_size, False)
    total["experts"] = moe.num_experts * per_expert
    active["experts"] = moe.experts_per_token * per_expert
    if moe.num_shared_experts:
        total["shared_experts"] = active["shared_experts"] = _ffn_params(arch, moe.shared_ffn_size, moe.shared_bias)
    router = arch.hidden_size * moe.num_experts + (moe.num_experts if moe.router_bias else 0)
    if moe.shared_expert_gate:  # Qwen2-MoE: sigmoid(Linear(hidden, 1, bias=False)) on the shared expert
        router += arch.hidden_size
    total["router"] = active["router"] = router
    return total, active


def _add(into: dict[str, int], more: Mapping[str, int], times: int = 1) -> None:
    if times == 0:
        return
    for key, value in more.items():
        into[key] = into.get(key, 0) + value * times


@functools.lru_cache(maxsize=256)
def count_params(arch: Architecture) -> ParamCount:
    """Count parameters exactly as the reference implementation builds the model.

    Components: ``embedding`` (token, learned position and token-type tables, BERT's embedding
    LayerNorm), ``attention`` (q/k/v/o projections and biases; MLA's down/up projections and latent
    norms; Qwen3's q/k norms), ``mlp`` (dense FFN layers), ``experts`` (routed), ``shared_experts``,
    ``router`` (with Qwen2-MoE's shared-expert gate), ``norms`` (``norms_per_layer`` per layer plus
    the final norm; q/k norms are in ``attention``), ``output_head`` (an untied LM head;
    a tied head adds nothing), ``pooler`` (BERT), ``mlm_head`` (BERT masked-LM head, opt-in).
    Buffers (causal masks, rotary tables) are not parameters. Units: parameters (elements).
    """
    h = arch.hidden_size
    total: dict[str, int] = {}
    active: dict[str, int] = {}

    embedding = arch.vocab_size * h
    if arch.position_embedding == "learned":
        assert arch.max_position_embeddings is not None
        embedding += arch.max_position_embeddings * h
    embedding += arch.type_vocab_size * h
    if arch.embedding_norm:
        embedding += _norm_params(arch, h)
    total["embedding"] = active["embedding"] = embedding

    moe_layers = arch.num_moe_layers
    dense_total, dense_active = _layer_components(arch, moe_layer=False)
    _add(total, dense_total, arch.num_dense_layers)
    _add(active, dense_active, arch.num_dense_layers)
    if moe_layers:
        moe_total, moe_active = _layer_components(arch, moe_layer=True)
        _add(total, moe_total, moe_layers)
        _add(active, moe_active, moe_layers)

    heads: dict[str, int] = {}
    if arch.final_norm:
        heads["norms"] = _norm_params(arch, h)
    if arch.lm_head and not arch.tie_embeddings:
        heads["output_head"] = arch.vocab_size * h
    if arch.pooler:
        heads["pooler"] = _linear(h, h, True)
    if arch.mlm_head:  # transform.dense + transform.LayerNorm + decoder bias (decoder weight tied)
        heads["mlm_head"] = _linear(h, h, True) + _norm_params(arch, h) + arch.vocab_size
        if arch.mlm_decoder_untied:  # transformers 5 unties both decoder.weight and decoder.bias
            heads["mlm_head"] += arch.vocab_size * h + arch.vocab_size  # (from cls.predictions.bias)
    _add(total, heads)
    _add(active, heads)

    mtp_total = mtp_active = 0
    if arch.num_mtp_layers:
        last_is_moe = arch.moe is not None and arch.moe.is_moe_layer(arch.num_layers - 1)
        layer_total, layer_active = _layer_components(arch, moe_layer=last_is_moe)
        # enorm + hnorm, eh_proj (2h -> h, no bias), the transformer layer, shared_head.norm;
        # embed_tokens and shared_head.head are shared with the main model (DeepSeek-V3 README_WEIGHTS).
        extra = 3 * _norm_params(arch, h) + 2 * h * h
        mtp_total = arch.num_mtp_layers * (sum(layer_total.values()) + extra)
        mtp_active = arch.num_mtp_layers * (sum(layer_active.values()) + extra)

    order = ("embedding", "attention", "mlp", "experts", "shared_experts", "router", "norms",
             "output_head", "pooler", "mlm_head")
    total_sorted = {k: total[k] for k in order if k in total}
    active_sorted = {k: active[k] for k in order if k in active}
    return ParamCount(
        total=sum(total_sorted.values()), active=sum(active_sorted.values()),
        breakdown=MappingProxyType(total_sorted), active_breakdown=MappingProxyType(active_sorted),
        mtp_total=mtp_total, mtp_active=mtp_active,
    )


__all__ = ["ParamCount", "count_params", "norm_params"]
