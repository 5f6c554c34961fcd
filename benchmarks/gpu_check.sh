#!/usr/bin/env bash
# What a lent GPU machine runs first: the gpu-marked tests, then the profile -> estimate loop held
# against independent loops on the same machine, then `gpucost profile --comm` across the GPUs:
#
#   tests      the gpu-marked tests
#   profile    `gpucost profile --precision bf16 --sustained-s 5`: the burst sweep and the sustained window
#   mamf       an independent mamf-finder-style burst timing (no gpucost code), vs the profile's burst best
#   sustained  an independent back-to-back torch.mm loop of the profile's sustained shape, as
#              ../shared/measurements/h200-2026-12/mamf2.py (CUDA events per call), for as long as the
#              profile's window, vs the profile's sustained median (the issue's bar: within 3%)
#   torchmodel `gpucost profile --torch-model benchmarks/hf_small.py:small_llama` (a small HF Llama at the
#              batch its loop trains with)
#   loop       benchmarks/hf_loop.py: an independent training loop of the same model (no gpucost code)
#   estimate   `gpucost estimate --calibration` from the torch-model file for the loop's tokens, vs the
#              loop's time (token form --hf-config/--tokens where the estimator takes it, else samples)
#   comm       the collectives across the visible GPUs (one GPU: a one-rank run of the NCCL code path)
#
# Every step has its own timeout (GPU limits: 60+70+30+25+60+40+15+60 = 360 s, plus at most 5 s of kill
# grace per step), a failing step does not stop the others, and everything lands in one folder with
# summary.txt: one line per step (status, seconds) and the ratios.
#
#   benchmarks/gpu_check.sh [OUT_DIR]        # default: $OUT, else ./gpu-check-<UTC time>
#   PYTHON=/path/to/python benchmarks/gpu_check.sh
#   GPU_CHECK_ALLOW_CPU=1 benchmarks/gpu_check.sh /tmp/x   # plumbing check on a machine without a GPU
#
# Output: summary.txt, and per step its stdout/stderr (*.out, *.err) and files (profile.yaml,
# mamf.json, sustained.json, torch-model.yaml, loop.json, estimate.json, comm.yaml, pytest-gpu.xml).

set -u
cd "$(dirname "$0")/.." || exit 2
OUT_DIR="${1:-${OUT:-gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}}"
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
SUMMARY="$OUT_DIR/summary.txt"
FAILED=()
START=$(date +%s)
: > "$SUMMARY"

say() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME TIMEOUT_S COMMAND...: run with a timeout, keep stdout/stderr, record status and seconds
step() {
    local name="$1" limit="$2"; shift 2
    local t0 t1 rc status
    t0=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" > "$OUT_DIR/$name.out" 2> "$OUT_DIR/$name.err"
    rc=$?
    t1=$(date +%s)
    case $rc in
        0) status=ok ;;
        124|137) status="TIMEOUT after ${limit}s" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    [ "$status" = ok ] || FAILED+=("$name")
    say "$(printf '%-10s %-22s %4ss' "$name" "$status" "$((t1 - t0))")"
    return $rc
}

say "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname); python: $PYTHON; out: $OUT_DIR"
"$PYTHON" - > "$OUT_DIR/env.txt" 2>&1 <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("gpus", torch.cuda.device_count(), [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
EOF
say "$(tr '\n' ';' < "$OUT_DIR/env.txt")"
command -v nvidia-smi > /dev/null && nvidia-smi > "$OUT_DIR/nvidia-smi.txt" 2>&1
GPUS=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
DEVICE=cuda
if [ "$GPUS" -lt 1 ]; then
    if [ "${GPU_CHECK_ALLOW_CPU:-0}" = 1 ]; then
        DEVICE=cpu
        say "no CUDA GPU: GPU_CHECK_ALLOW_CPU=1, running the steps on the CPU (plumbing check only)"
    else
        say "no CUDA GPU visible to torch: nothing to check (set GPU_CHECK_ALLOW_CPU=1 for a CPU plumbing run)"
        exit 1
    fi
fi

# A CPU plumbing run gets longer limits for the model steps and the collectives (a shared 2-core VM).
if [ "$DEVICE" = cuda ]; then PRECISION=bf16; WINDOW=5; TM_LIMIT=60; LOOP_S=20; LOOP_LIMIT=40; COMM_LIMIT=60
else PRECISION=fp32; WINDOW=1; TM_LIMIT=100; LOOP_S=30; LOOP_LIMIT=80; COMM_LIMIT=150; fi

# 1. the gpu-marked tests (skipped, not failed, without a GPU)
step tests 60 "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider --junitxml="$OUT_DIR/pytest-gpu.xml" tests
say "           $(tail -n 1 "$OUT_DIR/tests.out")"

# 2. the quick device profile, one precision, with the sustained window
step profile 70 "$PYTHON" -m estimator profile --device "$DEVICE" --precision "$PRECISION" --sustained-s "$WINDOW" \
    --output "$OUT_DIR/profile.yaml" --quiet

# 3. an independent matmul timing in the style of stas00's mamf-finder (no gpucost code)
step mamf 30 "$PYTHON" - "$DEVICE" "$OUT_DIR/mamf.json" <<'EOF'
import json, statistics, sys, time
import torch
device, path = sys.argv[1], sys.argv[2]
cuda = device == "cuda"
dtype = torch.bfloat16 if cuda else torch.float32
shapes = [(4096, 4096, 4096), (8192, 8192, 8192), (16384, 8192, 8192)] if cuda else [(1024, 1024, 1024), (2048, 2048, 2048)]
results = []
for m, n, k in shapes:
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    c = torch.empty(m, n, device=device, dtype=dtype)
    end = time.perf_counter() + (1.0 if cuda else 0.5)
    while time.perf_counter() < end:  # warm-up
        torch.mm(a, b, out=c)
    if cuda:
        torch.cuda.synchronize()
    times, end = [], time.perf_counter() + 2.0
    while time.perf_counter() < end:
        if cuda:
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(); torch.mm(a, b, out=c); stop.record(); stop.synchronize()
            times.append(start.elapsed_time(stop) / 1e3)
        else:
            t0 = time.perf_counter(); torch.mm(a, b, out=c); times.append(time.perf_counter() - t0)
    flops = 2 * m * n * k
    results.append({"m": m, "n": n, "k": k, "iterations": len(times), "best_tflops": flops / min(times) / 1e12,
                    "median_tflops": flops / statistics.median(times) / 1e12})
best = max(results, key=lambda r: r["best_tflops"])
out = {"dtype": "bf16" if cuda else "fp32", "best_tflops": best["best_tflops"], "shapes": results}
json.dump(out, open(path, "w"), indent=2)
print(json.dumps(out))
EOF

# 4. an independent back-to-back loop of the profile's sustained shape (no gpucost code; mamf2.py's method)
step sustained 25 "$PYTHON" - "$DEVICE" "$OUT_DIR/profile.yaml" "$OUT_DIR/sustained.json" <<'EOF'
import json, statistics, sys, time
import torch
import yaml
device, profile, path = sys.argv[1], sys.argv[2], sys.argv[3]
cuda = device == "cuda"
dtype_name = "bf16" if cuda else "fp32"
window = yaml.safe_load(open(profile))["matmul"][dtype_name]["sustained"]
m, n, k = window["m"], window["n"], window["k"]
dtype = torch.bfloat16 if cuda else torch.float32
if not cuda:
    torch.backends.cuda.matmul.allow_tf32 = False
a = torch.randn(m, k, device=device, dtype=dtype); b = torch.randn(k, n, device=device, dtype=dtype)
c = torch.empty(m, n, device=device, dtype=dtype)
end = time.perf_counter() + window["warmup_s"]
while time.perf_counter() < end:  # warm-up, back to back
    torch.mm(a, b, out=c)
if cuda:
    torch.cuda.synchronize()
times, end = [], time.perf_counter() + window["window_s"]
while time.perf_counter() < end:
    if cuda:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); torch.mm(a, b, out=c); e.record(); e.synchronize(); times.append(s.elapsed_time(e) / 1e3)
    else:
        t0 = time.perf_counter(); torch.mm(a, b, out=c); times.append(time.perf_counter() - t0)
flops = 2 * m * n * k
out = {"dtype": dtype_name, "m": m, "n": n, "k": k, "window_s": window["window_s"], "iterations": len(times),
       "median_tflops": flops / statistics.median(times) / 1e12, "mean_tflops": flops * len(times) / sum(times) / 1e12}
json.dump(out, open(path, "w"), indent=2)
print(json.dumps(out))
EOF

# 5. --torch-model on a small Hugging Face Llama (the user's file), at the batch its loop trains with
step torchmodel "$TM_LIMIT" "$PYTHON" -m estimator profile --torch-model benchmarks/hf_small.py:small_llama \
    --device "$DEVICE" --output "$OUT_DIR/torch-model.yaml" --format json --quiet

# 6. an independent training loop of the same model (no gpucost code)
step loop "$LOOP_LIMIT" "$PYTHON" benchmarks/hf_loop.py "$DEVICE" "$LOOP_S" "$OUT_DIR/loop.json"

# 7. the estimate from the torch-model file for as many tokens as the loop trained
"$PYTHON" benchmarks/hf_small.py "$DEVICE" "$OUT_DIR/config.json" > "$OUT_DIR/shape.json" 2>/dev/null
estimate() {
    local loop="$OUT_DIR/loop.json" calibration="$OUT_DIR/torch-model.yaml"
    [ -s "$loop" ] && [ -s "$calibration" ] || { echo "no loop.json or torch-model.yaml" >&2; return 2; }
    local samples seq tokens gpu
    samples=$("$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["batch"] * d["steps"])' "$loop")
    seq=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["seq_len"])' "$loop")
    tokens=$((samples * seq))
    gpu=$("$PYTHON" -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["device"]["catalog_id"] or "")' \
        "$calibration")
    local where=(--num-gpus 1 --precision "$PRECISION" --format json)
    [ -n "$gpu" ] && where+=(--gpu "$gpu")
    # the token form (a torch_model measurement answering --hf-config/--tokens), where the estimator takes it
    if "$PYTHON" -m estimator estimate --calibration "$calibration" --hf-config "$OUT_DIR/config.json" \
            --tokens "$tokens" --seq-len "$seq" "${where[@]}" > "$OUT_DIR/estimate.json" 2> "$OUT_DIR/estimate-tokens.err"; then
        echo "tokens $tokens" > "$OUT_DIR/estimate-form.txt"; return 0
    fi
    # else the sample form: as many samples (sequences) as the loop trained, the model given by its size
    # (the file's parameters and forward FLOPs per sample), which the file's measured samples/s answers
    local params fwd
    params=$("$PYTHON" -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["torch_model"]["params"])' "$calibration")
    fwd=$("$PYTHON" -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["torch_model"]["forward_flops_per_sample"])' \
        "$calibration")
    echo "samples $samples (--params $params --flops-per-sample $fwd)" > "$OUT_DIR/estimate-form.txt"
    "$PYTHON" -m estimator estimate --calibration "$calibration" --params "$params" --samples "$samples" \
        --flops-per-sample "$fwd" "${where[@]}" > "$OUT_DIR/estimate.json"
}
export -f estimate
export OUT_DIR PYTHON PRECISION
step estimate 15 bash -c estimate  # timeout runs a command, not a function: a child bash with it exported

# 8. the collectives across every visible GPU (2 local CPU workers in a plumbing run)
if [ "$DEVICE" = cuda ] && [ "$GPUS" -lt 2 ]; then
    # one GPU: no fabric to measure, but a one-rank run still exercises the NCCL code path
    say "comm       one GPU visible: a one-rank run (code path only; bus bandwidths are 0)"
    GPUCOST_COMM_TEST='{"allow_one_rank": true}' step comm "$COMM_LIMIT" "$PYTHON" -m estimator profile --comm \
        --device cuda --nproc 1 --output "$OUT_DIR/comm.yaml" --format json
else
    NPROC=$([ "$DEVICE" = cuda ] && echo "$GPUS" || echo 2)
    step comm "$COMM_LIMIT" "$PYTHON" -m estimator profile --comm --device "$DEVICE" --nproc "$NPROC" \
        --output "$OUT_DIR/comm.yaml" --format json
fi

# the figures side by side
"$PYTHON" - "$OUT_DIR" 2>&1 <<'EOF' | tee -a "$SUMMARY"
import json, sys
from pathlib import Path
import yaml
out = Path(sys.argv[1])
def load(name):
    path = out / name
    try:
        return yaml.safe_load(path.read_text()) if path.suffix == ".yaml" else json.loads(path.read_text())
    except Exception as exc:
        return None
profile, mamf, comm = load("profile.yaml"), load("mamf.json"), load("comm.yaml")
sustained, tm, loop, est = load("sustained.json"), load("torch-model.yaml"), load("loop.json"), load("estimate.json")
def ratio(a, b):
    return f"ratio {a / b:.3f} ({100 * (a - b) / b:+.1f}%)"
if profile and mamf:
    dtype = mamf["dtype"]
    mine = (profile.get("matmul", {}).get(dtype) or {}).get("best_tflops")
    if mine:
        print(f"matmul     gpucost burst best {dtype} {mine:.4g} TFLOP/s vs mamf-style {mamf['best_tflops']:.4g}: "
              f"{ratio(mine, mamf['best_tflops'])}")
if profile and sustained:
    entry = profile["matmul"][sustained["dtype"]]
    window = entry["sustained"]
    print(f"sustained  gpucost {sustained['dtype']} {window['m']}x{window['n']}x{window['k']} back to back "
          f"{window['window_s']:g} s: median {window['median_tflops']:.4g} TFLOP/s vs independent loop "
          f"{sustained['median_tflops']:.4g}: {ratio(window['median_tflops'], sustained['median_tflops'])}; "
          f"burst median {entry['median_tflops']:.4g}; clocks {window.get('clock_mhz')}; "
          f"throttled {window.get('throttled')} {window.get('reasons')}; drift {window['drift_pct']}%")
    mlp = (profile.get("mlp", {}).get(sustained["dtype"]) or {}).get("sustained")
    if mlp:
        print(f"           MLP step sustained {mlp['median_tflops']:.4g} TFLOP/s vs burst median "
              f"{profile['mlp'][sustained['dtype']]['median_tflops']:.4g}")
if tm and loop and tm.get("torch_model"):
    section = tm["torch_model"]
    result = section["results"].get(loop["dtype"]) or {}
    if "samples_per_s" in result:
        print(f"torchmodel gpucost {section['id']} {loop['dtype']} batch {section['batch_size']}: "
              f"{result['samples_per_s']:.4g} samples/s = {result['samples_per_s'] * loop['seq_len']:.4g} tokens/s "
              f"(peak {result.get('peak_memory_gib')} GiB) vs the loop's {loop['tokens_per_s']:.4g} tokens/s (batch "
              f"{loop['batch']}, {loop['steps']} steps, peak {loop['peak_memory_gib']} GiB): "
              f"{ratio(result['samples_per_s'] * loop['seq_len'], loop['tokens_per_s'])}")
if est and loop:
    form = (out / "estimate-form.txt").read_text().strip() if (out / "estimate-form.txt").exists() else "?"
    predicted_s = est["wall_clock_days"] * 86400
    print(f"estimate   {form} on {est.get('gpu')}: predicted {predicted_s:.4g} s vs the loop's {loop['seconds']:.4g} s "
          f"({loop['tokens_per_s']:.4g} tokens/s): {ratio(predicted_s, loop['seconds'])}; "
          f"source: {est.get('throughput_source')}")
if comm and comm.get("collectives"):
    c = comm["collectives"]
    print(f"comm       {c['backend']}, {c['world_size']} ranks, {len(c['rows'])} rows, partial {c['partial']}, "
          f"{c['duration_s']} s")
    for s in c["summary"]:
        if s["op"] in ("all_reduce", "all_to_all") and s["dtype"] == "bf16":
            print(f"           {s['op']} {s['group']}: busbw {s['busbw_gbps']:.4g} GB/s at {s['large_size_bytes']} B, "
                  f"latency {s['latency_s'] * 1e6:.1f} us")
    x = c.get("cross_check")
    if x:
        print(f"           cross-check all_reduce {x['dtype']} {x['size_bytes']} B: benchmark {x['benchmark_busbw_gbps']:.4g}"
              f" vs independent {x['busbw_gbps']:.4g} GB/s ({x['diff_pct']:+.1f}%)")
    st = c.get("stragglers")
    if st:
        print(f"           stragglers: spread {st['spread_pct']}%, flagged {st['flagged']}")
EOF

say "total      $(( $(date +%s) - START ))s; failed: ${FAILED[*]:-none}"
[ ${#FAILED[@]} -eq 0 ]
