"""The ``collectives`` section of a calibration file: what ``gpucost profile --comm`` measured.

Pure Python (no torch): the estimator reads this section to time a step's collectives with the
bus bandwidths and latencies of the fabric it will run on. Conventions are those of nccl-tests
(``doc/PERFORMANCE.md``): ``algbw = S / t`` with GB = 1e9 bytes, ``busbw = algbw x factor`` where
the factor for ``n`` ranks is (:func:`bus_factor`, the one place it is defined):

    all_reduce                 2(n-1)/n
    all_gather, reduce_scatter (n-1)/n    S is the whole array: per-rank count x type size x n
    all_to_all                 (n-1)/n    S is what one rank sends (and receives) in total
    broadcast, send_recv       1          send_recv: each rank sends S to the next rank of a ring

Schema (``schema_version: 1``; bytes, seconds, GB/s = 1e9 B/s, TFLOP/s)::

    collectives:
      schema_version: 1
      benchmark_version: 1          # the measuring method (profiler/comm/worker.py); bumped when it changes
      created_utc: "2026-12-01T10:00:00Z"
      command: "gpucost profile --comm --nproc 2 --device cpu"
      partial: false                # true: interrupted; only what was measured is present
      duration_s: 41.3
      backend: gloo                 # nccl | gloo
      launcher: local               # local (--nproc) | torchrun
      world_size: 2
      num_nodes: 1
      mode: quick                   # quick | full | custom
      dtypes: [bf16, fp32]
      timeout_s: 120.0              # init and collective timeout per operation
      groups:                       # the process groups measured; rows name their kind
        - {kind: all, index: 0, ranks: [0, 1]}
        - {kind: intra, index: 0, host: node-a, ranks: [0, 1]}   # ranks sharing a host (one per node)
        - {kind: inter, index: 0, ranks: [0, 2]}                 # one rank per node (NCCL_TESTS_SPLIT)
      ranks:                        # identity of every rank, rank order
        - {rank: 0, local_rank: 0, host: node-a, device: "NVIDIA H100 80GB HBM3", device_index: 0,
           pci_bus_id: "00000000:18:00.0", pid: 1234}
      rows:                         # one per (group kind, op, dtype, size)
        - {op: all_reduce, group: all, num_ranks: 2, dtype: bf16, size_bytes: 1048576, count: 524288,
           iterations: 20, time_s: 0.00041, best_time_s: 0.00039, algbw_gbps: 2.56, busbw_gbps: 2.56,
           emulated: false, impl: all_reduce}
      skipped:                      # what was not measured, and why
        - {op: all_reduce, group: all, dtype: fp32, size_bytes: 2147483648, reason: "out of memory"}
      cross_check:                  # an independent all_reduce timing in the same run, or null
        {op: all_reduce, group: all, dtype: fp32, size_bytes: 67108864, iterations: 30, method: "...",
         time_s: ..., busbw_gbps: ..., benchmark_busbw_gbps: ..., diff_pct: 1.8}
      stragglers:                   # every rank ran the same matmul at the same moment, or null
        benchmark: {m: 8192, n: 8192, k: 8192, dtype: bf16}
        margin_pct: 10.0            # a rank this much below the median TFLOP/s is flagged
        median_tflops: 700.1
        spread_pct: 1.2             # 100 * (max - min) / median of the per-rank median TFLOP/s
        ranks:
          - {rank: 0, host: node-a, best_tflops: ..., median_tflops: ..., iterations: 40,
             slowdown_pct: 0.4, slow: false, throttled: false, reasons: []}
        flagged: []                 # ranks slow or throttled
      summary:                      # per (group, op, dtype): what the estimator takes (link_figures)
        - {op: all_reduce, group: all, dtype: bf16, num_ranks: 2, busbw_gbps: 2.61,
           large_size_bytes: 67108864, latency_s: 0.00021, small_size_bytes: 1024, emulated: false}
      notes: ["..."]

``time_s`` is the median over the timed iterations of the slowest rank's time of that iteration;
``best_time_s`` the fastest such iteration; ``algbw_gbps`` and ``busbw_gbps`` come from ``time_s``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from estimator.records.checks import Check as _CalibrationCheck

SCHEMA_VERSION = 1
# The version of the measuring method (profiler/comm/worker.py): bump it when what or how it measures changes.
BENCHMARK_VERSION = 1
OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv")
GROUPS = ("all", "intra", "inter")
COMM_DTYPES = ("bf16", "fp32", "fp16")
BACKENDS = ("nccl", "gloo")
LAUNCHERS = ("local", "torchrun")
MODES = ("quick", "full", "custom")
GB = 1e9
# The large-message bandwidth is the best median busbw over this many of the largest sizes measured.
LARGE_SIZES = 3
DTYPE_PREFERENCE = ("bf16", "fp32", "fp16")  # which payload the estimator's figures come from by default
_REL_TOL = 1e-3  # rounding tolerance when checking algbw = S / t and busbw = algbw x factor


def bus_factor(op: str, num_ranks: int) -> float:
    """The nccl-tests bus-bandwidth factor of ``op`` over ``num_ranks`` ranks (busbw = algbw x factor).

    >>> bus_factor("all_reduce", 8)
    1.75
    """
    if isinstance(num_ranks, bool) or not isinstance(num_ranks, int) or num_ranks < 1:
        raise ValueError(f"num_ranks must be an integer >= 1, got {num_ranks!r}")
    n = num_ranks
    if op == "all_reduce":
        return 2.0 * (n - 1) / n
    if op in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    if op in ("broadcast", "send_recv"):
        return 1.0
    raise ValueError(f"unknown collective {op!r}; use one of {', '.join(OPS)}")


def algbw_gbps(size_bytes: float, time_s: float) -> float:
    """Algorithm bandwidth in GB/s (1e9 bytes/s): ``size_bytes / time_s``."""
    return size_bytes / time_s / GB


# -- records -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """One process group measured: ``kind`` all | intra (ranks sharing a host) | inter (one rank per node)."""

    kind: str
    index: int
    ranks: tuple[int, ...]
    host: str | None = None


@dataclass(frozen=True, slots=True)
class RankIdentity:
    """Who a rank is: host, local rank, device name, device index and PCI bus id (GPUs, from NVML)."""

    rank: int
    local_rank: int
    host: str
    device: str
    device_index: int | None = None
    pci_bus_id: str | None = None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class CollectiveRow:
    """One measurement: ``op`` over a group of ``num_ranks`` on a message of ``size_bytes``."""

    op: str
    group: str
    num_ranks: int
    dtype: str
    size_bytes: int
    count: int
    iterations: int
    time_s: float
    best_time_s: float
    algbw_gbps: float
    busbw_gbps: float
    emulated: bool
    impl: str


@dataclass(frozen=True, slots=True)
class SkippedRow:
    op: str
    group: str
    dtype: str
    reason: str
    size_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class CrossCheck:
    """An independent all_reduce timing, to compare with the benchmark's row of the same size."""

    op: str
    group: str
    dtype: str
    size_bytes: int
    iterations: int
    method: str
    time_s: float
    busbw_gbps: float
    benchmark_busbw_gbps: float
    diff_pct: float


@dataclass(frozen=True, slots=True)
class StragglerRank:
    rank: int
    host: str
    best_tflops: float
    median_tflops: float
    iterations: int
    slowdown_pct: float
    slow: bool
    throttled: bool | None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Stragglers:
    benchmark: Mapping[str, Any]
    margin_pct: float
    median_tflops: float
    spread_pct: float
    ranks: tuple[StragglerRank, ...]
    flagged: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SummaryRow:
    op: str
    group: str
    dtype: str
    num_ranks: int
    busbw_gbps: float
    large_size_bytes: int
    latency_s: float
    small_size_bytes: int
    emulated: bool


@dataclass(frozen=True, slots=True)
class CollectivesRecord:
    """The whole ``collectives`` section, typed. Build with :meth:`from_dict`, dump with :meth:`to_dict`."""

    schema_version: int
    benchmark_version: int
    created_utc: str
    command: str
    partial: bool
    duration_s: float | None
    backend: str
    launcher: str
    world_size: int
    num_nodes: int
    mode: str
    dtypes: tuple[str, ...]
    timeout_s: float | None
    groups: tuple[GroupSpec, ...]
    ranks: tuple[RankIdentity, ...]
    rows: tuple[CollectiveRow, ...]
    skipped: tuple[SkippedRow, ...] = ()
    cross_check: CrossCheck | None = None
    stragglers: Stragglers | None = None
    summary: tuple[SummaryRow, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, data: Any, file: str = "<calibration>") -> CollectivesRecord:
        """Validate ``data`` (the section as read from YAML) and build the record; CatalogError if invalid."""
        validate_collectives(data, file)
        stragglers = data.get("stragglers")
        cross = data.get("cross_check")
        return cls(
            **{k: data.get(k) for k in _SCALARS},
            dtypes=tuple(data["dtypes"]),
            groups=tuple(GroupSpec(g["kind"], g["index"], tuple(g["ranks"]), g.get("host")) for g in data["groups"]),
            ranks=tuple(RankIdentity(**r) for r in data["ranks"]),
            rows=tuple(CollectiveRow(**r) for r in data["rows"]),
            skipped=tuple(SkippedRow(**s) for s in data.get("skipped", [])),
            cross_check=CrossCheck(**cross) if cross is not None else None,
            stragglers=None if stragglers is None else Stragglers(
                benchmark=dict(stragglers["benchmark"]), margin_pct=stragglers["margin_pct"],
                median_tflops=stragglers["median_tflops"], spread_pct=stragglers["spread_pct"],
                ranks=tuple(StragglerRank(**{**r, "reasons": tuple(r.get("reasons", []))}) for r in stragglers["ranks"]),
                flagged=tuple(stragglers["flagged"])),
            summary=tuple(SummaryRow(**s) for s in data.get("summary", [])),
            notes=tuple(data.get("notes", [])),
        )

    def to_dict(self) -> dict[str, Any]:
        """The section as plain data (lists, dicts, builtin scalars), keys in schema order."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _SCALARS}
        out["dtypes"] = list(self.dtypes)
        out["groups"] = [{"kind": g.kind, "index": g.index, **({"host": g.host} if g.host is not None else {}),
                          "ranks": list(g.ranks)} for g in self.groups]
        out["ranks"] = [_fields(r) for r in self.ranks]
        out["rows"] = [_fields(r) for r in self.rows]
        out["skipped"] = [{k: v for k, v in _fields(s).items() if v is not None} for s in self.skipped]
        out["cross_check"] = _fields(self.cross_check) if self.cross_check else None
        if self.stragglers is None:
            out["stragglers"] = None
        else:
            s = self.stragglers
            out["stragglers"] = {"benchmark": dict(s.benchmark), "margin_pct": s.margin_pct,
                                 "median_tflops": s.median_tflops, "spread_pct": s.spread_pct,
                                 "ranks": [{**_fields(r), "reasons": list(r.reasons)} for r in s.ranks],
                                 "flagged": list(s.flagged)}
        out["summary"] = [_fields(r) for r in self.summary]
        out["notes"] = list(self.notes)
        return out


_SCALARS = ("schema_version", "benchmark_version", "created_utc", "command", "partial", "duration_s", "backend",
            "launcher", "world_size", "num_nodes", "mode", "timeout_s")


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


# -- validation ----------------------------------------------------------------------------------

_TOP_REQUIRED = ("schema_version", "benchmark_version", "created_utc", "command", "partial", "backend",
                 "launcher", "world_size", "num_nodes", "mode", "dtypes", "groups", "ranks", "rows")
_TOP_ALLOWED = set(_TOP_REQUIRED) | {"duration_s", "timeout_s", "skipped", "cross_check", "stragglers", "summary",
                                     "notes"}
_ROW_KEYS = ("op", "group", "num_ranks", "dtype", "size_bytes", "count", "iterations", "time_s", "best_time_s",
             "algbw_gbps", "busbw_gbps", "emulated", "impl")
_RANK_REQUIRED = ("rank", "local_rank", "host", "device")
_RANK_ALLOWED = set(_RANK_REQUIRED) | {"device_index", "pci_bus_id", "pid"}
_CROSS_KEYS = ("op", "group", "dtype", "size_bytes", "iterations", "method", "time_s", "busbw_gbps",
               "benchmark_busbw_gbps", "diff_pct")
_STRAGGLER_KEYS = ("benchmark", "margin_pct", "median_tflops", "spread_pct", "ranks", "flagged")
_STRAGGLER_RANK_REQUIRED = ("rank", "host", "best_tflops", "median_tflops", "iterations", "slowdown_pct", "slow",
                            "throttled")
_SUMMARY_KEYS = ("op", "group", "dtype", "num_ranks", "busbw_gbps", "large_size_bytes", "latency_s",
                 "small_size_bytes", "emulated")


class _Check(_CalibrationCheck):
    """calibration.py's validation helpers (CatalogError(file, entry, field, problem)), with the
    checks this section needs besides: sequences, booleans, string lists, rank lists."""

    def sequence(self, data: Mapping[str, Any], entry: str, name: str, *, optional: bool = False) -> list[Any]:
        value = data.get(name)
        if value is None and optional:
            return []
        if not isinstance(value, list):
            raise self.fail(entry, name, f"must be a list, got {type(value).__name__}")
        return value

    def boolean(self, data: Mapping[str, Any], entry: str, name: str, *, nullable: bool = False) -> None:
        value = data.get(name)
        if name not in data:
            raise self.fail(entry, name, "is required")
        if not (isinstance(value, bool) or (nullable and value is None)):
            raise self.fail(entry, name, f"must be true{', false or null' if nullable else ' or false'}, got {value!r}")

    def strings(self, data: Mapping[str, Any], entry: str, name: str) -> None:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(entry, name, "must be a list of strings")

    def ranks(self, data: Mapping[str, Any], entry: str, name: str, world_size: int) -> None:
        value = data.get(name)
        if not isinstance(value, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in value):
            raise self.fail(entry, name, f"must be a list of ranks, got {value!r}")
        if any(not 0 <= r < world_size for r in value) or len(set(value)) != len(value):
            raise self.fail(entry, name, f"must hold distinct ranks in 0..{world_size - 1}, got {value!r}")


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _REL_TOL * max(abs(a), abs(b), 1e-300)


def _check_row(check: _Check, row: Any, index: int, world_size: int) -> None:
    where = f"collectives.rows[{index}]"
    data = check.mapping(row, "collectives.rows", f"[{index}]")
    check.keys(data, where, _ROW_KEYS, _ROW_KEYS)
    check.string(data, where, "op", choices=OPS)
    check.string(data, where, "group", choices=GROUPS)
    check.string(data, where, "dtype", choices=COMM_DTYPES)
    check.string(data, where, "impl")
    check.boolean(data, where, "emulated")
    for name in ("num_ranks", "size_bytes", "count", "iterations"):
        check.integer(data, where, name, minimum=1)
    if data["num_ranks"] > world_size:
        raise check.fail(where, "num_ranks", f"must not exceed world_size ({world_size}), got {data['num_ranks']!r}")
    for name in ("time_s", "best_time_s"):
        check.number(data, where, name, positive=True)
    for name in ("algbw_gbps", "busbw_gbps"):
        check.number(data, where, name)
    if data["best_time_s"] > data["time_s"] * (1 + _REL_TOL):
        raise check.fail(where, "best_time_s", f"must not exceed time_s ({data['time_s']!r}), got {data['best_time_s']!r}")
    expected = algbw_gbps(data["size_bytes"], data["time_s"])
    if not _close(data["algbw_gbps"], expected):
        raise check.fail(where, "algbw_gbps", f"must equal size_bytes / time_s / 1e9 = {expected:.6g}, "
                                              f"got {data['algbw_gbps']!r}")
    factor = bus_factor(data["op"], data["num_ranks"])
    if not _close(data["busbw_gbps"], data["algbw_gbps"] * factor):
        raise check.fail(where, "busbw_gbps", f"must equal algbw_gbps x {factor:.6g} (nccl-tests factor of "
                                              f"{data['op']} over {data['num_ranks']} ranks) = "
                                              f"{data['algbw_gbps'] * factor:.6g}, got {data['busbw_gbps']!r}")


def validate_collectives(data: Any, file: str = "<calibration>") -> None:
    """Check the ``collectives`` section; raise CatalogError naming the entry and field of the first problem.

    Example message: ``cal.yaml: entry 'collectives.rows[3]', field 'busbw_gbps': must be a finite
    number >= 0, got nan``.
    """
    check = _Check(file)
    top = check.mapping(data, None, "collectives")
    entry = "collectives"
    check.keys(top, entry, _TOP_ALLOWED, _TOP_REQUIRED)
    if top["schema_version"] != SCHEMA_VERSION:
        raise check.fail(entry, "schema_version", f"expected {SCHEMA_VERSION}, got {top['schema_version']!r}")
    check.integer(top, entry, "benchmark_version", minimum=1)
    check.string(top, entry, "created_utc")
    check.string(top, entry, "command")
    check.boolean(top, entry, "partial")
    check.number(top, entry, "duration_s", optional=True)
    check.number(top, entry, "timeout_s", optional=True, positive=True)
    check.string(top, entry, "backend", choices=BACKENDS)
    check.string(top, entry, "launcher", choices=LAUNCHERS)
    check.string(top, entry, "mode", choices=MODES)
    check.integer(top, entry, "world_size", minimum=1)
    check.integer(top, entry, "num_nodes", minimum=1)
    world = top["world_size"]
    if top["num_nodes"] > world:
        raise check.fail(entry, "num_nodes", f"must not exceed world_size ({world}), got {top['num_nodes']!r}")
    dtypes = check.sequence(top, entry, "dtypes")
    for value in dtypes:
        if value not in COMM_DTYPES:
            raise check.fail(entry, "dtypes", f"must hold dtypes among {', '.join(COMM_DTYPES)}, got {value!r}")

    for index, group in enumerate(check.sequence(top, entry, "groups")):
        where = f"{entry}.groups[{index}]"
        group = check.mapping(group, f"{entry}.groups", f"[{index}]")
        check.keys(group, where, ("kind", "index", "ranks", "host"), ("kind", "index", "ranks"))
        check.string(group, where, "kind", choices=GROUPS)
        check.integer(group, where, "index")
        check.string(group, where, "host", optional=True)
        check.ranks(group, where, "ranks", world)

    ranks = check.sequence(top, entry, "ranks")
    for index, identity in enumerate(ranks):
        where = f"{entry}.ranks[{index}]"
        identity = check.mapping(identity, f"{entry}.ranks", f"[{index}]")
        check.keys(identity, where, _RANK_ALLOWED, _RANK_REQUIRED)
        check.integer(identity, where, "rank")
        if identity["rank"] != index:
            raise check.fail(where, "rank", f"must be {index} (ranks are listed in rank order), got {identity['rank']!r}")
        check.integer(identity, where, "local_rank")
        check.string(identity, where, "host")
        check.string(identity, where, "device")
        check.integer(identity, where, "device_index", optional=True)
        check.string(identity, where, "pci_bus_id", optional=True)
        check.integer(identity, where, "pid", optional=True)
    if len(ranks) != world:
        raise check.fail(entry, "ranks", f"must list all {world} ranks (world_size), got {len(ranks)}")

    for index, row in enumerate(check.sequence(top, entry, "rows")):
        _check_row(check, row, index, world)

    for index, skipped in enumerate(check.sequence(top, entry, "skipped", optional=True)):
        where = f"{entry}.skipped[{index}]"
        skipped = check.mapping(skipped, f"{entry}.skipped", f"[{index}]")
        check.keys(skipped, where, ("op", "group", "dtype", "size_bytes", "reason"), ("op", "group", "dtype", "reason"))
        check.string(skipped, where, "op", choices=OPS)
        check.string(skipped, where, "group", choices=GROUPS)
        check.string(skipped, where, "dtype", choices=COMM_DTYPES)
        check.integer(skipped, where, "size_bytes", optional=True, minimum=1)
        check.string(skipped, where, "reason")

    cross = top.get("cross_check")
    if cross is not None:
        where = f"{entry}.cross_check"
        cross = check.mapping(cross, entry, "cross_check")
        check.keys(cross, where, _CROSS_KEYS, _CROSS_KEYS)
        check.string(cross, where, "op", choices=OPS)
        check.string(cross, where, "group", choices=GROUPS)
        check.string(cross, where, "dtype", choices=COMM_DTYPES)
        check.string(cross, where, "method")
        check.integer(cross, where, "size_bytes", minimum=1)
        check.integer(cross, where, "iterations", minimum=1)
        check.number(cross, where, "time_s", positive=True)
        check.number(cross, where, "busbw_gbps")
        check.number(cross, where, "benchmark_busbw_gbps")
        check.number(cross, where, "diff_pct", minimum=-math.inf)

    stragglers = top.get("stragglers")
    if stragglers is not None:
        where = f"{entry}.stragglers"
        stragglers = check.mapping(stragglers, entry, "stragglers")
        check.keys(stragglers, where, _STRAGGLER_KEYS, _STRAGGLER_KEYS)
        bench = check.mapping(stragglers["benchmark"], where, "benchmark")
        check.keys(bench, f"{where}.benchmark", ("m", "n", "k", "dtype"), ("m", "n", "k", "dtype"))
        for name in ("m", "n", "k"):
            check.integer(bench, f"{where}.benchmark", name, minimum=1)
        check.string(bench, f"{where}.benchmark", "dtype")
        check.number(stragglers, where, "margin_pct")
        check.number(stragglers, where, "median_tflops")
        check.number(stragglers, where, "spread_pct")
        for index, item in enumerate(check.sequence(stragglers, where, "ranks")):
            at = f"{where}.ranks[{index}]"
            item = check.mapping(item, f"{where}.ranks", f"[{index}]")
            check.keys(item, at, set(_STRAGGLER_RANK_REQUIRED) | {"reasons"}, _STRAGGLER_RANK_REQUIRED)
            check.integer(item, at, "rank")
            if item["rank"] >= world:
                raise check.fail(at, "rank", f"must be below world_size ({world}), got {item['rank']!r}")
            check.string(item, at, "host")
            check.number(item, at, "best_tflops")
            check.number(item, at, "median_tflops")
            check.integer(item, at, "iterations", minimum=1)
            check.number(item, at, "slowdown_pct", minimum=-math.inf)
            check.boolean(item, at, "slow")
            check.boolean(item, at, "throttled", nullable=True)
            check.strings(item, at, "reasons")
        check.ranks(stragglers, where, "flagged", world)

    for index, item in enumerate(check.sequence(top, entry, "summary", optional=True)):
        where = f"{entry}.summary[{index}]"
        item = check.mapping(item, f"{entry}.summary", f"[{index}]")
        check.keys(item, where, _SUMMARY_KEYS, _SUMMARY_KEYS)
        check.string(item, where, "op", choices=OPS)
        check.string(item, where, "group", choices=GROUPS)
        check.string(item, where, "dtype", choices=COMM_DTYPES)
        for name in ("num_ranks", "large_size_bytes", "small_size_bytes"):
            check.integer(item, where, name, minimum=1)
        check.number(item, where, "busbw_gbps")
        check.number(item, where, "latency_s", positive=True)
        check.boolean(item, where, "emulated")

    check.strings(top, entry, "notes")


# -- what the estimator takes ----------------------------------------------------------------------


def _rows(section: CollectivesRecord | Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if isinstance(section, CollectivesRecord):
        return [_fields(r) for r in section.rows]
    return list(section.get("rows", []))


def summarize(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (group, op, dtype), in first-seen order: the large-message busbw (best median busbw over the
    :data:`LARGE_SIZES` largest sizes) and the small-message latency (median time of the smallest size).

    Emulated rows are used only where a (group, op, dtype) has no native row.
    """
    series: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        series.setdefault((row["group"], row["op"], row["dtype"]), []).append(row)
    out = []
    for (group, op, dtype), items in series.items():
        native = [r for r in items if not r["emulated"]]
        items = sorted(native or items, key=lambda r: r["size_bytes"])
        large = max(items[-LARGE_SIZES:], key=lambda r: r["busbw_gbps"])
        small = items[0]
        out.append({"op": op, "group": group, "dtype": dtype, "num_ranks": large["num_ranks"],
                    "busbw_gbps": large["busbw_gbps"], "large_size_bytes": large["size_bytes"],
                    "latency_s": small["time_s"], "small_size_bytes": small["size_bytes"],
                    "emulated": not native})
    return out


@dataclass(frozen=True, slots=True)
class LinkFigure:
    """What the step-time model takes for one (group, op): ``t(S) = latency_s + S x factor / busbw``.

    ``group`` is the tier asked for (intra: within a node, inter: across nodes, all: the whole
    world); ``measured_group`` the group kind of the rows it comes from (on one node, the world
    group *is* the intra-node tier).
    """

    group: str
    op: str
    measured_group: str
    dtype: str
    num_ranks: int
    busbw_gbps: float
    large_size_bytes: int
    latency_s: float
    small_size_bytes: int
    backend: str
    world_size: int
    date: str
    emulated: bool = False

    def time_s(self, size_bytes: float, num_ranks: int | None = None) -> float:
        """Predicted seconds of ``op`` on ``size_bytes`` (nccl-tests S) over ``num_ranks`` (default: as measured)."""
        n = self.num_ranks if num_ranks is None else num_ranks
        if self.busbw_gbps <= 0:
            return math.inf
        return self.latency_s + size_bytes * bus_factor(self.op, n) / (self.busbw_gbps * GB)

    def describe(self) -> str:
        """e.g. ``measured all_reduce busbw 11.2 GB/s, latency 85 us (intra, gloo, 2 ranks, 2026-12-01)``."""
        where = self.group if self.group == self.measured_group else f"{self.group} = {self.measured_group}"
        extra = ", emulated" if self.emulated else ""
        return (f"measured {self.op} busbw {format_gbps(self.busbw_gbps)} GB/s, latency {format_seconds(self.latency_s)} "
                f"({where}, {self.backend}, {self.num_ranks} ranks, {self.dtype}{extra}, {self.date})")


def link_figures(section: CollectivesRecord | Mapping[str, Any],
                 dtype: str | None = None) -> dict[tuple[str, str], LinkFigure]:
    """``{(group, op): LinkFigure}`` from a ``collectives`` section (a dict as read, or the record).

    ``dtype`` picks the payload (default: bf16 if measured, else fp32, else fp16). On one node the
    world group is also returned as ``("intra", op)``; with one rank per node, as ``("inter", op)``.
    """
    if isinstance(section, CollectivesRecord):
        meta = {"backend": section.backend, "created_utc": section.created_utc, "world_size": section.world_size,
                "num_nodes": section.num_nodes}
    else:
        meta = {k: section.get(k) for k in ("backend", "created_utc", "world_size", "num_nodes")}
    summary = summarize(_rows(section))
    measured = {s["dtype"] for s in summary}
    if dtype is None:
        dtype = next((d for d in DTYPE_PREFERENCE if d in measured), None)
    date = str(meta["created_utc"] or "")[:10]
    out: dict[tuple[str, str], LinkFigure] = {}
    for item in summary:
        if item["dtype"] != dtype:
            continue
        figure = LinkFigure(group=item["group"], op=item["op"], measured_group=item["group"], dtype=item["dtype"],
                            num_ranks=item["num_ranks"], busbw_gbps=item["busbw_gbps"],
                            large_size_bytes=item["large_size_bytes"], latency_s=item["latency_s"],
                            small_size_bytes=item["small_size_bytes"], backend=str(meta["backend"]),
                            world_size=int(meta["world_size"] or item["num_ranks"]), date=date,
                            emulated=item["emulated"])
        out[(item["group"], item["op"])] = figure
    world_size, num_nodes = meta["world_size"] or 0, meta["num_nodes"] or 1
    for (group, op), figure in list(out.items()):
        if group != "all":
            continue
        alias = "intra" if num_nodes == 1 else "inter" if world_size == num_nodes else None
        if alias and (alias, op) not in out:
            out[(alias, op)] = LinkFigure(**{**_fields(figure), "group": alias})
    return out


def format_seconds(value: float) -> str:
    """``8.5e-05`` -> ``85 us``; ``0.0123`` -> ``12.3 ms``; ``1.5`` -> ``1.5 s``."""
    if value < 1e-3:
        return f"{value * 1e6:.3g} us"
    if value < 1.0:
        return f"{value * 1e3:.3g} ms"
    return f"{value:.3g} s"


def format_gbps(value: float) -> str:
    return f"{value:.3g}"


def format_bytes(value: int) -> str:
    """``1024`` -> ``1 KiB``; ``67108864`` -> ``64 MiB``; ``12`` -> ``12 B``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            amount = value / scale
            return f"{amount:.0f} {unit}" if amount == int(amount) else f"{amount:.3g} {unit}"
    return f"{value} B"


def summary_rows(section: CollectivesRecord | Mapping[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """Rows (op, group, dtype, large-message busbw GB/s, small-message latency, ranks) for a table."""
    rows = []
    for item in summarize(_rows(section)):
        note = " (emulated)" if item["emulated"] else ""
        rows.append((item["op"] + note, item["group"], item["dtype"],
                     f"{format_gbps(item['busbw_gbps'])} (at {format_bytes(item['large_size_bytes'])})",
                     f"{format_seconds(item['latency_s'])} (at {format_bytes(item['small_size_bytes'])})",
                     str(item["num_ranks"])))
    return rows
