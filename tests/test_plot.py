"""`gpucost plot`: what is drawn from a calibration file, the text plot, the PNG/SVG files, errors;
and the per-shape rows for `profile --format csv`."""

from __future__ import annotations

import csv
import importlib
import io
import os
import stat
import sys

import pytest
import typer
import yaml

from calibration_samples import CPU_EXAMPLE, cpu_example, gpu_record

from estimator.records.plot import Series, panels, text_plot
from estimator.records.profile_rows import COLUMNS, shape_rows


# -- what is drawn -------------------------------------------------------------------------------


def test_cpu_example_gives_the_matmul_and_mlp_sweeps_per_dtype():
    matmul, mlp = panels(cpu_example())
    assert [s.label for s in matmul.series] == ["fp32 m=n=k", "bf16 m=n=k"]
    fp32 = matmul.series[0]
    assert fp32.x == (1024, 1536, 2048)  # sorted by size, not in the order measured
    assert fp32.y == (0.246008, 0.256514, 0.253668)
    assert fp32.low == (0.185468, 0.178189, 0.180379)
    assert not matmul.peaks and "no datasheet peak: the device is not in the catalog" in matmul.notes
    assert [s.x for s in mlp.series] == [(256, 512, 1024), (256, 512)]


def test_gpu_record_has_shape_families_peaks_skips_and_collectives():
    matmul, mlp, comm = panels(gpu_record())
    labels = [s.label for s in matmul.series]
    assert labels == ["bf16 m=n=k", "bf16 m x 8192 x 8192", "bf16 sustained (5 s back to back, median)",
                      "fp16 m=n=k"]
    m_series = matmul.series[1]
    assert len(m_series.x) == 15 and m_series.skipped == ((31744.0, "out of memory"),)
    assert matmul.peaks == (("bf16, fp16 datasheet peak 312", 312.0, "bf16"),)  # one line for a shared peak
    assert mlp.peaks[0][1] == 312.0
    assert comm.log_x and comm.x_is_bytes
    assert [s.label for s in comm.series] == ["all_reduce (8 ranks)", "all_gather (8 ranks)"]
    assert comm.series[0].x[0] == 1024 and comm.series[0].x[-1] == 2**30
    assert all(b >= a for a, b in zip(comm.series[0].y, comm.series[0].y[1:]))


def test_the_sustained_window_is_a_point_beside_the_burst_curve_with_a_note():
    matmul, mlp = panels(gpu_record(collectives=False))
    point = next(s for s in matmul.series if s.sustained)
    assert (point.group, point.x, point.y) == ("bf16", (8192.0,), (251.3,))
    burst = next(i for i in gpu_record()["matmul"]["bf16"]["shapes"] if (i["m"], i["n"], i["k"]) == (8192,) * 3)
    change = 100 * (251.3 - burst["median_tflops"]) / burst["median_tflops"]
    assert (f"bf16 sustained 251.3 TFLOP/s at 8192 (median, 5 s back to back), {change:+.1f}% from the burst "
            f"median {burst['median_tflops']:.4g} of that size; clocks 1275-1410 MHz; throttled: sw_power_cap"
            ) in matmul.notes
    assert next(s for s in mlp.series if s.sustained).y == (214.6,)
    text = text_plot(gpu_record(collectives=False), width=100)
    assert "bf16 sustained (5 s back to back, median): 1 point(s), best 251.3 at 8192" in text
    assert not any(s.sustained for s in panels(cpu_example())[0].series)  # a file from before the window


def test_collectives_panel_only_with_a_collectives_section():
    assert len(panels(gpu_record(collectives=False))) == 2


def test_dips_find_the_wave_quantisation_steps():
    series = Series("bf16 m x 8192 x 8192", "bf16", x=(1024, 2048, 3072, 4096), y=(200.0, 280.0, 240.0, 279.0))
    assert series.dips() == [(2048, 3072, pytest.approx(-14.29, abs=0.01))]
    record = gpu_record()
    shape = next(s for s in record["matmul"]["bf16"]["shapes"] if s["m"] == s["n"] == 5120)
    shape.update(best_tflops=230.0, median_tflops=225.0, worst_tflops=220.0)
    matmul = panels(record)[0]
    assert [n for n in matmul.notes if "a dip" in n] == [
        "bf16 m=n=k: -13.4% from 4096 to 5120 (a dip: e.g. a part-empty last wave)"]


# -- text ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_text_plot_fits_the_width(width):
    for record in (cpu_example(), gpu_record()):
        text = text_plot(record, width=width)
        assert max(len(line) for line in text.splitlines()) <= width


def test_text_plot_shows_the_points_the_peak_and_the_legend():
    text = text_plot(gpu_record(), width=100)
    assert "bf16, fp16 datasheet peak 312" in text
    assert "* bf16 m=n=k: 16 point(s), best 280 at 9216" in text
    assert "all_reduce (8 ranks): 6 point(s), best" in text and "1 GiB" in text
    assert "! a size that was skipped" in text
    cpu = text_plot(cpu_example(), width=80)
    assert cpu.splitlines()[0].startswith("Intel(R) Xeon(R) Processor @ 2.50GHz (cpu; catalog: unknown)")
    assert "gpt2-small fp32 training step: 0.1282 TFLOP/s best" in cpu
    assert "collectives" not in cpu


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture
def gpucost(monkeypatch, capsys):
    """Run `gpucost ...` through the CLI's own main() (its error handling), with the plot command
    registered (on a copy of the app while app.py does not register it yet)."""
    app_module = importlib.import_module("estimator.cli.app")
    if not any(c.name == "plot" for c in app_module.app.registered_commands):
        from estimator.cli.plot import plot_cmd

        local = typer.Typer(name="gpucost", add_completion=False, pretty_exceptions_enable=False)
        local.command("plot")(plot_cmd)
        local.command("other")(lambda: None)
        monkeypatch.setattr(app_module, "app", local)

    def run(*args: str):
        capsys.readouterr()
        code = app_module.main(list(args))
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    return run


def test_plot_without_output_prints_the_text_plot(gpucost, monkeypatch):
    monkeypatch.setenv("COLUMNS", "90")
    code, out, err = gpucost("plot", str(CPU_EXAMPLE))
    assert code == 0, err
    assert "matmul TFLOP/s per shape" in out and "MLP training step" in out
    assert max(len(line) for line in out.splitlines()) <= 90


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_plot_writes_an_image_that_honours_the_umask(gpucost, tmp_path, suffix):
    pytest.importorskip("matplotlib")
    target = tmp_path / f"sweep.{suffix}"
    old = os.umask(0o002)
    try:
        code, out, err = gpucost("plot", str(CPU_EXAMPLE), "--output", str(target))
    finally:
        os.umask(old)
    assert code == 0, err
    assert err.strip() == f"Wrote {target}"
    head = target.read_bytes()[:64]
    assert head.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in target.read_bytes()[:2000]
    assert stat.S_IMODE(target.stat().st_mode) == 0o664
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left


def test_plot_of_a_gpu_record_with_collectives_writes_a_png(gpucost, tmp_path):
    pytest.importorskip("matplotlib")
    source = tmp_path / "gpu.yaml"
    source.write_text(yaml.safe_dump(gpu_record(), sort_keys=False), encoding="utf-8")
    code, _, err = gpucost("plot", str(source), "-o", str(tmp_path / "gpu.png"))
    assert code == 0, err
    assert (tmp_path / "gpu.png").stat().st_size > 10_000


def test_plot_without_matplotlib_prints_the_text_plot_and_says_the_file_was_not_written(gpucost, tmp_path,
                                                                                          monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    target = tmp_path / "sweep.png"
    code, out, err = gpucost("plot", str(CPU_EXAMPLE), "--output", str(target))
    assert code == 1
    assert "matmul TFLOP/s per shape" in out
    assert err.count("\n") == 1 and err.startswith(f"Error: {target} was not written (the text plot is above): "
                                                   "matplotlib is not installed; install the plot extra")
    assert not target.exists()


@pytest.mark.parametrize(("args", "code", "first_line"), [
    (["plot", "nope.yaml"], 1, "Error: nope.yaml: file not found; create one with `gpucost profile`"),
    (["plot", str(CPU_EXAMPLE), "--output", "sweep.pdf"], 2,
     "Error: --output sweep.pdf: give a file name ending in .png or .svg"),
    (["plot", str(CPU_EXAMPLE), "--output", "no/such/folder/sweep.png"], 2,
     "Error: --output no/such/folder/sweep.png: folder no/such/folder does not exist"),
])
def test_plot_errors_are_one_line(gpucost, args, code, first_line):
    result_code, out, err = gpucost(*args)
    assert result_code == code
    assert err.splitlines() == [first_line]


def test_plot_of_an_invalid_or_empty_file_is_one_line(gpucost, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("schema_version: 1\nmatmul: [\n", encoding="utf-8")
    code, _, err = gpucost("plot", str(broken))
    assert code == 1 and err.startswith(f"Error: {broken}: invalid YAML at line") and err.count("\n") == 1
    record = cpu_example()
    for section in ("matmul", "mlp"):
        record[section] = {dtype: {"skipped": "not measured"} for dtype in record[section]}
    model_only = tmp_path / "model-only.yaml"
    model_only.write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")
    code, _, err = gpucost("plot", str(model_only))
    assert code == 2
    assert err.strip() == (f"Error: {model_only}: nothing to plot: no matmul, MLP or collective measurement "
                           "(it holds a model step only: profile with --sweep to measure the device)")


def test_plot_help_names_the_output_formats(gpucost):
    code, out, _ = gpucost("plot", "--help")
    assert code == 0 and ".png or .svg" in out


def test_the_plot_modules_do_not_import_torch_or_matplotlib():
    import subprocess

    code = ("import sys, estimator.records.plot, estimator.cli.plot, estimator.records.profile_rows; "
            "print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# -- per-shape rows ------------------------------------------------------------------------------


def test_shape_rows_have_one_row_per_measurement_and_the_same_columns():
    rows = shape_rows(gpu_record())
    assert all(tuple(r) == COLUMNS for r in rows)
    matmul = [r for r in rows if r["benchmark"] == "matmul"]
    assert len(matmul) == 16 + 16 + 8 + 1  # bf16 squares, bf16 m-series (one skipped), fp16, the tf32 skip
    first = next(r for r in matmul if r["dtype"] == "bf16")
    assert (first["m"], first["n"], first["k"], first["unit"]) == (1024, 1024, 1024, "TFLOP/s")
    assert first["pct_of_peak"] == pytest.approx(100 * first["best"] / 312.0, abs=0.01)
    assert next(r for r in matmul if r["m"] == 31744)["skipped"] == "out of memory"
    assert len([r for r in rows if r["benchmark"] == "mlp"]) == 4
    assert [r["benchmark"] for r in rows if r["unit"] == "GB/s"] == ["copy"]
    collective = [r for r in rows if r["group"] == "all"]
    assert len(collective) == 12 + 1 and collective[0]["benchmark"] == "all_reduce"
    assert collective[0]["median"] == gpu_record()["collectives"]["rows"][0]["busbw_gbps"]
    assert collective[0]["best"] > collective[0]["median"]  # from the best time


def test_shape_rows_render_as_one_csv_table():
    from estimator.render import render

    text = render(shape_rows(cpu_example()), "csv")
    table = list(csv.DictReader(io.StringIO(text)))
    assert list(table[0]) == list(COLUMNS)
    model = [r for r in table if r["benchmark"] == "model gpt2-small"]
    assert [(r["dtype"], r["best"], r["skipped"] != "") for r in model] == [("fp32", "0.128242", False),
                                                                            ("bf16", "", True)]
    assert sum(1 for r in table if r["benchmark"] == "matmul" and r["m"]) == 5
