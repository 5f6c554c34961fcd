"""The step model's published hold-out layouts (benchmarks/holdout_layouts.py): the rows are cited and
never in the fitted catalog, and the issue's own command answers each of them without --tokens."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from estimator.catalog.fields import load_yaml_file
from estimator.catalog.systems import load_layout_runs

ROOT = Path(__file__).resolve().parents[1]
ROWS = load_yaml_file(ROOT / "benchmarks" / "holdout_layouts.yaml")["rows"]


def _module():
    spec = importlib.util.spec_from_file_location("holdout_layouts", ROOT / "benchmarks" / "holdout_layouts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_rows_are_cited_and_not_among_the_fitted_layouts():
    fitted = {r.id for r in load_layout_runs(ROOT / "catalogs")}
    assert len(ROWS) >= 20
    for row in ROWS:
        assert row["id"] not in fitted
        assert row["source"].strip() and row["row_text"].strip() and row["published_step_time_s"] > 0, row["id"]
        assert ("model" in row) != ("hf_config" in row), row["id"]
        if "hf_config" in row:
            config = json.loads((ROOT / row["hf_config"]).read_text())
            assert config["_source"].strip()


def test_the_issue_command_answers_an_hf_config_without_tokens(cli):
    # gpucost estimate --hf-config CFG --gpu GPU --num-gpus N --tensor-parallel T --pipeline-parallel P
    #   --global-batch B --micro-batch M --seq-len S --recompute R --format json  (issue text, verbatim flags)
    result = cli("estimate", "--hf-config", str(ROOT / "benchmarks/configs/nemotron-4-15b.json"), "--gpu", "h100",
                 "--num-gpus", "16", "--tensor-parallel", "4", "--pipeline-parallel", "1", "--global-batch", "64",
                 "--micro-batch", "4", "--seq-len", "4096", "--recompute", "none", "--format", "json")
    assert result.exit_code == 0, result.stderr
    answer = result.json()
    assert math.isfinite(answer["step_time_s"]) and answer["layout"]["tensor_parallel"] == 4
    # the token count the totals need is a stated default, on stderr and in the JSON warnings
    assert "compute-optimal 20 per parameter" in result.stderr
    assert any("Hoffmann" in w for w in answer["warnings"])
    assert answer["tokens"] == pytest.approx(20 * answer["params"])


def test_the_benchmark_times_every_row_with_finite_errors():
    module = _module()
    result = module.check(ROWS)
    print(module.render(result))
    assert result["num_rows"] == len(ROWS) and result["num_failed"] == 0
    for row in result["rows"]:
        assert math.isfinite(row["predicted_step_time_s"]) and row["predicted_step_time_s"] > 0
