"""The ``torch_model`` section of a calibration file: a training step of the user's own PyTorch
model, timed by ``gpucost profile --torch-model SPEC`` (profiler/torch_model/step.py).

Pure Python (no torch). The estimator reads the section through :func:`measured_samples_per_s`:
a run of N samples of that model on the profiled device takes N / samples per second.

Schema (inside a calibration file, ``schema_version: 1``)::

    torch_model:
      id: mnist-mlp                 # the builtin's name, the dict's "id", or the callable's name
      spec: builtin:mnist-mlp       # what was given to --torch-model
      created_utc: "2026-12-01T10:00:00Z"   # optional: when this section was measured
      command: "gpucost profile --torch-model builtin:mnist-mlp --device cpu"   # optional
      partial: false                # optional (default false): true when Ctrl-C stopped the run
      duration_s: 14.2              # optional: wall-clock seconds of this section's run
      params: 648010                # trainable parameters (requires_grad)
      batch_size: 64                # samples per step: the leading dimension of the example inputs
      flops_per_sample: 3098000.0   # training FLOPs per sample, forward + backward, as FlopCounterMode
                                    # counts them (matmuls, convolutions, attention; not elementwise
                                    # ops, not the optimizer)
      forward_flops_per_sample: 1294000.0
      optimizer: "SGD(lr=0.01, momentum=0.9)"
      loss: cross_entropy           # optional: the loss function's name
      results:                      # per dtype (fp32 tf32 bf16 fp16; fp8 only as skipped)
        fp32: {samples_per_s: 30100.0, median_samples_per_s: 31250.0, best_tflops: ..., median_tflops: ...,
               worst_tflops: ..., stdev_pct: 8.1, iterations: 20000, slow_steps: 12,   # slow_steps: optional
               segment_samples_per_s: [31020.0, 30870.0, 26540.0, 31100.0, 31010.0],   # optional
               peak_memory_gib: 47.07}   # optional: GPU only, peak allocated over the timed steps
        bf16: {skipped: "not measured by default on a CPU: ..."}
      notes: ["..."]                # optional

``samples_per_s`` is the throughput of the timed steps: their samples / their total time, what a
training run of back-to-back steps delivers and what the estimate uses (a run's wall-clock is the
sum of its steps), leaving out the ``slow_steps`` that took more than twice the median step: a step
of fixed work that long was interrupted (another process took the CPU), which says nothing about
the device and would not recur in a later run; more than 5% of them and the estimate warns that the
device was busy. ``median_samples_per_s`` is batch / the median step, the rate of a typical step
(the statistic of the TFLOP/s median and of the ``model`` section's ``tokens_per_s``).
``*_tflops`` are ``flops_per_sample x batch_size`` / the best, median and worst step time.
``segment_samples_per_s`` (optional) splits the timed steps into five consecutive groups of equal
count and gives each group's throughput (slow steps left out), in order: how the device's speed
moved during the profile (a shared VM's changes by 30% from one stretch of seconds to the next);
the estimate's range is their lowest and highest.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from estimator.errors import CatalogError
from estimator.vocab import PROFILE_DTYPES

SECTION = "torch_model"
_REQUIRED = ("id", "spec", "params", "batch_size", "flops_per_sample", "forward_flops_per_sample", "optimizer",
             "results")
_OPTIONAL = ("created_utc", "command", "partial", "duration_s", "loss", "notes")
_ORDER = ("id", "spec", "created_utc", "command", "partial", "duration_s", "params", "batch_size",
          "flops_per_sample", "forward_flops_per_sample", "optimizer", "loss", "results", "notes")
_RATES = ("samples_per_s", "median_samples_per_s")
_STATS = ("best_tflops", "median_tflops", "worst_tflops", "stdev_pct", "iterations")
_RESULT_ORDER = (*_RATES, *_STATS, "slow_steps", "segment_samples_per_s", "peak_memory_gib")
SEGMENTS = 5  # the timed steps are also reported as the throughput of each fifth of them, in order
_REL_TOL = 2e-3  # the file keeps 6 significant digits; samples/s and TFLOP/s must agree within this
SLOW_STEP = 2.0  # a step longer than this many median steps was interrupted (another process took the CPU)
BUSY_SHARE = 0.05  # more than this share of interrupted steps: the device was busy while it was profiled


@dataclass(frozen=True, slots=True)
class TorchModelResult:
    """One dtype's measurement, or ``skipped`` with the reason it was not measured."""

    samples_per_s: float | None = None
    median_samples_per_s: float | None = None
    best_tflops: float | None = None
    median_tflops: float | None = None
    worst_tflops: float | None = None
    stdev_pct: float | None = None
    iterations: int | None = None
    slow_steps: int | None = None
    segment_samples_per_s: tuple[float, ...] | None = None
    peak_memory_gib: float | None = None  # on a GPU: torch.cuda.max_memory_allocated over the timed steps
    skipped: str | None = None

    @property
    def measured(self) -> bool:
        return self.skipped is None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TorchModelResult":
        if "skipped" in data:
            return cls(skipped=str(data["skipped"]))
        values = {k: data.get(k) for k in _RESULT_ORDER}
        if values["segment_samples_per_s"] is not None:
            values["segment_samples_per_s"] = tuple(values["segment_samples_per_s"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        if self.skipped is not None:
            return {"skipped": self.skipped}
        out = {k: getattr(self, k) for k in _RESULT_ORDER if getattr(self, k) is not None}
        if "segment_samples_per_s" in out:
            out["segment_samples_per_s"] = list(out["segment_samples_per_s"])
        return out


@dataclass(frozen=True, slots=True)
class TorchModelRecord:
    """The ``torch_model`` section, typed. Build it with :meth:`from_dict` (which validates)."""

    id: str
    spec: str
    params: int
    batch_size: int
    flops_per_sample: float
    forward_flops_per_sample: float
    optimizer: str
    results: Mapping[str, TorchModelResult] = field(default_factory=lambda: MappingProxyType({}))
    loss: str | None = None
    created_utc: str | None = None
    command: str | None = None
    partial: bool = False
    duration_s: float | None = None
    notes: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Any, file: str = "<torch_model>") -> "TorchModelRecord":
        """Validate ``data`` (:func:`validate_torch_model`) and return the typed record."""
        data = validate_torch_model(data, file)
        results = {str(d): TorchModelResult.from_dict(r) for d, r in data["results"].items()}
        return cls(
            id=data["id"], spec=data["spec"], params=data["params"], batch_size=data["batch_size"],
            flops_per_sample=float(data["flops_per_sample"]),
            forward_flops_per_sample=float(data["forward_flops_per_sample"]), optimizer=data["optimizer"],
            results=MappingProxyType(results), loss=data.get("loss"), created_utc=data.get("created_utc"),
            command=data.get("command"), partial=bool(data.get("partial", False)), duration_s=data.get("duration_s"),
            notes=tuple(data.get("notes") or ()))

    def to_dict(self) -> dict[str, Any]:
        """The section as written to the file (schema order; unset optional fields left out)."""
        values = {
            "id": self.id, "spec": self.spec, "created_utc": self.created_utc, "command": self.command,
            "partial": self.partial, "duration_s": self.duration_s, "params": self.params,
            "batch_size": self.batch_size, "flops_per_sample": self.flops_per_sample,
            "forward_flops_per_sample": self.forward_flops_per_sample, "optimizer": self.optimizer, "loss": self.loss,
            "results": {d: r.to_dict() for d, r in self.results.items()}, "notes": list(self.notes),
        }
        optional_empty = {"created_utc", "command", "duration_s", "loss"}
        return {k: values[k] for k in _ORDER
                if not (k in optional_empty and values[k] is None) and not (k == "notes" and not values[k])}

    def result(self, precision: str) -> TorchModelResult | None:
        """The measured result for ``precision``, or None (absent or skipped)."""
        found = self.results.get(precision)
        return found if found is not None and found.measured else None


# -- validation ----------------------------------------------------------------------------------


def _fail(file: str, entry: str | None, field_name: str | None, problem: str) -> CatalogError:
    return CatalogError(file, entry, field_name, problem)


def _number(data: Mapping[str, Any], file: str, entry: str, name: str, *, optional: bool = False,
            positive: bool = False) -> None:
    value = data.get(name)
    if value is None:
        if optional and name not in data:
            return
        raise _fail(file, entry, name, "is required" if name not in data else "must be a number, got null")
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise _fail(file, entry, name, f"must be a finite number {'>' if positive else '>='} 0, got {value!r}")


def _integer(data: Mapping[str, Any], file: str, entry: str, name: str, minimum: int) -> None:
    value = data.get(name)
    if value is None:
        raise _fail(file, entry, name, "is required")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(file, entry, name, f"must be an integer >= {minimum}, got {value!r}")


def _string(data: Mapping[str, Any], file: str, entry: str, name: str, *, optional: bool = False) -> None:
    value = data.get(name)
    if value is None:
        if optional and name not in data:
            return
        raise _fail(file, entry, name, "is required" if name not in data else "must be a non-empty string, got null")
    if not isinstance(value, str) or not value.strip():
        raise _fail(file, entry, name, f"must be a non-empty string, got {value!r}")


def _keys(data: Mapping[str, Any], file: str, entry: str, allowed: tuple[str, ...],
          required: tuple[str, ...] = ()) -> None:
    for name in required:
        if name not in data:
            raise _fail(file, entry, name, "is required")
    for name in data:
        if name not in allowed:
            raise _fail(file, entry, str(name), f"is not a known field; known: {', '.join(allowed)}")


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _REL_TOL * max(abs(a), abs(b), 1e-300)


def _check_result(result: Any, file: str, dtype: str, flops_per_sample: float) -> None:
    where = f"{SECTION}.results.{dtype}"
    if not isinstance(result, Mapping):
        raise _fail(file, f"{SECTION}.results", dtype, f"must be a mapping, got {type(result).__name__}")
    if "skipped" in result:
        _keys(result, file, where, ("skipped",))
        _string(result, file, where, "skipped")
        return
    _keys(result, file, where, _RESULT_ORDER, (*_RATES, *_STATS))
    _number(result, file, where, "samples_per_s", positive=True)
    _number(result, file, where, "median_samples_per_s", positive=True)
    for name in ("best_tflops", "median_tflops", "worst_tflops", "stdev_pct"):
        _number(result, file, where, name)
    _integer(result, file, where, "iterations", 1)
    if "slow_steps" in result:
        _integer(result, file, where, "slow_steps", 0)
        if result["slow_steps"] * 2 > result["iterations"]:
            raise _fail(file, where, "slow_steps", f"must be at most half of iterations ({result['iterations']}), "
                                                   f"got {result['slow_steps']}")
    if not result["worst_tflops"] <= result["median_tflops"] <= result["best_tflops"]:
        raise _fail(file, where, "median_tflops", "must lie between worst_tflops and best_tflops")
    if "peak_memory_gib" in result:
        _number(result, file, where, "peak_memory_gib", positive=True)
    segments = result.get("segment_samples_per_s")
    if segments is not None and not (
            isinstance(segments, list) and 1 <= len(segments) <= SEGMENTS
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                    for v in segments)):
        raise _fail(file, where, "segment_samples_per_s",
                    f"must be a list of 1 to {SEGMENTS} rates > 0, got {segments!r}")
    if flops_per_sample <= 0:
        return
    per_sample = 1e12 / flops_per_sample  # TFLOP/s -> samples/s
    if not _close(result["median_tflops"] * per_sample, result["median_samples_per_s"]):
        raise _fail(file, where, "median_samples_per_s",
                    f"must equal median_tflops x 1e12 / flops_per_sample "
                    f"({result['median_tflops'] * per_sample:.6g}), got {result['median_samples_per_s']!r}")
    low, high = result["worst_tflops"] * per_sample, result["best_tflops"] * per_sample
    if not (low * (1 - _REL_TOL) <= result["samples_per_s"] <= high * (1 + _REL_TOL)):
        raise _fail(file, where, "samples_per_s",
                    f"must lie between the rates of the worst and the best step ({low:.6g}-{high:.6g}), "
                    f"got {result['samples_per_s']!r}")
    if segments is not None and not all(low * (1 - _REL_TOL) <= v <= high * (1 + _REL_TOL) for v in segments):
        raise _fail(file, where, "segment_samples_per_s",
                    f"must lie between the rates of the worst and the best step ({low:.6g}-{high:.6g}), "
                    f"got {segments!r}")


def validate_torch_model(data: Any, file: str = "<calibration>") -> dict[str, Any]:
    """Check the ``torch_model`` section; return it (a dict) or raise CatalogError(file, entry,
    field, problem), e.g. ``cal.yaml: entry 'torch_model', field 'batch_size': must be an integer
    >= 1, got 0``."""
    if not isinstance(data, Mapping):
        raise _fail(file, None, SECTION, f"must be a mapping, got {type(data).__name__}")
    _keys(data, file, SECTION, _ORDER, _REQUIRED)
    for name in ("id", "spec", "optimizer"):
        _string(data, file, SECTION, name)
    for name in ("command", "loss"):
        _string(data, file, SECTION, name, optional=True)
    if "created_utc" in data:
        _string(data, file, SECTION, "created_utc")
        try:
            _dt.datetime.fromisoformat(str(data["created_utc"]).replace("Z", "+00:00"))
        except ValueError:
            raise _fail(file, SECTION, "created_utc", f"must be an ISO 8601 UTC time, got {data['created_utc']!r}") \
                from None
    if "partial" in data and not isinstance(data["partial"], bool):
        raise _fail(file, SECTION, "partial", f"must be true or false, got {data['partial']!r}")
    _number(data, file, SECTION, "duration_s", optional=True)
    _integer(data, file, SECTION, "params", 0)
    _integer(data, file, SECTION, "batch_size", 1)
    _number(data, file, SECTION, "flops_per_sample")
    _number(data, file, SECTION, "forward_flops_per_sample")
    if data["forward_flops_per_sample"] > data["flops_per_sample"]:
        raise _fail(file, SECTION, "forward_flops_per_sample",
                    f"must not exceed flops_per_sample (forward + backward), got {data['forward_flops_per_sample']!r} "
                    f"> {data['flops_per_sample']!r}")
    notes = data.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise _fail(file, SECTION, "notes", "must be a list of strings")
    results = data["results"]
    if not isinstance(results, Mapping):
        raise _fail(file, SECTION, "results", f"must be a mapping, got {type(results).__name__}")
    if not results:
        raise _fail(file, SECTION, "results", "must hold at least one dtype")
    for dtype, result in results.items():
        if dtype not in PROFILE_DTYPES:
            raise _fail(file, f"{SECTION}.results", str(dtype), f"is not a dtype; use one of {', '.join(PROFILE_DTYPES)}")
        _check_result(result, file, str(dtype), data["flops_per_sample"])
    return dict(data)


# -- the estimator's side ------------------------------------------------------------------------


def torch_model_section(record: Mapping[str, Any], file: str = "<calibration>") -> TorchModelRecord | None:
    """The calibration ``record``'s ``torch_model`` section, typed; None when it has none."""
    section = record.get(SECTION)
    return None if section is None else TorchModelRecord.from_dict(section, file)


def measured_samples_per_s(record: Mapping[str, Any], model_id: str, precision: str) -> tuple[float, dict] | None:
    """(samples per second, details) that the calibration ``record`` measured for ``model_id``
    trained at ``precision`` on its device, or None when the file has no such measurement (no
    ``torch_model`` section, another model, or that dtype skipped or absent).

    The rate is ``samples_per_s``: timed samples / timed seconds (interrupted steps left out). It holds for the
    profiled batch size and optimizer on that device; a run of N samples x E epochs takes N x E /
    rate seconds there (data loading, evaluation and checkpoints not included). Details: ``id``,
    ``spec``, ``precision``, ``samples_per_s``, ``median_samples_per_s`` (batch / the median step),
    ``band_samples_per_s`` (the slowest and the fastest of the throughputs of the profile's fifths,
    ``segment_samples_per_s``, and the overall rate: how far the device's speed moved during the
    profile; files without segments: the overall rate and the median step's), ``achieved_tflops``
    (the rate x flops_per_sample, FlopCounterMode's count), ``flops_per_sample``,
    ``forward_flops_per_sample``, ``batch_size``, ``optimizer``, ``iterations``, ``stdev_pct``,
    ``partial``, ``device``, ``created_utc``, ``source`` (one line for the report) and ``warnings``.
    """
    section = record.get(SECTION)
    if not isinstance(section, Mapping) or section.get("id") != model_id:
        return None
    typed = TorchModelRecord.from_dict(section)
    result = typed.result(precision)
    if result is None:
        return None
    rate, median = float(result.samples_per_s), float(result.median_samples_per_s)
    spread = list(result.segment_samples_per_s or ()) or [median]  # older files: the median step's rate
    band = (min(rate, *spread), max(rate, *spread))
    device = (record.get("device") or {}).get("name", "?")
    created = str(typed.created_utc or record.get("created_utc") or "")[:10]
    source = (f"calibration: torch_model {typed.id} {precision} ({typed.spec}; batch {typed.batch_size}, "
              f"{typed.optimizer}; {result.iterations} steps) on {device}" + (f", {created}" if created else ""))
    warnings = []
    if typed.partial:
        warnings.append(f"the torch_model measurement of {typed.id} is partial (the profile was interrupted)")
    slow = result.slow_steps or 0
    if slow > BUSY_SHARE * result.iterations:
        warnings.append(f"the device was busy while {typed.id} was profiled: {slow} of {result.iterations} steps took "
                        f"more than {SLOW_STEP:g} x the median step and were left out; profile again at a quiet time")
    info = {
        "id": typed.id, "spec": typed.spec, "precision": precision, "samples_per_s": rate,
        "median_samples_per_s": median, "band_samples_per_s": band,
        "achieved_tflops": rate * typed.flops_per_sample / 1e12, "flops_per_sample": typed.flops_per_sample,
        "forward_flops_per_sample": typed.forward_flops_per_sample, "batch_size": typed.batch_size,
        "optimizer": typed.optimizer, "iterations": result.iterations, "stdev_pct": result.stdev_pct,
        "partial": typed.partial, "device": device, "created_utc": typed.created_utc or record.get("created_utc"),
        "source": source, "warnings": warnings,
    }
    return rate, info


# -- writing the section into a calibration file ---------------------------------------------------


def same_device(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two calibration records measured the same device: equal device name, backend and
    catalog id (and index, where both files give one)."""
    da, db = a.get("device") or {}, b.get("device") or {}
    if any(da.get(k) != db.get(k) for k in ("name", "backend", "catalog_id")):
        return False
    return da.get("index") is None or db.get("index") is None or da.get("index") == db.get("index")


def merge_torch_model(new: Mapping[str, Any], existing: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    """(the record to write, what happened) for a ``--torch-model`` run whose record is ``new``
    into a file that holds ``existing`` (a validated calibration record, or None).

    - ``"new"``: no file there, or ``new`` carries a device sweep of its own: ``new`` as it is;
    - ``"merged"``: the file measured the same device: its sections are kept and only
      ``torch_model`` is replaced; the record is partial when either part is;
    - ``"replaced"``: the file measured another device: ``new`` replaces it.
    """
    swept = bool(new.get("matmul") or new.get("mlp"))
    if existing is None or swept:
        return dict(new), "new"
    if not same_device(new, existing):
        return dict(new), "replaced"
    record = dict(existing)
    section = new.get(SECTION)
    if section is not None:
        record[SECTION] = section
    record["partial"] = bool(existing.get("partial") or (section or {}).get("partial") or new.get("partial"))
    return record, "merged"


SUMMARY_HEADERS = ("dtype", "samples/s", "samples/s (median step)", "best TFLOP/s", "median TFLOP/s",
                   "worst TFLOP/s", "stdev", "steps", "detail")


def _rate(value: float) -> str:
    """``44,945`` samples/s, ``10.47`` samples/s: whole numbers from 100 up, 4 significant digits below."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.4g}"


def summary_rows(section: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """One row per dtype of a ``torch_model`` section for a people-facing table (see SUMMARY_HEADERS)."""
    rows = []
    for dtype, result in (section.get("results") or {}).items():
        if "skipped" in result:
            rows.append((dtype, "-", "-", "-", "-", "-", "-", "-", f"skipped: {result['skipped']}"))
            continue
        rows.append((dtype, _rate(result["samples_per_s"]), _rate(result["median_samples_per_s"]),
                     f"{result['best_tflops']:.4g}", f"{result['median_tflops']:.4g}", f"{result['worst_tflops']:.4g}",
                     f"{result['stdev_pct']:.1f}%", str(result["iterations"]),
                     f"batch {section.get('batch_size', '?')}, {section.get('optimizer', '?')}"))
    return rows


__all__ = ["SECTION", "SUMMARY_HEADERS", "TorchModelRecord", "TorchModelResult", "measured_samples_per_s",
           "merge_torch_model", "same_device", "summary_rows", "torch_model_section", "validate_torch_model"]
