"""Architecture record, config.json parsing and exact parameter counts (pure Python, no torch)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from estimator.model.arch import MLA, Architecture, MoE
from estimator.model.hf_config import architecture_for_model, from_hf_config, load_architecture, load_hf_config
from estimator.model.params import count_params
from estimator.errors import CatalogError, InputError

ARCH_DIR = Path(__file__).resolve().parent.parent / "catalogs" / "architectures"
CATALOG_MODELS = ("gpt2-small", "bert-base", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "mixtral-8x7b",
                  "qwen2.5-72b", "deepseek-v3")

# Exact totals of the reference implementations. Sources: sum(p.numel()) of the Hugging Face
# transformers model built from each config.json (GPT2LMHeadModel, BertModel with pooler,
# LlamaForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM; test_arch_hf.py re-derives them on the meta
# device); GPT-2 124,439,808 and Llama 3.1 8B 8,030,261,248 as published on the model cards / HF
# safetensors metadata. DeepSeek-V3: DeepseekV3ForCausalLM parameters (671,026,404,352) plus the 58
# MoE layers' 256-entry e_score_correction_bias, which the checkpoint stores (a buffer in HF,
# nn.Parameter in DeepSeek's inference/model.py): 671,026,419,200, the "671B" of arXiv 2412.19437.
EXPECTED_TOTAL = {
    "gpt2-small": 124_439_808,
    "bert-base": 109_482_240,
    "llama-3.1-8b": 8_030_261_248,
    "llama-3.1-70b": 70_553_706_496,
    "llama-3.1-405b": 405_853_388_800,
    "mixtral-8x7b": 46_702_792_704,
    "qwen2.5-72b": 72_706_203_648,
    "deepseek-v3": 671_026_419_200,
}
EXPECTED_ACTIVE = {
    "mixtral-8x7b": 12_879_925_248,   # Mistral AI: "12.9B active parameters" (top-2 of 8)
    "deepseek-v3": 37_552_297_472,    # arXiv 2412.19437: "37B activated for each token"
}


def arch(model_id: str) -> Architecture:
    found = load_architecture(model_id, ARCH_DIR)
    assert found is not None
    return found


def tiny(**overrides) -> Architecture:
    fields = dict(name="tiny", model_type="llama", num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2,
                  head_dim=16, ffn_size=128, vocab_size=100)
    fields.update(overrides)
    return Architecture(**fields)


@pytest.mark.parametrize("model_id", CATALOG_MODELS)
def test_catalog_config_counts_exactly_the_reference_total(model_id):
    assert count_params(arch(model_id)).total == EXPECTED_TOTAL[model_id]


@pytest.mark.parametrize("model_id", CATALOG_MODELS)
def test_breakdowns_sum_to_total_and_active(model_id):
    counts = count_params(arch(model_id))
    assert sum(counts.breakdown.values()) == counts.total
    assert sum(counts.active_breakdown.values()) == counts.active


@pytest.mark.parametrize("model_id", ["mixtral-8x7b", "deepseek-v3"])
def test_moe_active_params_count_top_k_and_shared_experts_only(model_id):
    assert count_params(arch(model_id)).active == EXPECTED_ACTIVE[model_id]


@pytest.mark.parametrize("model_id", ["gpt2-small", "llama-3.1-8b", "qwen2.5-72b", "bert-base"])
def test_dense_models_have_every_parameter_active(model_id):
    counts = count_params(arch(model_id))
    assert counts.active == counts.total


def test_deepseek_v3_matches_the_papers_671b_total_and_37b_active():
    # DeepSeek-V3 technical report (arXiv 2412.19437) abstract: 671B total, 37B activated per token.
    counts = count_params(arch("deepseek-v3"))
    assert counts.total / 1e9 == pytest.approx(671, abs=0.5)
    assert counts.active / 1e9 == pytest.approx(37, rel=0.02)
    # DeepSeek's own convention (README_WEIGHTS.md): 36.6B activated, including the 0.9B output head
    # but not the input embedding.
    assert counts.active_non_embedding / 1e9 == pytest.approx(36.6, abs=0.05)
    assert counts.breakdown["output_head"] / 1e9 == pytest.approx(0.93, abs=0.01)


def test_deepseek_v3_mtp_module_is_counted_apart_from_the_total():
    # README_WEIGHTS.md: the MTP module adds ~11.5B unique parameters (embedding and head shared).
    counts = count_params(arch("deepseek-v3"))
    assert counts.mtp_total == 11_610_068_224
    assert counts.mtp_total / 1e9 == pytest.approx(11.5, abs=0.15)
    assert counts.total == EXPECTED_TOTAL["deepseek-v3"]  # not included
    # The checkpoint's 685B = main model + MTP + the MTP's own copies of embedding and head.
    with_copies = counts.total + counts.mtp_total + 2 * counts.breakdown["embedding"]
    assert with_copies / 1e9 == pytest.approx(684.5, abs=0.1)


def test_deepseek_v3_router_bias_is_counted_once_per_expert_per_moe_layer():
    a = arch("deepseek-v3")
    without = replace(a, moe=replace(a.moe, router_bias=False))
    assert count_params(a).total - count_params(without).total == 58 * 256


def test_bert_masked_lm_head_adds_transform_and_decoder_bias():
    # BertForMaskedLM = BertModel(with pooler) + cls.predictions: transform dense 768*768+768,
    # LayerNorm 2*768, decoder bias 30522 (decoder weight tied to the word embeddings).
    data = json.loads((ARCH_DIR / "bert-base.json").read_text())
    with_head = from_hf_config(data, mlm_head=True)
    assert count_params(with_head).total == 109_482_240 + 768 * 768 + 768 + 2 * 768 + 30522
    assert count_params(with_head).breakdown["mlm_head"] == 622_650


def test_gpt2_ties_its_head_to_the_token_embedding():
    counts = count_params(arch("gpt2-small"))
    assert "output_head" not in counts.breakdown
    assert counts.breakdown["embedding"] == 50257 * 768 + 1024 * 768


def test_llama_components_follow_the_modeling_file():
    counts = count_params(arch("llama-3.1-8b"))
    h, kv, f, layers = 4096, 1024, 14336, 32
    assert counts.breakdown["attention"] == layers * (2 * h * h + 2 * h * kv)
    assert counts.breakdown["mlp"] == layers * 3 * h * f
    assert counts.breakdown["norms"] == (2 * layers + 1) * h
    assert counts.breakdown["output_head"] == counts.breakdown["embedding"] == 128256 * h


def test_qwen2_counts_qkv_biases_but_no_output_bias():
    a = arch("qwen2.5-72b")
    assert a.qkv_bias and not a.attn_out_bias
    no_bias = replace(a, qkv_bias=False)
    assert count_params(a).total - count_params(no_bias).total == 80 * (8192 + 2 * 1024)


def test_parsing_reads_each_family_into_the_record():
    gpt2, bert, llama, mixtral, ds = (arch(m) for m in ("gpt2-small", "bert-base", "llama-3.1-8b", "mixtral-8x7b",
                                                         "deepseek-v3"))
    assert (gpt2.position_embedding, gpt2.norm, gpt2.gated_ffn, gpt2.tie_embeddings) == ("learned", "layernorm", False, True)
    assert (bert.type_vocab_size, bert.pooler, bert.lm_head, bert.causal) == (2, True, False, False)
    assert (llama.num_kv_heads, llama.head_dim, llama.default_seq_len) == (8, 128, 8192)
    assert mixtral.moe == MoE(num_experts=8, experts_per_token=2, expert_ffn_size=14336)
    assert ds.mla == MLA(q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)
    assert (ds.moe.first_k_dense, ds.num_moe_layers, ds.num_dense_layers, ds.num_mtp_layers) == (3, 58, 3, 1)
    assert ds.moe.shared_ffn_size == 2048 and ds.moe.router_bias


def test_mistral_and_qwen3_and_deepseek_v2_configs_parse():
    mistral = from_hf_config({"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
                              "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                              "vocab_size": 32000})
    # Mistral-7B-v0.1: 7,241,732,096 parameters (HF safetensors metadata).
    assert count_params(mistral).total == 7_241_732_096
    qwen3 = from_hf_config({"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128, "head_dim": 32,
                            "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
                            "vocab_size": 10, "tie_word_embeddings": True})
    assert qwen3.qk_norm and qwen3.q_dim == 128
    v2 = from_hf_config({"model_type": "deepseek_v2", "hidden_size": 64, "intermediate_size": 128,
                         "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "q_lora_rank": None,
                         "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8,
                         "n_routed_experts": 4, "num_experts_per_tok": 2, "n_shared_experts": 2,
                         "moe_intermediate_size": 32, "first_k_dense_replace": 1, "topk_method": "greedy"})
    assert v2.mla.q_lora_rank is None and not v2.moe.router_bias and v2.num_moe_layers == 1


def test_unknown_model_type_names_the_file_and_field(tmp_path):
    path = tmp_path / "mamba.json"
    path.write_text(json.dumps({"model_type": "mamba", "hidden_size": 8}))
    with pytest.raises(CatalogError) as info:
        load_hf_config(path)
    assert str(path) in str(info.value) and "'model_type'" in str(info.value) and "mamba" in str(info.value)


def test_missing_required_field_names_the_field():
    with pytest.raises(CatalogError, match="field 'num_hidden_layers': is required"):
        from_hf_config({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
                        "num_attention_heads": 4, "vocab_size": 10}, source="x.json")


def test_malformed_json_and_missing_file_are_reported(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(CatalogError, match="invalid JSON"):
        load_hf_config(bad)
    with pytest.raises(InputError, match="not found"):
        load_hf_config(tmp_path / "absent.json")


@pytest.mark.parametrize("overrides, message", [
    ({"num_layers": 0}, "architecture.num_layers must be a positive integer"),
    ({"num_kv_heads": 3}, "architecture.num_kv_heads (3) must divide architecture.num_heads (4)"),
    ({"norm": "batchnorm"}, "architecture.norm must be one of"),
    ({"position_embedding": "alibi"}, "architecture.position_embedding must be one of"),
    ({"position_embedding": "learned"}, "max_position_embeddings is required"),
    ({"hidden_size": 64.0}, "architecture.hidden_size must be a positive integer"),
])
def test_architecture_rejects_invalid_fields_naming_them(overrides, message):
    with pytest.raises(InputError) as info:
        tiny(**overrides)
    assert message in str(info.value)


def test_moe_rejects_top_k_above_expert_count():
    with pytest.raises(InputError, match=r"moe.experts_per_token \(3\) must not exceed moe.num_experts \(2\)"):
        MoE(num_experts=2, experts_per_token=3, expert_ffn_size=8)


def test_architecture_is_frozen():
    with pytest.raises(AttributeError):
        tiny().num_layers = 3  # type: ignore[misc]


def test_architecture_for_model_prefers_inline_mapping_then_file():
    file_model = SimpleNamespace(id="llama-3.1-8b", architecture=None)
    assert count_params(architecture_for_model(file_model, ARCH_DIR)).total == 8_030_261_248
    inline = SimpleNamespace(id="x", architecture={"model_type": "gpt2", "n_embd": 768, "n_head": 12, "n_layer": 12,
                                                    "n_positions": 1024, "vocab_size": 50257})
    assert count_params(architecture_for_model(inline, ARCH_DIR)).total == 124_439_808
    assert architecture_for_model(SimpleNamespace(id="no-such-model", architecture=None), ARCH_DIR) is None


@pytest.mark.parametrize("model_id", CATALOG_MODELS)
def test_catalog_architecture_files_cite_a_hugging_face_source(model_id):
    data = json.loads((ARCH_DIR / f"{model_id}.json").read_text())
    assert data["_source"].startswith("https://huggingface.co/") and data["_source"].endswith("/config.json")


def test_estimator_modules_do_not_import_torch():
    code = ("import sys, estimator.model.arch, estimator.model.flops, estimator.model.memory, estimator.model.report; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ARCH_DIR.parent.parent).returncode == 0


def test_head_dim_is_required_when_heads_do_not_divide_the_width():
    with pytest.raises(CatalogError, match="field 'head_dim': is required when hidden_size"):
        from_hf_config({"model_type": "llama", "hidden_size": 100, "intermediate_size": 128, "num_hidden_layers": 1,
                        "num_attention_heads": 3, "vocab_size": 10})


def test_learned_position_models_reject_longer_sequences():
    with pytest.raises(InputError, match="seq_len 1025 exceeds gpt2-small's 1024 learned positions"):
        arch("gpt2-small").check_seq_len(1025)
    arch("llama-3.1-8b").check_seq_len(1_000_000)  # rotary: extendable
