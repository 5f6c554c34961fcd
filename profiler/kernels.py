"""The measured kernels: matmul per dtype (fp8 via scaled matmul), an MLP training step, a copy.

Each builder allocates its inputs (random, never zeros: zeros flip fewer bits, draw less power
and read faster) and returns a :class:`Kernel`: the call to time, an untimed ``before`` hook
(cache flush, output re-randomisation) and the work one call does (FLOPs or bytes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from estimator.vocab import PROFILE_DTYPES

DTYPES = PROFILE_DTYPES
_TORCH_DTYPE = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Kernel:
    """One benchmark ready to run. ``work``: FLOPs (matmul, mlp) or bytes moved (copy) per call."""

    run: Callable[[], Any]
    work: float
    before: Callable[[], Any] | None = None
    detail: dict[str, int] = field(default_factory=dict)
    tensors: dict[str, Any] = field(default_factory=dict)  # the operands, for inspection


@contextlib.contextmanager
def matmul_precision(dtype: str) -> Iterator[None]:
    """Within the block, fp32 matmuls run as IEEE fp32 (``tf32`` for dtype ``tf32``); restored after.

    Uses ``torch.backends.cuda.matmul.fp32_precision`` where torch has it (mixing it with the
    legacy ``allow_tf32`` flag is an error in recent torch), else ``allow_tf32``.
    """
    matmul = torch.backends.cuda.matmul
    want_tf32 = dtype == "tf32"
    if hasattr(matmul, "fp32_precision"):
        old = matmul.fp32_precision
        matmul.fp32_precision = "tf32" if want_tf32 else "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = old
    else:  # pragma: no cover - torch < 2.9
        old = matmul.allow_tf32
        matmul.allow_tf32 = want_tf32
        try:
            yield
        finally:
            matmul.allow_tf32 = old


class CacheFlush:
    """Writes a buffer larger than the last-level cache (GPU L2, CPU L3) so no input stays cached."""

    def __init__(self, device: torch.device, nbytes: int):
        self.nbytes = nbytes
        self.buffer = torch.empty(max(nbytes // 4, 1), dtype=torch.int32, device=device)

    def __call__(self) -> None:
        self.buffer.zero_()


def matmul_flops(m: int, n: int, k: int) -> int:
    """FLOPs of an (m x k) @ (k x n) matmul: one multiply and one add per term, 2mnk."""
    return 2 * m * n * k


def matmul_kernel(m: int, n: int, k: int, dtype: str, device: torch.device,
                  flush: Callable[[], Any] | None = None) -> Kernel:
    """``C = A @ B`` into a preallocated C, re-randomised (and the cache flushed) before each call.

    fp8: ``torch._scaled_mm`` on e4m3 inputs with unit per-tensor scales, B column-major (as the
    kernel requires), bf16 output. Others: ``torch.mm(A, B, out=C)`` in the dtype (fp32 and tf32
    both in float32; :func:`matmul_precision` picks the mode).
    """
    if dtype == "fp8":
        a = torch.randn(m, k, device=device).to(torch.float8_e4m3fn)
        b = torch.randn(n, k, device=device).to(torch.float8_e4m3fn).t()  # (k, n), column-major
        scale = torch.ones(1, dtype=torch.float32, device=device)  # per-tensor scale, as mamf-finder
        c = torch.empty(m, n, dtype=torch.bfloat16, device=device)
        c_random = torch.randn(m, n, device=device).to(torch.bfloat16)

        def run() -> None:
            torch._scaled_mm(a, b, scale, scale, out_dtype=torch.bfloat16, out=c)
    elif dtype in _TORCH_DTYPE:
        torch_dtype = _TORCH_DTYPE[dtype]
        a = torch.randn(m, k, device=device, dtype=torch_dtype)
        b = torch.randn(k, n, device=device, dtype=torch_dtype)
        c = torch.empty(m, n, device=device, dtype=torch_dtype)
        c_random = torch.randn(m, n, device=device, dtype=torch_dtype)

        def run() -> None:
            torch.mm(a, b, out=c)
    else:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")

    def before() -> None:
        if flush is not None:
            flush()
        c.copy_(c_random)

    return Kernel(run=run, work=float(matmul_flops(m, n, k)), before=before, detail={"m": m, "n": n, "k": k},
                  tensors={"a": a, "b": b, "c": c, "c_random": c_random})


def mlp_block(width: int) -> torch.nn.Module:
    """Transformer-style MLP: Linear(d, 4d) -> GELU -> Linear(4d, d), with biases (GPT-2 style)."""
    return torch.nn.Sequential(torch.nn.Linear(width, 4 * width), torch.nn.GELU(), torch.nn.Linear(4 * width, width))


def mlp_params(width: int) -> int:
    """Parameters of :func:`mlp_block`: 2 weight matrices of 4d^2 plus biases 4d + d = 8d^2 + 5d."""
    return 8 * width * width + 5 * width


def mlp_train_flops(width: int, tokens: int) -> int:
    """Training FLOPs of one step: 6 * params * tokens (Kaplan et al. 2020, arXiv 2001.08361, 2.1).

    2 per parameter per token forward, 4 backward (input and weight gradients). The matmuls alone
    are 48 d^2 per token; the bias terms add 5d/(8d^2), under 0.5% from d = 128. GELU, the optimizer
    step and bias additions are not counted (they are not matmul FLOPs), as in MFU accounting.
    """
    return 6 * mlp_params(width) * tokens


def mlp_kernel(width: int, tokens: int, dtype: str, device: torch.device, optimizer: str = "adamw",
               flush: Callable[[], Any] | None = None) -> Kernel:
    """One training step of :func:`mlp_block` on ``tokens`` rows: forward, backward, optimizer step.

    fp32 master weights; bf16/fp16 run under ``torch.autocast`` (mixed precision as in training).
    The input requires grad, as a block inside a network does, so the backward pass computes input
    gradients for both layers (that is what makes it 6 * params * tokens and not less).
    """
    if dtype not in _TORCH_DTYPE:
        raise ValueError(f"no MLP training step for dtype {dtype!r}")
    amp_dtype = None if dtype in ("fp32", "tf32") else _TORCH_DTYPE[dtype]
    model = mlp_block(width).to(device)
    x = torch.randn(tokens, width, device=device, requires_grad=True)
    grad_out = torch.randn(tokens, width, device=device, dtype=amp_dtype or torch.float32)
    if optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; use adamw or sgd")

    def step() -> None:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            y = model(x)
        y.backward(grad_out)
        opt.step()
        opt.zero_grad(set_to_none=True)
        x.grad = None

    return Kernel(run=step, work=float(mlp_train_flops(width, tokens)), before=flush,
                  detail={"width": width, "tokens": tokens, "params": mlp_params(width)},
                  tensors={"x": x, "grad_out": grad_out, "model": model, "optimizer": opt})


def copy_kernel(nbytes: int, device: torch.device) -> Kernel:
    """``dst.copy_(src)`` of two ``nbytes`` buffers; work = bytes read + bytes written = 2 * nbytes."""
    numel = max(nbytes // 4, 1)
    src = torch.randn(numel, device=device)
    dst = torch.empty_like(src)
    return Kernel(run=lambda: dst.copy_(src), work=float(2 * numel * 4), detail={"buffer_bytes": numel * 4},
                  tensors={"src": src, "dst": dst})
