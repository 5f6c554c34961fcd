"""FLOPs per token against the Hugging Face models themselves: tiny models built from config dicts
with the real transformers classes (eager attention, eager per-expert loop, which runs only the
tokens routed to each expert), counted by ``torch.utils.flop_counter.FlopCounterMode``.
Needs torch and transformers (test-only dependencies); skipped without them."""

from __future__ import annotations

import warnings

import pytest

from estimator.model.hf_config import from_hf_config
from estimator.model.flops import flops_per_token

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

CONFIGS = {
    "llama (GQA, SwiGLU)": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
                            "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
                            "vocab_size": 101},
    "mixtral (top-2 of 4)": {"model_type": "mixtral", "hidden_size": 64, "intermediate_size": 48,
                             "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
                             "num_local_experts": 4, "num_experts_per_tok": 2, "vocab_size": 101},
    "deepseek_v3 (MLA, shared expert, dense first layer)": {
        "model_type": "deepseek_v3", "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "n_routed_experts": 4,
        "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1, "q_lora_rank": 24,
        "kv_lora_rank": 16, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
        "first_k_dense_replace": 1, "vocab_size": 101},
    "gpt2 (learned positions, tied head)": {"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 2,
                                            "n_positions": 64, "vocab_size": 101},
    "bert (encoder with pooler)": {"model_type": "bert", "hidden_size": 64, "num_attention_heads": 4,
                                   "num_hidden_layers": 2, "intermediate_size": 128, "max_position_embeddings": 64,
                                   "vocab_size": 101},
}


def hf_model(config: dict):
    hf_config = transformers.AutoConfig.for_model(**config)
    hf_config._attn_implementation = "eager"
    if hasattr(hf_config, "_experts_implementation"):
        hf_config._experts_implementation = "eager"
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if config["model_type"] == "bert":
            return transformers.BertModel(hf_config, add_pooling_layer=True)
        return transformers.AutoModelForCausalLM.from_config(hf_config)


@pytest.mark.parametrize("label", list(CONFIGS))
def test_forward_flops_match_flop_counter_on_transformers_model(label):
    config = CONFIGS[label]
    model = hf_model(config).eval()
    batch, seq_len = 2, 16
    ids = torch.randint(0, config["vocab_size"], (batch, seq_len))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids)
    expected = flops_per_token(from_hf_config(config), seq_len).forward * batch * seq_len
    assert counter.get_total_flops() == pytest.approx(expected, rel=1e-9)
