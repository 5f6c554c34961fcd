"""Per-shape rows of a calibration record, for ``gpucost profile --format csv`` (and ``gpucost plot``'s data).

One row per measurement with the same columns in every row, so a spreadsheet or pandas reads the
file as one table: every matmul shape, every MLP width, each model step result, the copy
bandwidth and, with a ``collectives`` section, every collective row. Skipped entries are rows
too, with the reason in ``skipped``. Pure Python.

Columns: ``benchmark`` (matmul, mlp, model <id>, copy, or the collective op), ``dtype``, the size
(``m n k`` for matmul, ``width tokens params`` for mlp, ``bytes`` for copy and collectives), ``group``
and ``num_ranks`` for collectives, ``best median worst`` in ``unit`` (TFLOP/s, or GB/s; collectives:
bus bandwidth, nccl-tests busbw, in ``median`` as measured from the median time, and ``best`` from
the best time), ``stdev_pct``, ``iterations``, ``peak`` (the catalog's datasheet figure),
``pct_of_peak`` (100 x best / peak) and ``skipped``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COLUMNS = ("benchmark", "dtype", "m", "n", "k", "width", "tokens", "params", "bytes", "group", "num_ranks",
           "best", "median", "worst", "unit", "stdev_pct", "iterations", "peak", "pct_of_peak", "skipped")


def _row(**values: Any) -> dict[str, Any]:
    return {column: values.get(column) for column in COLUMNS}


def _pct(best: float | None, peak: float | None) -> float | None:
    return round(100 * best / peak, 2) if best is not None and peak else None


def shape_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows (dicts with :data:`COLUMNS` as keys, None where a column does not apply) of ``record``
    (a dict as read, or a typed record with ``to_dict()``)."""
    if hasattr(record, "to_dict"):
        record = record.to_dict()
    rows: list[dict[str, Any]] = []
    for section, items_key, size_keys in (("matmul", "shapes", ("m", "n", "k")),
                                          ("mlp", "widths", ("width", "tokens", "params"))):
        for dtype, entry in (record.get(section) or {}).items():
            peak = entry.get("peak_tflops")
            if "best_tflops" not in entry:
                rows.append(_row(benchmark=section, dtype=dtype, unit="TFLOP/s", peak=peak,
                                 skipped=entry.get("skipped")))
                continue
            for item in entry.get(items_key, []):
                sizes = {key: item[key] for key in size_keys}
                if "best_tflops" not in item:
                    rows.append(_row(benchmark=section, dtype=dtype, **sizes, unit="TFLOP/s", peak=peak,
                                     skipped=item.get("skipped")))
                    continue
                rows.append(_row(benchmark=section, dtype=dtype, **sizes, best=item["best_tflops"],
                                 median=item["median_tflops"], worst=item["worst_tflops"], unit="TFLOP/s",
                                 stdev_pct=item["stdev_pct"], iterations=item["iterations"], peak=peak,
                                 pct_of_peak=_pct(item["best_tflops"], peak)))
    model = record.get("model") or {}
    for dtype, result in (model.get("results") or {}).items():
        name = f"model {model.get('id')}"
        tokens = model.get("micro_batch", 0) * model.get("seq_len", 0) or None
        if "best_tflops" not in result:
            rows.append(_row(benchmark=name, dtype=dtype, tokens=tokens, unit="TFLOP/s", skipped=result.get("skipped")))
        else:
            rows.append(_row(benchmark=name, dtype=dtype, tokens=tokens, best=result["best_tflops"],
                             median=result["median_tflops"], worst=result["worst_tflops"], unit="TFLOP/s",
                             stdev_pct=result["stdev_pct"], iterations=result["iterations"]))
    bandwidth = record.get("bandwidth") or {}
    if "best_gbps" in bandwidth:
        rows.append(_row(benchmark="copy", bytes=bandwidth["buffer_bytes"], best=bandwidth["best_gbps"],
                         median=bandwidth["median_gbps"], worst=bandwidth["worst_gbps"], unit="GB/s",
                         stdev_pct=bandwidth["stdev_pct"], iterations=bandwidth["iterations"],
                         peak=bandwidth.get("peak_gbps"),
                         pct_of_peak=_pct(bandwidth["best_gbps"], bandwidth.get("peak_gbps"))))
    elif bandwidth:
        rows.append(_row(benchmark="copy", unit="GB/s", peak=bandwidth.get("peak_gbps"),
                         skipped=bandwidth.get("skipped")))
    collectives = record.get("collectives") or {}
    for item in collectives.get("rows") or []:
        busbw, time_s, best_time_s = item.get("busbw_gbps"), item.get("time_s"), item.get("best_time_s")
        best = busbw * time_s / best_time_s if busbw is not None and time_s and best_time_s else None
        rows.append(_row(benchmark=item.get("op"), dtype=item.get("dtype"), bytes=item.get("size_bytes"),
                         group=item.get("group"), num_ranks=item.get("num_ranks"), best=best, median=busbw,
                         unit="GB/s (busbw)", iterations=item.get("iterations")))
    for item in collectives.get("skipped") or []:
        rows.append(_row(benchmark=item.get("op"), dtype=item.get("dtype"), bytes=item.get("size_bytes"),
                         group=item.get("group"), unit="GB/s (busbw)", skipped=item.get("reason")))
    return rows
