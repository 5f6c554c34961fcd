"""Render records for people (table, markdown) and for programs (json, yaml, csv)."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any



def _plain(value: Any) -> Any:
    """JSON-ready copy: dates -> ISO strings, mappings/tuples -> dicts/lists."""
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> dotted keys, lists -> '; '-joined strings (for one CSV row)."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            flat[name] = "; ".join(str(v) for v in value)
        else:
            flat[name] = value
    return flat


def fit_widths(rows: Sequence[Sequence[Any]], headers: Sequence[str], width: int, *, gap: int = 2,
               narrowest: int = 12) -> list[int] | None:
    """Column widths that fit a table into ``width`` characters by narrowing its widest columns
    (their cells then wrap), or None when it already fits. No column goes below ``narrowest``."""
    columns = list(zip(*([list(headers)] + [list(map(str, r)) for r in rows]))) if rows else []
    widths = [max(len(line) for cell in col for line in str(cell).splitlines() or [""]) for col in columns]
    total = sum(widths) + gap * max(0, len(widths) - 1)
    if total <= width:
        return None
    while total > width:
        widest = max(range(len(widths)), key=widths.__getitem__)
        cut = min(total - width, widths[widest] - narrowest)
        if cut <= 0:
            break
        widths[widest] -= cut
        total -= cut
    return widths


def render(data: Mapping[str, Any] | Sequence[Mapping[str, Any]], fmt: str,
           *, rows: Sequence[Sequence[Any]] | None = None, headers: Sequence[str] | None = None,
           width: int | None = None) -> str:
    """Render ``data`` (a record or a list of records) in ``fmt``.

    json/yaml/csv print ``data`` itself (csv: one row per record, nested keys dotted). table and
    markdown print ``rows`` under ``headers`` when given (a view for people), else ``data``. With
    ``width`` (a terminal's), a table is fitted to it by wrapping its widest columns.
    """
    plain = _plain(data)
    if fmt == "json":
        return json.dumps(plain, indent=2, allow_nan=False)
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True).rstrip("\n")
    if fmt == "csv":
        records = [plain] if isinstance(plain, dict) else list(plain)
        flat = [_flatten(r) for r in records]
        columns = list(dict.fromkeys(k for r in flat for k in r))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
        return out.getvalue().rstrip("\n")
    if fmt in ("table", "markdown"):
        from tabulate import tabulate

        style = "github" if fmt == "markdown" else "simple"
        if rows is None:
            if isinstance(plain, dict):
                rows, headers = [(k, v) for k, v in _flatten(plain).items()], ("field", "value")
            else:
                flat = [_flatten(r) for r in plain]
                headers = list(dict.fromkeys(k for r in flat for k in r))
                rows = [[r.get(h, "") for h in headers] for r in flat]
        widths = fit_widths(rows, list(headers or ()), width) if width and fmt == "table" else None
        return tabulate(rows, headers=list(headers or ()), tablefmt=style, disable_numparse=True,
                        **({"maxcolwidths": widths} if widths else {}))
    raise ValueError(f"unknown format {fmt!r}")
