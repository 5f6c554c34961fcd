"""docs/json.md names every key the JSON of each command emits (so the documentation cannot drift)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from estimator.compare import CompareRow
from estimator.estimate import Estimate, LayoutSummary, Range
from estimator.plan import Plan
from estimator.timing.layout import Layout
from estimator.model.report import FitReport, FlopsReport, MemoryReport, ModelReport
from estimator.validation.runs import KindDefault, RunCheck, Validation
from estimator.timing.stacks import StackReport
from estimator.validation.stack_runs import StackCheck, StackSummary, StackValidation
from estimator.validation.layouts import StepCheck, StepValidation

DOC = (Path(__file__).resolve().parents[1] / "docs" / "json.md").read_text()
NAMED = set(re.findall(r"`([a-z_0-9]+)`", DOC))


@pytest.mark.parametrize("record", [Estimate, Range, Plan, LayoutSummary, Layout, CompareRow, ModelReport,
                                    FlopsReport, MemoryReport, FitReport, Validation, RunCheck, KindDefault,
                                    StepValidation, StepCheck, StackReport, StackCheck, StackSummary,
                                    StackValidation], ids=lambda r: r.__name__)
def test_every_json_key_is_documented(record):
    missing = [f.name for f in dataclasses.fields(record) if f.name not in NAMED]
    assert not missing, f"docs/json.md does not name {record.__name__} keys {missing}"


def test_every_output_names_its_schema_version(cli):
    for args in (["gpus"], ["prices"], ["models"], ["systems"], ["datasets"], ["stacks"], ["validate"],
                 ["estimate", "--params", "1B", "--tokens", "1B"], ["models", "show", "gpt2-small"],
                 ["compare", "--params", "1B", "--tokens", "1B", "--gpu", "h100"]):
        assert cli(*args, "--format", "json").json()["schema_version"] == 1, args
    import yaml

    assert yaml.safe_load(cli("gpus", "--format", "yaml").stdout)["schema_version"] == 1
