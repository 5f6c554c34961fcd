"""The calibration file: what ``gpucost profile`` measured on one device, read by the estimator.

Pure Python + PyYAML (no torch). A calibration record is a plain dict validated against the schema
below; :func:`read_calibration` raises :class:`CatalogError` naming the file, the entry and the field
of the first problem, and :func:`write_calibration` validates, then writes atomically (temp file in
the same folder + ``os.replace``), so a failed write never leaves a half-written file behind.

Schema (``schema_version: 1``; throughput in TFLOP/s = 1e12 FLOP/s, bandwidth in GB/s = 1e9 B/s)::

    schema_version: 1
    benchmark_version: 1            # bumped whenever the way of measuring changes
    created_utc: "2025-01-31T12:00:00Z"
    command: "gpucost profile --device cpu"
    partial: false                  # true: interrupted (Ctrl-C); only what was measured is present
    duration_s: 58.1                # optional: wall-clock seconds of the run
    device:
      name: "NVIDIA H100 80GB HBM3"  # driver-reported name (CPU: the processor model)
      backend: cuda                 # cpu | cuda | rocm
      catalog_id: h100-sxm          # the catalogs/gpus.yaml entry matched by name, or null (unknown)
      ...                           # optional: index, memory_bytes, compute_capability, num_sms,
                                    # l2_cache_bytes, max_sm_clock_mhz, power_limit_w,
                                    # num_cores, num_logical_cpus, num_threads, llc_bytes
    software: {python, torch, cuda, hip, driver, cuda_driver, platform}   # strings or null
    telemetry:
      source: nvml                  # nvml | procfs | null (nothing could be sampled)
      samples: 112
      interval_s: 0.5
      clock_mhz: {min, median, max}       # SM clock (GPU) or core clock (CPU), or null
      power_w: {min, median, max}         # or null
      temperature_c: {min, median, max}  # or null
      throttled: false              # true / false, or null when the device cannot tell
      reasons: []                   # throttling clock-event reasons seen, e.g. [sw_power_cap]
    matmul:                         # keys among fp32 tf32 bf16 fp16 fp8
      bf16:
        best_tflops: 794.5          # best single iteration over all shapes
        median_tflops: 770.1        # best per-shape median (a sustained figure)
        peak_tflops: 989.4          # catalog dense peak, or null (unknown device / dtype)
        pct_of_peak: 80.3           # 100 * best / peak, or null
        shapes:
          - {m: 8192, n: 8192, k: 8192, best_tflops: ..., median_tflops: ..., worst_tflops: ...,
             stdev_pct: 0.8, iterations: 40}
          - {m: 16384, n: 8192, k: 8192, skipped: "out of memory"}
        sustained:                  # optional (files before it lack it): the best shape back to back
          m: 4096                   # for window_s after warmup_s (profiler/sustained.py), no cache flush
          n: 4096
          k: 4096
          window_s: 5.0
          warmup_s: 1.0
          duration_s: 5.01
          iterations: 24000
          median_tflops: 684.2      # the median iteration: what the estimator uses when present
          mean_tflops: 683.9        # total work / total time of the window
          best_tflops: ...
          worst_tflops: ...
          stdev_pct: ...
          drift_pct: -0.4           # the window's second half against its first (clocks settling)
          clock_mhz: {min, median, max}   # during the window, or null
          power_w: {min, median, max}     # or null
          throttled: true           # or false, or null (no reasons read)
          reasons: [sw_power_cap]
      fp8: {skipped: "needs compute capability >= 8.9, this device has 8.0"}
    mlp:                            # training step of Linear(d,4d)-GELU-Linear(4d,d), 6*params*tokens
      bf16:
        best_tflops: ...
        median_tflops: ...
        peak_tflops: ...
        pct_of_peak: ...
        optimizer: adamw
        widths:
          - {width: 4096, tokens: 8192, params: 134238208, best_tflops: ..., median_tflops: ...,
             worst_tflops: ..., stdev_pct: ..., iterations: 20}
        sustained: {width: 8192, tokens: 8192, params: ..., ...}   # optional, as matmul's
    model:                          # optional (profiler/model.py): training step of one model's own layers
      id: gpt2-small
      source: "..."
      seq_len: 1024
      micro_batch: 8
      num_layers: 12
      layers_timed: 12
      optimizer: adamw
      results:
        bf16: {flops_per_token: ..., tokens_per_s: ..., best_tflops: ..., median_tflops: ...,
               worst_tflops: ..., stdev_pct: ..., iterations: 10}
      notes: ["..."]               # optional
    torch_model:                    # optional (profiler/torch_model/step.py, gpucost profile --torch-model SPEC):
      id: mnist-mlp                 # a training step of the user's own nn.Module; full schema in
      spec: builtin:mnist-mlp       # estimator/records/torch_model.py
      params: 648010
      batch_size: 64
      flops_per_sample: 3098000.0   # training (forward + backward) FLOPs per sample, FlopCounterMode
      forward_flops_per_sample: 1294000.0
      optimizer: "SGD(lr=0.01, momentum=0.9)"
      results:
        fp32: {samples_per_s: ..., median_samples_per_s: ..., best_tflops: ..., median_tflops: ...,
               worst_tflops: ..., stdev_pct: ..., iterations: 5000}
    bandwidth:                      # device-to-device copy, bytes read + bytes written
      buffer_bytes: 1073741824
      best_gbps: ...
      median_gbps: ...
      worst_gbps: ...
      stdev_pct: ...
      iterations: ...
      peak_gbps: 3350.0             # catalog memory_bandwidth_gbps, or null
      pct_of_peak: ...
    notes: ["..."]

A dtype (or the bandwidth section) that was not measured carries only ``skipped: <reason>``.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from collections.abc import Mapping, Sequence
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from estimator.errors import CatalogError
from estimator.records.checks import Check as _Check
from estimator.vocab import DEFAULT_CALIBRATION_FILE, PROFILE_DTYPES  # noqa: F401  (re-exported)

SCHEMA_VERSION = 1
# The version of the measuring method (profiler/): bump it whenever what is measured or how changes,
# so files from an older method can be told apart (mamf-finder.py does the same).
BENCHMARK_VERSION = 1
DTYPES = PROFILE_DTYPES
BACKENDS = ("cpu", "cuda", "rocm")
TELEMETRY_SOURCES = ("nvml", "procfs")

_TOP = {
    "schema_version", "benchmark_version", "created_utc", "command", "partial", "duration_s", "device",
    "software", "telemetry", "matmul", "mlp", "bandwidth", "notes", "model", "collectives", "torch_model",
}
_OPTIONAL_TOP = {"duration_s", "model", "collectives", "torch_model"}
_DEVICE_INT = ("index", "memory_bytes", "num_sms", "l2_cache_bytes", "num_cores", "num_logical_cpus", "num_threads",
               "llc_bytes")
_DEVICE_NUM = ("max_sm_clock_mhz", "power_limit_w")
_DEVICE_STR = ("compute_capability",)
_SOFTWARE = ("python", "torch", "cuda", "hip", "driver", "cuda_driver", "platform")
_RUN_STATS = ("best_tflops", "median_tflops", "worst_tflops", "stdev_pct", "iterations")


def _check_run_stats(check: _Check, data: Mapping[str, Any], entry: str) -> None:
    for field in ("best_tflops", "median_tflops", "worst_tflops"):
        check.number(data, entry, field)
    check.number(data, entry, "stdev_pct")
    check.integer(data, entry, "iterations", minimum=1)
    if not data["worst_tflops"] <= data["median_tflops"] <= data["best_tflops"]:
        raise check.fail(entry, "median_tflops", "must lie between worst_tflops and best_tflops")


SUSTAINED_KEYS = ("window_s", "warmup_s", "duration_s", "iterations", "median_tflops", "mean_tflops", "best_tflops",
                  "worst_tflops", "stdev_pct", "drift_pct", "clock_mhz", "power_w", "throttled", "reasons")


def _check_sustained(check: _Check, value: Any, entry: str, item_keys: Sequence[str]) -> None:
    """An entry's optional ``sustained`` window (profiler/sustained.py): the best size run back to back."""
    data = check.mapping(value, entry.rsplit(".", 1)[0], "sustained")
    check.keys(data, entry, {*item_keys, *SUSTAINED_KEYS},
               (*item_keys, *(k for k in SUSTAINED_KEYS if k not in ("clock_mhz", "power_w"))))
    for key in item_keys:
        check.integer(data, entry, key, minimum=1)
    for key in ("window_s", "duration_s", "median_tflops", "mean_tflops", "best_tflops", "worst_tflops"):
        check.number(data, entry, key, positive=True)
    check.number(data, entry, "warmup_s")
    check.number(data, entry, "stdev_pct")
    check.number(data, entry, "drift_pct", minimum=-100.0)
    check.integer(data, entry, "iterations", minimum=1)
    if not data["worst_tflops"] <= data["median_tflops"] <= data["best_tflops"]:
        raise check.fail(entry, "median_tflops", "must lie between worst_tflops and best_tflops")
    for key in ("clock_mhz", "power_w"):
        check.stats(data, entry, key)
    if not (data["throttled"] is None or isinstance(data["throttled"], bool)):
        raise check.fail(entry, "throttled", f"must be true, false or null, got {data['throttled']!r}")
    if not isinstance(data["reasons"], list) or not all(isinstance(r, str) for r in data["reasons"]):
        raise check.fail(entry, "reasons", "must be a list of strings")


def _check_precision_entry(check: _Check, section: str, dtype: str, value: Any) -> None:
    entry = f"{section}.{dtype}"
    data = check.mapping(value, section, dtype)
    if section == "matmul":
        items_key, item_keys = "shapes", ("m", "n", "k")
    else:
        items_key, item_keys = "widths", ("width", "tokens", "params")
    allowed = {"best_tflops", "median_tflops", "peak_tflops", "pct_of_peak", items_key, "skipped", "sustained"}
    if section == "mlp":
        allowed.add("optimizer")
    check.keys(data, entry, allowed)
    check.string(data, entry, "skipped", optional=True)
    if "best_tflops" not in data:
        if "skipped" not in data:
            raise check.fail(entry, "best_tflops", "is required (or 'skipped' with a reason)")
    else:
        check.number(data, entry, "best_tflops")
        check.number(data, entry, "median_tflops")
        if data["median_tflops"] > data["best_tflops"]:
            raise check.fail(entry, "median_tflops", "must not exceed best_tflops")
    check.number(data, entry, "peak_tflops", optional=True)
    check.number(data, entry, "pct_of_peak", optional=True)
    if section == "mlp":
        check.string(data, entry, "optimizer", optional=True)
    if data.get("sustained") is not None:
        if "best_tflops" not in data:
            raise check.fail(entry, "sustained", "needs the burst figures (best_tflops) beside it")
        _check_sustained(check, data["sustained"], f"{entry}.sustained", item_keys)
    items = data.get(items_key, [])
    if not isinstance(items, list):
        raise check.fail(entry, items_key, "must be a list")
    for index, item in enumerate(items):
        where = f"{entry}.{items_key}[{index}]"
        item = check.mapping(item, entry, f"{items_key}[{index}]")
        check.keys(item, where, set(item_keys) | set(_RUN_STATS) | {"skipped"}, item_keys)
        for key in item_keys:
            check.integer(item, where, key, minimum=1)
        if "skipped" in item:
            check.string(item, where, "skipped")
        else:
            _check_run_stats(check, item, where)


def _check_model(check: _Check, value: Any) -> None:
    """The optional ``model`` section: a training step of one model's own layers (profiler/model.py)."""
    data = check.mapping(value, None, "model")
    check.keys(data, "model", {"id", "source", "seq_len", "micro_batch", "num_layers", "layers_timed", "optimizer",
                               "results", "notes"},
               ("id", "seq_len", "micro_batch", "num_layers", "layers_timed", "results"))
    check.string(data, "model", "id")
    check.string(data, "model", "source", optional=True)
    check.string(data, "model", "optimizer", optional=True)
    for name in ("seq_len", "micro_batch", "num_layers"):
        check.integer(data, "model", name, minimum=1)
    check.integer(data, "model", "layers_timed")
    notes = data.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise check.fail("model", "notes", "must be a list of strings")
    results = check.mapping(data["results"], "model", "results")
    for dtype, result in results.items():
        where = f"model.results.{dtype}"
        if dtype not in DTYPES:
            raise check.fail("model.results", str(dtype), f"is not a dtype; use one of {', '.join(DTYPES)}")
        result = check.mapping(result, "model.results", str(dtype))
        if "skipped" in result:
            check.keys(result, where, {"skipped"})
            check.string(result, where, "skipped")
            continue
        check.keys(result, where, {"flops_per_token", "tokens_per_s", *_RUN_STATS}, ("flops_per_token",))
        check.number(result, where, "flops_per_token")
        check.number(result, where, "tokens_per_s", optional=True)
        _check_run_stats(check, result, where)


def validate_calibration(data: Any, file: str = "<calibration>") -> dict[str, Any]:
    """Check ``data`` against the calibration schema; return it (a dict) or raise CatalogError.

    ``file`` names the source in error messages, e.g. ``"cal.yaml: entry 'matmul.bf16', field
    'best_tflops': must be a finite number >= 0, got 'fast'"``.
    """
    check = _Check(file)
    top = check.mapping(data, None, None)
    check.keys(top, None, _TOP, tuple(sorted(_TOP - _OPTIONAL_TOP)))
    if isinstance(top["schema_version"], bool) or top["schema_version"] != SCHEMA_VERSION:
        raise check.fail(None, "schema_version", f"expected {SCHEMA_VERSION}, got {top['schema_version']!r}")
    check.integer(top, None, "benchmark_version", minimum=1)
    check.string(top, None, "created_utc")
    try:
        _dt.datetime.fromisoformat(top["created_utc"].replace("Z", "+00:00"))
    except ValueError:
        raise check.fail(None, "created_utc", f"must be an ISO 8601 UTC time, got {top['created_utc']!r}") from None
    check.string(top, None, "command")
    if not isinstance(top["partial"], bool):
        raise check.fail(None, "partial", f"must be true or false, got {top['partial']!r}")
    check.number(top, None, "duration_s", optional=True)

    device = check.mapping(top["device"], None, "device")
    check.keys(device, "device", {"name", "backend", "catalog_id", *_DEVICE_INT, *_DEVICE_NUM, *_DEVICE_STR},
               ("name", "backend", "catalog_id"))
    check.string(device, "device", "name")
    check.string(device, "device", "backend", choices=BACKENDS)
    check.string(device, "device", "catalog_id", optional=True)
    for name in _DEVICE_INT:
        check.integer(device, "device", name, optional=True)
    for name in _DEVICE_NUM:
        check.number(device, "device", name, optional=True)
    for name in _DEVICE_STR:
        check.string(device, "device", name, optional=True)

    software = check.mapping(top["software"], None, "software")
    check.keys(software, "software", _SOFTWARE, ("torch",))
    for name in _SOFTWARE:
        check.string(software, "software", name, optional=True)

    telemetry = check.mapping(top["telemetry"], None, "telemetry")
    check.keys(telemetry, "telemetry", {"source", "samples", "interval_s", "clock_mhz", "power_w", "temperature_c",
                                        "throttled", "reasons"}, ("samples", "throttled", "reasons"))
    check.string(telemetry, "telemetry", "source", optional=True, choices=TELEMETRY_SOURCES)
    check.integer(telemetry, "telemetry", "samples")
    check.number(telemetry, "telemetry", "interval_s", optional=True)
    for name in ("clock_mhz", "power_w", "temperature_c"):
        check.stats(telemetry, "telemetry", name)
    if not (telemetry["throttled"] is None or isinstance(telemetry["throttled"], bool)):
        raise check.fail("telemetry", "throttled", f"must be true, false or null, got {telemetry['throttled']!r}")
    reasons = telemetry["reasons"]
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise check.fail("telemetry", "reasons", "must be a list of strings")

    for section in ("matmul", "mlp"):
        entries = check.mapping(top[section], None, section)
        for dtype, value in entries.items():
            if dtype not in DTYPES:
                raise check.fail(section, str(dtype), f"is not a dtype; use one of {', '.join(DTYPES)}")
            _check_precision_entry(check, section, dtype, value)

    if top.get("model") is not None:
        _check_model(check, top["model"])
    if top.get("collectives") is not None:  # gpucost profile --comm (estimator/records/collectives.py)
        from estimator.records.collectives import validate_collectives

        validate_collectives(top["collectives"], file)
    if top.get("torch_model") is not None:  # gpucost profile --torch-model (estimator/records/torch_model.py)
        from estimator.records.torch_model import validate_torch_model

        validate_torch_model(top["torch_model"], file)

    bandwidth = check.mapping(top["bandwidth"], None, "bandwidth")
    check.keys(bandwidth, "bandwidth", {"buffer_bytes", "best_gbps", "median_gbps", "worst_gbps", "stdev_pct",
                                        "iterations", "peak_gbps", "pct_of_peak", "skipped"})
    if "skipped" in bandwidth:
        check.string(bandwidth, "bandwidth", "skipped")
    else:
        check.integer(bandwidth, "bandwidth", "buffer_bytes", minimum=1)
        for name in ("best_gbps", "median_gbps", "worst_gbps", "stdev_pct"):
            check.number(bandwidth, "bandwidth", name)
        check.integer(bandwidth, "bandwidth", "iterations", minimum=1)
    check.number(bandwidth, "bandwidth", "peak_gbps", optional=True)
    check.number(bandwidth, "bandwidth", "pct_of_peak", optional=True)

    notes = top["notes"]
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise check.fail(None, "notes", "must be a list of strings")
    return dict(top)


def read_calibration(path: str | Path) -> dict[str, Any]:
    """Read and validate a calibration file. Raises CatalogError naming the file and field (and for
    a missing, unreadable, non-UTF-8 or malformed file)."""
    from estimator.catalog.fields import load_yaml_file

    path = Path(path)
    try:
        data = load_yaml_file(path)
    except CatalogError as exc:
        if str(exc).endswith(": file not found"):
            raise CatalogError(str(path), None, None, "file not found; create one with `gpucost profile`") from None
        raise
    return validate_calibration(data, str(path))


def partial_path(path: str | Path) -> Path:
    """Where an interrupted profile goes when ``path`` already holds a complete calibration:
    ``cal.yaml`` -> ``cal.partial.yaml`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix or '.yaml'}")


def output_for(record: Mapping[str, Any], path: str | Path) -> Path:
    """The file a record should be written to: ``path``, except that a partial record never replaces
    an existing complete calibration file (it goes to :func:`partial_path` instead)."""
    path = Path(path)
    if record.get("partial") and path.is_file():
        try:
            existing = read_calibration(path)
        except CatalogError:
            return path  # not a valid calibration: nothing worth keeping
        if not existing.get("partial"):
            return partial_path(path)
    return path


def _plain(value: Any) -> Any:
    """A copy made of builtin types only (str subclasses such as torch's version string -> str)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (str, int, float):
        if isinstance(value, kind):
            return kind(value)
    return value


def dump_calibration(record: Mapping[str, Any]) -> str:
    """The YAML text of a (validated) record, keys in schema order."""
    return yaml.safe_dump(_plain(record), sort_keys=False, allow_unicode=True, width=120)


def _umask() -> int:
    """The process umask (read by setting it, then restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_calibration(record: Mapping[str, Any], path: str | Path) -> Path:
    """Validate ``record`` and write it to ``path`` atomically; return the path written.

    The YAML goes to a temporary file in the target folder, is flushed to disk, then renamed over
    ``path`` with ``os.replace``: readers see the old file or the new one, never half of one.
    """
    path = Path(path)
    validate_calibration(record, str(path))
    if path.is_dir():
        raise CatalogError(str(path), None, None, "is a directory, not a file: give a file name such as "
                                                  f"{path / 'gpucost-calibration.yaml'}")
    folder = path.parent if str(path.parent) else Path(".")
    try:
        handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, prefix=f".{path.name}.",
                                             suffix=".tmp", delete=False)
    except OSError as exc:
        raise CatalogError(str(path), None, None, f"cannot be written: {exc.strerror or exc}") from None
    try:
        with handle:
            handle.write(dump_calibration(record))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~_umask())  # a temporary file is private (0600); the result is not
        os.replace(handle.name, path)
    except BaseException as exc:
        try:
            os.unlink(handle.name)
        except OSError:
            pass
        if isinstance(exc, OSError):  # a full disk, a folder made meanwhile: one line naming the file
            raise CatalogError(str(path), None, None, f"cannot be written: {exc.strerror or exc}") from None
        raise
    return path


# -- the typed record the estimator reads ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measurement:
    """One precision of one benchmark (matmul, MLP step, a model's step): TFLOP/s, or why it was
    skipped. ``worst_tflops`` is the slowest iteration of the size whose median is the entry's.

    What the estimator reads: where the entry has a ``sustained`` window (the best size back to
    back for seconds, at the clocks the power limit allows, as a training run runs),
    ``best_tflops`` and ``median_tflops`` are that window's median: a burst's best (the device
    idle between iterations and cool) overstates every hour of a run (on one H200, bf16: burst
    median 737-745 TFLOP/s, back to back 668-686). ``burst_best_tflops`` / ``burst_median_tflops``
    keep the burst figures; files without the window read as before (sustained_tflops None).
    """

    best_tflops: float | None = None
    median_tflops: float | None = None
    worst_tflops: float | None = None
    peak_tflops: float | None = None
    skipped: str | None = None
    sustained_tflops: float | None = None
    burst_best_tflops: float | None = None
    burst_median_tflops: float | None = None

    @property
    def measured(self) -> bool:
        return self.median_tflops is not None

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> Measurement:
        worst = entry.get("worst_tflops")
        if worst is None and "median_tflops" in entry:  # an MLP/matmul entry keeps per-size statistics
            items = entry.get("widths") or entry.get("shapes") or []
            same = [i["worst_tflops"] for i in items if i.get("median_tflops") == entry["median_tflops"]]
            worst = min(same, default=entry["median_tflops"])
        best, median = entry.get("best_tflops"), entry.get("median_tflops")
        window = entry.get("sustained") or {}
        sustained = window.get("median_tflops")
        if sustained is not None:
            worst = min(worst, window["worst_tflops"]) if worst is not None else window["worst_tflops"]
            return cls(best_tflops=sustained, median_tflops=sustained, worst_tflops=min(worst, sustained),
                       peak_tflops=entry.get("peak_tflops"), skipped=entry.get("skipped"),
                       sustained_tflops=sustained, burst_best_tflops=best, burst_median_tflops=median)
        return cls(best_tflops=best, median_tflops=median, worst_tflops=worst, peak_tflops=entry.get("peak_tflops"),
                   skipped=entry.get("skipped"), burst_best_tflops=best, burst_median_tflops=median)


@dataclass(frozen=True, slots=True)
class ModelStepRecord:
    """The file's ``model`` section: a training step of one model's own layers."""

    id: str
    seq_len: int
    micro_batch: int
    num_layers: int
    layers_timed: int
    results: Mapping[str, Measurement]


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """The measured device: its driver name, backend, catalog match and memory."""

    name: str
    backend: str
    catalog_id: str | None
    memory_bytes: int | None = None


@dataclass(frozen=True)
class Calibration:
    """A calibration file, typed: what the estimator reads as attributes, the whole validated
    document behind ``to_dict()``. Build one with :meth:`from_dict` or :func:`load_calibration`."""

    schema_version: int
    benchmark_version: int
    created_utc: str
    command: str
    partial: bool
    device: DeviceRecord
    matmul: Mapping[str, Measurement]
    mlp: Mapping[str, Measurement]
    model: ModelStepRecord | None
    bandwidth_best_gbps: float | None
    collectives: Mapping[str, Any] | None
    torch_model: Mapping[str, Any] | None
    document: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)

    @property
    def created(self) -> _dt.date:
        return _dt.date.fromisoformat(self.created_utc[:10])

    @classmethod
    def from_dict(cls, data: Any, file: str = "<calibration>") -> Calibration:
        """Validate ``data`` (the file's document) and type it; CatalogError names file and field."""
        doc = validate_calibration(data, file)
        device = doc["device"]
        model = doc.get("model")
        step = None
        if model:
            step = ModelStepRecord(id=model["id"], seq_len=model["seq_len"], micro_batch=model["micro_batch"],
                                   num_layers=model["num_layers"], layers_timed=model["layers_timed"],
                                   results=MappingProxyType({d: Measurement.from_dict(r)
                                                             for d, r in model["results"].items()}))
        return cls(
            schema_version=doc["schema_version"], benchmark_version=doc["benchmark_version"],
            created_utc=str(doc["created_utc"]), command=doc["command"], partial=doc["partial"],
            device=DeviceRecord(name=device["name"], backend=device["backend"], catalog_id=device.get("catalog_id"),
                                memory_bytes=device.get("memory_bytes")),
            matmul=MappingProxyType({d: Measurement.from_dict(e) for d, e in doc["matmul"].items()}),
            mlp=MappingProxyType({d: Measurement.from_dict(e) for d, e in doc["mlp"].items()}),
            model=step, bandwidth_best_gbps=(doc.get("bandwidth") or {}).get("best_gbps"),
            collectives=doc.get("collectives"), torch_model=doc.get("torch_model"), document=doc)

    def to_dict(self) -> dict[str, Any]:
        """The validated document (what the file holds), as plain builtin types."""
        return _plain(self.document)


def load_calibration(path: str | Path) -> Calibration:
    """Read, validate and type a calibration file (the estimator's entry point)."""
    return Calibration.from_dict(read_calibration(path), str(path))


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def sustained_detail(window: Mapping[str, Any]) -> str:
    """``8192x8192x8192 back to back 5 s; 1275-1410 MHz; throttled: sw_power_cap``
    (the size, the window, the clocks and the throttle reasons seen)."""
    size = (f"{window['m']}x{window['n']}x{window['k']}" if "m" in window
            else f"width {window['width']}, {window['tokens']} tokens")
    parts = [f"{size} back to back {window['window_s']:g} s"]
    clock = window.get("clock_mhz")
    if clock:
        parts.append(f"{clock['min']:.0f}-{clock['max']:.0f} MHz")
    throttled = window.get("throttled")
    if throttled is not None:
        parts.append(f"throttled: {', '.join(window['reasons'])}" if throttled else "not throttled")
    return "; ".join(parts)


def summary_rows(record: Mapping[str, Any]) -> list[tuple[str, str, str, str, str, str, str]]:
    """Rows (benchmark, dtype, best, median, peak, % of peak, detail) for a people-facing table.

    Throughput in TFLOP/s, bandwidth in GB/s; ``detail`` names the best shape or width, or why a
    measurement was skipped. An entry with a sustained window gets a second row, ``sustained``: its
    best and median iteration back to back, % of peak of the median, the clocks and throttle reasons.
    """
    rows = []
    for section, label, items_key in (("matmul", "matmul TFLOP/s", "shapes"), ("mlp", "MLP train TFLOP/s", "widths")):
        for dtype, entry in record.get(section, {}).items():
            if "best_tflops" not in entry:
                rows.append((label, dtype, "-", "-", _fmt(entry.get("peak_tflops")), "-",
                             f"skipped: {entry['skipped']}"))
                continue
            measured = [i for i in entry.get(items_key, []) if "best_tflops" in i]
            best = max(measured, key=lambda i: i["best_tflops"]) if measured else None
            if best is None:
                detail = ""
            elif section == "matmul":
                plural = "s" if len(measured) != 1 else ""
                detail = f"best at {best['m']}x{best['n']}x{best['k']} (of {len(measured)} shape{plural})"
            else:
                detail = f"best at width {best['width']}, {best['tokens']} tokens ({entry.get('optimizer', '?')})"
            num_skipped = len(entry.get(items_key, [])) - len(measured)
            if num_skipped:
                detail += f"; {num_skipped} skipped"
            rows.append((label, dtype, _fmt(entry["best_tflops"]), _fmt(entry["median_tflops"]),
                         _fmt(entry.get("peak_tflops")), _pct(entry.get("pct_of_peak")), detail))
            window = entry.get("sustained")
            if window:
                rows.append((f"  sustained {label.split()[0]}", dtype, _fmt(window["best_tflops"]),
                             _fmt(window["median_tflops"]), _fmt(entry.get("peak_tflops")),
                             _pct(100 * window["median_tflops"] / entry["peak_tflops"]
                                  if entry.get("peak_tflops") else None), sustained_detail(window)))
    model = record.get("model") or {}
    for dtype, result in (model.get("results") or {}).items():
        label = f"{model['id']} train TFLOP/s"
        if "skipped" in result:
            rows.append((label, dtype, "-", "-", "-", "-", f"skipped: {result['skipped']}"))
        else:
            rows.append((label, dtype, _fmt(result["best_tflops"]), _fmt(result["median_tflops"]), "-", "-",
                         f"{model['layers_timed']} of {model['num_layers']} layers, micro-batch "
                         f"{model['micro_batch']} x {model['seq_len']} tokens"))
    bandwidth = record.get("bandwidth", {})
    if "skipped" in bandwidth:
        rows.append(("copy GB/s", "-", "-", "-", _fmt(bandwidth.get("peak_gbps")), "-",
                     f"skipped: {bandwidth['skipped']}"))
    elif bandwidth:
        rows.append(("copy GB/s", "-", _fmt(bandwidth["best_gbps"]), _fmt(bandwidth["median_gbps"]),
                     _fmt(bandwidth.get("peak_gbps")), _pct(bandwidth.get("pct_of_peak")),
                     f"read+write of a {bandwidth['buffer_bytes'] / 2**20:.0f} MiB buffer"))
    return rows
