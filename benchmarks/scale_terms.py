"""What each at-scale term of the step model does to the published steps of benchmarks/stack_runs.yaml.

Usage (from the repository root)::

    python benchmarks/scale_terms.py            # the table of docs/scale.md
    python benchmarks/scale_terms.py --rows     # and every row's predicted / reported under each setting

The at-scale terms take the training stack's choices as arguments of
``estimator.timing.step.time_layout``; until ``--stack`` passes them, this script runs every row of
stack_runs.yaml through the same ``gpucost estimate`` command as benchmarks/holdout_stacks.py with
``time_layout`` given each row's stack's choices (below), one setting at a time:

- gradient bytes on the wire: Megatron-LM reduces bf16 gradients in fp32 ("bfloat16 requires gradient
  accumulation and all-reduce to be done in fp32", NVIDIA/Megatron-LM megatron/training/arguments.py,
  ``accumulate_allreduce_grads_in_fp32``); Composer FSDP's DEFAULT mixed precision reduces in fp32 and
  PURE in bf16 (the row's ``grad_reduce_dtype``); DeepSpeed rows keep 16-bit gradients.
- per-layer ZeRO-2: FSDP's SHARD_GRAD_OP reduce-scatters and gathers one FSDP unit (a block) at a time.
- prefetch: FSDP's forward and backward prefetch (each layer's collectives beside its neighbour's compute).
- stragglers: MegaScale's slow-host share and excess (a cluster property, the same for every stack).

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

import estimator.timing.step as step  # noqa: E402
from estimator.catalog.fields import load_yaml_file  # noqa: E402


def gradient_bytes(row: dict) -> float:
    if row["stack"] == "megatron" and row["precision"] == "bf16":
        return 4.0
    if row["stack"] == "fsdp":
        return 4.0 if row.get("grad_reduce_dtype", "fp32") == "fp32" else 2.0
    return 2.0


SETTINGS = {
    "today's defaults (ring latency, per-layer ZeRO-3)": lambda row: {},
    "+ the stack's gradient bytes": lambda row: {"grad_reduce_bytes": gradient_bytes(row)},
    "+ FSDP ZeRO-2 per layer": lambda row: {"grad_reduce_bytes": gradient_bytes(row),
                                            "zero2_per_layer": row["stack"] == "fsdp"},
    "+ FSDP prefetch": lambda row: {"grad_reduce_bytes": gradient_bytes(row), "zero2_per_layer": row["stack"] == "fsdp",
                                    "prefetch": row["stack"] == "fsdp"},
    "gradient bytes + ZeRO-2 per layer + stragglers": lambda row: {
        "grad_reduce_bytes": gradient_bytes(row), "zero2_per_layer": row["stack"] == "fsdp", "stragglers": True},
}
GROUPS = (("holdout", "megatron", 1000), ("holdout", "deepspeed", 1000), ("train", "deepspeed", 128),
          ("train", "fsdp", 128))


def run(rows: list[dict], arguments) -> list[dict]:
    original = step.time_layout
    flags = holdout_stacks.estimate_flags()
    results = []
    try:
        for row in rows:
            step.time_layout = functools.partial(original, **arguments(row))
            results.append(holdout_stacks.run_row(row, flags))
    finally:
        step.time_layout = original
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
