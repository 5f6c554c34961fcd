"""The calibration file schema: round trip, field-naming errors, atomic writes, the summary table."""

from __future__ import annotations

import copy
import os

import pytest
import yaml

from estimator.records import calibration
from estimator.records.calibration import (read_calibration, summary_rows, validate_calibration, write_calibration)
from estimator.errors import CatalogError


def sample_record() -> dict:
    """A complete record as `gpucost profile` writes it on an H100 (numbers illustrative)."""
    shape = {"m": 8192, "n": 8192, "k": 8192, "best_tflops": 794.5, "median_tflops": 780.0,
             "worst_tflops": 700.0, "stdev_pct": 1.5, "iterations": 40}
    return {
        "schema_version": 1,
        "benchmark_version": 1,
        "created_utc": "2025-01-31T12:00:00Z",
        "command": "gpucost profile --device cuda",
        "partial": False,
        "duration_s": 58.1,
        "device": {"name": "NVIDIA H100 80GB HBM3", "backend": "cuda", "catalog_id": "h100-sxm", "index": 0,
                   "memory_bytes": 85_045_460_992, "compute_capability": "9.0", "num_sms": 132,
                   "max_sm_clock_mhz": 1980.0, "power_limit_w": 700.0},
        "software": {"python": "3.11.9", "torch": "2.5.1", "cuda": "12.4", "hip": None, "driver": "550.54.15",
                     "cuda_driver": "12.4", "platform": "Linux"},
        "telemetry": {"source": "nvml", "samples": 110, "interval_s": 0.5,
                      "clock_mhz": {"min": 1755.0, "median": 1980.0, "max": 1980.0},
                      "power_w": {"min": 90.0, "median": 650.0, "max": 700.0},
                      "temperature_c": {"min": 35.0, "median": 60.0, "max": 71.0},
                      "throttled": True, "reasons": ["sw_power_cap"]},
        "matmul": {
            "fp32": {"best_tflops": 51.0, "median_tflops": 50.0, "peak_tflops": 67.0, "pct_of_peak": 76.12,
                     "shapes": [{**shape, "best_tflops": 51.0, "median_tflops": 50.0, "worst_tflops": 45.0}]},
            "bf16": {"best_tflops": 794.5, "median_tflops": 780.0, "peak_tflops": 989.4, "pct_of_peak": 80.3,
                     "shapes": [shape, {"m": 16384, "n": 8192, "k": 8192, "skipped": "out of memory"}]},
            "fp8": {"skipped": "needs compute capability >= 8.9, this device has 8.0"},
        },
        "mlp": {
            "bf16": {"best_tflops": 600.0, "median_tflops": 590.0, "peak_tflops": 989.4, "pct_of_peak": 60.64,
                     "optimizer": "adamw",
                     "widths": [{"width": 4096, "tokens": 8192, "params": 134238208, "best_tflops": 600.0,
                                 "median_tflops": 590.0, "worst_tflops": 550.0, "stdev_pct": 2.0,
                                 "iterations": 20}]},
        },
        "bandwidth": {"buffer_bytes": 2**30, "best_gbps": 2900.0, "median_gbps": 2850.0, "worst_gbps": 2700.0,
                      "stdev_pct": 0.5, "iterations": 100, "peak_gbps": 3350.0, "pct_of_peak": 86.57},
        "notes": ["the device throttled during the run (sw_power_cap)"],
    }


def test_calibration_round_trip_write_then_read_is_equal(tmp_path):
    record = sample_record()
    path = write_calibration(record, tmp_path / "cal.yaml")
    assert read_calibration(path) == record


def test_calibration_accepts_str_subclasses_such_as_torch_version(tmp_path):
    class Version(str):
        pass

    record = sample_record()
    record["software"]["torch"] = Version("2.13.0+cpu")
    read = read_calibration(write_calibration(record, tmp_path / "cal.yaml"))
    assert read["software"]["torch"] == "2.13.0+cpu"


def _broken(tmp_path, mutate) -> str:
    record = sample_record()
    mutate(record)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(record), encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        read_calibration(path)
    return str(info.value)


def test_calibration_read_rejects_missing_device_field(tmp_path):
    message = _broken(tmp_path, lambda r: r.pop("device"))
    assert message == f"{tmp_path / 'broken.yaml'}, field 'device': is required"


def test_calibration_read_rejects_missing_device_name(tmp_path):
    message = _broken(tmp_path, lambda r: r["device"].pop("name"))
    assert "broken.yaml: entry 'device', field 'name': is required" in message


def test_calibration_read_rejects_non_numeric_tflops_naming_the_entry(tmp_path):
    message = _broken(tmp_path, lambda r: r["matmul"]["bf16"]["shapes"][0].update(best_tflops="fast"))
    assert "entry 'matmul.bf16.shapes[0]', field 'best_tflops'" in message
    assert "'fast'" in message


def test_calibration_read_rejects_unknown_backend(tmp_path):
    message = _broken(tmp_path, lambda r: r["device"].update(backend="tpu"))
    assert "field 'backend': must be one of cpu, cuda, rocm" in message


def test_calibration_read_rejects_unknown_dtype_key(tmp_path):
    message = _broken(tmp_path, lambda r: r["matmul"].update(int4={"skipped": "no"}))
    assert "entry 'matmul', field 'int4': is not a dtype" in message


def test_calibration_read_rejects_other_schema_version(tmp_path):
    message = _broken(tmp_path, lambda r: r.update(schema_version=2))
    assert "field 'schema_version': expected 1, got 2" in message


def test_calibration_read_rejects_median_above_best(tmp_path):
    message = _broken(tmp_path, lambda r: r["mlp"]["bf16"].update(median_tflops=700.0))
    assert "entry 'mlp.bf16', field 'median_tflops': must not exceed best_tflops" in message


def test_calibration_read_rejects_entry_with_neither_result_nor_reason(tmp_path):
    message = _broken(tmp_path, lambda r: r["matmul"].update(fp16={"peak_tflops": 989.4}))
    assert "entry 'matmul.fp16', field 'best_tflops': is required (or 'skipped' with a reason)" in message


def test_calibration_read_rejects_misspelled_field(tmp_path):
    message = _broken(tmp_path, lambda r: r["telemetry"].update(throttle=True))
    assert "entry 'telemetry', field 'throttle': is not a known field" in message


def test_calibration_read_reports_invalid_yaml_with_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("schema_version: 1\ndevice: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"bad.yaml: invalid YAML at line \d+"):
        read_calibration(path)


def test_calibration_read_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(CatalogError, match="file not found; create one with `gpucost profile`"):
        read_calibration(tmp_path / "nope.yaml")


def test_calibration_write_refuses_invalid_record_and_writes_nothing(tmp_path):
    record = sample_record()
    record["partial"] = "maybe"
    with pytest.raises(CatalogError, match="field 'partial'"):
        write_calibration(record, tmp_path / "cal.yaml")
    assert list(tmp_path.iterdir()) == []


def test_calibration_write_failure_keeps_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "cal.yaml"
    write_calibration(sample_record(), path)
    before = path.read_bytes()

    def explode(record):
        raise OSError("disk full")

    monkeypatch.setattr(calibration, "dump_calibration", explode)
    newer = sample_record()
    newer["notes"] = ["newer"]
    with pytest.raises(CatalogError, match="cal.yaml: cannot be written: disk full"):
        write_calibration(newer, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.yaml"]


def test_calibration_write_replaces_with_os_replace(tmp_path, monkeypatch):
    calls = []
    real_replace = os.replace

    def spy(src, dst):
        calls.append((os.path.dirname(src), str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(calibration.os, "replace", spy)
    write_calibration(sample_record(), tmp_path / "cal.yaml")
    assert calls == [(str(tmp_path), str(tmp_path / "cal.yaml"))]


def test_summary_rows_show_skip_reasons_and_best_shape():
    rows = summary_rows(sample_record())
    by_key = {(r[0], r[1]): r for r in rows}
    assert by_key[("matmul TFLOP/s", "bf16")][2:6] == ("794.5", "780", "989.4", "80.3%")
    assert "best at 8192x8192x8192 (of 1 shape); 1 skipped" == by_key[("matmul TFLOP/s", "bf16")][6]
    assert by_key[("matmul TFLOP/s", "fp8")][6].startswith("skipped: needs compute capability")
    assert by_key[("copy GB/s", "-")][2] == "2900"


def test_validate_calibration_returns_the_record_unchanged():
    record = sample_record()
    assert validate_calibration(copy.deepcopy(record)) == record


def model_section() -> dict:
    """The optional section profiler/model.py writes: a training step of one model's own layers."""
    return {"id": "gpt2-small", "source": "GPT-2 (gpt2 architecture)", "seq_len": 1024, "micro_batch": 8,
            "num_layers": 12, "layers_timed": 12, "optimizer": "adamw",
            "results": {"bf16": {"flops_per_token": 8.7e8, "tokens_per_s": 250000.0, "best_tflops": 230.0,
                                 "median_tflops": 218.0, "worst_tflops": 200.0, "stdev_pct": 1.2, "iterations": 12},
                        "fp8": {"skipped": "no fp8 training step"}},
            "notes": ["illustrative"]}


def test_calibration_round_trip_keeps_the_optional_model_section(tmp_path):
    record = {**sample_record(), "model": model_section()}
    assert read_calibration(write_calibration(record, tmp_path / "cal.yaml")) == record
    rows = {(r[0], r[1]): r for r in summary_rows(record)}
    assert rows[("gpt2-small train TFLOP/s", "bf16")][2:4] == ("230", "218")


def test_calibration_read_rejects_model_result_without_flops_per_token(tmp_path):
    def mutate(record):
        record["model"] = model_section()
        record["model"]["results"]["bf16"].pop("flops_per_token")

    message = _broken(tmp_path, mutate)
    assert "entry 'model.results.bf16', field 'flops_per_token': is required" in message


def test_profile_csv_output_has_one_row_per_measured_shape_and_width():
    import csv
    import io

    from estimator.cli.profile_common import format_record

    record = sample_record()
    rows = list(csv.DictReader(io.StringIO(format_record(record, "csv"))))
    shapes = sum(len(e.get("shapes", [])) for e in record["matmul"].values())
    widths = sum(len(e.get("widths", [])) for e in record["mlp"].values())
    matmul = [r for r in rows if r["benchmark"] == "matmul"]
    assert len(matmul) >= shapes and len([r for r in rows if r["benchmark"] == "mlp"]) >= widths
    assert any(float(r["best"] or 0) == 794.5 for r in matmul if r["dtype"] == "bf16")


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_a_written_calibration_file_honours_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = write_calibration(sample_record(), tmp_path / "cal.yaml")
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_the_typed_record_reads_what_the_estimator_needs_and_round_trips(tmp_path):
    from estimator.records.calibration import Calibration, load_calibration

    record = sample_record()
    typed = load_calibration(write_calibration(record, tmp_path / "cal.yaml"))
    assert isinstance(typed, Calibration) and typed.to_dict() == record
    assert typed.device.catalog_id == record["device"]["catalog_id"]
    assert typed.matmul["bf16"].best_tflops == record["matmul"]["bf16"]["best_tflops"]
    assert Calibration.from_dict(typed.to_dict()) == typed
    broken = copy.deepcopy(record)
    broken["device"]["backend"] = "tpu"
    with pytest.raises(CatalogError, match="field 'backend'"):
        Calibration.from_dict(broken, "cal.yaml")
