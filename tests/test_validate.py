"""The back-test against published runs, and the defaults derived from it."""

import statistics

import pytest

from estimator.catalog.core import load_catalog
from estimator.timing.utilisation import BAND_COVERAGE, DEFAULT_GOODPUT, DEFAULTS, SCOPE_OVERHEAD, Kind
from estimator.validation.runs import reported_gpu_hours, validate

RESULT = validate()
SIXTEEN_BIT = [c.implied_mfu for c in RESULT.runs if c.precision in ("bf16", "fp16") and c.implied_mfu is not None]


def test_catalog_has_at_least_ten_runs_across_a100_h100_h800_and_tpu():
    runs = load_catalog().runs
    assert len(runs) >= 10
    accelerators = {r.accelerator for r in runs}
    assert {"a100-sxm-80gb", "h100-sxm", "h800-sxm"} <= accelerators
    assert any(a.startswith("tpu") for a in accelerators)


def test_each_kinds_default_is_the_median_its_runs_imply_at_the_default_goodput():
    # The stored MFU while training x goodput is the median implied MFU of the kind's runs, on
    # pre-training hours (a scope:all run's hours / the scope overhead; estimator/timing/utilisation.py;
    # tests/test_utilisation.py recomputes the whole table).
    # Each run's implied MFU is first moved to the reference machine balance (x (balance / ref)^exponent).
    from estimator.catalog.core import load_catalog
    from estimator.timing.utilisation import BALANCE_EXPONENT, BALANCE_REF, machine_balance

    catalog = load_catalog()
    for kind in (Kind("dense", "16-bit", "<20B"), Kind("dense", "16-bit", "20-100B")):
        implied = [c.implied_mfu * (SCOPE_OVERHEAD if c.scope == "all" else 1)
                   * (machine_balance(catalog.accelerator(c.accelerator)) / BALANCE_REF) ** BALANCE_EXPONENT
                   for c in RESULT.runs
                   if c.kind == kind.label and c.reported_gpu_hours and c.precision in ("bf16", "fp16")]
        assert len(implied) >= 4 and DEFAULTS[kind].level == 0
        assert DEFAULTS[kind].mfu * DEFAULT_GOODPUT == pytest.approx(statistics.median(implied), abs=0.01)


def test_the_printed_band_holds_at_least_its_stated_share_of_the_runs():
    # The band comes from leave-one-out errors, wider than the in-sample ones, so the catalog's own runs
    # fall inside it at least as often as stated (34 of 39 here).
    timed = [c for c in RESULT.runs if c.reported_gpu_hours]
    inside = sum(bool(c.inside_range) for c in timed)
    assert len(timed) >= 39
    assert inside / len(timed) >= BAND_COVERAGE - 0.05


def test_deepseek_v3_implies_its_known_throughput():
    deepseek = next(c for c in RESULT.runs if c.id == "deepseek-v3")
    assert deepseek.implied_mfu == pytest.approx(3.2856e24 / (2.664e6 * 3600) / 1978.9e12, rel=1e-6)
    assert deepseek.kind == "moe fp8 20-100B"


def test_each_check_compares_estimated_and_reported_hours():
    llama = next(c for c in RESULT.runs if c.id == "llama-2-70b")
    # Llama 2 70B: 1,720,320 A100-hours for 2T tokens (arXiv 2307.09288 Table 2).
    assert llama.reported_gpu_hours == 1_720_320
    assert llama.flops == pytest.approx(6 * 70e9 * 2e12, rel=0.02)  # 68.98B params in runs.yaml
    assert llama.error == pytest.approx(llama.estimated_gpu_hours / 1_720_320 - 1)
    assert RESULT.median_abs_error < 0.35
    assert RESULT.num_within_1_5x >= 0.6 * RESULT.num_with_hours


def test_reported_hours_fall_back_to_wall_clock_times_devices():
    run = next(r for r in load_catalog().runs if r.device_hours is None and r.wall_clock_days is None)
    assert reported_gpu_hours(run) is None


def test_validate_cli_prints_the_summary(cli):
    result = cli("validate")
    assert result.exit_code == 0
    assert "inside the printed range" in result.stdout and "Default MFU while training by kind" in result.stdout
    data = cli("validate", "--format", "json").json()
    assert data["num_with_hours"] == RESULT.num_with_hours


def test_validate_csv_has_one_row_per_run_and_per_published_layout(cli):
    import csv
    import io

    from estimator.validation.layouts import validate_step

    rows = list(csv.DictReader(io.StringIO(cli("validate", "--format", "csv").stdout)))
    assert [r["id"] for r in rows if r["check"] == "flat"] == [c.id for c in RESULT.runs]
    assert [r["id"] for r in rows if r["check"] == "step"] == [c.id for c in validate_step().rows]
    assert {"reported_gpu_hours", "estimated_gpu_hours", "error", "inside_range", "implied_mfu"} <= rows[0].keys()
