"""Calibration records for the plot and schema tests: a GPU full sweep with wave-quantisation steps
and a collectives section, built here so the numbers are consistent (the validator checks them).
Illustrative numbers, not a measurement."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CPU_EXAMPLE = ROOT / "docs" / "examples" / "cpu-gpt2-small.yaml"
NUM_SMS = 108


def _rate(m: int, n: int, k: int, ceiling: float) -> float:
    """A cuBLAS-like rate: the last wave of 128x256 output tiles over the SMs runs part-empty."""
    tiles = math.ceil(m / 128) * math.ceil(n / 256)
    waves = math.ceil(tiles / NUM_SMS)
    ramp = min(1.0, (m * n * k) ** (1 / 3) / 4096)  # small shapes do not fill the device
    return round(ceiling * ramp * tiles / (waves * NUM_SMS), 2)


def _shape(m: int, n: int, k: int, ceiling: float) -> dict:
    best = _rate(m, n, k, ceiling)
    return {"m": m, "n": n, "k": k, "best_tflops": best, "median_tflops": round(best * 0.97, 2),
            "worst_tflops": round(best * 0.9, 2), "stdev_pct": 1.1, "iterations": 40}


def _entry(shapes: list[dict], peak: float) -> dict:
    measured = [s for s in shapes if "best_tflops" in s]
    best = max(s["best_tflops"] for s in measured)
    return {"best_tflops": best, "median_tflops": max(s["median_tflops"] for s in measured), "peak_tflops": peak,
            "pct_of_peak": round(100 * best / peak, 2), "shapes": shapes}


def collectives_section() -> dict:
    from estimator.records.collectives import bus_factor

    rows = []
    for op in ("all_reduce", "all_gather"):
        for exponent in range(10, 31, 4):  # 1 KiB .. 1 GiB
            size = 2**exponent
            busbw_large = 232.0 if op == "all_reduce" else 210.0
            time_s = 20e-6 + size * bus_factor(op, 8) / (busbw_large * 1e9)
            algbw = size / time_s / 1e9
            rows.append({"op": op, "group": "all", "num_ranks": 8, "dtype": "bf16", "size_bytes": size,
                         "count": size // 2, "iterations": 20, "time_s": time_s, "best_time_s": time_s * 0.98,
                         "algbw_gbps": algbw, "busbw_gbps": algbw * bus_factor(op, 8), "emulated": False,
                         "impl": op})
    return {
        "schema_version": 1, "benchmark_version": 1, "created_utc": "2026-12-01T10:00:00Z",
        "command": "gpucost profile --comm", "partial": False, "duration_s": 41.3, "backend": "nccl",
        "launcher": "torchrun", "world_size": 8, "num_nodes": 1, "mode": "quick", "dtypes": ["bf16"],
        "timeout_s": 120.0,
        "groups": [{"kind": "all", "index": 0, "ranks": list(range(8))}],
        "ranks": [{"rank": r, "local_rank": r, "host": "node-a", "device": "NVIDIA A100-SXM4-80GB",
                   "device_index": r, "pci_bus_id": f"00000000:{r + 16:02X}:00.0", "pid": 1000 + r} for r in range(8)],
        "rows": rows,
        "skipped": [{"op": "all_reduce", "group": "all", "dtype": "bf16", "size_bytes": 2**34,
                     "reason": "out of memory"}],
        "cross_check": None, "stragglers": None, "summary": [], "notes": [],
    }


def gpu_record(collectives: bool = True) -> dict:
    """An A100 `gpucost profile --full` record: squares 1024..16384 and the (m, 8192, 8192) series."""
    squares = [_shape(s, s, s, 280.0) for s in range(1024, 16385, 1024)]
    m_series = [_shape(m, 8192, 8192, 280.0) for m in range(1024, 32769, 2048)]
    m_series[-1] = {"m": 31744, "n": 8192, "k": 8192, "skipped": "out of memory"}
    fp16 = [_shape(s, s, s, 290.0) for s in range(2048, 16385, 2048)]
    record = {
        "schema_version": 1, "benchmark_version": 1, "created_utc": "2026-12-01T09:00:00Z",
        "command": "gpucost profile --device cuda --full --dtype bf16,fp16", "partial": False, "duration_s": 612.0,
        "device": {"name": "NVIDIA A100-SXM4-80GB", "backend": "cuda", "catalog_id": "a100-sxm-80gb", "index": 0,
                   "memory_bytes": 85_899_345_920, "compute_capability": "8.0", "num_sms": NUM_SMS,
                   "l2_cache_bytes": 41_943_040, "max_sm_clock_mhz": 1410.0, "power_limit_w": 400.0},
        "software": {"python": "3.11.9", "torch": "2.13.0", "cuda": "12.8", "hip": None, "driver": "570.86.15",
                     "cuda_driver": "12.8", "platform": "Linux"},
        "telemetry": {"source": "nvml", "samples": 1200, "interval_s": 0.5,
                      "clock_mhz": {"min": 1275.0, "median": 1410.0, "max": 1410.0},
                      "power_w": {"min": 60.0, "median": 380.0, "max": 400.0},
                      "temperature_c": {"min": 35.0, "median": 60.0, "max": 71.0},
                      "throttled": False, "reasons": []},
        "matmul": {
            "tf32": {"skipped": "measured with --dtype tf32"},
            "bf16": _entry(squares + m_series, 312.0),
            "fp16": _entry(fp16, 312.0),
        },
        "mlp": {
            "bf16": {"best_tflops": 230.0, "median_tflops": 225.4, "peak_tflops": 312.0, "pct_of_peak": 73.72,
                     "optimizer": "adamw",
                     "widths": [{"width": w, "tokens": 16384, "params": 8 * w * w + 5 * w, "best_tflops": t,
                                 "median_tflops": round(t * 0.98, 2), "worst_tflops": round(t * 0.9, 2),
                                 "stdev_pct": 2.0, "iterations": 20}
                                for w, t in ((1024, 120.0), (2048, 185.0), (4096, 220.0), (8192, 230.0))]},
        },
        "bandwidth": {"buffer_bytes": 2**30, "best_gbps": 1750.0, "median_gbps": 1720.0, "worst_gbps": 1650.0,
                      "stdev_pct": 0.5, "iterations": 100, "peak_gbps": 2039.0, "pct_of_peak": 85.83},
        "notes": [],
    }
    # the best shape and width back to back for 5 s (profiler/sustained.py): power-capped, below the burst
    record["matmul"]["bf16"]["sustained"] = {
        "m": 8192, "n": 8192, "k": 8192, "window_s": 5.0, "warmup_s": 1.0, "duration_s": 5.02, "iterations": 1290,
        "median_tflops": 251.3, "mean_tflops": 250.8, "best_tflops": 262.0, "worst_tflops": 238.9, "stdev_pct": 1.2,
        "drift_pct": -0.4, "clock_mhz": {"min": 1275.0, "median": 1305.0, "max": 1410.0},
        "power_w": {"min": 390.0, "median": 399.0, "max": 401.0}, "throttled": True, "reasons": ["sw_power_cap"]}
    record["mlp"]["bf16"]["sustained"] = {
        "width": 8192, "tokens": 16384, "params": 8 * 8192 * 8192 + 5 * 8192, "window_s": 5.0, "warmup_s": 1.0,
        "duration_s": 5.1, "iterations": 62, "median_tflops": 214.6, "mean_tflops": 213.9, "best_tflops": 221.0,
        "worst_tflops": 201.2, "stdev_pct": 1.9, "drift_pct": 0.3, "clock_mhz": None, "power_w": None,
        "throttled": None, "reasons": []}
    if collectives:
        record["collectives"] = collectives_section()
    return record


def cpu_example() -> dict:
    return yaml.safe_load(CPU_EXAMPLE.read_text(encoding="utf-8"))


def copy_of(record: dict) -> dict:
    return copy.deepcopy(record)
