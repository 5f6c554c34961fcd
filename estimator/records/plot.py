"""Plots of a calibration file (``gpucost plot``): the profile sweep and the collective sweep.

Pure Python, no torch. :func:`panels` turns a validated calibration record into what there is to
draw: matmul TFLOP/s against matrix size per dtype (one series per shape family: the squares
m = n = k, and each (n, k) swept over m, where on a GPU the wave-quantisation steps show: the
throughput dips when the output tiles fill the SMs with a part-empty last wave), the MLP training
step against its width, and, when the file has a ``collectives`` section, bus bandwidth against
message size per op. Each datasheet peak is a horizontal line. A dtype with a sustained window
(its best size run back to back for seconds, profiler/sustained.py) gets one more point at that
size beside its burst curve, and a note: the change from the burst, the clocks, the throttle reasons.

:func:`text_plot` draws the panels as characters for a terminal (no dependency);
:func:`write_image` draws them with matplotlib (the optional ``plot`` extra) into a PNG or SVG,
written atomically (a temporary file in the same folder, then ``os.replace``) with the mode the
umask gives a new file.
"""

from __future__ import annotations

import math
import os
import tempfile
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from estimator.errors import GpucostError, InputError

IMAGE_FORMATS = ("png", "svg")
NO_MATPLOTLIB = "matplotlib is not installed; install the plot extra: pip install '.[plot]' (in a gpucost checkout)"
MARKERS = "*o+x#@%&"  # text plot: one per series, in order
DTYPE_COLORS = {"fp32": "C0", "tf32": "C1", "bf16": "C2", "fp16": "C3", "fp8": "C4", "fp64": "C5", "fp4": "C6"}
DROP_PCT = 3.0  # a point this much below the one before it (at a smaller size) is listed as a dip


@dataclass(frozen=True)
class Series:
    """One line: ``y`` (best; TFLOP/s or GB/s) and ``low`` (median) at each ``x``, sorted by x.
    ``skipped`` holds (x, reason) for the sizes that were not measured."""

    label: str
    group: str  # the dtype (or op) that picks the colour
    x: tuple[float, ...]
    y: tuple[float, ...]
    low: tuple[float, ...] = ()
    skipped: tuple[tuple[float, str], ...] = ()
    dashed: bool = False
    sustained: bool = False  # the sustained window's point: one size back to back for seconds

    def dips(self, threshold_pct: float = DROP_PCT) -> list[tuple[float, float, float]]:
        """(x before, x, % change) where y falls by at least ``threshold_pct`` from one size to the next."""
        out = []
        for (x0, y0), (x1, y1) in zip(zip(self.x, self.y), zip(self.x[1:], self.y[1:])):
            if y0 > 0 and (y1 - y0) / y0 * 100 <= -threshold_pct:
                out.append((x0, x1, (y1 - y0) / y0 * 100))
        return out


@dataclass(frozen=True)
class Panel:
    """One chart: its series, the datasheet peaks as (label, value, group) lines, and notes."""

    title: str
    xlabel: str
    ylabel: str
    series: tuple[Series, ...]
    peaks: tuple[tuple[str, float, str], ...] = ()
    log_x: bool = False
    x_is_bytes: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


# -- what to draw ----------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _bytes(value: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            amount = value / scale
            return f"{amount:.0f} {unit}" if amount == int(amount) else f"{amount:.3g} {unit}"
    return f"{value:.0f} B"


def _size(x: float, panel: Panel) -> str:
    if panel.x_is_bytes:
        return _bytes(x)
    return str(int(x)) if x == int(x) else _fmt(x)


def _sustained_note(dtype: str, entry: Mapping[str, Any], window: Mapping[str, Any], items_key: str,
                    size_key: str) -> str:
    """``bf16 sustained 251.3 TFLOP/s at 8192 (median, 5 s back to back), -6.0% from the burst median
    267.3 of that size; clocks 1275-1410 MHz; throttled: sw_power_cap``."""
    same = [i for i in entry.get(items_key, []) if "median_tflops" in i
            and all(i.get(k) == window.get(k) for k in (("m", "n", "k") if size_key == "m" else ("width", "tokens")))]
    text = (f"{dtype} sustained {_fmt(window['median_tflops'])} TFLOP/s at {window[size_key]} (median, "
            f"{window['window_s']:g} s back to back)")
    if same:
        burst = float(same[0]["median_tflops"])
        text += f", {100 * (window['median_tflops'] - burst) / burst:+.1f}% from the burst median {_fmt(burst)} of that size"
    clock = window.get("clock_mhz")
    if clock:
        text += f"; clocks {clock['min']:.0f}-{clock['max']:.0f} MHz"
    if window.get("throttled") is not None:
        text += f"; throttled: {', '.join(window['reasons'])}" if window["throttled"] else "; not throttled"
    return text


def _tflops_panel(record: Mapping[str, Any], section: str) -> Panel | None:
    items_key = "shapes" if section == "matmul" else "widths"
    series: list[Series] = []
    peaks: list[tuple[str, float, str]] = []
    notes: list[str] = []
    for dtype, entry in (record.get(section) or {}).items():
        if "best_tflops" not in entry:
            continue
        families: dict[str, list[Mapping[str, Any]]] = {}
        for item in entry.get(items_key, []):
            if section == "matmul":
                square = item["m"] == item["n"] == item["k"]
                family = f"{dtype} m=n=k" if square else f"{dtype} m x {item['n']} x {item['k']}"
            else:
                family = f"{dtype} width (tokens {item['tokens']})"
            families.setdefault(family, []).append(item)
        for label, items in families.items():
            size_key = "m" if section == "matmul" else "width"
            measured = sorted((i for i in items if "best_tflops" in i), key=lambda i: i[size_key])
            skipped = tuple((float(i[size_key]), str(i["skipped"])) for i in items if "best_tflops" not in i)
            series.append(Series(label=label, group=dtype, x=tuple(float(i[size_key]) for i in measured),
                                 y=tuple(float(i["best_tflops"]) for i in measured),
                                 low=tuple(float(i["median_tflops"]) for i in measured), skipped=skipped))
        window = entry.get("sustained")
        if window:
            size_key = "m" if section == "matmul" else "width"
            series.append(Series(label=f"{dtype} sustained ({window['window_s']:g} s back to back, median)",
                                 group=dtype, x=(float(window[size_key]),), y=(float(window["median_tflops"]),),
                                 sustained=True))
            notes.append(_sustained_note(dtype, entry, window, items_key, size_key))
        if entry.get("peak_tflops"):
            peaks.append((dtype, float(entry["peak_tflops"]), dtype))
    if not any(s.x for s in series):
        return None
    merged: dict[float, list[str]] = {}  # one line per value: bf16 and fp16 often share a peak
    for dtype, value, _ in peaks:
        merged.setdefault(value, []).append(dtype)
    peaks = [(f"{', '.join(names)} datasheet peak {_fmt(value)}", value, names[0]) for value, names in merged.items()]
    if not peaks:
        catalog_id = (record.get("device") or {}).get("catalog_id")
        notes.append("no datasheet peak: the device is not in the catalog" if not catalog_id
                     else f"no datasheet peak for these dtypes in the catalog entry {catalog_id}")
    for s in series:
        for x0, x1, pct in s.dips():
            notes.append(f"{s.label}: {pct:+.1f}% from {x0:.0f} to {x1:.0f} (a dip: e.g. a part-empty last wave)")
        for x, reason in s.skipped:
            notes.append(f"{s.label}: {x:.0f} skipped ({reason})")
    if section == "matmul":
        return Panel("matmul TFLOP/s per shape (best iteration)", "matrix size m (m x n x k)",
                     "TFLOP/s", tuple(series), tuple(peaks), notes=tuple(notes))
    return Panel("MLP training step TFLOP/s (Linear-GELU-Linear, forward + backward + AdamW; best iteration)",
                 "width d (d -> 4d -> d)",
                 "TFLOP/s", tuple(series), tuple(peaks), notes=tuple(notes))


def collective_rows(section: Any) -> list[Mapping[str, Any]]:
    """The measured rows of a ``collectives`` section (rows of op, group, size_bytes, dtype, busbw_gbps)."""
    if not isinstance(section, Mapping):
        return []
    rows = section.get("rows")
    return [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []


def _collectives_panel(record: Mapping[str, Any]) -> Panel | None:
    rows = [r for r in collective_rows(record.get("collectives")) if r.get("busbw_gbps") is not None]
    if not rows:
        return None
    groups = {r.get("group") for r in rows}
    dtypes = {r.get("dtype") for r in rows}
    by_series: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        key = (row.get("op"), row.get("group"), row.get("dtype"), bool(row.get("emulated")))
        by_series.setdefault(key, []).append(row)
    series = []
    for (op, group, dtype, emulated), items in by_series.items():
        items = sorted(items, key=lambda r: r["size_bytes"])
        label = str(op) + "".join(f", {v}" for v, many in ((group, len(groups) > 1), (dtype, len(dtypes) > 1)) if many)
        ranks = {r.get("num_ranks") for r in items}
        if len(ranks) == 1 and None not in ranks:
            label += f" ({ranks.pop()} ranks)"
        series.append(Series(label=label + (" emulated" if emulated else ""), group=str(op),
                             x=tuple(float(r["size_bytes"]) for r in items),
                             y=tuple(float(r["busbw_gbps"]) for r in items), dashed=emulated))
    section = record.get("collectives") or {}
    where = ", ".join(str(section[k]) for k in ("backend", "launcher") if section.get(k))
    size = f"world size {section.get('world_size', '?')}, {section.get('num_nodes', '?')} node(s)"
    notes = [f"{where}, {size}"] if where else []
    skipped = section.get("skipped") if isinstance(section.get("skipped"), list) else []
    if skipped:
        notes.append(f"{len(skipped)} size(s) skipped (see the file)")
    return Panel("collectives: bus bandwidth (nccl-tests busbw) per message size", "message size (bytes)",
                 "busbw GB/s", tuple(series), log_x=True, x_is_bytes=True, notes=tuple(notes))


def as_mapping(record: Any) -> Mapping[str, Any]:
    """The record as plain data: a dict as read, or a typed record's ``to_dict()``."""
    return record.to_dict() if hasattr(record, "to_dict") else record


def panels(record: Mapping[str, Any]) -> list[Panel]:
    """The charts a calibration record has data for: matmul, MLP, collectives (in that order)."""
    record = as_mapping(record)
    found = [_tflops_panel(record, "matmul"), _tflops_panel(record, "mlp"), _collectives_panel(record)]
    return [p for p in found if p is not None]


def heading(record: Mapping[str, Any]) -> list[str]:
    """Who measured what: device, software, date, and the figures that are single numbers."""
    record = as_mapping(record)
    device = record.get("device") or {}
    software = record.get("software") or {}
    where = f"{device.get('backend', '?')}; catalog: {device.get('catalog_id') or 'unknown'}"
    date = str(record.get("created_utc", ""))[:10]
    lines = [f"{device.get('name', '?')} ({where}), torch {software.get('torch') or '?'}, {date}"
             + (" PARTIAL" if record.get("partial") else "")]
    bandwidth = record.get("bandwidth") or {}
    if "best_gbps" in bandwidth:
        peak = f" of {_fmt(bandwidth['peak_gbps'])} peak" if bandwidth.get("peak_gbps") else ""
        lines.append(f"copy bandwidth {_fmt(bandwidth['best_gbps'])} GB/s best, {_fmt(bandwidth['median_gbps'])} "
                     f"median{peak}")
    model = record.get("model") or {}
    for dtype, result in (model.get("results") or {}).items():
        if "best_tflops" in result:
            rate = f", {_fmt(result['tokens_per_s'])} tokens/s" if result.get("tokens_per_s") else ""
            lines.append(f"{model.get('id')} {dtype} training step: {_fmt(result['best_tflops'])} TFLOP/s best{rate}")
    return lines


def nothing_to_plot(file: str, record: Mapping[str, Any]) -> InputError:
    has_model = bool(as_mapping(record).get("model"))
    model = " (it holds a model step only: profile with --sweep to measure the device)" if has_model else ""
    return InputError(f"{file}: nothing to plot: no matmul, MLP or collective measurement{model}")


# -- text ------------------------------------------------------------------------------------------


def _nice_ceiling(value: float) -> float:
    """The next of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10 x 10^k at or above ``value``."""
    if value <= 0:
        return 1.0
    scale = 10 ** math.floor(math.log10(value))
    return next(step * scale for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if step * scale >= value * 0.999999)


def _text_panel(panel: Panel, width: int, height: int) -> list[str]:
    """A character chart: one marker per series, ``.`` between its points, ``-`` rows for the peaks,
    ``!`` for skipped sizes; the measured sizes label the x axis (log2 for message sizes)."""
    points = [(x, y) for s in panel.series for x, y in zip(s.x, s.y)]
    xs = sorted({x for x, _ in points} | {x for s in panel.series for x, _ in s.skipped})
    top = _nice_ceiling(max([y for _, y in points] + [v for _, v, _ in panel.peaks]) * 1.05)
    x_lo, x_hi = xs[0], xs[-1]
    if x_lo == x_hi:
        x_lo, x_hi = (x_lo / 2, x_hi * 2) if panel.log_x else (x_lo - 1, x_hi + 1)
    rows = max(height, 5) | 1  # an odd number of rows: the middle one is exactly half the top
    labelled = {0: _fmt(0.0), (rows - 1) // 2: _fmt(top / 2), rows - 1: _fmt(top)}
    label_w = max(len(v) for v in labelled.values()) + 1
    cols = max(width - label_w - 2, 10)

    def col(x: float) -> int:
        if panel.log_x:
            frac = (math.log2(x) - math.log2(x_lo)) / (math.log2(x_hi) - math.log2(x_lo))
        else:
            frac = (x - x_lo) / (x_hi - x_lo)
        return min(cols - 1, max(0, round(frac * (cols - 1))))

    def row(y: float) -> int:
        return min(rows - 1, max(0, round(y / top * (rows - 1))))

    grid = [[" "] * cols for _ in range(rows)]
    peak_rows: dict[int, str] = {}
    for label, value, _ in panel.peaks:
        r = row(value)
        peak_rows[r] = f"{peak_rows[r]}, {label}" if r in peak_rows else label
        grid[r] = ["-"] * cols
    for s in panel.series:  # the lines first, so that every marker stays visible
        cells = [(col(x), row(y)) for x, y in zip(s.x, s.y)]
        for (c0, r0), (c1, r1) in zip(cells, cells[1:]):
            for c in range(c0 + 1, c1):
                r = round(r0 + (r1 - r0) * (c - c0) / (c1 - c0))
                if grid[r][c] in " -":
                    grid[r][c] = "."
    for index, s in enumerate(panel.series):
        mark = MARKERS[index % len(MARKERS)]
        for x, y in zip(s.x, s.y):
            grid[row(y)][col(x)] = mark
        for x, _ in s.skipped:
            grid[rows - 1][col(x)] = "!"
    out = [panel.title]
    for r in range(rows - 1, -1, -1):
        y_label = labelled.get(r, "")
        line = f"{y_label:>{label_w}} |" + "".join(grid[r])
        if r in peak_rows:  # name the peak line at its right end
            tag = f" {peak_rows[r]} "
            line = line[:max(label_w + 2, len(line) - len(tag))] + tag
        out.append(line.rstrip())
    out.append(" " * label_w + " +" + "-" * cols)
    axis = [" "] * cols
    free_from = 0
    for x in xs:  # label the measured sizes, leaving out those that would touch the one before
        text = _size(x, panel)
        start = min(max(col(x) - len(text) // 2, 0), max(cols - len(text), 0))
        if start >= free_from:
            axis[start:start + len(text)] = text
            free_from = start + len(text) + 1
    out.append(" " * (label_w + 2) + "".join(axis).rstrip())
    out.append(" " * (label_w + 2) + f"x: {panel.xlabel}{', log scale' if panel.log_x else ''}; y: {panel.ylabel}")
    for index, s in enumerate(panel.series):
        if not s.x:
            continue
        best = max(range(len(s.y)), key=lambda i: s.y[i])
        at = _size(s.x[best], panel)
        out.append(f"  {MARKERS[index % len(MARKERS)]} {s.label}: {len(s.x)} point(s), best {_fmt(s.y[best])} at {at}")
    if any(s.skipped for s in panel.series):
        out.append("  ! a size that was skipped (drawn at the top)")
    out += [f"  note: {n}" for n in panel.notes]
    return out


def text_plot(record: Mapping[str, Any], width: int = 80, height: int = 14) -> str:
    """The panels of ``record`` as text, at most ``width`` characters per line."""
    width = max(width, 40)
    record = as_mapping(record)
    lines = list(heading(record))
    for panel in panels(record):
        lines += [""] + _text_panel(panel, width, height)
    out = []
    for line in lines:  # the charts fit; wrap the prose that does not
        out += textwrap.wrap(line, width, subsequent_indent="      ") if len(line) > width else [line]
    return "\n".join(out)


# -- matplotlib --------------------------------------------------------------------------------------


def image_format(path: Path) -> str:
    """``png`` or ``svg`` from the file name; InputError for anything else."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in IMAGE_FORMATS:
        raise InputError(f"--output {path}: give a file name ending in .png or .svg")
    return suffix


def check_output(path: Path) -> None:
    """Fail before drawing when ``path`` cannot be written: a folder, or a missing folder."""
    image_format(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"--output {path} is a directory; give a file name such as {path / 'sweep.png'}")
    if not folder.is_dir():
        raise InputError(f"--output {path}: folder {folder} does not exist")


def figure(record: Mapping[str, Any]) -> Any:
    """A matplotlib Figure of the panels (no pyplot: no global state, no display needed)."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError as exc:
        raise GpucostError(NO_MATPLOTLIB) from exc

    record = as_mapping(record)
    charts = panels(record)
    fig = Figure(figsize=(10, 1.2 + 4.2 * len(charts)), layout="constrained")
    fig.suptitle("\n".join(heading(record)), fontsize=9, x=0.01, ha="left")
    axes = fig.subplots(len(charts), 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, charts):
        colors = {}
        for index, s in enumerate(panel.series):
            color = DTYPE_COLORS.get(s.group) or colors.setdefault(s.group, f"C{len(colors) % 10}")
            style = "--" if s.dashed else "-." if " m x " in s.label else "-"  # an (n, k) family: dash-dot
            if s.x and s.sustained:  # one size back to back: a large diamond beside its burst curve
                ax.plot(s.x, s.y, linestyle="none", marker="D", markersize=7, markeredgecolor="black",
                        color=color, label=s.label)
            elif s.x:
                ax.plot(s.x, s.y, style, marker="o", markersize=3.5, color=color, label=s.label)
                if s.low and len(s.x) > 1:
                    ax.fill_between(s.x, s.low, s.y, color=color, alpha=0.15, linewidth=0)
            if s.skipped:
                ax.plot([x for x, _ in s.skipped], [0] * len(s.skipped), "x", color=color,
                        label=f"{s.label}: skipped")
        for label, value, group in panel.peaks:
            ax.axhline(value, linestyle="--", linewidth=1, color=DTYPE_COLORS.get(group, "0.4"), alpha=0.8,
                       label=label)
        shaded = any(s.low and len(s.x) > 1 for s in panel.series)
        ax.set_title(panel.title + ("; shaded down to the median" if shaded else ""), fontsize=10, loc="left")
        notes = list(panel.notes[:6]) + (["..."] if len(panel.notes) > 6 else [])
        ax.set_xlabel("\n".join([panel.xlabel, *notes]), fontsize=9)  # below the axes: never over the data
        ax.set_ylabel(panel.ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if panel.log_x:
            ax.set_xscale("log", base=2)
        if panel.x_is_bytes:
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _bytes(x)))
        sizes = sorted({x for s in panel.series for x in s.x})
        if not panel.log_x and len(sizes) <= 10:
            ax.set_xticks(sizes, [_size(x, panel) for x in sizes])
        # the curves rise from the lower left and level off: the lower right is where they are not
        ax.legend(fontsize=7, loc="lower right", ncol=2 if len(panel.series) + len(panel.peaks) > 6 else 1)
    return fig


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_image(record: Mapping[str, Any], path: str | Path) -> Path:
    """Draw ``record`` into ``path`` (.png or .svg), atomically; return the path written."""
    path = Path(path)
    check_output(path)
    fmt = image_format(path)
    fig = figure(record)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        handle = tempfile.NamedTemporaryFile("wb", dir=folder, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    except OSError as exc:
        raise GpucostError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with handle:
            fig.savefig(handle, format=fmt, dpi=120)
        os.chmod(handle.name, _new_file_mode())  # the temporary file is 0600; a plot is for sharing
        os.replace(handle.name, path)
    except BaseException as exc:
        try:
            os.unlink(handle.name)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise GpucostError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return path
