"""Training software stacks (``catalogs/stacks.yaml``): what each stack launches and keeps per
transformer layer, which parallelism it runs, and the source of each number.

A :class:`Stack` is loaded with :func:`estimator.catalog.fields._records` (fields converted by their
annotations, unknown fields refused with a close match) and cross-checked here: the engine and the
parallelism names are known, every number has a source, an eager stack has the per-layer
tables the eager step model reads (and, where it compiles, the torch.compile ones), and each table is a
mapping of non-negative numbers. :mod:`estimator.timing.stacks` turns a stack into step time and memory.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from estimator.catalog.fields import _records
from estimator.errors import CatalogError
from estimator.vocab import SELECTIVE_POLICIES

STACKS_FILE = "stacks.yaml"
#: fused: Megatron-style kernels, timed by the step model's layer (estimator/timing/step.py);
#: eager: every op of the modules launched and timed from the probed bytes and kernels.
ENGINES = ("fused", "eager")
FP8_CAST_KEYS = ("per_activation_element", "per_weight_param")
PARALLELISM = ("data", "zero1", "zero2", "zero3", "tensor", "pipeline", "interleaved", "context", "expert", "sequence")
MASTER_WEIGHTS = ("fp32", "bf16")
LAYER_KINDS = ("gated_rmsnorm", "gelu_tanh_layernorm", "gelu_layernorm")
MODES = ("amp", "bf16")
RECOMPUTES = ("none", "full")  # host_op_weight's keys: gradient checkpointing off and on
#: what the eager step model reads from an eager stack
EAGER_TABLES = ("host_s_per_op", "host_op_weight", "matmul_fraction_of_mamf", "device_s_per_kernel", "attention_fraction",
                "saved_bytes_per_token_per_layer",
                "saved_bytes_per_token_outside", "traffic_bytes_per_token_per_layer",
                "traffic_bytes_per_token_outside", "kernels_per_layer", "kernels_outside", "logits",
                "weight_copy_bytes_per_param", "weight_cast_traffic_bytes_per_param")
#: what the eager step model reads under torch.compile (an eager stack with ``compile: true``), probed
#: by benchmarks/compile_probe.py; tables keyed by layer kind, then mode, as the eager ones
COMPILED_TABLES = ("compiled_saved_bytes_per_token_per_layer", "compiled_saved_bytes_per_token_outside",
                   "compiled_traffic_bytes_per_token_per_layer", "compiled_weight_traffic_bytes_per_param",
                   "compiled_traffic_bytes_per_token_outside", "compiled_kernels_per_layer",
                   "compiled_kernels_outside", "compiled_logits", "compiled_output_grad_bytes_per_token_per_layer")
_DESCRIPTIONS = ("attention", "loss", "overlap", "zero3_gather", "attention_kernel")


@dataclass(frozen=True, slots=True)
class Stack:
    """One training stack. Numbers are per token per transformer layer unless the name says
    otherwise; tables are keyed by layer kind (``gated_rmsnorm``, ``gelu_layernorm``), then mode
    (``amp``: fp32 weights under autocast bf16; ``bf16``: the model in bf16)."""

    id: str
    name: str
    frameworks: tuple[str, ...]
    engine: str
    parallelism: tuple[str, ...]
    compile: bool
    master_weights: tuple[str, ...]
    attention: str
    loss: str
    overlap: str
    zero3_gather: str
    allocator_reserve_gb: float
    sources: Mapping[str, Any]
    retrieved: _dt.date
    kernels_per_layer_forward: int | None = None
    elementwise_bytes_per_token_per_layer: Mapping[str, Any] | None = None
    host_s_per_op: float | None = None
    # host time per launched op of a layer and of what lies outside the layers, by kind, mode and
    # recomputation, relative to the row host_s_per_op is fitted on (benchmarks/host_probe.py)
    host_op_weight: Mapping[str, Any] | None = None
    matmul_fraction_of_mamf: float | None = None
    device_s_per_kernel: float | None = None
    # the attention kernels the stack can run: each kernel's rate, forward and backward, as a share of the
    # 16-bit dense peak, by the chip generation (estimator.catalog.records.Accelerator.generation)
    attention_fraction: Mapping[str, Any] | None = None
    attention_kernel: str | None = None  # the kernel the stack runs unless told (--attention-kernel)
    saved_bytes_per_token_per_layer: Mapping[str, Any] | None = None
    saved_bytes_per_token_outside: Mapping[str, Any] | None = None
    traffic_bytes_per_token_per_layer: Mapping[str, Any] | None = None
    traffic_bytes_per_token_outside: Mapping[str, Any] | None = None
    kernels_per_layer: Mapping[str, Any] | None = None
    kernels_outside: Mapping[str, Any] | None = None
    dropout: Mapping[str, Any] | None = None
    logits: Mapping[str, Any] | None = None
    weight_copy_bytes_per_param: float | None = None
    weight_cast_traffic_bytes_per_param: float | None = None
    # torch.compile (Inductor) of an eager stack's modules: the tables above as the compiled graph runs them
    compiled_saved_bytes_per_token_per_layer: Mapping[str, Any] | None = None
    compiled_saved_bytes_per_token_outside: Mapping[str, Any] | None = None
    compiled_traffic_bytes_per_token_per_layer: Mapping[str, Any] | None = None
    compiled_weight_traffic_bytes_per_param: Mapping[str, Any] | None = None
    compiled_traffic_bytes_per_token_outside: Mapping[str, Any] | None = None
    compiled_kernels_per_layer: Mapping[str, Any] | None = None
    compiled_kernels_outside: Mapping[str, Any] | None = None
    compiled_logits: Mapping[str, Any] | None = None
    # the gradients autograd materialises at the backward for the layers' other outputs (the KV cache)
    compiled_output_grad_bytes_per_token_per_layer: Mapping[str, Any] | None = None
    compiled_host_s_per_kernel: float | None = None
    # at-scale choices of the stack (estimator/timing/step.py time_layout); absent: the step model's defaults
    grad_reduce_bytes: float | None = None  # bytes per gradient element on the data-parallel wire
    zero2_per_layer: bool | None = None  # ZeRO 2 reduces one layer at a time (else one bucketed reduction)
    zero3_per_layer: bool | None = None  # ZeRO 3 gathers and scatters one layer at a time
    prefetch: bool | None = None  # ZeRO 3 / per-layer collectives run beside the neighbouring layer's compute
    # bytes moved per parameter of this device for every micro-batch to accumulate its gradients outside
    # the weight-gradient matmul (0: fused into it, as Megatron's gradient_accumulation_fusion)
    grad_accumulation_bytes_per_param: float | None = None
    # a pipeline stage boundary sends and receives one after the other (two transfers on the critical
    # path per exchange), not as one batched send/receive
    p2p_serial: bool | None = None
    # what --recompute selective keeps and reruns (estimator.vocab.SELECTIVE_POLICIES; absent: Megatron's,
    # the attention core)
    selective_policy: str | None = None
    # bytes of float8 scaling casts per linear (per_activation_element, per_weight_param) that --precision
    # fp8 adds outside the matmuls; absent: none beyond the step model's fitted layer (Transformer Engine)
    fp8_cast_bytes: Mapping[str, Any] | None = None
    notes: str | None = None

    def scale_arguments(self) -> dict[str, Any]:
        """The at-scale arguments of :func:`estimator.timing.step.time_layout` this stack sets."""
        chosen = {"grad_reduce_bytes": self.grad_reduce_bytes, "zero2_per_layer": self.zero2_per_layer,
                  "sharded_per_layer": self.zero3_per_layer, "prefetch": self.prefetch,
                  "grad_accumulation_bytes": self.grad_accumulation_bytes_per_param,
                  "p2p_serial": self.p2p_serial, "fp8_cast_bytes": self.fp8_cast_bytes}
        return {k: v for k, v in chosen.items() if v is not None}

    def memory_arguments(self) -> dict[str, Any]:
        """The activation arguments of :func:`estimator.model.memory.training_memory` this stack sets."""
        return {"selective": self.selective_policy} if self.selective_policy is not None else {}

    def runs(self, parallelism: str) -> bool:
        """Whether this stack can run ``parallelism`` (one of :data:`PARALLELISM`)."""
        return parallelism in self.parallelism


def _numbers(label: str, field: str, value: Any, path: str = "") -> None:
    """Every leaf of a table is a non-negative finite number."""
    if isinstance(value, Mapping):
        if not value:
            raise CatalogError(STACKS_FILE, label, field, f"{path or 'the table'} is empty")
        for key, inner in value.items():
            _numbers(label, field, inner, f"{path}.{key}" if path else str(key))
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise CatalogError(STACKS_FILE, label, field, f"{path or 'value'} must be a non-negative number, got {value!r}")


def _check(stack: Stack) -> None:
    label = stack.id
    if stack.selective_policy is not None and stack.selective_policy not in SELECTIVE_POLICIES:
        raise CatalogError(STACKS_FILE, label, "selective_policy",
                           f"must be one of {', '.join(SELECTIVE_POLICIES)}, got {stack.selective_policy!r}")
    if stack.fp8_cast_bytes is not None and set(stack.fp8_cast_bytes) != set(FP8_CAST_KEYS):
        raise CatalogError(STACKS_FILE, label, "fp8_cast_bytes", f"needs exactly {', '.join(FP8_CAST_KEYS)}")
    if stack.engine not in ENGINES:
        raise CatalogError(STACKS_FILE, label, "engine", f"must be one of {', '.join(ENGINES)}, got {stack.engine!r}")
    for name in stack.parallelism:
        if name not in PARALLELISM:
            raise CatalogError(STACKS_FILE, label, "parallelism", f"{name!r} is not one of {', '.join(PARALLELISM)}")
    if "data" not in stack.parallelism:
        raise CatalogError(STACKS_FILE, label, "parallelism", "every stack runs data parallelism; add 'data'")
    for mode in stack.master_weights:
        if mode not in MASTER_WEIGHTS:
            raise CatalogError(STACKS_FILE, label, "master_weights", f"{mode!r} is not one of {', '.join(MASTER_WEIGHTS)}")
    for f in fields(Stack):
        value = getattr(stack, f.name)
        if isinstance(value, Mapping) and f.name != "sources":
            _numbers(label, f.name, value)
    numbers = [f.name for f in fields(Stack) if f.name not in ("id", "sources", "retrieved", "name", "notes",
                                                                 "frameworks", "engine", "parallelism", "compile",
                                                                 *_DESCRIPTIONS)
               and getattr(stack, f.name) is not None]
    for name in numbers:
        if not isinstance(stack.sources.get(name), str) or not stack.sources[name].strip():
            raise CatalogError(STACKS_FILE, label, "sources", f"has no source for {name!r}")
    for kernel, shares in (stack.attention_fraction or {}).items():
        if not isinstance(shares, Mapping):
            raise CatalogError(STACKS_FILE, label, "attention_fraction",
                               f"{kernel} must map chip generations to shares, got {shares!r}")
        for generation, share in shares.items():
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
                raise CatalogError(STACKS_FILE, label, "attention_fraction",
                                   f"{kernel}.{generation} must be a fraction in (0, 1], got {share!r}")
    if (stack.attention_kernel is None) != (stack.attention_fraction is None) or (
            stack.attention_kernel is not None and stack.attention_kernel not in stack.attention_fraction):
        raise CatalogError(STACKS_FILE, label, "attention_kernel",
                           "must name one of the kernels of attention_fraction, and be given with it")
    if stack.engine == "eager":
        for name in EAGER_TABLES:
            if getattr(stack, name) is None:
                raise CatalogError(STACKS_FILE, label, name, "is required for an eager stack")
        tables = ["saved_bytes_per_token_per_layer", "traffic_bytes_per_token_per_layer", "kernels_per_layer",
                  "saved_bytes_per_token_outside", "traffic_bytes_per_token_outside", "kernels_outside", "logits",
                  "host_op_weight"]
        if stack.compile:
            for name in (*COMPILED_TABLES, "compiled_host_s_per_kernel"):
                if getattr(stack, name) is None:
                    raise CatalogError(STACKS_FILE, label, name, "is required for an eager stack that compiles")
            tables += COMPILED_TABLES
        for name in tables:
            table = getattr(stack, name)
            for kind in LAYER_KINDS:
                for mode in MODES:
                    if mode not in table.get(kind, {}):
                        raise CatalogError(STACKS_FILE, label, name, f"has no {kind}.{mode} entry")
        for kind in LAYER_KINDS:
            for mode in MODES:
                for recompute in RECOMPUTES:
                    entry = stack.host_op_weight[kind][mode].get(recompute)
                    if not isinstance(entry, Mapping) or set(entry) != {"layer", "outside"}:
                        raise CatalogError(STACKS_FILE, label, "host_op_weight",
                                           f"{kind}.{mode}.{recompute} must give a layer and an outside weight")


def load_stacks(directory: Path) -> tuple[Stack, ...]:
    """Load and cross-check ``<directory>/stacks.yaml`` (see the module docstring)."""
    stacks = _records(Path(directory) / STACKS_FILE, "stacks", Stack)
    for stack in stacks:
        _check(stack)
    return stacks


@dataclass(frozen=True, slots=True)
class StackRun:
    """A measured training step of a stack (for ``gpucost validate`` and benchmarks/stack_single_gpu.py):
    the run as ``gpucost estimate`` takes it (the model by ``architecture``, a file of
    ``architectures/``, by ``hf_config``, a config.json path relative to the runs file, or by ``model``,
    a catalog id; a parallel size, a recompute mode or a kernel choice left out is searched), the
    measured step time and peak memory (``torch.cuda.max_memory_allocated``, decimal GB), and whether
    the stack's fitted constants were fitted on it (``split: train``) or not (``held_out``)."""

    id: str
    stack: str
    accelerator: str
    num_gpus: int
    seq_len: int
    micro_batch: int
    global_batch: int
    step_time_s: float
    split: str
    source: str
    retrieved: _dt.date
    recompute: str | None = None  # left out: not published, left to the layout search
    compile: bool = False
    master_weights: str = "fp32"
    architecture: str | None = None
    hf_config: str | None = None
    model: str | None = None
    precision: str = "bf16"
    tensor_parallel: int | None = None
    pipeline_parallel: int | None = None
    context_parallel: int | None = None
    expert_parallel: int | None = None
    virtual_stages: int | None = None
    zero_stage: int | None = None
    flash_attention: bool | None = None
    sequence_parallel: bool | None = None
    attention_kernel: str | None = None  # left out: the stack's own
    peak_memory_gb: float | None = None
    notes: str | None = None

    def options(self) -> list[str]:
        """The ``gpucost estimate`` arguments of this run (without the model)."""
        args = ["--gpu", self.accelerator, "--num-gpus", str(self.num_gpus), "--global-batch", str(self.global_batch),
                "--micro-batch", str(self.micro_batch), "--seq-len", str(self.seq_len),
                *(["--recompute", self.recompute] if self.recompute is not None else []),
                "--precision", self.precision, "--stack", self.stack]
        for name in ("tensor_parallel", "pipeline_parallel", "context_parallel", "expert_parallel", "virtual_stages",
                     "zero_stage"):
            if getattr(self, name) is not None:
                args += [f"--{name.replace('_', '-')}", str(getattr(self, name))]
        for name in ("flash_attention", "sequence_parallel"):
            if getattr(self, name) is not None:
                args.append(f"--{'' if getattr(self, name) else 'no-'}{name.replace('_', '-')}")
        if self.compile:
            args.append("--compile")
        if self.attention_kernel is not None:
            args += ["--attention-kernel", self.attention_kernel]
        if self.master_weights != "fp32":
            args += ["--master-weights", self.master_weights]
        return args


SPLITS = ("train", "held_out")


def load_stack_runs(file: Path, stacks: tuple[Stack, ...]) -> tuple[StackRun, ...]:
    """Load a file of measured stack runs (``stack_runs:`` list): stacks, architectures, splits and
    modes are known, and each stack can run what the row says."""
    file = Path(file)
    runs = _records(file, "stack_runs", StackRun)
    by_id = {s.id: s for s in stacks}
    for run in runs:
        stack = by_id.get(run.stack)
        if stack is None:
            raise CatalogError(file.name, run.id, "stack", f"{run.stack!r} is not a stack id in {STACKS_FILE}")
        if run.split not in SPLITS:
            raise CatalogError(file.name, run.id, "split", f"must be one of {', '.join(SPLITS)}, got {run.split!r}")
        if run.master_weights not in stack.master_weights:
            raise CatalogError(file.name, run.id, "master_weights", f"{run.stack} keeps {', '.join(stack.master_weights)}")
        if run.compile and not stack.compile:
            raise CatalogError(file.name, run.id, "compile", f"{run.stack} does not use torch.compile")
        if run.attention_kernel is not None and run.attention_kernel not in (stack.attention_fraction or {}):
            raise CatalogError(file.name, run.id, "attention_kernel",
                               f"{run.stack} runs {', '.join(stack.attention_fraction or {}) or 'no kernel choice'}")
        if run.recompute not in (None, "none", "selective", "full"):
            raise CatalogError(file.name, run.id, "recompute", f"must be none, selective or full, got {run.recompute!r}")
        split = (run.tensor_parallel or 1) * (run.pipeline_parallel or 1) * (run.context_parallel or 1)
        if run.num_gpus % split or run.global_batch % (run.micro_batch * (run.num_gpus // split)):
            raise CatalogError(file.name, run.id, "global_batch", "is not a multiple of micro_batch x the data-parallel "
                               "size (num_gpus / (tensor x pipeline x context parallel))")
        if sum(x is not None for x in (run.architecture, run.hf_config, run.model)) != 1:
            raise CatalogError(file.name, run.id, "architecture",
                               "give the model by architecture, hf_config or model, one of them")
        if run.hf_config and not (file.parent / run.hf_config).is_file():
            raise CatalogError(file.name, run.id, "hf_config", f"no file {run.hf_config} (relative to {file.name})")
        if run.architecture and not (file.parent / "architectures" / f"{run.architecture}.json").is_file():
            raise CatalogError(file.name, run.id, "architecture", f"no file architectures/{run.architecture}.json")
        if run.zero_stage is not None and run.zero_stage > 3:
            raise CatalogError(file.name, run.id, "zero_stage", f"must be 1, 2 or 3 (leave it out for 0), got {run.zero_stage}")
    return runs


__all__ = ["COMPILED_TABLES", "ENGINES", "FP8_CAST_KEYS", "LAYER_KINDS", "MASTER_WEIGHTS", "MODES", "PARALLELISM",
           "SPLITS", "STACKS_FILE", "Stack", "StackRun", "load_stack_runs", "load_stacks"]
