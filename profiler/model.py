"""A model's own training step: build its transformer in torch from an Architecture and time it.

:func:`build_model` turns an :class:`estimator.model.arch.Architecture` into a decoder-only torch module
with the model's real widths: token embedding, learned absolute positions (GPT-2) or rotary
embeddings (Llama, Mistral, Qwen), pre-norm blocks with LayerNorm (weight and bias) or RMSNorm,
attention with grouped-query heads and the biases the architecture has (one fused q/k/v projection,
as GPT-2 and Megatron-LM do; the same parameters and FLOPs as three), Qwen3's per-head q/k norms,
``scaled_dot_product_attention(is_causal=True)``, a SwiGLU (gate, up, down; SiLU) or plain
(fc, GELU tanh, proj) MLP, or a Mixtral/DeepSeek-style mixture of experts (top-k routing, each
expert's matmuls on the tokens routed to it only, plus shared experts), a final norm and an output
head, tied to the embedding or not. Its parameter count equals :func:`estimator.model.arch.count_params`
exactly. Not built: MLA attention (DeepSeek-V2/V3), encoders (BERT), multi-token prediction.

:func:`profile_model` times forward + backward + AdamW step of that model on random tokens with a
next-token cross-entropy loss, with as many of its layers as fit in the device's free memory
(embedding and output head always included) at the largest power-of-two micro-batch that fits and
keeps one step within the time budget, and returns the calibration file's ``model`` section
(schema: :mod:`estimator.records.calibration`). TFLOP/s count the detailed training model FLOPs of the timed
stack (:func:`estimator.model.flops.flops_per_token` ``.train_model``: matmuls, full s x s attention
scores per PaLM appendix B, output head; x 3 for forward + backward; no recomputation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from estimator.model.arch import Architecture
from estimator.errors import GpucostError, InputError
from estimator.model.flops import flops_per_token
from estimator.model.memory import training_memory

from profiler.timing import Timing, clock_for

GIB = 2**30
_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}
TRAIN_DTYPES = ("fp32", "tf32", "bf16", "fp16")
ROPE_THETA = 10_000.0  # the base does not change the work done; any value times the same
# Share of the device's free memory the timed stack may plan to use; the rest absorbs what the
# estimate leaves out (allocator caching and fragmentation, library workspaces, temporaries).
MEMORY_FRACTION = 0.8
DEFAULT_TIME_BUDGET_S = {"cpu": 40.0, "gpu": 10.0}  # timed steps; warm-up comes on top
DEFAULT_MIN_ITERS = 4
MAX_MICRO_BATCH = 256
_FP8 = "not measured: an fp8 training step needs scaled-matmul recipes (Transformer Engine, torchao)"

try:  # enable_gqa arrived in torch 2.5; older versions get k/v repeated per query group
    _MAJOR, _MINOR = (int(p) for p in torch.__version__.split(".")[:2])
    _SDPA_GQA = (_MAJOR, _MINOR) >= (2, 5)
except ValueError:  # pragma: no cover - unusual version strings
    _SDPA_GQA = False


# -- what can be built ---------------------------------------------------------------------------


def unsupported_reason(arch: Architecture) -> str | None:
    """Why :func:`build_model` cannot build ``arch`` (one line), or None when it can."""
    if arch.mla is not None:
        return (f"profiling MLA attention is not supported yet; {arch.name} uses multi-head latent attention "
                "(DeepSeek-V2/V3). Profile a model with standard attention, or use the sweep's MLP figure")
    if not arch.causal or not arch.lm_head:
        return (f"profiling encoder models is not supported yet; {arch.name} is an encoder ({arch.model_type}) "
                "without a causal language-model head")
    if arch.position_embedding == "rotary" and arch.head_dim % 2:
        return f"rotary embeddings need an even head_dim; {arch.name} has {arch.head_dim}"
    return None


def check_supported(arch: Architecture) -> None:
    """Raise GpucostError (one line) unless :func:`build_model` can build ``arch``."""
    reason = unsupported_reason(arch)
    if reason is not None:
        raise GpucostError(reason)


def truncated(arch: Architecture, num_layers: int) -> Architecture:
    """``arch`` with its first ``num_layers`` transformer layers (embedding and head unchanged)."""
    if num_layers == arch.num_layers:
        return arch
    moe = arch.moe
    if moe is not None and moe.first_k_dense > num_layers:
        moe = replace(moe, first_k_dense=num_layers)
    return replace(arch, num_layers=num_layers, moe=moe, num_mtp_layers=0)


# -- the modules ---------------------------------------------------------------------------------


def _norm(arch: Architecture, width: int) -> nn.Module:
    return nn.LayerNorm(width, eps=1e-5) if arch.norm == "layernorm" else nn.RMSNorm(width, eps=1e-6)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021, arXiv 2104.09864), the "rotate half" layout."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class FFN(nn.Module):
    """SwiGLU ``down(silu(gate(x)) * up(x))`` when gated, else ``proj(gelu_tanh(fc(x)))`` (GPT-2)."""

    def __init__(self, arch: Architecture, width: int, bias: bool):
        super().__init__()
        h = arch.hidden_size
        self.gated = arch.gated_ffn
        self.gate = nn.Linear(h, width, bias=bias) if self.gated else None
        self.up = nn.Linear(h, width, bias=bias)
        self.down = nn.Linear(width, h, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            return self.down(F.silu(self.gate(x)) * self.up(x))
        return self.down(F.gelu(self.up(x), approximate="tanh"))


class MoEFFN(nn.Module):
    """Top-k mixture of experts (Mixtral; DeepSeekMoE's shared experts and selection bias).

    The router (``hidden x num_experts``, no bias) scores each token; the top-k experts run on the
    tokens routed to them only (gathered rows, one matmul set per expert), their outputs weighted by
    the renormalised router probabilities and summed; shared experts run on every token.
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        moe = arch.moe
        assert moe is not None
        self.top_k = moe.experts_per_token
        self.router = nn.Linear(arch.hidden_size, moe.num_experts, bias=False)
        # DeepSeek-V3's score-correction bias: shifts the selection only, gets no gradient.
        self.selection_bias = nn.Parameter(torch.zeros(moe.num_experts), requires_grad=False) \
            if moe.router_bias else None
        self.experts = nn.ModuleList(FFN(arch, moe.expert_ffn_size, False) for _ in range(moe.num_experts))
        self.shared = FFN(arch, moe.shared_ffn_size, False) if moe.num_shared_experts else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        probs = F.softmax(self.router(flat), dim=-1, dtype=torch.float32)
        scores = probs if self.selection_bias is None else probs + self.selection_bias
        chosen = torch.topk(scores, self.top_k, dim=-1).indices
        weights = probs.gather(1, chosen)
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(flat.dtype)
        out = torch.zeros_like(flat)
        for index, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == index)
            if token.numel():
                out = out.index_add(0, token, expert(flat[token]) * weights[token, slot, None])
        if self.shared is not None:
            out = out + self.shared(flat)
        return out.reshape(shape)


class Attention(nn.Module):
    """Causal self-attention: fused q/k/v projection, GQA, optional q/k norms and rotary, SDPA."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        h = arch.hidden_size
        self.qkv = nn.Linear(h, arch.q_dim + 2 * arch.kv_dim, bias=arch.qkv_bias)
        self.out = nn.Linear(arch.q_dim, h, bias=arch.attn_out_bias)
        self.q_norm = _norm(arch, arch.head_dim) if arch.qk_norm else None
        self.k_norm = _norm(arch, arch.head_dim) if arch.qk_norm else None

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        a = self.arch
        b, s, _ = x.shape
        q, k, v = self.qkv(x).split([a.q_dim, a.kv_dim, a.kv_dim], dim=-1)
        q = q.view(b, s, a.num_heads, a.head_dim).transpose(1, 2)
        k = k.view(b, s, a.num_kv_heads, a.head_dim).transpose(1, 2)
        v = v.view(b, s, a.num_kv_heads, a.head_dim).transpose(1, 2)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            cos, sin = rope
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        extra: dict[str, Any] = {}
        if a.num_kv_heads != a.num_heads:
            if _SDPA_GQA:
                extra["enable_gqa"] = True
            else:  # pragma: no cover - torch < 2.5
                group = a.num_heads // a.num_kv_heads
                k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, **extra)
        return self.out(y.transpose(1, 2).reshape(b, s, a.q_dim))


class Block(nn.Module):
    """Pre-norm transformer layer: ``x + attn(norm(x))``, then ``x + ffn(norm(x))``."""

    def __init__(self, arch: Architecture, moe_layer: bool):
        super().__init__()
        self.attn_norm = _norm(arch, arch.hidden_size)
        self.attn = Attention(arch)
        self.ffn_norm = _norm(arch, arch.hidden_size)
        self.ffn = MoEFFN(arch) if moe_layer else FFN(arch, arch.ffn_size, arch.mlp_bias)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope)
        return x + self.ffn(self.ffn_norm(x))


class Decoder(nn.Module):
    """A decoder-only language model of ``arch``: token ids (batch, seq) -> logits (batch, seq, vocab)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        check_supported(arch)
        self.arch = arch
        h = arch.hidden_size
        self.embed = nn.Embedding(arch.vocab_size, h)
        self.positions = (nn.Embedding(arch.max_position_embeddings, h)  # type: ignore[arg-type]
                          if arch.position_embedding == "learned" else None)
        self.layers = nn.ModuleList(Block(arch, arch.moe is not None and arch.moe.is_moe_layer(i))
                                    for i in range(arch.num_layers))
        self.norm = _norm(arch, h) if arch.final_norm else None
        self.head = None if arch.tie_embeddings else nn.Linear(h, arch.vocab_size, bias=False)
        if arch.position_embedding == "rotary":
            inv_freq = 1.0 / ROPE_THETA ** (torch.arange(0, arch.head_dim, 2, dtype=torch.float32) / arch.head_dim)
            self.register_buffer("inv_freq", inv_freq, persistent=False)
        else:
            self.inv_freq = None

    def _rope(self, seq_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.inv_freq is None:
            return None
        angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), self.inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        if self.positions is not None:
            x = x + self.positions(torch.arange(ids.shape[1], device=ids.device))
        rope = self._rope(ids.shape[1], ids.device)
        for layer in self.layers:
            x = layer(x, rope)
        if self.norm is not None:
            x = self.norm(x)
        return self.head(x) if self.head is not None else F.linear(x, self.embed.weight)


def build_model(arch: Architecture, *, num_layers: int | None = None) -> Decoder:
    """The torch model of ``arch`` (its first ``num_layers`` layers; default all), on the current
    default device (build under ``with torch.device("meta"):`` to count a large model's parameters
    without memory). Raises GpucostError for what cannot be built (see :func:`unsupported_reason`)."""
    if num_layers is not None and not 1 <= num_layers <= arch.num_layers:
        raise InputError(f"num_layers must be between 1 and {arch.num_layers}, got {num_layers!r}")
    return Decoder(truncated(arch, num_layers or arch.num_layers))


def num_params(model: nn.Module) -> int:
    """Parameters of ``model`` (elements), the selection bias included, as count_params counts."""
    return sum(p.numel() for p in model.parameters())


# -- memory --------------------------------------------------------------------------------------


def training_step_bytes(arch: Architecture, *, seq_len: int, micro_batch: int, dtype: str) -> float:
    """Predicted peak bytes of one training step of :class:`Decoder` ``arch`` (all its layers).

    Model states: fp32 weights, fp32 gradients, AdamW's two fp32 moments (4 + 4 + 8 bytes per
    parameter; under autocast + 2 for the cached 16-bit weight copies). Activations: Korthikanti et
    al. 2022 per layer with a flash-attention kernel (no s x s scores), counted in 16-bit; x 2 in
    fp32, x 1.5 under autocast (the residual stream and the norms' inputs stay fp32). Output: the
    logits, their softmax and its gradient in fp32 (3 x 4 bytes per token and vocabulary entry; + 2
    for the 16-bit logits under autocast). Units: bytes. On a CPU, gpt2-small at 1024 tokens in
    fp32: predicted 3.0 GiB, peak resident memory of the process 3.3 GiB (torch itself included).
    """
    amp = dtype in _AMP
    memory = training_memory(arch, seq_len=seq_len, micro_batch=micro_batch, flash_attention=True,
                             weight_bytes=6.0 if amp else 4.0, grad_bytes=4.0, optimizer_bytes=8.0)
    activations = memory.activations_layers_bytes * (1.5 if amp else 2.0)
    logits = micro_batch * seq_len * arch.vocab_size * (14.0 if amp else 12.0)
    return memory.model_states_bytes + activations + logits


def _step_bytes(arch: Architecture, seq_len: int, micro_batch: int, dtypes: Sequence[str]) -> float:
    return max(training_step_bytes(arch, seq_len=seq_len, micro_batch=micro_batch, dtype=d) for d in dtypes)


def choose_layers(arch: Architecture, *, seq_len: int, dtypes: Sequence[str], usable_bytes: float | None,
                  max_layers: int | None = None, micro_batch: int = 1) -> int:
    """How many of ``arch``'s layers to time: all of them when the whole model's training step fits
    in ``usable_bytes`` at ``micro_batch``, else as many as fit (at least one), at most ``max_layers``.
    ``usable_bytes`` None (unknown free memory): all. Raises GpucostError when not even the
    embedding, the output head and one layer fit."""
    top = min(arch.num_layers, max_layers or arch.num_layers)
    if usable_bytes is None:
        return top
    for layers in range(top, 0, -1):
        if _step_bytes(truncated(arch, layers), seq_len, micro_batch, dtypes) <= usable_bytes:
            return layers
    need = _step_bytes(truncated(arch, 1), seq_len, micro_batch, dtypes)
    raise GpucostError(f"{arch.name} does not fit: its embedding, output head and one layer need about "
                       f"{need / GIB:.1f} GiB for a training step at seq_len {seq_len}, micro-batch {micro_batch}; "
                       f"{usable_bytes / GIB:.1f} GiB are usable. Try a shorter --seq-len")


def largest_micro_batch(arch: Architecture, *, seq_len: int, dtypes: Sequence[str], usable_bytes: float | None,
                        cap: int = MAX_MICRO_BATCH) -> int:
    """The largest power of two (at most ``cap``) whose training step of ``arch`` fits ``usable_bytes``."""
    micro_batch = 1
    if usable_bytes is None:
        return micro_batch
    while micro_batch * 2 <= cap and _step_bytes(arch, seq_len, micro_batch * 2, dtypes) <= usable_bytes:
        micro_batch *= 2
    return micro_batch


# -- the timed step ------------------------------------------------------------------------------


class TrainStep:
    """One training step of ``model`` on a fixed random batch: forward under autocast for bf16/fp16
    (fp32 master weights, as mixed-precision training runs), next-token cross-entropy in fp32,
    backward, AdamW step, gradients set to None."""

    def __init__(self, model: Decoder, optimizer: torch.optim.Optimizer, device: torch.device):
        self.model, self.optimizer, self.device = model, optimizer, device
        self.dtype = "fp32"
        self.inputs = self.targets = None

    def set_batch(self, micro_batch: int, seq_len: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        tokens = torch.randint(0, self.model.arch.vocab_size, (micro_batch, seq_len + 1), generator=generator)
        tokens = tokens.to(self.device)
        self.inputs, self.targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def __call__(self) -> None:
        amp = _AMP.get(self.dtype)
        with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = self.model(self.inputs)
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), self.targets.view(-1))
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def _is_oom(exc: BaseException) -> bool:
    from profiler.run import is_out_of_memory

    return is_out_of_memory(exc)


def _release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _timed_steps(step: Callable[[], None], clock: Any, iterations: int) -> Timing:
    """``iterations`` steps, each between two clock marks (a sync before each read on the CPU,
    CUDA events on a GPU); one sync at the end, then every interval is read."""
    marks = []
    for _ in range(iterations):
        start = clock.mark()
        step()
        marks.append((start, clock.mark()))
    clock.synchronize()
    return Timing(tuple(clock.elapsed_s(a, b) for a, b in marks))


def _wall(step: Callable[[], None], clock: Any) -> float:
    clock.synchronize()
    start = time.perf_counter()
    step()
    clock.synchronize()
    return time.perf_counter() - start


def default_dtypes(backend: str, supported: Callable[[str], str | None]) -> list[str]:
    """The precision a model is trained in on this kind of device: bf16 on a GPU that has it (else
    fp16, else fp32); fp32 on a CPU (CPU bf16 is often emulated and several times slower)."""
    if backend != "cpu":
        for dtype in ("bf16", "fp16"):
            if supported(dtype) is None:
                return [dtype]
    return ["fp32"]


_CPU_BF16 = ("not measured by default on a CPU: bf16 there is often emulated and several times slower "
             "than fp32; ask for it with --dtype bf16")


def plan_dtypes(info: Any, requested: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    """(dtypes to list in the ``model`` section, reasons for those not to be measured) on the device
    ``info`` (a :class:`profiler.device.DeviceInfo`). ``requested`` None: the device's training
    precision (:func:`default_dtypes`), and on a CPU bf16 listed as skipped with why."""
    from profiler.device import unsupported_reason as device_reason

    def reason(dtype: str) -> str | None:
        return device_reason(info, dtype) or (_FP8 if dtype == "fp8" else None)

    if requested is None:
        dtypes = default_dtypes(info.backend, reason)
        skipped: dict[str, str] = {}
        if info.backend == "cpu":
            dtypes.append("bf16")
            skipped["bf16"] = _CPU_BF16
        return dtypes, skipped
    dtypes = list(requested)
    return dtypes, {d: r for d in dtypes if (r := reason(d)) is not None}


def profile_model(
    arch: Architecture, *, model_id: str, device: torch.device, dtype: str | Sequence[str] = "fp32",
    seq_len: int | None = None, micro_batch: int | None = None, time_budget_s: float | None = None,
    max_layers: int | None = None, free_bytes: int | None = None, source: str | None = None,
    min_iters: int = DEFAULT_MIN_ITERS, max_iters: int = 1000, warmup_s: float = 0.0,
    skipped: dict[str, str] | None = None, progress: Callable[[str], None] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Time training steps of ``arch``'s real layers on ``device`` and return the calibration
    record's ``model`` section (schema in :mod:`estimator.records.calibration`).

    1. Layers: all when the whole model's training step fits in ``MEMORY_FRACTION`` of the free
       memory (``free_bytes``, default: what the device reports), else as many as fit (embedding,
       final norm and output head always built); at most ``max_layers``.
    2. Micro-batch: ``micro_batch`` if given; else the largest power of two that fits in memory and
       whose step, extrapolated from a step at micro-batch 1, takes at most ``time_budget_s /
       min_iters`` (default budget: 40 s on a CPU, 10 s on a GPU), so a quick profile stays quick.
    3. Per dtype (in the order given; fp32, tf32 or bf16/fp16 under autocast): warm-up steps (at
       least one at the final micro-batch and ``warmup_s`` seconds), then ``clamp(time_budget_s /
       step time, min_iters, max_iters)`` steps timed one by one (a device sync before each clock
       read on a CPU, CUDA events on a GPU), reported as best / median / worst TFLOP/s of the
       detailed training model FLOPs of the timed stack, the median tokens per second and the spread.

    ``skipped`` maps dtypes that are not measured to the reason (recorded as ``skipped``). Out of
    memory during a step halves the micro-batch, then drops a quarter of the layers. Raises
    GpucostError when the model cannot be built or does not fit, InputError for bad arguments.
    """
    from profiler.kernels import matmul_precision
    from profiler.device import free_memory_bytes

    check_supported(arch)
    dtypes = [dtype] if isinstance(dtype, str) else list(dtype)
    skipped = dict(skipped or {})
    for name in dtypes:
        if name not in TRAIN_DTYPES and name not in skipped:
            if name == "fp8":
                skipped[name] = _FP8
            else:
                raise InputError(f"no training step for dtype {name!r}; use one of {', '.join(TRAIN_DTYPES)}")
    run = [d for d in dtypes if d not in skipped]
    if seq_len is None:
        seq_len = arch.default_seq_len
        if seq_len is None:
            raise InputError(f"{arch.name} gives no sequence length; pass --seq-len")
    arch.check_seq_len(seq_len)
    for name, value in (("micro_batch", micro_batch), ("max_layers", max_layers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if min_iters < 1 or max_iters < min_iters:
        raise InputError("profile_model needs 1 <= min_iters <= max_iters")
    kind = "cpu" if device.type == "cpu" else "gpu"
    budget_s = DEFAULT_TIME_BUDGET_S[kind] if time_budget_s is None else float(time_budget_s)
    if not budget_s > 0:
        raise InputError(f"time_budget_s must be positive, got {time_budget_s!r}")
    say = progress or (lambda message: None)

    free = free_memory_bytes(device) if free_bytes is None else free_bytes
    usable = free * MEMORY_FRACTION if free else None
    notes: list[str] = []
    section: dict[str, Any] = {
        "id": model_id, "source": source or f"{arch.name} ({arch.model_type} architecture)", "seq_len": seq_len,
        "micro_batch": micro_batch or 1, "num_layers": arch.num_layers, "layers_timed": 0, "optimizer": "adamw",
        "results": {},
    }
    if not run:
        section["layers_timed"] = min(arch.num_layers, max_layers or arch.num_layers)
        section["results"] = {d: {"skipped": skipped[d]} for d in dtypes}
        return section

    layers = choose_layers(arch, seq_len=seq_len, dtypes=run, usable_bytes=usable, max_layers=max_layers,
                           micro_batch=micro_batch or 1)
    if layers < arch.num_layers and (max_layers is None or layers < max_layers):
        whole = _step_bytes(arch, seq_len, micro_batch or 1, run)
        notes.append(f"timed {layers} of {arch.num_layers} layers: the whole model's training step needs about "
                     f"{whole / GIB:.1f} GiB, {usable / GIB:.1f} GiB of the free memory are usable")
    clock = clock_for(device)
    results: dict[str, dict[str, Any]] = {}
    model = optimizer = step = None
    chosen_batch = micro_batch
    while True:  # rebuilt with fewer layers only when one layer's step at micro-batch 1 runs out of memory
        try:
            stack = truncated(arch, layers)
            say(f"building {model_id}: {layers} of {arch.num_layers} layers")
            with torch.device(device):
                model = Decoder(stack)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.1)
            step = TrainStep(model, optimizer, device)
            flops = flops_per_token(stack, seq_len).train_model
            for name in run:
                step.dtype = name
                with matmul_precision(name):
                    per_step_s = None
                    if chosen_batch is None:  # first dtype: find the micro-batch
                        memory_cap = largest_micro_batch(stack, seq_len=seq_len, dtypes=run, usable_bytes=usable)
                        chosen_batch, one_s = _pick_micro_batch(step, clock, seq_len, memory_cap,
                                                                budget_s / min_iters, seed, say)
                        if chosen_batch == 1 and warmup_s <= one_s:
                            per_step_s = one_s  # the trial steps were the warm-up
                    if per_step_s is None:
                        step.set_batch(chosen_batch, seq_len, seed)
                        say(f"warming up {name}: micro-batch {chosen_batch} x {seq_len} tokens")
                        per_step_s = _warm_up(step, clock, warmup_s)
                    iterations = max(min_iters, min(max_iters, int(budget_s / per_step_s)))
                    say(f"timing {iterations} {name} steps of about {per_step_s:.3g} s")
                    timing = _timed_steps(step, clock, iterations)
                tokens = chosen_batch * seq_len
                rates = timing.rates(flops * tokens / 1e12)
                results[name] = {
                    "flops_per_token": float(flops), "tokens_per_s": _round(tokens / timing.median_s),
                    "best_tflops": _round(rates["best"]), "median_tflops": _round(rates["median"]),
                    "worst_tflops": _round(rates["worst"]), "stdev_pct": round(timing.stdev_pct, 2),
                    "iterations": timing.iterations,
                }
            break
        except (RuntimeError, MemoryError) as exc:
            if not _is_oom(exc):
                raise
            results.clear()
            model = optimizer = step = None
            _release(device)
            if micro_batch is None and chosen_batch is not None and chosen_batch > 1:
                notes.append(f"micro-batch {chosen_batch} ran out of memory; using {chosen_batch // 2}")
                chosen_batch //= 2
            elif layers > 1:
                fewer = max(1, layers * 3 // 4)
                notes.append(f"{layers} layers ran out of memory at micro-batch {chosen_batch or 1}; timing {fewer}")
                layers = fewer
                chosen_batch = micro_batch
            else:
                raise GpucostError(f"{arch.name} runs out of memory on {device} even with one layer at micro-batch "
                                   f"{chosen_batch or 1} and seq_len {seq_len}; try a shorter --seq-len") from None
    del model, optimizer, step
    _release(device)
    section["micro_batch"] = chosen_batch
    section["layers_timed"] = layers
    section["results"] = {d: results[d] if d in results else {"skipped": skipped[d]} for d in dtypes}
    if notes:
        section["notes"] = notes
    return section


def _round(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def _warm_up(step: TrainStep, clock: Any, warmup_s: float) -> float:
    """Steps until ``warmup_s`` has passed (at least one; two when a step is under a second, so the
    estimate is not the first, slower one); returns the last step's wall time in seconds."""
    deadline = time.perf_counter() + warmup_s
    last = _wall(step, clock)
    runs = 1
    while time.perf_counter() < deadline or (runs < 2 and last < 1.0):
        last = _wall(step, clock)
        runs += 1
    return last


def _pick_micro_batch(step: TrainStep, clock: Any, seq_len: int, memory_cap: int, max_step_s: float, seed: int,
                      say: Callable[[str], None]) -> tuple[int, float]:
    """(micro-batch, seconds of the last trial step): the largest power of two up to ``memory_cap``
    whose step, extrapolated linearly from a step at micro-batch 1 (a second one when the first,
    which allocates the optimizer state and warms caches up, is within the limit), stays within
    ``max_step_s``; 1 when even that is slower. The trial steps warm the device up."""
    step.set_batch(1, seq_len, seed)
    say(f"trial step at micro-batch 1 x {seq_len} tokens")
    one_s = _wall(step, clock)
    if one_s <= max_step_s:
        one_s = _wall(step, clock)
    micro_batch = 1
    while micro_batch * 2 <= memory_cap and one_s * micro_batch * 2 <= max_step_s:
        micro_batch *= 2
    return micro_batch, one_s


__all__ = [
    "Decoder", "TrainStep", "build_model", "check_supported", "choose_layers", "default_dtypes",
    "largest_micro_batch", "num_params", "plan_dtypes", "profile_model", "training_step_bytes", "truncated",
    "unsupported_reason",
]
