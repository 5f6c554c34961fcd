"""NVIDIA Management Library queries: the only module that imports ``pynvml`` (nvidia-ml-py).

Every query may fail (no driver, no NVML, a field the board does not report, an old driver without
the function) and then reads as ``None``; nothing here raises. Pattern after wookayin/gpustat
``nvml.py``. Units: memory in bytes, clocks in MHz, power in W (NVML reports mW), temperature in C.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from profiler.telemetry import TelemetrySample

# nvmlClocksEventReason* (formerly nvmlClocksThrottleReason*) bits, from nvml.h.
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x0000000000000001: "gpu_idle",
    0x0000000000000002: "applications_clocks_setting",
    0x0000000000000004: "sw_power_cap",
    0x0000000000000008: "hw_slowdown",
    0x0000000000000010: "sync_boost",
    0x0000000000000020: "sw_thermal_slowdown",
    0x0000000000000040: "hw_thermal_slowdown",
    0x0000000000000080: "hw_power_brake_slowdown",
    0x0000000000000100: "display_clock_setting",
}
# The reasons that mean the chip ran below the clock it could otherwise hold (power, heat, slowdown).
THROTTLING_REASONS = frozenset(
    {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"}
)
_NVML_CLOCK_SM = 1  # NVML_CLOCK_SM
_NVML_TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU


def decode_clock_event_reasons(mask: int | None) -> tuple[str, ...] | None:
    """Names of the bits set in an NVML clock-event (throttle) reason bitmask, lowest bit first.

    Unknown bits read as ``unknown_0x...``; ``None`` stays ``None``.
    """
    if mask is None:
        return None
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    rest = mask & ~sum(CLOCK_EVENT_REASONS)
    if rest:
        names.append(f"unknown_{rest:#x}")
    return tuple(names)


@dataclass(frozen=True, slots=True)
class NvmlStatic:
    """What does not change during a run. Any field may be None."""

    name: str | None
    memory_total_bytes: int | None
    driver_version: str | None
    cuda_driver_version: str | None
    compute_capability: str | None
    max_sm_clock_mhz: float | None
    power_limit_w: float | None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlDevice:
    """One GPU seen through NVML. Get one with :func:`open_device`; ``close()`` when done."""

    def __init__(self, module: Any, handle: Any):
        self._nvml = module
        self._handle = handle

    def _query(self, function: str, *args: Any, device: bool = True) -> Any:
        """``pynvml.<function>(handle, *args)``; None on any failure (NVMLError, missing function)."""
        try:
            call: Callable[..., Any] = getattr(self._nvml, function)
            return call(self._handle, *args) if device else call(*args)
        except Exception:  # NVMLError_NotSupported, NVMLError_Unknown, AttributeError, ...
            return None

    def static(self) -> NvmlStatic:
        """Name, memory, driver and CUDA driver versions, compute capability, max SM clock, power limit."""
        memory = self._query("nvmlDeviceGetMemoryInfo")
        cuda = self._query("nvmlSystemGetCudaDriverVersion", device=False)
        capability = self._query("nvmlDeviceGetCudaComputeCapability")
        power_limit_mw = self._query("nvmlDeviceGetEnforcedPowerLimit")
        max_clock = self._query("nvmlDeviceGetMaxClockInfo", _NVML_CLOCK_SM)
        return NvmlStatic(
            name=_text(self._query("nvmlDeviceGetName")),
            memory_total_bytes=int(memory.total) if getattr(memory, "total", None) is not None else None,
            driver_version=_text(self._query("nvmlSystemGetDriverVersion", device=False)),
            cuda_driver_version=f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None,
            compute_capability=f"{capability[0]}.{capability[1]}" if isinstance(capability, tuple) else None,
            max_sm_clock_mhz=float(max_clock) if max_clock is not None else None,
            power_limit_w=power_limit_mw / 1000.0 if power_limit_mw is not None else None,
        )

    def pci_bus_id(self) -> str | None:
        """The PCI bus id NVML reports (``00000000:18:00.0``), or None."""
        info = self._query("nvmlDeviceGetPciInfo")
        return _text(getattr(info, "busId", None)) if info is not None else None

    def sample(self) -> TelemetrySample:
        """Current SM clock, power draw, temperature and clock-event reasons."""
        clock = self._query("nvmlDeviceGetClockInfo", _NVML_CLOCK_SM)
        power_mw = self._query("nvmlDeviceGetPowerUsage")
        temperature = self._query("nvmlDeviceGetTemperature", _NVML_TEMPERATURE_GPU)
        mask = self._query("nvmlDeviceGetCurrentClocksEventReasons")
        if mask is None:  # drivers before 535 only have the older name
            mask = self._query("nvmlDeviceGetCurrentClocksThrottleReasons")
        return TelemetrySample(
            time_s=time.monotonic(),
            clock_mhz=float(clock) if clock is not None else None,
            power_w=power_mw / 1000.0 if power_mw is not None else None,
            temperature_c=float(temperature) if temperature is not None else None,
            reasons=decode_clock_event_reasons(mask),
        )

    def close(self) -> None:
        """Shut NVML down (balanced with the init in :func:`open_device`)."""
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass


def open_device(index: int, uuid: str | None = None) -> NvmlDevice | None:
    """The NVML view of a GPU, found by UUID (robust to ``CUDA_VISIBLE_DEVICES``) else by index.

    Returns None when pynvml is not installed, NVML cannot start (no NVIDIA driver) or the device
    cannot be found.
    """
    try:
        module = importlib.import_module("pynvml")
    except ImportError:
        return None
    try:
        module.nvmlInit()
    except Exception:
        return None
    handle = None
    if uuid:
        for candidate in (uuid, f"GPU-{uuid}"):
            try:
                handle = module.nvmlDeviceGetHandleByUUID(candidate)
                break
            except Exception:
                continue
    if handle is None:
        try:
            handle = module.nvmlDeviceGetHandleByIndex(index)
        except Exception:
            try:
                module.nvmlShutdown()
            except Exception:
                pass
            return None
    return NvmlDevice(module, handle)
