"""Your own PyTorch model: ``gpucost profile --torch-model SPEC`` times its training step.

**SPEC** names a callable that builds the model and an example batch:

- ``module:callable`` -- ``module`` importable from the current directory or ``PYTHONPATH``
  (``my_models:build``, ``pkg.sub:Factory.make``: dots after the colon walk attributes);
- ``path/to/file.py:callable`` -- a file, imported by path (its folder joins ``sys.path`` while it
  is imported and called, so it can import its neighbours);
- ``builtin:mnist-mlp`` / ``builtin:resnet-50`` -- the models of profiler/torch_model/builtin.py.

**The callable** is called with the keywords it accepts among ``device`` (the ``torch.device``
being profiled), ``batch_size`` (only when ``--micro-batch`` is given; a callable without that
parameter then gets an error) and ``memory_format`` (``nchw`` or ``channels_last``, only with
``--memory-format``, likewise). It returns either

- ``(model, batch)``, or
- a dict ``{"model": ..., "batch": ..., "loss_fn": ..., "optimizer": ..., "id": ..., "notes": [...]}``
  where only ``model`` and ``batch`` are required (``notes``: lines for the section's notes, e.g.
  the memory format the builtin ResNet-50 trains in);

``model`` is a ``torch.nn.Module``; ``batch`` is

- ``(inputs, targets)``: the step computes ``model(inputs)`` (a tuple or list of inputs:
  ``model(*inputs)``; a dict: ``model(**inputs)``), then ``loss_fn(output, targets)``; or
- a dict of keyword inputs, e.g. a Hugging Face batch with ``labels`` (``model(**batch)``), or a
  single tensor (``model(batch)``), when the model computes its own loss: the loss is then the
  output's ``.loss`` (or ``output["loss"]``, or the output itself when it is a scalar tensor),
  unless ``loss_fn`` is given (it is called as ``loss_fn(output, None)``).

``loss_fn`` default: ``F.cross_entropy`` for integer targets, ``F.mse_loss`` for floating-point
targets. ``optimizer``: a ``torch.optim.Optimizer`` built on the model's parameters, or a callable
``params -> Optimizer``; default ``torch.optim.AdamW(lr=1e-3)`` (torch's defaults otherwise). The
builtins bring SGD with momentum 0.9, their published recipes. Samples per step: the leading
dimension of the first tensor of the inputs. ``id`` (the model's name in the calibration file):
the dict's ``"id"``, the builtin's name, else the callable's ``__name__``.

**What is timed**: the model and the batch are moved to the device; then forward + backward
passes under ``torch.utils.flop_counter.FlopCounterMode`` on sub-batches of 2 and 4 samples count
the FLOPs, scaled to the batch (:func:`count_flops`; their graphs are freed, and on a GPU the
allocator's cache emptied, before any step is timed, so the timed step has the device's memory to
itself at the batch the run trains with) (training = forward +
backward as FlopCounterMode counts them: matmuls, convolutions, attention, 2 FLOPs per
multiply-add; elementwise work -- activations, norms, the loss -- and the optimizer's update are not
counted; the gradient of a batch that does not require grad is not computed, so the first layer's
backward is one matmul, not two). Then per dtype (fp32 on a CPU; bf16 on a GPU that has it; see
:func:`profiler.model.plan_dtypes`): warm-up steps by time, then steps timed one by one by
:func:`profiler.timing.measure` (a device sync before each clock read on a CPU, CUDA events on a
GPU), each step = forward (under ``torch.autocast`` for bf16/fp16, fp32 master weights), loss,
backward, ``optimizer.step()``, ``zero_grad(set_to_none=True)``. No cache flush between steps: a
training loop runs its steps back to back. Reported per dtype: samples/s over the timed steps (their
samples / their total time, what the estimate uses, leaving out steps longer than twice the median:
interrupted by another process) and at the median step, best / median / worst TFLOP/s, the spread,
the step count, the throughput of each fifth of the steps; a note when more than 5% of the steps
were interrupted.

Finding the callable: :mod:`profiler.torch_model.spec`. Errors name the SPEC in one line: InputError for what the user gave (import failure, no such
callable, wrong return type, wrong device, a loss that is not a scalar), GpucostError for what
happened on the device (out of memory, the step raised). Ctrl-C keeps the dtypes already timed
and marks the section ``partial: true``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import inspect
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from estimator.errors import GpucostError, InputError
from estimator.records.torch_model import BUSY_SHARE, SLOW_STEP

from profiler.memory import DeviceMemory
from profiler.torch_model.spec import RETURN_FORMS as _RETURN, Resolved, _first_line, _on_path, resolve_spec
from profiler.run import Budget, is_out_of_memory
from profiler.timing import Timing, clock_for, measure

DEFAULT_OPTIMIZER = "AdamW(lr=0.001)"
# Warm-up and timed seconds per dtype: thousands of steps of a small model, at least 3 of a big one.
# 30 s on a CPU: a shared VM's speed flips between levels 30% apart every few to tens of seconds,
# and a shorter window catches one of them (benchmarks/torch_model_estimate.py; docs/profile.md).
DEFAULT_BUDGET = {"cpu": Budget(warmup_s=2.0, budget_s=30.0, min_iters=3, max_iters=1_000_000),
                  "gpu": Budget(warmup_s=1.0, budget_s=5.0, min_iters=10, max_iters=1_000_000)}
INTERRUPTED = "not measured: the run was interrupted"
_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}
TRAIN_DTYPES = ("fp32", "tf32", "bf16", "fp16")
_FP8 = "not measured: an fp8 training step needs scaled-matmul recipes (Transformer Engine, torchao)"
_DICT_KEYS = ("model", "batch", "loss_fn", "optimizer", "id", "notes")
MEMORY_FORMATS = ("nchw", "channels_last")  # --memory-format: passed to a callable that takes memory_format
_DEVICE_WORDS = ("same device", "two devices", "different device", "device type", "but got", "expected device")


# -- calling it and checking what it returned -----------------------------------------------------


@dataclass
class Workload:
    """What the callable returned, checked and moved to the device."""

    model: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    targets: Any
    loss_fn: Callable[..., Any] | None
    loss_name: str
    optimizer: torch.optim.Optimizer
    optimizer_name: str
    batch_size: int
    model_id: str
    notes: tuple[str, ...] = ()  # the callable's own notes (the dict's "notes"), into the section's


def _accepts(function: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    if isinstance(value, list):
        return [_to(v, device) for v in value]
    if isinstance(value, Mapping):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _tensors(item)


def describe_optimizer(optimizer: torch.optim.Optimizer) -> str:
    """``SGD(lr=0.01, momentum=0.9)``: the class and the first parameter group's main settings."""
    group = optimizer.param_groups[0] if optimizer.param_groups else {}
    parts = []
    for key in ("lr", "momentum", "betas", "weight_decay", "nesterov"):
        value = group.get(key)
        if key not in group or value in (None, False) or (key in ("momentum", "weight_decay") and value == 0):
            continue
        if isinstance(value, torch.Tensor):
            value = value.item()
        if isinstance(value, tuple):
            value = "(" + ", ".join(f"{v:g}" for v in value) + ")"
        elif isinstance(value, float):
            value = f"{value:g}"
        parts.append(f"{key}={value}")
    return f"{type(optimizer).__name__}({', '.join(parts)})"


def _loss_name(loss_fn: Any) -> str:
    return getattr(loss_fn, "__name__", None) or type(loss_fn).__name__


def build_workload(resolved: Resolved, device: torch.device, batch_size: int | None = None,
                   memory_format: str | None = None) -> Workload:
    """Call the callable and check what it returned (see the module docstring). Raises
    InputError naming the SPEC for anything the user must change."""
    spec = resolved.spec
    kwargs: dict[str, Any] = {}
    if _accepts(resolved.function, "device"):
        kwargs["device"] = device
    if memory_format is not None:
        if memory_format not in MEMORY_FORMATS:
            raise InputError(f"--memory-format {memory_format!r}: use one of {', '.join(MEMORY_FORMATS)}")
        if not _accepts(resolved.function, "memory_format"):
            raise InputError(f"--torch-model {spec}: --memory-format needs a callable with a memory_format "
                             "parameter; lay out the model and batch in the callable instead")
        kwargs["memory_format"] = memory_format
    if batch_size is not None:
        if not _accepts(resolved.function, "batch_size"):
            raise InputError(f"--torch-model {spec}: --micro-batch needs a callable with a batch_size parameter; "
                             "size the example batch in the callable instead")
        kwargs["batch_size"] = batch_size
    with _on_path(resolved.folder):
        try:
            returned = resolved.function(**kwargs)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001
            if is_out_of_memory(exc):
                raise GpucostError(f"--torch-model {spec}: out of memory on {device} while building the model and "
                                   "its batch; return a smaller example batch") from None
            raise InputError(f"--torch-model {spec}: the callable raised {_first_line(exc)}") from None
    loss_fn = optimizer = None
    callable_notes: tuple[str, ...] = ()
    model_id = resolved.model_id
    if isinstance(returned, Mapping):
        unknown = [str(k) for k in returned if k not in _DICT_KEYS]
        if unknown:
            raise InputError(f"--torch-model {spec}: the returned dict has unknown key {unknown[0]!r}; "
                             f"known: {', '.join(_DICT_KEYS)}")
        missing = [k for k in ("model", "batch") if k not in returned]
        if missing:
            raise InputError(f"--torch-model {spec}: the returned dict has no {missing[0]!r}")
        model, batch = returned["model"], returned["batch"]
        loss_fn, optimizer = returned.get("loss_fn"), returned.get("optimizer")
        notes = returned.get("notes") or ()
        if isinstance(notes, str) or not all(isinstance(n, str) and n.strip() for n in notes):
            raise InputError(f"--torch-model {spec}: the returned dict's 'notes' must be a list of strings")
        callable_notes = tuple(n.strip() for n in notes)
        if returned.get("id") is not None:
            if not isinstance(returned["id"], str) or not returned["id"].strip():
                raise InputError(f"--torch-model {spec}: the returned dict's 'id' must be a non-empty string")
            model_id = returned["id"].strip()
    elif isinstance(returned, (tuple, list)) and len(returned) == 2:
        model, batch = returned
    else:
        got = f"a {type(returned).__name__} of {len(returned)}" if isinstance(returned, (tuple, list)) \
            else f"a {type(returned).__name__}"
        raise InputError(f"--torch-model {spec}: the callable must return {_RETURN}, got {got}")
    if not isinstance(model, nn.Module):
        raise InputError(f"--torch-model {spec}: the model must be a torch.nn.Module, got a {type(model).__name__}")
    if loss_fn is not None and not callable(loss_fn):
        raise InputError(f"--torch-model {spec}: loss_fn must be callable as loss_fn(output, targets), "
                         f"got a {type(loss_fn).__name__}")

    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        inputs, targets = batch
    elif isinstance(batch, (torch.Tensor, Mapping)):
        inputs, targets = batch, None
    else:
        got = f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list)) else f"a {type(batch).__name__}"
        raise InputError(f"--torch-model {spec}: the batch must be (inputs, targets), a dict of inputs or a tensor, "
                         f"got {got}")
    if isinstance(inputs, Mapping):
        args, call_kwargs = (), dict(inputs)
    elif isinstance(inputs, (tuple, list)):
        args, call_kwargs = tuple(inputs), {}
    else:
        args, call_kwargs = (inputs,), {}
    first = next(_tensors((args, call_kwargs)), None)
    if first is None or first.dim() == 0:
        raise InputError(f"--torch-model {spec}: cannot tell the batch size: the inputs hold no tensor with a "
                         "leading batch dimension")
    size = int(first.shape[0])
    if size < 1:
        raise InputError(f"--torch-model {spec}: the example batch is empty (leading dimension 0)")

    for tensor in list(model.parameters()) + list(_tensors((args, call_kwargs, targets))):
        if tensor.device.type == "meta":
            raise InputError(f"--torch-model {spec}: the model or its batch is on the meta device (no data); "
                             f"build it on {device.type}")
    try:
        model.to(device)
        args, call_kwargs, targets = _to((args, call_kwargs, targets), device)
    except (RuntimeError, MemoryError) as exc:
        if is_out_of_memory(exc):
            raise GpucostError(f"--torch-model {spec}: out of memory moving the model and its batch to {device}") \
                from None
        raise InputError(f"--torch-model {spec}: cannot move the model and its batch to {device}: "
                         f"{_first_line(exc)}") from None
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise InputError(f"--torch-model {spec}: the model has no parameter that requires grad: nothing to train")

    if optimizer is None:
        optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    elif not isinstance(optimizer, torch.optim.Optimizer):
        if not callable(optimizer):
            raise InputError(f"--torch-model {spec}: optimizer must be a torch.optim.Optimizer or a callable "
                             f"params -> Optimizer, got a {type(optimizer).__name__}")
        try:
            optimizer = optimizer(trainable)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"--torch-model {spec}: the optimizer factory raised {_first_line(exc)}") from None
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise InputError(f"--torch-model {spec}: the optimizer factory must return a torch.optim.Optimizer, "
                             f"got a {type(optimizer).__name__}")
    if loss_fn is None:
        if isinstance(targets, torch.Tensor) and not targets.is_floating_point():
            loss_fn, loss_name = F.cross_entropy, "cross_entropy"
        elif isinstance(targets, torch.Tensor):
            loss_fn, loss_name = F.mse_loss, "mse_loss"
        elif targets is None:
            loss_name = "the model's own loss"
        else:
            raise InputError(f"--torch-model {spec}: targets of type {type(targets).__name__} need a loss_fn "
                             "(return a dict with 'loss_fn')")
    else:
        loss_name = _loss_name(loss_fn)
    return Workload(model, args, call_kwargs, targets, loss_fn, loss_name, optimizer, describe_optimizer(optimizer),
                    size, model_id, callable_notes)


# -- the step ------------------------------------------------------------------------------------


class TorchModelStep:
    """One training step of the workload: forward (autocast for bf16/fp16), loss, backward,
    optimizer step, gradients set to None. :meth:`loss` checks the loss once (a scalar tensor that
    requires grad)."""

    def __init__(self, work: Workload, device: torch.device, spec: str):
        self.work, self.device, self.spec = work, device, spec
        self.dtype = "fp32"

    def loss(self, batch: tuple[tuple[Any, ...], dict[str, Any], Any] | None = None) -> torch.Tensor:
        """The loss of the workload's batch, or of ``batch`` = (args, kwargs, targets) (a sub-batch)."""
        work = self.work
        args, kwargs, targets = batch if batch is not None else (work.args, work.kwargs, work.targets)
        amp = _AMP.get(self.dtype)
        with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            output = work.model(*args, **kwargs)
            if work.loss_fn is not None:
                loss = work.loss_fn(output, targets)
            elif isinstance(output, torch.Tensor):
                loss = output
            elif isinstance(output, Mapping) and "loss" in output:
                loss = output["loss"]
            elif getattr(output, "loss", None) is not None:
                loss = output.loss
            else:
                raise InputError(f"--torch-model {self.spec}: the batch has no targets and the model's output "
                                 f"(a {type(output).__name__}) has no loss; return (inputs, targets) or a loss_fn")
        return loss

    def check(self, loss: Any) -> None:
        if not isinstance(loss, torch.Tensor):
            raise InputError(f"--torch-model {self.spec}: the loss must be a scalar tensor, got a {type(loss).__name__}")
        if loss.numel() != 1:
            raise InputError(f"--torch-model {self.spec}: the loss must be a scalar tensor, got shape "
                             f"{tuple(loss.shape)}; reduce it (e.g. .mean()) or give a loss_fn")
        if not loss.requires_grad:
            raise InputError(f"--torch-model {self.spec}: the loss does not require grad (computed under no_grad, "
                             "or detached from the parameters)")

    def __call__(self) -> None:
        loss = self.loss()
        loss.backward()
        self.work.optimizer.step()
        self.work.optimizer.zero_grad(set_to_none=True)


@contextlib.contextmanager
def precision(dtype: str) -> Iterator[None]:
    """fp32 as IEEE fp32 (TF32 off for matmuls and cuDNN convolutions), tf32 with TF32 on; restored after."""
    from profiler.kernels import matmul_precision

    conv = getattr(torch.backends.cudnn, "conv", None)
    old = getattr(conv, "fp32_precision", None) if conv is not None else None
    with matmul_precision(dtype):
        if old is None:
            yield
            return
        conv.fp32_precision = "tf32" if dtype == "tf32" else "ieee"
        try:
            yield
        finally:
            conv.fp32_precision = old


def _device_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and "device" in text and any(w in text for w in _DEVICE_WORDS)


def _step_error(exc: BaseException, spec: str, device: torch.device, what: str, batch: int,
                memory: DeviceMemory | None = None) -> GpucostError:
    if is_out_of_memory(exc):
        need = (memory or DeviceMemory(device)).needed(exc)
        return GpucostError(f"--torch-model {spec}: out of memory on {device} during {what} at batch {batch}"
                            + (f": {need}" if need else "") + "; pass a smaller --micro-batch (a callable that "
                            "takes batch_size) or return a smaller example batch")
    if _device_error(exc):
        return InputError(f"--torch-model {spec}: the model and its batch must be on one device ({device}): "
                          f"{_first_line(exc)}")
    return GpucostError(f"--torch-model {spec}: {what} failed: {_first_line(exc)}")


def sub_batch(work: Workload, keep: int) -> tuple[tuple[Any, ...], dict[str, Any], Any]:
    """(args, kwargs, targets) with every tensor whose leading dimension is the batch cut to its first
    ``keep`` samples (views, no copies); other tensors and values as they are."""
    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value[:keep] if value.dim() > 0 and value.shape[0] == work.batch_size else value
        if isinstance(value, tuple):
            return tuple(cut(v) for v in value)
        if isinstance(value, list):
            return [cut(v) for v in value]
        if isinstance(value, Mapping):
            return {k: cut(v) for k, v in value.items()}
        return value

    return cut(work.args), cut(work.kwargs), cut(work.targets)


def _count(step: TorchModelStep, batch: tuple[tuple[Any, ...], dict[str, Any], Any] | None) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs of one fp32 pass over ``batch`` (None: the whole batch);
    the gradients are set to None after, and nothing of the pass outlives this call."""
    from torch.utils.flop_counter import FlopCounterMode

    step.dtype = "fp32"
    with precision("fp32"):
        with FlopCounterMode(display=False) as forward:
            loss = step.loss(batch)
        step.check(loss)
        with FlopCounterMode(display=False) as backward:
            loss.backward()
    del loss
    step.work.optimizer.zero_grad(set_to_none=True)
    fwd = float(forward.get_total_flops())
    return fwd, fwd + float(backward.get_total_flops())


def count_flops(step: TorchModelStep) -> tuple[float, float, str]:
    """(forward, forward + backward) FLOPs of one step of ``step``'s whole batch, as FlopCounterMode
    counts them, and how they were counted.

    Counting runs a forward and backward in fp32 and keeps its graph while it counts; at the batch
    a run trains with, that graph (fp32, no autocast) can need more memory than the training step
    itself. So a batch of more than 4 is counted on sub-batches of 2 and 4 samples (the tensors'
    first samples): every op FlopCounterMode counts (matmul, convolution, attention) does work in
    proportion to the samples, so the batch's count is the count at 2 x batch / 2, which the count
    at 4 (exactly twice that at 2) confirms. When it is not exactly twice (an op whose work does not
    scale with the batch), or the batch is 4 or fewer, the whole batch is counted. Sub-batches
    of 2, not 1: batch norm in training mode needs more than one value per channel.
    """
    batch = step.work.batch_size
    if batch > 4:
        two = _count(step, sub_batch(step.work, 2))
        four = _count(step, sub_batch(step.work, 4))
        if all(math.isclose(b, 2 * a, rel_tol=1e-9) for a, b in zip(two, four)):
            scale = batch / 2
            return two[0] * scale, two[1] * scale, "counted on sub-batches of 2 and 4 samples, scaled to the batch"
    return (*_count(step, None), "counted on the whole batch")


def _round(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def _throughput(times_s: Sequence[float], batch: int, limit_s: float) -> float:
    """Samples per second over the steps of ``times_s`` no longer than ``limit_s``."""
    kept = [t for t in times_s if t <= limit_s] or list(times_s)
    return batch * len(kept) / sum(kept)


def _segments(times_s: Sequence[float], batch: int, parts: int, limit_s: float = math.inf) -> list[float]:
    """The throughput (samples/s, steps longer than ``limit_s`` left out) of each of ``parts``
    consecutive groups of steps of equal count (the first groups one step longer when they do not
    divide evenly), in order."""
    parts = max(1, min(parts, len(times_s)))
    size, extra = divmod(len(times_s), parts)
    out, start = [], 0
    for index in range(parts):
        end = start + size + (index < extra)
        out.append(_round(_throughput(times_s[start:end], batch, limit_s)))
        start = end
    return out


def _result(timing: Timing, flops_per_step: float, batch: int) -> dict[str, Any]:
    """One dtype's entry (schema: estimator/records/torch_model.py): the throughput without the
    interrupted steps (longer than SLOW_STEP x the median), the per-step statistics, the fifths."""
    from estimator.records.torch_model import SEGMENTS, SLOW_STEP

    rates = timing.rates(flops_per_step / 1e12)
    limit_s = SLOW_STEP * timing.median_s
    slow = sum(t > limit_s for t in timing.times_s)
    return {"samples_per_s": _round(_throughput(timing.times_s, batch, limit_s)),
            "median_samples_per_s": _round(batch / timing.median_s),
            "best_tflops": _round(rates["best"]), "median_tflops": _round(rates["median"]),
            "worst_tflops": _round(rates["worst"]), "stdev_pct": round(timing.stdev_pct, 2),
            "iterations": timing.iterations, "slow_steps": slow,
            "segment_samples_per_s": _segments(timing.times_s, batch, SEGMENTS, limit_s)}


def plan_dtypes(info: Any, requested: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    """The dtypes to list and the reasons for those not measured: :func:`profiler.model.plan_dtypes`
    (fp32 on a CPU with bf16 listed as skipped, bf16 on a GPU), fp8 always skipped."""
    from profiler.model import plan_dtypes as model_plan

    dtypes, skipped = model_plan(info, requested)
    for name in dtypes:
        if name == "fp8" and name not in skipped:
            skipped[name] = _FP8
    return dtypes, skipped


def measure_torch_model(resolved: Resolved | str, *, device: torch.device, dtypes: Sequence[str] = ("fp32",),
                        skipped: Mapping[str, str] | None = None, batch_size: int | None = None,
                        memory_format: str | None = None,
                        budget: Budget | None = None, progress: Callable[[str], None] | None = None,
                        command: str | None = None, holder: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the SPEC's model, count its FLOPs, time its training step per dtype and return the
    calibration file's ``torch_model`` section (schema: estimator/records/torch_model.py).

    ``budget`` defaults to :data:`DEFAULT_BUDGET` for the device kind. ``holder``, when given,
    always holds the section as far as it got (``holder["section"]``): on KeyboardInterrupt the
    dtypes already timed are kept there, the rest marked skipped, ``partial: true``, and the
    interrupt is raised again.
    """
    started, created = time.monotonic(), _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(resolved, str):
        resolved = resolve_spec(resolved)
    spec = resolved.spec
    skipped = dict(skipped or {})
    for name in dtypes:
        if name not in TRAIN_DTYPES and name not in skipped:
            if name != "fp8":
                raise InputError(f"no training step for dtype {name!r}; use one of {', '.join(TRAIN_DTYPES)}")
            skipped[name] = _FP8
    kind = "cpu" if device.type == "cpu" else "gpu"
    budget = budget or DEFAULT_BUDGET[kind]
    say = progress or (lambda message: None)
    holder = holder if holder is not None else {}

    say(f"building {spec}")
    work = build_workload(resolved, device, batch_size, memory_format)
    step = TorchModelStep(work, device, spec)
    memory = DeviceMemory(device)
    say(f"counting FLOPs of {work.model_id} (FlopCounterMode on sub-batches)")
    try:
        forward, training, counted = count_flops(step)
    except InputError:
        raise
    except (RuntimeError, MemoryError, ValueError, TypeError) as exc:
        raise _step_error(exc, spec, device, "the FLOP count's forward and backward pass", work.batch_size,
                          memory) from None
    memory.release()  # nothing of the count is referenced any more: give its blocks back before timing
    batch = work.batch_size
    section: dict[str, Any] = {
        "id": work.model_id, "spec": spec, "created_utc": created, "command": command, "partial": False,
        "duration_s": None, "params": sum(p.numel() for p in work.model.parameters() if p.requires_grad),
        "batch_size": batch, "flops_per_sample": _round(training / batch, 10),
        "forward_flops_per_sample": _round(forward / batch, 10), "optimizer": work.optimizer_name,
        "loss": work.loss_name, "results": {d: {"skipped": skipped.get(d, INTERRUPTED)} for d in dtypes}, "notes": [],
    }
    if command is None:
        del section["command"]
    section["notes"].extend(work.notes)
    if counted != "counted on the whole batch":
        section["notes"].append(f"FLOPs {counted} {batch} (FlopCounterMode); the count's graph was freed before "
                                "timing")
    if training == 0:
        section["notes"].append("FlopCounterMode counted no FLOPs in this model (no matmul, convolution or "
                                "attention): TFLOP/s are 0; samples/s are measured all the same")
    holder["section"] = section
    clock = clock_for(device)
    current = None
    try:
        for name in dtypes:
            if name in skipped:
                continue
            current = name
            step.dtype = name
            say(f"timing {work.model_id} {name} steps (batch {batch}, {work.optimizer_name})")
            memory.release()
            memory.reset_peak()
            try:
                with precision(name):
                    timing = measure(step, clock, warmup_s=budget.warmup_s, budget_s=budget.budget_s,
                                     min_iters=budget.min_iters, max_iters=budget.max_iters)
            except InputError:
                raise
            except (RuntimeError, MemoryError, ValueError, TypeError) as exc:
                if is_out_of_memory(exc) and any("median_tflops" in r for r in section["results"].values()):
                    need = memory.needed(exc)
                    section["results"][name] = {"skipped": "out of memory"}
                    section["notes"].append(f"{name}: out of memory at batch {batch}" + (f" ({need})" if need else ""))
                    memory.release()
                    continue
                raise _step_error(exc, spec, device, f"a {name} training step", batch, memory) from None
            section["results"][name] = result = _result(timing, training, batch)
            peak = memory.peak_bytes()
            if peak:  # on a GPU: what the timed steps held at most, at the batch they trained with
                result["peak_memory_gib"] = _round(peak / 2**30, 4)
            current = None
            if result["slow_steps"] > BUSY_SHARE * result["iterations"]:
                section["notes"].append(
                    f"{name}: {result['slow_steps']} of {result['iterations']} steps took more than {SLOW_STEP:g} x the "
                    "median step (the device was busy: another process took the CPU or the GPU) and are left out "
                    "of samples_per_s; profile again at a quiet time")
    except KeyboardInterrupt:
        section["partial"] = True
        section["notes"].append("interrupted (Ctrl-C)" + (f" while timing {current}" if current else "")
                                + ": the dtypes not timed are marked skipped")
        raise
    finally:
        section["duration_s"] = round(time.monotonic() - started, 1)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if not section["notes"]:
        del section["notes"]
    return section


# -- the whole profile: a calibration record -------------------------------------------------------

TORCH_MODEL_ONLY = ("not measured: --torch-model times the model's training step only; add --sweep to measure "
                    "the device too")
_RUN_MODEL_NOTE = "the model step was interrupted: no model section"  # profiler/run.py's note for --model


def profile_torch_model(spec: str | Resolved, device: str = "auto", dtypes: Sequence[str] | None = None, *,
                        batch_size: int | None = None, memory_format: str | None = None,
                        sweep: bool = False, full: bool = False,
                        catalog: Any = None, command: str | None = None, progress: Any = None,
                        notes: Sequence[str] = (), budget: Budget | None = None,
                        announce: Callable[..., None] | None = None,
                        sustained_s: float | None = None) -> dict[str, Any]:
    """The calibration record of a ``--torch-model`` profile: the ``torch_model`` section, plus the
    device sweep when ``sweep`` or ``full`` (else the sweep sections are empty, as for ``--model``).
    Ctrl-C: the record says ``partial: true`` and keeps what was timed; when the model had not
    even been built and counted, there is no ``torch_model`` section."""
    from profiler import run
    from profiler.device import describe, free_memory_bytes, resolve_device

    resolved = spec if isinstance(spec, Resolved) else resolve_spec(spec)
    torch_device = resolve_device(device)
    info = describe(torch_device, catalog)
    plan = run.make_plan(info, dtypes, full=full, free_bytes=free_memory_bytes(torch_device), sweep=sweep or full,
                         sustained_s=sustained_s)
    model_dtypes, model_skipped = plan_dtypes(info, dtypes)
    if announce is not None:
        announce(info, plan, [d for d in model_dtypes if d not in model_skipped])
    command = command or f"profiler.torch_model.step.profile_torch_model({resolved.spec!r})"
    holder: dict[str, Any] = {}

    def job(say: Callable[[str], None]) -> dict[str, Any]:
        return measure_torch_model(resolved, device=torch_device, dtypes=model_dtypes, skipped=model_skipped,
                                   batch_size=batch_size, memory_format=memory_format, budget=budget, progress=say,
                                   command=command, holder=holder)

    record = run.run_profile(plan, torch_device, info, progress=progress, extra_notes=notes, model=job,
                             command=command)
    section = record.pop("model", None) or holder.get("section")
    record["notes"] = [n for n in record["notes"] if n != _RUN_MODEL_NOTE]
    if plan.mode == "model" and record["bandwidth"].get("skipped") == run.MODEL_ONLY:
        record["bandwidth"]["skipped"] = TORCH_MODEL_ONLY
    if section is not None:
        if section.get("notes") == []:
            del section["notes"]
        if record["telemetry"].get("throttled"):
            section.setdefault("notes", []).append(
                f"the device throttled during this run ({', '.join(record['telemetry']['reasons'])})")
        record["torch_model"] = section
        record["partial"] = bool(record["partial"] or section["partial"])
    return record


# -- gpucost profile --torch-model (called from estimator/cli/profile.py) ---------------------------


__all__ = ["DEFAULT_BUDGET", "Resolved", "TorchModelStep", "Workload", "build_workload", "count_flops",
           "describe_optimizer", "measure_torch_model", "plan_dtypes", "precision", "profile_torch_model",
           "resolve_spec"]
