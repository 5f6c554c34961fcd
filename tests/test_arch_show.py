"""``models show``: the command function driven through typer (registered here the way cli.py will)."""

from __future__ import annotations

import inspect
import json
import typing
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from estimator.model.hf_config import load_architecture
from estimator.model.params import count_params
from estimator.cli.models import render_report, show
from estimator.model.report import model_report
from estimator.errors import GpucostError
from estimator.model.flops import flops_per_token

ROOT = Path(__file__).resolve().parent.parent
ARCH_DIR = ROOT / "catalogs" / "architectures"


def run(*args: str):
    """Invoke ``show`` as ``gpucost models show ...`` would; domain errors -> (code, 'Error: ...')."""
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("show")(show)

    @app.callback()
    def _root() -> None:
        """test app"""

    result = CliRunner().invoke(app, ["show", *args])
    if isinstance(result.exception, GpucostError):
        return result.exception.exit_code, f"Error: {result.exception}"
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_json_output_has_params_and_train_flops_at_the_catalog_seq_len():
    code, out = run("llama-3.1-8b", "--format", "json")
    assert code == 0
    data = json.loads(out)
    arch = load_architecture("llama-3.1-8b", ARCH_DIR)
    assert data["params_total"] == data["params_active"] == 8_030_261_248
    assert data["seq_len"] == 8192 and data["seq_len_source"] == "catalog pre-training length"
    assert data["train_flops_per_token"] == flops_per_token(arch, 8192).train_model
    assert data["causal"] is False


def test_seq_len_and_causal_options_change_the_flops():
    _, out = run("llama-3.1-8b", "--seq-len", "2048", "--causal", "-f", "json")
    data = json.loads(out)
    arch = load_architecture("llama-3.1-8b", ARCH_DIR)
    assert data["train_flops_per_token"] == flops_per_token(arch, 2048, causal=True).train_model


def test_moe_model_reports_active_params_and_mtp_apart():
    _, out = run("deepseek-v3", "-f", "json")
    data = json.loads(out)
    assert (data["params_total"], data["params_active"]) == (671_026_419_200, 37_552_297_472)
    assert data["params_mtp_total"] == 11_610_068_224
    assert data["seq_len"] == 4096


def test_hf_config_file_is_read_without_the_catalog(tmp_path):
    path = tmp_path / "config.json"
    path.write_text((ARCH_DIR / "gpt2-small.json").read_text())
    code, out = run("--hf-config", str(path), "-f", "yaml")
    data = yaml.safe_load(out)
    assert code == 0 and data["params_total"] == 124_439_808 and data["seq_len"] == 1024


def test_table_output_shows_breakdown_flops_and_memory_sections():
    code, out = run("llama-3.1-70b")
    assert code == 0
    for text in ("Parameters", "70,553,706,496", "FLOPs per token at seq_len 8192", "full s x s matrix",
                 "Training memory per device", "optimizer states", "AdamW"):
        assert text in out


def test_gpu_fit_check_reports_the_minimum_devices():
    _, out = run("llama-3.1-70b", "--gpu", "h100-sxm", "--flash-attention", "--recompute", "selective",
                 "--sequence-parallel", "--zero-stage", "1", "-f", "json")
    fit = json.loads(out)["fit"]
    # the datasheet's 80 GB are GiB (nvidia-smi: 81,559 MiB on an H100), less the 2 GB reserve
    assert fit["gpu"] == "h100-sxm" and fit["fits"] is False and fit["usable_gb"] == pytest.approx(80 * 2**30 / 1e9 - 2)
    assert fit["min_devices"] == fit["min_layout"]["data"] * fit["min_layout"]["tensor"] * fit["min_layout"]["pipeline"]


def test_parallel_options_reach_the_memory_breakdown():
    _, out = run("llama-3.1-70b", "--data-parallel", "64", "--zero-stage", "3", "-f", "json")
    memory = json.loads(out)["memory"]
    states = memory["weights_gb"] + memory["gradients_gb"] + memory["optimizer_gb"]
    assert states == pytest.approx(16 * 70_553_706_496 / 64 / 1e9)


@pytest.mark.parametrize("args, message", [
    ((), "Error: give a catalog model NAME or --hf-config PATH (exactly one)"),
    (("bloom-176b",), "Error: model 'bloom-176b' has no architecture"),
    (("llama-3.1-8b", "--format", "xml"), "Error: unknown --format 'xml'"),
    (("llama-3.1-8b", "--recompute", "half"), "Error: unknown --recompute 'half'"),
    (("llama-3.1-8b", "--zero-stage", "5"), "Error: parallelism.zero_stage must be 0, 1, 2 or 3"),
    (("no-such-model",), "Error: unknown model 'no-such-model'"),
])
def test_bad_input_is_a_one_line_domain_error(args, message):
    code, out = run(*args)
    assert code in (1, 2) and out.startswith(message)


def test_every_option_has_help_text():
    hints = typing.get_type_hints(show, include_extras=True)
    for name in inspect.signature(show).parameters:
        hint = hints[name]
        if not hasattr(hint, "__metadata__"):  # Python 3.10 wraps Annotated[...] = None in Optional
            hint = next(a for a in typing.get_args(hint) if hasattr(a, "__metadata__"))
        info = [m for m in hint.__metadata__ if isinstance(m, (typer.models.OptionInfo, typer.models.ArgumentInfo))]
        assert info and info[0].help, name


def test_report_renders_in_every_format():
    arch = load_architecture("mixtral-8x7b", ARCH_DIR)
    report = model_report(arch, seq_len=4096)
    assert report.params_active == count_params(arch).active
    for fmt in ("table", "markdown", "json", "yaml", "csv"):
        assert render_report(report, fmt)
    assert "| component" in render_report(report, "markdown")


def test_the_report_is_a_typed_record_whose_dict_round_trips():
    from estimator.catalog.core import load_catalog
    from estimator.model.report import ModelReport

    gpu = load_catalog().accelerator("h100")
    for name in ("deepseek-v3", "llama-3.1-8b"):
        report = model_report(load_architecture(name, ARCH_DIR), seq_len=4096, gpu=gpu)
        data = report.to_dict()
        assert ModelReport.from_dict(data) == report
        assert ("params_mtp_total" in data) == (name == "deepseek-v3")
        assert data["fit"]["gpu"] == "h100-sxm" and report.fit.min_devices == data["fit"]["min_devices"]


def test_the_cli_repeats_the_memory_defaults_exactly():
    from estimator.model import memory
    from estimator.cli import models

    assert (models.DEFAULT_WEIGHT_BYTES, models.DEFAULT_GRAD_BYTES, models.DEFAULT_OPTIMIZER_BYTES,
            models.DEFAULT_RESERVE_GB) == (memory.DEFAULT_WEIGHT_BYTES, memory.DEFAULT_GRAD_BYTES,
                                           memory.DEFAULT_OPTIMIZER_BYTES, memory.DEFAULT_RESERVE_GB)


def test_a_tensor_parallel_size_that_does_not_divide_the_heads_is_refused(cli):
    result = cli("models", "show", "llama-3.1-8b", "--tensor-parallel", "3")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("Error: tensor parallel size 3 must divide the 32 attention heads and the 8 KV "
                                     "heads (or be a multiple of the KV heads) of llama-3.1-8b")
