"""One device's memory, the same calls on a GPU and a CPU: free what the last phase left, reset and
read the peak, and say in one line how much an out-of-memory step needed.

The CUDA calls are the only device-specific code (``torch.cuda.empty_cache``,
``reset_peak_memory_stats``, ``max_memory_allocated``, the device's total); on a CPU the peak is
not tracked (None) and the total is ``MemTotal`` of ``/proc/meminfo``.
"""

from __future__ import annotations

import gc
import re
from pathlib import Path

import torch

GIB = 2**30
# "Tried to allocate 2.00 GiB" (CUDA caching allocator); "you tried to allocate 123456 bytes" (CPU)
_CUDA_TRIED = re.compile(r"tried to allocate ([0-9.]+) (b|kib|mib|gib|tib)\b", re.I)
_CPU_TRIED = re.compile(r"tried to allocate ([0-9]+) bytes", re.I)
_UNITS = {"b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def requested_bytes(exc: BaseException) -> int | None:
    """The allocation that failed, in bytes, as the allocator's message states it; None if it does not."""
    text = str(exc)
    match = _CPU_TRIED.search(text)
    if match:
        return int(match.group(1))
    match = _CUDA_TRIED.search(text)
    if match:
        return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    return None


def _meminfo_total(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class DeviceMemory:
    """Memory figures of ``device`` (bytes; None where the device does not tell)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"

    def release(self) -> None:
        """Free what nothing references any more: Python's cycles, then (CUDA) the allocator's cached blocks."""
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_bytes(self) -> int | None:
        return int(torch.cuda.max_memory_allocated(self.device)) if self.cuda else None

    def total_bytes(self) -> int | None:
        if self.cuda:
            return int(torch.cuda.get_device_properties(self.device).total_memory)
        return _meminfo_total()

    def needed(self, exc: BaseException) -> str:
        """What an out-of-memory failure needed, for its one-line error: the peak in use when it
        failed plus the allocation refused, against the device's total; "" when nothing is known."""
        return describe_need(self.peak_bytes(), requested_bytes(exc), self.total_bytes())


def describe_need(peak: int | None, requested: int | None, total: int | None) -> str:
    """``"it needed more than 150.2 GiB (139.2 GiB in use + 11.0 GiB requested; the device has 139.8 GiB)"``;
    "" when neither the peak nor the request is known."""
    if peak is None and requested is None:
        return ""
    if peak is not None and requested is not None:
        text, detail = f"it needed more than {(peak + requested) / GIB:.1f} GiB", \
            [f"{peak / GIB:.1f} GiB in use + {requested / GIB:.1f} GiB requested"]
    elif requested is not None:
        text, detail = f"it asked for {requested / GIB:.2f} GiB more", []
    else:
        text, detail = f"it had {peak / GIB:.1f} GiB in use", []  # type: ignore[operator]
    if total is not None:
        detail.append(f"the device has {total / GIB:.1f} GiB")
    return text + (f" ({'; '.join(detail)})" if detail else "")


__all__ = ["DeviceMemory", "describe_need", "requested_bytes"]
