"""Golden tests: the worked examples of the course slides and published figures (sources cited)."""

import pytest

from estimator import estimate
from estimator.resolve import chinchilla_for_flops, devices_for_deadline


def test_gpt3_slides_example_takes_44_5_days_on_1024_a100_at_80_tflops():
    # GPT-3: 175B params, 300B tokens (Brown et al. 2020, arXiv 2005.14165, Table D.1: 3.14e23 FLOPs).
    # Slides: 128 DGX x 8 A100 at 80 TFLOP/s (TF32) -> 3.15e23 / 80e12 / 1024 / 86400 = 44.5 days.
    est = estimate(params="175B", tokens="300B", gpu="a100", num_gpus=1024, tflops=80, precision="tf32")
    assert est.flops == pytest.approx(3.15e23, rel=1e-9)
    assert est.flops == pytest.approx(3.14e23, rel=0.005)  # the paper's own count
    assert est.wall_clock_days == pytest.approx(44.5, rel=0.005)
    assert est.mfu == pytest.approx(80 / 156, rel=1e-6)  # A100 dense TF32 peak 156 TFLOP/s
    # The printed range spans the utilisation band and contains the given point.
    assert est.range.wall_clock_days_low <= est.wall_clock_days <= est.range.wall_clock_days_high
    low_mfu = est.range.mfu_low
    assert est.range.wall_clock_days_high == pytest.approx(3.15e23 / (low_mfu * 156e12) / 1024 / 86400)


def test_gpt3_older_slides_figure_3_64e23_gives_51_4_days():
    # 3.64e23 is GPT-3's 3,640 petaflop/s-days in the wrong unit; the slides' "~51 days" comes from it.
    est = estimate(flops="3.64e23", gpu="a100", num_gpus=1024, tflops=80, precision="tf32")
    assert est.wall_clock_days == pytest.approx(51.4, rel=0.005)


def test_deepseek_v3_pretraining_hours_imply_343_tflops_and_5_328m_dollars():
    # DeepSeek-V3 (arXiv 2412.19437): 37B activated params, 14.8T tokens, 2,664K H800 GPU-hours
    # of pre-training at an assumed $2 per GPU-hour = $5.328M (Table 1).
    est = estimate(model="deepseek-v3", gpu="h800", gpu_hours="2.664M", price=2, precision="fp8")
    assert est.flops == pytest.approx(3.29e24, rel=0.01)
    assert est.cost_usd == pytest.approx(5_328_000, rel=1e-9)
    assert est.achieved_tflops_per_gpu == pytest.approx(343, rel=0.005)
    assert est.mfu == pytest.approx(343 / 1978.9, rel=0.005)  # against the dense FP8 peak


@pytest.mark.parametrize(("hours", "cost"), [("2.664M", 5.328e6), ("119K", 0.238e6), ("5K", 0.01e6), ("2.788M", 5.576e6)])
def test_deepseek_v3_table1_costs_at_two_dollars_per_h800_hour(hours, cost):
    # arXiv 2412.19437 Table 1: pre-training, context extension, post-training, total.
    est = estimate(model="deepseek-v3", gpu="h800", gpu_hours=hours, price=2, precision="fp8")
    assert est.cost_usd == pytest.approx(cost, rel=1e-9)


def test_llama31_405b_flops_match_the_model_card():
    # Llama 3.1 405B: 15.6T tokens; the paper states 3.8e25 FLOPs (arXiv 2407.21783, section 3.2.1).
    est = estimate(params="405B", tokens="15.6T", gpu="h100", gpu_hours="30.84M", price=5.2)
    assert est.flops == pytest.approx(3.8e25, rel=0.01)
    # The slides quote $160-200M for the 30.84M H100-hours of the model card.
    assert 160e6 <= est.cost_usd <= 200e6


def test_default_mfu_estimate_uses_the_dense_peak_for_the_precision_and_the_default_goodput():
    est = estimate(params="7B", tokens="1T", gpu="h100", num_gpus=8)
    assert est.achieved_tflops_per_gpu == pytest.approx(est.mfu * 989.4)
    assert est.goodput == 0.9  # Llama 3: "higher than 90% effective training time" (arXiv 2407.21783, 3.3.4)
    assert est.gpu_hours == pytest.approx(6 * 7e9 * 1e12 / (est.achieved_tflops_per_gpu * 1e12) / 3600 / 0.9)
    assert est.wall_clock_days == pytest.approx(est.gpu_hours / 8 / 24)
    given = estimate(params="7B", tokens="1T", gpu="h100", num_gpus=8, tflops=est.achieved_tflops_per_gpu)
    assert given.goodput == 1.0 and given.gpu_hours == pytest.approx(est.gpu_hours * 0.9)


def test_deadline_answers_the_smallest_device_count_that_finishes_in_time():
    n = devices_for_deadline(flops=3.15e23, achieved_tflops=80, deadline_s=44.5 * 86400)
    assert n == 1025  # 1024 GPUs need 44.50x days, a hair over 44.5
    est = estimate(gpu="a100", params="175B", tokens="300B", tflops=80, precision="tf32", deadline_s="30d")
    assert est.plan.num_gpus_needed == est.num_gpus
    assert est.wall_clock_days <= 30 < est.gpu_hours / (est.num_gpus - 1) / 24


def test_budget_buys_tokens_at_the_price_and_throughput():
    est = estimate(gpu="h800", params="37B", budget_usd="5.328M", price=2, tflops=342.6, precision="fp8")
    assert est.plan.tokens == pytest.approx(14.8e12, rel=0.001)  # DeepSeek-V3 again, forwards
    assert est.cost_usd == pytest.approx(5.328e6)


def test_chinchilla_budget_splits_compute_at_20_tokens_per_parameter():
    # Hoffmann et al. 2022 (arXiv 2203.15556): Chinchilla 70B params on 1.4T tokens, 5.76e23 FLOPs (Table 3 row).
    params, tokens = chinchilla_for_flops(6 * 70e9 * 1.4e12)
    assert params == pytest.approx(70e9, rel=1e-9)
    assert tokens == pytest.approx(1.4e12, rel=1e-9)
