"""Training memory per device: ZeRO model states, Korthikanti activations, fit checks, device counts."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from estimator.model.arch import Architecture
from estimator.model.hf_config import load_architecture
from estimator.model.params import count_params
from estimator.errors import InputError
from estimator.model.memory import (Parallelism, activation_bytes, activation_bytes_per_layer, fit_check, min_devices, model_state_memory, training_memory)

ARCH_DIR = Path(__file__).resolve().parent.parent / "catalogs" / "architectures"

# GPT-3 175B's shape (Brown et al. 2020, Table 2.1), the model of Korthikanti et al. 2022 Table 3:
# a = 96 heads, h = 12288, L = 96, s = 2048, 4h GELU MLP, learned positions, vocab 51200.
GPT3 = Architecture(name="gpt3-175b", model_type="gpt2", num_layers=96, hidden_size=12288, num_heads=96,
                    num_kv_heads=96, head_dim=128, ffn_size=4 * 12288, vocab_size=51200, gated_ffn=False,
                    position_embedding="learned", max_position_embeddings=2048, qkv_bias=True, attn_out_bias=True,
                    mlp_bias=True, norm="layernorm", tie_embeddings=True)


def arch(model_id: str) -> Architecture:
    found = load_architecture(model_id, ARCH_DIR)
    assert found is not None
    return found


# -- ZeRO ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage, expected_gb", [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.88)])
def test_zero_stages_reproduce_the_papers_figure_1(stage, expected_gb):
    # Rajbhandari et al. 2020 (ZeRO, arXiv 1910.02054) Figure 1: Psi = 7.5B parameters, N_d = 64,
    # K = 12 (mixed-precision Adam): baseline 120GB, P_os 31.4GB, P_os+g 16.6GB, P_os+g+p 1.88GB.
    states = model_state_memory(7.5e9, data_parallel=64, zero_stage=stage)
    assert states.total_bytes / 1e9 == pytest.approx(expected_gb, abs=0.05)


def test_mixed_precision_adam_keeps_16_bytes_per_parameter():
    # ZeRO section 3.1: 2 (fp16 weights) + 2 (fp16 gradients) + 12 (fp32 weights, momentum, variance).
    a = arch("llama-3.1-8b")
    memory = training_memory(a, seq_len=8)
    assert memory.model_states_bytes == 16 * count_params(a).total
    assert (memory.weights_bytes, memory.gradients_bytes) == (2 * 8_030_261_248, 2 * 8_030_261_248)


def test_bytes_per_parameter_are_configurable():
    states = model_state_memory(1e9, weight_bytes=4, grad_bytes=4, optimizer_bytes=8)  # fp32 training, Adam m+v
    assert (states.weights_bytes, states.gradients_bytes, states.optimizer_bytes) == (4e9, 4e9, 8e9)


def test_zero_3_shards_all_states_of_a_real_model_over_data_parallel_ranks():
    a = arch("llama-3.1-70b")
    memory = training_memory(a, seq_len=8, parallel=Parallelism(data=64, zero_stage=3))
    assert memory.model_states_bytes == pytest.approx(16 * 70_553_706_496 / 64)


# -- Korthikanti et al. 2022, Table 2 ------------------------------------------------------------

S, B, H, A, T = 2048, 1, 12288, 96, 8
SBH = S * B * H


@pytest.mark.parametrize("kwargs, coefficient", [
    (dict(tensor=1), 34 + 5 * A * S / H),                                        # no parallelism
    (dict(tensor=T), 10 + 24 / T + 5 * A * S / (H * T)),                         # tensor parallel
    (dict(tensor=T, sequence_parallel=True), 34 / T + 5 * A * S / (H * T)),      # tensor + sequence parallel
    (dict(tensor=T, recompute="selective"), 10 + 24 / T),                        # TP + selective recompute
    (dict(tensor=T, sequence_parallel=True, recompute="selective"), 34 / T),     # TP + SP + selective
    (dict(tensor=1, recompute="full"), 2),                                       # full recompute
])
def test_activations_per_layer_reproduce_korthikanti_table_2(kwargs, coefficient):
    # Korthikanti et al. 2022 (arXiv 2205.05198) Table 2, "activations memory per transformer layer",
    # evaluated for their GPT-3 175B (a = 96, h = 12288, s = 2048, t = 8, micro-batch 1).
    assert activation_bytes_per_layer(GPT3, seq_len=S, micro_batch=B, **kwargs) == pytest.approx(SBH * coefficient)


def test_sequence_parallel_plus_selective_recompute_cuts_activations_about_5x():
    # Korthikanti et al. 2022, abstract and section 5: the two techniques "reduce activation memory
    # by 5x" against tensor parallelism alone: (10 + 24/8 + 5*96*2048/(12288*8)) / (34/8) = 5.4.
    baseline = activation_bytes_per_layer(GPT3, seq_len=S, tensor=T)
    reduced = activation_bytes_per_layer(GPT3, seq_len=S, tensor=T, sequence_parallel=True, recompute="selective")
    assert baseline / reduced == pytest.approx(23 / 4.25)
    assert 5 <= baseline / reduced < 6


def test_gpt3_layer_without_parallelism_needs_2_87_gb():
    # s*b*h*(34 + 5as/h) = 2048 * 12288 * 114 bytes (Table 2, first row) for one GPT-3 layer.
    assert activation_bytes_per_layer(GPT3, seq_len=S) / 1e9 == pytest.approx(2.869, abs=1e-3)


def test_flash_attention_drops_the_score_term_like_selective_recompute():
    flash = activation_bytes_per_layer(GPT3, seq_len=S, tensor=T, flash_attention=True)
    assert flash == activation_bytes_per_layer(GPT3, seq_len=S, tensor=T, recompute="selective")
    assert flash == pytest.approx(SBH * (10 + 24 / T))


def test_gqa_and_gated_ffn_change_the_stored_tensors():
    # Llama 3.1 8B: q 2h, k and v 2*(h/4) each (8 of 32 KV heads), output-projection input 2h; a fused
    # SwiGLU keeps its input (gate and up, 4f) and the product (2f): 10 + 2 + 0.5 + 0.5 + 2 + 6*14336/4096
    # = 36 (s*b*h units). Unfused it also keeps the activation output: 8f, 43, plus the s x s scores.
    a = arch("llama-3.1-8b")
    assert activation_bytes_per_layer(a, seq_len=4096, flash_attention=True) == pytest.approx(4096 * 4096 * 36)
    unfused = activation_bytes_per_layer(a, seq_len=4096, recompute="selective")  # selective drops the scores
    assert unfused == pytest.approx(4096 * 4096 * 43)


def test_pipeline_first_stage_holds_all_layers_worth_of_activations():
    # Korthikanti et al. section 4.2.2: with 1F1B the first stage keeps p micro-batches of L/p layers.
    one = activation_bytes(GPT3, seq_len=S, parallel=Parallelism(tensor=T, sequence_parallel=True))
    eight = activation_bytes(GPT3, seq_len=S, parallel=Parallelism(tensor=T, pipeline=8, sequence_parallel=True))
    assert one[0] == eight[0] == 96 * activation_bytes_per_layer(GPT3, seq_len=S, tensor=T, sequence_parallel=True)
    # Output layer and cross-entropy only where the last stage is also the first (p = 1).
    assert one[1] > eight[1]


def test_moe_layers_store_activations_for_active_experts():
    a = arch("mixtral-8x7b")
    # top-2 of 8 experts of 14336 with a fused SwiGLU: 6 * 2 * 14336 / 4096 = 42, plus 10 + 2 + 0.5 + 0.5 + 2.
    assert activation_bytes_per_layer(a, seq_len=1024, flash_attention=True) == pytest.approx(1024 * 4096 * 57)


# -- parallel layouts ----------------------------------------------------------------------------

def test_tensor_and_pipeline_split_the_model_states():
    a = arch("llama-3.1-405b")
    memory = training_memory(a, seq_len=8, parallel=Parallelism(tensor=8, pipeline=16))
    counts = count_params(a)
    layers = counts.total - counts.breakdown["embedding"] - counts.breakdown["output_head"] - 16384
    # First stage: ceil(126/16) = 8 of 126 layers plus the input embedding, over 8 tensor ranks.
    assert memory.params_per_device == pytest.approx((layers * 8 / 126 + counts.breakdown["embedding"]) / 8)


def test_expert_parallelism_splits_routed_experts_and_zero_shards_them_over_expert_data_ranks():
    a = arch("deepseek-v3")
    counts = count_params(a)
    experts = counts.breakdown["experts"]
    plain = training_memory(a, seq_len=8, parallel=Parallelism(data=64, expert=64, zero_stage=1))
    assert plain.params_per_device == pytest.approx(counts.total - experts + experts / 64)
    # ZeRO-1 over d = 64: dense optimizer states / 64, expert states / (64 / 64) = / 1.
    dense = counts.total - experts
    assert plain.optimizer_bytes == pytest.approx(12 * dense / 64 + 12 * experts / 64)


@pytest.mark.parametrize("kwargs, message", [
    (dict(zero_stage=4), "parallelism.zero_stage must be 0, 1, 2 or 3"),
    (dict(data=4, expert=8), r"parallelism.expert \(8\) must divide parallelism.data \(4\)"),
    (dict(tensor=0), "parallelism.tensor must be a positive integer"),
])
def test_parallelism_rejects_impossible_layouts(kwargs, message):
    with pytest.raises(InputError, match=message):
        Parallelism(**kwargs)


def test_expert_parallelism_needs_a_moe_model():
    with pytest.raises(InputError, match="expert parallelism needs a mixture-of-experts model"):
        training_memory(arch("llama-3.1-8b"), seq_len=8, parallel=Parallelism(data=2, expert=2))


@pytest.mark.parametrize("kwargs, message", [
    (dict(seq_len=0), "seq_len must be a positive integer"),
    (dict(seq_len=8, recompute="some"), "recompute must be one of none, selective, full"),
    (dict(seq_len=8, micro_batch=0), "micro_batch must be a positive integer"),
    (dict(seq_len=8, weight_bytes=float("nan")), "weight_bytes must be a finite, non-negative number"),
    (dict(seq_len=8, optimizer_bytes=float("inf")), "optimizer_bytes must be a finite, non-negative number"),
    (dict(seq_len=8, grad_bytes=-2), "grad_bytes must be a finite, non-negative number"),
    (dict(seq_len=8, parallel=Parallelism(tensor=5)), "tensor parallel size 5 must divide the 12 attention heads"),
    (dict(seq_len=8, parallel=Parallelism(pipeline=64)), "pipeline parallel size 64 exceeds the 12 layers"),
])
def test_training_memory_rejects_bad_inputs(kwargs, message):
    with pytest.raises(InputError, match=message):
        training_memory(arch("gpt2-small"), **kwargs)


# -- fit check and minimum devices ---------------------------------------------------------------

def test_fit_check_reads_the_datasheet_size_as_gib_and_subtracts_the_reserve():
    # An "80GB" card holds 80 GiB: nvidia-smi reports 81,920 MiB on an A100 80GB (and 81,559 MiB, the
    # same within the reserve, on an H100 80GB).
    memory = training_memory(arch("gpt2-small"), seq_len=1024)
    fit = fit_check(memory, 80, reserve_gb=2)
    usable = 81920 * 2**20 - 2e9
    assert fit.usable_bytes == usable and fit.fits and fit.headroom_bytes == usable - memory.total_bytes
    with pytest.raises(InputError, match="reserve_gb"):
        fit_check(memory, 80, reserve_gb=80)


def test_gpt2_small_trains_on_one_24gb_card():
    plan = min_devices(arch("gpt2-small"), 24, seq_len=1024, micro_batch=8, flash_attention=True)
    assert plan.num_devices == 1 and plan.fit.fits


def test_min_devices_with_zero_3_data_parallel_only_is_the_smallest_sharding_that_fits():
    a = arch("llama-3.1-8b")
    plan = min_devices(a, 80, seq_len=8192, zero_stage=3, recompute="full", tensor=1, pipeline=1)
    act = training_memory(a, seq_len=8192, recompute="full").activations_bytes
    expected = math.ceil(16 * count_params(a).total / (80 * 2**30 - 2e9 - act))
    assert plan.num_devices == expected == 2
    assert plan.parallel == Parallelism(data=2, zero_stage=3)


def test_min_devices_is_minimal_over_the_searched_layouts():
    a = arch("llama-3.1-70b")
    plan = min_devices(a, 80, seq_len=8192, recompute="selective", flash_attention=True, sequence_parallel=True)
    assert plan.fit.fits
    for t in (1, 2, 4, 8):
        for p in (1, 2, 4, 5, 8, 10, 16, 20, 40, 80):
            if t * p < plan.num_devices:
                par = Parallelism(tensor=t, pipeline=p, sequence_parallel=t > 1)
                mem = training_memory(a, seq_len=8192, parallel=par, recompute="selective", flash_attention=True)
                assert not fit_check(mem, 80).fits


def test_min_devices_reports_when_no_layout_fits():
    huge_batch = dict(seq_len=131072, micro_batch=64)
    with pytest.raises(InputError, match="no layout up to 64 devices"):
        min_devices(arch("llama-3.1-8b"), 24, max_devices=64, **huge_batch)


def test_moe_min_devices_uses_expert_parallelism():
    a = arch("mixtral-8x7b")
    plan = min_devices(a, 80, seq_len=4096, zero_stage=1, recompute="selective", flash_attention=True,
                       sequence_parallel=True)
    assert plan.fit.fits and plan.num_devices <= 16
    dense_only = min_devices(replace(a, moe=replace(a.moe)), 80, seq_len=4096, zero_stage=1, recompute="selective",
                             flash_attention=True, sequence_parallel=True, expert=1)
    assert plan.num_devices <= dense_only.num_devices


def test_torchtitans_selective_policy_keeps_every_other_matmul_output():
    """torchtitan's op-level selective checkpointing (pytorch/torchtitan llama3 parallelize.py: "Saves output
    of all compute ops, except every second mm") keeps, of a Llama block's wq, wk, wv, wo, w1, w3, w2, the
    1st, 3rd, 5th and 7th outputs, with the block input, SDPA's output and its fp32 log-sum-exp."""
    from estimator.model.memory import layer_linears

    llama = arch("llama-3.1-8b")  # h 4096, 8 KV heads of 128, SwiGLU 14336
    assert [(n, saved) for n, _, _, saved in layer_linears(llama)] == [
        ("wq", True), ("wk", False), ("wv", True), ("wo", False), ("w1", True), ("w3", False), ("w2", True)]
    h, kv, f, heads = 4096, 1024, 14336, 32
    per_token = 2 * h + 2 * h + 4 * heads + 2 * h + 2 * kv + 2 * f + 2 * h  # input, SDPA out, lse, wq, wv, w1, w2
    got = activation_bytes_per_layer(llama, seq_len=8192, micro_batch=2, recompute="selective",
                                     flash_attention=True, selective="alternate_matmuls")
    assert got == pytest.approx(per_token * 8192 * 2)
    megatron = activation_bytes_per_layer(llama, seq_len=8192, micro_batch=2, recompute="selective",
                                          flash_attention=True)
    assert got < 0.5 * megatron
    with pytest.raises(InputError, match="selective must be one of"):
        activation_bytes_per_layer(llama, seq_len=8192, selective="every_third")


def test_torchtitans_selective_policy_reruns_the_unsaved_matmuls():
    """Under --stack fsdp, --recompute selective reruns wk, wo and w3: their FLOPs' share of a Llama
    block's matmuls (each 2 x input width x output width per token)."""
    from estimator.timing.step import recomputed_matmul_share

    llama = arch("llama-3.1-8b")
    h, kv, f = 4096, 1024, 14336
    share = (h * kv + h * h + h * f) / (h * h + 2 * h * kv + h * h + 3 * h * f)
    assert recomputed_matmul_share(llama) == pytest.approx(share)
