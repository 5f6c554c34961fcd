"""The collective benchmark on CPU: gloo, 2 processes on localhost (a free port each run).

Every collective (native and emulated) moves the right data; `gpucost profile --comm --nproc 2`
writes a valid file covering every op with the nccl-tests arithmetic; emulated rows are marked;
an injected slow rank is flagged; Ctrl-C keeps a complete file and writes the partial beside it;
a dead worker ends the run with one line; torchrun gives the same schema. Message sizes and
iterations are shrunk through GPUCOST_COMM_TEST so the whole file runs in well under a minute.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402

from estimator.records.calibration import read_calibration, write_calibration  # noqa: E402
from estimator.cli.profile_comm import format_comm, partial_path  # noqa: E402
from estimator.records.collectives import OPS, bus_factor, link_figures  # noqa: E402
from estimator.errors import GpucostError, InputError  # noqa: E402
from profiler.comm.worker import launch_from_env  # noqa: E402
from profiler.comm.ops import IMPLS, CommConfig, backend_for, check_dtypes, element_count, message_sizes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TINY = {"sizes": [1024, 65536], "iterations": 3, "matmul_size": 128}
ROW_KEYS = {"op", "group", "num_ranks", "dtype", "size_bytes", "count", "iterations", "time_s", "best_time_s",
            "algbw_gbps", "busbw_gbps", "emulated", "impl"}


def _env(**hooks) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    env["GPUCOST_COMM_TEST"] = json.dumps({**TINY, **hooks})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _gpucost(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "estimator", "profile", "--comm", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def _minimal_calibration() -> dict:
    """A complete calibration file as `gpucost profile` might have written before `--comm`."""
    return {
        "schema_version": 1, "benchmark_version": 1, "created_utc": "2026-11-30T09:00:00Z",
        "command": "gpucost profile --device cpu", "partial": False, "duration_s": 40.0,
        "device": {"name": "earlier device", "backend": "cpu", "catalog_id": None},
        "software": {"torch": "2.13.0"},
        "telemetry": {"source": None, "samples": 0, "interval_s": 0.5, "clock_mhz": None, "power_w": None,
                      "temperature_c": None, "throttled": None, "reasons": []},
        "matmul": {"fp32": {"best_tflops": 0.27, "median_tflops": 0.25, "peak_tflops": None, "pct_of_peak": None,
                            "shapes": []}},
        "mlp": {}, "bandwidth": {"skipped": "not measured"}, "notes": ["from the device sweep"],
    }


# -- pure helpers ---------------------------------------------------------------------------------


def test_quick_sizes_double_from_1_kib_to_64_mib_on_a_cpu_and_full_goes_down_to_8_bytes():
    sizes = message_sizes("cpu", full=False)
    assert sizes[0] == 1024 and sizes[-1] == 64 * 2**20
    assert all(b == 2 * a for a, b in zip(sizes, sizes[1:]))
    assert message_sizes("gpu", full=False)[-1] == 2**30
    full = message_sizes("cpu", full=True, max_bytes=3 * 2**20)
    assert full[0] == 8 and full[-1] == 2**21  # the largest power of two that fits
    assert message_sizes("cpu", full=False, max_bytes=5000)[-1] == 4096


def test_split_ops_round_the_message_to_whole_chunks_per_rank():
    assert element_count("all_reduce", 1024, 4, 3) == 256
    assert element_count("all_gather", 1024, 4, 3) == 255  # 85 elements per rank
    assert element_count("all_to_all", 8, 4, 8) == 8  # at least one element per rank
    assert element_count("broadcast", 1, 2, 2) == 1


def test_a_partial_run_goes_beside_the_complete_file():
    assert partial_path(Path("out/cal.yaml")) == Path("out/cal.partial.yaml")
    assert partial_path(Path("cal.yml")) == Path("cal.partial.yml")
    assert partial_path(Path("fabric")) == Path("fabric.partial.yaml")


def test_backends_and_dtypes_are_checked():
    assert backend_for("cpu") == "gloo"
    with pytest.raises(GpucostError, match="collectives on 'mps' devices are not supported: use CUDA GPUs"):
        backend_for("mps")
    assert check_dtypes(None) == ("bf16", "fp32")
    with pytest.raises(InputError, match="--dtype tf32 does not apply to --comm; payload dtypes: bf16, fp32, fp16"):
        check_dtypes(["tf32"])


def test_the_torchrun_environment_is_read():
    assert launch_from_env({}) is None
    launch = launch_from_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "h",
                              "MASTER_PORT": "29500"})
    assert (launch.rank, launch.world_size, launch.local_rank) == (3, 8, 1)
    with pytest.raises(GpucostError, match="must be integers"):
        launch_from_env({"RANK": "x", "WORLD_SIZE": "8", "MASTER_ADDR": "h", "MASTER_PORT": "1"})


def test_config_round_trips_as_json_and_lists_the_hooks_in_effect():
    config = CommConfig(dtypes=("fp32",), sizes=(8, 16), slow_rank=1, slow_factor=4)
    again = CommConfig.from_json(config.to_json())
    assert again == config and again.mode == "custom"
    assert again.hooks_in_effect() == {"sizes": (8, 16), "slow_rank": 1, "slow_factor": 4}
    with pytest.raises(InputError, match="unknown collective-benchmark setting"):
        CommConfig.from_json('{"nope": 1}')


# -- every collective moves the right data (2 gloo processes) ------------------------------------

_CHECK_SCRIPT = r"""
import datetime, json, os, sys, warnings
import torch.distributed as dist
from profiler.comm.ops import IMPLS, GroupCtx, prepare
rank = int(os.environ["RANK"])
store = dist.TCPStore("127.0.0.1", int(os.environ["MASTER_PORT"]), 2, is_master=False,
                      timeout=datetime.timedelta(seconds=30))
dist.init_process_group("gloo", store=store, rank=rank, world_size=2, timeout=datetime.timedelta(seconds=30))
g = GroupCtx("all", None, (0, 1), rank)
out = {}
for op, impls in IMPLS.items():
    for impl, emulated in impls:
        for dtype in ("bf16", "fp32"):
            run, verify = prepare(op, impl, dtype, 12, g, __import__("torch").device("cpu"), check=True)
            run()
            out[f"{op}/{impl}/{dtype}"] = verify()
            # a second, random run must not fail either (the benchmark's data)
            run2, _ = prepare(op, impl, dtype, 12, g, __import__("torch").device("cpu"))
            run2()
dist.barrier()
dist.destroy_process_group()
print(json.dumps(out))
"""


def test_every_collective_and_every_emulation_moves_the_right_data(tmp_path):
    store = dist.TCPStore("127.0.0.1", 0, 3, is_master=True, wait_for_workers=False,
                          timeout=_dt.timedelta(seconds=30))
    env = _env()
    procs = [subprocess.Popen([PYTHON, "-c", _CHECK_SCRIPT], env={**env, "RANK": str(r),
                                                                   "MASTER_PORT": str(store.port)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    expected = {f"{op}/{impl}/{d}" for op, impls in IMPLS.items() for impl, _ in impls for d in ("bf16", "fp32")}
    for result in results:
        assert set(result) == expected
        assert all(result.values()), {k: v for k, v in result.items() if not v}
    assert {op for op in IMPLS} == set(OPS)
    assert ("all_reduce+slice", True) in IMPLS["reduce_scatter"] and ("isend/irecv", True) in IMPLS["all_to_all"]


# -- the command, 2 local workers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def merged_run(tmp_path_factory):
    """`gpucost profile --comm --nproc 2` into a file that already holds a device sweep."""
    folder = tmp_path_factory.mktemp("comm")
    output = folder / "cal.yaml"
    write_calibration(_minimal_calibration(), output)
    started = time.monotonic()
    result = _gpucost("--nproc", "2", "--device", "cpu", "--output", str(output), "--format", "json",
                      env=_env(), cwd=folder)
    return result, output, time.monotonic() - started


def test_nproc_2_writes_every_collective_with_the_nccl_tests_arithmetic(merged_run):
    result, output, elapsed = merged_run
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout)
    assert read_calibration(output) == record  # stdout is the file
    section = record["collectives"]
    assert section["backend"] == "gloo" and section["launcher"] == "local" and section["world_size"] == 2
    assert section["partial"] is False and section["mode"] == "custom"
    assert [r["rank"] for r in section["ranks"]] == [0, 1]
    assert all(r["pci_bus_id"] is None and r["host"] for r in section["ranks"])
    assert len({r["pid"] for r in section["ranks"]}) == 2
    measured = {(r["op"], r["dtype"], r["size_bytes"]) for r in section["rows"]}
    assert measured == {(op, d, s) for op in OPS for d in ("bf16", "fp32") for s in (1024, 65536)}
    for row in section["rows"]:
        assert set(row) == ROW_KEYS and row["group"] == "all" and row["num_ranks"] == 2
        cross_checked = (row["op"], row["dtype"], row["size_bytes"]) == ("all_reduce", "fp32", 65536)
        assert row["iterations"] == (12 * 3 if cross_checked else 3) and row["best_time_s"] <= row["time_s"]
        assert row["algbw_gbps"] == pytest.approx(row["size_bytes"] / row["time_s"] / 1e9, rel=1e-4)
        assert row["busbw_gbps"] == pytest.approx(row["algbw_gbps"] * bus_factor(row["op"], 2), rel=1e-4)
        assert row["emulated"] is False  # torch 2.13's gloo has every collective
    assert {s["op"] for s in section["summary"]} == set(OPS)
    cross = section["cross_check"]
    assert cross["op"] == "all_reduce" and cross["dtype"] == "fp32" and cross["size_bytes"] == 65536
    largest = next(r for r in section["rows"] if (r["op"], r["dtype"], r["size_bytes"]) == ("all_reduce", "fp32",
                                                                                             65536))
    assert cross["benchmark_busbw_gbps"] == largest["busbw_gbps"]
    assert largest["iterations"] == 12 * 3 == cross["iterations"]  # 12 interleaved rounds of 3, both ways
    assert cross["busbw_gbps"] == pytest.approx(65536 / cross["time_s"] / 1e9, rel=1e-4)  # n = 2: factor 1
    assert len(section["stragglers"]["ranks"]) == 2
    assert section["notes"][0].startswith("test settings in effect (GPUCOST_COMM_TEST): sizes=")
    assert elapsed < 60


def test_the_other_sections_of_an_existing_file_are_kept(merged_run):
    result, output, _ = merged_run
    record = read_calibration(output)
    earlier = _minimal_calibration()
    for key in ("matmul", "created_utc", "command", "device", "bandwidth"):
        assert record[key] == earlier[key]
    assert record["notes"][0] == "from the device sweep"
    assert record["notes"][-1].startswith("collectives measured on ")  # the earlier file named another device
    assert "its other sections kept" in result.stderr


def test_the_terminal_table_has_rows_a_summary_per_op_and_the_checks(tmp_path):
    result = _gpucost("--nproc", "2", "--device", "cpu", "--dtype", "fp32", "--output", str(tmp_path / "c.yaml"),
                      "--quiet", env=_env(ops=["all_reduce", "broadcast"], emulate=[]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # --quiet
    lines = result.stdout.splitlines()
    assert lines[0].startswith("collectives: gloo, 2 ranks on 1 node(s)")
    assert sum(1 for line in lines if line.startswith(("all_reduce ", "broadcast "))) == 2 * 2 + 2
    assert any(line.startswith("summary per op") for line in lines)
    assert any(line.startswith("cross-check: an independent timing loop of dist.all_reduce (fp32, 64 KiB") for line in lines)
    assert any(line.startswith("stragglers: fp32 matmul 128x128x128 on every rank at once") for line in lines)
    section = read_calibration(tmp_path / "c.yaml")["collectives"]
    assert read_calibration(tmp_path / "c.yaml")["bandwidth"] == {"skipped": "not measured: --comm"}
    assert {r["op"] for r in section["rows"]} == {"all_reduce", "broadcast"}
    header, *rows = format_comm(read_calibration(tmp_path / "c.yaml"), "csv").splitlines()  # --format csv
    assert header.split(",")[:5] == ["op", "group", "num_ranks", "dtype", "size_bytes"]
    assert len(rows) == 4 and rows[-1].startswith("broadcast,all,2,fp32,65536,16384,")


@pytest.fixture(scope="module")
def emulated_slow_run(tmp_path_factory):
    """Emulated reduce_scatter and all_to_all, and rank 1's straggler matmul made 4x slower."""
    folder = tmp_path_factory.mktemp("emul")
    result = _gpucost("--nproc", "2", "--device", "cpu", "--output", str(folder / "e.yaml"), "--format", "json", "-q",
                      env=_env(ops=["reduce_scatter", "all_to_all", "all_reduce"], sizes=[4096],
                               emulate=["reduce_scatter", "all_to_all"], slow_rank=1, slow_factor=4),
                      cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)["collectives"]


def test_emulated_rows_are_marked_and_named(emulated_slow_run):
    rows = {(r["op"], r["dtype"]): r for r in emulated_slow_run["rows"]}
    for dtype in ("bf16", "fp32"):
        assert rows[("reduce_scatter", dtype)]["emulated"] is True
        assert rows[("reduce_scatter", dtype)]["impl"] == "all_reduce+slice"
        assert rows[("all_to_all", dtype)]["emulated"] is True and rows[("all_to_all", dtype)]["impl"] == "isend/irecv"
        assert rows[("all_reduce", dtype)]["emulated"] is False
    notes = emulated_slow_run["notes"]
    assert any(n.startswith("reduce_scatter: emulated with all_reduce+slice") for n in notes)
    assert link_figures(emulated_slow_run)[("all", "reduce_scatter")].emulated is True
    assert link_figures(emulated_slow_run)[("all", "all_reduce")].emulated is False


def test_an_injected_slow_rank_is_flagged_as_a_straggler(emulated_slow_run):
    report = emulated_slow_run["stragglers"]
    assert report["flagged"] == [1] and report["margin_pct"] == 10.0
    slow, fast = report["ranks"][1], report["ranks"][0]
    assert slow["slow"] is True and slow["slowdown_pct"] > 10.0 and fast["slow"] is False
    assert fast["median_tflops"] > 2 * slow["median_tflops"]
    assert report["spread_pct"] > 50
    assert any(n.startswith("straggler: rank 1 (") for n in emulated_slow_run["notes"])


def test_multi_node_groups_are_measured_separately_with_a_faked_topology(tmp_path):
    result = _gpucost("--nproc", "4", "--device", "cpu", "--dtype", "fp32", "--output", str(tmp_path / "m.yaml"),
                      "--format", "json", "-q",
                      env=_env(ops=["all_reduce", "send_recv"], sizes=[4096], hosts=["a", "a", "b", "b"]),
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    section = json.loads(result.stdout)["collectives"]
    assert section["num_nodes"] == 2 and [r["host"] for r in section["ranks"]] == ["a", "a", "b", "b"]
    assert [(g["kind"], g["ranks"]) for g in section["groups"]] == [
        ("all", [0, 1, 2, 3]), ("intra", [0, 1]), ("intra", [2, 3]), ("inter", [0, 2]), ("inter", [1, 3])]
    groups = {(r["group"], r["op"]): r["num_ranks"] for r in section["rows"]}
    assert groups == {("all", "all_reduce"): 4, ("all", "send_recv"): 4, ("intra", "all_reduce"): 2,
                      ("intra", "send_recv"): 2, ("inter", "all_reduce"): 2, ("inter", "send_recv"): 2}
    figures = link_figures(section)
    assert {("intra", "all_reduce"), ("inter", "all_reduce"), ("all", "all_reduce")} <= set(figures)


def test_runs_without_numpy_as_a_profile_only_install_does(tmp_path):
    """``pip install "gpucost[profile]"`` brings torch without numpy; torch's object collectives
    (``all_gather_object``) fail there with "Numpy is not available". A sitecustomize that makes
    ``import numpy`` fail stands in for that install, in the launcher and in both workers."""
    blocker = tmp_path / "no_numpy"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['numpy'] = None  # import numpy fails\n")
    env = _env(ops=["all_reduce"], sizes=[4096], hosts=["a", "b"])
    env["PYTHONPATH"] = os.pathsep.join((str(blocker), env["PYTHONPATH"]))
    probe = subprocess.run([PYTHON, "-c", "import torch\ntry:\n    import numpy\nexcept ImportError:\n"
                            "    print('blocked')"], env=env, capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == "blocked", probe.stderr[-2000:]
    result = _gpucost("--nproc", "2", "--device", "cpu", "--dtype", "fp32", "--output", str(tmp_path / "n.yaml"),
                      "--format", "json", "-q", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    section = json.loads(result.stdout)["collectives"]
    assert [r["host"] for r in section["ranks"]] == ["a", "b"]  # the identities crossed between the ranks
    assert [r["rank"] for r in section["stragglers"]["ranks"]] == [0, 1]  # so did the straggler figures


# -- errors before measuring ------------------------------------------------------------------------


def test_an_existing_file_that_is_not_a_calibration_file_is_refused_and_left_alone(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCOST_COMM_TEST", json.dumps(TINY))
    target = tmp_path / "notes.yaml"
    target.write_text("my notes: keep me\n")
    result = cli("profile", "--comm", "--nproc", "2", "--device", "cpu", "--output", str(target))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --output {target} exists and is not a valid calibration file (")
    assert target.read_text() == "my notes: keep me\n"


def test_option_errors_are_one_line(cli, monkeypatch):
    assert cli("profile", "--comm", "--dtype", "fp8", "--device", "cpu").stderr == (
        "Error: --dtype fp8 does not apply to --comm; payload dtypes: bf16, fp32, fp16\n")
    assert cli("profile", "--comm", "--nproc", "1", "--device", "cpu").stderr == (
        "Error: --nproc must be at least 2 (the collectives need two ranks), got 1\n")
    monkeypatch.setenv("GPUCOST_COMM_TEST", "{bad")
    assert cli("profile", "--comm", "--device", "cpu").stderr.startswith("Error: GPUCOST_COMM_TEST is not valid JSON")
    monkeypatch.delenv("GPUCOST_COMM_TEST")
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")):
        monkeypatch.setenv(name, value)
    result = cli("profile", "--comm", "--nproc", "2", "--device", "cpu")
    assert result.exit_code == 2 and result.stderr.startswith("Error: --nproc starts local workers; under torchrun")


# -- Ctrl-C and dead workers --------------------------------------------------------------------------


def _start(args: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen, list[str], threading.Thread]:
    proc = subprocess.Popen([PYTHON, "-m", "estimator", "profile", "--comm", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def pump() -> None:
        for line in proc.stderr:
            lines.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return proc, lines, reader


def _wait_for(lines: list[str], text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        assert time.monotonic() < deadline, "".join(lines)[-2000:]
        time.sleep(0.05)


def test_ctrl_c_stops_keeps_a_complete_file_and_writes_the_partial_beside_it(tmp_path):
    output = tmp_path / "cal.yaml"
    write_calibration(_minimal_calibration(), output)
    before = output.read_bytes()
    proc, lines, reader = _start(["--nproc", "2", "--device", "cpu", "--output", str(output), "--format", "json"],
                                 _env(delay_s=0.25), tmp_path)
    _wait_for(lines, "all_reduce fp32 1 KiB")  # some sizes are measured, most are not
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out = proc.stdout.read()  # not communicate(): the reader thread owns stderr
    proc.wait(timeout=60)
    reader.join(10)
    assert proc.returncode == 130, "".join(lines)[-2000:]
    assert time.monotonic() - sent < 15
    assert output.read_bytes() == before
    partial = tmp_path / "cal.partial.yaml"
    record = read_calibration(partial)
    assert record["partial"] is True and record["collectives"]["partial"] is True
    assert json.loads(out) == record
    assert record["matmul"] == _minimal_calibration()["matmul"]
    rows = record["collectives"]["rows"]
    assert 2 <= len(rows) < len(OPS) * 2 * 2
    assert record["collectives"]["notes"][-2].startswith("interrupted after ")
    assert any(f"{output} is complete and was left as it was" in line and str(partial) in line for line in lines), "".join(lines)[-1500:]
    assert not any("Traceback" in line for line in lines)


def test_ctrl_c_during_start_up_ends_quickly_and_writes_nothing(tmp_path):
    proc, lines, reader = _start(["--nproc", "2", "--device", "cpu", "--output", str(tmp_path / "c.yaml")],
                                 _env(delay_s=3.0), tmp_path)  # and no size completes within 3 s of the start
    _wait_for(lines, "Starting 2 local workers")
    time.sleep(0.5)  # the workers are importing torch, not yet joined
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    proc.stdout.read()
    proc.wait(timeout=60)
    reader.join(10)
    assert proc.returncode == 130 and time.monotonic() - sent < 20
    assert lines[-1] == "Interrupted before anything was measured: nothing written.\n"
    assert not (tmp_path / "c.yaml").exists()


def test_a_worker_that_dies_ends_the_run_with_one_line(tmp_path):
    proc, lines, reader = _start(["--nproc", "2", "--device", "cpu", "--output", str(tmp_path / "x.yaml")],
                                 _env(delay_s=0.3), tmp_path)
    _wait_for(lines, "all_reduce bf16 64 KiB")
    workers = sorted(int(p) for p in subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "profiler.comm.launch"],
                                                    capture_output=True, text=True).stdout.split())
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGKILL)  # rank 1: started second
    proc.stdout.read()
    proc.wait(timeout=60)
    reader.join(10)
    assert proc.returncode == 1
    errors = [line for line in lines if line.startswith("Error:")]
    assert errors == [f"Error: worker rank 1 (pid {workers[1]}) was killed by SIGKILL before it finished\n"]
    assert not any("Traceback" in line for line in lines)
    assert not (tmp_path / "x.yaml").exists()
    time.sleep(0.2)
    assert subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "profiler.comm.launch"],
                          capture_output=True).stdout == b""


# -- torchrun -----------------------------------------------------------------------------------------


def test_torchrun_gives_the_same_schema(tmp_path, merged_run):
    torchrun = Path(PYTHON).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    output = tmp_path / "t.yaml"
    result = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "estimator", "profile",
                             "--comm", "--device", "cpu", "--output", str(output), "--format", "json"],
                            env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout)  # rank 0 prints the record, rank 1 nothing
    assert read_calibration(output) == record
    torchrun_section = record["collectives"]
    local_section = json.loads(merged_run[0].stdout)["collectives"]
    assert torchrun_section["launcher"] == "torchrun" and local_section["launcher"] == "local"
    assert list(torchrun_section) == list(local_section)
    assert [list(r) for r in torchrun_section["rows"]] == [list(r) for r in local_section["rows"]]
    key = [(r["op"], r["group"], r["dtype"], r["size_bytes"], r["impl"]) for r in torchrun_section["rows"]]
    assert key == [(r["op"], r["group"], r["dtype"], r["size_bytes"], r["impl"]) for r in local_section["rows"]]
    assert [list(r) for r in torchrun_section["ranks"]] == [list(r) for r in local_section["ranks"]]
    assert list(torchrun_section["stragglers"]) == list(local_section["stragglers"])
    assert torchrun_section["command"].endswith("(under torchrun, 2 ranks)")


# -- GPUs ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_collectives_over_nccl(tmp_path):
    """Two GPUs where there are two; on a one-GPU machine a one-rank run, which still exercises the
    NCCL path (CUDA events, barriers with device ids, NVML identity, the GPU straggler matmul)."""
    nproc = min(torch.cuda.device_count(), 2)
    result = _gpucost("--nproc", str(nproc), "--device", "cuda", "--output", str(tmp_path / "g.yaml"),
                      "--format", "json", "-q",
                      env=_env(sizes=[4096, 1 << 24], iterations=5, matmul_size=2048, allow_one_rank=nproc == 1),
                      cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    section = json.loads(result.stdout)["collectives"]
    assert section["backend"] == "nccl" and section["world_size"] == nproc
    assert all(r["device_index"] == r["local_rank"] for r in section["ranks"])
    assert all(r["pci_bus_id"] and r["device"].startswith("NVIDIA") for r in section["ranks"])
    expected = set(OPS) if nproc > 1 else set(OPS) - {"send_recv"}  # one rank has no peer (send/recv may skip)
    assert expected <= {r["op"] for r in section["rows"]}
    assert not any(r["emulated"] for r in section["rows"])
    assert all(0 < r["time_s"] < 1 for r in section["rows"])
    assert section["stragglers"]["benchmark"]["dtype"] in ("bf16", "fp32")
    assert section["stragglers"]["ranks"][0]["throttled"] in (True, False)  # NVML answered
    assert section["cross_check"]["size_bytes"] == 1 << 24
    if nproc > 1:
        assert abs(section["cross_check"]["diff_pct"]) < 25
        big = [r for r in section["rows"] if r["op"] == "all_reduce" and r["size_bytes"] == 1 << 24]
        assert all(r["busbw_gbps"] > 1.0 for r in big)  # any GPU link beats 1 GB/s at 16 MiB
