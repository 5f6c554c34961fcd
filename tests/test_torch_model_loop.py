"""The profile -> estimate loop on a user's own Hugging Face Llama, at a tiny size on the CPU.

``benchmarks/torch_model_loop.py`` measures how close the estimate comes to a real training loop
(the 15% figure); this test runs the same three steps in-process at a size that takes seconds and
checks only what cannot flake: the estimate uses the file's measured tokens/s for the config, and
it is within 2x of the loop's median step (both rates are typical steps of the same model and
batch on the same CPU, so a load burst moves neither much). A wrong token count per sample (1
instead of 64, or the batch left out) would be off by 4x or more.
"""

from __future__ import annotations

import statistics
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


def _loop_median_step_s(steps: int = 12, warmup: int = 3) -> float:
    """A plain training loop of the same model, each step timed; the median step."""
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
    return statistics.median(times)


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
    # ... and that rate is the real loop's within 2x
    ratio = predicted_step_s / _loop_median_step_s()
    assert 0.5 < ratio < 2.0, f"predicted / measured step = {ratio:.3f}"
