"""FLOPs per token: conventions, switches and agreement with the 6ND and PaLM rules (pure Python)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from estimator.model.arch import MoE, Architecture
from estimator.model.hf_config import load_architecture
from estimator.model.params import count_params
from estimator.errors import InputError
from estimator.model.flops import flops_per_token, train_flops, train_flops_6nd, train_flops_per_token_palm

ARCH_DIR = Path(__file__).resolve().parent.parent / "catalogs" / "architectures"


def arch(model_id: str) -> Architecture:
    found = load_architecture(model_id, ARCH_DIR)
    assert found is not None
    return found


def test_6nd_rule_reproduces_gpt3_compute():
    # Brown et al. 2020 / the course slides: 6 x 175e9 x 300e9 = 3.15e23 FLOPs.
    assert train_flops_6nd(175e9, 300e9) == pytest.approx(3.15e23)


def test_training_is_three_forward_passes_without_recompute():
    f = flops_per_token(arch("llama-3.1-8b"), 8192)
    assert f.train_model == 3 * f.forward == f.train_hardware
    assert sum(f.breakdown.values()) == pytest.approx(f.forward)


def test_gpt2_forward_matches_the_hand_count():
    # Per token, 12 layers of d=768: QKV 2*768*2304 + proj 2*768*768 + MLP 2*2*768*3072, scores
    # 2 * 12 heads * 1024 * (64 + 64), logits 2*768*50257.
    d, s, v = 768, 1024, 50257
    per_layer = 2 * d * 3 * d + 2 * d * d + 2 * 2 * d * 4 * d + 2 * 12 * s * 128
    assert flops_per_token(arch("gpt2-small"), s).forward == 12 * per_layer + 2 * d * v


def test_detailed_count_equals_palm_formula_up_to_biases_and_norms():
    # PaLM appendix B: 6N + 12 L H Q T, the same full-matrix convention; the detailed count differs
    # only by parameters that are not matmul weights (biases, norms).
    for model_id, seq_len in (("llama-3.1-70b", 8192), ("gpt2-small", 1024), ("mixtral-8x7b", 4096),
                              ("deepseek-v3", 4096)):
        f = flops_per_token(arch(model_id), seq_len)
        assert f.train_model == pytest.approx(train_flops_per_token_palm(arch(model_id), seq_len), rel=2e-3)


def test_6n_and_detailed_count_agree_within_a_few_percent_for_a_large_model_at_short_sequence():
    # At s = 2048 the attention scores of Llama 3.1 70B are ~4% of its FLOPs and the input
    # embedding (counted by 6N, not a matmul) ~1.5%: the two rules agree to a few percent.
    f = flops_per_token(arch("llama-3.1-70b"), 2048)
    assert f.train_model == pytest.approx(f.six_n, rel=0.03)
    assert f.six_n == 6 * 70_553_706_496


def test_attention_share_grows_with_sequence_length():
    a = arch("llama-3.1-8b")
    short, long = flops_per_token(a, 2048), flops_per_token(a, 32768)
    assert short.attention_fraction < 0.1 < long.attention_fraction
    assert long.breakdown["attention_scores"] == 16 * short.breakdown["attention_scores"]


def test_causal_switch_halves_attention_scores_only():
    a = arch("llama-3.1-8b")
    full, causal = flops_per_token(a, 8192), flops_per_token(a, 8192, causal=True)
    assert (full.causal, causal.causal) == (False, True)
    assert causal.breakdown["attention_scores"] == full.breakdown["attention_scores"] / 2
    assert causal.breakdown["mlp"] == full.breakdown["mlp"]


def test_causal_switch_is_ignored_for_a_bidirectional_encoder():
    bert = arch("bert-base")
    assert flops_per_token(bert, 512, causal=True).forward == flops_per_token(bert, 512).forward
    assert flops_per_token(bert, 512, causal=True).causal is False


def test_megatron_convention_is_the_causal_count():
    # Megatron-LM num_floating_point_operations (GQA branch, training): 3 * 2 * (h*(q+k+v) +
    # q*s/2*2 + q*h) + MLP 3*2*h*f*3 + logits 3*2*h*V, per token.
    a = arch("llama-3.1-8b")
    s, h, q, kv, f, v, layers = 8192, 4096, 4096, 1024, 14336, 128256, 32
    attn = 6 * (h * (q + 2 * kv) + q * s / 2 * 2 + q * h)
    megatron = layers * (attn + 6 * h * f * 3) + 6 * h * v
    assert flops_per_token(a, s, causal=True).train_model == pytest.approx(megatron, rel=1e-12)


def test_megatron_mla_attention_matches_deepseek_v3_count():
    # Megatron's MLA branch (q_lora + kv_lora + rope + o_proj + causal core attention), per layer,
    # training, minus the LoRA-norm terms it folds in (q_lora_rank and kv_lora_rank, element-wise).
    a = arch("deepseek-v3")
    s, h, n = 4096, 7168, 128
    q_term = 1536 * (h + n * (128 + 64))
    kv_term = 512 * (h + n * (128 + 128)) + h * 64
    core = s * n * (128 + 64) / 2 + s * n * 128 / 2
    megatron_attn = 6 * (q_term + kv_term + n * 128 * h + core)
    f = flops_per_token(a, s, causal=True)
    ours = 3 * (f.breakdown["attention_proj"] + f.breakdown["attention_scores"]) / 61
    assert ours == pytest.approx(megatron_attn, rel=1e-12)


def test_moe_counts_only_active_experts_and_the_router():
    mixtral = arch("mixtral-8x7b")
    f = flops_per_token(mixtral, 4096)
    h, fe = 4096, 14336
    assert f.breakdown["experts"] == 32 * 2 * 2 * 3 * h * fe  # top-2 of 8 experts, SwiGLU
    assert f.breakdown["router"] == 32 * 2 * h * 8
    dense_equivalent = replace(mixtral, moe=replace(mixtral.moe, experts_per_token=8))
    assert flops_per_token(dense_equivalent, 4096).breakdown["experts"] == 4 * f.breakdown["experts"]


def test_deepseek_v3_detailed_count_and_6n_with_37b_active():
    # Slides / arXiv 2412.19437: 6 x 37B x 14.8T = 3.3e24 FLOPs. The detailed count at the 4K
    # pre-training length adds MLA's attention scores: with the causal halving Megatron applies,
    # ~1.1x the 6N figure; the MTP module's FLOPs are reported apart.
    a = arch("deepseek-v3")
    f = flops_per_token(a, 4096, causal=True)
    assert f.six_n * 14.8e12 == pytest.approx(3.33e24, rel=0.01)
    assert f.train_model / f.six_n == pytest.approx(1.12, abs=0.02)
    assert f.mtp_forward > 0 and f.mtp_forward not in f.breakdown.values()


@pytest.mark.parametrize("model_id, seq_len", [("llama-3.1-70b", 8192), ("gpt2-small", 1024)])
def test_selective_recompute_adds_one_forward_of_attention_scores(model_id, seq_len):
    a = arch(model_id)
    none, selective = flops_per_token(a, seq_len), flops_per_token(a, seq_len, recompute="selective")
    assert selective.train_model == none.train_model  # MFU never counts recomputation
    assert selective.recompute_extra == none.breakdown["attention_scores"]


def test_full_recompute_adds_one_forward_of_the_layers_but_not_the_head():
    # Korthikanti et al. 2022 (appendix): model FLOPs 72BsLh^2(1 + s/6h + V/12hL), with full
    # recomputation 96BsLh^2(1 + s/6h + V/16hL): the layers' 72 becomes 96 (+1 forward), the
    # logits term (6BsVh) stays. GPT-3 175B shape: h=12288, L=96, V=51200, s=2048, MHA.
    a = Architecture(name="gpt3", model_type="gpt2", num_layers=96, hidden_size=12288, num_heads=96,
                     num_kv_heads=96, head_dim=128, ffn_size=4 * 12288, vocab_size=51200, gated_ffn=False)
    s, h, L, V = 2048, 12288, 96, 51200
    model = flops_per_token(a, s)
    full = flops_per_token(a, s, recompute="full")
    assert model.train_model == pytest.approx(72 * s * L * h * h * (1 + s / (6 * h) + V / (12 * h * L)) / s, rel=1e-12)
    assert full.train_hardware == pytest.approx(96 * s * L * h * h * (1 + s / (6 * h) + V / (16 * h * L)) / s, rel=1e-12)


def test_train_flops_multiplies_by_tokens():
    a = arch("llama-3.1-8b")
    assert train_flops(a, 15e12, 8192) == pytest.approx(flops_per_token(a, 8192).train_model * 15e12)


@pytest.mark.parametrize("kwargs, message", [
    ({"seq_len": 0}, "seq_len must be a positive integer"),
    ({"seq_len": 1024, "recompute": "partial"}, "recompute must be one of none, selective, full"),
    ({"seq_len": 2048}, "seq_len 2048 exceeds gpt2-small's 1024 learned positions"),
])
def test_flops_reject_bad_inputs(kwargs, message):
    with pytest.raises(InputError, match=message):
        flops_per_token(arch("gpt2-small"), **kwargs)


def test_palm_n_excludes_input_embeddings_but_keeps_the_head():
    a = arch("llama-3.1-8b")
    counts = count_params(a)
    n = counts.total - counts.breakdown["embedding"]
    assert train_flops_per_token_palm(a, 1) == pytest.approx(6 * n + 12 * 32 * 32 * 128 * 1)


def test_moe_without_shared_experts_has_no_shared_term():
    a = Architecture(name="m", model_type="mixtral", num_layers=2, hidden_size=16, num_heads=2, num_kv_heads=2,
                     head_dim=8, ffn_size=32, vocab_size=10, moe=MoE(num_experts=4, experts_per_token=1,
                                                                     expert_ffn_size=32))
    assert "shared_experts" not in flops_per_token(a, 8).breakdown
