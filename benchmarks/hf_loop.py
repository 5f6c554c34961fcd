"""An independent training loop of benchmarks/hf_small.py's model (no gpucost code): the check that
``gpucost profile --torch-model benchmarks/hf_small.py:small_llama`` measures what training it does.

    python benchmarks/hf_loop.py cuda|cpu [SECONDS] [OUT.json]

The model, batch and optimizer come from the user's file (hf_small.py), as a user's own training
script would build them; the loop is written here: bf16 autocast with fp32 master weights on CUDA
(what the GPU profile measures by default), fp32 on a CPU; forward, ``.loss``, backward,
``optimizer.step()``, ``zero_grad(set_to_none=True)``; 3 warm-up steps, then steps for SECONDS
(default 20 on a GPU, 30 on a CPU), each followed by a device synchronisation and timed with
``time.perf_counter``. Reported: the throughput over the timed steps (their samples and tokens /
their seconds: what a run's wall-clock is made of), the median step, the step count, and on CUDA the
peak memory (``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_small import seq_len, small_llama  # noqa: E402  (the user's model file)


def main() -> None:
    device = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cpu")
    cuda = device.type == "cuda"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else (20.0 if cuda else 30.0)
    built = small_llama(device=device)
    model, batch, optimizer = built["model"], built["batch"], built["optimizer"]
    model.train()
    samples = batch["input_ids"].shape[0]

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(3):
        step()
    sync()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    total = sum(times)
    out = {"model": built["id"], "device": str(device), "dtype": "bf16" if cuda else "fp32", "batch": samples,
           "seq_len": seq_len(device), "steps": len(times), "seconds": round(total, 4),
           "samples_per_s": samples * len(times) / total, "tokens_per_s": samples * seq_len(device) * len(times) / total,
           "median_step_s": statistics.median(times),
           "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
           "torch": torch.__version__}
    text = json.dumps(out)
    print(text)
    if len(sys.argv) > 3:
        with open(sys.argv[3], "w", encoding="utf-8") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
