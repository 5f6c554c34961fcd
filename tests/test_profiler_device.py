"""Device identity: catalog matching by driver name, NVML isolation (absent or failing -> None),
CPU facts, and which dtypes a device can run."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from estimator.catalog.core import load_catalog
from estimator.errors import GpucostError, InputError
from profiler import nvml
from profiler.device import (DeviceInfo, cpu_model_name, cuda_info, last_level_cache_bytes, match_accelerator,
                             physical_core_count, unsupported_reason)
from profiler.nvml import NvmlStatic, decode_clock_event_reasons, open_device

TINY_GPUS = """\
schema_version: 1
accelerators:
  - id: h100-sxm
    name: NVIDIA H100 SXM5 80GB
    vendor: nvidia
    device_names: ["NVIDIA H100 80GB HBM3"]
    peak_tflops: {fp32: 67, tf32: 494.7, bf16: 989.4, fp16: 989.4, fp8: 1978.9}
    memory_gb: 80
    memory_bandwidth_gbps: 3350
    tdp_w: 700
    interconnect: NVLink 4
    source: datasheet
    retrieved: 2025-01-01
"""


@pytest.fixture
def tiny_catalog(tmp_path):
    (tmp_path / "gpus.yaml").write_text(TINY_GPUS, encoding="utf-8")
    (tmp_path / "prices.yaml").write_text("schema_version: 1\nprices: []\n", encoding="utf-8")
    (tmp_path / "models.yaml").write_text("schema_version: 1\nmodels: []\n", encoding="utf-8")
    return load_catalog(tmp_path)


@pytest.mark.parametrize("driver_name, catalog_id", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"),
    ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090"),
    ("nvidia  h100 80gb hbm3", "h100-sxm"),  # case and spacing do not matter
    ("NVIDIA GeForce GTX 1080 Ti", None),  # unknown: None, not the nearest chip
])
def test_match_accelerator_uses_driver_names_from_the_shipped_catalog(driver_name, catalog_id):
    acc = match_accelerator(driver_name, load_catalog())
    assert (acc.id if acc else None) == catalog_id


def test_match_accelerator_never_treats_a_sibling_chip_as_known(tiny_catalog):
    assert match_accelerator("NVIDIA H100 80GB HBM3", tiny_catalog).id == "h100-sxm"
    assert match_accelerator("NVIDIA H100 PCIe", tiny_catalog) is None
    assert match_accelerator("NVIDIA H100", tiny_catalog) is None


def test_match_accelerator_without_name_or_catalog_is_none(tiny_catalog):
    assert match_accelerator(None, tiny_catalog) is None
    assert match_accelerator("NVIDIA H100 80GB HBM3", None) is None


def _props(name="NVIDIA H100 80GB HBM3", major=9, minor=0):
    return SimpleNamespace(name=name, total_memory=85_045_460_992, major=major, minor=minor,
                           multi_processor_count=132, L2_cache_size=52_428_800, uuid="1234-abcd")


def test_cuda_info_takes_peaks_from_the_matched_catalog_entry(tiny_catalog):
    static = NvmlStatic("NVIDIA H100 80GB HBM3", 85_045_460_992, "550.54.15", "12.4", "9.0", 1980.0, 700.0)
    info = cuda_info(0, _props(), static, "cuda", {"torch": "2.5"}, tiny_catalog)
    assert (info.catalog_id, info.peak_tflops["bf16"], info.memory_bandwidth_gbps) == ("h100-sxm", 989.4, 3350)
    assert (info.compute_capability, info.num_sms, info.power_limit_w) == ("9.0", 132, 700.0)
    record = info.record()
    assert record["catalog_id"] == "h100-sxm" and "peak_tflops" not in record and "uuid" not in record


def test_cuda_info_for_unknown_device_has_null_catalog_id_and_no_peaks(tiny_catalog):
    info = cuda_info(0, _props(name="NVIDIA H100 PCIe"), None, "cuda", {}, tiny_catalog)
    assert info.catalog_id is None
    assert dict(info.peak_tflops) == {}
    assert info.record()["catalog_id"] is None


def test_nvml_absent_gives_no_device_and_no_crash(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert open_device(0) is None


class FailingNvml(types.ModuleType):
    """A pynvml whose init works and every other query raises, as on an unsupported board."""

    class NVMLError(Exception):
        pass

    def __init__(self):
        super().__init__("pynvml")
        self.shutdowns = 0

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return object()

    def __getattr__(self, name):
        if name.startswith("nvml"):
            def fail(*args):
                raise FailingNvml.NVMLError(name)
            return fail
        raise AttributeError(name)


def test_nvml_queries_that_fail_read_as_none(monkeypatch):
    fake = FailingNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    device = open_device(0, uuid="not-a-gpu")
    assert device is not None
    assert device.static() == NvmlStatic(None, None, None, None, None, None, None)
    sample = device.sample()
    assert (sample.clock_mhz, sample.power_w, sample.temperature_c, sample.reasons) == (None, None, None, None)
    assert device.pci_bus_id() is None
    device.close()
    assert fake.shutdowns == 1


def test_nvml_init_failure_gives_no_device(monkeypatch):
    def no_driver():
        raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", SimpleNamespace(nvmlInit=no_driver))
    assert open_device(0) is None


def test_nvml_values_are_converted_to_our_units(monkeypatch):
    fake = SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None,
        nvmlDeviceGetHandleByUUID=lambda uuid: "handle" if uuid == "GPU-1234" else 1 / 0,
        nvmlDeviceGetName=lambda h: b"NVIDIA H100 80GB HBM3",
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(total=85_045_460_992),
        nvmlSystemGetDriverVersion=lambda: "550.54.15",
        nvmlSystemGetCudaDriverVersion=lambda: 12040,
        nvmlDeviceGetCudaComputeCapability=lambda h: (9, 0),
        nvmlDeviceGetEnforcedPowerLimit=lambda h: 700_000,
        nvmlDeviceGetMaxClockInfo=lambda h, clock: 1980,
        nvmlDeviceGetClockInfo=lambda h, clock: 1755,
        nvmlDeviceGetPowerUsage=lambda h: 512_345,
        nvmlDeviceGetTemperature=lambda h, sensor: 67,
        nvmlDeviceGetCurrentClocksThrottleReasons=lambda h: 0x4 | 0x40,  # old driver: only the old name
        nvmlDeviceGetPciInfo=lambda h: SimpleNamespace(busId=b"00000000:18:00.0"),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    device = open_device(0, uuid="1234")
    assert device.static() == NvmlStatic("NVIDIA H100 80GB HBM3", 85_045_460_992, "550.54.15", "12.4", "9.0",
                                         1980.0, 700.0)
    assert device.pci_bus_id() == "00000000:18:00.0"
    sample = device.sample()
    assert (sample.clock_mhz, sample.power_w, sample.temperature_c) == (1755.0, 512.345, 67.0)
    assert sample.reasons == ("sw_power_cap", "hw_thermal_slowdown")


def test_decode_clock_event_reasons_names_each_bit():
    assert decode_clock_event_reasons(0) == ()
    assert decode_clock_event_reasons(None) is None
    assert decode_clock_event_reasons(0x1 | 0x8) == ("gpu_idle", "hw_slowdown")
    assert decode_clock_event_reasons(0x4 | 0x10000) == ("sw_power_cap", "unknown_0x10000")
    assert nvml.THROTTLING_REASONS >= {"sw_power_cap", "hw_thermal_slowdown"}
    assert "gpu_idle" not in nvml.THROTTLING_REASONS


def test_cpu_model_name_reads_proc_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor @ 2.50GHz\ncpu MHz\t\t: 2500.000\n")
    assert cpu_model_name(cpuinfo) == "Intel(R) Xeon(R) Processor @ 2.50GHz"
    assert cpu_model_name(tmp_path / "missing")  # falls back to platform, never empty


def test_physical_cores_are_distinct_core_ids_per_package(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    blocks = [(p, c) for p in (0, 1) for c in (0, 1, 0, 1)]  # 2 packages x 2 cores x 2 hyperthreads
    cpuinfo.write_text("\n\n".join(f"processor\t: {n}\nphysical id\t: {p}\ncore id\t\t: {c}"
                                    for n, (p, c) in enumerate(blocks)))
    assert physical_core_count(cpuinfo) == 4
    assert physical_core_count(tmp_path / "missing") is None


def test_last_level_cache_is_the_highest_level(tmp_path):
    for index, (level, size) in enumerate([(1, "48K"), (2, "2048K"), (3, "36608K")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        (folder / "level").write_text(f"{level}\n")
        (folder / "size").write_text(f"{size}\n")
    assert last_level_cache_bytes(tmp_path) == 36608 * 1024
    assert last_level_cache_bytes(tmp_path / "none") is None


def _gpu(capability: str) -> DeviceInfo:
    return DeviceInfo(name="gpu", backend="cuda", compute_capability=capability)


def test_unsupported_reason_follows_compute_capability():
    pytest.importorskip("torch")
    assert unsupported_reason(_gpu("9.0"), "fp8") is None
    assert unsupported_reason(_gpu("8.9"), "fp8") is None
    assert "needs compute capability >= 8.9" in unsupported_reason(_gpu("8.0"), "fp8")
    assert unsupported_reason(_gpu("8.0"), "bf16") is None
    assert "needs compute capability >= 8.0, this device has 7.0" == unsupported_reason(_gpu("7.0"), "tf32")
    assert unsupported_reason(_gpu("7.0"), "fp16") is None


def test_unsupported_reason_on_cpu_names_tf32_and_fp8_not_applicable():
    pytest.importorskip("torch")
    cpu = DeviceInfo(name="cpu", backend="cpu")
    assert unsupported_reason(cpu, "tf32").startswith("not applicable on CPU")
    assert unsupported_reason(cpu, "fp8").startswith("not applicable on CPU")
    assert unsupported_reason(cpu, "fp32") is unsupported_reason(cpu, "bf16") is None


def test_resolve_device_cuda_without_gpu_says_so():
    torch = pytest.importorskip("torch")
    from profiler.device import resolve_device

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(GpucostError, match="--device cuda was requested but torch sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="unknown --device 'tpu'"):
        resolve_device("tpu")
    assert resolve_device("auto").type == "cpu"


def test_describe_cpu_reports_model_threads_and_no_catalog_entry():
    torch = pytest.importorskip("torch")
    from profiler.device import describe

    info = describe(torch.device("cpu"), load_catalog())
    assert info.backend == "cpu" and info.catalog_id is None
    assert info.num_threads == torch.get_num_threads()
    assert info.software["torch"] == str(torch.__version__)
