"""A training stack's step time and memory on one device, from what the stack launches and keeps.

The stack (``catalogs/stacks.yaml``, :mod:`estimator.catalog.stacks`) is an input. A *fused* stack
(megatron, deepspeed) is the step model's own layer (:mod:`estimator.timing.step`: matmuls on the
roofline, 144 fitted bytes of elementwise traffic per token per hidden unit, Korthikanti et al.'s
activations). An *eager* stack (hf, fsdp) launches every operation of its modules; its time per
micro-batch on one device is, per phase (forward, backward, recompute, the loss, the optimizer):

* **matmuls** of the layers and the head on the roofline (the step model's :func:`gemm_seconds`),
* **attention** (SDPA's FlashAttention-2 kernel) at ``attention_fraction`` of the dense peak (by the
  chip's generation: the kernel uses Ampere's matmul instructions, not Hopper's), the
  causal half of the scores, backward 2.5 x forward (Dao 2023, arXiv 2307.08691: 5 matmuls vs 2),
* **elementwise, reduction and copy** traffic per token per layer (the probed
  ``traffic_bytes_per_token_per_layer``; under ``--compile`` the bytes Inductor's fused kernels read
  and write, ``compiled_traffic_bytes_per_token_per_layer``) and of the loss per logit, at the
  achievable HBM bandwidth,
* **casts** of the weights to bf16 and of their gradients back (fp32 master weights; compiled: the
  probed ``compiled_weight_traffic_bytes_per_param``),
* **kernels**: ``device_s_per_kernel`` each on the device, ``host_s_per_op`` x ``host_op_weight`` each
  on the host (Python, dispatch, autograd, the checkpoint's hooks: the weight is the host time per op of
  the layer kind, mode and recomputation relative to the fitted row's, probed on a CPU by
  benchmarks/host_probe.py; compiled: ``compiled_host_s_per_kernel``, the generated wrapper's
  launch); the device runs what the host issued, in order, while the host runs ahead
  (:meth:`StackTime.in_order_s`): the longer of the two when one side is the slower throughout (small
  models are launch-bound, large ones are not), more near the balance,
* **AdamW**: one fused kernel reading weights, gradients and both moments and writing three.

Memory is what ``torch.cuda.max_memory_allocated`` reports: the largest of the live bytes at the loss
backward (weights, optimizer states, autocast's bf16 weight copies, every layer's saved activations,
the loss's logits-sized tensors; compiled, also the gradients autograd materialises for the KV cache
the compiled model returns), at a recomputed layer's backward (``--recompute full``), and at
the optimizer step (weights, gradients, states). ``trainable_params`` below ``params`` (adapters,
frozen layers) drops the gradients and optimizer states of the frozen part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from estimator.catalog.records import Accelerator
from estimator.catalog.stacks import Stack
from estimator.errors import InputError
from estimator.model.arch import Architecture
from estimator.timing.roofline import Shape, gemm_seconds

if TYPE_CHECKING:
    from estimator.request import EstimateRequest

FLASH_BACKWARD_RATIO = 2.5  # FlashAttention backward FLOPs / forward (5 matmuls vs 2; Dao 2023 section 3.1)
ADAMW_TENSORS_READ, ADAMW_TENSORS_WRITTEN = 4, 3  # weight, gradient, m, v read; weight, m, v written
DEFAULT_STACK = "megatron"


@dataclass(frozen=True, slots=True)
class StackChoice:
    """A stack as the request runs it: the record, torch.compile, and the master-weights mode (fp32:
    mixed precision under autocast; bf16: everything in bf16)."""

    stack: Stack
    compile: bool = False
    master_weights: str = "fp32"
    attention_kernel: str | None = None  # None: the stack's own (catalogs/stacks.yaml attention_kernel)

    @property
    def eager(self) -> bool:
        return self.stack.engine == "eager"

    @property
    def mode(self) -> str:
        """The tables' mode key: ``amp`` (fp32 weights under autocast) or ``bf16``."""
        return "amp" if self.master_weights == "fp32" else "bf16"

    @property
    def weight_bytes(self) -> float:
        return 4.0 if self.master_weights == "fp32" else 2.0

    def host_s_per_kernel(self, kind: str, recompute: str, part: str = "layer") -> float:
        """Host seconds per launched kernel of a layer (``part="layer"``) or of what lies outside the
        layers: eager Python, dispatch and autograd (``host_s_per_op`` x the probed ``host_op_weight`` of
        this layer kind, mode and recomputation), or the compiled graph's wrapper."""
        if self.compile:
            return float(self.stack.compiled_host_s_per_kernel)
        weight = self.stack.host_op_weight[kind][self.mode]["full" if recompute == "full" else "none"][part]
        return float(self.stack.host_s_per_op) * float(weight)

    def table(self, name: str) -> Mapping:
        """An eager stack's table for this run, ``compiled_<name>`` under torch.compile."""
        return getattr(self.stack, f"compiled_{name}" if self.compile else name)

    def describe(self) -> str:
        return (f"{self.stack.id} ({self.stack.name}), {self.master_weights} master weights"
                + (", torch.compile" if self.compile else ""))


def attention_rate(choice: StackChoice, acc: Accelerator) -> tuple[float, float, str] | None:
    """(the attention kernel's FLOP/s on this chip, forward and backward; its share of the 16-bit dense peak;
    a basis line) from the stack's ``attention_fraction`` for the run's kernel (``--attention-kernel``, else
    the stack's) by chip generation, or None where the stack gives none (its attention runs as the step
    model's fused layer, at the matmul rate). The kernel runs in bf16 (fp16 where the chip has no bf16)
    whatever the linears' precision. A generation the table lacks (or a calibrated device with none)
    takes the kernel's smallest share."""
    stack = choice.stack
    peak = acc.peak_for("bf16") or acc.peak_for("fp16")
    if not stack.attention_fraction or not peak:
        return None
    kernel = choice.attention_kernel or stack.attention_kernel
    table = stack.attention_fraction[kernel]
    if acc.generation in table:
        share, basis = float(table[acc.generation]), f"{kernel} on {acc.generation}"
    else:
        low = min(table, key=lambda g: table[g])
        share, basis = float(table[low]), (f"{kernel}: no figure for {acc.generation or 'this device'}'s generation, "
                                           f"the lowest in the stack's table, {low}'s")
    return peak * 1e12 * share, share, basis


def layer_kind(arch: Architecture) -> str:
    """Which probed layer the architecture's layers run like: gated RMSNorm (Llama, Qwen2), GPT-2's
    LayerNorm with its tanh GELU written op by op, or LayerNorm with a fused GELU (BERT)."""
    if arch.gated_ffn:
        return "gated_rmsnorm"
    return "gelu_tanh_layernorm" if arch.model_type == "gpt2" else "gelu_layernorm"


def _widths(arch: Architecture) -> dict[str, float]:
    """The widths a table's coefficients multiply (``one``: a constant per token)."""
    return {"hidden": float(arch.hidden_size), "ffn": float(arch.ffn_size),
            "kv_dim": float(arch.num_kv_heads * arch.head_dim), "vocab": float(arch.vocab_size), "one": 1.0}


def _poly(coefficients: Mapping, widths: Mapping[str, float]) -> float:
    """sum(coefficient x width): a table row such as {hidden: 30, ffn: 8, kv_dim: 4}."""
    return sum(float(c) * widths[name] for name, c in coefficients.items())


def check_stack_layout(choice: StackChoice, *, tensor: int = 1, pipeline: int = 1, context: int = 1, expert: int = 1,
                       zero_stage: int = 0, sequence_parallel: bool = False, virtual_stages: int = 1) -> None:
    """InputError (one line) when the stack cannot run this layout."""
    stack = choice.stack
    needs = [("tensor", tensor > 1, "--tensor-parallel", "tensor parallelism"),
             ("pipeline", pipeline > 1, "--pipeline-parallel", "pipeline parallelism"),
             ("interleaved", virtual_stages > 1, "--virtual-stages", "an interleaved pipeline schedule"),
             ("context", context > 1, "--context-parallel", "context parallelism"),
             ("expert", expert > 1, "--expert-parallel", "expert parallelism"),
             ("sequence", sequence_parallel, "--sequence-parallel", "sequence parallelism"),
             (f"zero{zero_stage}", zero_stage > 0, "--zero-stage", f"ZeRO stage {zero_stage}")]
    for name, used, option, what in needs:
        if used and not stack.runs(name):
            raise InputError(f"--stack {stack.id} cannot run {what} (it runs {', '.join(stack.parallelism)}); "
                             f"drop {option} or choose another --stack")


# -- memory --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StackMemory:
    """Peak allocated bytes on one device (``torch.cuda.max_memory_allocated``), by part, and the phase
    of the step where the peak falls."""

    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    weight_copies_bytes: float
    activations_bytes: float
    logits_bytes: float
    phase: str

    @property
    def total_bytes(self) -> float:
        return sum(self.parts().values())

    def parts(self) -> Mapping[str, float]:
        return MappingProxyType({"weights": self.weights_bytes, "gradients": self.gradients_bytes,
                                 "optimizer states": self.optimizer_bytes, "bf16 weight copies": self.weight_copies_bytes,
                                 "activations": self.activations_bytes, "loss logits": self.logits_bytes})

    @property
    def dominant(self) -> str:
        parts = self.parts()
        return max(parts, key=lambda k: parts[k])

    def describe(self) -> str:
        shown = ", ".join(f"{k} {v / 1e9:.3g}" for k, v in self.parts().items() if v > 0)
        return f"peak {self.total_bytes / 1e9:.3g} GB at {self.phase} ({shown} GB; {self.dominant} dominate)"


def _matmul_params(arch: Architecture, params: float) -> float:
    """Parameters autocast copies to bf16: every matmul weight (the head's, tied or not), not the
    embedding lookup table when it is a separate matrix, nor the norms."""
    from estimator.model.params import count_params

    b = count_params(arch).breakdown
    embedding = float(b.get("embedding", 0))
    head = float(arch.hidden_size * arch.vocab_size) if arch.lm_head else 0.0
    return params - embedding - float(b.get("norms", 0)) + head


def eager_activation_bytes_per_token(arch: Architecture, choice: StackChoice, recompute: str) -> tuple[float, float]:
    """(bytes one layer keeps for backward, bytes outside the layers) per token, the logits apart."""
    t = choice.stack
    kind, mode, widths = layer_kind(arch), choice.mode, _widths(arch)
    outside = _poly(choice.table("saved_bytes_per_token_outside")[kind][mode], widths)
    if recompute == "full":  # a checkpointed layer keeps its input: the residual stream in the weights' dtype
        return choice.weight_bytes * arch.hidden_size, outside
    per_layer = _poly(choice.table("saved_bytes_per_token_per_layer")[kind][mode], widths)
    drop = (t.dropout or {}).get(kind)
    if drop:
        per_layer += drop["sites_per_layer"] * drop["mask_bytes"] * arch.hidden_size
    return per_layer, outside


def eager_layer_bytes_per_token(arch: Architecture, choice: StackChoice) -> float:
    """All a layer keeps for backward without recomputation (what a recomputed layer rebuilds)."""
    return eager_activation_bytes_per_token(arch, choice, "none")[0]


def stack_memory(arch: Architecture, choice: StackChoice, *, seq_len: int, micro_batch: int, recompute: str = "none",
                 data_parallel: int = 1, zero_stage: int = 0, num_micro_batches: int = 1,
                 trainable_params: float | None = None) -> StackMemory:
    """Peak allocated bytes of an eager stack on one device (see the module docstring)."""
    from estimator.model.params import count_params

    if not choice.eager:
        raise InputError(f"stack {choice.stack.id} is fused: its memory is estimator.model.memory.training_memory's")
    t = choice.stack
    params = float(count_params(arch).total)
    trainable = params if trainable_params is None else float(trainable_params)
    if not 0 <= trainable <= params:
        raise InputError(f"trainable parameters must lie in [0, {params:,.0f}], got {trainable!r}")
    d = data_parallel
    wb = choice.weight_bytes
    weights = params * wb / (d if zero_stage >= 3 else 1)
    grads = trainable * wb / (d if zero_stage >= 2 else 1)
    optimizer = trainable * 2 * wb / (d if zero_stage >= 1 else 1)  # AdamW m and v in the weights' dtype
    tokens = float(seq_len * micro_batch)
    copies = t.weight_copy_bytes_per_param * _matmul_params(arch, params) if choice.mode == "amp" else 0.0
    per_layer, outside = eager_activation_bytes_per_token(arch, choice, recompute)
    logits_table = choice.table("logits")[layer_kind(arch)][choice.mode]
    logits_peak = logits_table["peak"] * tokens * arch.vocab_size
    activations = tokens * (per_layer * arch.num_layers + outside)
    if choice.compile and recompute != "full":
        # the gradients autograd passes in for the compiled model's other outputs: the KV cache it returns
        # (transformers turns the cache off under gradient checkpointing)
        grads_in = _poly(t.compiled_output_grad_bytes_per_token_per_layer[layer_kind(arch)][choice.mode], _widths(arch))
        activations += tokens * grads_in * arch.num_layers
    held_grads = grads if num_micro_batches > 1 else 0.0  # accumulated across micro-batches
    phases = []
    if recompute == "full":
        # the checkpoint drops the layers' weight copies; the loss backward runs before any recompute
        head_copy = t.weight_copy_bytes_per_param * arch.hidden_size * arch.vocab_size if choice.mode == "amp" else 0.0
        phases.append(StackMemory(weights, held_grads, optimizer, head_copy, activations, logits_peak,
                                  "the loss backward"))
        rebuilt = tokens * eager_layer_bytes_per_token(arch, choice)
        layer_copy = copies / max(arch.num_layers, 1) if choice.mode == "amp" else 0.0
        phases.append(StackMemory(weights, grads, optimizer, layer_copy, activations + rebuilt, 0.0,
                                  "a recomputed layer's backward"))
    else:
        phases.append(StackMemory(weights, held_grads, optimizer, copies, activations, logits_peak,
                                  "the loss backward"))
    phases.append(StackMemory(weights, grads, optimizer, 0.0, 0.0, 0.0, "the optimizer step"))
    return max(phases, key=lambda m: m.total_bytes)


# -- time ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StackTime:
    """One micro-batch's forward + backward (+ recompute) on one device, by part (s), the kernels it
    launches, and the device and host time that bound it, in total and for the first two of its three
    phases in launch order: the layers' forward, the head and loss (forward and backward), the layers'
    backward."""

    parts_s: Mapping[str, float]
    kernels: float
    device_s: float
    host_s: float
    forward_s: float
    host_s_per_layer_kernel: float  # what one more kernel in a layer (an adapter's) costs the host
    device_phases_s: tuple[float, float] = (0.0, 0.0)  # the layers' forward, the head and loss
    host_phases_s: tuple[float, float] = (0.0, 0.0)

    def in_order_s(self, device_extra: float = 0.0, host_extra: float = 0.0) -> float:
        """The micro-batch as the host issues its kernels and the device runs them, in one order: the device
        cannot start a kernel the host has not issued, and the host runs ahead while the device is busy (a
        two-stage flow line). The time is the largest, over the phases k, of the host's time to issue the
        phases before k plus the device's time for k and every later phase; it is max(host, device) when
        one side is the slower in every phase, and more when the host is the slower in the layers' forward
        and the device after it (the head and the loss keep the device busy while the host, ahead, has
        little to issue).
        ``device_extra`` / ``host_extra``: work added across the micro-batch (adapters), counted in full
        in every later-phase term."""
        device, host = self.device_s + device_extra, self.host_s + host_extra
        (d_forward, d_loss), (h_forward, h_loss) = self.device_phases_s, self.host_phases_s
        return max(device, host, h_forward + device - d_forward, h_forward + h_loss + device - d_forward - d_loss)

    @property
    def compute_s(self) -> float:
        return self.in_order_s()

    @property
    def bound(self) -> str:
        t = self.compute_s
        if t == self.device_s:
            return "device"
        return "host (kernel launches)" if t == self.host_s else "host in the forward, then device"


def eager_compute(shape: Shape, choice: StackChoice, *, tokens: float, recompute: str, flop_rate: float,
                  attention_flops: float, hbm_bytes_per_s: float) -> StackTime:
    """Seconds of one micro-batch of ``tokens`` tokens of an eager stack on one device (module docstring);
    ``attention_flops``: the attention kernel's FLOP/s on this chip (:func:`attention_rate`)."""

    arch = shape.arch
    t = choice.stack
    kind, mode, widths = layer_kind(arch), choice.mode, _widths(arch)
    layers = shape.num_dense_layers + shape.num_moe_layers
    kernel_s = t.device_s_per_kernel
    flop_rate = flop_rate * t.matmul_fraction_of_mamf  # sustained eager matmuls, below a burst benchmark's
    full = recompute == "full"
    passes = 4.0 if full else 3.0  # forward, backward = 2 x forward, and the recompute's forward
    layer_fwd = (shape.num_dense_layers * gemm_seconds(shape.layer_gemms, tokens, 1, flop_rate, hbm_bytes_per_s, kernel_s)
                 + shape.num_moe_layers * gemm_seconds(shape.moe_gemms, tokens, 1, flop_rate, hbm_bytes_per_s, kernel_s))
    head_fwd = (gemm_seconds(((shape.head_flops_per_token, 1, arch.vocab_size, arch.hidden_size),), tokens, 1, flop_rate,
                             hbm_bytes_per_s, kernel_s) if shape.head_flops_per_token else 0.0)
    matmul = passes * layer_fwd + 3.0 * head_fwd
    score = shape.score_flops_per_token * tokens * (0.5 if shape.causal else 1.0) * layers
    attn_fwd = score / attention_flops
    attention = attn_fwd * (1 + FLASH_BACKWARD_RATIO + (1 if full else 0))
    logits = tokens * arch.vocab_size
    traffic = choice.table("traffic_bytes_per_token_per_layer")[kind][mode]
    counts = choice.table("kernels_per_layer")[kind][mode]
    forward_bytes, backward_bytes = _poly(traffic["forward"], widths), _poly(traffic["backward"], widths)
    forward_kernels, backward_kernels = counts["forward"], counts["backward"]
    drop = (t.dropout or {}).get(kind)
    if drop:
        # the probe ran without dropout. Eager, each site launches a kernel forward and one backward that
        # move its traffic_bytes between them; compiled, the mask is made inside the fused kernels (no
        # launch of its own), written once forward and read once backward
        site_bytes = drop["sites_per_layer"] * arch.hidden_size * (
            drop["mask_bytes"] if choice.compile else drop["traffic_bytes"] / 2)
        forward_bytes += site_bytes
        backward_bytes += site_bytes
        if not choice.compile:
            forward_kernels += drop["sites_per_layer"]
            backward_kernels += drop["sites_per_layer"]
    per_layer_bytes = forward_bytes * (2 if full else 1) + backward_bytes
    kernels_layer = forward_kernels * (2 if full else 1) + backward_kernels
    outside = choice.table("traffic_bytes_per_token_outside")[kind][mode]
    loss_bytes = sum(logits * row.get("vocab", 0)
                     + tokens * _poly({k: v for k, v in row.items() if k != "vocab"}, widths)
                     for row in (outside["forward"], outside["backward"]))
    elementwise = tokens * per_layer_bytes * layers / hbm_bytes_per_s
    loss = loss_bytes / hbm_bytes_per_s
    casts = casts_forward = 0.0
    matmul_params = _matmul_params(arch, float(shape.total_params))
    if choice.compile:  # the casts run inside the fused kernels: their bytes per weight were probed
        cast = t.compiled_weight_traffic_bytes_per_param[kind][mode]
        table = float(arch.vocab_size * arch.hidden_size)  # the embedding, probed tied to the head
        layer_weights = matmul_params - (table if arch.lm_head else 0.0)
        casts = (layer_weights * (cast["forward"] * (2 if full else 1) + cast["backward"])
                 + table * (cast["embedding_forward"] + cast["embedding_backward"])) / hbm_bytes_per_s
        casts_forward = layer_weights * cast["forward"] / hbm_bytes_per_s
    elif mode == "amp":
        per_param = t.weight_cast_traffic_bytes_per_param * (1.5 if full else 1.0)  # the recompute casts again
        casts = matmul_params * per_param / hbm_bytes_per_s
        casts_forward = matmul_params * t.weight_cast_traffic_bytes_per_param / 2 / hbm_bytes_per_s  # 4 + 2 of 12 B
    gemm_kernels = passes * layers * len(shape.layer_gemms) + 3  # their launches are timed inside gemm_seconds
    outside_kernels = choice.table("kernels_outside")[kind][mode]  # the probes' counts include the matmuls
    kernels_out = outside_kernels["forward"] + outside_kernels["backward"]
    kernels = layers * kernels_layer + kernels_out
    device = matmul + attention + elementwise + loss + casts + max(0.0, kernels - gemm_kernels) * kernel_s
    host_per_layer_kernel = choice.host_s_per_kernel(kind, recompute)
    host_loss = kernels_out * choice.host_s_per_kernel(kind, recompute, "outside")
    host = layers * kernels_layer * host_per_layer_kernel + host_loss
    # the phases in launch order (StackTime.in_order_s): the layers' forward, then the head and the loss
    # (what lies outside the layers is mostly the loss; its few embedding kernels are counted here too)
    device_forward = (layer_fwd + attn_fwd + tokens * layers * forward_bytes / hbm_bytes_per_s + casts_forward
                      + layers * max(0.0, forward_kernels - len(shape.layer_gemms)) * kernel_s)
    device_loss = 3.0 * head_fwd + loss + max(0.0, kernels_out - 3) * kernel_s
    parts = {"matmul": matmul, "attention": attention, "elementwise": elementwise, "loss": loss, "weight casts": casts,
             "launches": max(0.0, kernels - gemm_kernels) * kernel_s}
    forward = (layer_fwd + head_fwd + attn_fwd) + (elementwise + loss) / 3
    return StackTime(parts_s=MappingProxyType({k: v for k, v in parts.items() if v > 0}), kernels=kernels,
                     device_s=device, host_s=host, forward_s=forward, host_s_per_layer_kernel=host_per_layer_kernel,
                     device_phases_s=(device_forward, device_loss),
                     host_phases_s=(layers * forward_kernels * host_per_layer_kernel, host_loss))


@dataclass(frozen=True, slots=True)
class StackReport:
    """The stack an estimate ran with, for its JSON (``stack``): for an eager stack also what one
    micro-batch launches, the device and host time that bound it, and the memory peak by part (GB)."""

    id: str
    name: str
    engine: str
    compile: bool
    master_weights: str
    attention_kernel: str | None = None  # the attention kernel timed (None: the fitted layer's own)
    kernels_per_micro_batch: float | None = None
    device_s: float | None = None
    host_s: float | None = None
    bound: str | None = None
    memory_peak_gb: float | None = None
    memory_parts_gb: dict[str, float] | None = None
    memory_phase: str | None = None
    memory_dominant: str | None = None


def stack_report(choice: StackChoice, timed: StackTime | None = None, memory: StackMemory | None = None) -> StackReport:
    report = StackReport(id=choice.stack.id, name=choice.stack.name, engine=choice.stack.engine,
                         compile=choice.compile, master_weights=choice.master_weights,
                         attention_kernel=choice.attention_kernel or choice.stack.attention_kernel)
    if timed is None or memory is None:
        return report
    return replace(report, kernels_per_micro_batch=timed.kernels, device_s=timed.device_s, host_s=timed.host_s,
                   bound=timed.bound, memory_peak_gb=memory.total_bytes / 1e9,
                   memory_parts_gb={k.replace(" ", "_"): v / 1e9 for k, v in memory.parts().items()},
                   memory_phase=memory.phase, memory_dominant=memory.dominant)


def optimizer_seconds(choice: StackChoice, params: float, hbm_bytes_per_s: float) -> float:
    """The fused AdamW step of an eager stack: 4 tensors read and 3 written in the weights' dtype."""
    return params * choice.weight_bytes * (ADAMW_TENSORS_READ + ADAMW_TENSORS_WRITTEN) / hbm_bytes_per_s




def stack_choice(request: EstimateRequest, directory: Path) -> StackChoice:
    """The stack a request runs (``--stack``, default megatron), checked against what the stack can do:
    ``--compile`` only where the stack compiles, ``--master-weights`` among its modes, and the Megatron
    kernel flags (``--flash-attention``, ``--sequence-parallel``) only on the stacks that have them."""
    from estimator.catalog.stacks import load_stacks

    stacks = load_stacks(directory)
    stack_id = request.stack or DEFAULT_STACK
    stack = next(s for s in stacks if s.id == stack_id)
    master = request.master_weights or "fp32"
    if request.compile and not stack.compile:
        compiles = ", ".join(s.id for s in stacks if s.compile)
        raise InputError(f"--compile is torch.compile, which --stack {stack.id} does not use; it applies to --stack "
                         f"{compiles.replace(', ', ' or ')}")
    if master not in stack.master_weights:
        raise InputError(f"--stack {stack.id} keeps {' or '.join(stack.master_weights)} master weights, not {master}")
    if stack.engine == "eager" and request.flash_attention is False:
        raise InputError(f"--no-flash-attention describes Megatron-family runs without a fused attention kernel; "
                         f"--stack {stack.id} runs SDPA's flash kernel: drop --no-flash-attention")
    check_stack_layout(StackChoice(stack), tensor=request.tensor_parallel or 1,
                       pipeline=request.pipeline_parallel or 1, context=request.context_parallel or 1,
                       expert=request.expert_parallel or 1, zero_stage=request.zero_stage or 0,
                       sequence_parallel=bool(request.sequence_parallel),
                       virtual_stages=request.virtual_stages or 1)
    kernel = request.attention_kernel
    if kernel is not None:
        kernels = tuple(stack.attention_fraction or ())
        if not kernels:
            runs = " or ".join(s.id for s in stacks if s.attention_fraction)
            raise InputError(f"--attention-kernel chooses the attention kernel of --stack {runs}; --stack {stack.id} "
                             f"is the step model's fitted layer, attention included: drop --attention-kernel")
        if kernel not in kernels:
            import difflib

            close = difflib.get_close_matches(kernel, kernels, n=1)
            raise InputError(f"--attention-kernel {kernel!r} is not one --stack {stack.id} runs"
                             + (f" (did you mean {close[0]!r}?)" if close else "") + f"; choose {' or '.join(kernels)}")
    return StackChoice(stack, compile=bool(request.compile), master_weights=master, attention_kernel=kernel)


__all__ = ["DEFAULT_STACK", "StackChoice", "StackMemory", "StackReport", "StackTime", "attention_rate",
           "check_stack_layout", "eager_compute", "layer_kind", "optimizer_seconds", "stack_choice", "stack_memory",
           "stack_report"]
