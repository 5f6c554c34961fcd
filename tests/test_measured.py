"""Estimates from a calibration file: which measurement is used, at-scale mapping, file warnings."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
import yaml
from test_calibration import sample_record

from estimator.records.calibration import write_calibration
from estimator.catalog.core import load_catalog
from estimator.errors import InputError
from estimator.records.calibration import Calibration
from estimator.timing.measured import AT_SCALE_FRACTION_OF_MATMUL, calibrated_throughput as _calibrated, device_accelerator as _device


def calibrated_throughput(record, *args, **kwargs):
    return _calibrated(Calibration.from_dict(record), *args, **kwargs)


def device_accelerator(record, catalog):
    return _device(Calibration.from_dict(record), catalog)
from estimator import estimate

CATALOG = load_catalog()
H100 = CATALOG.accelerator("h100")
TODAY = dt.date(2025, 2, 1)  # the sample record was written on 2025-01-31


def cpu_record() -> dict:
    record = sample_record()
    record["device"] = {"name": "Intel(R) Xeon(R) Processor @ 2.50GHz", "backend": "cpu", "catalog_id": None,
                        "memory_bytes": 25_000_000_000, "num_logical_cpus": 2, "num_threads": 2}
    for section in ("matmul", "mlp"):
        record[section] = {"fp32": copy.deepcopy(record[section]["bf16"])}
        record[section]["fp32"].update(best_tflops=0.2, median_tflops=0.18, peak_tflops=None, pct_of_peak=None)
    record["mlp"]["fp32"]["widths"][0].update(best_tflops=0.2, median_tflops=0.18, worst_tflops=0.15)
    return record


def with_model_step(record: dict, model: str = "gpt2-small") -> dict:
    record["model"] = {"id": model, "seq_len": 1024, "micro_batch": 2, "num_layers": 12, "layers_timed": 12,
                       "optimizer": "adamw",
                       "results": {"bf16": {"flops_per_token": 1.0e9, "tokens_per_s": 500_000.0, "best_tflops": 520.0,
                                            "median_tflops": 500.0, "worst_tflops": 480.0, "stdev_pct": 2.0,
                                            "iterations": 10}}}
    return record


def test_one_device_uses_the_median_mlp_training_step():
    rate, warnings, model_step = calibrated_throughput(sample_record(), H100, "bf16", num_gpus=1, today=TODAY)
    assert rate.achieved_tflops == 590.0  # the MLP step's median, not the matmul's 794.5
    assert rate.band_tflops == (550.0, 600.0)  # worst..best of the step
    assert rate.mfu == pytest.approx(590.0 / 989.4)
    assert "MLP training step bf16" in rate.source and warnings == [] and not model_step


def test_many_devices_use_the_data_derived_fraction_of_the_best_matmul():
    rate, _, _ = calibrated_throughput(sample_record(), H100, "bf16", num_gpus=64, today=TODAY)
    assert rate.achieved_tflops == pytest.approx(AT_SCALE_FRACTION_OF_MATMUL[">=500"] * 794.5)
    # per peak class: the median default MFU of the dense 16-bit kinds when the defaults were by peak class
    # (<500: 0.476, 0.434, 0.346; >=500: 0.31, 0.215, 0.267; estimator/timing/measured.py keeps these
    # classes) / the best-matmul fraction of the class's chip (A100 271.2/312, H100 794.5/989; stas00 MAMF)
    import statistics

    from estimator.timing.measured import MAMF_FRACTION

    for peak in ("<500", ">=500"):
        assert AT_SCALE_FRACTION_OF_MATMUL[peak] == pytest.approx(
            statistics.median((0.476, 0.434, 0.346) if peak == "<500" else (0.31, 0.215, 0.267)) / MAMF_FRACTION[peak],
            abs=0.005), peak
    low, high = rate.band_tflops
    assert low < rate.achieved_tflops < high


def test_the_at_scale_figure_is_capped_by_the_measured_training_step():
    record = sample_record()
    record["mlp"]["bf16"]["median_tflops"] = 200.0  # below 0.33 x the best matmul (262)
    rate, _, _ = calibrated_throughput(record, H100, "bf16", num_gpus=64, today=TODAY)
    assert rate.achieved_tflops == 200.0 and "capped" in rate.source


def test_the_models_own_step_is_preferred_when_the_model_matches():
    record = with_model_step(sample_record())
    rate, _, model_step = calibrated_throughput(record, H100, "bf16", num_gpus=1, model="gpt2-small", today=TODAY)
    assert rate.achieved_tflops == 500.0 and model_step and "gpt2-small training step" in rate.source
    rate, _, model_step = calibrated_throughput(record, H100, "bf16", num_gpus=1, model="llama-3.1-8b", today=TODAY)
    assert rate.achieved_tflops == 590.0 and not model_step


@pytest.mark.parametrize(
    ("mutate", "gpu", "warning"),
    [
        (lambda r: None, "a100", "the calibration file measured h100-sxm, the estimate is for a100-sxm-80gb"),
        (lambda r: r.update(created_utc="2024-01-01T00:00:00Z"), "h100", "more than 180 days ago"),
        (lambda r: r.update(partial=True), "h100", "partial"),
    ],
)
def test_the_file_is_flagged_when_it_does_not_fit_the_estimate(mutate, gpu, warning):
    record = sample_record()
    mutate(record)
    _, warnings, _ = calibrated_throughput(record, CATALOG.accelerator(gpu), "bf16", num_gpus=1, today=TODAY)
    assert any(warning in w for w in warnings), warnings


def test_a_precision_the_file_did_not_measure_is_an_error():
    with pytest.raises(InputError, match="no fp8 measurement"):
        calibrated_throughput(sample_record(), H100, "fp8", num_gpus=1, today=TODAY)


def test_the_device_of_a_file_is_its_catalog_entry_or_a_peakless_local_device():
    assert device_accelerator(sample_record(), CATALOG).id == "h100-sxm"
    cpu = device_accelerator(cpu_record(), CATALOG)
    assert cpu.id == "cpu" and cpu.peak_for("fp32") is None and cpu.tdp_w is None


def test_estimate_without_gpu_runs_on_the_calibrated_cpu_with_unknown_mfu(tmp_path, cli):
    path = write_calibration(cpu_record(), tmp_path / "cal.yaml")
    result = cli("estimate", "--calibration", str(path), "--params", "124M", "--tokens", "10M",
                 "--precision", "fp32", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["gpu"] == "cpu" and data["mfu"] is None and data["energy_kwh"] is None
    assert data["achieved_tflops_per_gpu"] == 0.18
    assert data["gpu_hours"] == pytest.approx(6 * 124e6 * 10e6 / 0.18e12 / 3600)


def test_a_model_step_calibration_makes_the_time_use_the_detailed_count(tmp_path):
    path = write_calibration(with_model_step(sample_record()), tmp_path / "cal.yaml")
    est = estimate(model="gpt2-small", tokens="1B", calibration=path)
    assert est.flops == est.flops_detailed != est.flops_6nd
    assert est.gpu == "h100-sxm" and est.achieved_tflops_per_gpu == 500.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mfu", "0.4"], "Error: give only one of --mfu, --tflops, --gpu-hours, --calibration or --measured-time (got --mfu and --calibration)"),
        (["--gpu-hours", "1M"], "Error: give only one of --mfu, --tflops, --gpu-hours, --calibration or --measured-time (got --gpu-hours and --calibration)"),
    ],
)
def test_calibration_conflicts_are_one_line_errors(tmp_path, cli, args, message):
    path = write_calibration(sample_record(), tmp_path / "cal.yaml")
    result = cli("estimate", "--calibration", str(path), "--params", "1B", "--tokens", "1B", *args)
    assert result.exit_code == 2 and result.stderr.startswith(message)


def test_a_broken_calibration_file_is_one_line_naming_the_field(tmp_path, cli):
    record = sample_record()
    del record["device"]["backend"]
    path = tmp_path / "cal.yaml"
    path.write_text(yaml.safe_dump(record))
    result = cli("estimate", "--calibration", str(path), "--params", "1B", "--tokens", "1B")
    assert result.exit_code == 1 and "backend" in result.stderr and result.stderr.count("\n") == 1


def test_estimate_reads_a_hf_config_and_matches_its_model_profile(tmp_path, cli):
    # `gpucost profile --hf-config my-model.json` names the model after the file's stem; so does estimate.
    config = tmp_path / "my-model.json"
    config.write_text((CATALOG.directory / "architectures" / "gpt2-small.json").read_text())
    record = with_model_step(sample_record(), model="my-model")
    path = write_calibration(record, tmp_path / "cal.yaml")
    data = cli("estimate", "--hf-config", str(config), "--tokens", "1B", "--calibration", str(path),
               "--format", "json").json()
    assert data["model"] == "my-model" and data["params"] == 124_439_808
    assert data["achieved_tflops_per_gpu"] == 500.0 and data["flops"] == data["flops_detailed"]
    assert data["seq_len"] == 1024
    # the detailed count is taken at the profiled sequence length when the file's is another:
    record["model"]["seq_len"] = 512
    path = write_calibration(record, tmp_path / "cal512.yaml")
    data = cli("estimate", "--hf-config", str(config), "--tokens", "1B", "--calibration", str(path),
               "--format", "json").json()
    assert data["seq_len"] == 512


def test_hf_config_conflicts_with_a_catalog_model(cli):
    result = cli("estimate", "--model", "gpt2-small", "--hf-config", "x.json", "--tokens", "1B")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: give only one of --model, --hf-config, --params or --flops")


def test_a_file_from_an_older_benchmark_version_is_flagged(monkeypatch):
    import estimator.timing.measured

    monkeypatch.setattr(estimator.timing.measured, "BENCHMARK_VERSION", 2)  # the method moved on since the file
    _, warnings, _ = calibrated_throughput(sample_record(), H100, "bf16", num_gpus=1, today=TODAY)
    assert any("benchmark version 1, current is 2" in w for w in warnings)


def test_calibrated_throughput_takes_the_typed_record_only():
    with pytest.raises(InputError, match="a Calibration is required"):
        _calibrated(sample_record(), H100, "bf16", num_gpus=1)


def _with_torch_model(record: dict, model_id: str = "mnist-mlp", samples_per_s: float = 20_000.0) -> dict:
    """A record with a `gpucost profile --torch-model` section (the shape profiler/torch_model/step.py writes)."""
    flops = 3_098_000.0  # FlopCounterMode: the first layer's input needs no gradient
    tflops = samples_per_s * flops / 1e12
    record["torch_model"] = {
        "id": model_id, "spec": f"builtin:{model_id}", "params": 648010, "batch_size": 64,
        "flops_per_sample": flops, "forward_flops_per_sample": 1_294_000.0, "optimizer": "SGD(lr=0.01, momentum=0.9)",
        "results": {"fp32": {"samples_per_s": samples_per_s, "median_samples_per_s": samples_per_s,
                             "best_tflops": tflops * 1.1, "median_tflops": tflops, "worst_tflops": tflops * 0.9,
                             "stdev_pct": 3.0, "iterations": 100}},
    }
    return record


def test_a_torch_model_profile_times_a_workload_in_samples_at_its_measured_rate(tmp_path):
    # 10 epochs of MNIST's 60,000 images at a measured 20,000 samples/s: 30 s on that device
    path = write_calibration(_with_torch_model(cpu_record()), tmp_path / "cal.yaml")
    est = estimate(model="mnist-mlp", dataset="mnist", epochs=10, precision="fp32", calibration=path)
    assert est.wall_clock_days * 86400 == pytest.approx(600_000 / 20_000)
    assert "torch_model mnist-mlp fp32" in est.throughput_source and "20,000 samples/s" in est.throughput_source
    # another model's workload does not take this measurement
    other = estimate(model="resnet-50", samples="1000", precision="fp32", calibration=path)
    assert "torch_model" not in other.throughput_source
