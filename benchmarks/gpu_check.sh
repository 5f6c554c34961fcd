#!/usr/bin/env bash
# What a lent GPU machine runs first: the gpu-marked tests, the quick `gpucost profile`, an independent
# mamf-finder-style matmul timing to compare with it, and `gpucost profile --comm` across all visible
# GPUs. Every step has its own timeout (about 6 minutes in all), a failing step does not stop the
# others, and everything lands in one folder with a short summary. Step limits: tests 90 s,
# profile 115 s, mamf 40 s, comm 105 s: 350 s, plus at most 5 s of kill grace per step.
#
#   benchmarks/gpu_check.sh [OUT_DIR]        # default: $OUT, else ./gpu-check-<UTC time>
#   PYTHON=/path/to/python benchmarks/gpu_check.sh
#   GPU_CHECK_ALLOW_CPU=1 benchmarks/gpu_check.sh /tmp/x   # plumbing check on a machine without a GPU
#
# Output: summary.txt (one line per step: status, seconds, key figures), and per step its stdout/stderr
# (*.out, *.err) and files (profile.yaml, comm.yaml, mamf.json, pytest-gpu.xml).

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

# 1. the gpu-marked tests (skipped, not failed, without a GPU)
step tests 90 "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider --junitxml="$OUT_DIR/pytest-gpu.xml" tests
say "           $(tail -n 1 "$OUT_DIR/tests.out")"

# 2. the quick device profile
step profile 115 "$PYTHON" -m estimator profile --device "$DEVICE" --output "$OUT_DIR/profile.yaml" --quiet

# 3. an independent matmul timing in the style of stas00's mamf-finder (no gpucost code)
step mamf 40 "$PYTHON" - "$DEVICE" "$OUT_DIR/mamf.json" <<'EOF'
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

# 4. the collectives across every visible GPU (2 local CPU workers in a plumbing run)
if [ "$DEVICE" = cuda ] && [ "$GPUS" -lt 2 ]; then
    # one GPU: no fabric to measure, but a one-rank run still exercises the NCCL code path
    say "comm       one GPU visible: a one-rank run (code path only; bus bandwidths are 0)"
    GPUCOST_COMM_TEST='{"allow_one_rank": true}' step comm 105 "$PYTHON" -m estimator profile --comm \
        --device cuda --nproc 1 --output "$OUT_DIR/comm.yaml" --format json
else
    NPROC=$([ "$DEVICE" = cuda ] && echo "$GPUS" || echo 2)
    step comm 105 "$PYTHON" -m estimator profile --comm --device "$DEVICE" --nproc "$NPROC" \
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
if profile and mamf:
    dtype = mamf["dtype"]
    mine = (profile.get("matmul", {}).get(dtype) or {}).get("best_tflops")
    if mine:
        print(f"matmul     gpucost best {dtype} {mine:.4g} TFLOP/s vs mamf-style {mamf['best_tflops']:.4g} "
              f"({100 * (mine - mamf['best_tflops']) / mamf['best_tflops']:+.1f}%)")
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
