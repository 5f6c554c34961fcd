"""The CLI: output formats, the JSON contract, and one-line errors with exit codes."""

import csv
import io
import json
import subprocess
import sys

import pytest
import yaml

from estimator.cli import app

GPT3 = ["estimate", "--params", "175B", "--tokens", "300B", "--gpu", "a100", "--num-gpus", "1024", "--tflops", "80"]
DEEPSEEK = ["estimate", "--model", "deepseek-v3", "--gpu", "h800", "--gpu-hours", "2.664M", "--price", "2",
            "--precision", "fp8"]
CONTRACT = {"flops", "gpu", "num_gpus", "precision", "achieved_tflops_per_gpu", "mfu", "wall_clock_days",
            "gpu_hours", "price_usd_per_gpu_hour", "cost_usd"}


def test_estimate_json_has_the_contract_keys_and_the_gpt3_answer(cli):
    result = cli(*GPT3, "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert CONTRACT <= data.keys()
    assert data["flops"] == pytest.approx(3.15e23)
    assert data["wall_clock_days"] == pytest.approx(44.5, rel=0.005)
    assert data["gpu"] == "a100-sxm-80gb" and data["num_gpus"] == 1024 and data["precision"] == "bf16"


def test_estimate_json_answers_the_deepseek_inverse_question(cli):
    data = cli(*DEEPSEEK, "--format", "json").json()
    assert data["flops"] == pytest.approx(3.29e24, rel=0.01)
    assert data["cost_usd"] == pytest.approx(5_328_000)
    assert data["achieved_tflops_per_gpu"] == pytest.approx(343, rel=0.005)


def test_estimate_table_prints_every_assumption_beside_the_result(cli):
    result = cli(*GPT3, "--precision", "tf32")
    assert result.exit_code == 0
    for text in ("3.15e+23 FLOP", "44.5 days", "80 TFLOP/s per device", "MFU 51.3% of 156 dense tf32",
                 "assumptions:", "price: $", "observed", "range"):
        assert text in result.stdout


@pytest.mark.parametrize("fmt", ["yaml", "csv", "markdown"])
def test_estimate_renders_other_formats_with_the_same_numbers(cli, fmt):
    out = cli(*GPT3, "--format", fmt).stdout
    if fmt == "yaml":
        assert yaml.safe_load(out)["wall_clock_days"] == pytest.approx(44.5, rel=0.005)
    elif fmt == "csv":
        row = next(csv.DictReader(io.StringIO(out)))
        assert float(row["wall_clock_days"]) == pytest.approx(44.5, rel=0.005)
    else:
        assert out.startswith("| quantity") and "44.5 days" in out


@pytest.mark.parametrize("command", [["gpus"], ["prices"], ["models"], ["prices", "--gpu", "h100"]])
def test_list_commands_print_versioned_json_lists(cli, command):
    result = cli(*command, "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    key = {"gpus": "accelerators", "prices": "prices", "models": "models"}[command[0]]
    assert data["schema_version"] == 1 and set(data) == {"schema_version", key}
    rows = data[key]
    assert isinstance(rows, list) and rows and all("source" in r for r in rows)


def test_compare_sorts_rows_by_cost(cli):
    data = cli("compare", "--params", "7B", "--tokens", "1T", "--format", "json").json()["rows"]
    costs = [r["cost_usd"] for r in data if r["cost_usd"] is not None]
    assert len(costs) >= 5 and costs == sorted(costs)
    assert len({r["gpu"] for r in data}) == len(data)  # one row per accelerator by default


def test_compare_all_offers_lists_every_price_of_the_chosen_gpus(cli):
    data = cli("compare", "--model", "gpt3-175b", "--gpu", "h100", "--gpu", "a100", "--num-gpus", "1024",
               "--all-offers", "--format", "json").json()["rows"]
    assert {r["gpu"] for r in data} == {"h100-sxm", "a100-sxm-80gb"}
    assert len(data) > 2


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["estimate", "--model", "gpt3-175b", "--gpu", "h1000"], 2, "Error: unknown GPU 'h1000'; did you mean"),
        (["estimate", "--model", "deepseek-v4", "--gpu", "h800"], 2, "Error: unknown model 'deepseek-v4'; did you mean 'deepseek-v3'"),
        (["estimate", "--params", "-175B", "--tokens", "300B"], 2, "Error: --params must be positive, got '-175B'"),
        (["estimate", "--params", "lots", "--tokens", "300B"], 2, "Error: --params must be a number such as 175e9"),
        (["estimate", "--model", "gpt3", "--mfu", "1.5"], 2, "Error: --mfu must be a fraction in (0, 1]"),
        (["estimate", "--model", "gpt3", "--mfu", "0"], 2, "Error: --mfu must be a fraction in (0, 1]"),
        (["estimate", "--model", "gpt3", "--num-gpus", "0"], 2, "Error: --num-gpus must be a positive whole number"),
        (["estimate", "--model", "gpt3", "--mfu", "0.4", "--tflops", "100"], 2, "Error: give only one of --mfu, --tflops"),
        (["estimate", "--model", "gpt3", "--params", "7B"], 2, "Error: give only one of --model, --hf-config, --params or --flops"),
        (["estimate", "--params", "7B"], 2, "Error: --params needs --tokens"),
        (["estimate", "--model", "gpt3", "--precision", "int4"], 2, "Error: unknown --precision 'int4'"),
        (["estimate", "--model", "gpt3", "--gpu", "a100", "--precision", "fp8"], 2, "Error: a100-sxm-80gb has no fp8 peak"),
        (["estimate", "--model", "llama-3.1-8b", "--gpu", "v100", "--num-gpus", "64"], 2,
         "Error: v100-sxm2-32gb has no bf16 peak in the catalog (it has: fp32, fp16); choose another --precision"),
        (["estimate", "--model", "gpt3", "--format", "xml"], 2, "Error: unknown --format 'xml'"),
        (["estimate", "--model", "gpt3", "--gpuu", "a100"], 2, "Error: No such option"),
        (["estimate", "--model", "gpt3", "--provider", "nosuchcloud"], 2, "Error: unknown provider"),
        (["estimate", "--model", "gpt3", "--deadline", "soon"], 2, "Error: --deadline must be a duration such as 30d"),
        (["estimate", "--model", "gpt3", "--chinchilla"], 2, "Error: --chinchilla needs --budget"),
    ],
)
def test_bad_input_gets_one_error_line_and_an_exit_code(cli, args, code, message):
    result = cli(*args)
    assert result.exit_code == code
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""


def _commands(group, prefix=()):
    import typer.main

    command = typer.main.get_command(group) if not hasattr(group, "commands") else group
    for name, sub in command.commands.items():
        yield (*prefix, name), sub
        if hasattr(sub, "commands"):
            yield from _commands(sub, (*prefix, name))


def test_every_command_and_option_has_help_text():
    for path, command in _commands(app):
        assert command.help, f"gpucost {' '.join(path)} has no help"
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"gpucost {' '.join(path)} {param.opts[0]} has no help"


def test_version_and_help_exit_zero(cli):
    assert cli("--version").stdout.startswith("gpucost ")
    result = cli("estimate", "--help")
    assert result.exit_code == 0 and "--gpu-hours" in result.stdout


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, estimator.cli, estimator.resolve, estimator.timing.step; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_python_dash_m_estimator_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "estimator", *GPT3, "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["wall_clock_days"] == pytest.approx(44.5, rel=0.005)


def test_the_installed_console_script_finds_its_catalogs_from_any_directory(tmp_path):
    import os
    import shutil

    script = shutil.which("gpucost")
    if script is None:
        pytest.skip("gpucost is not installed in this environment (pip install . installs it)")
    env = {k: v for k, v in os.environ.items() if k != "GPUCOST_CATALOG_DIR"}
    out = subprocess.run([script, *GPT3, "--format", "json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["wall_clock_days"] == pytest.approx(44.5, rel=0.005)


def test_compare_takes_a_provider_and_keeps_only_its_offers(cli):
    result = cli("compare", "--params", "7B", "--tokens", "1T", "--num-gpus", "64", "--provider", "lambda",
                 "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = result.json()["rows"]
    assert rows and all(r["price_source"].startswith("lambda ") for r in rows)
    wrong = cli("compare", "--params", "7B", "--tokens", "1T", "--num-gpus", "64", "--provider", "lambdaa")
    assert wrong.exit_code == 2 and "did you mean 'lambda'" in wrong.stderr


def test_compare_answers_a_deadline_with_the_devices_each_accelerator_needs(cli):
    result = cli("compare", "--model", "llama-3.1-8b", "--tokens", "1T", "--deadline", "30d", "--gpu", "h100,a100",
                 "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = {r["gpu"]: r for r in result.json()["rows"]}
    alone = cli("estimate", "--model", "llama-3.1-8b", "--tokens", "1T", "--deadline", "30d", "--gpu", "a100",
                "--format", "json").json()
    assert rows["a100-sxm-80gb"]["num_gpus"] == alone["num_gpus"]
    assert rows["h100-sxm"]["num_gpus"] != rows["a100-sxm-80gb"]["num_gpus"]


def test_compare_answers_a_budget_with_the_tokens_it_buys_on_each(cli):
    result = cli("compare", "--model", "llama-3.1-8b", "--budget", "50K", "--gpu", "h100,a100", "--num-gpus", "8",
                 "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = result.json()["rows"]
    alone = cli("estimate", "--model", "llama-3.1-8b", "--budget", "50K", "--gpu", "h100", "--num-gpus", "8",
                "--format", "json").json()
    h100 = next(r for r in rows if r["gpu"] == "h100-sxm")
    assert h100["tokens"] == pytest.approx(alone["tokens"])
    assert rows[0]["tokens"] >= rows[1]["tokens"]  # the most tokens for the money first
    table = cli("compare", "--model", "llama-3.1-8b", "--budget", "50K", "--gpu", "h100,a100", "--num-gpus", "8")
    assert "tokens" in table.stdout.splitlines()[0]


def test_csv_cells_hold_no_python_reprs(cli):
    result = cli("estimate", "--model", "llama-3.1-8b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1T",
                 "--format", "csv")
    assert result.exit_code == 0, result.stderr
    row = next(csv.DictReader(io.StringIO(result.stdout)))
    assert "layout.tensor_parallel=1" in row["layouts"] and "step_time_s=" in row["layouts"]
    assert not any("{'" in cell or "['" in cell for cell in row.values())
