"""Does the profile -> estimate loop predict a user's own training code? A small Hugging Face Llama
on this CPU, profiled, estimated and trained for real in one run.

Usage (from the repository root, with the profiler and transformers installed: ``pip install -e
".[test]"``)::

    python benchmarks/torch_model_loop.py                  # tiny-llama, batch 8, 3 runs of 40 steps
    python benchmarks/torch_model_loop.py --runs 1 --steps 20 --json
    python benchmarks/torch_model_loop.py --model micro_llama --batch 4 --steps 200

The user's model is ``benchmarks/user_llama.py``: ``LlamaForCausalLM`` from transformers, built
from ``benchmarks/configs/tiny-llama.json`` (4 layers, d_model 256, 5.0M parameters, 256-token
sequences), AdamW. What one run does, each step in a fresh process as a user would run it:

1. **Profile**: ``python -m estimator profile --torch-model benchmarks/user_llama.py:tiny_llama
   --device cpu --precision fp32 --micro-batch B --output TMP``: the callable's training step timed
   (profiler/torch_model.py), written to the calibration file's ``torch_model`` section.
2. **Estimate**: ``python -m estimator estimate --calibration TMP --hf-config
   benchmarks/configs/tiny-llama.json --tokens N --seq-len S --precision fp32 --format json``, N =
   steps x B x S, the command a user runs: the estimate matches the file's model to the config
   (parameter count and the sequence length its FLOPs per sample solve to,
   estimator.timing.measured.match_torch_model) and takes the measured tokens/s. Its wall-clock is
   the prediction.
3. **Train for real**: a plain training loop of the same model (the callable builds it, as the
   user's script would), in its own process: ``steps`` batches of fresh random token ids (drawn
   before the clock starts, as a data loader's prefetch would have them ready), each
   ``loss = model(input_ids=x, labels=x).loss; loss.backward(); optimizer.step();
   optimizer.zero_grad()``, ``loss.item()`` read every 10 steps as a training script logs it. The
   clock runs from the first step to the end of the last (warm-up included: a user waits for it).
4. **Compare**: predicted / measured wall-clock.
5. **Check the instrument** (unless ``--no-recheck``): the profile of step 1 once more, right after
   the loop; its difference from the first is how far the machine's own speed moved meanwhile, and
   the prediction at the mean of the two profiles' rates (the estimate scales exactly with the
   file's rate) is reported beside the first as ``ratio_bracketed``.

The CPU is shared, so each phase reports the share of the machine's CPU time that other processes
used meanwhile (/proc/stat, benchmarks/calibrated_estimate.py's meter); a run where either the
profile or the loop saw more than ``--max-other-load`` (default 25%) is flagged DISTURBED and not
counted; before each run it waits (``--quiet-wait``, up to 60 s) until other processes use under
10% of the CPUs. ``--threads N`` sets OMP_NUM_THREADS for both phases alike. Exit status 0 when every counted run is within ``--tolerance`` (15%) and at least one
was counted, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from calibrated_estimate import OtherLoad, _fmt_pct  # noqa: E402  (the /proc/stat load meter)
from torch_model_estimate import wait_for_quiet  # noqa: E402

ENV: dict[str, str] = {}  # --threads: OMP_NUM_THREADS for the profile and the loop alike

MODEL_FILE = HERE / "user_llama.py"
CONFIG = {"tiny_llama": HERE / "configs" / "tiny-llama.json", "micro_llama": HERE / "configs" / "micro-llama.json"}
LOG_INTERVAL = 10  # steps between loss.item() reads


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "estimator", *args]


def _run(cmd: list[str], what: str) -> str:
    import os

    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **ENV})
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def train_loop(callable_name: str, batch: int, steps: int, seed: int = 1) -> dict[str, Any]:
    """Step 3, run in its own process (``_train``): the user's training loop, timed end to end."""
    import torch

    import user_llama

    built = getattr(user_llama, callable_name)(batch_size=batch, device="cpu")
    model, optimizer = built["model"], built["optimizer"]
    seq_len = built["batch"]["input_ids"].shape[1]
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(seed)
    data = [torch.randint(0, vocab, (batch, seq_len), generator=generator) for _ in range(steps)]
    model.train()
    marks = []
    started = time.perf_counter()
    for i, x in enumerate(data):
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (i + 1) % LOG_INTERVAL == 0:
            loss.item()
        marks.append(time.perf_counter())
    total = marks[-1] - started
    steady = (marks[-1] - marks[2]) / (steps - 3) if steps > 3 else None
    return {"seconds": total, "steps": steps, "batch": batch, "seq_len": seq_len, "tokens": steps * batch * seq_len,
            "tokens_per_s": steps * batch * seq_len / total,
            "steady_tokens_per_s": batch * seq_len / steady if steady else None}


def one_run(callable_name: str, batch: int, steps: int, workdir: Path, recheck: bool = True) -> dict[str, Any]:
    """Profile, estimate, train: the three numbers of one run and the load beside each."""
    calibration = workdir / "calibration.yaml"
    spec = f"{MODEL_FILE.relative_to(ROOT)}:{callable_name}"
    with OtherLoad() as profile_load:
        _run(_cli("profile", "--torch-model", spec, "--device", "cpu", "--precision", "fp32", "--micro-batch",
                  str(batch), "--output", str(calibration), "--quiet", "--format", "json"), "profile")
    from estimator.records.calibration import read_calibration

    section = read_calibration(calibration)["torch_model"]
    result = section["results"]["fp32"]
    with OtherLoad() as train_load:
        loop = json.loads(_run([sys.executable, str(Path(__file__).resolve()), "_train", callable_name, str(batch),
                                str(steps)], "training loop"))
    seq_len = loop["seq_len"]
    estimate = json.loads(_run(_cli("estimate", "--calibration", str(calibration), "--hf-config",
                                    str(CONFIG[callable_name].relative_to(ROOT)), "--tokens", str(loop["tokens"]),
                                    "--seq-len", str(seq_len), "--precision", "fp32", "--format", "json"),
                               "estimate"))
    predicted_s = estimate["wall_clock_days"] * 86400.0
    source = estimate["throughput_source"]
    again = None
    if recheck:  # the instrument once more: how far the machine's own speed moved meanwhile
        _run(_cli("profile", "--torch-model", spec, "--device", "cpu", "--precision", "fp32", "--micro-batch",
                  str(batch), "--output", str(workdir / "again.yaml"), "--quiet", "--format", "json"), "profile again")
        again = read_calibration(workdir / "again.yaml")["torch_model"]["results"]["fp32"]["samples_per_s"]
    return {
        "profile_samples_per_s": result["samples_per_s"], "profile_steps": result["iterations"],
        "profile_tokens_per_s": result["samples_per_s"] * seq_len,
        "predicted_s": predicted_s, "measured_s": loop["seconds"], "ratio": predicted_s / loop["seconds"],
        "loop_tokens_per_s": loop["tokens_per_s"], "loop_steady_tokens_per_s": loop["steady_tokens_per_s"],
        "tokens": loop["tokens"], "used_measured_tokens_per_s": "tokens/s" in source and "torch_model" in source,
        "estimate_source": source, "other_load_profile": profile_load.fraction, "other_load_loop": train_load.fraction,
        "profile_again_samples_per_s": again,
        "drift": again / result["samples_per_s"] - 1 if again else None,
        # the prediction at the mean of the profiles before and after the loop: the machine's speed
        # during the loop, if it moved evenly between them (the estimate's own rate scales exactly)
        "ratio_bracketed": (predicted_s / loop["seconds"] * result["samples_per_s"]
                            / ((result["samples_per_s"] + again) / 2)) if again else None,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_train"]:
        print(json.dumps(train_loop(argv[1], int(argv[2]), int(argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(CONFIG), default="tiny_llama", help="the callable in user_llama.py")
    parser.add_argument("--batch", type=int, default=8, help="samples per step (profile and loop alike)")
    parser.add_argument("--steps", type=int, default=40, help="steps of the real training loop")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=0.15)
    parser.add_argument("--max-other-load", type=float, default=0.25)
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the profile and the loop alike "
                        "(default: torch's own choice)")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="before each run, wait up to this many seconds for other processes to use under 10%% "
                             "of the CPUs")
    parser.add_argument("--no-recheck", action="store_true", help="skip the second profile after the loop")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        ENV["OMP_NUM_THREADS"] = str(args.threads)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            waited, load = wait_for_quiet(args.quiet_wait) if args.quiet_wait > 0 else (0.0, None)
            run = one_run(args.model, args.batch, args.steps, Path(tmp), recheck=not args.no_recheck)
            run["waited_s"], run["load_before"] = round(waited, 1), load
            loads = [v for v in (run["other_load_profile"], run["other_load_loop"]) if v is not None]
            run["disturbed"] = any(v > args.max_other_load for v in loads)
            runs.append(run)
            print(f"run {i + 1}: predicted {run['predicted_s']:.1f} s, measured {run['measured_s']:.1f} s, "
                  f"ratio {run['ratio']:.3f} (profile {run['profile_tokens_per_s']:,.0f} tokens/s over "
                  f"{run['profile_steps']} steps; loop {run['loop_tokens_per_s']:,.0f} tokens/s, "
                  f"{run['loop_steady_tokens_per_s'] or 0:,.0f} after 3 steps; other load "
                  f"{_fmt_pct(run['other_load_profile'])} / {_fmt_pct(run['other_load_loop'])}"
                  + (f"; profile again after the loop {run['drift']:+.1%}, ratio at the mean of both profiles "
                     f"{run['ratio_bracketed']:.3f}" if run["drift"] is not None else "") + ")"
                  + (" DISTURBED" if run["disturbed"] else "")
                  + ("" if run["used_measured_tokens_per_s"] else " [the estimate did not use the measured tokens/s]"),
                  file=sys.stderr, flush=True)
    counted = [r for r in runs if not r["disturbed"] and r["used_measured_tokens_per_s"]]
    ratios = [r["ratio"] for r in counted]
    summary = {"model": args.model, "batch": args.batch, "steps": args.steps, "runs": runs,
               "counted": len(counted), "ratio_mean": statistics.fmean(ratios) if ratios else None,
               "ratio_min": min(ratios, default=None), "ratio_max": max(ratios, default=None),
               "tolerance": args.tolerance}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{args.model}, batch {args.batch}, {args.steps} steps: " + (
            f"{len(counted)} of {len(runs)} runs counted, predicted / measured {min(ratios):.3f}-{max(ratios):.3f} "
            f"(mean {statistics.fmean(ratios):.3f})" if ratios else f"no run counted of {len(runs)}"))
    ok = bool(ratios) and all(abs(r - 1) <= args.tolerance for r in ratios)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
