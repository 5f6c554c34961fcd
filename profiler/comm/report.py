"""Turning the collective benchmark's raw timings into the ``collectives`` record section.

Pure Python (no torch): a measured row from the slowest rank's per-iteration times, the straggler
report from every rank's matmul rate, and the section itself (schema: estimator/records/collectives.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from estimator.records.collectives import BENCHMARK_VERSION, SCHEMA_VERSION, algbw_gbps, bus_factor, summarize

DEFAULT_MARGIN_PCT = 10.0


def _round(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def measured_row(op: str, group: str, num_ranks: int, dtype: str, size_bytes: int, count: int,
                 times_s: Sequence[float], impl: str, emulated: bool) -> dict[str, Any]:
    """One row: ``times_s`` are the per-iteration times of the slowest rank (max over ranks).

    ``time_s`` is their median, ``best_time_s`` their minimum; algbw = size / time_s (GB = 1e9 B),
    busbw = algbw x the nccl-tests factor of ``op`` over ``num_ranks``.
    """
    if not times_s or any(t <= 0 for t in times_s):
        raise ValueError(f"measured_row needs positive times, got {list(times_s)!r}")
    median = _round(statistics.median(times_s))
    best = _round(min(times_s))
    alg = algbw_gbps(size_bytes, median)
    return {"op": op, "group": group, "num_ranks": num_ranks, "dtype": dtype, "size_bytes": size_bytes,
            "count": count, "iterations": len(times_s), "time_s": median, "best_time_s": best,
            "algbw_gbps": _round(alg), "busbw_gbps": _round(alg * bus_factor(op, num_ranks)),
            "emulated": emulated, "impl": impl}


def straggler_report(per_rank: Sequence[Mapping[str, Any]], benchmark: Mapping[str, Any],
                     margin_pct: float = DEFAULT_MARGIN_PCT) -> dict[str, Any]:
    """The ``stragglers`` section from each rank's matmul result.

    ``per_rank`` items: ``rank``, ``host``, ``best_tflops``, ``median_tflops``, ``iterations``,
    ``throttled`` (True / False / None), ``reasons``. A rank whose median TFLOP/s is more than
    ``margin_pct`` below the median over ranks is ``slow``; ``flagged`` lists the slow and the
    throttled ranks.
    """
    if not per_rank:
        raise ValueError("straggler_report needs at least one rank")
    rates = [r["median_tflops"] for r in per_rank]
    middle = statistics.median(rates)
    ranks, flagged = [], []
    for item in sorted(per_rank, key=lambda r: r["rank"]):
        slowdown = 100.0 * (1.0 - item["median_tflops"] / middle) if middle > 0 else 0.0
        slow = slowdown > margin_pct
        ranks.append({"rank": item["rank"], "host": item["host"], "best_tflops": _round(item["best_tflops"]),
                      "median_tflops": _round(item["median_tflops"]), "iterations": item["iterations"],
                      "slowdown_pct": round(slowdown, 2), "slow": slow, "throttled": item.get("throttled"),
                      "reasons": list(item.get("reasons") or [])})
        if slow or item.get("throttled"):
            flagged.append(item["rank"])
    spread = 100.0 * (max(rates) - min(rates)) / middle if middle > 0 else 0.0
    return {"benchmark": dict(benchmark), "margin_pct": float(margin_pct), "median_tflops": _round(middle),
            "spread_pct": round(spread, 2), "ranks": ranks, "flagged": flagged}


def straggler_notes(report: Mapping[str, Any]) -> list[str]:
    """Plain-language notes for the flagged ranks (none when every rank is within the margin)."""
    notes = []
    for item in report["ranks"]:
        if item["slow"]:
            notes.append(f"straggler: rank {item['rank']} ({item['host']}) ran the matmul at "
                         f"{item['median_tflops']:.4g} TFLOP/s, {item['slowdown_pct']:.1f}% below the median of "
                         f"{report['median_tflops']:.4g} (margin {report['margin_pct']:g}%): a slow device or a "
                         "busy host slows every collective it takes part in")
        if item["throttled"]:
            notes.append(f"rank {item['rank']} ({item['host']}) throttled its clocks during the matmul "
                         f"({', '.join(item['reasons']) or 'reason not reported'})")
    return notes


def build_section(*, created_utc: str, command: str, partial: bool, duration_s: float, backend: str,
                  launcher: str, world_size: int, num_nodes: int, mode: str, dtypes: Sequence[str],
                  timeout_s: float, groups: Sequence[Mapping[str, Any]], ranks: Sequence[Mapping[str, Any]],
                  rows: Sequence[Mapping[str, Any]], skipped: Sequence[Mapping[str, Any]],
                  cross_check: Mapping[str, Any] | None, stragglers: Mapping[str, Any] | None,
                  notes: Sequence[str]) -> dict[str, Any]:
    """The ``collectives`` section, keys in schema order, with its summary computed from ``rows``."""
    return {
        "schema_version": SCHEMA_VERSION,
        "benchmark_version": BENCHMARK_VERSION,
        "created_utc": created_utc,
        "command": command,
        "partial": partial,
        "duration_s": round(duration_s, 1),
        "backend": backend,
        "launcher": launcher,
        "world_size": world_size,
        "num_nodes": num_nodes,
        "mode": mode,
        "dtypes": list(dtypes),
        "timeout_s": float(timeout_s),
        "groups": [dict(g) for g in groups],
        "ranks": [dict(r) for r in ranks],
        "rows": [dict(r) for r in rows],
        "skipped": [dict(s) for s in skipped],
        "cross_check": dict(cross_check) if cross_check is not None else None,
        "stragglers": dict(stragglers) if stragglers is not None else None,
        "summary": summarize(rows),
        "notes": list(notes),
    }
