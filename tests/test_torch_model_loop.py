"""The profile -> estimate loop on a user's own Hugging Face Llama, at a tiny size on the CPU.

``benchmarks/torch_model_loop.py`` measures how close the estimate comes to a real training loop
(the 15% figure); this test runs the same three steps in-process at a size that takes seconds and
checks only what cannot flake: the estimate uses the file's measured tokens/s for the config, and the
profile's fastest step is within 2x of the loop's fastest step (the same model and batch on the same
CPU; fastest against fastest, so that a load burst during either run moves neither). A wrong token count per sample (1
instead of 64, or the batch left out) would be off by 4x or more.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
CONFIG = str(BENCH / "configs" / "micro-llama.json")
BATCH, SEQ = 4, 64


def _loop_best_step_s(steps: int = 12, warmup: int = 3) -> float:
    """A plain training loop of the same model, each step timed; the fastest step (a load burst on the
    shared machine slows some steps, rarely all twelve)."""
    import torch

    sys.path.insert(0, str(BENCH))
    try:
        import user_llama
    finally:
        sys.path.remove(str(BENCH))
    built = user_llama.micro_llama(batch_size=BATCH, device="cpu")
    model, optimizer = built["model"], built["optimizer"]
    generator = torch.Generator().manual_seed(1)
    times = []
    for i in range(warmup + steps):
        x = torch.randint(0, model.config.vocab_size, (BATCH, SEQ), generator=generator)
        start = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return min(times)


def test_the_estimate_of_a_users_hf_llama_is_its_training_loop(cli, tmp_path, monkeypatch):
    import yaml

    from profiler.run import Budget
    from profiler.torch_model.step import profile_torch_model

    monkeypatch.chdir(ROOT)
    record = profile_torch_model("benchmarks/user_llama.py:micro_llama", device="cpu", dtypes=["fp32"],
                                 batch_size=BATCH, budget=Budget(warmup_s=0.3, budget_s=2.0, min_iters=5,
                                                                 max_iters=100_000))
    calibration = tmp_path / "cal.yaml"
    calibration.write_text(yaml.safe_dump(record, sort_keys=False))
    section = record["torch_model"]
    assert section["id"] == "micro-llama" and section["batch_size"] == BATCH

    tokens = 1000 * BATCH * SEQ
    result = cli("estimate", "--calibration", str(calibration), "--hf-config", CONFIG, "--tokens", str(tokens),
                 "--seq-len", str(SEQ), "--precision", "fp32", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert "tokens of its layers" in data["throughput_source"]  # matched by shapes, not the id
    assert data["seq_len"] == SEQ
    predicted_step_s = data["wall_clock_days"] * 86400.0 / 1000
    # the estimate is exactly the file's rate (the same batch and length) ...
    assert predicted_step_s == pytest.approx(BATCH / section["results"]["fp32"]["samples_per_s"], rel=1e-6)
    # ... and the profile timed a real step of the batch: its fastest step is the loop's fastest within 2x
    # (fastest against fastest, so that a load burst on the shared machine during either run moves neither)
    profiled_best_s = section["flops_per_sample"] * BATCH / (section["results"]["fp32"]["best_tflops"] * 1e12)
    ratio = profiled_best_s / _loop_best_step_s()
    assert 0.5 < ratio < 2.0, f"profiled / loop fastest step = {ratio:.3f}"
