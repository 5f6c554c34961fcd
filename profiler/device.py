"""Which device is this: torch properties plus NVML, matched to a catalog entry by driver name.

The match is exact on the driver-reported name (``catalogs/gpus.yaml`` ``device_names``); an unknown
device keeps ``catalog_id = None`` and no peaks, and is never treated as another chip. torch is
imported inside the functions that need it, so name matching works without torch.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from estimator.catalog.records import Accelerator
from estimator.catalog.core import Catalog
from estimator.errors import GpucostError, InputError

from profiler.nvml import NvmlStatic, open_device

DEVICE_CHOICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Identity and fixed properties of the measured device. Units: bytes, MHz, W."""

    name: str
    backend: str  # cpu | cuda | rocm
    catalog_id: str | None = None
    peak_tflops: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))  # catalog, dense
    memory_bandwidth_gbps: float | None = None  # catalog peak
    index: int | None = None
    memory_bytes: int | None = None
    compute_capability: str | None = None
    num_sms: int | None = None
    l2_cache_bytes: int | None = None
    max_sm_clock_mhz: float | None = None
    power_limit_w: float | None = None
    num_cores: int | None = None
    num_logical_cpus: int | None = None
    num_threads: int | None = None
    llc_bytes: int | None = None
    uuid: str | None = None
    software: Mapping[str, str | None] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def capability(self) -> tuple[int, int] | None:
        """Compute capability as (major, minor), or None (CPU, unknown)."""
        if not self.compute_capability:
            return None
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)

    def record(self) -> dict[str, Any]:
        """The ``device`` section of the calibration record (unset optional fields left out)."""
        skip = {"peak_tflops", "memory_bandwidth_gbps", "uuid", "software"}
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        return {k: v for k, v in data.items() if v is not None or k == "catalog_id"}


def match_accelerator(device_name: str | None, catalog: Catalog | None) -> Accelerator | None:
    """The catalog accelerator whose ``device_names`` contain ``device_name``; None when unknown."""
    if not device_name or catalog is None:
        return None
    return catalog.match_device_name(device_name)


def resolve_device(requested: str) -> Any:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a ``torch.device``.

    Raises InputError for other values and GpucostError when CUDA is asked for but not available.
    """
    import torch

    text = requested.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA (CPU-only build)"
            raise GpucostError(f"--device {requested} was requested but torch sees no CUDA GPU "
                               f"(torch {torch.__version__} built with {build}); use --device cpu")
        suffix = text.partition(":")[2]
        index = torch.cuda.current_device() if text == "cuda" else int(suffix) if suffix.isdigit() else -1
        if not 0 <= index < torch.cuda.device_count():
            raise InputError(f"--device {requested}: there are {torch.cuda.device_count()} CUDA devices")
        return torch.device("cuda", index)
    raise InputError(f"unknown --device {requested!r}; use one of {', '.join(DEVICE_CHOICES)}")


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The processor model (``model name`` in /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model Name", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def physical_core_count(cpuinfo: Path = Path("/proc/cpuinfo")) -> int | None:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo: physical cores; None where not listed."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    cores, physical = set(), "0"
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "physical id":
            physical = value
        elif key == "core id":
            cores.add((physical, value))
    return len(cores) or None


def _parse_size(text: str) -> int | None:
    text = text.strip().upper()
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        return None


def last_level_cache_bytes(cpu_dir: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int | None:
    """Size of cpu0's highest-level cache (bytes) from sysfs, or None where sysfs does not say."""
    best: tuple[int, int] | None = None
    for index in sorted(cpu_dir.glob("index*")):
        try:
            level = int((index / "level").read_text())
            size = _parse_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if size is not None and (best is None or level > best[0]):
            best = (level, size)
    return best[1] if best else None


def _software(nvml: NvmlStatic | None = None) -> dict[str, str | None]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "hip": getattr(torch.version, "hip", None),
        "driver": nvml.driver_version if nvml else None,
        "cuda_driver": nvml.cuda_driver_version if nvml else None,
        "platform": platform.platform(),
    }


def _with_catalog(info: DeviceInfo, catalog: Catalog | None) -> DeviceInfo:
    acc = match_accelerator(info.name, catalog)
    if acc is None:
        return info
    return replace(info, catalog_id=acc.id, peak_tflops=acc.peak_tflops,
                   memory_bandwidth_gbps=acc.memory_bandwidth_gbps)


def describe_cpu(catalog: Catalog | None = None) -> DeviceInfo:
    """The host CPU: model name, physical cores, logical CPUs, torch threads used, memory, last-level cache."""
    import torch

    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    info = DeviceInfo(name=cpu_model_name(), backend="cpu", memory_bytes=memory,
                      num_cores=physical_core_count(), num_logical_cpus=os.cpu_count(),
                      num_threads=torch.get_num_threads(),
                      llc_bytes=last_level_cache_bytes(), software=MappingProxyType(_software()))
    return _with_catalog(info, catalog)  # CPUs are not in the catalog today: stays unknown


def cuda_info(index: int, props: Any, nvml: NvmlStatic | None, backend: str, software: Mapping[str, Any],
              catalog: Catalog | None) -> DeviceInfo:
    """Combine torch device properties and NVML facts (NVML's name wins: it is the driver string)."""
    uuid = getattr(props, "uuid", None)
    info = DeviceInfo(
        name=(nvml.name if nvml and nvml.name else props.name),
        backend=backend,
        index=index,
        memory_bytes=int(props.total_memory),
        compute_capability=f"{props.major}.{props.minor}",
        num_sms=getattr(props, "multi_processor_count", None),
        l2_cache_bytes=getattr(props, "L2_cache_size", None) or None,
        max_sm_clock_mhz=nvml.max_sm_clock_mhz if nvml else None,
        power_limit_w=nvml.power_limit_w if nvml else None,
        uuid=str(uuid) if uuid else None,
        software=MappingProxyType(dict(software)),
    )
    return _with_catalog(info, catalog)


def describe_cuda(index: int, catalog: Catalog | None = None) -> DeviceInfo:
    """A CUDA (or ROCm) GPU: torch properties, plus NVML where it answers."""
    import torch

    props = torch.cuda.get_device_properties(index)
    backend = "rocm" if getattr(torch.version, "hip", None) else "cuda"
    uuid = getattr(props, "uuid", None)
    nvml_dev = open_device(index, str(uuid) if uuid else None) if backend == "cuda" else None
    static = nvml_dev.static() if nvml_dev else None
    if nvml_dev:
        nvml_dev.close()
    return cuda_info(index, props, static, backend, _software(static), catalog)


def describe(device: Any, catalog: Catalog | None = None) -> DeviceInfo:
    """Describe a ``torch.device`` (cpu or cuda)."""
    if device.type == "cpu":
        return describe_cpu(catalog)
    return describe_cuda(device.index if device.index is not None else 0, catalog)


def unsupported_reason(info: DeviceInfo, dtype: str) -> str | None:
    """Why ``dtype`` matmul cannot run on this device, or None when it can."""
    import torch

    if info.backend == "cpu":
        if dtype == "tf32":
            return "not applicable on CPU: TF32 is a tensor-core mode of NVIDIA GPUs (compute capability >= 8.0)"
        if dtype == "fp8":
            return "not applicable on CPU: fp8 matmul needs GPU tensor cores (compute capability >= 8.9)"
        return None
    capability = info.capability or (0, 0)
    if info.backend == "rocm" and dtype in ("tf32", "fp8"):
        return f"{dtype} on ROCm is not measured by this benchmark version"
    if dtype in ("tf32", "bf16") and capability < (8, 0):
        return f"needs compute capability >= 8.0, this device has {info.compute_capability}"
    if dtype == "fp8":
        if capability < (8, 9):
            return f"needs compute capability >= 8.9 (Ada/Hopper), this device has {info.compute_capability}"
        if not hasattr(torch, "float8_e4m3fn") or not hasattr(torch, "_scaled_mm"):
            return f"torch {torch.__version__} has no float8_e4m3fn / _scaled_mm"
    return None


def free_memory_bytes(device: Any, meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Memory free for the benchmark (bytes): CUDA free memory, or MemAvailable on Linux; else None."""
    if device.type == "cuda":
        import torch

        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except RuntimeError:
            return None
    try:
        for line in meminfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    return None
