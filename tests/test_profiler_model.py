"""The model profile (profiler/model.py): a torch model built from an Architecture has exactly the
counted parameters and the counted FLOPs, `profile_model` returns a valid calibration `model`
section, fewer layers are timed when memory is short, and `gpucost profile --model` reports
unknown and unsupported models in one line. Tiny configs only; nothing asserts a speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count  # noqa: E402

from estimator.model.arch import Architecture, MoE  # noqa: E402
from estimator.model.hf_config import load_architecture  # noqa: E402
from estimator.model.params import count_params  # noqa: E402
from estimator.records.calibration import validate_calibration  # noqa: E402
from estimator.model.flops import flops_per_token  # noqa: E402
from profiler import model as model_module  # noqa: E402
from profiler.device import describe_cpu  # noqa: E402
from profiler.model import (MEMORY_FRACTION, build_model, choose_layers, num_params, plan_dtypes,  # noqa: E402
                            profile_model, training_step_bytes, truncated, unsupported_reason)
from profiler.run import make_plan, run_profile  # noqa: E402

ARCH_DIR = Path(__file__).resolve().parent.parent / "catalogs" / "architectures"
CPU = torch.device("cpu")
aten = torch.ops.aten


def tiny(**overrides) -> Architecture:
    """Llama-style: GQA (8 query heads, 2 key/value heads), SwiGLU, rotary, RMSNorm, untied head."""
    fields = dict(name="tiny-llama", model_type="llama", num_layers=4, hidden_size=64, num_heads=8, num_kv_heads=2,
                  head_dim=8, ffn_size=96, vocab_size=101, max_position_embeddings=64, default_seq_len=32)
    fields.update(overrides)
    return Architecture(**fields)


TINY = {
    "llama: GQA, SwiGLU, untied head": tiny(),
    "qwen2: q/k/v biases": tiny(model_type="qwen2", qkv_bias=True),
    "qwen3: q/k norms, tied head": tiny(model_type="qwen3", qk_norm=True, tie_embeddings=True),
    "gpt2: learned positions, LayerNorm, GELU, biases, tied head": tiny(
        model_type="gpt2", num_kv_heads=8, gated_ffn=False, tie_embeddings=True, position_embedding="learned",
        qkv_bias=True, attn_out_bias=True, mlp_bias=True, norm="layernorm"),
    "mixtral: top-2 of 4 experts": tiny(model_type="mixtral", moe=MoE(num_experts=4, experts_per_token=2,
                                                                      expert_ffn_size=48)),
    "deepseek-style MoE without MLA: shared expert, dense first layer, selection bias": tiny(
        moe=MoE(num_experts=4, experts_per_token=2, expert_ffn_size=32, num_shared_experts=1, shared_ffn_size=32,
                first_k_dense=1, router_bias=True)),
}


# -- parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", ["gpt2-small", "llama-3.1-8b", "mixtral-8x7b", "qwen2.5-72b"])
def test_built_model_on_meta_device_has_exactly_the_counted_parameters(model_id):
    arch = load_architecture(model_id, ARCH_DIR)
    with torch.device("meta"):
        model = build_model(arch)
    assert num_params(model) == count_params(arch).total


@pytest.mark.parametrize("label", list(TINY))
def test_built_tiny_model_has_exactly_the_counted_parameters(label):
    arch = TINY[label]
    assert num_params(build_model(arch)) == count_params(arch).total


def test_built_stack_of_fewer_layers_has_the_parameters_of_the_truncated_architecture():
    arch = TINY["mixtral: top-2 of 4 experts"]
    assert num_params(build_model(arch, num_layers=2)) == count_params(truncated(arch, 2)).total


# -- FLOPs ---------------------------------------------------------------------------------------


def _sdpa_forward(query, key, value, *args, **kwargs):
    return sdpa_flop_count(query, key, value)


def _sdpa_backward(grad_out, query, key, value, *args, **kwargs):
    return sdpa_backward_flop_count(grad_out, query, key, value)


# On a CPU, SDPA runs a flash kernel FlopCounterMode has no formula for; count it with torch's own
# SDPA formulas (the ones it uses for the CUDA flash / efficient kernels).
CPU_SDPA = {aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_forward,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward}


@pytest.mark.parametrize("label", list(TINY))
def test_training_step_flops_counted_by_torch_match_the_detailed_training_model_flops(label):
    arch = TINY[label]
    model = build_model(arch)
    batch, seq_len = 2, 32
    ids = torch.randint(0, arch.vocab_size, (batch, seq_len + 1), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False, custom_mapping=CPU_SDPA) as counter:
        logits = model(ids[:, :-1])
        torch.nn.functional.cross_entropy(logits.reshape(-1, arch.vocab_size), ids[:, 1:].reshape(-1)).backward()
    counted = counter.get_total_flops()
    expected = flops_per_token(arch, seq_len)
    tokens = batch * seq_len
    fused = any("attention" in str(op) for op in counter.get_flop_counts()["Global"])
    # A fused attention backward recomputes the scores (QK^T) and torch counts that: 5 attention
    # matmuls backward where the model-FLOPs convention counts 4 (2 x forward, no recomputation).
    recompute = expected.breakdown["attention_scores"] / 2 * tokens if fused else 0.0
    assert counted == pytest.approx(expected.train_model * tokens + recompute, rel=1e-9)
    assert counted == pytest.approx(expected.train_model * tokens, rel=0.02)


# -- what cannot be built ------------------------------------------------------------------------


def test_mla_attention_is_reported_as_not_supported_yet():
    arch = load_architecture("deepseek-v3", ARCH_DIR)
    assert unsupported_reason(arch).startswith("profiling MLA attention is not supported yet; ")
    with pytest.raises(Exception, match="MLA attention is not supported yet"):
        build_model(arch, num_layers=1)


def test_encoder_is_reported_as_not_supported():
    assert "encoder" in unsupported_reason(load_architecture("bert-base", ARCH_DIR))


# -- memory-driven choices -----------------------------------------------------------------------


def test_layer_count_drops_to_what_fits_in_a_small_memory_budget():
    arch = tiny(num_layers=6)
    two_layers = training_step_bytes(truncated(arch, 2), seq_len=32, micro_batch=1, dtype="fp32")
    three_layers = training_step_bytes(truncated(arch, 3), seq_len=32, micro_batch=1, dtype="fp32")
    assert choose_layers(arch, seq_len=32, dtypes=["fp32"], usable_bytes=(two_layers + three_layers) / 2) == 2
    assert choose_layers(arch, seq_len=32, dtypes=["fp32"], usable_bytes=1e12) == 6
    assert choose_layers(arch, seq_len=32, dtypes=["fp32"], usable_bytes=1e12, max_layers=4) == 4
    with pytest.raises(Exception, match="does not fit"):
        choose_layers(arch, seq_len=32, dtypes=["fp32"], usable_bytes=1000)


def test_profile_model_times_fewer_layers_when_memory_is_short_and_counts_their_flops():
    arch = tiny(num_layers=6)
    need = training_step_bytes(truncated(arch, 2), seq_len=32, micro_batch=1, dtype="fp32")
    section = profile_model(arch, model_id="tiny", device=CPU, dtype="fp32", micro_batch=1, time_budget_s=0.05,
                            min_iters=2, free_bytes=int(need / MEMORY_FRACTION) + 1)
    assert (section["layers_timed"], section["num_layers"]) == (2, 6)
    result = section["results"]["fp32"]
    assert result["flops_per_token"] == flops_per_token(truncated(arch, 2), 32).train_model
    assert "timed 2 of 6 layers" in section["notes"][0]


# -- the section and the record ------------------------------------------------------------------


def test_profile_model_section_passes_the_calibration_schema():
    arch = TINY["llama: GQA, SwiGLU, untied head"]
    info = describe_cpu()
    dtypes, skipped = plan_dtypes(info, None)
    assert dtypes == ["fp32", "bf16"] and "--dtype bf16" in skipped["bf16"]

    def job(progress):
        return profile_model(arch, model_id="tiny-llama", source="tests", device=CPU, dtype=dtypes, skipped=skipped,
                             time_budget_s=0.05, min_iters=2, progress=progress)

    messages = []
    record = run_profile(make_plan(info, ["fp32"], sweep=False), CPU, info, command="test", model=job,
                         progress=lambda done, total, label: messages.append(label))
    validate_calibration(record)
    section = record["model"]
    assert section["id"] == "tiny-llama" and section["seq_len"] == 32
    assert section["layers_timed"] == section["num_layers"] == 4
    assert section["micro_batch"] >= 1 and section["micro_batch"] & (section["micro_batch"] - 1) == 0
    fp32 = section["results"]["fp32"]
    assert fp32["iterations"] >= 2
    assert fp32["worst_tflops"] <= fp32["median_tflops"] <= fp32["best_tflops"]
    assert fp32["tokens_per_s"] * fp32["flops_per_token"] / 1e12 == pytest.approx(fp32["median_tflops"], rel=1e-4)
    assert section["results"]["bf16"] == {"skipped": skipped["bf16"]}
    assert record["matmul"] == {} and record["mlp"] == {} and "--sweep" in record["bandwidth"]["skipped"]
    assert any(label.startswith("model: ") for label in messages)


def test_profile_model_uses_the_micro_batch_it_is_given_and_rejects_fp8():
    section = profile_model(tiny(num_layers=1), model_id="t", device=CPU, dtype=["fp32", "fp8"], micro_batch=3,
                            seq_len=16, time_budget_s=0.01, min_iters=1)
    assert (section["micro_batch"], section["seq_len"]) == (3, 16)
    assert "skipped" in section["results"]["fp8"]


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture
def profile_cli(cli, monkeypatch, tmp_path):
    """The `cli` runner, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    return cli


def test_profile_unknown_model_suggests_close_names(profile_cli):
    result = profile_cli("profile", "--device", "cpu", "--model", "gpt2-smal")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: unknown model 'gpt2-smal'; did you mean 'gpt2-small'")


def test_profile_model_without_architecture_suggests_hf_config(profile_cli):
    result = profile_cli("profile", "--device", "cpu", "--model", "bloom-176b")
    assert result.exit_code == 2
    assert "has no architecture" in result.stderr and "--hf-config" in result.stderr


def test_profile_mla_model_says_it_is_not_supported_yet(profile_cli):
    result = profile_cli("profile", "--device", "cpu", "--model", "deepseek-v3")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: profiling MLA attention is not supported yet; ")
    assert not Path("gpucost-calibration.yaml").exists()


@pytest.mark.parametrize("args, message", [
    (("--seq-len", "128"), "--seq-len applies to a model profile; add --model NAME or --hf-config PATH"),
    (("--model", "gpt2-small", "--hf-config", "config.json"), "give --model NAME or --hf-config PATH, not both"),
    (("--model", "gpt2-small", "--micro-batch", "0"), "--micro-batch must be a positive integer, got 0"),
    (("--model", "gpt2-small", "--seq-len", "4096"), "seq_len 4096 exceeds gpt2-small's 1024 learned positions"),
])
def test_profile_model_option_errors_are_one_line(profile_cli, args, message):
    result = profile_cli("profile", "--device", "cpu", *args)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: {message}"


def test_profile_hf_config_runs_only_the_model_step_and_writes_it(profile_cli, monkeypatch, tmp_path):
    monkeypatch.setattr(model_module, "DEFAULT_TIME_BUDGET_S", {"cpu": 0.05, "gpu": 0.05})
    config = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 2,
              "num_hidden_layers": 2, "intermediate_size": 96, "vocab_size": 101, "max_position_embeddings": 64}
    (tmp_path / "tiny-llama.json").write_text(json.dumps(config))
    result = profile_cli("profile", "--device", "cpu", "--hf-config", "tiny-llama.json", "--seq-len", "16",
                         "--format", "json", "--quiet", "--output", "cal.yaml")
    assert result.exit_code == 0, result.stderr
    record = result.json()
    assert record["model"]["id"] == "tiny-llama" and record["model"]["source"] == "tiny-llama.json"
    assert record["model"]["seq_len"] == 16 and "median_tflops" in record["model"]["results"]["fp32"]
    assert "--hf-config tiny-llama.json --seq-len 16" in record["command"]
    assert record["matmul"] == {} and result.stderr == ""
    from estimator.records.calibration import read_calibration

    assert read_calibration("cal.yaml")["model"] == record["model"]
