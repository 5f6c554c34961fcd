"""Reading Hugging Face ``config.json`` files into :class:`~estimator.arch.Architecture` records.

:func:`from_hf_config` reads the ``config.json`` of the Llama, Mistral, Mixtral, Qwen2/Qwen3,
DeepSeek-V2/V3, GPT-2 and BERT families; :func:`load_hf_config` reads one from disk (never the
network); :func:`architecture_for_model` finds a catalog model's architecture. Errors name the
file and the field. Pure Python; no torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .arch import MLA, Architecture, MoE
from .errors import CatalogError, InputError

SUPPORTED_MODEL_TYPES = (
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "deepseek_v2", "deepseek_v3", "gpt2", "bert",
)


def _rope_original_length(cfg: Mapping[str, Any]) -> int | None:
    for key in ("rope_scaling", "rope_parameters"):
        scaling = cfg.get(key)
        if isinstance(scaling, Mapping) and isinstance(scaling.get("original_max_position_embeddings"), int):
            return scaling["original_max_position_embeddings"]
    return None


class _Reader:
    """Reads typed fields from a config dict; errors name the file and the field."""

    def __init__(self, cfg: Mapping[str, Any], source: str):
        self.cfg, self.source = cfg, source

    def error(self, key: str, problem: str) -> CatalogError:
        return CatalogError(self.source, self.cfg.get("model_type"), key, problem)

    def int(self, key: str, default: Any = ..., *, allow_zero: bool = False) -> Any:
        value = self.cfg.get(key, None)
        if value is None:
            if default is ...:
                raise self.error(key, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (value == 0 and not allow_zero):
            raise self.error(key, f"must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.cfg.get(key, None)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value


def _decoder_common(r: _Reader, *, qkv_bias: bool, out_bias: bool, mlp_bias: bool, tie_default: bool) -> dict:
    hidden = r.int("hidden_size")
    heads = r.int("num_attention_heads")
    head_dim = r.int("head_dim", None)
    if head_dim is None:
        if hidden % heads:
            raise r.error("head_dim", f"is required when hidden_size ({hidden}) is not a multiple of "
                                      f"num_attention_heads ({heads})")
        head_dim = hidden // heads
    max_pos = r.int("max_position_embeddings", None)
    return dict(
        num_layers=r.int("num_hidden_layers"), hidden_size=hidden, num_heads=heads,
        num_kv_heads=r.int("num_key_value_heads", heads), head_dim=head_dim,
        ffn_size=r.int("intermediate_size"), vocab_size=r.int("vocab_size"), gated_ffn=True,
        tie_embeddings=r.bool("tie_word_embeddings", tie_default), position_embedding="rotary",
        max_position_embeddings=max_pos, default_seq_len=_rope_original_length(r.cfg) or max_pos,
        qkv_bias=qkv_bias, attn_out_bias=out_bias, mlp_bias=mlp_bias, norm="rmsnorm",
    )


def _parse_llama(r: _Reader) -> dict:
    bias = r.bool("attention_bias", False)
    return _decoder_common(r, qkv_bias=bias, out_bias=bias, mlp_bias=r.bool("mlp_bias", False), tie_default=False)


def _parse_mistral(r: _Reader) -> dict:
    return _decoder_common(r, qkv_bias=False, out_bias=False, mlp_bias=False, tie_default=False)


def _parse_mixtral(r: _Reader) -> dict:
    out = _parse_mistral(r)
    out["moe"] = MoE(num_experts=r.int("num_local_experts"), experts_per_token=r.int("num_experts_per_tok"),
                     expert_ffn_size=r.int("intermediate_size"))
    return out


def _parse_qwen2(r: _Reader) -> dict:
    # Qwen2: q, k, v projections carry a bias, the output projection does not (modeling_qwen2.py).
    return _decoder_common(r, qkv_bias=True, out_bias=False, mlp_bias=False, tie_default=False)


def _parse_qwen3(r: _Reader) -> dict:
    bias = r.bool("attention_bias", False)
    out = _decoder_common(r, qkv_bias=bias, out_bias=bias, mlp_bias=False, tie_default=False)
    out["qk_norm"] = True  # per-head RMSNorm on q and k (modeling_qwen3.py)
    return out


def _parse_deepseek(r: _Reader) -> dict:
    bias = r.bool("attention_bias", False)
    out = _decoder_common(r, qkv_bias=bias, out_bias=bias, mlp_bias=False, tie_default=False)
    out["head_dim"] = r.int("v_head_dim")
    out["num_kv_heads"] = out["num_heads"]  # MLA: every head has its own (decompressed) k and v
    out["mla"] = MLA(q_lora_rank=r.int("q_lora_rank", None), kv_lora_rank=r.int("kv_lora_rank"),
                     qk_nope_head_dim=r.int("qk_nope_head_dim"), qk_rope_head_dim=r.int("qk_rope_head_dim"),
                     v_head_dim=r.int("v_head_dim"))
    routed = r.int("n_routed_experts", None)
    if routed:
        shared = r.int("n_shared_experts", 0, allow_zero=True)
        expert_ffn = r.int("moe_intermediate_size")
        out["moe"] = MoE(
            num_experts=routed, experts_per_token=r.int("num_experts_per_tok"), expert_ffn_size=expert_ffn,
            num_shared_experts=shared, shared_ffn_size=shared * expert_ffn,
            first_k_dense=r.int("first_k_dense_replace", 0, allow_zero=True), layer_freq=r.int("moe_layer_freq", 1),
            # DeepSeek-V3's aux-loss-free balancing adds a per-expert bias (e_score_correction_bias).
            router_bias=r.cfg.get("topk_method", "noaux_tc" if r.cfg.get("model_type") == "deepseek_v3" else None)
            == "noaux_tc",
        )
    out["num_mtp_layers"] = r.int("num_nextn_predict_layers", 0, allow_zero=True)
    return out


def _parse_gpt2(r: _Reader) -> dict:
    hidden = r.int("n_embd")
    heads = r.int("n_head")
    if r.cfg.get("add_cross_attention"):
        raise r.error("add_cross_attention", "cross-attention GPT-2 variants are not supported")
    max_pos = r.int("n_positions")
    return dict(
        num_layers=r.int("n_layer"), hidden_size=hidden, num_heads=heads, num_kv_heads=heads,
        head_dim=hidden // heads, ffn_size=r.int("n_inner", None) or 4 * hidden, vocab_size=r.int("vocab_size"),
        gated_ffn=False, tie_embeddings=r.bool("tie_word_embeddings", True), position_embedding="learned",
        max_position_embeddings=max_pos, default_seq_len=max_pos, qkv_bias=True, attn_out_bias=True,
        mlp_bias=True, norm="layernorm", final_norm=True,
    )


def _parse_bert(r: _Reader) -> dict:
    hidden = r.int("hidden_size")
    heads = r.int("num_attention_heads")
    kind = r.cfg.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise r.error("position_embedding_type", f"only 'absolute' is supported, got {kind!r}")
    max_pos = r.int("max_position_embeddings")
    return dict(
        num_layers=r.int("num_hidden_layers"), hidden_size=hidden, num_heads=heads, num_kv_heads=heads,
        head_dim=hidden // heads, ffn_size=r.int("intermediate_size"), vocab_size=r.int("vocab_size"),
        gated_ffn=False, tie_embeddings=True, position_embedding="learned", max_position_embeddings=max_pos,
        default_seq_len=max_pos, qkv_bias=True, attn_out_bias=True, mlp_bias=True, norm="layernorm",
        embedding_norm=True, final_norm=False, type_vocab_size=r.int("type_vocab_size", 2, allow_zero=True),
        pooler=True, lm_head=False, causal=False,
    )


_PARSERS = {
    "llama": _parse_llama, "mistral": _parse_mistral, "mixtral": _parse_mixtral, "qwen2": _parse_qwen2,
    "qwen3": _parse_qwen3, "deepseek_v2": _parse_deepseek, "deepseek_v3": _parse_deepseek,
    "gpt2": _parse_gpt2, "bert": _parse_bert,
}


def from_hf_config(config: Mapping[str, Any], *, name: str | None = None, source: str = "config.json",
                   mlm_head: bool = False) -> Architecture:
    """Build an :class:`Architecture` from a Hugging Face ``config.json`` dict.

    Keys starting with ``_`` (such as our ``_source``) are ignored. ``name`` defaults to the
    config's ``_name_or_path`` or its ``model_type``. ``source`` names the file in error messages.
    BERT: the count is ``BertModel`` with its pooler; ``mlm_head=True`` adds the masked-LM head
    (``BertForMaskedLM``: transform dense + LayerNorm + a decoder tied to the word embeddings, with
    its own bias). Unknown ``model_type`` raises :class:`CatalogError` naming the file and field.
    """
    if not isinstance(config, Mapping):
        raise CatalogError(source, None, None, "must be a JSON object (a Hugging Face config.json)")
    model_type = config.get("model_type")
    if model_type not in _PARSERS:
        raise CatalogError(source, None, "model_type",
                           f"unsupported model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    reader = _Reader(config, source)
    fields_ = _PARSERS[model_type](reader)
    if mlm_head:
        if model_type != "bert":
            raise InputError("mlm_head applies to BERT-style encoders only")
        fields_["mlm_head"] = True
    label = name or config.get("_name_or_path") or model_type
    try:
        return Architecture(name=str(label), model_type=model_type, **fields_)
    except InputError as exc:
        raise CatalogError(source, model_type, None, str(exc)) from None


def load_hf_config(path: str | Path, *, name: str | None = None, mlm_head: bool = False) -> Architecture:
    """Read a Hugging Face ``config.json`` from disk (never the network) into an :class:`Architecture`."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read config file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(str(path), None, None, f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
    return from_hf_config(data, name=name or path.stem, source=str(path), mlm_head=mlm_head)


def architectures_dir(directory: str | Path | None = None) -> Path:
    """The folder of architecture files: ``<catalog>/architectures`` (see ``catalog.catalog_dir``)."""
    if directory is not None:
        return Path(directory)
    from .catalog import load_catalog

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


__all__ = ["SUPPORTED_MODEL_TYPES", "from_hf_config", "load_hf_config", "load_architecture",
           "architecture_for_model", "architectures_dir"]
