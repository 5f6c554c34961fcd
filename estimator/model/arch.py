"""Transformer architectures: the :class:`Architecture` record and its parts, validated on creation.

An :class:`Architecture` holds the shape of a transformer: layers, widths, heads, FFN, vocabulary,
embeddings, biases, norms, and optionally a mixture-of-experts (:class:`MoE`), multi-head latent
attention (:class:`MLA`) and multi-token-prediction modules. Reading one from a Hugging Face
``config.json`` is :mod:`estimator.model.hf_config`; counting its parameters is :mod:`estimator.model.params`.
Pure Python; no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from estimator.errors import InputError

#: ``none``: no position parameters and no rotary (ALiBi biases the attention scores: Falcon-RW).
POSITION_EMBEDDINGS = ("rotary", "learned", "none")
#: ``rmsnorm``: a weight per channel; ``layernorm``: weight and bias; ``nonparametric``: a LayerNorm
#: without weight or bias (OLMo 1's ``OlmoLayerNorm``), no parameters.
NORMS = ("rmsnorm", "layernorm", "nonparametric")

#: Upper bounds on sizes, far above any published model, so that absurd inputs (1e30 layers) are
#: refused with a clear message instead of hanging or overflowing later.
MAX_LAYERS = 100_000
MAX_SIZE = 2**24


def _check_size(owner: str, name: str, value: int) -> None:
    limit = MAX_LAYERS if name in ("num_layers", "num_mtp_layers", "first_k_dense", "layer_freq",
                                   "layer_offset") else MAX_SIZE
    if value > limit:
        raise InputError(f"{owner}.{name} must be at most {limit:,}, got {_short(value)}")


def _check_positive(owner: str, **values: int | None) -> None:
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{owner}.{name} must be a positive integer, got {_short(value)}")
        _check_size(owner, name, value)


def _check_non_negative(owner: str, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{owner}.{name} must be a non-negative integer, got {_short(value)}")
        _check_size(owner, name, value)


def _check_bool(owner: str, **values: bool) -> None:
    for name, value in values.items():
        if not isinstance(value, bool):
            raise InputError(f"{owner}.{name} must be true or false, got {_short(value)}")


def _short(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters so that an error message stays one short line
    (an integer too long to print, or a structure too deep to print, is described instead)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        return f"a deeply nested {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- records -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoE:
    """A mixture-of-experts FFN (Mixtral, DeepSeekMoE).

    ``num_experts`` routed experts per MoE layer, of which ``experts_per_token`` (top-k) run for each
    token; ``num_shared_experts`` always run (DeepSeek), with a combined width ``shared_ffn_size``.
    The first ``first_k_dense`` layers (DeepSeek's ``first_k_dense_replace``) use the dense FFN of
    width ``Architecture.ffn_size``; after them layer ``i`` is an MoE layer when
    ``i % layer_freq == layer_offset`` (DeepSeek's ``moe_layer_freq``: offset 0; Qwen-MoE's
    ``decoder_sparse_step`` s: ``(i + 1) % s == 0``, offset ``s - 1``), unless ``i`` is one of
    ``dense_layers`` (Qwen-MoE's ``mlp_only_layers``).
    The router is a bias-free ``hidden x num_experts`` linear; ``router_bias`` adds DeepSeek-V3's
    per-expert score-correction bias (stored in the checkpoint). ``shared_expert_gate``: Qwen2-MoE's
    sigmoid gate on the shared expert, a bias-free ``hidden x 1`` linear. ``shared_bias``: the
    shared experts' projections carry biases (transformers' DeepSeek-V2 with ``mlp_bias``).
    """

    num_experts: int
    experts_per_token: int
    expert_ffn_size: int
    num_shared_experts: int = 0
    shared_ffn_size: int = 0
    first_k_dense: int = 0
    layer_freq: int = 1
    router_bias: bool = False
    layer_offset: int = 0
    dense_layers: frozenset[int] = frozenset()
    shared_expert_gate: bool = False
    shared_bias: bool = False

    def __post_init__(self) -> None:
        _check_positive("moe", num_experts=self.num_experts, experts_per_token=self.experts_per_token,
                        expert_ffn_size=self.expert_ffn_size, layer_freq=self.layer_freq)
        _check_non_negative("moe", num_shared_experts=self.num_shared_experts,
                            shared_ffn_size=self.shared_ffn_size, first_k_dense=self.first_k_dense,
                            layer_offset=self.layer_offset)
        _check_bool("moe", router_bias=self.router_bias, shared_expert_gate=self.shared_expert_gate,
                    shared_bias=self.shared_bias)
        if self.experts_per_token > self.num_experts:
            raise InputError(f"moe.experts_per_token ({self.experts_per_token}) must not exceed "
                             f"moe.num_experts ({self.num_experts})")
        if (self.num_shared_experts == 0) != (self.shared_ffn_size == 0):
            raise InputError("moe.shared_ffn_size must be positive exactly when moe.num_shared_experts is")
        if self.layer_offset >= self.layer_freq:
            raise InputError(f"moe.layer_offset ({self.layer_offset}) must be less than "
                             f"moe.layer_freq ({self.layer_freq})")
        if not isinstance(self.dense_layers, frozenset) or any(
                isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in self.dense_layers):
            raise InputError("moe.dense_layers must be a frozenset of non-negative layer indices")
        if self.shared_bias and self.num_shared_experts == 0:
            raise InputError("moe.shared_bias needs shared experts (moe.num_shared_experts > 0)")

    def is_moe_layer(self, index: int) -> bool:
        """Whether layer ``index`` (0-based) has the MoE FFN (see the class docstring)."""
        return (index >= self.first_k_dense and index % self.layer_freq == self.layer_offset
                and index not in self.dense_layers)

    def count_moe_layers(self, num_layers: int) -> int:
        """How many of layers ``0 .. num_layers - 1`` are MoE layers: arithmetic, O(1) in the layer
        count (O(len(dense_layers)) for the exceptions)."""
        start, step, offset = self.first_k_dense, self.layer_freq, self.layer_offset

        def matching(stop: int) -> int:  # i in [0, stop) with i % step == offset
            return 0 if stop <= offset else (stop - offset - 1) // step + 1

        count = max(0, matching(num_layers) - matching(min(start, num_layers)))
        return count - sum(1 for i in self.dense_layers
                           if start <= i < num_layers and i % step == offset)


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
    ``"learned"`` (a ``max_position_embeddings x hidden`` table) or ``"none"`` (ALiBi, Falcon-RW:
    no parameters). ``norm`` is ``"rmsnorm"`` (weight only), ``"layernorm"`` (weight and bias) or
    ``"nonparametric"`` (OLMo 1: neither); each layer has ``norms_per_layer`` of them over the hidden
    width (2; Gemma 2/3: 4; Falcon's parallel block: 1). ``qk_norm``: a norm on queries and keys, over
    one head (Qwen3, Gemma 3) or, with ``qk_norm_full_width``, over all heads' projections (OLMo 2).
    ``lm_head``: the model ends in a vocabulary projection (shared with the input embedding when
    ``tie_embeddings``); an encoder such as BERT has none unless ``mlm_head``, whose decoder is tied
    to the word embeddings unless ``mlm_decoder_untied`` (BERT with ``tie_word_embeddings: false``:
    transformers 5 then unties the decoder's weight and its bias, which adds ``vocab x (hidden + 1)``).
    ``num_mtp_layers`` DeepSeek
    multi-token-prediction modules are counted apart from the headline total.
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
    norms_per_layer: int = 2
    qk_norm_full_width: bool = False
    mlm_decoder_untied: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError("architecture.name must be a non-empty string")
        _check_positive("architecture", num_layers=self.num_layers, hidden_size=self.hidden_size,
                        num_heads=self.num_heads, num_kv_heads=self.num_kv_heads, head_dim=self.head_dim,
                        ffn_size=self.ffn_size, vocab_size=self.vocab_size,
                        max_position_embeddings=self.max_position_embeddings,
                        default_seq_len=self.default_seq_len)
        _check_non_negative("architecture", type_vocab_size=self.type_vocab_size,
                            num_mtp_layers=self.num_mtp_layers, norms_per_layer=self.norms_per_layer)
        _check_bool("architecture", gated_ffn=self.gated_ffn, tie_embeddings=self.tie_embeddings,
                    qkv_bias=self.qkv_bias, attn_out_bias=self.attn_out_bias, mlp_bias=self.mlp_bias,
                    qk_norm=self.qk_norm, embedding_norm=self.embedding_norm, final_norm=self.final_norm,
                    pooler=self.pooler, lm_head=self.lm_head, mlm_head=self.mlm_head, causal=self.causal,
                    qk_norm_full_width=self.qk_norm_full_width, mlm_decoder_untied=self.mlm_decoder_untied)
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
        if self.moe is not None and any(i >= self.num_layers for i in self.moe.dense_layers):
            raise InputError(f"moe.dense_layers holds {max(self.moe.dense_layers)}, not a layer of "
                             f"architecture.num_layers ({self.num_layers})")
        if self.qk_norm_full_width and not self.qk_norm:
            raise InputError("architecture.qk_norm_full_width needs architecture.qk_norm")

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
        return self.moe.count_moe_layers(self.num_layers)

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




__all__ = ["Architecture", "MoE", "MLA", "MAX_LAYERS", "MAX_SIZE", "NORMS", "POSITION_EMBEDDINGS"]
