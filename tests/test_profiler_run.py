"""The sweep: plans, the calibration record it builds, partial results on Ctrl-C, skipped sizes,
telemetry, and the `gpucost profile` command (driven through estimator.cli.main)."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")

from estimator.records.calibration import read_calibration, validate_calibration  # noqa: E402
from profiler import run as run_module  # noqa: E402
from profiler.device import DeviceInfo, describe  # noqa: E402
from profiler.progress import ProgressBar  # noqa: E402
from profiler.run import Budget, Item, Plan, make_plan, run_profile  # noqa: E402
from profiler.telemetry import Sampler, TelemetrySample, summarize  # noqa: E402

CPU = torch.device("cpu")
TINY = Budget(warmup_s=0.0, budget_s=0.0, min_iters=2, max_iters=2)


def tiny_plan(*extra: Item, budget: Budget = TINY) -> Plan:
    """Sizes small enough that a whole run takes well under a second."""
    items = (Item("bandwidth", None, (1 << 20,), budget),
             Item("matmul", "fp32", (64, 64, 64), budget), Item("matmul", "fp32", (96, 96, 96), budget),
             Item("matmul", "bf16", (64, 64, 64), budget),
             Item("mlp", "fp32", (64, 32), budget), *extra)
    skipped = {"matmul": {"fp8": "not applicable on CPU"}, "mlp": {"fp8": "not applicable on CPU"}}
    return Plan(mode="quick", items=items, skipped=skipped, device_warmup_s=0.0, flush_bytes=1 << 20)


@pytest.fixture(scope="module")
def cpu_info():
    return describe(CPU)


def run_tiny(info, plan=None, **kwargs):
    return run_profile(plan or tiny_plan(), CPU, info, command="gpucost profile --device cpu",
                       telemetry_interval_s=0.05, **kwargs)


def _gpu_info(capability="9.0"):
    return DeviceInfo(name="NVIDIA H100 80GB HBM3", backend="cuda", catalog_id="h100-sxm",
                      compute_capability=capability, l2_cache_bytes=50 * 2**20)


# -- plans ---------------------------------------------------------------------------------------


def test_cpu_quick_plan_measures_fp32_and_bf16_and_says_why_the_rest_is_skipped(cpu_info):
    plan = make_plan(cpu_info)
    measured = {(i.section, i.dtype) for i in plan.items}
    assert measured == {("bandwidth", None), ("matmul", "fp32"), ("matmul", "bf16"), ("mlp", "fp32"), ("mlp", "bf16")}
    assert plan.skipped["matmul"]["tf32"].startswith("not applicable on CPU")
    assert plan.skipped["matmul"]["fp8"].startswith("not applicable on CPU")
    assert "--full or --precision fp16" in plan.skipped["matmul"]["fp16"]
    assert (1024, 1024, 1024) in {i.size for i in plan.items if i.dtype == "fp32"}


def test_cpu_quick_plan_spreads_fp32_matmul_passes_over_the_run(cpu_info):
    items = make_plan(cpu_info).items
    positions = {p: [n for n, i in enumerate(items) if i.dtype == "fp32" and i.section == "matmul"
                     and i.pass_number == p] for p in (1, 2, 3)}
    bf16 = [n for n, i in enumerate(items) if i.dtype == "bf16" and i.section == "matmul"]
    mlp = [n for n, i in enumerate(items) if i.section == "mlp"]
    assert max(positions[1]) < min(bf16) and max(bf16) < min(positions[2])
    assert max(positions[2]) < min(mlp) and max(mlp) < min(positions[3])
    assert items[positions[3][0]].label.endswith("(pass 3 of 3)")


def test_cpu_plan_measures_fp16_when_asked_by_name(cpu_info):
    plan = make_plan(cpu_info, ["fp16"])
    assert {i.dtype for i in plan.items if i.section == "matmul"} == {"fp16"}
    assert plan.skipped == {"matmul": {}, "mlp": {}}


def test_gpu_plan_measures_tf32_and_fp8_matmul_but_no_fp8_mlp():
    plan = make_plan(_gpu_info("9.0"))
    matmul = {i.dtype for i in plan.items if i.section == "matmul"}
    assert matmul == {"fp32", "tf32", "bf16", "fp16", "fp8"}
    assert "fp8" not in {i.dtype for i in plan.items if i.section == "mlp"}
    assert "Transformer Engine" in plan.skipped["mlp"]["fp8"]
    assert plan.flush_bytes >= 2 * 50 * 2**20


def test_gpu_plan_on_ampere_skips_fp8_with_the_reason():
    plan = make_plan(_gpu_info("8.0"))
    assert plan.skipped["matmul"]["fp8"] == "needs compute capability >= 8.9 (Ada/Hopper), this device has 8.0"


# -- the run and its record ----------------------------------------------------------------------


def test_run_profile_builds_a_valid_record_with_every_measurement(cpu_info):
    record = run_tiny(cpu_info)
    assert validate_calibration(record) is not None
    assert record["partial"] is False and record["benchmark_version"] == run_module.BENCHMARK_VERSION
    fp32 = record["matmul"]["fp32"]
    assert [(s["m"], s["iterations"]) for s in fp32["shapes"]] == [(64, 2), (96, 2)]
    assert fp32["best_tflops"] == max(s["best_tflops"] for s in fp32["shapes"])
    assert fp32["peak_tflops"] is None and fp32["pct_of_peak"] is None  # a CPU has no catalog peak
    assert record["matmul"]["fp8"] == {"skipped": "not applicable on CPU"}
    assert record["mlp"]["fp32"]["widths"][0]["params"] == 8 * 64**2 + 5 * 64
    assert record["mlp"]["fp32"]["optimizer"] == "adamw"
    assert record["bandwidth"]["buffer_bytes"] == 1 << 20 and record["bandwidth"]["best_gbps"] > 0
    assert record["device"]["backend"] == "cpu" and record["device"]["catalog_id"] is None


def test_run_profile_pools_the_iterations_of_repeated_passes(cpu_info):
    plan = tiny_plan(Item("matmul", "fp32", (64, 64, 64), TINY, 2, 2))
    shapes = run_tiny(cpu_info, plan)["matmul"]["fp32"]["shapes"]
    assert [(s["m"], s["iterations"]) for s in shapes] == [(64, 4), (96, 2)]


def test_speed_change_between_passes_is_noted(cpu_info, monkeypatch):
    from profiler.timing import Timing

    seconds = iter([1.0, 1.0, 2.0, 2.0])  # pass 1 at full speed, pass 2 at half speed
    monkeypatch.setattr(run_module, "measure", lambda *a, **k: Timing((next(seconds),)))
    plan = Plan(mode="quick", items=(Item("matmul", "fp32", (64, 64, 64), TINY, 1, 2),
                                     Item("matmul", "fp32", (96, 96, 96), TINY, 1, 2),
                                     Item("matmul", "fp32", (64, 64, 64), TINY, 2, 2),
                                     Item("matmul", "fp32", (96, 96, 96), TINY, 2, 2)),
                device_warmup_s=0.0, flush_bytes=1 << 20)
    record = run_tiny(cpu_info, plan)
    drift = [n for n in record["notes"] if "changed speed during the run" in n]
    rate_96 = 2 * 96**3 / 1e12
    assert drift == [f"matmul fp32: the best TFLOP/s per pass were {rate_96:.3g}, {rate_96 / 2:.3g}: this machine "
                     "changed speed during the run (a shared or throttled host?); the best is kept, compare with "
                     "another run"]
    assert record["matmul"]["fp32"]["shapes"][1]["iterations"] == 2


def test_keyboard_interrupt_keeps_results_so_far_marked_partial(cpu_info, monkeypatch, tmp_path):
    real_measure, calls = run_module.measure, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # bandwidth and fp32 64^3 done; Ctrl-C during fp32 96^3
            raise KeyboardInterrupt
        return real_measure(*args, **kwargs)

    monkeypatch.setattr(run_module, "measure", interrupted)
    record = run_tiny(cpu_info)
    assert record["partial"] is True
    assert [s["m"] for s in record["matmul"]["fp32"]["shapes"]] == [64]
    assert record["matmul"]["bf16"]["skipped"] == "not measured: the run was interrupted"
    assert record["mlp"]["fp32"]["skipped"] == "not measured: the run was interrupted"
    assert any("interrupted (Ctrl-C) after 2 of 5 measurements" in n for n in record["notes"])
    from estimator.records.calibration import write_calibration

    assert read_calibration(write_calibration(record, tmp_path / "cal.yaml"))["partial"] is True


def test_out_of_memory_size_is_skipped_and_the_sweep_goes_on(cpu_info, monkeypatch):
    real_kernel = run_module.matmul_kernel

    def oom_for_96(m, n, k, *args, **kwargs):
        if m == 96:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_kernel(m, n, k, *args, **kwargs)

    monkeypatch.setattr(run_module, "matmul_kernel", oom_for_96)
    record = run_tiny(cpu_info)
    assert record["matmul"]["fp32"]["shapes"][1] == {"m": 96, "n": 96, "k": 96, "skipped": "out of memory"}
    assert "best_tflops" in record["matmul"]["bf16"] and "best_tflops" in record["mlp"]["fp32"]
    assert "matmul fp32 96x96x96: skipped: out of memory" in record["notes"]
    validate_calibration(record)


def test_failing_kernel_skips_the_rest_of_its_series_only(cpu_info, monkeypatch):
    real_kernel = run_module.matmul_kernel

    def broken_fp32(m, n, k, dtype, *args, **kwargs):
        if dtype == "fp32":
            raise RuntimeError("CUBLAS_STATUS_NOT_SUPPORTED\nmore detail")
        return real_kernel(m, n, k, dtype, *args, **kwargs)

    monkeypatch.setattr(run_module, "matmul_kernel", broken_fp32)
    record = run_tiny(cpu_info)
    fp32 = record["matmul"]["fp32"]
    assert [s["skipped"] for s in fp32["shapes"]] == ["failed: CUBLAS_STATUS_NOT_SUPPORTED"] * 2
    assert fp32["skipped"] == "every size was skipped (see the list)"
    assert "best_tflops" in record["matmul"]["bf16"]
    validate_calibration(record)


def test_size_predicted_to_exceed_the_iteration_limit_is_skipped(cpu_info):
    slow = Budget(warmup_s=0.0, budget_s=0.0, min_iters=2, max_iters=2, max_iteration_s=1e-9)
    record = run_tiny(cpu_info, tiny_plan(budget=slow))
    shapes = record["matmul"]["fp32"]["shapes"]
    assert "best_tflops" in shapes[0]  # the first size of a series is always measured
    assert shapes[1]["skipped"].startswith("too slow on this device: about 0 s per iteration")
    assert "best_tflops" in record["matmul"]["bf16"]  # another series, measured on its own
    assert any(n.startswith("matmul fp32 96x96x96: skipped: too slow") for n in record["notes"])


def test_iteration_limit_prediction_scales_with_work(cpu_info, monkeypatch):
    from profiler.timing import Timing

    seconds = iter([1.0, 2.0])  # 64^3 takes 1 s, twice the work 2 s
    monkeypatch.setattr(run_module, "measure", lambda *a, **k: Timing((next(seconds),) * 2))
    limit = Budget(warmup_s=0.0, budget_s=0.0, min_iters=2, max_iters=2, max_iteration_s=3.0)
    plan = Plan(mode="quick", items=(Item("matmul", "fp32", (64, 64, 64), limit),
                                     Item("matmul", "fp32", (64, 64, 128), limit),  # 2 s: measured
                                     Item("matmul", "fp32", (128, 128, 64), limit)),  # 4 s: skipped
                device_warmup_s=0.0, flush_bytes=1 << 20)
    shapes = run_tiny(cpu_info, plan)["matmul"]["fp32"]["shapes"]
    assert ["skipped" in s for s in shapes] == [False, False, True]
    assert "about 4 s per iteration" in shapes[2]["skipped"]


def test_progress_is_reported_for_every_measurement(cpu_info):
    seen = []
    run_tiny(cpu_info, progress=lambda done, total, label: seen.append((done, total, label)))
    assert seen[-1] == (5, 5, "done")
    assert (1, 5, "matmul fp32 64x64x64") in seen


def test_progress_bar_prints_one_line_per_step_when_not_a_terminal():
    stream = io.StringIO()
    bar = ProgressBar(stream, width=10)
    bar(3, 10, "matmul fp32 1024x1024x1024")
    assert stream.getvalue().startswith("[###.......]  3/10")
    assert stream.getvalue().endswith("matmul fp32 1024x1024x1024\n")


# -- telemetry -----------------------------------------------------------------------------------


def _sample(clock, reasons):
    return TelemetrySample(0.0, clock, 300.0, 60.0, reasons)


def test_telemetry_flags_throttling_reasons_but_not_idle():
    throttling = frozenset({"sw_power_cap", "hw_thermal_slowdown"})
    hot = summarize([_sample(1980.0, ("gpu_idle",)), _sample(1500.0, ("sw_power_cap",))], "nvml", 0.5, throttling)
    assert hot["throttled"] is True and hot["reasons"] == ["sw_power_cap"]
    assert hot["clock_mhz"] == {"min": 1500.0, "median": 1740.0, "max": 1980.0}
    idle = summarize([_sample(1980.0, ("gpu_idle",))], "nvml", 0.5, throttling)
    assert idle["throttled"] is False and idle["reasons"] == []


def test_telemetry_without_reasons_cannot_tell_throttling():
    summary = summarize([_sample(2500.0, None)], "procfs", 0.5)
    assert summary["throttled"] is None
    assert summarize([], None, 0.5) == {"source": None, "samples": 0, "interval_s": 0.5, "clock_mhz": None,
                                        "power_w": None, "temperature_c": None, "throttled": None, "reasons": []}


def test_sampler_samples_at_start_and_at_end():
    readings = iter([_sample(1.0, ()), _sample(2.0, ())])
    with Sampler(lambda: next(readings), interval_s=3600) as sampler:
        pass
    assert [s.clock_mhz for s in sampler.samples] == [1.0, 2.0]


def test_sampler_survives_a_failing_reader():
    def read():
        raise RuntimeError("NVML gone")

    with Sampler(read, interval_s=0.01) as sampler:
        time.sleep(0.05)
    assert sampler.samples == []


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture
def profile_cli(cli, monkeypatch, tmp_path):
    """The `cli` runner, run in an empty folder."""
    monkeypatch.chdir(tmp_path)
    return cli


@pytest.fixture
def tiny_sweep(monkeypatch):
    monkeypatch.setattr(run_module, "make_plan", lambda *args, **kwargs: tiny_plan())


def test_profile_rejects_unknown_dtype_listing_valid_values(profile_cli):
    result = profile_cli("profile", "--dtype", "bf16,fp64")  # --dtype: the old name of --precision
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: unknown --precision 'fp64'; use one of fp32, tf32, bf16, fp16, fp8"


def test_profile_without_torch_says_how_to_install_it(profile_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    result = profile_cli("profile", "--device", "cpu")
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert message.startswith("Error: torch is not installed") and "\n" not in message
    # gpucost is not on PyPI: the command must install from the checkout, with a CPU or CUDA torch first
    assert "gpucost[profile]" not in message and 'pip install ".[profile]"' in message
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in message
    assert "CUDA" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_profile_cuda_without_gpu_says_so(profile_cli):
    result = profile_cli("profile", "--device", "cuda")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: --device cuda was requested but torch sees no CUDA GPU")
    assert "Traceback" not in result.stderr


def test_profile_refuses_an_output_folder_that_does_not_exist_before_measuring(profile_cli, tmp_path):
    result = profile_cli("profile", "--device", "cpu", "--output", str(tmp_path / "no" / "cal.yaml"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_profile_json_prints_the_record_it_writes(profile_cli, tiny_sweep, tmp_path):
    result = profile_cli("profile", "--device", "cpu", "--format", "json", "--output", "cal.yaml")
    assert result.exit_code == 0, result.stderr
    assert result.json() == read_calibration(tmp_path / "cal.yaml")
    assert result.json()["command"] == "gpucost profile --device cpu --output cal.yaml --format json"
    assert "Wrote calibration to cal.yaml" in result.stderr


def test_profile_table_writes_the_default_file_and_quiet_silences_stderr(profile_cli, tiny_sweep, tmp_path):
    result = profile_cli("profile", "--device", "cpu", "--quiet")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert "matmul TFLOP/s" in result.stdout and "skipped: not applicable on CPU" in result.stdout
    assert read_calibration(tmp_path / "gpucost-calibration.yaml")["device"]["backend"] == "cpu"


def test_profile_interrupted_writes_partial_file_and_exits_130(profile_cli, tiny_sweep, monkeypatch, tmp_path):
    real_measure, calls = run_module.measure, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_measure(*args, **kwargs)

    monkeypatch.setattr(run_module, "measure", interrupted)
    result = profile_cli("profile", "--device", "cpu", "--format", "yaml")
    assert result.exit_code == 130
    assert ("Interrupted: the results measured so far were written to gpucost-calibration.yaml (partial: true)."
            in result.stderr.splitlines())
    assert read_calibration(tmp_path / "gpucost-calibration.yaml")["partial"] is True


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, estimator.cli, estimator.cli.profile, estimator.records.calibration; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- on a real GPU -------------------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_tiny_profile_measures_every_supported_dtype_with_nvml_telemetry():
    device = torch.device("cuda")
    info = describe(device)
    budget = Budget(warmup_s=0.05, budget_s=0.05, min_iters=3)
    items = tuple(Item("matmul", d, (1024, 1024, 1024), budget) for d in ("fp32", "tf32", "bf16", "fp16", "fp8"))
    plan = Plan(mode="quick", items=items + (Item("mlp", "bf16", (512, 1024), budget),
                                             Item("bandwidth", None, (64 << 20,), budget)),
                device_warmup_s=0.2, flush_bytes=256 << 20)
    record = run_profile(plan, device, info, command="test", telemetry_interval_s=0.05)
    validate_calibration(record)
    supported = [d for d in ("fp32", "tf32", "bf16", "fp16", "fp8") if run_module.unsupported_reason(info, d) is None]
    for dtype in supported:
        assert record["matmul"][dtype]["best_tflops"] > 0, dtype
    assert record["telemetry"]["source"] == "nvml" and record["telemetry"]["samples"] >= 2
    assert record["telemetry"]["throttled"] in (True, False)
    assert record["device"]["compute_capability"] == "{}.{}".format(*torch.cuda.get_device_capability())


@pytest.mark.gpu
def test_gpu_tf32_is_faster_than_ieee_fp32():
    from profiler.kernels import matmul_kernel, matmul_precision
    from profiler.timing import CudaClock, measure

    device = torch.device("cuda")
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("no TF32 before Ampere")
    kernel = matmul_kernel(4096, 4096, 4096, "fp32", device)
    best = {}
    for mode in ("fp32", "tf32"):
        with matmul_precision(mode):
            best[mode] = measure(kernel.run, CudaClock(device), warmup_s=0.1, budget_s=0.2).best_s
    assert best["tf32"] < 0.8 * best["fp32"]


def test_the_library_entry_point_returns_a_valid_record_and_announces_the_plan(tiny_sweep):
    import profiler
    from estimator.records.calibration import validate_calibration

    seen = []
    record = profiler.profile("cpu", ["fp32"], announce=lambda info, plan, model_dtypes: seen.append(
        (info.backend, len(plan.items), list(model_dtypes))))
    assert validate_calibration(record) == record
    assert record["device"]["backend"] == "cpu" and record["matmul"]["fp32"]["best_tflops"] > 0
    assert seen == [("cpu", len(tiny_plan().items), [])]
