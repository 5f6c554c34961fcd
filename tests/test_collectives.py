"""The `collectives` calibration section (estimator/records/collectives.py) and the pure parts of the
collective benchmark: nccl-tests bus-bandwidth arithmetic, schema validation with exact messages,
the typed record, what the estimator takes (link_figures), the straggler rule and the multi-node
grouping with a faked topology. Nothing here runs torch; the tests of the profiler's pure helpers
are skipped without it (importing the profiler package imports torch)."""

from __future__ import annotations

import copy
import math
import statistics
import subprocess
import sys

import pytest
import yaml

from estimator.records.calibration import read_calibration, validate_calibration, write_calibration
from estimator.records.collectives import (CollectivesRecord, LinkFigure, algbw_gbps, bus_factor, format_bytes, format_seconds, link_figures, summarize, summary_rows, validate_collectives)
from estimator.errors import CatalogError


@pytest.fixture(scope="module")
def report():
    """profiler/comm/report.py (pure, but importing the profiler package imports torch)."""
    pytest.importorskip("torch")
    from profiler.comm import report as comm_report

    return comm_report


@pytest.fixture(scope="module")
def plan_groups():
    pytest.importorskip("torch")
    from profiler.comm.topology import plan_groups

    return plan_groups

# -- bus bandwidth: the nccl-tests formulas (doc/PERFORMANCE.md) ------------------------------------


@pytest.mark.parametrize(("op", "n", "factor"), [
    ("all_reduce", 2, 1.0), ("all_reduce", 8, 1.75), ("all_reduce", 16, 1.875), ("all_reduce", 1, 0.0),
    ("all_gather", 8, 0.875), ("reduce_scatter", 4, 0.75), ("all_to_all", 8, 0.875), ("all_to_all", 2, 0.5),
    ("broadcast", 8, 1.0), ("send_recv", 2, 1.0),
])
def test_bus_factor_follows_nccl_tests(op, n, factor):
    assert bus_factor(op, n) == pytest.approx(factor)


def test_bus_factor_refuses_unknown_ops_and_rank_counts():
    with pytest.raises(ValueError, match="unknown collective 'allreduce'"):
        bus_factor("allreduce", 2)
    with pytest.raises(ValueError, match="num_ranks must be an integer >= 1, got 0"):
        bus_factor("all_reduce", 0)


def test_measured_row_uses_the_median_of_the_slowest_rank_and_the_formulas(report):
    measured_row = report.measured_row
    # 8 ranks, a 1 GB all_reduce: median 10 ms -> algbw 100 GB/s, busbw 100 x 2 x 7/8 = 175 GB/s
    row = measured_row("all_reduce", "intra", 8, "bf16", 10**9, 5 * 10**8, [0.012, 0.010, 0.009, 0.011, 0.010],
                       "all_reduce", False)
    assert row["time_s"] == 0.010 and row["best_time_s"] == 0.009 and row["iterations"] == 5
    assert row["algbw_gbps"] == pytest.approx(100.0) and row["busbw_gbps"] == pytest.approx(175.0)
    # all_gather of S = 64 MiB over 4 ranks in 1 ms: algbw 67.1 GB/s, busbw x 3/4
    row = measured_row("all_gather", "all", 4, "fp32", 2**26, 2**24, [0.001], "all_gather_into_tensor", False)
    assert row["algbw_gbps"] == pytest.approx(2**26 / 1e-3 / 1e9, rel=1e-5)
    assert row["busbw_gbps"] == pytest.approx(row["algbw_gbps"] * 0.75, rel=1e-5)
    with pytest.raises(ValueError, match="positive times"):
        measured_row("broadcast", "all", 2, "fp32", 8, 2, [], "broadcast", False)


# -- a section -------------------------------------------------------------------------------------

SIZES = (1024, 1 << 20, 1 << 24, 1 << 26)


def _times(op: str, size: int, gbps: float = 10.0, latency_s: float = 50e-6) -> list[float]:
    t = latency_s + size / (gbps * 1e9)
    return [t * 1.1, t, t * 1.02, t * 0.98]


def _row(op: str, group: str, n: int, dtype: str, size: int, times: list[float], impl: str,
         emulated: bool = False) -> dict:
    """A row as the benchmark writes it: median and best of the slowest rank's times, nccl-tests busbw."""
    median = statistics.median(times)
    alg = algbw_gbps(size, median)
    return {"op": op, "group": group, "num_ranks": n, "dtype": dtype, "size_bytes": size,
            "count": size // (2 if dtype == "bf16" else 4), "iterations": len(times), "time_s": median,
            "best_time_s": min(times), "algbw_gbps": alg, "busbw_gbps": alg * bus_factor(op, n),
            "emulated": emulated, "impl": impl}


def sample_section(**changes) -> dict:
    """A section as two gloo ranks on one host would write it (numbers illustrative)."""
    rows = []
    for op in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv"):
        for dtype in ("bf16", "fp32"):
            for size in SIZES:
                emulated = op == "reduce_scatter"
                rows.append(_row(op, "all", 2, dtype, size, _times(op, size),
                                 "all_reduce+slice" if emulated else op, emulated))
    stragglers = {"benchmark": {"m": 1024, "n": 1024, "k": 1024, "dtype": "fp32"}, "margin_pct": 10.0,
                  "median_tflops": 0.0995, "spread_pct": 1.01,
                  "ranks": [{"rank": r, "host": "vm", "best_tflops": 0.11, "median_tflops": t, "iterations": 20,
                             "slowdown_pct": s, "slow": False, "throttled": None, "reasons": []}
                            for r, t, s in ((0, 0.10, -0.5), (1, 0.099, 0.5))],
                  "flagged": []}
    section = {
        "schema_version": 1, "benchmark_version": 1, "created_utc": "2026-12-01T10:00:00Z",
        "command": "gpucost profile --comm --nproc 2 --device cpu", "partial": False, "duration_s": 41.2,
        "backend": "gloo", "launcher": "local", "world_size": 2, "num_nodes": 1, "mode": "quick",
        "dtypes": ["bf16", "fp32"], "timeout_s": 120.0, "groups": [{"kind": "all", "index": 0, "ranks": [0, 1]}],
        "ranks": [{"rank": r, "local_rank": r, "host": "vm", "device": "AMD EPYC", "device_index": None,
                   "pci_bus_id": None, "pid": 100 + r} for r in (0, 1)],
        "rows": rows,
        "skipped": [{"op": "all_reduce", "group": "all", "dtype": "fp32", "size_bytes": 1 << 27,
                     "reason": "out of memory; larger sizes not tried"}],
        "cross_check": {"op": "all_reduce", "group": "all", "dtype": "fp32", "size_bytes": 1 << 26, "iterations": 35,
                        "method": "independent loop", "time_s": 0.0068, "busbw_gbps": 9.87,
                        "benchmark_busbw_gbps": 9.9, "diff_pct": 0.3},
        "stragglers": stragglers, "summary": summarize(rows), "notes": ["gloo moves data through host memory"],
    }
    section.update(changes)
    return section


def test_the_profilers_section_builder_writes_the_same_layout(report):
    section = sample_section()
    built = report.build_section(**{k: section[k] for k in (
        "created_utc", "command", "partial", "duration_s", "backend", "launcher", "world_size", "num_nodes", "mode",
        "dtypes", "timeout_s", "groups", "ranks", "rows", "skipped", "cross_check", "stragglers", "notes")})
    assert built == section and list(built) == list(section)
    validate_collectives(built, "cal.yaml")


def test_a_built_section_validates_and_round_trips_through_the_typed_record():
    section = sample_section()
    validate_collectives(section, "cal.yaml")
    record = CollectivesRecord.from_dict(section, "cal.yaml")
    assert record.world_size == 2 and record.backend == "gloo" and len(record.rows) == 6 * 2 * len(SIZES)
    assert record.rows[0].op == "all_reduce" and record.rows[0].emulated is False
    assert record.ranks[1].pid == 101 and record.stragglers.flagged == ()
    assert record.to_dict() == section
    with pytest.raises(AttributeError):  # frozen
        record.world_size = 3  # type: ignore[misc]


def _calibration(section: dict) -> dict:
    return {"schema_version": 1, "benchmark_version": 1, "created_utc": "2026-12-01T10:00:00Z",
            "command": "gpucost profile --comm", "partial": False, "duration_s": 41.2,
            "device": {"name": "AMD EPYC", "backend": "cpu", "catalog_id": None},
            "software": {"torch": "2.13.0"},
            "telemetry": {"source": None, "samples": 0, "interval_s": 0.5, "clock_mhz": None, "power_w": None,
                          "temperature_c": None, "throttled": None, "reasons": []},
            "matmul": {}, "mlp": {}, "bandwidth": {"skipped": "not measured: --comm"}, "notes": [],
            "collectives": section}


def test_the_calibration_file_validates_its_collectives_section(tmp_path):
    path = tmp_path / "cal.yaml"
    write_calibration(_calibration(sample_section()), path)
    assert read_calibration(path)["collectives"]["rows"][0]["op"] == "all_reduce"
    data = yaml.safe_load(path.read_text())
    data["collectives"]["rows"][3]["busbw_gbps"] = float("nan")
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError) as info:
        read_calibration(path)
    assert str(info.value) == (f"{path}: entry 'collectives.rows[3]', field 'busbw_gbps': "
                               "must be a finite number >= 0, got nan")


def _error(section) -> str:
    with pytest.raises(CatalogError) as info:
        validate_collectives(section, "cal.yaml")
    return str(info.value)


def _with_row(change: dict, index: int = 0) -> dict:
    section = sample_section()
    section["rows"][index].update(change)
    return section


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda s: s.pop("rows"), "cal.yaml: entry 'collectives', field 'rows': is required"),
    (lambda s: s.update(speed=1), "cal.yaml: entry 'collectives', field 'speed': is not a known field"),
    (lambda s: s.update(schema_version=2), "cal.yaml: entry 'collectives', field 'schema_version': expected 1, got 2"),
    (lambda s: s.update(backend="mpi"),
     "cal.yaml: entry 'collectives', field 'backend': must be one of nccl, gloo, got 'mpi'"),
    (lambda s: s.update(world_size=0), "cal.yaml: entry 'collectives', field 'world_size': must be an integer >= 1, got 0"),
    (lambda s: s.update(partial="no"), "cal.yaml: entry 'collectives', field 'partial': must be true or false, got 'no'"),
    (lambda s: s.update(duration_s=float("inf")),
     "cal.yaml: entry 'collectives', field 'duration_s': must be a finite number >= 0, got inf"),
    (lambda s: s.update(dtypes=["fp8"]),
     "cal.yaml: entry 'collectives', field 'dtypes': must hold dtypes among bf16, fp32, fp16, got 'fp8'"),
    (lambda s: s["ranks"].pop(), "cal.yaml: entry 'collectives', field 'ranks': must list all 2 ranks (world_size), got 1"),
    (lambda s: s["ranks"][1].update(rank=5),
     "cal.yaml: entry 'collectives.ranks[1]', field 'rank': must be 1 (ranks are listed in rank order), got 5"),
    (lambda s: s["groups"][0].update(ranks=[0, 2]),
     "cal.yaml: entry 'collectives.groups[0]', field 'ranks': must hold distinct ranks in 0..1, got [0, 2]"),
    (lambda s: s["stragglers"].update(flagged=[7]),
     "cal.yaml: entry 'collectives.stragglers', field 'flagged': must hold distinct ranks in 0..1, got [7]"),
    (lambda s: s["stragglers"]["ranks"][0].update(throttled="maybe"),
     "cal.yaml: entry 'collectives.stragglers.ranks[0]', field 'throttled': must be true, false or null, got 'maybe'"),
    (lambda s: s["cross_check"].update(diff_pct=float("nan")),
     "cal.yaml: entry 'collectives.cross_check', field 'diff_pct': must be a finite number >= -inf, got nan"),
    (lambda s: s["summary"][0].update(latency_s=0.0),
     "cal.yaml: entry 'collectives.summary[0]', field 'latency_s': must be a finite number > 0, got 0.0"),
    (lambda s: s["skipped"][0].update(op="gather"),
     "cal.yaml: entry 'collectives.skipped[0]', field 'op': must be one of all_reduce, all_gather, reduce_scatter, "
     "all_to_all, broadcast, send_recv, got 'gather'"),
    (lambda s: s.update(notes=[1]), "cal.yaml: entry 'collectives', field 'notes': must be a list of strings"),
])
def test_section_errors_name_the_entry_and_field(mutate, message):
    section = sample_section()
    mutate(section)
    assert _error(section) == message


@pytest.mark.parametrize(("change", "message"), [
    ({"busbw_gbps": float("nan")}, "field 'busbw_gbps': must be a finite number >= 0, got nan"),
    ({"time_s": float("inf")}, "field 'time_s': must be a finite number > 0, got inf"),
    ({"time_s": 0}, "field 'time_s': must be a finite number > 0, got 0"),
    ({"op": "allreduce"}, "field 'op': must be one of all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, "
                          "send_recv, got 'allreduce'"),
    ({"group": "node"}, "field 'group': must be one of all, intra, inter, got 'node'"),
    ({"dtype": "fp8"}, "field 'dtype': must be one of bf16, fp32, fp16, got 'fp8'"),
    ({"emulated": "yes"}, "field 'emulated': must be true or false, got 'yes'"),
    ({"size_bytes": 1.5}, "field 'size_bytes': must be an integer >= 1, got 1.5"),
    ({"iterations": True}, "field 'iterations': must be an integer >= 1, got True"),
    ({"speed": 3}, "field 'speed': is not a known field"),
    ({"num_ranks": 4}, "field 'num_ranks': must not exceed world_size (2), got 4"),
])
def test_row_errors_name_the_row_and_field(change, message):
    assert _error(_with_row(change)) == f"cal.yaml: entry 'collectives.rows[0]', {message}"


def test_row_bandwidths_must_match_the_time_and_the_nccl_tests_factor():
    row = sample_section()["rows"][0]
    assert _error(_with_row({"algbw_gbps": row["algbw_gbps"] * 2})).startswith(
        "cal.yaml: entry 'collectives.rows[0]', field 'algbw_gbps': must equal size_bytes / time_s / 1e9 = ")
    # an all_gather row whose busbw was computed with the all_reduce factor (2(n-1)/n instead of (n-1)/n)
    section = sample_section()
    index = next(i for i, r in enumerate(section["rows"]) if r["op"] == "all_gather")
    wrong = section["rows"][index]["algbw_gbps"] * 1.0
    section["rows"][index]["busbw_gbps"] = wrong
    assert _error(section) == (
        f"cal.yaml: entry 'collectives.rows[{index}]', field 'busbw_gbps': must equal algbw_gbps x 0.5 (nccl-tests "
        f"factor of all_gather over 2 ranks) = {wrong * 0.5:.6g}, got {wrong!r}")
    assert _error(_with_row({"best_time_s": row["time_s"] * 2})).startswith(
        "cal.yaml: entry 'collectives.rows[0]', field 'best_time_s': must not exceed time_s")


def test_a_non_mapping_section_or_row_is_refused():
    with pytest.raises(CatalogError, match="must be a mapping, got list"):
        validate_collectives([1], "cal.yaml")
    section = sample_section()
    section["rows"][2] = "fast"
    assert _error(section) == "cal.yaml: entry 'collectives.rows', field '[2]': must be a mapping, got str"


def test_whole_file_validation_reports_a_bad_collectives_section_with_the_file_name():
    data = _calibration(sample_section())
    data["collectives"]["rows"][1]["emulated"] = None
    with pytest.raises(CatalogError) as info:
        validate_calibration(data, "h100.yaml")
    assert str(info.value) == "h100.yaml: entry 'collectives.rows[1]', field 'emulated': must be true or false, got None"


# -- what the estimator takes ------------------------------------------------------------------------


def test_summary_takes_the_best_busbw_of_the_largest_sizes_and_the_latency_of_the_smallest():
    rows = [_row("all_reduce", "intra", 8, "bf16", s, [t], "all_reduce")
            for s, t in ((8, 20e-6), (1 << 20, 50e-6), (1 << 28, 2e-3), (1 << 29, 3.5e-3), (1 << 30, 7e-3))]
    (item,) = summarize(rows)
    best = max(rows[-3:], key=lambda r: r["busbw_gbps"])
    assert item["busbw_gbps"] == best["busbw_gbps"] and item["large_size_bytes"] == 1 << 29
    assert item["latency_s"] == 20e-6 and item["small_size_bytes"] == 8 and item["emulated"] is False
    assert summary_rows({"rows": rows}) == [
        ("all_reduce", "intra", "bf16", f"{best['busbw_gbps']:.3g} (at 512 MiB)", "20 us (at 8 B)", "8")]


def test_link_figures_give_busbw_and_latency_per_group_and_op():
    section = sample_section()
    figures = link_figures(section)
    assert ("all", "all_reduce") in figures and ("intra", "all_reduce") in figures  # one node: all = intra
    assert ("inter", "all_reduce") not in figures
    figure = figures[("all", "all_reduce")]
    assert isinstance(figure, LinkFigure) and figure.dtype == "bf16"  # bf16 preferred
    rows = [r for r in section["rows"] if r["op"] == "all_reduce" and r["dtype"] == "bf16"]
    assert figure.busbw_gbps == max(r["busbw_gbps"] for r in rows[-3:])
    assert figure.latency_s == rows[0]["time_s"] and figure.num_ranks == 2
    assert figures[("all", "reduce_scatter")].emulated is True
    assert figures[("intra", "all_reduce")].measured_group == "all"
    # t(S) = latency + S x factor / busbw, with the factor of the asked-for rank count
    assert figure.time_s(1e9, 8) == pytest.approx(figure.latency_s + 1e9 * 1.75 / (figure.busbw_gbps * 1e9))
    assert figures[("all", "broadcast")].describe() == (
        f"measured broadcast busbw {figures[('all', 'broadcast')].busbw_gbps:.3g} GB/s, latency "
        f"{format_seconds(figures[('all', 'broadcast')].latency_s)} (all, gloo, 2 ranks, bf16, 2026-12-01)")
    assert "(intra = all, gloo, 2 ranks" in figures[("intra", "all_reduce")].describe()
    assert link_figures(section, dtype="fp32")[("all", "all_reduce")].dtype == "fp32"
    assert link_figures(CollectivesRecord.from_dict(section)) == figures


def test_link_figures_with_one_rank_per_node_call_the_world_group_inter_node():
    section = sample_section(num_nodes=2)
    figures = link_figures(section)
    assert ("inter", "all_reduce") in figures and ("intra", "all_reduce") not in figures


def test_describe_matches_the_documented_form():
    figure = LinkFigure(group="intra", op="all_reduce", measured_group="intra", dtype="bf16", num_ranks=2,
                        busbw_gbps=11.2, large_size_bytes=1 << 26, latency_s=85e-6, small_size_bytes=1024,
                        backend="gloo", world_size=2, date="2026-12-01")
    assert figure.describe() == "measured all_reduce busbw 11.2 GB/s, latency 85 us (intra, gloo, 2 ranks, bf16, 2026-12-01)"
    assert math.isinf(LinkFigure(**{**{s: getattr(figure, s) for s in figure.__slots__}, "busbw_gbps": 0.0}).time_s(1))


def test_formatting_helpers():
    assert [format_bytes(v) for v in (8, 1024, 1536, 1 << 26, 1 << 30)] == ["8 B", "1 KiB", "1.5 KiB", "64 MiB", "1 GiB"]
    assert [format_seconds(v) for v in (85e-6, 0.0123, 1.5)] == ["85 us", "12.3 ms", "1.5 s"]


# -- stragglers ---------------------------------------------------------------------------------------


def _rank(rank: int, tflops: float, throttled=False, reasons=()) -> dict:
    return {"rank": rank, "host": f"node{rank // 4}", "best_tflops": tflops * 1.05, "median_tflops": tflops,
            "iterations": 30, "throttled": throttled, "reasons": list(reasons)}


def test_a_rank_more_than_the_margin_below_the_median_is_flagged(report):
    straggler_report, straggler_notes = report.straggler_report, report.straggler_notes
    report = straggler_report([_rank(r, 700.0) for r in range(7)] + [_rank(7, 600.0)],
                              {"m": 8192, "n": 8192, "k": 8192, "dtype": "bf16"}, margin_pct=10.0)
    assert report["median_tflops"] == 700.0 and report["flagged"] == [7]
    assert report["ranks"][7]["slow"] is True and report["ranks"][7]["slowdown_pct"] == pytest.approx(14.29)
    assert report["spread_pct"] == pytest.approx(100 * 100 / 700, abs=0.01)
    assert not any(r["slow"] for r in report["ranks"][:7])
    (note,) = straggler_notes(report)
    assert note.startswith("straggler: rank 7 (node1) ran the matmul at 600 TFLOP/s, 14.3% below the median of 700")


def test_within_the_margin_nothing_is_flagged_but_throttling_is(report):
    straggler_report, straggler_notes = report.straggler_report, report.straggler_notes
    report = straggler_report([_rank(0, 700.0), _rank(1, 650.0), _rank(2, 690.0, True, ["sw_power_cap"])],
                              {"m": 1, "n": 1, "k": 1, "dtype": "bf16"}, margin_pct=10.0)
    assert [r["slow"] for r in report["ranks"]] == [False, False, False]
    assert report["flagged"] == [2]
    assert straggler_notes(report) == ["rank 2 (node0) throttled its clocks during the matmul (sw_power_cap)"]


# -- multi-node grouping with a faked topology -----------------------------------------------------------


def test_one_node_measures_only_the_world_group(plan_groups):
    topology = plan_groups(["vm"] * 8)
    assert [(g.kind, g.ranks) for g in topology.groups] == [("all", tuple(range(8)))]
    assert topology.num_nodes == 1 and topology.kinds() == ("all",)


def test_two_nodes_of_four_give_intra_groups_per_node_and_inter_groups_per_local_index(plan_groups):
    topology = plan_groups(["a"] * 4 + ["b"] * 4)
    assert [(g.kind, g.index, g.ranks, g.host) for g in topology.groups] == [
        ("all", 0, (0, 1, 2, 3, 4, 5, 6, 7), None),
        ("intra", 0, (0, 1, 2, 3), "a"), ("intra", 1, (4, 5, 6, 7), "b"),
        ("inter", 0, (0, 4), None), ("inter", 1, (1, 5), None), ("inter", 2, (2, 6), None),
        ("inter", 3, (3, 7), None),
    ]
    assert topology.kinds() == ("all", "intra", "inter")
    assert topology.group_of("inter", 6).ranks == (2, 6) and topology.group_of("intra", 6).host == "b"


def test_interleaved_rank_placement_and_uneven_nodes(plan_groups):
    # ranks 0, 2, 4 on "a" and 1, 3 on "b" (a launcher placing round-robin), "c" with one rank
    topology = plan_groups(["a", "b", "a", "b", "a", "c"])
    intra = [g.ranks for g in topology.groups if g.kind == "intra"]
    inter = [g.ranks for g in topology.groups if g.kind == "inter"]
    assert intra == [(0, 2, 4), (1, 3)]  # "c" has a single rank: no intra-node group
    assert inter == [(0, 1, 5), (2, 3), ]  # index 2 has only rank 4: no group of one
    assert topology.group_of("inter", 4) is None and topology.nodes == ("a", "b", "c")


def test_one_rank_per_node_has_no_separate_inter_group(plan_groups):
    topology = plan_groups(["n1", "n2", "n3", "n4"])
    assert topology.kinds() == ("all",) and topology.num_nodes == 4
    with pytest.raises(ValueError):
        plan_groups([])


def test_the_estimator_side_never_imports_torch():
    code = "import sys, estimator.records.collectives, estimator.cli, estimator.cli.profile_comm; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sample_section_is_not_mutated_by_validation():
    section = sample_section()
    before = copy.deepcopy(section)
    validate_collectives(section, "x")
    assert section == before
