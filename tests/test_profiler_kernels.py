"""The measured kernels: their FLOP and byte counts (cross-checked with torch's FlopCounterMode),
that they compute what they claim, and the fp32/tf32 mode switch."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from profiler.kernels import (copy_kernel, matmul_flops, matmul_kernel, matmul_precision, mlp_block,  # noqa: E402
                              mlp_kernel, mlp_params, mlp_train_flops)

CPU = torch.device("cpu")


def counted_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_matmul_flops_are_2mnk_as_counted_by_torch():
    a, b = torch.randn(64, 48), torch.randn(48, 32)
    assert matmul_flops(64, 32, 48) == counted_flops(lambda: torch.mm(a, b)) == 2 * 64 * 32 * 48


@pytest.mark.parametrize("dtype", ["fp32", "tf32", "bf16", "fp16", "fp8"])
def test_matmul_kernel_work_matches_flop_counter(dtype):
    if dtype == "fp8" and not hasattr(torch, "float8_e4m3fn"):
        pytest.skip("torch without float8")
    kernel = matmul_kernel(64, 32, 48, dtype, CPU)
    assert kernel.work == counted_flops(kernel.run)


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp8"])
def test_matmul_kernel_writes_the_product_into_its_output(dtype):
    kernel = matmul_kernel(32, 16, 48, dtype, CPU)
    t = kernel.tensors
    kernel.run()
    expected = t["a"].float() @ t["b"].float()
    assert t["c"].shape == (32, 16)
    assert torch.allclose(t["c"].float(), expected, rtol=0.05, atol=0.5)


def test_matmul_kernel_inputs_are_random_not_zeros():
    t = matmul_kernel(64, 64, 64, "bf16", CPU).tensors
    for name in ("a", "b", "c_random"):
        assert t[name].float().std() > 0.5, name


def test_matmul_kernel_before_hook_rerandomises_output_and_flushes():
    flushed = []
    kernel = matmul_kernel(16, 16, 16, "fp32", CPU, flush=lambda: flushed.append(True))
    kernel.run()
    kernel.before()
    assert torch.equal(kernel.tensors["c"], kernel.tensors["c_random"])
    assert flushed == [True]


def test_mlp_params_count_the_block():
    assert mlp_params(96) == sum(p.numel() for p in mlp_block(96).parameters()) == 8 * 96**2 + 5 * 96


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_mlp_6_params_tokens_agrees_with_flop_counter_within_1pct(dtype):
    width, tokens = 128, 64
    kernel = mlp_kernel(width, tokens, dtype, CPU)
    counted = counted_flops(kernel.run)  # forward + backward + optimizer step
    assert counted == 48 * width**2 * tokens  # the matmuls: 3 x 2 x (2 layers of 4 d^2) per token
    assert kernel.work == mlp_train_flops(width, tokens)
    assert abs(kernel.work - counted) / counted < 0.01


def test_mlp_step_runs_the_optimizer_and_clears_gradients():
    kernel = mlp_kernel(32, 16, "fp32", CPU, optimizer="sgd")
    model = kernel.tensors["model"]
    before = [p.detach().clone() for p in model.parameters()]
    kernel.run()
    assert all(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())
    assert kernel.tensors["x"].grad is None


def test_mlp_kernel_rejects_fp8_and_unknown_optimizer():
    with pytest.raises(ValueError, match="no MLP training step"):
        mlp_kernel(32, 16, "fp8", CPU)
    with pytest.raises(ValueError, match="unknown optimizer"):
        mlp_kernel(32, 16, "fp32", CPU, optimizer="lion")


def test_copy_kernel_counts_bytes_read_and_written():
    kernel = copy_kernel(1 << 20, CPU)
    kernel.run()
    assert kernel.work == 2 * (1 << 20)
    assert torch.equal(kernel.tensors["dst"], kernel.tensors["src"])


def test_matmul_precision_selects_tf32_only_for_tf32_and_restores():
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip("torch < 2.9 has only allow_tf32")
    original = matmul.fp32_precision
    with matmul_precision("tf32"):
        assert matmul.fp32_precision == "tf32"
    with matmul_precision("fp32"):
        assert matmul.fp32_precision == "ieee"
    assert matmul.fp32_precision == original


def test_unknown_dtype_is_rejected():
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        matmul_kernel(16, 16, 16, "int8", CPU)
