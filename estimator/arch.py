"""Transformer architectures: the record, Hugging Face ``config.json`` parsing, exact parameter counts.

An :class:`Architecture` holds the shape of a transformer: layers, widths, heads, FFN, vocabulary,
embeddings, biases, norms, and optionally a mixture-of-experts (:class:`MoE`), multi-head latent
attention (:class:`MLA`) and multi-token-prediction modules. :func:`from_hf_config` reads the
``config.json`` of the Llama, Mistral, Mixtral, Qwen2/Qwen3, DeepSeek-V2/V3, GPT-2 and BERT families.

:func:`count_params` counts parameters exactly as the reference implementations build them
(Hugging Face ``transformers`` modeling files; for DeepSeek-V3 also the checkpoint, which stores the
router's score-correction bias): total, active per token (MoE), and a per-component breakdown.
Pure Python; no torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import CatalogError, InputError

POSITION_EMBEDDINGS = ("rotary", "learned")
NORMS = ("rmsnorm", "layernorm")
SUPPORTED_MODEL_TYPES = (
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "deepseek_v2", "deepseek_v3", "gpt2", "bert",
)


def _check_positive(owner: str, **values: int | None) -> None:
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{owner}.{name} must be a positive integer, got {value!r}")


def _check_non_negative(owner: str, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{owner}.{name} must be a non-negative integer, got {value!r}")


# -- records -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoE:
    """A mixture-of-experts FFN (Mixtral, DeepSeekMoE).

    ``num_experts`` routed experts per MoE layer, of which ``experts_per_token`` (top-k) run for each
    token; ``num_shared_experts`` always run (DeepSeek), with a combined width ``shared_ffn_size``.
    The first ``first_k_dense`` layers (DeepSeek's ``first_k_dense_replace``) use the dense FFN of
    width ``Architecture.ffn_size``; after them every ``layer_freq``-th layer is an MoE layer.
    The router is a bias-free ``hidden x num_experts`` linear; ``router_bias`` adds DeepSeek-V3's
    per-expert score-correction bias (stored in the checkpoint).
    """

    num_experts: int
    experts_per_token: int
    expert_ffn_size: int
    num_shared_experts: int = 0
    shared_ffn_size: int = 0
    first_k_dense: int = 0
    layer_freq: int = 1
    router_bias: bool = False

    def __post_init__(self) -> None:
        _check_positive("moe", num_experts=self.num_experts, experts_per_token=self.experts_per_token,
                        expert_ffn_size=self.expert_ffn_size, layer_freq=self.layer_freq)
        _check_non_negative("moe", num_shared_experts=self.num_shared_experts,
                            shared_ffn_size=self.shared_ffn_size, first_k_dense=self.first_k_dense)
        if self.experts_per_token > self.num_experts:
            raise InputError(f"moe.experts_per_token ({self.experts_per_token}) must not exceed "
                             f"moe.num_experts ({self.num_experts})")
        if (self.num_shared_experts == 0) != (self.shared_ffn_size == 0):
            raise InputError("moe.shared_ffn_size must be positive exactly when moe.num_shared_experts is")

    def is_moe_layer(self, index: int) -> bool:
        """Whether layer ``index`` (0-based) has the MoE FFN (DeepSeek's rule)."""
        return index >= self.first_k_dense and index % self.layer_freq == 0


@dataclass(frozen=True, slots=True)
class MLA:
    """Multi-head latent attention (DeepSeek-V2/V3, arXiv 2405.04434 section 2.1).

    Queries go through a low-rank ``q_lora_rank`` bottleneck (None: a full ``hidden -> heads*qk``
    projection); keys and values share a ``kv_lora_rank`` latent plus a ``qk_rope_head_dim`` rotary
    key shared by all heads. Per head: ``qk_nope_head_dim + qk_rope_head_dim`` for q.k, ``v_head_dim``
    for values.
    """

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    def __post_init__(self) -> None:
        _check_positive("mla", q_lora_rank=self.q_lora_rank, kv_lora_rank=self.kv_lora_rank,
                        qk_nope_head_dim=self.qk_nope_head_dim, qk_rope_head_dim=self.qk_rope_head_dim,
                        v_head_dim=self.v_head_dim)

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim


@dataclass(frozen=True, slots=True)
class Architecture:
    """The shape of a transformer, enough to count its parameters, FLOPs and activation memory.

    Widths are in elements. ``ffn_size`` is the dense FFN width (SwiGLU when ``gated_ffn``: three
    matrices gate/up/down; otherwise two). ``position_embedding`` is ``"rotary"`` (no parameters) or
    ``"learned"`` (a ``max_position_embeddings x hidden`` table). ``norm`` is ``"rmsnorm"`` (weight
    only) or ``"layernorm"`` (weight and bias); every layer has two. ``lm_head``: the model ends in a
    vocabulary projection (shared with the input embedding when ``tie_embeddings``); an encoder
    such as BERT has none unless ``mlm_head``. ``num_mtp_layers`` DeepSeek multi-token-prediction
    modules are counted apart from the headline total.
    """

    name: str
    model_type: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_size: int
    vocab_size: int
    gated_ffn: bool = True
    tie_embeddings: bool = False
    position_embedding: str = "rotary"
    max_position_embeddings: int | None = None
    default_seq_len: int | None = None
    qkv_bias: bool = False
    attn_out_bias: bool = False
    mlp_bias: bool = False
    norm: str = "rmsnorm"
    qk_norm: bool = False
    embedding_norm: bool = False
    final_norm: bool = True
    type_vocab_size: int = 0
    pooler: bool = False
    lm_head: bool = True
    mlm_head: bool = False
    causal: bool = True
    moe: MoE | None = None
    mla: MLA | None = None
    num_mtp_layers: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError("architecture.name must be a non-empty string")
        _check_positive("architecture", num_layers=self.num_layers, hidden_size=self.hidden_size,
                        num_heads=self.num_heads, num_kv_heads=self.num_kv_heads, head_dim=self.head_dim,
                        ffn_size=self.ffn_size, vocab_size=self.vocab_size,
                        max_position_embeddings=self.max_position_embeddings,
                        default_seq_len=self.default_seq_len)
        _check_non_negative("architecture", type_vocab_size=self.type_vocab_size,
                            num_mtp_layers=self.num_mtp_layers)
        if self.num_heads % self.num_kv_heads:
            raise InputError(f"architecture.num_kv_heads ({self.num_kv_heads}) must divide "
                             f"architecture.num_heads ({self.num_heads})")
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise InputError(f"architecture.position_embedding must be one of {', '.join(POSITION_EMBEDDINGS)}, "
                             f"got {self.position_embedding!r}")
        if self.position_embedding == "learned" and self.max_position_embeddings is None:
            raise InputError("architecture.max_position_embeddings is required for learned position embeddings")
        if self.norm not in NORMS:
            raise InputError(f"architecture.norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.mlm_head and self.lm_head:
            raise InputError("architecture.mlm_head and architecture.lm_head are exclusive")
        if self.moe is not None and not isinstance(self.moe, MoE):
            raise InputError("architecture.moe must be an MoE record or None")
        if self.mla is not None and not isinstance(self.mla, MLA):
            raise InputError("architecture.mla must be an MLA record or None")
        if self.moe is not None and self.moe.first_k_dense > self.num_layers:
            raise InputError(f"moe.first_k_dense ({self.moe.first_k_dense}) exceeds "
                             f"architecture.num_layers ({self.num_layers})")

    # -- derived shapes --

    @property
    def q_dim(self) -> int:
        """Width of all query heads together (``num_heads * head_dim``; MLA: ``heads * qk_head_dim``)."""
        return self.num_heads * (self.mla.qk_head_dim if self.mla else self.head_dim)

    @property
    def kv_dim(self) -> int:
        """Width of all key (or value) heads together, GQA included (``num_kv_heads * head_dim``)."""
        return self.num_kv_heads * self.head_dim

    @property
    def num_moe_layers(self) -> int:
        if self.moe is None:
            return 0
        return sum(self.moe.is_moe_layer(i) for i in range(self.num_layers))

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    def check_seq_len(self, seq_len: int) -> None:
        """Raise InputError unless ``seq_len`` is a positive integer the model can take (learned
        position tables stop at ``max_position_embeddings``; rotary models can be extended)."""
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len <= 0:
            raise InputError(f"seq_len must be a positive integer, got {seq_len!r}")
        if self.position_embedding == "learned" and self.max_position_embeddings is not None \
                and seq_len > self.max_position_embeddings:
            raise InputError(f"seq_len {seq_len} exceeds {self.name}'s {self.max_position_embeddings} learned positions")


# -- parsing Hugging Face config.json ------------------------------------------------------------


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


# -- parameter counting --------------------------------------------------------------------------


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


def _norm_params(arch: Architecture, width: int) -> int:
    return width * (2 if arch.norm == "layernorm" else 1)


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
    qk_norm = 2 * _norm_params(arch, arch.head_dim) if arch.qk_norm else 0
    return qkv + out + qk_norm


def _layer_components(arch: Architecture, moe_layer: bool) -> tuple[dict[str, int], dict[str, int]]:
    """(total, active) parameters of one transformer layer by component."""
    total = {"attention": _attention_params(arch), "norms": 2 * _norm_params(arch, arch.hidden_size)}
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
        total["shared_experts"] = active["shared_experts"] = _ffn_params(arch, moe.shared_ffn_size, False)
    router = arch.hidden_size * moe.num_experts + (moe.num_experts if moe.router_bias else 0)
    total["router"] = active["router"] = router
    return total, active


def _add(into: dict[str, int], more: Mapping[str, int], times: int = 1) -> None:
    if times == 0:
        return
    for key, value in more.items():
        into[key] = into.get(key, 0) + value * times


def count_params(arch: Architecture) -> ParamCount:
    """Count parameters exactly as the reference implementation builds the model.

    Components: ``embedding`` (token, learned position and token-type tables, BERT's embedding
    LayerNorm), ``attention`` (q/k/v/o projections and biases; MLA's down/up projections and latent
    norms; Qwen3's q/k norms), ``mlp`` (dense FFN layers), ``experts`` (routed), ``shared_experts``,
    ``router``, ``norms`` (two per layer plus the final norm), ``output_head`` (an untied LM head;
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


__all__ = [
    "Architecture", "MoE", "MLA", "ParamCount", "SUPPORTED_MODEL_TYPES", "from_hf_config", "load_hf_config",
    "load_architecture", "architecture_for_model", "architectures_dir", "count_params",
]
