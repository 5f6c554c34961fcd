"""Bad input, as a hostile user would give it: one ``Error:`` line that says what was wrong, a
non-zero exit, no traceback, no hang, no nan/inf, nothing half-written. One test per class of
input the typed-request issue lists; each case asserts the exit code and the exact first line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import estimator
from estimator import EstimateRequest, GpucostError, InputError, UnknownNameError, estimate, load_catalog

ROOT = Path(__file__).resolve().parents[1]


def _error(result) -> str:
    assert "Traceback" not in result.stderr
    return result.stderr.splitlines()[0] if result.stderr else ""


# -- files: directories, non-UTF-8, too-long names, deep nesting, lists where strings belong --------


@pytest.fixture
def files(tmp_path):
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe\x00bad")
    (tmp_path / "adir").mkdir()
    (tmp_path / "deep.json").write_text("[" * 100_000)
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 100_000)
    (tmp_path / "list.json").write_text('{"model_type": ["llama"]}')
    (tmp_path / "zero.yaml").write_text("schema_version: 1\n")
    return tmp_path


@pytest.mark.parametrize(("option", "name", "code", "first"), [
    ("--calibration", "adir", 1, "Error: {p}: is a directory, not a file"),
    ("--calibration", "bad.json", 1, "Error: {p}: is not UTF-8 text (byte 0)"),
    ("--calibration", "deep.yaml", 1, "Error: {p}: invalid YAML at line 1: exceeded maximum nesting depth"),
    ("--calibration", "zero.yaml", 1, "Error: {p}, field 'bandwidth': is required"),
    ("--calibration", "x" * 300, 1, "Error: {p80}...: the file name is too long"),
])
def test_every_file_read_names_the_file(cli, files, option, name, code, first):
    path = files / name
    result = cli("estimate", option, str(path), "--params", "1B", "--tokens", "1B")
    assert result.exit_code == code
    assert _error(result) == first.format(p=path, p80=str(path)[:80])


@pytest.mark.parametrize("name", ["bad.json", "adir", "deep.json", "list.json", "x" * 300])
def test_a_broken_config_json_is_one_line_naming_the_file(cli, files, name):
    path = files / name
    result = cli("estimate", "--hf-config", str(path), "--tokens", "1B")
    assert result.exit_code in (1, 2)
    line = _error(result)
    assert line.startswith("Error: ") and str(path)[:40] in line and result.stderr.count("\n") == 1


# -- numbers: strict grammar, non-finite, underflow, overflow ----------------------------------------


@pytest.mark.parametrize(("args", "first"), [
    (["--params", "1e", "--tokens", "1T"], "Error: --params must be a number such as 175e9, 175B, 14.8T, 2.664M or 1,500"),
    (["--params", "1,5B", "--tokens", "1T"], "Error: --params must be a number such as 175e9, 175B, 14.8T, 2.664M or 1,500"),
    (["--params", "1e-400", "--tokens", "1T"], "Error: --params is too small: '1e-400' underflows to zero"),
    (["--params", "175B", "--tokens", "1e400"], "Error: --tokens must be finite, got '1e400'"),
    (["--params", "175B", "--tokens", "300B", "--pue", "inf"], "Error: --pue must be finite, got inf"),
    (["--params", "175B", "--tokens", "300B", "--pue", "nan"], "Error: --pue must be finite, got nan"),
    (["--flops", "1e308", "--tflops", "1e-13"], "Error: the result wall_clock_days is not a finite number (inf)"),
    (["--params", "1e300", "--tokens", "1e300"], "Error: the result flops is not a finite number (inf)"),
    (["--params", "175B", "--tokens", "300B", "--gpu-hours", "1e-300"], "Error: --gpu-hours 1e-300 is too few"),
    (["--params", "175B", "--tokens", "300B", "--deadline", "1e-320s"], "Error: --deadline must be at least 1 s, got '1e-320s'"),
    (["--params", "175B", "--tokens", "300B", "--deadline", "30m"], "Error: --deadline must be a duration such as 30d"),
    (["--params", "175B", "--tokens", "300B", "--num-gpus", "1.5"], "Error: --num-gpus must be a whole number, got '1.5'"),
    (["--params", "175B", "--tokens", "300B", "--num-gpus", "1e30"], "Error: --num-gpus must be at most 1,000,000, got '1e30'"),
])
def test_numbers_are_read_strictly_and_results_stay_finite(cli, args, first):
    result = cli("estimate", *args)
    assert result.exit_code == 2
    assert _error(result).startswith(first)


def test_counts_accept_thousands_and_suffixes_and_say_so(cli):
    result = cli("estimate", "--params", "1B", "--tokens", "1B", "--num-gpus", "16,384", "--format", "json")
    assert result.exit_code == 0 and result.json()["num_gpus"] == 16384
    assert cli("estimate", "--params", "1B", "--tokens", "1B", "--num-gpus", "2K", "--format", "json").json()["num_gpus"] == 2000


def test_json_output_is_strict_json_without_nan_or_infinity(cli):
    for args in (["--params", "7B", "--tokens", "1T"], ["--model", "llama-3.1-8b", "--num-gpus", "64"],
                 ["--model", "deepseek-v3", "--gpu", "h800", "--gpu-hours", "2.664M", "--precision", "fp8"]):
        out = cli("estimate", *args, "--format", "json").stdout
        json.loads(out, parse_constant=lambda c: pytest.fail(f"non-finite {c} in JSON"))


# -- silently ignored or defaulted options ------------------------------------------------------------


@pytest.mark.parametrize(("args", "first"), [
    (["estimate", "--gpu", "", "--params", "1B", "--tokens", "1B"], "Error: --gpu must not be empty"),
    (["estimate", "--model", ""], "Error: --model must not be empty"),
    (["prices", "--gpu", ""], "Error: --gpu must not be empty"),
    (["compare", "--gpu", "h100,,a100", "--params", "1B", "--tokens", "1B"], "Error: --gpu must not be empty"),
    (["estimate", "--model", "llama-3.1-8b", "--tensor-parallel", "0"], "Error: --tensor-parallel must be a positive whole number, got '0'"),
    (["estimate", "--model", "llama-3.1-8b", "--tensor-parallel", "3"], "Error: --tensor-parallel 3 does not divide the 32 attention heads"),
    (["models", "show", "llama-3.1-8b", "--tensor-parallel", "0"], "Error: --tensor-parallel must be a positive whole number, got 0"),
    (["estimate", "--params", "7B", "--tokens", "1T", "--seq-len", "4096"], "Error: --seq-len applies to a model with an architecture"),
    (["compare", "--params", "7B", "--tokens", "1T", "--precision", "fp9"], "Error: unknown --precision 'fp9'; use one of bf16, fp16, fp8, tf32, fp32"),
    (["estimate", "--params", "7B", "--tokens", "1T", "--tensor-parallel", "2"], "Error: --tensor-parallel need the step-time model"),
    (["estimate", "--model", "llama-3.1-8b", "--time-model", "flat", "--recompute", "full"], "Error: --recompute describe a parallel layout, which --time-model flat ignores"),
    (["estimate", "--model", "llama-3.1-8b", "--num-gpus", "8", "--system", "dgx-a100-80gb"], "Error: system 'dgx-a100-80gb' holds a100-sxm-80gb, not h100-sxm"),
])
def test_options_that_do_not_apply_are_errors_not_silently_dropped(cli, args, first):
    result = cli(*args)
    assert result.exit_code == 2
    assert _error(result).startswith(first)


def test_a_gpt2_config_whose_heads_do_not_divide_the_width_is_refused(cli, tmp_path):
    config = json.loads((ROOT / "catalogs" / "architectures" / "gpt2-small.json").read_text())
    config.update(n_embd=100, n_head=3)
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(config))
    result = cli("models", "show", "--hf-config", str(path))
    assert result.exit_code in (1, 2) and "n_head" in _error(result) or "n_embd" in _error(result)


def test_absurd_layer_counts_are_refused_quickly(cli, tmp_path):
    config = json.loads((ROOT / "catalogs" / "architectures" / "llama-3.1-8b.json").read_text())
    config["num_hidden_layers"] = 10**12
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(config))
    start = time.monotonic()
    result = cli("estimate", "--hf-config", str(path), "--tokens", "1T")
    assert time.monotonic() - start < 10  # a bound on a hang, not a performance target
    assert result.exit_code in (1, 2) and "num_hidden_layers" in _error(result)


# -- catalogs: duplicate keys, NaN, unknown fields --------------------------------------------------------


def _catalog_copy(tmp_path: Path) -> Path:
    import shutil

    folder = tmp_path / "catalogs"
    shutil.copytree(ROOT / "catalogs", folder)
    return folder


def test_a_duplicate_key_in_a_catalog_is_an_error(tmp_path, cli, monkeypatch):
    folder = _catalog_copy(tmp_path)
    text = (folder / "gpus.yaml").read_text().replace("    memory_gb: 24\n", "    memory_gb: 24\n    memory_gb: 48\n", 1)
    (folder / "gpus.yaml").write_text(text)
    monkeypatch.setenv("GPUCOST_CATALOG_DIR", str(folder))
    result = cli("gpus")
    assert result.exit_code == 1
    assert _error(result).startswith("Error: gpus.yaml: invalid YAML at line") and "duplicate key 'memory_gb'" in result.stderr


def test_a_nan_peak_in_a_catalog_is_an_error_not_a_winner(tmp_path, cli, monkeypatch):
    folder = _catalog_copy(tmp_path)
    text = (folder / "gpus.yaml").read_text().replace("      bf16: 165.2 ", "      bf16: .nan ", 1)
    (folder / "gpus.yaml").write_text(text)
    monkeypatch.setenv("GPUCOST_CATALOG_DIR", str(folder))
    result = cli("compare", "--params", "1B", "--tokens", "1B")
    assert result.exit_code == 1
    assert _error(result) == "Error: gpus.yaml: entry 'rtx-4090', field 'peak_tflops': bf16 peak must be a positive finite number, got nan"


def test_an_unknown_catalog_field_gets_a_close_match(tmp_path, cli, monkeypatch):
    folder = _catalog_copy(tmp_path)
    text = (folder / "gpus.yaml").read_text().replace("    memory_gb: 24\n", "    memory_gbs: 24\n", 1)
    (folder / "gpus.yaml").write_text(text)
    monkeypatch.setenv("GPUCOST_CATALOG_DIR", str(folder))
    result = cli("gpus")
    assert _error(result) == "Error: gpus.yaml: entry 'rtx-4090', field 'memory_gbs': is not a known field (did you mean 'memory_gb'?)"


# -- the library: domain errors naming the parameter, never TypeError or KeyError ------------------------


@pytest.mark.parametrize(("call", "kind", "text"), [
    (lambda: estimate("x"), InputError, "estimate() takes an EstimateRequest or keyword options, got str"),
    (lambda: estimate(params="7B", tokens="1T", mfu="abc"), InputError, "--mfu must be a number such as"),
    (lambda: estimate(params=[7], tokens="1T"), InputError, "--params must be a number, got list"),
    (lambda: estimate(params="7B", tokens="1T", gpu=5), InputError, "--gpu must be a name, got int 5"),
    (lambda: estimate(params="7B", tokens="1T", num_gpus=True), InputError, "--num-gpus must be a whole number, got True"),
    (lambda: EstimateRequest(params="7B", tokens="1T", zero_stage="1"), InputError, "--zero-stage must be one of 0, 1, 2, 3"),
    (lambda: EstimateRequest(params="7B", tokens="1T", precision=None), InputError, "--precision must be one of"),
    (lambda: EstimateRequest(bogus=1), InputError, "unknown estimate option 'bogus'"),
    (lambda: EstimateRequest(parms="7B"), InputError, "unknown estimate option 'parms'; did you mean 'params'?"),
    (lambda: estimate(parms="7B", tokens="1T"), InputError, "unknown estimate option 'parms'; did you mean 'params'?"),
    (lambda: EstimateRequest("7B"), InputError, "EstimateRequest takes keyword options only"),
    (lambda: estimate("7B", gpu="h100"), InputError, "estimate() takes an EstimateRequest or keyword options"),
    (lambda: EstimateRequest(params="7B", tokens="1T").with_(gpus="h100"), InputError,
     "unknown estimate option 'gpus'; did you mean 'gpu'"),
    (lambda: load_catalog().price("h1000"), UnknownNameError, "unknown GPU 'h1000'"),
    (lambda: load_catalog().accelerator(None), InputError, "a GPU name must be a string"),
    (lambda: load_catalog().system("nope"), UnknownNameError, "unknown system 'nope'"),
])
def test_the_library_raises_domain_errors_naming_the_parameter(call, kind, text):
    with pytest.raises(kind) as info:
        call()
    assert text in str(info.value)
    assert isinstance(info.value, GpucostError)


def test_nan_bytes_per_parameter_are_refused_by_the_memory_model():
    from estimator.model.memory import training_memory
    from estimator.model.report import resolve_architecture

    arch, _ = resolve_architecture("llama-3.1-8b", None)
    with pytest.raises(InputError, match="weight_bytes must be a finite, non-negative number"):
        training_memory(arch, seq_len=8192, weight_bytes=float("nan"))


def test_writing_a_calibration_over_a_directory_is_one_domain_error(tmp_path):
    from calibration_samples import cpu_example
    from estimator.records.calibration import write_calibration

    with pytest.raises(GpucostError) as info:
        write_calibration(cpu_example(), tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: is a directory, not a file")
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing half-written beside it


def test_a_calibration_naming_an_unknown_gpu_names_the_file_and_field(cli, tmp_path):
    import yaml

    from calibration_samples import gpu_record

    record = gpu_record()
    record["device"]["catalog_id"] = "h999"
    path = tmp_path / "h999.yaml"
    path.write_text(yaml.safe_dump(record))
    result = cli("estimate", "--calibration", str(path), "--params", "1B", "--tokens", "1B")
    assert result.exit_code == 1
    assert _error(result).startswith(f"Error: {path}: entry 'device', field 'catalog_id': unknown GPU 'h999'")


def test_estimator_public_names_resolve():
    for name in estimator.__all__:
        assert getattr(estimator, name) is not None


# -- closed pipes, Ctrl-C, nothing half-written -----------------------------------------------------------


@pytest.mark.parametrize("command", [["gpus"], ["validate"], ["estimate", "--model", "llama-3.1-70b", "--num-gpus", "64"]])
def test_a_closed_pipe_ends_quietly(command):
    proc = subprocess.Popen([sys.executable, "-m", "estimator", *command], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, like `| head -1`
    _, err = proc.communicate(timeout=60)
    assert err == b"" and proc.returncode in (0, 141, -signal.SIGPIPE)


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered stdout", "PYTHONUNBUFFERED=1"])
def test_a_full_disk_is_one_line(tmp_path, unbuffered):
    """A block-buffered stdout keeps what it could not write; the interpreter's last flush at exit
    then failed again ("Exception ignored ...", exit 120) unless PYTHONUNBUFFERED happened to be set."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "estimator", "gpus"], cwd=ROOT, stdout=full, env=env,
                                stderr=subprocess.PIPE, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == "Error: cannot write the output: No space left on device\n"


def test_ctrl_c_keeps_a_complete_calibration_file_and_writes_the_partial_beside_it(tmp_path):
    pytest.importorskip("torch")
    good = ROOT / "docs" / "examples" / "cpu-gpt2-small.yaml"
    target = tmp_path / "good.yaml"
    target.write_bytes(good.read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "estimator", "profile", "--device", "cpu", "--dtype", "fp32",
                             "--output", str(target)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline and "Profiling" not in line:
        line = proc.stderr.readline()
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert target.read_bytes() == good.read_bytes()
    partial = tmp_path / "good.partial.yaml"
    from estimator.records.calibration import read_calibration

    assert read_calibration(partial)["partial"] is True
    assert f"{target} (complete) was kept as it was" in err and "Traceback" not in err
