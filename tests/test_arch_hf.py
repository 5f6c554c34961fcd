"""The strongest check of the parameter counts: build the Hugging Face transformers model from each
catalog config.json on the meta device (no memory, no weights, no network) and count
``sum(p.numel())``. Needs torch and transformers (test-only dependencies); skipped without them."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from estimator.model.hf_config import from_hf_config
from estimator.model.params import count_params

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ARCH_DIR = Path(__file__).resolve().parent.parent / "catalogs" / "architectures"


def hf_model(config: dict):
    """The transformers model for a config.json dict, on the meta device."""
    cfg = {k: v for k, v in config.items() if not k.startswith("_") and k not in ("auto_map", "quantization_config")}
    hf_config = transformers.AutoConfig.for_model(**cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            if cfg["model_type"] == "bert":
                return transformers.BertModel(hf_config, add_pooling_layer=True)
            return transformers.AutoModelForCausalLM.from_config(hf_config)


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("model_id", ["gpt2-small", "bert-base", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b",
                                      "mixtral-8x7b", "qwen2.5-72b"])
def test_param_count_equals_transformers_model_on_meta_device(model_id):
    config = json.loads((ARCH_DIR / f"{model_id}.json").read_text())
    assert count_params(from_hf_config(config)).total == numel(hf_model(config))


def test_deepseek_v3_count_equals_transformers_parameters_plus_router_bias_buffers():
    # transformers registers e_score_correction_bias as a buffer; the checkpoint (and DeepSeek's
    # inference/model.py, where it is an nn.Parameter) stores it, so it is part of the 671B.
    config = json.loads((ARCH_DIR / "deepseek-v3.json").read_text())
    model = hf_model(config)
    bias = sum(b.numel() for name, b in model.named_buffers() if name.endswith("e_score_correction_bias"))
    assert bias == 58 * 256
    assert count_params(from_hf_config(config)).total == numel(model) + bias


def test_bert_masked_lm_head_count_equals_bert_for_masked_lm():
    config = json.loads((ARCH_DIR / "bert-base.json").read_text())
    cfg = transformers.BertConfig(**{k: v for k, v in config.items() if not k.startswith("_")})
    with torch.device("meta"):
        model = transformers.BertForMaskedLM(cfg)
    # BertForMaskedLM has no pooler; ours adds the MLM head on top of BertModel *with* its pooler.
    pooler = 768 * 768 + 768
    assert count_params(from_hf_config(config, mlm_head=True)).total == numel(model) + pooler


@pytest.mark.parametrize("config", [
    {"model_type": "qwen3", "hidden_size": 96, "intermediate_size": 160, "head_dim": 32, "num_hidden_layers": 2,
     "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50, "tie_word_embeddings": True},
    {"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
     "num_attention_heads": 4, "num_key_value_heads": 1, "vocab_size": 50, "attention_bias": True, "mlp_bias": True},
    {"model_type": "deepseek_v3", "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32,
     "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4, "n_routed_experts": 8,
     "n_shared_experts": 2, "num_experts_per_tok": 2, "n_group": 2, "topk_group": 1, "q_lora_rank": None,
     "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 16, "first_k_dense_replace": 1,
     "vocab_size": 50},
])
def test_unusual_options_count_like_transformers(config):
    model = hf_model(config)
    bias = sum(b.numel() for name, b in model.named_buffers() if name.endswith("e_score_correction_bias"))
    assert count_params(from_hf_config(config)).total == numel(model) + bias
