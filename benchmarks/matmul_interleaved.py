"""gpucost's matmul timings against independent torch.mm loops, interleaved in rounds so that both
sample the same fast and slow phases of a shared host (a VM whose speed moves with its neighbours).

    python benchmarks/matmul_interleaved.py [--device cpu|cuda] [--rounds 6] [--sizes 1024,2048]

Per round and size, one after the other:

1. **burst**: ``profiler.kernels.matmul_kernel`` timed by ``profiler.timing.measure`` as the sweep runs
   it (output re-randomised and the cache flushed before every iteration), best iteration;
   against a plain loop of ``torch.mm(a, b)`` with ``time.perf_counter`` (CUDA events on a GPU)
   around each call, best call (the docs' "Check it yourself" method);
2. **sustained**: ``profiler.sustained.run_window`` (back to back, no flush), median iteration;
   against a plain back-to-back loop of ``torch.mm`` for as long, median call (as mamf2.py).

Prints each round's ratio gpucost / independent and the median ratio per kind: what the profile's
figures and an independent timing agree to, on this machine, at this time. fp32 on a CPU, bf16 on a
GPU. No gpucost code in the independent loops.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from profiler.kernels import CacheFlush, matmul_kernel, matmul_precision  # noqa: E402
from profiler.sustained import Window, run_window  # noqa: E402
from profiler.timing import clock_for, measure  # noqa: E402


def independent(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, seconds: float, cuda: bool) -> list[float]:
    """Seconds of each back-to-back ``torch.mm`` call for ``seconds`` (after 0.2 s of warm-up)."""
    end = time.perf_counter() + 0.2
    while time.perf_counter() < end:
        torch.mm(a, b, out=c)
    if cuda:
        torch.cuda.synchronize()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        if cuda:
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(); torch.mm(a, b, out=c); stop.record(); stop.synchronize()
            times.append(start.elapsed_time(stop) / 1e3)
        else:
            t0 = time.perf_counter(); torch.mm(a, b, out=c); times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--sizes", default=None, help="comma-separated squares (default: CPU 1024,2048; GPU 4096,8192)")
    parser.add_argument("--seconds", type=float, default=1.0, help="each timing's seconds (default 1)")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtype_name, dtype = ("bf16", torch.bfloat16) if cuda else ("fp32", torch.float32)
    sizes = [int(s) for s in (args.sizes or ("4096,8192" if cuda else "1024,2048")).split(",")]
    clock = clock_for(device)
    flush = CacheFlush(device, (256 if cuda else 64) * 2**20)
    ratios: dict[str, list[float]] = {"burst": [], "sustained": []}
    for n in sizes:
        kernel = matmul_kernel(n, n, n, dtype_name, device, flush=flush)
        plain = matmul_kernel(n, n, n, dtype_name, device)  # the same operands' shapes, no flush
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        c = torch.empty(n, n, device=device, dtype=dtype)
        flops = 2 * n**3
        for r in range(args.rounds):
            with matmul_precision(dtype_name):
                burst = measure(kernel.run, clock, before=kernel.before, warmup_s=0.2, budget_s=args.seconds,
                                min_iters=3)
                window = run_window(plain.run, plain.work, clock, Window(args.seconds, 0.2))
            mine_burst = flops / burst.best_s / 1e12
            mine_sustained = window["median_tflops"]
            calls = independent(a, b, c, args.seconds, cuda)
            other_best, other_median = flops / min(calls) / 1e12, flops / statistics.median(calls) / 1e12
            ratios["burst"].append(mine_burst / other_best)
            ratios["sustained"].append(mine_sustained / other_median)
            print(f"{dtype_name} {n}^3 round {r + 1}: burst best {mine_burst:.4g} vs {other_best:.4g} TFLOP/s "
                  f"({mine_burst / other_best:.3f}); sustained median {mine_sustained:.4g} vs {other_median:.4g} "
                  f"({mine_sustained / other_median:.3f})", flush=True)
    for kind, values in ratios.items():
        within = sum(abs(v - 1) <= 0.05 for v in values)
        print(f"{kind}: median ratio {statistics.median(values):.3f} (range {min(values):.3f}-{max(values):.3f}; "
              f"{within} of {len(values)} rounds within 5%)")


if __name__ == "__main__":
    main()
