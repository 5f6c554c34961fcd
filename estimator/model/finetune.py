"""Fine-tuning: what is trained, what is frozen, and in which precision (full, LoRA, QLoRA).

**Full fine-tuning** trains every parameter: the same states, FLOPs and memory as pre-training
(mixed-precision AdamW, 16 bytes per parameter; ZeRO, Rajbhandari et al. 2020).

**LoRA** (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", arXiv 2106.09685,
section 4.1) freezes the pre-trained weight W (d_out x d_in) and trains W + B A, with A (r x d_in)
and B (d_out x r): ``r * (d_in + d_out)`` trainable parameters per adapted matrix. Only the adapters
carry gradients and optimizer states. The targets here default to every linear projection of the
transformer blocks, q, k, v, o, gate, up and down (Hugging Face PEFT's ``target_modules="all-linear"``,
which leaves out the output head; the QLoRA paper's finding that adapting all linear block layers
is needed to match full fine-tuning, section 4), at rank 16; ``--lora-targets`` and ``--lora-rank``
change them. The embedding, norms and output head stay frozen.

**QLoRA** (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs", arXiv 2305.14314,
section 3) stores the frozen linear weights of the blocks in 4-bit NormalFloat with double
quantisation: 4 bits per weight, plus one 8-bit constant per block of 64 weights and one fp32
constant per 256 of those: ``4 + 8/64 + 32/(64*256) = 4.127`` bits per parameter. The embedding
and the output head stay in 16 bits (bitsandbytes/transformers keep the output head unquantised).
Every matmul dequantises its weight to bf16 first, in the forward pass and again in the backward
pass (and in a recomputed forward), a memory-bound read of the 4-bit weight and write of the bf16
one. Its paged AdamW moves optimizer states to CPU memory only when the device runs out; they are
counted on the device here.

**FLOPs** per token. A matmul of a frozen weight costs 2N forward and 2N backward for the gradient
with respect to its input (needed to reach the layers below), but no weight gradient (another 2N):
4 instead of 6 FLOPs per frozen parameter per token, 2/3 of a full step's matmul work. Attention
scores (no weights) keep their 3x. Each adapter adds ``6 * r * (d_in + d_out)`` per token (forward,
input and weight gradients of A and B). Activations still flow through every layer, so activation
memory and gradient checkpointing are as in pre-training, plus the rank-r intermediates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from estimator.errors import InputError
from estimator.vocab import FINETUNE_METHODS, LORA_TARGETS, parse_lora_targets

if TYPE_CHECKING:
    from estimator.model.arch import Architecture

DEFAULT_LORA_RANK = 16
DEFAULT_LORA_TARGETS = LORA_TARGETS
MAX_LORA_RANK = 65536
#: NF4 with double quantisation (QLoRA section 3): 4-bit weights, an 8-bit absmax per 64 weights,
#: an fp32 constant per 256 absmax values.
NF4_BITS_PER_PARAM = 4.0 + 8.0 / 64 + 32.0 / (64 * 256)
NF4_BYTES_PER_PARAM = NF4_BITS_PER_PARAM / 8
BF16_BYTES = 2.0
#: Adapters: bf16 weight (2) + bf16 gradient (2) + AdamW fp32 master, momentum, variance (12) = 16 bytes,
#: ZeRO's mixed-precision K = 12 (QLoRA's paged 32-bit AdamW holds the same states, off the device
#: only under memory pressure).
ADAPTER_WEIGHT_BYTES = 2.0
ADAPTER_GRAD_BYTES = 2.0
ADAPTER_OPTIMIZER_BYTES = 12.0
#: The fine-tuning batch when neither the user nor the dataset gives one: tens of sequences, the
#: BERT paper's SQuAD batch of 32 (Devlin et al. 2018, section 4.2) and torchtune's and PEFT's
#: examples' tens of sequences per optimizer step (a pre-training batch of millions of tokens is
#: not a fine-tune's).
DEFAULT_FINETUNE_BATCH = 32
#: The sequence length of a fine-tune when neither --seq-len nor the dataset gives one (torchtune's
#: published LoRA/QLoRA memory table runs sequences of 2,048; pytorch/torchtune README).
DEFAULT_FINETUNE_SEQ_LEN = 2048


@dataclass(frozen=True, slots=True)
class FinetuneSpec:
    """What a fine-tune trains and stores, for the memory and step models.

    ``trainable_params``: parameters with gradients and optimizer states (all of them for full
    fine-tuning; the adapters for LoRA/QLoRA). ``frozen_params``: parameters without gradients,
    of which ``quantized_params`` are stored in NF4 (QLoRA) and the rest in bf16.
    ``frozen_linear_forward_per_token``: forward FLOPs per token of matmuls whose weights are frozen
    (they skip the weight gradient). ``adapter_forward_per_token``: forward FLOPs per token of the
    adapters. ``adapter_gemms`` / ``adapter_moe_gemms``: the adapters' matmuls of one dense / MoE
    layer in the step model's ``(flops per token, m-factor, n, k)`` form. ``quantized_matrices``:
    weight matrices per layer that are dequantised before each use.
    """

    method: str
    rank: int | None
    targets: tuple[str, ...]
    total_params: float
    trainable_params: float
    frozen_params: float
    quantized_params: float
    frozen_linear_forward_per_token: float
    adapter_forward_per_token: float
    adapter_gemms: tuple[tuple[float, float, float, float], ...] = ()
    adapter_moe_gemms: tuple[tuple[float, float, float, float], ...] = ()
    quantized_matrices_per_layer: int = 0
    adapter_activation_bytes_per_token_layer: float = 0.0

    @property
    def frozen(self) -> bool:
        """Whether the base weights are frozen (LoRA, QLoRA)."""
        return self.method != "full"

    @property
    def frozen_weight_bytes(self) -> float:
        """Bytes of the frozen weights: NF4 for the quantised ones, bf16 for the rest."""
        return (self.quantized_params * NF4_BYTES_PER_PARAM
                + (self.frozen_params - self.quantized_params) * BF16_BYTES)

    @property
    def weight_bytes(self) -> float:
        """Bytes of all weights held (frozen + trainable), unsharded."""
        if not self.frozen:
            return self.total_params * BF16_BYTES
        return self.frozen_weight_bytes + self.trainable_params * ADAPTER_WEIGHT_BYTES

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_params / self.total_params if self.total_params else 0.0

    def train_model_per_token(self, full_train_model_per_token: float) -> float:
        """Training model FLOPs per token: the full count (3 x forward) less the weight gradients of
        the frozen matmuls (2 FLOPs per frozen weight per token), plus 3 x the adapters' forward."""
        if not self.frozen:
            return full_train_model_per_token
        return full_train_model_per_token - self.frozen_linear_forward_per_token + 3.0 * self.adapter_forward_per_token

    def describe(self) -> str:
        """One line for the assumptions."""
        if not self.frozen:
            return (f"fine-tuning: full, every one of the {self.total_params:.4g} parameters trained with "
                    "mixed-precision AdamW (16 bytes per parameter)")
        kind = "QLoRA (Dettmers et al. 2023) adapters" if self.method == "qlora" else "LoRA (Hu et al. 2021)"
        frozen = ("frozen block weights in NF4 with double quantisation, "
                  f"{NF4_BITS_PER_PARAM:.3f} bits per parameter, dequantised to bf16 "
                  "for every forward and backward matmul; embedding and output head in bf16"
                  if self.method == "qlora" else "frozen weights in bf16")
        return (f"fine-tuning: {kind} at rank {self.rank} on {', '.join(self.targets)} of every "
                f"layer: {self.trainable_params:,.0f} trainable parameters ({self.trainable_fraction:.2%}), each "
                f"with a bf16 weight and gradient and AdamW states (16 bytes); {frozen}; frozen matmuls skip "
                "their weight gradients (4 instead of 6 FLOPs per parameter per token), adapters add "
                "6 x r x (d_in + d_out) per matrix per token")


def _block_matrices(arch: Architecture, moe_layer: bool) -> dict[str, list[tuple[int, int, float, float]]]:
    """Per target name, the linear weights of one layer as (d_in, d_out, copies held, copies a token
    passes through): routed experts are held num_experts times and used top-k times per token."""
    h = arch.hidden_size
    out: dict[str, list[tuple[int, int, float, float]]] = {}
    if arch.mla is not None:
        m = arch.mla
        heads = arch.num_heads
        out["q"] = ([(h, heads * m.qk_head_dim, 1, 1)] if m.q_lora_rank is None
                    else [(h, m.q_lora_rank, 1, 1), (m.q_lora_rank, heads * m.qk_head_dim, 1, 1)])
        # K and V share MLA's compressed projections: kv_a (h -> latent + rope key), kv_b (latent -> k, v)
        out["k"] = [(h, m.kv_lora_rank + m.qk_rope_head_dim, 1, 1)]
        out["v"] = [(m.kv_lora_rank, heads * (m.qk_nope_head_dim + m.v_head_dim), 1, 1)]
        out["o"] = [(heads * m.v_head_dim, h, 1, 1)]
    else:
        out["q"] = [(h, arch.q_dim, 1, 1)]
        out["k"] = [(h, arch.kv_dim, 1, 1)]
        out["v"] = [(h, arch.kv_dim, 1, 1)]
        out["o"] = [(arch.q_dim, h, 1, 1)]

    def ffn(width: int, held: float, used: float) -> None:
        if arch.gated_ffn:
            out.setdefault("gate", []).append((h, width, held, used))
        out.setdefault("up", []).append((h, width, held, used))
        out.setdefault("down", []).append((width, h, held, used))

    if moe_layer:
        moe = arch.moe
        assert moe is not None
        ffn(moe.expert_ffn_size, moe.num_experts, moe.experts_per_token)
        if moe.num_shared_experts:
            ffn(moe.shared_ffn_size, 1, 1)
    else:
        ffn(arch.ffn_size, 1, 1)
    return out


def finetune_spec(arch: Architecture, method: str, *, rank: int | None = None,
                  targets: tuple[str, ...] | None = None) -> FinetuneSpec:
    """The :class:`FinetuneSpec` of fine-tuning ``arch`` by ``method`` (full, lora, qlora)."""
    from estimator.model.flops import forward_flops_breakdown
    from estimator.model.params import count_params

    if method not in FINETUNE_METHODS:
        raise InputError(f"unknown --finetune {method!r}; use one of {', '.join(FINETUNE_METHODS)}")
    counts = count_params(arch)
    total = float(counts.total)
    breakdown = forward_flops_breakdown(arch, arch.default_seq_len or 2048)
    linear_forward = sum(v for k, v in breakdown.items() if k != "attention_scores")
    if method == "full":
        if rank is not None or targets is not None:
            raise InputError("--lora-rank and --lora-targets apply to --finetune lora or qlora")
        return FinetuneSpec(method="full", rank=None, targets=(), total_params=total, trainable_params=total,
                            frozen_params=0.0, quantized_params=0.0, frozen_linear_forward_per_token=0.0,
                            adapter_forward_per_token=0.0)
    rank = DEFAULT_LORA_RANK if rank is None else rank
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= MAX_LORA_RANK:
        raise InputError(f"--lora-rank must be a whole number from 1 to {MAX_LORA_RANK}, got {rank!r}")
    targets = DEFAULT_LORA_TARGETS if targets is None else parse_lora_targets(targets)
    adapters = 0.0
    adapter_fwd = 0.0
    act_bytes = 0.0
    gemms: dict[bool, list[tuple[float, float, float, float]]] = {False: [], True: []}
    quantized_matrices = 0
    layers = {False: arch.num_dense_layers, True: arch.num_moe_layers}
    for moe_layer, count in layers.items():
        if not count:
            continue
        mats = _block_matrices(arch, moe_layer)
        if not moe_layer:
            quantized_matrices = sum(len(v) for v in mats.values())
        for name in targets:
            for d_in, d_out, held, used in mats.get(name, []):
                adapters += count * held * rank * (d_in + d_out)
                adapter_fwd += count * used * 2.0 * rank * (d_in + d_out)
                act_bytes += count * used * BF16_BYTES * rank / arch.num_layers  # x A kept for B's gradient
                m_factor = used / held
                # A: tokens x d_in @ d_in x r; B: tokens x r @ r x d_out (routed experts: m per expert)
                gemms[moe_layer].append((2.0 * rank * d_in * used, m_factor, rank, d_in))
                gemms[moe_layer].append((2.0 * rank * d_out * used, m_factor, d_out, rank))
    b = counts.breakdown
    frozen = total  # the base model, all of it (adapters are extra parameters)
    quantized = 0.0
    if method == "qlora":  # every linear weight of the blocks; the embedding, norms and output head stay bf16
        quantized = float(sum(b.get(k, 0) for k in ("attention", "mlp", "experts", "shared_experts", "router")))
    return FinetuneSpec(method=method, rank=rank, targets=tuple(targets), total_params=total + adapters,
                        trainable_params=adapters, frozen_params=frozen, quantized_params=quantized,
                        frozen_linear_forward_per_token=linear_forward, adapter_forward_per_token=adapter_fwd,
                        adapter_gemms=tuple(gemms[False]), adapter_moe_gemms=tuple(gemms[True]),
                        quantized_matrices_per_layer=quantized_matrices if method == "qlora" else 0,
                        adapter_activation_bytes_per_token_layer=act_bytes)


__all__ = ["ADAPTER_GRAD_BYTES", "ADAPTER_OPTIMIZER_BYTES", "ADAPTER_WEIGHT_BYTES", "DEFAULT_FINETUNE_BATCH",
           "DEFAULT_FINETUNE_SEQ_LEN", "DEFAULT_LORA_RANK", "DEFAULT_LORA_TARGETS", "FINETUNE_METHODS", "FinetuneSpec",
           "LORA_TARGETS", "NF4_BITS_PER_PARAM", "NF4_BYTES_PER_PARAM", "finetune_spec"]
