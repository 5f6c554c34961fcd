"""Hold-out check of the step-time model on published layouts it was not fitted on.

Usage (from the repository root)::

    python benchmarks/holdout_layouts.py                 # every row of benchmarks/holdout_layouts.yaml
    python benchmarks/holdout_layouts.py --format json
    python benchmarks/holdout_layouts.py --check         # exit 1 when the issue's target is missed

Each row is run through the command the step-time issue names, in-process::

    gpucost estimate (--model M | --hf-config CFG) --gpu h100 --num-gpus N --tensor-parallel T
        --pipeline-parallel P [--context-parallel C] --global-batch B --micro-batch M --seq-len S
        --recompute none --precision bf16|fp8 --format json

and its ``step_time_s`` compared with the published step time (the table's seconds per step, or
global batch x sequence / (tokens/s/GPU x GPUs) where only a throughput is printed; the YAML says
which). The constants of the step model are fitted on catalogs/layout_runs.yaml only
(benchmarks/fit_step_model.py); these rows never enter a fit. The issue's target: step time within
15% for at least 80% of rows. Exit status: 0 (with --check: 0 when met, else 1); 2 for usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout: import estimator from it

from estimator.catalog.fields import load_yaml_file  # noqa: E402
from estimator.cli import main as gpucost  # noqa: E402
from estimator.errors import GpucostError  # noqa: E402

HOLDOUT_FILE = ROOT / "benchmarks" / "holdout_layouts.yaml"
TARGET_WITHIN = 0.15
TARGET_SHARE = 0.80


def command(row: dict) -> list[str]:
    """The ``gpucost estimate`` arguments for one row."""
    what = ["--model", row["model"]] if "model" in row else ["--hf-config", str(ROOT / row["hf_config"])]
    args = ["estimate", *what, "--gpu", "h100", "--num-gpus", str(row["num_gpus"]),
            "--tensor-parallel", str(row["tensor_parallel"]), "--pipeline-parallel", str(row["pipeline_parallel"]),
            "--global-batch", str(row["global_batch"]), "--micro-batch", str(row["micro_batch"]),
            "--seq-len", str(row["seq_len"]), "--recompute", "none", "--precision", row["precision"],
            "--format", "json"]
    if row.get("context_parallel", 1) > 1:
        args += ["--context-parallel", str(row["context_parallel"])]
    return args


def run_row(row: dict) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = gpucost(command(row))
    result = {"id": row["id"], "precision": row["precision"], "num_gpus": row["num_gpus"],
              "published_step_time_s": row["published_step_time_s"], "command": "gpucost " + " ".join(command(row))}
    if code != 0:
        return {**result, "predicted_step_time_s": None, "error": None, "failure": err.getvalue().strip()}
    answer = json.loads(out.getvalue())
    predicted = answer["step_time_s"]
    layout = answer["layout"]
    return {**result, "predicted_step_time_s": predicted, "error": predicted / row["published_step_time_s"] - 1,
            "zero_stage": layout["zero_stage"], "virtual_stages": layout["virtual_stages"], "failure": None}


def check(rows: list[dict]) -> dict:
    results = [run_row(row) for row in rows]
    timed = [r for r in results if r["error"] is not None]
    within = sum(abs(r["error"]) <= TARGET_WITHIN for r in timed)
    by_precision = {}
    for precision in sorted({r["precision"] for r in results}):
        part = [r for r in timed if r["precision"] == precision]
        by_precision[precision] = {"rows": sum(r["precision"] == precision for r in results),
                                   "within": sum(abs(r["error"]) <= TARGET_WITHIN for r in part),
                                   "median_abs_error": statistics.median(abs(r["error"]) for r in part) if part else None}
    return {"rows": results, "num_rows": len(results), "num_failed": len(results) - len(timed),
            "within": within, "share_within": within / len(results) if results else None,
            "median_abs_error": statistics.median(abs(r["error"]) for r in timed) if timed else None,
            "max_abs_error": max(abs(r["error"]) for r in timed) if timed else None,
            "by_precision": by_precision, "target": {"within": TARGET_WITHIN, "share": TARGET_SHARE}}


def render(result: dict) -> str:
    lines = [f"{'row':52s} {'GPUs':>5s} {'published s':>11s} {'predicted s':>11s} {'error':>7s}"]
    for r in result["rows"]:
        if r["failure"]:
            lines.append(f"{r['id']:52s} {r['num_gpus']:5d} {r['published_step_time_s']:11.3g}  failed: {r['failure']}")
        else:
            lines.append(f"{r['id']:52s} {r['num_gpus']:5d} {r['published_step_time_s']:11.3g} "
                         f"{r['predicted_step_time_s']:11.3g} {r['error']:+7.1%}")
    n, t = result["num_rows"], result["target"]
    lines += ["", *(f"{p}: {v['within']} of {v['rows']} within {t['within']:.0%}, median |error| "
                    f"{v['median_abs_error']:.1%}" for p, v in result["by_precision"].items() if v["median_abs_error"] is not None),
              f"all: {result['within']} of {n} ({result['share_within']:.0%}) within {t['within']:.0%} of the published "
              f"step time (target >= {t['share']:.0%}); median |error| {result['median_abs_error']:.1%}, max "
              f"{result['max_abs_error']:.1%}; {result['num_failed']} failed"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--file", type=Path, default=HOLDOUT_FILE, help="hold-out rows (YAML)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    try:
        data = load_yaml_file(args.file, label=args.file.name)
    except GpucostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        print(f"error: {args.file.name}: expected a rows list", file=sys.stderr)
        return 2
    result = check(data["rows"])
    print(json.dumps(result, indent=2) if args.format == "json" else render(result))
    if args.check:
        return 0 if result["share_within"] >= TARGET_SHARE else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
