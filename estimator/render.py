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


def _cell(value: Any) -> str:
    """One value as CSV cell text: a record as ``key=value`` pairs (nested keys dotted), a list as
    its items joined by ``; `` (never a Python repr)."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_cell(v)}" for k, v in _flatten(value).items())
    if isinstance(value, (list, tuple)):
        return "; ".join(_cell(v) for v in value)
    if value is None:
        return ""
    return str(value)


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> dotted keys, lists -> '; '-joined cells (a list of records: each one's
    ``key=value`` pairs), for one CSV row."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            flat[name] = "; ".join(_cell(v) for v in value)
        else:
            flat[name] = value
    return flat


GAP = 2  # tabulate's "simple" format: two spaces between columns
HEADER_PAD = 2  # tabulate widens a column to its header + 2 (room for alignment)


def _cell_width(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def _wrap(text: str, width: int) -> str:
    """``text`` wrapped to ``width`` columns (its own line breaks kept; long words broken)."""
    import textwrap

    lines: list[str] = []
    for line in text.splitlines() or [""]:
        lines += textwrap.wrap(line, width=max(1, width), break_long_words=True, break_on_hyphens=False) or [""]
    return "\n".join(lines)


def _floor(natural: int, narrowest: int) -> int:
    """The narrowest a column of ``natural`` width is wrapped to: ``narrowest``, or a third of its
    width for a long one (a cell cut into more than three lines reads worse than a dropped column)."""
    return min(natural, max(narrowest, -(-natural // 3)))


def fit_widths(rows: Sequence[Sequence[Any]], headers: Sequence[str], width: int, *, gap: int = GAP,
               narrowest: int = 12, whole: Sequence[int] = ()) -> list[int] | None:
    """Column widths that fit a table into ``width`` characters by narrowing its widest columns
    (their cells then wrap), or None when it already fits. No column goes below ``narrowest`` (or a
    third of its natural width, or all of it), and the ``whole`` ones (indexes: names, ids) keep their
    width; where even that is too wide, every column gets an equal share."""
    columns = list(zip(*([list(headers)] + [list(map(str, r)) for r in rows]))) if rows or headers else []
    if not columns:
        return None
    natural = [max([_cell_width(c) for c in col[1:]] + [_cell_width(col[0]) + (HEADER_PAD if col[0] else 0)])
               for col in columns]
    room = width - gap * (len(natural) - 1)
    if sum(natural) <= room:
        return None
    floor = [n if i in whole else _floor(n, narrowest) for i, n in enumerate(natural)]
    if sum(floor) > room:  # the whole ones wrap too
        floor = [_floor(n, narrowest) for n in natural]
    if sum(floor) > room:  # too many columns for the floor: an equal share each
        share = max(HEADER_PAD + 1, room // len(natural))
        return [min(n, share) for n in natural]
    # the widest cap such that the columns, each cut to it (never below its floor), fit the room
    low, high = 1, max(natural)
    while low < high:
        cap = (low + high + 1) // 2
        if sum(max(f, min(n, cap)) for n, f in zip(natural, floor)) <= room:
            low = cap
        else:
            high = cap - 1
    return [max(f, min(n, low)) for n, f in zip(natural, floor)]


def fit_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], width: int, *,
              optional: Sequence[str] = (), whole: Sequence[str] | None = None, narrowest: int = 12,
              ) -> tuple[list[list[str]], list[str], list[str]]:
    """Fit a table into ``width`` columns: drop the ``optional`` columns (named by header, first
    named first) while the others cannot fit at ``narrowest`` characters each (the ``whole`` ones,
    by default the first, at their full width), then wrap the widest cells. Returns (rows, headers, the names of the columns dropped). Every cell is a
    string with its own line breaks, so tabulate need not wrap (or parse) anything."""
    headers = [str(h) for h in headers]
    rows = [[str(c) for c in r] for r in rows]
    dropped: list[str] = []
    keep = set(headers[:1] if whole is None else whole)

    def too_wide() -> bool:
        natural = [max([_cell_width(r[i]) for r in rows] + [_cell_width(h) + (HEADER_PAD if h else 0)])
                   for i, h in enumerate(headers)]
        return sum(n if h in keep else _floor(n, narrowest) for n, h in zip(natural, headers)) \
            + GAP * (len(headers) - 1) > width

    for name in optional:
        if not too_wide():
            break
        if name in headers:
            i = headers.index(name)
            dropped.append(name)
            headers = headers[:i] + headers[i + 1:]
            rows = [r[:i] + r[i + 1:] for r in rows]
    widths = fit_widths(rows, headers, width, narrowest=narrowest,
                        whole=[i for i, h in enumerate(headers) if h in keep])
    if widths is not None:
        headers = [_wrap(h, w - HEADER_PAD) if h else h for h, w in zip(headers, widths)]
        rows = [[_wrap(c, w) for c, w in zip(r, widths)] for r in rows]
    return rows, headers, dropped


def render(data: Mapping[str, Any] | Sequence[Mapping[str, Any]], fmt: str,
           *, rows: Sequence[Sequence[Any]] | None = None, headers: Sequence[str] | None = None,
           width: int | None = None, optional: Sequence[str] = (), whole: Sequence[str] | None = None) -> str:
    """Render ``data`` (a record or a list of records) in ``fmt``.

    json/yaml/csv print ``data`` itself (csv: one row per record, nested keys dotted). table and
    markdown print ``rows`` under ``headers`` when given (a view for people), else ``data``. With
    ``width`` (a terminal's), a table is fitted to it: the ``optional`` columns are dropped (and
    named under it) where the rest would not fit, then the widest columns wrap (never the ``whole``
    ones, by default the first). Cells reach tabulate
    as finished strings with number parsing off, so "1,024" stays text (tabulate 0.9-0.10 parse
    cells in their own column wrapping whatever ``disable_numparse`` says, so it is not used).
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
        dropped: list[str] = []
        if width and fmt == "table":
            rows, headers, dropped = fit_table(rows, list(headers or ()), width, optional=optional, whole=whole)
        text = tabulate(rows, headers=list(headers or ()), tablefmt=style, disable_numparse=True)
        if dropped:
            text += "\n" + _wrap(f"(not shown at {width} columns: {', '.join(dropped)}; --wide shows every column)",
                                  width)
        return text
    raise ValueError(f"unknown format {fmt!r}")
