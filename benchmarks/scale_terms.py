"""What each at-scale term of the step model does to the published steps of benchmarks/stack_runs.yaml.

Usage (from the repository root)::

    python benchmarks/scale_terms.py            # the table of docs/scale.md
    python benchmarks/scale_terms.py --rows     # and every row's predicted / reported under each setting

Every row runs through the same ``gpucost estimate`` command as benchmarks/holdout_stacks.py (with
``--stack`` and the kernels its source had), with the layout search's ``time_layout`` given one
setting at a time. Each stack's entry in catalogs/stacks.yaml sets its at-scale terms (gradient bytes
on the wire, per-layer ZeRO 2/3, prefetch, per-micro-batch gradient accumulation); a setting overrides
some of them for every row of a stack:

- no stack terms: the step model's own defaults (``SCALE_DEFAULTS``) for every stack.
- the stacks' catalog terms: what ``--stack`` gives (catalogs/stacks.yaml, each with its source).
- Megatron fp32 gradients, no overlap: Megatron-LM reduces bf16 gradients in fp32 ("bfloat16 requires
  gradient accumulation and all-reduce to be done in fp32", megatron/arguments.py at 285068c8) and the
  2023 baseline had no --overlap-grad-reduce; the default stack nets both into the fitted convention.
- Composer PURE rows in bf16: the FSDP rows whose ``grad_reduce_dtype`` is bf16 (Composer's PURE mixed
  precision) reduce in bf16, not the fsdp stack's fp32.
- prefetch: FSDP's forward and backward prefetch as a full overlap.
- stragglers off: without MegaScale's slow-host share and excess (a cluster property, the same for
  every stack, on by default).

Printed per split and stack: rows within 15%, median |error|, median predicted/reported, and that
median on the rows at 1,000 GPUs or more (held-out) or 128 or more (train). Exit status 0.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout: import estimator from it
sys.path.insert(0, str(ROOT / "benchmarks"))

import holdout_stacks  # noqa: E402

import estimator.timing.comm as comm  # noqa: E402
import estimator.timing.search as search  # noqa: E402
from estimator.catalog.fields import load_yaml_file  # noqa: E402


SETTINGS = {
    # the defaults, with no float8 casts ({}: None would mean "the stack's own")
    "no stack terms (the step model's defaults)": lambda row: {**comm.SCALE_DEFAULTS, "fp8_cast_bytes": {}},
    "the stacks' catalog terms (--stack)": lambda row: {},
    "+ Megatron fp32 gradients, no overlap": lambda row: {"grad_reduce_bytes": 4.0} if row["stack"] == "megatron" else {},
    "+ Composer PURE rows in bf16": lambda row: {"grad_reduce_bytes": 2.0} if row.get("grad_reduce_dtype") == "bf16" else {},
    "+ FSDP prefetch": lambda row: {"prefetch": True} if row["stack"] == "fsdp" else {},
    "- stragglers (off)": lambda row: {"stragglers": False},
}
GROUPS = (("holdout", "megatron", 1000), ("holdout", "deepspeed", 1000), ("holdout", "fsdp", 128),
          ("train", "deepspeed", 128), ("train", "fsdp", 128))


def run(rows: list[dict], arguments) -> list[dict]:
    original = search.time_layout  # the layout search's own reference to estimator.timing.step.time_layout
    flags = holdout_stacks.estimate_flags()
    results = []
    try:
        for row in rows:
            search.time_layout = functools.partial(original, **arguments(row))
            results.append(holdout_stacks.run_row(row, flags))
    finally:
        search.time_layout = original
    return results


def cell(results: list[dict], split: str, stack: str, large: int) -> str:
    part = [r for r in results if r["split"] == split and r["stack"] == stack and r["ratio"] is not None]
    if not part:
        return "-"
    big = [r["ratio"] for r in part if r["num_gpus"] >= large]
    return (f"{sum(abs(r['error']) <= holdout_stacks.TARGET_WITHIN for r in part)}/{len(part)}, "
            f"{statistics.median(abs(r['error']) for r in part):.1%}, {statistics.median(r['ratio'] for r in part):.2f}"
            + (f" ({statistics.median(big):.2f})" if big else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rows", action="store_true", help="print every row under each setting")
    args = parser.parse_args(argv)
    rows = load_yaml_file(holdout_stacks.ROWS_FILE, label=holdout_stacks.ROWS_FILE.name)["rows"]
    header = "| setting | " + " | ".join(f"{split} {stack}" for split, stack, _ in GROUPS) + " |"
    print(header)
    print("|" + " --- |" * (len(GROUPS) + 1))
    per_setting = {}
    for name, arguments in SETTINGS.items():
        results = run(rows, arguments)
        per_setting[name] = results
        print(f"| {name} | " + " | ".join(cell(results, *group) for group in GROUPS) + " |")
    print("\ncells: rows within 15%, median |error|, median predicted/reported (held-out rows at >= 1,000 GPUs, "
          "train rows at >= 128 GPUs)")
    if args.rows:
        for name, results in per_setting.items():
            print(f"\n{name}")
            for r in results:
                print(f"  {r['id']:52s} {r['num_gpus']:6d} "
                      + (f"{r['ratio']:.2f}" if r["ratio"] is not None else f"failed: {r['failure']}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
