"""Reading Hugging Face ``config.json`` files into :class:`~estimator.model.arch.Architecture` records.

:func:`from_hf_config` reads the ``config.json`` of the families in :data:`SUPPORTED_MODEL_TYPES`
(Llama, Mistral, Mixtral, Qwen2/Qwen3, Qwen2-MoE/Qwen3-MoE, DeepSeek-V2/V3, Gemma/Gemma 2/Gemma 3
text, Phi-3, OLMo/OLMo 2, Nemotron, GPT-NeoX, Falcon, StarCoder2, Granite, GPT-2, BERT); :func:`load_hf_config`
reads one from disk, a snapshot directory or the local Hugging Face cache (never the network, see
:func:`resolve_config_path`); :func:`architecture_for_model` finds a catalog model's architecture.
Errors name the file and the field, in one line. Pure Python; no torch.

Missing keys
------------
A key that config.json leaves out takes the default of transformers' own config class for that
``model_type``, so that a sparse config counts as transformers would build it:
:data:`TRANSFORMERS_DEFAULTS` below, read from transformers :data:`TRANSFORMERS_VERSION`
(``models/<family>/configuration_<family>.py``; tests/test_hf_families.py checks every entry
against the installed classes). A default of ``None`` is derived as the class (or its modeling
file) derives it (:data:`DERIVED`); an explicit ``null`` in the file is read the same way for the
keys where transformers gives ``None`` a meaning (``q_lora_rank: null``: full-rank queries;
``head_dim: null``: derived), and as "missing" otherwise. A few keys are not fields of the config
class but are read by the modeling file with ``getattr`` (:data:`NOT_CLASS_FIELDS`).

One exception to taking transformers' defaults: the keys that set a model's headline size
(:data:`REQUIRED_KEYS`: vocabulary, width, FFN width, layers, heads) are required. transformers
fills them with one example checkpoint's numbers (Llama's 4096 x 32 layers), which would turn a
truncated or hand-written file into a silently wrong estimate; every config.json that
``save_pretrained`` writes holds them.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from estimator.model.arch import MAX_LAYERS, MAX_SIZE, MLA, Architecture, MoE, _short
from estimator.errors import CatalogError, InputError

#: The transformers release the defaults below were read from.
TRANSFORMERS_VERSION = "5.24.0"

_HEADLINE = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")

#: Per model_type, the value transformers' config class gives a key that config.json leaves out
#: (transformers 5.24.0). ``None``: derived, see :data:`DERIVED`. Keys in :data:`REQUIRED_KEYS`
#: have no default here.
TRANSFORMERS_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"num_key_value_heads": None, "head_dim": None, "max_position_embeddings": 2048,
              "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False},
    "mistral": {"num_key_value_heads": 8, "head_dim": None, "max_position_embeddings": 131072,
                "tie_word_embeddings": False},
    "mixtral": {"num_key_value_heads": 8, "head_dim": None, "max_position_embeddings": 131072,
                "tie_word_embeddings": False, "num_local_experts": 8, "num_experts_per_tok": 2},
    "qwen2": {"num_key_value_heads": 32, "head_dim": None, "max_position_embeddings": 32768,
              "tie_word_embeddings": False},
    "qwen3": {"num_key_value_heads": 32, "head_dim": 128, "max_position_embeddings": 32768,
              "tie_word_embeddings": False, "attention_bias": False},
    "qwen2_moe": {"num_key_value_heads": 16, "head_dim": None, "max_position_embeddings": 32768,
                  "tie_word_embeddings": False, "qkv_bias": True, "num_experts": 60, "num_experts_per_tok": 4,
                  "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
                  "decoder_sparse_step": 1, "mlp_only_layers": None},
    "qwen3_moe": {"num_key_value_heads": 4, "head_dim": None, "max_position_embeddings": 32768,
                  "tie_word_embeddings": False, "attention_bias": False, "num_experts": 128,
                  "num_experts_per_tok": 8, "moe_intermediate_size": 768, "decoder_sparse_step": 1,
                  "mlp_only_layers": None},
    "deepseek_v2": {"max_position_embeddings": 2048, "tie_word_embeddings": False, "attention_bias": False,
                    "mlp_bias": False, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                    "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 64, "n_shared_experts": 2,
                    "moe_intermediate_size": 1407, "num_experts_per_tok": None, "first_k_dense_replace": 0,
                    "topk_method": "greedy", "moe_layer_freq": 1},
    "deepseek_v3": {"max_position_embeddings": 4096, "tie_word_embeddings": False, "attention_bias": False,
                    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
                    "v_head_dim": 128, "n_routed_experts": 256, "n_shared_experts": 1,
                    "moe_intermediate_size": 2048, "num_experts_per_tok": 8, "first_k_dense_replace": 3,
                    "topk_method": "noaux_tc", "moe_layer_freq": 1, "num_nextn_predict_layers": 1},
    "gemma": {"num_key_value_heads": 16, "head_dim": 256, "max_position_embeddings": 8192,
              "tie_word_embeddings": True, "attention_bias": False},
    "gemma2": {"num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 8192,
               "tie_word_embeddings": True, "attention_bias": False},
    "gemma3_text": {"num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 131072,
                    "tie_word_embeddings": True, "attention_bias": False},
    "phi3": {"num_key_value_heads": None, "head_dim": None, "max_position_embeddings": 4096,
             "original_max_position_embeddings": 4096, "tie_word_embeddings": False},
    "olmo": {"num_key_value_heads": None, "head_dim": None, "max_position_embeddings": 2048,
             "tie_word_embeddings": False, "attention_bias": False},
    "olmo2": {"num_key_value_heads": None, "head_dim": None, "max_position_embeddings": 2048,
              "tie_word_embeddings": False, "attention_bias": False},
    "granite": {"num_key_value_heads": None, "head_dim": None, "max_position_embeddings": 2048,
                "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False},
    "starcoder2": {"num_key_value_heads": 2, "head_dim": None, "max_position_embeddings": 4096,
                   "tie_word_embeddings": True, "use_bias": True},
    "nemotron": {"head_dim": None, "max_position_embeddings": 4096,
                 "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False},
    "gpt_neox": {"max_position_embeddings": 2048, "tie_word_embeddings": False, "attention_bias": True},
    "falcon": {"num_kv_heads": None, "ffn_hidden_size": None, "max_position_embeddings": 2048,
               "tie_word_embeddings": True, "new_decoder_architecture": False, "multi_query": True,
               "parallel_attn": True, "num_ln_in_parallel_attn": None, "bias": False, "alibi": False},
    "gpt2": {"n_positions": 1024, "n_inner": None, "tie_word_embeddings": True, "add_cross_attention": False},
    "bert": {"max_position_embeddings": 512, "type_vocab_size": 2, "tie_word_embeddings": True,
             "is_decoder": False, "add_cross_attention": False, "position_embedding_type": "absolute"},
}

#: Per model_type, the keys without a default (see the module docstring).
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    **{model_type: _HEADLINE for model_type in TRANSFORMERS_DEFAULTS},
    "falcon": ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"),
    "gpt2": ("vocab_size", "n_embd", "n_layer", "n_head"),
    # NemotronConfig's num_key_value_heads defaults to None and its model cannot be built without it
    # (transformers 5.24.0 divides by it); every published Nemotron config.json sets it.
    "nemotron": (*_HEADLINE, "num_key_value_heads"),
}

#: How a ``None`` default (or an explicit null) is read, as the transformers classes do.
DERIVED: dict[str, str] = {
    "num_key_value_heads": "num_attention_heads (multi-head attention)",
    "head_dim": "hidden_size // num_attention_heads (refused when it does not divide)",
    "num_kv_heads": "Falcon: num_attention_heads; 1 for the old multi-query attention",
    "ffn_hidden_size": "Falcon: 4 * hidden_size",
    "n_inner": "GPT-2: 4 * n_embd",
    "num_ln_in_parallel_attn": "Falcon: 2 with new_decoder_architecture, else 1 (a parallel block)",
    "num_experts_per_tok": "DeepSeek-V2: no default (DeepseekV2Config's is None): required for an MoE",
    "mlp_only_layers": "Qwen-MoE: [] (every layer may be sparse)",
    "q_lora_rank": "DeepSeek: null means full-rank query projections (DeepSeek-V2-Lite)",
    "n_routed_experts": "DeepSeek: null means a dense model (DeepSeek's own modeling code)",
}

#: Keys read although they are not fields of transformers' config class for that model_type, with
#: where their default comes from.
NOT_CLASS_FIELDS: dict[tuple[str, str], str] = {
    **{(mt, "head_dim"): "modeling file: getattr(config, 'head_dim', hidden_size // num_attention_heads)"
       for mt in ("qwen2", "qwen2_moe", "qwen3_moe", "phi3", "olmo", "olmo2", "granite", "starcoder2")},
    ("deepseek_v2", "moe_layer_freq"): "DeepSeek's modeling_deepseek.py (transformers ignores it)",
    ("deepseek_v3", "moe_layer_freq"): "DeepSeek's modeling_deepseek.py (transformers ignores it)",
    ("deepseek_v3", "topk_method"): "DeepSeek-V3's config; transformers always builds the correction bias",
    ("bert", "position_embedding_type"): "transformers < 5 (relative position types refused)",
}

SUPPORTED_MODEL_TYPES = tuple(TRANSFORMERS_DEFAULTS)

#: model_types refused with a reason rather than "unsupported".
_REFUSED_MODEL_TYPES = {
    "gemma3": "multimodal Gemma 3 (a SigLIP vision tower besides the language model) is not supported; "
              "a text-only Gemma 3 config has model_type 'gemma3_text'",
    "RefinedWeb": "the legacy Falcon config (remote code); the current tiiuae config.json has model_type 'falcon'",
    "RefinedWebModel": "the legacy Falcon config (remote code); the current tiiuae config.json has model_type 'falcon'",
}

_MISSING = object()


def _rope_original_length(cfg: Mapping[str, Any]) -> int | None:
    for key in ("rope_scaling", "rope_parameters"):
        scaling = cfg.get(key)
        if isinstance(scaling, Mapping):
            value = scaling.get("original_max_position_embeddings")
            if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_SIZE:
                return value
    return None


class _Reader:
    """Reads typed fields from a config dict, with the family's transformers defaults; errors name
    the file and the field."""

    def __init__(self, cfg: Mapping[str, Any], source: str, model_type: str):
        self.cfg, self.source, self.model_type = cfg, source, model_type
        self.defaults = TRANSFORMERS_DEFAULTS[model_type]

    def error(self, key: str | None, problem: str) -> CatalogError:
        return CatalogError(self.source, self.model_type, key, problem)

    def has(self, key: str) -> bool:
        return self.cfg.get(key) is not None

    def raw(self, key: str, *, nullable: bool = False) -> Any:
        """The file's value, else the family default; ``nullable``: an explicit null is a value."""
        value = self.cfg.get(key, _MISSING)
        if value is not _MISSING and (value is not None or nullable):
            return value
        if key in self.defaults:
            return self.defaults[key]
        raise self.error(key, "is required")

    def int(self, key: str, *, allow_zero: bool = False, nullable: bool = False, limit: int = MAX_SIZE) -> Any:
        value = self.raw(key, nullable=nullable)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (value == 0 and not allow_zero):
            raise self.error(key, f"must be a {'non-negative' if allow_zero else 'positive'} integer, "
                                  f"got {_short(value)}")
        if value > limit:
            raise self.error(key, f"must be at most {limit:,}, got {_short(value)}")
        return value

    def bool(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_short(value)}")
        return value

    def str(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_short(value)}")
        return value

    def layers(self, key: str, num_layers: int) -> frozenset[int]:
        """A list of layer indices (Qwen-MoE's ``mlp_only_layers``); null or missing: none."""
        value = self.raw(key)
        if value is None:
            return frozenset()
        if not isinstance(value, list):
            raise self.error(key, f"must be a list of layer indices, got {_short(value)}")
        for index in value:
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < num_layers:
                raise self.error(key, f"holds {_short(index)}, not a layer index 0..{num_layers - 1}")
        return frozenset(value)

    def first_of(self, *keys: str, **options: Any) -> Any:
        """``int`` of the first of ``keys`` the file sets (aliases), else of the first key's default."""
        for key in keys:
            if self.has(key):
                return self.int(key, **options)
        return self.int(keys[0], **options)


def _head_dim(r: _Reader, hidden: int, heads: int, *, key: str | None = "head_dim",
              hidden_key: str = "hidden_size", heads_key: str = "num_attention_heads") -> int:
    """The head width: the ``key`` field when the family reads one, else hidden // heads, refused
    (naming the field) when the heads do not divide the width."""
    if key is not None:
        head_dim = r.int(key, nullable=True)
        if head_dim is not None:
            return head_dim
        if hidden % heads:
            raise r.error(key, f"is required when {hidden_key} ({hidden}) is not a multiple of "
                               f"{heads_key} ({heads})")
    elif hidden % heads:
        raise r.error(heads_key, f"({heads}) must divide {hidden_key} ({hidden}): the head width is derived from them")
    return hidden // heads


def _decoder_common(r: _Reader, *, qkv_bias: bool, out_bias: bool, mlp_bias: bool, head_dim: bool = True,
                    gated: bool = True, norm: str = "rmsnorm") -> dict:
    hidden = r.int("hidden_size")
    heads = r.int("num_attention_heads")
    max_pos = r.int("max_position_embeddings")
    return dict(
        num_layers=r.int("num_hidden_layers", limit=MAX_LAYERS), hidden_size=hidden, num_heads=heads,
        num_kv_heads=(r.int("num_key_value_heads", nullable=True) or heads) if head_dim else heads,
        head_dim=_head_dim(r, hidden, heads) if head_dim else max(1, hidden // heads),
        ffn_size=r.int("intermediate_size"), vocab_size=r.int("vocab_size"), gated_ffn=gated,
        tie_embeddings=r.bool("tie_word_embeddings"), position_embedding="rotary",
        max_position_embeddings=max_pos, default_seq_len=_rope_original_length(r.cfg) or max_pos,
        qkv_bias=qkv_bias, attn_out_bias=out_bias, mlp_bias=mlp_bias, norm=norm,
    )


def _parse_llama(r: _Reader) -> dict:  # also Granite: its multipliers scale activations, not shapes
    bias = r.bool("attention_bias")
    return _decoder_common(r, qkv_bias=bias, out_bias=bias, mlp_bias=r.bool("mlp_bias"))


def _parse_mistral(r: _Reader) -> dict:
    return _decoder_common(r, qkv_bias=False, out_bias=False, mlp_bias=False)


def _parse_mixtral(r: _Reader) -> dict:
    out = _parse_mistral(r)
    out["moe"] = MoE(num_experts=r.first_of("num_local_experts", "num_experts"),
                     experts_per_token=r.int("num_experts_per_tok"), expert_ffn_size=out["ffn_size"])
    return out


def _parse_qwen2(r: _Reader) -> dict:
    # Qwen2: q, k, v projections carry a bias, the output projection does not (modeling_qwen2.py).
    return _decoder_common(r, qkv_bias=True, out_bias=False, mlp_bias=False)


def _parse_qwen3(r: _Reader) -> dict:
    bias = r.bool("attention_bias")
    out = _decoder_common(r, qkv_bias=bias, out_bias=bias, mlp_bias=False)
    out["qk_norm"] = True  # per-head RMSNorm on q and k (modeling_qwen3.py)
    return out


def _qwen_moe(r: _Reader, num_layers: int, *, shared: bool) -> MoE | None:
    """Qwen-MoE's sparse blocks (modeling_qwen2_moe.py / modeling_qwen3_moe.py): layer i is sparse
    when i is not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0 (and num_experts > 0)."""
    experts = r.first_of("num_experts", "num_local_experts", allow_zero=True)
    step = r.int("decoder_sparse_step", limit=MAX_LAYERS)
    dense = r.layers("mlp_only_layers", num_layers)
    if experts == 0:
        return None
    shared_ffn = r.int("shared_expert_intermediate_size", allow_zero=True) if shared else 0
    return MoE(num_experts=experts, experts_per_token=r.int("num_experts_per_tok"),
               expert_ffn_size=r.int("moe_intermediate_size"), num_shared_experts=1 if shared_ffn else 0,
               shared_ffn_size=shared_ffn, layer_freq=step, layer_offset=step - 1, dense_layers=dense,
               shared_expert_gate=shared)


def _parse_qwen2_moe(r: _Reader) -> dict:
    # Qwen2-MoE: q, k, v biases (config qkv_bias), none on o; one shared expert of its own width
    # behind a sigmoid gate (shared_expert_gate: Linear(hidden, 1, bias=False)).
    out = _decoder_common(r, qkv_bias=r.bool("qkv_bias"), out_bias=False, mlp_bias=False)
    out["moe"] = _qwen_moe(r, out["num_layers"], shared=True)
    return out


def _parse_qwen3_moe(r: _Reader) -> dict:
    out = _parse_qwen3(r)
    out["moe"] = _qwen_moe(r, out["num_layers"], shared=False)
    return out


def _parse_deepseek(r: _Reader) -> dict:
    v3 = r.model_type == "deepseek_v3"
    bias = r.bool("attention_bias")
    # transformers' DeepseekV2MLP (dense layers and the shared experts) honours mlp_bias; the routed
    # experts never carry biases. DeepSeek-V3 has no such key (DeepseekV3MLP: bias-free).
    mlp_bias = False if v3 else r.bool("mlp_bias")
    out = _decoder_common(r, qkv_bias=bias, out_bias=bias, mlp_bias=mlp_bias, head_dim=False)
    out["head_dim"] = r.int("v_head_dim")
    out["num_kv_heads"] = out["num_heads"]  # MLA: every head has its own (decompressed) k and v
    out["mla"] = MLA(q_lora_rank=r.int("q_lora_rank", nullable=True), kv_lora_rank=r.int("kv_lora_rank"),
                     qk_nope_head_dim=r.int("qk_nope_head_dim"), qk_rope_head_dim=r.int("qk_rope_head_dim"),
                     v_head_dim=r.int("v_head_dim"))
    routed = r.int("n_routed_experts", nullable=True)
    if routed:
        top_k = r.int("num_experts_per_tok")
        if top_k is None:
            raise r.error("num_experts_per_tok", "is required for an MoE (DeepseekV2Config's default is null)")
        freq = r.int("moe_layer_freq", limit=MAX_LAYERS)
        if freq != 1:
            raise r.error("moe_layer_freq", f"{freq} is not supported: transformers ignores it (every layer from "
                                            "first_k_dense_replace on is MoE) while DeepSeek's code honours it")
        shared = r.int("n_shared_experts", allow_zero=True)
        if mlp_bias and not shared:
            raise r.error("mlp_bias", "with n_shared_experts 0 is not supported: transformers still builds a "
                                      "zero-width shared expert whose down_proj bias remains")
        expert_ffn = r.int("moe_intermediate_size")
        out["moe"] = MoE(
            num_experts=routed, experts_per_token=top_k, expert_ffn_size=expert_ffn,
            num_shared_experts=shared, shared_ffn_size=shared * expert_ffn,
            first_k_dense=min(r.int("first_k_dense_replace", allow_zero=True, limit=MAX_LAYERS), out["num_layers"]),
            # DeepSeek-V3's aux-loss-free balancing adds a per-expert bias (e_score_correction_bias).
            router_bias=v3 and r.str("topk_method") == "noaux_tc", shared_bias=mlp_bias,
        )
    out["num_mtp_layers"] = (r.first_of("num_nextn_predict_layers", "num_mtp_layers", allow_zero=True, limit=MAX_LAYERS)
                             if v3 else 0)
    return out


def _parse_gemma(r: _Reader) -> dict:
    # Gemma: GeGLU MLP (gate/up/down, bias-free), RMSNorm computed as (1 + w) (same parameter
    # count), embeddings scaled by sqrt(hidden) (a buffer, not a parameter); q/k/v/o biases follow
    # attention_bias.
    bias = r.bool("attention_bias")
    return _decoder_common(r, qkv_bias=bias, out_bias=bias, mlp_bias=False)


def _parse_gemma2(r: _Reader) -> dict:
    # Gemma 2: four RMSNorms per layer (input, post-attention, pre- and post-feedforward); sliding
    # windows and logit soft-capping change neither parameters nor matmuls.
    out = _parse_gemma(r)
    out["norms_per_layer"] = 4
    return out


def _parse_gemma3_text(r: _Reader) -> dict:
    out = _parse_gemma2(r)
    out["qk_norm"] = True  # q_norm / k_norm: RMSNorm over one head (head_dim)
    return out


def _parse_phi3(r: _Reader) -> dict:
    # Phi-3: fused qkv_proj and gate_up_proj, no biases: the same weights as separate projections.
    out = _decoder_common(r, qkv_bias=False, out_bias=False, mlp_bias=False)
    original = r.int("original_max_position_embeddings")
    out["default_seq_len"] = min(original, out["max_position_embeddings"])
    return out


def _parse_olmo(r: _Reader) -> dict:
    # OLMo 1: LayerNorm without weight or bias (OlmoLayerNorm), everywhere.
    bias = r.bool("attention_bias")
    return _decoder_common(r, qkv_bias=bias, out_bias=bias, mlp_bias=False, norm="nonparametric")


def _parse_olmo2(r: _Reader) -> dict:
    # OLMo 2: RMSNorm after attention and after the MLP (two per layer) and q/k norms over the full
    # projections (q_norm: heads * head_dim, k_norm: kv_heads * head_dim).
    bias = r.bool("attention_bias")
    out = _decoder_common(r, qkv_bias=bias, out_bias=bias, mlp_bias=False)
    out.update(qk_norm=True, qk_norm_full_width=True)
    return out


def _parse_starcoder2(r: _Reader) -> dict:
    # StarCoder2: GELU MLP c_fc / c_proj, LayerNorm (weight and bias), use_bias on every projection.
    bias = r.bool("use_bias")
    return _decoder_common(r, qkv_bias=bias, out_bias=bias, mlp_bias=bias, gated=False, norm="layernorm")


def _parse_nemotron(r: _Reader) -> dict:
    # Nemotron(-4): squared-ReLU MLP up_proj / down_proj (not gated), LayerNorm1P (weight and bias),
    # untied output layer; GQA and head_dim as Llama reads them.
    bias = r.bool("attention_bias")
    return {**_decoder_common(r, qkv_bias=bias, out_bias=bias, mlp_bias=r.bool("mlp_bias"), gated=False,
                              norm="layernorm"),
            "num_kv_heads": r.int("num_key_value_heads")}  # no default: see REQUIRED_KEYS


def _parse_gpt_neox(r: _Reader) -> dict:
    # GPT-NeoX / Pythia: fused query_key_value and dense carry attention_bias; the MLP always has
    # biases; LayerNorms; parallel residual and partial rotary change no shape.
    hidden = r.int("hidden_size")
    heads = r.int("num_attention_heads")
    bias = r.bool("attention_bias")
    max_pos = r.int("max_position_embeddings")
    return dict(
        num_layers=r.int("num_hidden_layers", limit=MAX_LAYERS), hidden_size=hidden, num_heads=heads,
        num_kv_heads=heads, head_dim=_head_dim(r, hidden, heads, key=None), ffn_size=r.int("intermediate_size"),
        vocab_size=r.int("vocab_size"), gated_ffn=False, tie_embeddings=r.bool("tie_word_embeddings"),
        position_embedding="rotary", max_position_embeddings=max_pos,
        default_seq_len=_rope_original_length(r.cfg) or max_pos, qkv_bias=bias, attn_out_bias=bias,
        mlp_bias=True, norm="layernorm",
    )


def _parse_falcon(r: _Reader) -> dict:
    # modeling_falcon.py: query_key_value is (heads + 2 kv_heads) * head_dim wide for the new decoder
    # architecture, hidden + 2 head_dim for the old multi-query one, 3 * hidden otherwise; every
    # linear follows `bias`; LayerNorms: two per layer unless the block is parallel with one norm.
    hidden = r.int("n_embed") if r.has("n_embed") else r.int("hidden_size")
    heads = r.int("num_attention_heads")
    head_dim = _head_dim(r, hidden, heads, key=None)
    new = r.bool("new_decoder_architecture")
    if new:
        kv_heads = r.int("num_kv_heads", nullable=True) or heads
    else:
        kv_heads = 1 if r.bool("multi_query") else heads
    num_ln = r.int("num_ln_in_parallel_attn", nullable=True)
    if num_ln is None and new:
        num_ln = 2
    norms = 1 if r.bool("parallel_attn") and num_ln != 2 else 2
    bias = r.bool("bias")
    max_pos = r.int("max_position_embeddings")
    return dict(
        num_layers=r.int("num_hidden_layers", limit=MAX_LAYERS), hidden_size=hidden, num_heads=heads,
        num_kv_heads=kv_heads, head_dim=head_dim, ffn_size=r.int("ffn_hidden_size", nullable=True) or 4 * hidden,
        vocab_size=r.int("vocab_size"), gated_ffn=False, tie_embeddings=r.bool("tie_word_embeddings"),
        position_embedding="none" if r.bool("alibi") else "rotary", max_position_embeddings=max_pos,
        default_seq_len=_rope_original_length(r.cfg) or max_pos, qkv_bias=bias, attn_out_bias=bias,
        mlp_bias=bias, norm="layernorm", norms_per_layer=norms,
    )


def _parse_gpt2(r: _Reader) -> dict:
    hidden = r.int("n_embd")
    heads = r.int("n_head")
    if r.bool("add_cross_attention"):
        raise r.error("add_cross_attention", "cross-attention GPT-2 variants are not supported")
    max_pos = r.int("n_positions")
    return dict(
        num_layers=r.int("n_layer", limit=MAX_LAYERS), hidden_size=hidden, num_heads=heads, num_kv_heads=heads,
        head_dim=_head_dim(r, hidden, heads, key=None, hidden_key="n_embd", heads_key="n_head"),
        ffn_size=r.int("n_inner", nullable=True) or 4 * hidden, vocab_size=r.int("vocab_size"),
        gated_ffn=False, tie_embeddings=r.bool("tie_word_embeddings"), position_embedding="learned",
        max_position_embeddings=max_pos, default_seq_len=max_pos, qkv_bias=True, attn_out_bias=True,
        mlp_bias=True, norm="layernorm", final_norm=True,
    )


def _parse_bert(r: _Reader) -> dict:
    hidden = r.int("hidden_size")
    heads = r.int("num_attention_heads")
    kind = r.raw("position_embedding_type")
    if kind != "absolute":
        raise r.error("position_embedding_type", f"only 'absolute' is supported, got {_short(kind)}")
    if r.bool("add_cross_attention"):
        raise r.error("add_cross_attention", "a BERT decoder with cross-attention is not supported: its "
                                             "cross-attention weights and FLOPs depend on the encoder it reads")
    max_pos = r.int("max_position_embeddings")
    return dict(
        num_layers=r.int("num_hidden_layers", limit=MAX_LAYERS), hidden_size=hidden, num_heads=heads,
        num_kv_heads=heads, head_dim=_head_dim(r, hidden, heads, key=None), ffn_size=r.int("intermediate_size"),
        vocab_size=r.int("vocab_size"), gated_ffn=False,
        # BertModel has no output head; the masked-LM decoder (opt-in) is tied unless this is false.
        tie_embeddings=True, mlm_decoder_untied=not r.bool("tie_word_embeddings"), position_embedding="learned",
        max_position_embeddings=max_pos, default_seq_len=max_pos, qkv_bias=True, attn_out_bias=True,
        mlp_bias=True, norm="layernorm", embedding_norm=True, final_norm=False,
        type_vocab_size=r.int("type_vocab_size", allow_zero=True), pooler=True, lm_head=False,
        causal=r.bool("is_decoder"),  # is_decoder: causal self-attention (BertLMHeadModel), same weights
    )


_PARSERS = {
    "llama": _parse_llama, "mistral": _parse_mistral, "mixtral": _parse_mixtral, "qwen2": _parse_qwen2,
    "qwen3": _parse_qwen3, "qwen2_moe": _parse_qwen2_moe, "qwen3_moe": _parse_qwen3_moe,
    "deepseek_v2": _parse_deepseek, "deepseek_v3": _parse_deepseek, "gemma": _parse_gemma,
    "gemma2": _parse_gemma2, "gemma3_text": _parse_gemma3_text, "phi3": _parse_phi3, "olmo": _parse_olmo,
    "olmo2": _parse_olmo2, "granite": _parse_llama, "starcoder2": _parse_starcoder2, "nemotron": _parse_nemotron,
    "gpt_neox": _parse_gpt_neox, "falcon": _parse_falcon, "gpt2": _parse_gpt2, "bert": _parse_bert,
}
assert set(_PARSERS) == set(SUPPORTED_MODEL_TYPES)


def from_hf_config(config: Mapping[str, Any], *, name: str | None = None, source: str = "config.json",
                   mlm_head: bool = False, pooler: bool | None = None) -> Architecture:
    """Build an :class:`Architecture` from a Hugging Face ``config.json`` dict.

    Keys starting with ``_`` (such as our ``_source``) are ignored. ``name`` defaults to the
    config's ``_name_or_path`` or its ``model_type``. ``source`` names the file in error messages.
    Missing keys take transformers' defaults for the model_type (see the module docstring).
    BERT: the count is ``BertModel`` with its pooler; ``mlm_head=True`` adds the masked-LM head
    (transform dense + LayerNorm + a decoder tied to the word embeddings unless
    ``tie_word_embeddings`` is false, with its own bias). ``BertForMaskedLM`` itself has no pooler:
    ``pooler=False`` drops it (``mlm_head=True, pooler=False`` is exactly ``BertForMaskedLM``).
    Unknown ``model_type`` raises :class:`CatalogError` naming the file and field.
    """
    source = _display(source)
    if not isinstance(config, Mapping):
        raise CatalogError(source, None, None, "must be a JSON object (a Hugging Face config.json)")
    model_type = config.get("model_type")
    if model_type is None:
        raise CatalogError(source, None, "model_type", "is required (the architecture family, e.g. 'llama')")
    if not isinstance(model_type, str):
        raise CatalogError(source, None, "model_type", f"must be a string, got {_short(model_type)}")
    if model_type in _REFUSED_MODEL_TYPES:
        raise CatalogError(source, None, "model_type", f"{model_type!r}: {_REFUSED_MODEL_TYPES[model_type]}")
    if model_type not in _PARSERS:
        raise CatalogError(source, None, "model_type",
                           f"unsupported model_type {_short(model_type)}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    reader = _Reader(config, source, model_type)
    try:
        fields_ = _PARSERS[model_type](reader)
    except InputError as exc:  # a record (MoE, MLA) built by the parser refused its fields
        raise CatalogError(source, model_type, None, str(exc)) from None
    if mlm_head:
        if model_type != "bert":
            raise InputError("mlm_head applies to BERT-style encoders only")
        fields_["mlm_head"] = True
    if pooler is not None:
        if model_type != "bert":
            raise InputError("pooler applies to BERT-style encoders only")
        fields_["pooler"] = bool(pooler)
    label = name or config.get("_name_or_path") or model_type
    if not isinstance(label, str):
        label = model_type
    try:
        return Architecture(name=label, model_type=model_type, **fields_)
    except InputError as exc:
        raise CatalogError(source, model_type, None, str(exc)) from None


# -- finding and reading config files ----------------------------------------------------------

#: A config.json is a few kilobytes; anything past this is not one (and is not read into memory).
MAX_CONFIG_BYTES = 16 * 2**20

# A Hub repository id: owner/name, each of letters, digits, '-', '_', '.', at most 96 characters,
# neither with '--' or '..' (huggingface_hub's validate_repo_id).
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_COMMIT = re.compile(r"[0-9A-Za-z_.-]{1,128}")


def _display(path: object) -> str:
    """A file name for a one-line message: control characters escaped, very long names shortened."""
    text = str(path)
    if not text.isprintable():
        text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= 240 else f"{text[:150]}...{text[-80:]}"


def _is_repo_id(text: str) -> bool:
    return bool(_REPO_ID.fullmatch(text)) and "--" not in text and ".." not in text and not text.endswith(".json")


def hf_hub_cache() -> tuple[Path, str]:
    """(the local Hugging Face hub cache, which setting named it), as huggingface_hub finds it:
    ``HF_HUB_CACHE`` (or its old name ``HUGGINGFACE_HUB_CACHE``), else ``HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser(), variable
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub", "HF_HOME"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "huggingface" / "hub", "XDG_CACHE_HOME"
    return Path("~/.cache/huggingface/hub").expanduser(), "the default"


def _cached_config(repo_id: str) -> Path:
    """``config.json`` of ``repo_id`` in the local hub cache: the snapshot refs/main points to, else
    the newest snapshot holding one. InputError saying where it looked when there is none."""
    cache, setting = hf_hub_cache()
    org, name = repo_id.split("/")
    repo = cache / f"models--{org}--{name}"
    snapshots = repo / "snapshots"
    try:
        ref = repo / "refs" / "main"
        if ref.is_file():
            commit = ref.read_text(encoding="ascii", errors="replace").strip()
            if _COMMIT.fullmatch(commit) and commit not in (".", ".."):
                candidate = snapshots / commit / "config.json"
                if candidate.is_file():
                    return candidate
        found = []
        if snapshots.is_dir():
            for snapshot in snapshots.iterdir():
                candidate = snapshot / "config.json"
                if candidate.is_file():
                    found.append((candidate.stat().st_mtime, snapshot.name, candidate))
    except OSError as exc:
        raise InputError(f"cannot read the Hugging Face cache at {_display(repo)}: "
                         f"{exc.strerror or exc}") from None
    if found:
        return max(found)[2]
    raise InputError(f"{repo_id!r} is not a file, and the local Hugging Face cache ({setting}) has no "
                     f"{_display(snapshots)}/*/config.json; gpucost never downloads: fetch it with "
                     f"`huggingface-cli download {repo_id} config.json` or give the file's path")


def resolve_config_path(text: str | os.PathLike) -> Path:
    """Where the config.json named by ``text`` is: a file (as given), a directory holding
    ``config.json`` (a downloaded snapshot), or an ``org/name`` Hub id looked up offline in the local
    Hugging Face cache (:func:`hf_hub_cache`; ``models--org--name/snapshots/*/config.json``, the
    snapshot ``refs/main`` points to, else the newest). Never touches the network; InputError,
    naming the file or where it looked, when nothing is there."""
    try:
        raw = os.fspath(text)
    except TypeError:
        raise InputError(f"a config path or an org/name id is required, got {_short(text)}") from None
    if isinstance(raw, bytes) or not raw:
        raise InputError(f"a config path or an org/name id is required, got {_short(raw)}")
    path = Path(raw).expanduser()
    try:  # os.stat itself: pathlib's is_dir()/exists() hide some errors (all of them from Python 3.13)
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, EACCES, ELOOP, an embedded NUL, ...
        raise InputError(f"cannot read config file {_display(path)}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    if mode is not None and stat.S_ISDIR(mode):
        candidate = path / "config.json"
        if not candidate.is_file():
            raise InputError(f"no config.json in directory {_display(path)}")
        return candidate
    if mode is not None:
        return path
    if _is_repo_id(raw):
        return _cached_config(raw)
    raise InputError(f"config file not found: {_display(path)}")


def model_name_for(text: str | os.PathLike, path: Path) -> str:
    """The model's name for a config found from ``text`` at ``path``: the id's name for
    ``org/name``, the snapshot's repository name in a hub cache, the directory of a
    ``config.json``, else the file's stem (``llama-3.1-8b.json`` -> ``llama-3.1-8b``)."""
    raw = os.fspath(text)
    if isinstance(raw, str) and _is_repo_id(raw) and not Path(raw).exists():
        return raw.split("/")[1]
    if path.name != "config.json":
        return path.stem or path.name
    parent = path.absolute().parent
    if parent.parent.name == "snapshots" and parent.parent.parent.name.startswith("models--"):
        return parent.parent.parent.name.split("--", 2)[-1]
    return parent.name or "config"


def _read_json(path: Path) -> Any:
    shown = _display(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"config file not found: {shown}") from None
    except IsADirectoryError:
        raise InputError(f"cannot read config file {shown}: it is a directory") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read config file {shown}: {getattr(exc, 'strerror', None) or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise CatalogError(shown, None, None, f"is over {MAX_CONFIG_BYTES // 2**20} MiB: not a config.json")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read config file {shown}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(shown, None, None, f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except RecursionError:
        raise CatalogError(shown, None, None, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise CatalogError(shown, None, None, f"invalid JSON: {str(exc).split(';')[0]}") from None


def load_hf_config(path: str | Path, *, name: str | None = None, mlm_head: bool = False,
                   pooler: bool | None = None) -> Architecture:
    """Read a Hugging Face ``config.json`` into an :class:`Architecture`, from a file, a snapshot
    directory or an ``org/name`` id in the local Hugging Face cache (:func:`resolve_config_path`;
    never the network). The model is named ``name``, else after the id or the config's directory
    (:func:`model_name_for`)."""
    found = resolve_config_path(path)
    data = _read_json(found)
    return from_hf_config(data, name=name or model_name_for(path, found), source=str(found), mlm_head=mlm_head,
                          pooler=pooler)


def architectures_dir(directory: str | Path | None = None) -> Path:
    """The folder of architecture files: ``<catalog>/architectures`` (see ``catalog.catalog_dir``)."""
    if directory is not None:
        return Path(directory)
    from estimator.catalog.core import load_catalog

    return load_catalog().directory / "architectures"


def load_architecture(model_id: str, directory: str | Path | None = None) -> Architecture | None:
    """The architecture in ``<directory>/<model_id>.json``, or None when there is no such file."""
    path = architectures_dir(directory) / f"{model_id}.json"
    if not path.is_file():
        return None
    return load_hf_config(path, name=model_id)


def architecture_for_model(model: Any, directory: str | Path | None = None) -> Architecture | None:
    """The architecture of a catalog model: its inline ``architecture`` mapping when the catalog
    attached one, else ``catalogs/architectures/<model.id>.json``, else None (size-only model)."""
    inline = getattr(model, "architecture", None)
    if inline:
        return from_hf_config(dict(inline), name=model.id, source=f"architectures/{model.id}.json")
    return load_architecture(model.id, directory)


__all__ = ["SUPPORTED_MODEL_TYPES", "TRANSFORMERS_VERSION", "TRANSFORMERS_DEFAULTS", "REQUIRED_KEYS", "DERIVED",
           "NOT_CLASS_FIELDS", "MAX_CONFIG_BYTES", "from_hf_config", "load_hf_config", "resolve_config_path",
           "model_name_for", "hf_hub_cache", "load_architecture", "architecture_for_model", "architectures_dir"]
