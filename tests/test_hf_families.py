"""The architecture families against the Hugging Face transformers classes themselves.

Parameters: each family's model class built on the meta device (no memory, no weights, no network)
from (a) the default config of its transformers config class, (b) one published config.json
(tests/configs/, each citing its Hugging Face source) and (c) a config holding only the required
keys, where every other key takes transformers' default: ``sum(p.numel())`` must equal
:func:`estimator.model.params.count_params`. FLOPs: tiny models of each family (eager attention, eager
per-expert loop) counted by ``torch.utils.flop_counter.FlopCounterMode``, forward and forward +
backward, must equal :func:`estimator.model.flops.flops_per_token` (the method of tests/test_flops_hf.py,
extended to the backward pass as tests/test_flops_torch.py does). Then the refusals (exact lines),
finding configs (snapshot directories, the local Hugging Face cache, faked in tmp_path) and hostile
input. Needs torch and transformers for the first part (test-only dependencies).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time
import warnings
from pathlib import Path

import pytest

from estimator.model.arch import MAX_LAYERS, Architecture, MoE
from estimator.errors import CatalogError, InputError
from estimator.model.flops import flops_per_token
from estimator.model.hf_config import (DERIVED, NOT_CLASS_FIELDS, REQUIRED_KEYS, SUPPORTED_MODEL_TYPES, TRANSFORMERS_DEFAULTS, from_hf_config, hf_hub_cache, load_hf_config, resolve_config_path)
from estimator.model.params import count_params

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

CONFIGS = Path(__file__).resolve().parent / "configs"
FAMILIES = ("gemma", "gemma2", "gemma3_text", "phi3", "olmo", "olmo2", "gpt_neox", "falcon", "starcoder2", "granite",
            "qwen2_moe", "qwen3_moe")

# Totals published for these checkpoints (Hugging Face safetensors metadata / model cards); the
# transformers classes reproduce each, and so must we. Published configs without a total here are
# checked against the transformers class only.
PUBLISHED_TOTAL = {
    "gemma-2b": 2_506_172_416,
    "gemma-2-9b": 9_241_705_984,
    "gemma-3-1b": 999_885_952,
    "phi-3-medium-4k": 13_960_238_080,
    "olmo-1b": 1_176_764_416,
    "olmo-2-7b": 7_298_617_344,
    "pythia-160m": 162_322_944,
    "qwen3-30b-a3b": 30_532_122_624,
    "falcon-40b": None, "falcon-rw-1b": None, "starcoder2-7b": None, "granite-3.0-8b": None, "qwen2-57b-a14b": None,
}
PUBLISHED_FAMILY = {"gemma-2b": "gemma", "gemma-2-9b": "gemma2", "gemma-3-1b": "gemma3_text",
                    "phi-3-medium-4k": "phi3", "olmo-1b": "olmo", "olmo-2-7b": "olmo2", "pythia-160m": "gpt_neox",
                    "falcon-40b": "falcon", "falcon-rw-1b": "falcon", "starcoder2-7b": "starcoder2",
                    "granite-3.0-8b": "granite", "qwen2-57b-a14b": "qwen2_moe", "qwen3-30b-a3b": "qwen3_moe"}


def hf_config(config: dict):
    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoConfig.for_model(**cfg)


def hf_model(config: dict, *, head: str = "causal", meta: bool = True):
    """The transformers model for a config dict: causal LM, BertModel with pooler ("bert"),
    BertForMaskedLM ("mlm") or BertLMHeadModel ("bert-lm")."""
    cfg = hf_config(config)
    cfg._attn_implementation = "eager"
    if hasattr(cfg, "_experts_implementation"):
        cfg._experts_implementation = "eager"
    torch.manual_seed(0)
    with warnings.catch_warnings(), torch.device("meta" if meta else "cpu"):
        warnings.simplefilter("ignore")
        if config["model_type"] == "bert" or head != "causal":
            cls = {"causal": transformers.BertModel, "bert": transformers.BertModel, "mlm": transformers.BertForMaskedLM,
                   "bert-lm": transformers.BertLMHeadModel}[head]
            return cls(cfg, add_pooling_layer=True) if cls is transformers.BertModel else cls(cfg)
        return transformers.AutoModelForCausalLM.from_config(cfg)


def transformers_total(model) -> int:
    """Parameters, plus DeepSeek-V3's e_score_correction_bias buffers (stored in the checkpoint)."""
    bias = sum(b.numel() for name, b in model.named_buffers() if name.endswith("e_score_correction_bias"))
    return sum(p.numel() for p in model.parameters()) + bias


def published(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


@pytest.fixture(autouse=True)
def quiet_transformers():
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    yield
    transformers.logging.set_verbosity(verbosity)


# -- parameters: default configs, published sizes, missing keys --------------------------------


@pytest.mark.parametrize("model_type", [m for m in SUPPORTED_MODEL_TYPES if m not in ("deepseek_v2", "nemotron")])
def test_default_config_of_each_transformers_class_counts_exactly(model_type):
    config = transformers.AutoConfig.for_model(model_type).to_dict()
    assert count_params(from_hf_config(config)).total == transformers_total(hf_model(config))


def test_nemotron_default_config_is_refused_for_its_null_kv_heads():
    # NemotronConfig() leaves num_key_value_heads None, and NemotronAttention divides by it.
    config = transformers.AutoConfig.for_model("nemotron").to_dict()
    with pytest.raises(CatalogError, match="num_key_value_heads"):
        from_hf_config(config)
    config["num_key_value_heads"] = 8  # Nemotron-4 15B's
    assert count_params(from_hf_config(config)).total == transformers_total(hf_model(config))


def test_deepseek_v2_default_config_is_refused_for_its_null_top_k():
    # DeepseekV2Config() leaves num_experts_per_tok None: the model builds but cannot route a token.
    config = transformers.AutoConfig.for_model("deepseek_v2").to_dict()
    with pytest.raises(CatalogError) as info:
        from_hf_config(config)
    assert str(info.value) == ("config.json: entry 'deepseek_v2', field 'num_experts_per_tok': is required for an MoE "
                               "(DeepseekV2Config's default is null)")
    config["num_experts_per_tok"] = 6
    assert count_params(from_hf_config(config)).total == transformers_total(hf_model(config))


@pytest.mark.parametrize("name", sorted(PUBLISHED_TOTAL))
def test_published_config_counts_exactly_like_the_transformers_class(name):
    config = published(name)
    assert config["model_type"] == PUBLISHED_FAMILY[name]
    assert config["_source"].startswith("https://huggingface.co/") and config["_source"].endswith("/config.json")
    arch = load_hf_config(CONFIGS / f"{name}.json")
    assert arch.name == name
    total = count_params(arch).total
    assert total == transformers_total(hf_model(config))
    if PUBLISHED_TOTAL[name] is not None:
        assert total == PUBLISHED_TOTAL[name]


def test_every_family_has_a_published_config():
    assert set(PUBLISHED_FAMILY.values()) == set(FAMILIES)


def test_moe_published_configs_count_their_active_parameters():
    # Qwen3-30B-A3B: "30.5B in total and 3.3B activated" (model card); Qwen2-57B-A14B: 14B activated.
    qwen3 = count_params(load_hf_config(CONFIGS / "qwen3-30b-a3b.json"))
    assert qwen3.active == 3_353_032_704 and qwen3.active / 1e9 == pytest.approx(3.3, abs=0.06)
    qwen2 = count_params(load_hf_config(CONFIGS / "qwen2-57b-a14b.json"))
    assert qwen2.active / 1e9 == pytest.approx(14.2, abs=0.1)
    # 28 layers x 64 experts' router + the shared expert's sigmoid gate (hidden x 1).
    assert qwen2.breakdown["router"] == 28 * (3584 * 64 + 3584)


TINY = {"vocab_size": 32100, "hidden_size": 128, "intermediate_size": 80, "num_hidden_layers": 3,
        "num_attention_heads": 32, "n_embd": 128, "n_layer": 3, "n_head": 32, "num_key_value_heads": 8}


@pytest.mark.parametrize("model_type", SUPPORTED_MODEL_TYPES)
def test_a_config_with_only_the_required_keys_counts_as_transformers_builds_it(model_type):
    # Every other key (head_dim, num_key_value_heads, q_lora_rank, tie_word_embeddings, the MoE
    # shape, biases, ...) takes the default of transformers' own config class.
    config = {"model_type": model_type, **{key: TINY[key] for key in REQUIRED_KEYS[model_type]}}
    if model_type == "deepseek_v2":
        config["num_experts_per_tok"] = 2  # no default (None) in DeepseekV2Config
    assert count_params(from_hf_config(config)).total == transformers_total(hf_model(config))


def test_qwen3_head_dim_defaults_to_128_not_the_width_over_the_heads():
    config = {"model_type": "qwen3", **{key: TINY[key] for key in REQUIRED_KEYS["qwen3"]}}
    assert from_hf_config(config).head_dim == 128 == hf_config(config).head_dim
    assert from_hf_config({**config, "head_dim": None}).head_dim == 128 // 32


# config.json keys stored under another field name (the config class's attribute_map).
FIELD_ALIASES = {("deepseek_v3", "num_nextn_predict_layers"): "num_mtp_layers"}


@pytest.mark.parametrize("model_type", SUPPORTED_MODEL_TYPES)
def test_defaults_table_matches_the_installed_config_class(model_type):
    fields = {f.name: f.default for f in dataclasses.fields(type(transformers.AutoConfig.for_model(model_type)))}
    for (family, key), field in FIELD_ALIASES.items():
        if family == model_type:
            fields[key] = fields.pop(field)
    for key, default in TRANSFORMERS_DEFAULTS[model_type].items():
        if (model_type, key) in NOT_CLASS_FIELDS:
            assert key not in fields, f"{model_type}.{key} is a class field now"
            continue
        assert key in fields, f"{model_type}.{key} is not a field of the config class"
        if default is None:  # derived: the class's own default is None (or a list built in __post_init__)
            assert fields[key] in (None, dataclasses.MISSING) and key in DERIVED, f"{model_type}.{key}"
        else:
            assert fields[key] == default, f"{model_type}.{key}: transformers {fields[key]!r}, table {default!r}"
    for key in REQUIRED_KEYS[model_type]:
        assert key in fields and key not in TRANSFORMERS_DEFAULTS[model_type]


# -- FLOPs per token: tiny transformers models under FlopCounterMode ----------------------------

_BASE = {"vocab_size": 101, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
         "num_attention_heads": 8, "num_key_value_heads": 2, "max_position_embeddings": 64, "pad_token_id": 0,
         "bos_token_id": 1, "eos_token_id": 2}
FLOP_CONFIGS = {
    "gemma (GeGLU, head_dim 16)": {**_BASE, "model_type": "gemma", "head_dim": 16},
    "gemma2 (4 norms, soft-capping, sliding window)": {**_BASE, "model_type": "gemma2", "head_dim": 16,
                                                        "sliding_window": 8},
    "gemma3_text (q/k norms, local:global 1:1)": {**_BASE, "model_type": "gemma3_text", "head_dim": 16,
                                                  "num_hidden_layers": 3, "sliding_window": 8,
                                                  "sliding_window_pattern": 2},
    "phi3 (fused qkv and gate_up)": {**_BASE, "model_type": "phi3"},
    "olmo (non-parametric LayerNorm)": {**_BASE, "model_type": "olmo"},
    "olmo2 (post-norms, full-width q/k norms)": {**_BASE, "model_type": "olmo2"},
    "gpt_neox (parallel residual, partial rotary)": {**_BASE, "model_type": "gpt_neox"},
    "falcon (new decoder architecture, GQA)": {**_BASE, "model_type": "falcon", "new_decoder_architecture": True,
                                               "num_kv_heads": 2, "ffn_hidden_size": 96},
    "falcon (old, multi-query, parallel)": {**_BASE, "model_type": "falcon"},
    "falcon (old, ALiBi, sequential, biases)": {**_BASE, "model_type": "falcon", "alibi": True, "multi_query": False,
                                                "parallel_attn": False, "bias": True},
    "starcoder2 (GELU MLP, biases, LayerNorm)": {**_BASE, "model_type": "starcoder2"},
    "granite (multipliers)": {**_BASE, "model_type": "granite", "embedding_multiplier": 12.0, "logits_scaling": 8.0},
    "qwen2_moe (shared expert + gate, sparse step 2, mlp_only_layers)": {
        **_BASE, "model_type": "qwen2_moe", "num_hidden_layers": 4, "num_experts": 4, "num_experts_per_tok": 2,
        "moe_intermediate_size": 32, "shared_expert_intermediate_size": 48, "decoder_sparse_step": 2,
        "mlp_only_layers": [3]},
    "qwen3_moe (top-2 of 4, first layer dense)": {
        **_BASE, "model_type": "qwen3_moe", "head_dim": 16, "num_hidden_layers": 3, "num_experts": 4,
        "num_experts_per_tok": 2, "moe_intermediate_size": 32, "mlp_only_layers": [0]},
}


def test_every_family_has_a_flop_check():
    assert {c["model_type"] for c in FLOP_CONFIGS.values()} == set(FAMILIES)


@pytest.mark.parametrize("label", list(FLOP_CONFIGS))
def test_forward_and_training_flops_match_flop_counter_on_the_transformers_model(label):
    config = FLOP_CONFIGS[label]
    model = hf_model(config, meta=False).eval()  # eval: no dropout; the backward pass still runs
    arch = from_hf_config(config)
    assert sum(p.numel() for p in model.parameters()) == count_params(arch).total
    batch, seq_len = 2, 16
    ids = torch.randint(0, config["vocab_size"], (batch, seq_len), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as forward:
        logits = model(input_ids=ids).logits
    with FlopCounterMode(display=False) as backward:
        logits.float().square().mean().backward()
    expected = flops_per_token(arch, seq_len)
    tokens = batch * seq_len
    assert forward.get_total_flops() == pytest.approx(expected.forward * tokens, rel=1e-9)
    assert forward.get_total_flops() + backward.get_total_flops() == pytest.approx(expected.train_model * tokens,
                                                                                  rel=1e-9)


def test_qwen2_moe_flops_count_the_shared_expert_and_its_gate():
    arch = from_hf_config(FLOP_CONFIGS["qwen2_moe (shared expert + gate, sparse step 2, mlp_only_layers)"])
    assert (arch.num_moe_layers, arch.num_dense_layers) == (1, 3)  # layer 1 only: (i+1) % 2 == 0, 3 is mlp-only
    breakdown = flops_per_token(arch, 16).breakdown
    assert breakdown["shared_experts"] == 2 * 3 * 64 * 48
    assert breakdown["router"] == 2 * 64 * 4 + 2 * 64


# -- known edges: handled exactly, or refused in one line ----------------------------------------

_BERT = {"model_type": "bert", "vocab_size": 101, "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
         "intermediate_size": 128, "max_position_embeddings": 64}


def test_bert_masked_lm_without_pooler_is_exactly_bert_for_masked_lm():
    # BertForMaskedLM builds BertModel(add_pooling_layer=False): pooler=False drops it.
    assert count_params(from_hf_config(_BERT, mlm_head=True, pooler=False)).total == transformers_total(
        hf_model(_BERT, head="mlm"))
    with_pooler = count_params(from_hf_config(_BERT, mlm_head=True)).total
    assert with_pooler - count_params(from_hf_config(_BERT, mlm_head=True, pooler=False)).total == 64 * 64 + 64


def test_bert_with_untied_word_embeddings_counts_the_masked_lm_decoder_weight():
    untied = {**_BERT, "tie_word_embeddings": False}
    arch = from_hf_config(untied, mlm_head=True, pooler=False)
    assert count_params(arch).total == transformers_total(hf_model(untied, head="mlm"))
    # the decoder's own weight, and its own bias: transformers 5 unties cls.predictions.bias too
    assert count_params(arch).total - count_params(from_hf_config(_BERT, mlm_head=True, pooler=False)).total == 101 * 65
    # BertModel itself has no output head: tying changes nothing there.
    assert count_params(from_hf_config(untied)).total == count_params(from_hf_config(_BERT)).total


def test_bert_decoder_without_cross_attention_is_causal_with_the_same_weights():
    decoder = {**_BERT, "is_decoder": True}
    arch = from_hf_config(decoder, mlm_head=True, pooler=False)
    assert arch.causal and count_params(arch).total == transformers_total(hf_model(decoder, head="bert-lm"))
    assert flops_per_token(arch, 32, causal=True).breakdown["attention_scores"] == pytest.approx(
        flops_per_token(from_hf_config(_BERT, mlm_head=True, pooler=False), 32).breakdown["attention_scores"] / 2)


_DS_V2 = {"model_type": "deepseek_v2", "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32,
          "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 101, "n_routed_experts": 4,
          "num_experts_per_tok": 2, "n_shared_experts": 2, "first_k_dense_replace": 1, "q_lora_rank": None,
          "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 16}


def test_deepseek_v2_mlp_bias_puts_biases_on_dense_and_shared_expert_projections():
    biased = {**_DS_V2, "mlp_bias": True}
    assert count_params(from_hf_config(biased)).total == transformers_total(hf_model(biased))
    # 1 dense layer (96, 96, 64) + 2 MoE layers' shared experts (64, 64, 64); routed experts: none.
    assert (count_params(from_hf_config(biased)).total - count_params(from_hf_config(_DS_V2)).total
            == (96 + 96 + 64) + 2 * (64 + 64 + 64))


REFUSALS = {
    "deepseek_v2 mlp_bias without shared experts": (
        {**_DS_V2, "mlp_bias": True, "n_shared_experts": 0},
        "x.json: entry 'deepseek_v2', field 'mlp_bias': with n_shared_experts 0 is not supported: transformers still "
        "builds a zero-width shared expert whose down_proj bias remains"),
    "deepseek moe_layer_freq": (
        {**_DS_V2, "moe_layer_freq": 2},
        "x.json: entry 'deepseek_v2', field 'moe_layer_freq': 2 is not supported: transformers ignores it (every layer "
        "from first_k_dense_replace on is MoE) while DeepSeek's code honours it"),
    "bert cross-attention decoder": (
        {**_BERT, "is_decoder": True, "add_cross_attention": True},
        "x.json: entry 'bert', field 'add_cross_attention': a BERT decoder with cross-attention is not supported: its "
        "cross-attention weights and FLOPs depend on the encoder it reads"),
    "bert relative positions": (
        {**_BERT, "position_embedding_type": "relative_key"},
        "x.json: entry 'bert', field 'position_embedding_type': only 'absolute' is supported, got 'relative_key'"),
    "gpt2 cross-attention": (
        {"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 2, "vocab_size": 101, "add_cross_attention": True},
        "x.json: entry 'gpt2', field 'add_cross_attention': cross-attention GPT-2 variants are not supported"),
    "multimodal gemma 3": (
        {"model_type": "gemma3", "text_config": {"hidden_size": 2560}},
        "x.json, field 'model_type': 'gemma3': multimodal Gemma 3 (a SigLIP vision tower besides the language model) "
        "is not supported; a text-only Gemma 3 config has model_type 'gemma3_text'"),
    "legacy falcon": (
        {"model_type": "RefinedWeb", "n_head": 128},
        "x.json, field 'model_type': 'RefinedWeb': the legacy Falcon config (remote code); the current tiiuae "
        "config.json has model_type 'falcon'"),
    "unknown model_type": (
        {"model_type": "mamba"},
        "x.json, field 'model_type': unsupported model_type 'mamba'; supported: " + ", ".join(SUPPORTED_MODEL_TYPES)),
    "gpt2 heads do not divide the width": (
        {"model_type": "gpt2", "n_embd": 100, "n_head": 3, "n_layer": 2, "vocab_size": 101},
        "x.json: entry 'gpt2', field 'n_head': (3) must divide n_embd (100): the head width is derived from them"),
    "bert heads do not divide the width": (
        {**_BERT, "num_attention_heads": 3},
        "x.json: entry 'bert', field 'num_attention_heads': (3) must divide hidden_size (64): the head width is "
        "derived from them"),
    "falcon heads do not divide the width": (
        {"model_type": "falcon", "hidden_size": 100, "num_attention_heads": 3, "num_hidden_layers": 2,
         "vocab_size": 101},
        "x.json: entry 'falcon', field 'num_attention_heads': (3) must divide hidden_size (100): the head width is "
        "derived from them"),
    "llama heads do not divide the width": (
        {"model_type": "llama", "hidden_size": 100, "intermediate_size": 128, "num_hidden_layers": 1,
         "num_attention_heads": 3, "vocab_size": 10},
        "x.json: entry 'llama', field 'head_dim': is required when hidden_size (100) is not a multiple of "
        "num_attention_heads (3)"),
    "qwen2_moe top-k above the experts": (
        {"model_type": "qwen2_moe", **{k: TINY[k] for k in REQUIRED_KEYS["qwen2_moe"]}, "num_experts": 2,
         "num_experts_per_tok": 3, "num_key_value_heads": 32},
        "x.json: entry 'qwen2_moe': moe.experts_per_token (3) must not exceed moe.num_experts (2)"),
    "qwen3_moe mlp_only_layers outside the model": (
        {"model_type": "qwen3_moe", **{k: TINY[k] for k in REQUIRED_KEYS["qwen3_moe"]}, "mlp_only_layers": [0, 7]},
        "x.json: entry 'qwen3_moe', field 'mlp_only_layers': holds 7, not a layer index 0..2"),
    "qwen2_moe decoder_sparse_step 0": (
        {"model_type": "qwen2_moe", **{k: TINY[k] for k in REQUIRED_KEYS["qwen2_moe"]}, "decoder_sparse_step": 0},
        "x.json: entry 'qwen2_moe', field 'decoder_sparse_step': must be a positive integer, got 0"),
}


@pytest.mark.parametrize("label", list(REFUSALS))
def test_refusals_are_one_line_naming_the_file_and_field(label):
    config, message = REFUSALS[label]
    with pytest.raises(CatalogError) as info:
        from_hf_config(config, source="x.json")
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_falcon_norms_follow_the_decoder_architecture():
    base = {"model_type": "falcon", "hidden_size": 64, "num_attention_heads": 8, "num_hidden_layers": 2,
            "vocab_size": 101}
    assert from_hf_config(base).norms_per_layer == 1  # old, parallel: input_layernorm only
    assert from_hf_config({**base, "parallel_attn": False}).norms_per_layer == 2
    assert from_hf_config({**base, "new_decoder_architecture": True}).norms_per_layer == 2  # ln_attn + ln_mlp
    eleven_b = {**base, "new_decoder_architecture": True, "num_ln_in_parallel_attn": 1, "num_kv_heads": 2}
    assert from_hf_config(eleven_b).norms_per_layer == 1  # Falcon-11B's single shared LayerNorm
    for config in (base, {**base, "parallel_attn": False}, eleven_b, {**base, "alibi": True}):
        assert count_params(from_hf_config(config)).total == transformers_total(hf_model(config))
    assert from_hf_config(base).num_kv_heads == 1 and from_hf_config({**base, "alibi": True}).position_embedding == "none"


# -- finding configs: directories, the local Hugging Face cache -----------------------------------

_LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
          "num_attention_heads": 4, "vocab_size": 100}


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("gpucost must not open a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def hub(tmp_path, monkeypatch, no_network):
    """An empty fake hub cache named by HF_HUB_CACHE; the other settings cleared."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def snapshot(cache: Path, repo_id: str, commit: str, config: dict, *, mtime: float | None = None) -> Path:
    org, name = repo_id.split("/")
    folder = cache / f"models--{org}--{name}" / "snapshots" / commit
    folder.mkdir(parents=True)
    blob = cache / f"models--{org}--{name}" / "blobs" / f"{commit}-config"
    blob.parent.mkdir(exist_ok=True)
    blob.write_text(json.dumps(config))
    (folder / "config.json").symlink_to(blob)  # the hub cache links snapshots to blobs
    if mtime is not None:
        import os
        os.utime(folder / "config.json", (mtime, mtime), follow_symlinks=False)
        os.utime(blob, (mtime, mtime))
    return folder / "config.json"


def test_a_snapshot_directory_is_read_and_named_after_it(tmp_path, no_network):
    folder = tmp_path / "Llama-Tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_LLAMA))
    arch = load_hf_config(folder)
    assert arch.name == "Llama-Tiny" and resolve_config_path(folder) == folder / "config.json"
    assert load_hf_config(folder / "config.json").name == "Llama-Tiny"  # not "config"
    assert load_hf_config(str(folder), name="given").name == "given"


def test_a_directory_without_config_json_says_so(tmp_path):
    with pytest.raises(InputError) as info:
        load_hf_config(tmp_path)
    assert str(info.value) == f"no config.json in directory {tmp_path}"


def test_an_org_name_id_is_found_in_the_cache_where_refs_main_points(hub):
    snapshot(hub, "acme/tiny-llama", "a" * 40, {**_LLAMA, "num_hidden_layers": 3}, mtime=time.time())
    pinned = snapshot(hub, "acme/tiny-llama", "b" * 40, _LLAMA, mtime=time.time() - 1000)
    (hub / "models--acme--tiny-llama" / "refs").mkdir()
    (hub / "models--acme--tiny-llama" / "refs" / "main").write_text("b" * 40)
    assert resolve_config_path("acme/tiny-llama") == pinned
    arch = load_hf_config("acme/tiny-llama")
    assert (arch.name, arch.num_layers) == ("tiny-llama", 2)
    assert load_hf_config(pinned).name == "tiny-llama"  # a snapshot path inside the cache: the repository's name


def test_without_refs_main_the_newest_snapshot_is_read(hub):
    snapshot(hub, "acme/tiny-llama", "a" * 40, _LLAMA, mtime=time.time() - 1000)
    newest = snapshot(hub, "acme/tiny-llama", "c" * 40, {**_LLAMA, "num_hidden_layers": 5}, mtime=time.time())
    assert resolve_config_path("acme/tiny-llama") == newest
    # a refs/main naming a missing or hostile snapshot is ignored
    (hub / "models--acme--tiny-llama" / "refs").mkdir()
    (hub / "models--acme--tiny-llama" / "refs" / "main").write_text("../../../../etc")
    assert load_hf_config("acme/tiny-llama").num_layers == 5


def test_hf_home_and_the_home_cache_are_used_when_hf_hub_cache_is_not_set(tmp_path, monkeypatch, no_network):
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hf_hub_cache() == (tmp_path / "home" / ".cache" / "huggingface" / "hub", "the default")
    snapshot(tmp_path / "home" / ".cache" / "huggingface" / "hub", "acme/a", "1" * 40, _LLAMA)
    assert load_hf_config("acme/a").name == "a"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hf_hub_cache() == (tmp_path / "hf" / "hub", "HF_HOME")
    snapshot(tmp_path / "hf" / "hub", "acme/b", "2" * 40, _LLAMA)
    assert load_hf_config("acme/b").name == "b"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hf_hub_cache() == (tmp_path / "elsewhere", "HF_HUB_CACHE")


def test_an_id_missing_from_the_cache_says_where_it_looked(hub):
    with pytest.raises(InputError) as info:
        load_hf_config("acme/absent")
    assert str(info.value) == (
        f"'acme/absent' is not a file, and the local Hugging Face cache (HF_HUB_CACHE) has no "
        f"{hub}/models--acme--absent/snapshots/*/config.json; gpucost never downloads: fetch it with "
        "`huggingface-cli download acme/absent config.json` or give the file's path")


def test_a_path_that_is_not_an_id_and_not_a_file_is_not_found(hub, tmp_path):
    with pytest.raises(InputError, match="^config file not found: "):
        load_hf_config(tmp_path / "nowhere" / "config.json")
    with pytest.raises(InputError, match="^config file not found: a/b/c.json$"):
        load_hf_config("a/b/c.json")


# -- hostile input ---------------------------------------------------------------------------


@pytest.mark.parametrize("value, problem", [
    (["llama"], "must be a string, got ['llama']"),
    (7, "must be a string, got 7"),
    ({"a": 1}, "must be a string, got {'a': 1}"),
    ("x" * 500, "unsupported model_type 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...; supported: "),
])
def test_a_model_type_that_is_not_a_known_string_is_one_line(value, problem):
    with pytest.raises(CatalogError) as info:
        from_hf_config({**_LLAMA, "model_type": value}, source="x.json")
    assert str(info.value).startswith(f"x.json, field 'model_type': {problem}") and "\n" not in str(info.value)


@pytest.mark.parametrize("key, value, problem", [
    ("num_hidden_layers", 1e30, "must be a positive integer, got 1e+30"),
    ("num_hidden_layers", 10**9, "must be at most 100,000, got 1000000000"),
    ("num_hidden_layers", 10**100, "must be at most 100,000, got an integer of 333 bits"),
    ("num_hidden_layers", True, "must be a positive integer, got True"),
    ("num_hidden_layers", 2.0, "must be a positive integer, got 2.0"),
    ("hidden_size", 2**24 + 1, "must be at most 16,777,216, got 16777217"),
    ("vocab_size", -5, "must be a positive integer, got -5"),
    ("vocab_size", "32000", "must be a positive integer, got '32000'"),
    ("intermediate_size", float("nan"), "must be a positive integer, got nan"),
    ("tie_word_embeddings", 1, "must be true or false, got 1"),
    ("num_key_value_heads", False, "must be a positive integer, got False"),
    ("head_dim", 1e30, "must be a positive integer, got 1e+30"),
])
def test_every_integer_field_rejects_floats_bools_and_absurd_sizes(key, value, problem):
    with pytest.raises(CatalogError) as info:
        from_hf_config({**_LLAMA, key: value}, source="x.json")
    assert str(info.value) == f"x.json: entry 'llama', field '{key}': {problem}"


@pytest.mark.parametrize("value, problem", [
    ([True], "holds True, not a layer index 0..2"),
    ([-1], "holds -1, not a layer index 0..2"),
    ([1.0], "holds 1.0, not a layer index 0..2"),
    ("0,1", "must be a list of layer indices, got '0,1'"),
])
def test_mlp_only_layers_must_list_layer_indices(value, problem):
    config = {"model_type": "qwen3_moe", **{k: TINY[k] for k in REQUIRED_KEYS["qwen3_moe"]}, "mlp_only_layers": value}
    with pytest.raises(CatalogError) as info:
        from_hf_config(config, source="x.json")
    assert str(info.value) == f"x.json: entry 'qwen3_moe', field 'mlp_only_layers': {problem}"


def test_moe_layer_counts_are_arithmetic_not_a_loop_over_layers():
    moe = MoE(num_experts=8, experts_per_token=2, expert_ffn_size=16, first_k_dense=3, layer_freq=4, layer_offset=3,
              dense_layers=frozenset({7, 11, 12}))
    start = time.perf_counter()
    assert moe.count_moe_layers(10**12) == (10**12 - 4) // 4 + 1 - 2  # 3, 7, 11, ... less the dense 7 and 11
    assert time.perf_counter() - start < 0.1
    for layers in range(1, 40):
        assert moe.count_moe_layers(layers) == sum(moe.is_moe_layer(i) for i in range(layers))
    arch = Architecture(name="big", model_type="qwen3_moe", num_layers=MAX_LAYERS, hidden_size=64, num_heads=4,
                        num_kv_heads=4, head_dim=16, ffn_size=64, vocab_size=10, moe=moe)
    assert arch.num_moe_layers + arch.num_dense_layers == MAX_LAYERS
    with pytest.raises(InputError, match=r"^architecture.num_layers must be at most 100,000, got 1000000000$"):
        Architecture(name="huge", model_type="llama", num_layers=10**9, hidden_size=64, num_heads=4, num_kv_heads=4,
                     head_dim=16, ffn_size=64, vocab_size=10)


def test_architecture_bool_fields_reject_other_types():
    with pytest.raises(InputError, match=r"^architecture.qkv_bias must be true or false, got 1$"):
        Architecture(name="x", model_type="llama", num_layers=1, hidden_size=64, num_heads=4, num_kv_heads=4,
                     head_dim=16, ffn_size=64, vocab_size=10, qkv_bias=1)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_file_errors_name_the_file_in_one_line(tmp_path, monkeypatch):
    cases = {
        write(tmp_path / "latin1.json", b'{"model_type": "caf\xe9"}'):
            "cannot read config file {}: not UTF-8 text (invalid continuation byte at byte 19)",
        tmp_path / "bad\0name.json": "cannot read config file {}: embedded null byte",
    }
    if Path("/proc/self/mem").exists():  # Linux: a file whose read fails (EIO)
        cases[Path("/proc/self/mem")] = "cannot read config file {}: Input/output error"
    for path, message in cases.items():
        with pytest.raises(InputError) as info:
            load_hf_config(path)
        assert str(info.value) == message.format(str(path).replace("\0", "\\x00"))
    long_name = tmp_path / ("x" * 300 + ".json")
    with pytest.raises(InputError) as info:
        load_hf_config(long_name)
    assert str(info.value).startswith(f"cannot read config file {tmp_path}/xxx") and str(info.value).endswith(
        "xxxx.json: File name too long") and len(str(info.value)) < 320
    # Permission: chmod cannot deny root, so the refusal is simulated at open().
    readable = write(tmp_path / "locked.json", json.dumps(_LLAMA).encode())

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    import estimator.model.hf_config as module
    monkeypatch.setattr(module, "open", denied, raising=False)
    with pytest.raises(InputError) as info:
        load_hf_config(readable)
    assert str(info.value) == f"cannot read config file {readable}: Permission denied"


def test_json_errors_are_one_line_catalog_errors_naming_the_file(tmp_path, monkeypatch):
    cases = {
        write(tmp_path / "deep.json", b"[" * 100_000 + b"]" * 100_000): "invalid JSON: nested too deeply",
        write(tmp_path / "broken.json", b'{"model_type": '): "invalid JSON at line 1: Expecting value",
        write(tmp_path / "list.json", b"[1, 2]"): "must be a JSON object (a Hugging Face config.json)",
    }
    for path, problem in cases.items():
        with pytest.raises(CatalogError) as info:
            load_hf_config(path)
        assert str(info.value) == f"{path}: {problem}"
    # 5000 digits: Python >= 3.11 refuses to parse it, 3.10 reads it and the size bound refuses it.
    digits = write(tmp_path / "digits.json", b'{"model_type": "llama", "vocab_size": ' + b"9" * 5000 + b"}")
    with pytest.raises(CatalogError) as info:
        load_hf_config(digits)
    assert str(info.value).startswith(f"{digits}") and "\n" not in str(info.value) and len(str(info.value)) < 200
    import estimator.model.hf_config as module
    monkeypatch.setattr(module, "MAX_CONFIG_BYTES", 64)
    big = write(tmp_path / "big.json", b" " * 65 + json.dumps(_LLAMA).encode())
    with pytest.raises(CatalogError, match=r"big.json: is over 0 MiB: not a config.json$"):
        load_hf_config(big)


def test_a_file_name_with_a_newline_is_shown_escaped(tmp_path):
    path = write(tmp_path / "a\nb.json", b'{"model_type": "mamba"}')
    with pytest.raises(CatalogError) as info:
        load_hf_config(path)
    assert "\n" not in str(info.value) and "a\\nb.json" in str(info.value)
