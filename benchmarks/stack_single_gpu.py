"""Single-device check of the stacks: every measured run of catalogs/stack_runs.yaml (real Hugging Face
training steps on one H200, ../shared/measurements/h200-2026-12/README.md) estimated with the exact
command the stacks issue names, predicted vs measured step time and peak memory per row.

Usage (from the repository root)::

    python benchmarks/stack_single_gpu.py            # every row, train and held-out apart
    python benchmarks/stack_single_gpu.py --format json
    python benchmarks/stack_single_gpu.py --check    # exit 1 when the held-out rows miss the target
    python benchmarks/stack_single_gpu.py --fit      # re-fit the hf stack's two constants on the train rows

Each row runs, in-process::

    gpucost estimate --hf-config catalogs/architectures/<architecture>.json --gpu h200 --num-gpus 1
        --global-batch B --micro-batch B --seq-len S --recompute none|full --precision bf16 --stack hf
        [--compile] [--master-weights bf16] --format json

``--fit`` re-fits the two constants catalogs/stacks.yaml marks as fitted, on the rows marked
``split: train`` only, each against the part of the step it sets: ``host_s_per_op`` on the train rows
that are host-bound (the model's own verdict: GPT-2 at batch 8), ``matmul_fraction_of_mamf`` on the
device-bound ones (Llama 1B amp and ckpt), by bisection / a grid on a copy of the catalog folder
(GPUCOST_CATALOG_DIR); it prints the values to write into stacks.yaml. The target (the issue's): at
least 80% of rows within 15% on step time and on peak memory.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout: import estimator from it

from estimator.catalog.fields import CATALOG_ENV  # noqa: E402
from estimator.catalog.stacks import load_stack_runs, load_stacks  # noqa: E402
from estimator.cli import main as gpucost  # noqa: E402
from estimator.errors import GpucostError  # noqa: E402
from estimator.validation.stack_runs import run_args  # noqa: E402

CATALOG = ROOT / "catalogs"
RUNS_FILE = CATALOG / "stack_runs.yaml"
TARGET_WITHIN = 0.15
TARGET_SHARE = 0.80


def command(run, directory: Path = CATALOG) -> list[str]:
    """The ``gpucost estimate`` arguments of one measured run, with JSON output."""
    return run_args(run, directory) + ["--format", "json"]


def run_row(run, directory: Path = CATALOG) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = gpucost(command(run, directory))
    row = {"id": run.id, "split": run.split, "measured_step_time_s": run.step_time_s,
           "measured_memory_gb": run.peak_memory_gb,
           "command": "gpucost " + " ".join(run_args(run, CATALOG)).replace(str(ROOT) + "/", "")}
    if code != 0:
        return {**row, "failure": err.getvalue().strip()}
    answer = json.loads(out.getvalue())
    time, memory = answer["step_time_s"], answer["layouts"][0]["memory_gb"]
    bound = next((a for a in answer["assumptions"] if a.startswith("per micro-batch")), "")
    return {**row, "predicted_step_time_s": time, "time_error": time / run.step_time_s - 1,
            "predicted_memory_gb": memory,
            "memory_error": memory / run.peak_memory_gb - 1 if run.peak_memory_gb else None,
            "host_bound": bound.endswith("host (kernel launches)-bound"), "failure": None}


def load_runs(directory: Path = CATALOG):
    return load_stack_runs(directory / RUNS_FILE.name, load_stacks(directory))


def summary(rows: list[dict], split: str) -> dict:
    part = [r for r in rows if r["split"] == split and not r["failure"]]
    times = [abs(r["time_error"]) for r in part]
    memories = [abs(r["memory_error"]) for r in part if r["memory_error"] is not None]
    return {"rows": len(part), "time_within": sum(e <= TARGET_WITHIN for e in times),
            "memory_within": sum(e <= TARGET_WITHIN for e in memories),
            "median_abs_time_error": statistics.median(times) if times else None,
            "median_abs_memory_error": statistics.median(memories) if memories else None}


def render(rows: list[dict]) -> str:
    lines = [f"{'row':28s} {'split':8s} {'measured s':>10s} {'predicted s':>11s} {'error':>7s} "
             f"{'measured GB':>11s} {'predicted GB':>12s} {'error':>7s}"]
    for r in rows:
        if r["failure"]:
            lines.append(f"{r['id']:28s} {r['split']:8s} failed: {r['failure']}")
            continue
        lines.append(f"{r['id']:28s} {r['split']:8s} {r['measured_step_time_s']:10.4g} {r['predicted_step_time_s']:11.4g} "
                     f"{r['time_error']:+7.1%} {r['measured_memory_gb']:11.4g} {r['predicted_memory_gb']:12.4g} "
                     f"{r['memory_error']:+7.1%}")
    for split in ("train", "held_out"):
        s = summary(rows, split)
        if s["rows"]:
            lines.append(f"{split}: {s['time_within']} of {s['rows']} within {TARGET_WITHIN:.0%} on step time (median "
                         f"|error| {s['median_abs_time_error']:.1%}), {s['memory_within']} of {s['rows']} on peak memory "
                         f"(median |error| {s['median_abs_memory_error']:.1%})")
    return "\n".join(lines)


# -- the fit ---------------------------------------------------------------------------------------


def _with_constants(directory: Path, **values: float) -> None:
    """Rewrite the hf stack's fitted constants in a copy of stacks.yaml (the lines of its hf entry)."""
    text = (directory / "stacks.yaml").read_text()
    head, hf = text.split("  - id: hf\n", 1)
    for name, value in values.items():
        hf, count = re.subn(rf"^(    {name}: ).*$", rf"\g<1>{value!r}", hf, count=1, flags=re.M)
        assert count == 1, name
    (directory / "stacks.yaml").write_text(head + "  - id: hf\n" + hf)


def fit() -> dict:
    """host_s_per_op and matmul_fraction_of_mamf on the train rows (module docstring)."""
    runs = [r for r in load_runs() if r.split == "train" and r.stack == "hf"]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "catalogs"
        shutil.copytree(CATALOG, directory)
        old = os.environ.get(CATALOG_ENV)
        os.environ[CATALOG_ENV] = str(directory)
        try:
            def errors(**values: float) -> list[dict]:
                _with_constants(directory, **values)
                return [run_row(r, directory) for r in runs]

            # device-bound rows set the matmul share: the grid value with the least worst |time error|
            grid = [round(0.70 + 0.01 * i, 2) for i in range(31)]
            scored = []
            for fraction in grid:
                rows = [r for r in errors(matmul_fraction_of_mamf=fraction) if not r["host_bound"]]
                scored.append((max(abs(r["time_error"]) for r in rows), fraction))
            fraction = min(scored)[1]
            # host-bound rows set the host time per op: bisection on their mean error
            low, high = 1e-6, 2e-4
            for _ in range(30):
                mid = (low + high) / 2
                rows = [r for r in errors(matmul_fraction_of_mamf=fraction, host_s_per_op=mid) if r["host_bound"]]
                if not rows or statistics.fmean(r["time_error"] for r in rows) > 0:
                    high = mid
                else:
                    low = mid
            host = float(f"{(low + high) / 2:.2g}")
        finally:
            if old is None:
                os.environ.pop(CATALOG_ENV, None)
            else:
                os.environ[CATALOG_ENV] = old
    return {"matmul_fraction_of_mamf": fraction, "host_s_per_op": host,
            "train_rows": [r.id for r in runs]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--check", action="store_true", help="exit 1 when the held-out rows miss the target")
    parser.add_argument("--fit", action="store_true", help="re-fit the hf stack's constants on the train rows")
    args = parser.parse_args(argv)
    try:
        if args.fit:
            result = fit()
            print(json.dumps(result, indent=2) if args.format == "json" else
                  "\n".join(f"{k}: {v}" for k, v in result.items()))
            return 0
        rows = [run_row(run) for run in load_runs()]
    except GpucostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps({"rows": rows, "train": summary(rows, "train"), "held_out": summary(rows, "held_out")},
                         indent=2))
    else:
        print(render(rows))
    held = summary(rows, "held_out")
    met = held["rows"] and min(held["time_within"], held["memory_within"]) >= TARGET_SHARE * held["rows"]
    return 0 if not args.check or met else 1


if __name__ == "__main__":
    sys.exit(main())
