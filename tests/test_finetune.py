"""Fine-tuning (full, LoRA, QLoRA): adapters, frozen-weight precision, FLOPs, memory, step time,
fine-tuning defaults, and what a run that does not fit is told. Published memory figures are
pinned with their sources."""

from __future__ import annotations

import pytest

from estimator.catalog.core import load_catalog
from estimator.errors import InputError
from estimator.estimate import estimate
from estimator.model.finetune import NF4_BITS_PER_PARAM, finetune_spec
from estimator.model.flops import flops_per_token
from estimator.model.hf_config import architecture_for_model
from estimator.model.memory import GB, capacity_bytes, fit_check, min_devices, training_memory
from estimator.request import EstimateRequest

CATALOG = load_catalog()


def arch(model_id: str):
    return architecture_for_model(CATALOG.model(model_id), CATALOG.directory / "architectures")


def usable_gb(gpu: str) -> float:
    return capacity_bytes(CATALOG.accelerator(gpu).memory_gb) / GB - 2.0


# -- the adapters and the frozen weights -------------------------------------------------------------


def test_nf4_with_double_quantisation_is_4_127_bits():
    # Dettmers et al. 2023 (QLoRA, arXiv 2305.14314) section 3, Double Quantization: the constants
    # cost 8/64 + 32/(64*256) = 0.127 bits per parameter on top of the 4-bit weights.
    assert NF4_BITS_PER_PARAM == pytest.approx(4.127, abs=5e-4)


def test_lora_adapter_parameters_are_r_times_d_in_plus_d_out():
    a = arch("llama-3.1-8b")  # h 4096, 8 KV heads of 128 (kv 1024), FFN 14336, 32 layers
    spec = finetune_spec(a, "lora", rank=16, targets=("q", "v"))
    per_layer = 16 * (4096 + 4096) + 16 * (4096 + 1024)
    assert spec.trainable_params == 32 * per_layer
    default = finetune_spec(a, "lora")
    assert default.rank == 16 and default.targets == ("q", "k", "v", "o", "gate", "up", "down")
    full_layer = 16 * ((4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 3)
    assert default.trainable_params == 32 * full_layer


def test_lora_paper_gpt3_175b_training_memory_and_checkpoint_size():
    # Hu et al. 2021 (LoRA, arXiv 2106.09685) section 4.2, "Practical Benefits and Limitations": on
    # GPT-3 175B "we reduce the VRAM consumption during training from 1.2TB to 350GB. With r = 4 and
    # only the query and value projection matrices being adapted, the checkpoint size is reduced by
    # roughly 10,000x (from 350GB to 35MB)".
    a = arch("gpt3-175b")
    spec = finetune_spec(a, "lora", rank=4, targets=("q", "v"))
    checkpoint_mb = spec.trainable_params * 2 / 1e6  # bf16/fp16 adapters
    assert checkpoint_mb == pytest.approx(35, rel=0.10)
    mem = training_memory(a, seq_len=2048, micro_batch=1, recompute="full", flash_attention=True, finetune=spec)
    assert mem.model_states_bytes / GB == pytest.approx(350, rel=0.05)
    full = training_memory(a, seq_len=2048, micro_batch=1, recompute="full", flash_attention=True)
    assert full.model_states_bytes > 3 * mem.model_states_bytes  # the paper's 1.2 TB vs 350 GB, at least


def test_qlora_keeps_embedding_and_head_in_bf16_and_the_blocks_in_nf4():
    a = arch("llama-3.1-8b")
    spec = finetune_spec(a, "qlora")
    embedding_and_head = 2 * 128256 * 4096
    assert spec.frozen_params - spec.quantized_params == pytest.approx(embedding_and_head, rel=0.01)  # + norms
    assert spec.frozen_weight_bytes == pytest.approx(spec.quantized_params * 4.127 / 8 + embedding_and_head * 2,
                                                     rel=0.001)


# -- FLOPs -------------------------------------------------------------------------------------------


def test_frozen_weights_skip_their_weight_gradients():
    # forward 2N + input gradient 2N, no weight gradient 2N: 4 of 6 per frozen weight per token;
    # attention scores keep 3 x; adapters add 6 x r x (d_in + d_out).
    a = arch("llama-3.1-8b")
    fpt = flops_per_token(a, 2048)
    spec = finetune_spec(a, "lora")
    linear = fpt.forward - fpt.breakdown["attention_scores"]
    expected = 2 * linear + 3 * fpt.breakdown["attention_scores"] + 6 * spec.trainable_params
    assert spec.train_model_per_token(fpt.train_model) == pytest.approx(expected, rel=1e-9)
    assert finetune_spec(a, "full").train_model_per_token(fpt.train_model) == fpt.train_model


# -- memory: the Must-show cases and published figures --------------------------------------------------


def test_lora_of_llama31_8b_rank16_seq2048_fits_one_h100():
    est = estimate(model="llama-3.1-8b", gpu="h100-sxm", num_gpus=1, finetune="lora", seq_len=2048)
    best = est.to_dict()["layouts"][0]
    assert best["layout"]["data_parallel"] == 1
    assert best["memory_gb"] <= usable_gb("h100-sxm")
    assert 0 < est.to_dict()["mfu"] <= 1 and 0 < best["mfu"] <= 1
    assert any("LoRA" in a and "rank 16" in a for a in est.assumptions)


def test_qlora_of_llama_65b_fits_one_48gb_gpu():
    # Dettmers et al. 2023 (QLoRA, arXiv 2305.14314), abstract: QLoRA "reduces memory usage enough to
    # finetune a 65B parameter model on a single 48GB GPU". The paper's Guanaco 65B setting: rank 64
    # on every linear layer, 1 sequence per step with gradient checkpointing, 512-token targets
    # (the artidoro/qlora Guanaco scripts).
    for rank in (64, None):
        est = estimate(model="llama-65b", gpu="l40s", num_gpus=1, finetune="qlora", lora_rank=rank, seq_len=512,
                       micro_batch=1, recompute="full", dataset="oasst1")
        best = est.to_dict()["layouts"][0]
        assert best["layout"]["data_parallel"] == 1
        assert best["memory_gb"] <= usable_gb("l40s") <= 48 * 2**30 / GB
    a = arch("llama-65b")
    lora_bf16 = training_memory(a, seq_len=512, recompute="full", flash_attention=True, finetune=finetune_spec(a, "lora"))
    assert not fit_check(lora_bf16, 48).fits  # bf16 weights alone are 130 GB: it takes the 4-bit ones


@pytest.mark.parametrize("method, published_gb", [("lora", 21.3), ("qlora", 12.3)])
def test_torchtune_published_peak_memory_llama2_7b(method, published_gb):
    # pytorch/torchtune README.md, memory table: Llama2-7B on 1 x RTX 4090, batch size 4, sequence
    # length 2048: LoRA 21.3 GB, QLoRA 12.3 GB peak memory per GPU (single-device recipes with
    # activation checkpointing; rank 8 on the attention and MLP projections). A measured peak also
    # holds the allocator's cache, the fp32 logits' gradient and the recomputed layer's gradients,
    # which the model leaves out: it must sit below the published peak and within 35% of it.
    a = arch("llama-2-7b")
    spec = finetune_spec(a, method, rank=8, targets=("q", "k", "v", "o", "gate", "up", "down"))
    mem = training_memory(a, seq_len=2048, micro_batch=4, recompute="full", flash_attention=True, finetune=spec)
    assert 0.65 * published_gb <= mem.total_bytes / GB <= published_gb
    assert fit_check(mem, 24).fits  # an RTX 4090's 24 GB, as published


def test_torchtune_published_lora_throughput_llama2_7b_within_the_step_model_band():
    # pytorch/torchtune README, the same table: Llama2-7B LoRA on 1 x RTX 4090, batch 4 x 2048,
    # 2,582 tokens/s (no torch.compile; the QLoRA row's 3,155 tokens/s is with torch.compile, whose
    # fused dequantisation the model does not describe). Not fitted on: a hold-out for the step model
    # within its stated +-15% band.
    d = estimate(model="llama-2-7b", finetune="lora", lora_rank=8, gpu="rtx-4090", num_gpus=1, seq_len=2048,
                 global_batch=4, micro_batch=4, recompute="full", dataset="alpaca").to_dict()
    assert d["tokens_per_s"] == pytest.approx(2582, rel=0.15)


def test_full_finetune_of_llama31_8b_does_not_fit_one_h100_and_needs_two():
    a = arch("llama-3.1-8b")
    full = finetune_spec(a, "full")
    mem = training_memory(a, seq_len=2048, recompute="full", flash_attention=True, finetune=full)
    assert mem.model_states_bytes / GB == pytest.approx(16 * 8.03, rel=0.01)  # AdamW: 16 bytes per parameter
    assert not fit_check(mem, 80).fits
    fewest = min_devices(a, 80, seq_len=2048, zero_stage=3, recompute="full", flash_attention=True,
                         sequence_parallel=True, finetune=full)
    assert fewest.num_devices >= 2
    with pytest.raises(InputError) as err:
        estimate(model="llama-3.1-8b", gpu="h100-sxm", num_gpus=1, finetune="full", seq_len=2048)
    text = str(err.value)
    assert f"the fewest that fit: {fewest.num_devices} devices" in text
    assert "--finetune lora" in text and "--finetune qlora" in text and "--recompute full" in text
    assert "8-bit AdamW" in text
    # asked without --num-gpus, the answer is on the fewest devices that hold it: at least two
    d = estimate(model="llama-3.1-8b", gpu="h100-sxm", finetune="full", seq_len=2048).to_dict()
    assert d["num_gpus"] >= 2 and d["layouts"][0]["memory_gb"] <= usable_gb("h100-sxm")
    lora = estimate(model="llama-3.1-8b", gpu="h100-sxm", finetune="lora", seq_len=2048).to_dict()
    assert lora["num_gpus"] == 1


def test_advice_never_repeats_an_option_already_given():
    with pytest.raises(InputError) as err:
        estimate(model="llama-3.1-8b", gpu="h100-sxm", num_gpus=1, finetune="full", seq_len=2048, recompute="full")
    advice = str(err.value).split("on 1 device:")[1]
    assert "--recompute" not in advice and "--finetune lora" in advice
    with pytest.raises(InputError) as err:
        estimate(model="llama-65b", gpu="rtx-4090", num_gpus=1, finetune="qlora", seq_len=2048, recompute="full")
    text = str(err.value)
    assert "the fewest that fit" in text
    advice = text.split("(--num-gpus, or leave it out for the fewest)")[1]
    assert "--finetune" not in advice and "--recompute" not in advice


# -- the step --------------------------------------------------------------------------------------


def _step(method: str, **layout) -> dict:
    d = estimate(model="llama-3.1-8b", gpu="h100-sxm", num_gpus=8, finetune=method, seq_len=2048, **layout).to_dict()
    assert 0 < d["mfu"] <= 1 and 0 < d["layouts"][0]["mfu"] <= 1
    return d


def test_a_lora_step_costs_055_to_085_of_a_full_finetuning_step():
    # on the layout the full fine-tune chooses (the fastest that fits 8 x H100), and on a fixed one
    full = _step("full")
    layout = full["layouts"][0]["layout"]
    fixed = {k: layout[k] for k in ("tensor_parallel", "pipeline_parallel", "zero_stage", "micro_batch", "recompute")}
    lora = _step("lora", **fixed)
    assert lora["layouts"][0]["layout"] == layout
    assert 0.55 <= lora["step_time_s"] / full["step_time_s"] <= 0.85
    pinned = dict(tensor_parallel=1, pipeline_parallel=1, zero_stage=1, micro_batch=2, recompute="none")
    assert 0.55 <= _step("lora", **pinned)["step_time_s"] / _step("full", **pinned)["step_time_s"] <= 0.85


def test_lora_saves_less_at_micro_batch_1_with_full_recompute():
    # the frozen weights' gradients saved shrink with the micro-batch while the adapters' small
    # kernels (2 forward, 4 backward per adapted matrix) keep their launch cost: the saving shrinks
    pinned = dict(tensor_parallel=1, pipeline_parallel=1, zero_stage=1, recompute="full")
    ratio = {b: _step("lora", micro_batch=b, **pinned)["step_time_s"] / _step("full", micro_batch=b, **pinned)["step_time_s"]
             for b in (1, 4)}
    assert ratio[4] < ratio[1] < 1


def test_qlora_step_pays_for_dequantisation():
    runs = {m: estimate(model="llama-3.1-8b", gpu="h100-sxm", num_gpus=1, finetune=m, seq_len=2048, micro_batch=1,
                        recompute="full", global_batch=8).to_dict()["step_time_s"] for m in ("lora", "qlora")}
    assert runs["qlora"] > runs["lora"]


# -- fine-tuning defaults ------------------------------------------------------------------------------


def test_bert_base_on_squad_uses_a_finetuning_batch():
    # Devlin et al. 2018 (BERT, arXiv 1810.04805) section 4.2: SQuAD v1.1 fine-tuned with a batch of 32.
    est = estimate(model="bert-base", dataset="squad", epochs=2, gpu="a100-sxm-80gb", num_gpus=8)
    d = est.to_dict()
    batch = d["layouts"][0]["layout"]["global_batch"]
    assert batch <= 256 and batch == 32
    assert d["seq_len"] == 384 and d["samples"] == pytest.approx(2 * 87599)
    assert any("fine-tuning set" in a for a in est.assumptions)


def test_a_finetune_does_not_inherit_the_pretraining_tokens():
    est = estimate(model="llama-3.1-8b", gpu="h100-sxm", num_gpus=1, finetune="lora")
    d = est.to_dict()
    assert d["seq_len"] == 2048
    assert d["tokens"] == pytest.approx(52002 * 2048)  # one epoch of Alpaca, said in the warnings
    assert any("alpaca" in w for w in d["warnings"])
    assert d["layouts"][0]["layout"]["global_batch"] == 32


def test_dataset_length_and_published_batch():
    d = estimate(model="llama-3.1-8b", gpu="h100-sxm", num_gpus=1, finetune="qlora", dataset="alpaca",
                 epochs=3).to_dict()
    assert d["seq_len"] == 512 and d["layouts"][0]["layout"]["global_batch"] == 128
    assert d["samples"] == pytest.approx(3 * 52002)


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, message", [
    (dict(model="llama-3.1-8b", lora_rank=8), "add --finetune lora"),
    (dict(model="llama-3.1-8b", finetune="full", lora_targets="q"), "add --finetune lora"),
    (dict(model="llama-3.1-8b", finetune="lora", lora_targets="q,vv"), "did you mean 'v'"),
    (dict(model="llama-3.1-8b", finetune="dora"), "use one of full, lora, qlora"),
    (dict(params="7B", tokens="1B", finetune="lora"), "needs a model with an architecture"),
    (dict(model="llama-3.1-8b", finetune="lora", lora_rank=0), "--lora-rank"),
])
def test_bad_finetune_input_is_one_clear_error(options, message):
    with pytest.raises(InputError, match=None) as err:
        estimate(EstimateRequest(**options))
    assert message in str(err.value)


def test_cli_finetune_error_is_one_line(cli):
    result = cli("estimate", "--model", "llama-3.1-8b", "--finetune", "lora", "--lora-targets", "qq")
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "--lora-targets" in result.stderr


def test_moe_frozen_weights_are_held_once_across_the_devices():
    # ZeRO 3 over 8 ranks with the experts over 8 expert-parallel ranks: the frozen weights and the
    # adapters add up to one copy of each over the devices (no expert share divided twice)
    from estimator.model.memory import Parallelism

    a = arch("mixtral-8x7b")
    for method in ("lora", "qlora"):
        spec = finetune_spec(a, method)
        mem = training_memory(a, seq_len=2048, recompute="full", flash_attention=True, finetune=spec,
                              parallel=Parallelism(data=8, expert=8, zero_stage=3))
        held = spec.frozen_weight_bytes + 2 * spec.trainable_params
        assert 8 * mem.weights_bytes == pytest.approx(held, rel=0.01)
    with pytest.raises(InputError, match="no layout of 8 x h100-sxm"):
        estimate(model="deepseek-v3", finetune="lora", gpu="h100-sxm", num_gpus=8)  # 1.34 TB of bf16 weights


def test_finetune_composes_with_the_hugging_face_stack():
    # --stack hf (eager transformers modules, what most fine-tunes run): LoRA of Llama 3.1 8B fits one
    # H100, and on the same FSDP layout a LoRA step is cheaper than a full one and holds far less
    one = estimate(model="llama-3.1-8b", gpu="h100-sxm", num_gpus=1, finetune="lora", stack="hf", seq_len=2048)
    assert one.to_dict()["layouts"][0]["memory_gb"] <= usable_gb("h100-sxm")
    layout = dict(zero_stage=3, micro_batch=2, recompute="full")
    runs = {m: estimate(model="llama-3.1-8b", gpu="h100-sxm", num_gpus=8, finetune=m, stack="hf", seq_len=2048,
                        **layout).to_dict() for m in ("full", "lora")}
    assert runs["lora"]["step_time_s"] < runs["full"]["step_time_s"]
    assert runs["lora"]["layouts"][0]["memory_gb"] < 0.5 * runs["full"]["layouts"][0]["memory_gb"]
    assert all(0 < r["mfu"] <= 1 for r in runs.values())
