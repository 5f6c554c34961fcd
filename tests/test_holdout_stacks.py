"""The published steps by training stack (benchmarks/holdout_stacks.py, benchmarks/stack_runs.yaml):
each row runs through `gpucost estimate` as a user types it, the stack flags are passed only where
the CLI has them, and a broken rows file is one error line."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import sys
from pathlib import Path

from estimator.catalog.fields import load_yaml_file

ROOT = Path(__file__).resolve().parents[1]
ROWS = load_yaml_file(ROOT / "benchmarks" / "stack_runs.yaml")["rows"]


def _module():
    spec = importlib.util.spec_from_file_location("holdout_stacks", ROOT / "benchmarks" / "holdout_stacks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_stack_flags_go_on_the_command_only_where_the_cli_lists_them():
    module = _module()
    row = next(r for r in ROWS if r["stack"] == "fsdp" and r["compile"])
    without = module.command(row, set())
    assert "--stack" not in without and "--compile" not in without and "--master-weights" not in without
    with_flags = module.command(row, {"--stack", "--compile", "--master-weights"})
    assert with_flags[with_flags.index("--stack") + 1] == "fsdp" and "--compile" in with_flags
    assert with_flags[with_flags.index("--master-weights") + 1] == row["master_weights"]


def test_unpublished_choices_are_left_to_the_layout_search():
    module = _module()
    flags = {"recompute": "--recompute", "zero_stage": "--zero-stage", "flash_attention": "--no-flash-attention",
             "sequence_parallel": "--no-sequence-parallel"}
    for name, flag in flags.items():
        row = next(r for r in ROWS if r[name] is None)
        assert flag not in module.command(row, set()), (row["id"], flag)


def test_held_out_rows_run_and_every_split_and_stack_is_summarised():
    module = _module()
    held = [r for r in ROWS if r["split"] == "holdout"]
    result = module.check(held)
    # a row the model cannot run says why (known_failure: e.g. a host-memory offload gpucost does not model);
    # it fails with one error line, and every other row runs
    known = {r["id"] for r in held if r.get("known_failure")}
    for r in result["rows"]:
        if r["id"] in known:
            assert r["failure"] and "\n" not in r["failure"] and r["ratio"] is None, r["id"]
        else:
            assert r["failure"] is None and math.isfinite(r["ratio"]) and r["ratio"] > 0, r["id"]
    assert result["by_split"]["holdout"]["all"]["failed"] == len(known)
    assert set(result["by_split"]) == {"holdout"}
    assert {"all", "megatron", "deepspeed"} <= set(result["by_split"]["holdout"])
    assert result["by_split"]["holdout"]["all"]["rows"] == len(held)


def test_a_broken_rows_file_is_one_error_line_and_exit_2(tmp_path):
    module = _module()
    broken = tmp_path / "rows.yaml"
    broken.write_text("rows: [\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = module.main(["--file", str(broken)])
    assert code == 2
    assert len(err.getvalue().strip().splitlines()) == 1 and "rows.yaml" in err.getvalue()


def test_the_validate_catalog_is_the_benchmark_rows_that_run(tmp_path):
    """catalogs/stack_runs_at_scale.yaml is generated from benchmarks/stack_runs.yaml (--write-catalog):
    regenerating it gives the same file, so the two cannot drift apart."""
    module = _module()
    written = module.write_catalog(ROWS, tmp_path / "stack_runs_at_scale.yaml")
    assert (ROOT / "catalogs" / "stack_runs_at_scale.yaml").read_text() == (tmp_path / "stack_runs_at_scale.yaml").read_text()
    assert "held_out" in written and "megascale2024-megatron-175b-12288" in written


def test_each_catalog_row_gives_estimate_the_benchmark_command():
    from estimator.catalog.core import load_catalog
    from estimator.catalog.stacks import load_stack_runs, load_stacks
    from estimator.validation.stack_runs import run_args

    catalog = load_catalog()
    runs = {r.id: r for r in load_stack_runs(ROOT / "catalogs" / "stack_runs_at_scale.yaml",
                                             load_stacks(catalog.directory))}
    module = _module()
    flags = {"--stack", "--compile", "--master-weights", "--attention-kernel"}
    for row in ROWS:
        if row["id"] not in runs:
            continue
        bench = module.command(row, flags)
        ours = run_args(runs[row["id"]], catalog.directory)

        def options(args):
            pairs, i = set(), 1
            while i < len(args):
                if args[i] in ("--hf-config", "--format"):
                    i += 2
                    continue
                takes = i + 1 < len(args) and not args[i + 1].startswith("--")
                pairs.add((args[i], args[i + 1] if takes else None))
                i += 2 if takes else 1
            return pairs - {("--master-weights", "fp32")}

        assert options(ours) == options(bench), row["id"]
