"""Transformer architectures: the :class:`Architecture` record and its parts, validated on creation.

An :class:`Architecture` holds the shape of a transformer: layers, widths, heads, FFN, vocabulary,
embeddings, biases, norms, and optionally a mixture-of-experts (:class:`MoE`), multi-head latent
attention (:class:`MLA`) and multi-token-prediction modules. Reading one from a Hugging Face
``config.json`` is :mod:`estimator.hf_config`; counting its parameters is :mod:`estimator.params`.
Pure Python; no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError

POSITION_EMBEDDINGS = ("rotary", "learned")
NORMS = ("rmsnorm", "layernorm")


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




__all__ = ["Architecture", "MoE", "MLA", "NORMS", "POSITION_EMBEDDINGS"]
