"""A calibration file answers the estimate of the model it measured, and keeps the physics of scale.

Fixtures: real files from one H200 (tests/data/h200-2026-12/configs/README.md says what each is).
The Hugging Face Llama 1B of configs/llama-1b.json was profiled with ``--torch-model`` at batch 4
of 2,048 tokens: 22.0221 samples/s (bf16), i.e. 45,101 tokens/s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from estimator.model.hf_config import load_hf_config
from estimator.records.calibration import load_calibration
from estimator.timing.measured import match_torch_model, sequence_length_of

HERE = Path(__file__).resolve().parent / "data" / "h200-2026-12"
TORCH_LLAMA = str(HERE / "gpucost-torch-model-llama1b-mb4-h200.yaml")
TORCH_RESNET = str(HERE / "gpucost-torch-model-resnet50-h200.yaml")
MODEL_STEP = str(HERE / "gpucost-profile-llama1b-h200.yaml")
DEVICE = str(HERE / "gpucost-profile-h200.yaml")
COMM_ONLY = str(HERE / "gpucost-comm-one-rank-h200.yaml")
LLAMA = str(HERE / "configs" / "llama-1b.json")
QWEN = str(HERE / "configs" / "qwen-0.5b.json")
SAMPLES_PER_S = 22.0221  # the file's torch_model.results.bf16.samples_per_s
BATCH, SEQ = 4, 2048  # the file's batch_size; the sequence length of hfmodel.py:llama1b


def _seconds(result) -> float:
    return result.json()["wall_clock_days"] * 86400.0


def _error(result) -> str:
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_the_sequence_length_is_solved_from_the_files_flops():
    arch = load_hf_config(LLAMA)
    assert sequence_length_of(arch, 5611374805000.0) == (2048, True)  # the file's forward FLOPs per sample
    # PyTorch's FLOP counter counts nothing for the CPU attention kernel: the linear part alone
    from estimator.model.flops import flops_per_token

    per_token = flops_per_token(arch, 512)
    linear = (per_token.forward - per_token.breakdown["attention_scores"]) * 512
    assert sequence_length_of(arch, linear) == (512, False)
    assert sequence_length_of(arch, 1.0001e12) is None  # between two whole lengths: another shape


def test_torch_model_answers_a_token_workload_of_its_architecture(cli):
    result = cli("estimate", "--calibration", TORCH_LLAMA, "--hf-config", LLAMA, "--tokens", "1B",
                 "--precision", "bf16", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["seq_len"] == SEQ  # the profiled length is the default --seq-len
    assert data["time_model"] == "flat" and data["num_gpus"] == 1
    assert _seconds(result) == pytest.approx(1e9 / (SAMPLES_PER_S * SEQ), rel=1e-6)
    source = data["throughput_source"]
    assert "45,101 tokens/s" in source and "the same 1,235,814,400 parameters" in source
    assert "2,048 tokens of its layers" in source


def test_torch_model_answers_a_sample_workload_of_its_architecture(cli):
    result = cli("estimate", "--calibration", TORCH_LLAMA, "--hf-config", LLAMA, "--samples", "100000",
                 "--precision", "bf16", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert _seconds(result) == pytest.approx(100000 / SAMPLES_PER_S, rel=1e-6)


def test_a_longer_sequence_costs_its_extra_attention_flops(cli):
    from estimator.model.flops import flops_per_token

    arch = load_hf_config(LLAMA)
    result = cli("estimate", "--calibration", TORCH_LLAMA, "--hf-config", LLAMA, "--tokens", "1B", "--seq-len", "4096",
                 "--precision", "bf16", "--format", "json")
    assert result.exit_code == 0, result.stderr
    stretch = flops_per_token(arch, 4096).train_model / flops_per_token(arch, SEQ).train_model
    assert stretch > 1.05
    assert _seconds(result) == pytest.approx(1e9 / (SAMPLES_PER_S * SEQ) * stretch, rel=1e-6)


def test_params_only_matches_by_count_and_says_so(cli):
    result = cli("estimate", "--calibration", TORCH_LLAMA, "--params", "1.236B", "--tokens", "1B",
                 "--precision", "bf16", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert "by parameter count only" in result.json()["throughput_source"]
    line = _error(cli("estimate", "--calibration", TORCH_LLAMA, "--params", "7B", "--tokens", "1B",
                      "--precision", "bf16"))
    assert "llama-1b (1,235,814,400 parameters" in line and "7,000,000,000 parameters" in line


def test_another_architecture_is_one_line_naming_both(cli):
    line = _error(cli("estimate", "--calibration", TORCH_LLAMA, "--hf-config", QWEN, "--tokens", "1B",
                      "--precision", "bf16"))
    assert "torch_model llama-1b (1,235,814,400 parameters" in line and "qwen-0.5b (494,032,768 parameters)" in line
    line = _error(cli("estimate", "--calibration", TORCH_RESNET, "--hf-config", LLAMA, "--tokens", "1B",
                      "--precision", "bf16", "--num-gpus", "8"))
    assert "resnet-50" in line and "llama-1b" in line
    assert "has no bf16 measurement" not in line  # the message that contradicted itself ("it has: bf16")


def test_another_precision_names_what_the_file_has(cli):
    line = _error(cli("estimate", "--calibration", TORCH_LLAMA, "--hf-config", LLAMA, "--tokens", "1B",
                      "--precision", "fp32"))
    assert "no fp32 measurement (it has: bf16)" in line


def test_the_match_is_by_shapes_not_by_name():
    record = load_calibration(TORCH_LLAMA)
    arch = load_hf_config(LLAMA)

    class Work:  # the same architecture under another name
        architecture, model, params = arch, "my-llama", None

    match, why = match_torch_model(record, Work)
    assert match is not None and match.tokens_per_sample == SEQ and not why


def test_many_devices_go_through_the_step_model_with_the_measured_compute(cli):
    """One micro-batch of the profiled size per device: the step's compute plus the (unsharded)
    optimizer is the measured step, and data-parallel traffic comes on top (ZeRO 1 shards the
    optimizer over the 8 devices, which saves more than the traffic costs here)."""
    result = cli("estimate", "--calibration", TORCH_LLAMA, "--hf-config", LLAMA, "--tokens", "1B",
                 "--precision", "bf16", "--num-gpus", "8", "--tensor-parallel", "1", "--pipeline-parallel", "1",
                 "--micro-batch", "4", "--global-batch", "32", "--zero-stage", "1", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["time_model"] == "step" and data["seq_len"] == SEQ
    parts = data["time_breakdown_s"]
    measured_step = BATCH / SAMPLES_PER_S
    assert parts["compute"] + 8 * parts["optimizer"] == pytest.approx(measured_step, rel=1e-6)  # ZeRO 1 shards it
    assert parts["data_parallel"] > 0
    assert data["step_time_s"] == pytest.approx(parts["compute"] + parts["optimizer"] + parts["data_parallel"])
    assert any(a.startswith("measured compute:") for a in data["assumptions"])


def test_a_calibrated_64_device_run_pays_communication(cli):
    one = cli("estimate", "--calibration", TORCH_LLAMA, "--hf-config", LLAMA, "--tokens", "10B", "--precision", "bf16",
              "--num-gpus", "64", "--tensor-parallel", "2", "--micro-batch", "4", "--format", "json")
    assert one.exit_code == 0, one.stderr
    parts = one.json()["time_breakdown_s"]
    assert parts["tensor_parallel"] > 0 and parts["data_parallel"] > 0
    assert "perfect scaling" not in " ".join(one.json()["assumptions"])


def test_the_model_step_section_sets_the_compute_too(cli):
    """gpucost's own layers of llama-1b, micro-batch 8 of 2,048 at 425.544 TFLOP/s (median) of
    8,219,787,264 FLOPs per token: the step model's one-device compute for that micro-batch."""
    result = cli("estimate", "--calibration", MODEL_STEP, "--hf-config", LLAMA, "--tokens", "1B", "--precision", "bf16",
                 "--num-gpus", "8", "--tensor-parallel", "1", "--pipeline-parallel", "1", "--micro-batch", "8",
                 "--global-batch", "64", "--zero-stage", "1", "--seq-len", "2048", "--format", "json")
    assert result.exit_code == 0, result.stderr
    parts = result.json()["time_breakdown_s"]
    measured = 8 * 2048 * 8219787264.0 / 425.544e12
    assert parts["compute"] + 8 * parts["optimizer"] == pytest.approx(measured, rel=1e-6)


def test_a_device_profile_keeps_the_step_model_at_scale(cli):
    result = cli("estimate", "--calibration", DEVICE, "--hf-config", LLAMA, "--tokens", "1B", "--precision", "bf16",
                 "--num-gpus", "16", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["time_model"] == "step" and data["time_breakdown_s"]["data_parallel"] > 0
    assert any("the calibration file's best bf16 matmul" in a for a in data["assumptions"])


def test_a_file_with_no_compute_measurement_is_one_line(cli):
    line = _error(cli("estimate", "--calibration", COMM_ONLY, "--hf-config", LLAMA, "--tokens", "1B",
                      "--precision", "bf16", "--num-gpus", "8"))
    assert "no bf16 measurement" in line


def test_the_measured_batch_4_step_predicts_the_batch_8_step():
    """Held out: the same Hugging Face Llama 1B on the same H200 trained at micro-batch 8 (AMP bf16,
    fused AdamW) in 0.34579 s per step (the measurement record's hf_train.py table, row "llama-1b
    2048 8 amp"); the file measured batch 4 only. The step model, its compute scaled by that batch-4
    measurement, times batch 8 on one device within 5% of it (0.3416 s when written, -1.2%)."""
    from estimator.catalog.core import load_catalog
    from estimator.request import EstimateRequest
    from estimator.resolve import resolve

    request = EstimateRequest(calibration=TORCH_LLAMA, hf_config=LLAMA, tokens=1e9, precision="bf16", num_gpus=1,
                              time_model="step", micro_batch=8, global_batch=8, recompute="none")
    step = resolve(request, load_catalog()).step
    assert step.layout.micro_batch == 8 and step.layout.num_devices == 1
    assert step.step_time_s == pytest.approx(0.34579, rel=0.05)
