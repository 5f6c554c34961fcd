"""The sustained window (profiler/sustained.py): each dtype's best matmul shape and MLP width run back
to back after the sweep, recorded beside the burst figures, read by the estimator in their place;
files from before it (the H200 fixtures in tests/data/h200-2026-12/) load and estimate as before.
Nothing asserts a speed: the windows on the CPU last a fraction of a second."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from calibration_samples import gpu_record
from estimator.records.calibration import Calibration, read_calibration, summary_rows, validate_calibration
from estimator.errors import CatalogError

DATA = Path(__file__).resolve().parent / "data" / "h200-2026-12"


# -- the record, the typed view, the estimator (no torch) --------------------------------------------


def test_a_sustained_window_replaces_the_burst_in_what_the_estimator_reads():
    cal = Calibration.from_dict(gpu_record())
    matmul, mlp = cal.matmul["bf16"], cal.mlp["bf16"]
    assert (matmul.best_tflops, matmul.median_tflops, matmul.sustained_tflops) == (251.3, 251.3, 251.3)
    assert matmul.burst_best_tflops == gpu_record()["matmul"]["bf16"]["best_tflops"]
    assert matmul.burst_median_tflops == gpu_record()["matmul"]["bf16"]["median_tflops"]
    assert mlp.median_tflops == 214.6 and mlp.burst_median_tflops == 225.4
    assert mlp.worst_tflops == 201.2  # the slower of the burst's worst and the window's
    # an entry without a window reads as it always did
    fp16 = cal.matmul["fp16"]
    assert fp16.sustained_tflops is None and fp16.best_tflops == fp16.burst_best_tflops


@pytest.mark.parametrize("name", ["gpucost-profile-h200.yaml", "gpucost-profile-h200-bf16.yaml",
                                  "gpucost-torch-model-llama1b-mb4-h200.yaml",
                                  "gpucost-torch-model-resnet50-h200.yaml"])
def test_files_from_before_the_window_still_load(name):
    record = read_calibration(DATA / name)
    cal = Calibration.from_dict(record)
    for entry in list(cal.matmul.values()) + list(cal.mlp.values()):
        assert entry.sustained_tflops is None
        assert entry.best_tflops == entry.burst_best_tflops
    if "bf16" in cal.matmul and cal.matmul["bf16"].measured:
        assert cal.matmul["bf16"].best_tflops == record["matmul"]["bf16"]["best_tflops"]


def test_the_estimate_uses_the_sustained_matmul_figure(cli, tmp_path):
    from estimator.records.calibration import write_calibration

    with_window = write_calibration(gpu_record(collectives=False), tmp_path / "with.yaml")
    without = gpu_record(collectives=False)
    del without["matmul"]["bf16"]["sustained"], without["mlp"]["bf16"]["sustained"]
    burst = write_calibration(without, tmp_path / "burst.yaml")
    args = ("estimate", "--params", "7B", "--tokens", "100B", "--gpu", "a100-sxm-80gb", "--num-gpus", "64",
            "--precision", "bf16", "--format", "json")
    sustained_run = cli(*args, "--calibration", str(with_window))
    burst_run = cli(*args, "--calibration", str(burst))
    assert sustained_run.exit_code == 0 and burst_run.exit_code == 0, sustained_run.stderr + burst_run.stderr
    sustained, burst_answer = sustained_run.json(), burst_run.json()
    burst_best = gpu_record()["matmul"]["bf16"]["best_tflops"]
    assert "matmul 251.3 TFLOP/s" in sustained["throughput_source"]  # the window's median ...
    assert f"matmul {burst_best:.4g} TFLOP/s" in burst_answer["throughput_source"]  # ... where the burst's best was
    assert sustained["achieved_tflops_per_gpu"] < burst_answer["achieved_tflops_per_gpu"]
    assert sustained["wall_clock_days"] > burst_answer["wall_clock_days"]


def test_the_summary_shows_the_burst_and_the_sustained_rows_with_clocks_and_reasons():
    rows = summary_rows(gpu_record())
    labels = [(r[0], r[1]) for r in rows]
    assert labels.index(("  sustained matmul", "bf16")) == labels.index(("matmul TFLOP/s", "bf16")) + 1
    row = rows[labels.index(("  sustained matmul", "bf16"))]
    assert row[2:4] == ("262", "251.3")
    assert row[6] == "8192x8192x8192 back to back 5 s; 1275-1410 MHz; throttled: sw_power_cap"
    mlp = rows[labels.index(("  sustained MLP", "bf16"))]
    assert mlp[6] == "width 8192, 16384 tokens back to back 5 s"  # no clocks or reasons read


@pytest.mark.parametrize("change, message", [
    (lambda w: w.pop("median_tflops"), "entry 'matmul.bf16.sustained', field 'median_tflops': is required"),
    (lambda w: w.update(median_tflops=300.0), "entry 'matmul.bf16.sustained', field 'median_tflops': must lie "
                                              "between worst_tflops and best_tflops"),
    (lambda w: w.update(window_s=0), "entry 'matmul.bf16.sustained', field 'window_s': must be a finite number > 0, "
                                     "got 0"),
    (lambda w: w.update(throttled="yes"), "entry 'matmul.bf16.sustained', field 'throttled': must be true, false or "
                                          "null, got 'yes'"),
    (lambda w: w.update(sm_clock=1), "entry 'matmul.bf16.sustained', field 'sm_clock': is not a known field"),
])
def test_a_broken_window_is_one_error_naming_the_entry_and_field(change, message):
    record = gpu_record()
    change(record["matmul"]["bf16"]["sustained"])
    with pytest.raises(CatalogError) as error:
        validate_calibration(record, "cal.yaml")
    assert str(error.value) == f"cal.yaml: {message}"


def test_a_window_beside_a_skipped_entry_is_refused():
    record = gpu_record()
    record["matmul"]["tf32"]["sustained"] = copy.deepcopy(record["matmul"]["bf16"]["sustained"])
    with pytest.raises(CatalogError, match="needs the burst figures"):
        validate_calibration(record)


# -- measuring (torch, on the CPU) -------------------------------------------------------------------


torch = pytest.importorskip("torch")


class FakeClock:
    """A clock whose time only moves when the fake kernel runs: each run takes the next duration."""

    def __init__(self, durations):
        self.now, self.durations = 0.0, list(durations)

    def run(self):
        self.now += self.durations.pop(0) if self.durations else 1e-3

    def mark(self):
        return self.now

    def elapsed_s(self, start, end):
        return end - start

    def synchronize(self):
        pass


def test_the_window_reports_the_median_the_mean_and_the_drift_between_its_halves():
    from profiler.sustained import Window, run_window

    # warm-up: 5 runs of 50 ms (so the device is synchronised every 2 runs, 0.1 s of work); then a slow
    # half (10 runs of 100 ms) and a fast half (10 of 50 ms): the window ends after its 20th run, at 1.5 s
    clock = FakeClock([0.05] * 5 + [0.1] * 10 + [0.05] * 10)
    figures = run_window(clock.run, 2e12, clock, Window(window_s=1.45, warmup_s=0.24), now_s=lambda: clock.now)
    times = [0.1] * 10 + [0.05] * 10
    assert figures["iterations"] == 20 and figures["duration_s"] == 1.5
    assert figures["median_tflops"] == pytest.approx(2 / 0.075, rel=1e-5)
    assert figures["mean_tflops"] == pytest.approx(2 * 20 / sum(times), rel=1e-5)
    assert (figures["best_tflops"], figures["worst_tflops"]) == (pytest.approx(40.0), pytest.approx(20.0))
    assert figures["drift_pct"] == pytest.approx(100.0)  # the second half ran twice as fast
    assert figures["throttled"] is None and figures["reasons"] == [] and figures["clock_mhz"] is None


def test_a_profile_with_a_window_records_it_for_each_dtypes_best_size(monkeypatch):
    from profiler.device import describe
    from profiler.run import Budget, Item, Plan, run_profile
    from profiler.sustained import Window

    cpu = torch.device("cpu")
    tiny = Budget(warmup_s=0.0, budget_s=0.0, min_iters=2, max_iters=2)
    items = (Item("bandwidth", None, (1 << 20,), tiny), Item("matmul", "fp32", (32, 32, 32), tiny),
             Item("matmul", "fp32", (128, 128, 128), tiny), Item("mlp", "fp32", (64, 32), tiny))
    plan = Plan(mode="quick", items=items, skipped={"matmul": {}, "mlp": {}}, device_warmup_s=0.0,
                flush_bytes=1 << 20, sustained=Window(window_s=0.05, warmup_s=0.01))
    seen = []
    record = run_profile(plan, cpu, describe(cpu), command="test", telemetry_interval_s=0.05,
                         progress=lambda done, total, label: seen.append((done, total, label)))
    validate_calibration(record)
    window = record["matmul"]["fp32"]["sustained"]
    shapes = {(s["m"], s["n"], s["k"]): s["median_tflops"] for s in record["matmul"]["fp32"]["shapes"]}
    assert (window["m"], window["n"], window["k"]) == max(shapes, key=shapes.get)  # the best burst median's shape
    assert window["window_s"] == 0.05 and window["iterations"] >= 3 and window["duration_s"] >= 0.05
    assert window["worst_tflops"] <= window["median_tflops"] <= window["best_tflops"]
    assert record["mlp"]["fp32"]["sustained"]["width"] == 64
    assert "sustained" not in record["bandwidth"]
    assert seen[-1] == (6, 6, "done")  # 4 sweep items + 2 windows
    assert any("back to back for 0.05 s (sustained)" in label for _, _, label in seen)
    cal = Calibration.from_dict(record)
    assert cal.matmul["fp32"].best_tflops == window["median_tflops"]


def test_the_default_window_is_5_s_on_a_gpu_1_s_on_a_cpu_and_0_turns_it_off():
    from profiler.device import describe
    from profiler.run import make_plan

    info = describe(torch.device("cpu"))
    assert make_plan(info).sustained.window_s == 1.0
    assert make_plan(info, sustained_s=2.5).sustained.window_s == 2.5
    assert make_plan(info, sustained_s=0).sustained is None
    assert make_plan(info, sweep=False).sustained is None or make_plan(info, sweep=False).items == ()
    from profiler.sustained import SUSTAINED_S

    assert SUSTAINED_S == {"gpu": 5.0, "cpu": 1.0}


def test_the_cli_checks_the_window_option(cli):
    result = cli("profile", "--device", "cpu", "--sustained-s", "-1")
    assert result.exit_code == 2 and result.stderr.strip() == "Error: --sustained-s must be from 0 to 3600 seconds, " \
                                                               "got -1"
    result = cli("profile", "--comm", "--sustained-s", "2")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --sustained-s does not apply to --comm; run the model profile separately"
