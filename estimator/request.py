"""The estimate request: every question ``gpucost estimate`` / ``compare`` can be asked, as one
frozen, validated record.

The CLI builds an :class:`EstimateRequest` from parsed flags, library callers from numbers (or the
same strings the CLI takes: ``params="175B"``). All validation happens here, once: types, ranges,
and which options exclude which. Messages name the option as the CLI spells it (``--tokens``), so
a library caller and a CLI user read the same sentence. What needs the catalog (names, an
architecture) is checked by :func:`estimator.resolve.resolve`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from estimator.errors import InputError
from estimator.numbers import parse_count, parse_duration_s, parse_quantity, parse_seq_len
from estimator.vocab import (DEFAULT_PRECISION, FINETUNE_METHODS, MASTER_WEIGHTS, RECOMPUTE_MODES, STACKS, ZERO_STAGES,
                             FlopsMethod, TimeModel, choice, normalize_precision, parse_lora_targets)

DEFAULT_GPU = "h100"
DEFAULT_PUE = 1.2  # data-centre power usage effectiveness assumed for energy (typical hyperscale 1.1-1.2)
# US industrial average 2024 (EIA Electric Power Monthly, Table 5.6.B: about 8.1 cents per kWh).
DEFAULT_ELECTRICITY_USD_PER_KWH = 0.08
DEFAULT_LIFE_YEARS = 3.0  # straight-line amortisation life for owned accelerators
DEFAULT_NUM_LAYOUTS = 2  # the chosen layout and the next best
MAX_DEVICES = 1_000_000

# field -> the CLI option that sets it (error messages use these names)
OPTION = {
    "model": "--model", "hf_config": "--hf-config", "params": "--params", "active_params": "--active-params",
    "flops": "--flops", "tokens": "--tokens", "flops_method": "--flops-method", "seq_len": "--seq-len",
    "gpu": "--gpu", "num_gpus": "--num-gpus", "precision": "--precision", "system": "--system",
    "mfu": "--mfu", "tflops": "--tflops", "gpu_hours": "--gpu-hours", "calibration": "--calibration",
    "price": "--price", "provider": "--provider", "deadline_s": "--deadline", "budget_usd": "--budget",
    "chinchilla": "--chinchilla", "pue": "--pue", "electricity_usd_per_kwh": "--electricity-price",
    "life_years": "--life-years", "tensor_parallel": "--tensor-parallel", "pipeline_parallel": "--pipeline-parallel",
    "virtual_stages": "--virtual-stages",
    "context_parallel": "--context-parallel", "expert_parallel": "--expert-parallel", "zero_stage": "--zero-stage",
    "global_batch": "--global-batch", "micro_batch": "--micro-batch", "recompute": "--recompute",
    "time_model": "--time-model", "num_layouts": "--layouts", "goodput": "--goodput", "scope": "--scope",
    "dataset": "--dataset", "samples": "--samples", "epochs": "--epochs", "flops_per_sample": "--flops-per-sample",
    "measured_time_s": "--measured-time", "measured_gpu": "--measured-gpu", "measured_num_gpus": "--measured-num-gpus",
    "sequence_parallel": "--sequence-parallel", "flash_attention": "--flash-attention",
    "stack": "--stack", "compile": "--compile", "master_weights": "--master-weights",
    "attention_kernel": "--attention-kernel", "finetune": "--finetune", "lora_rank": "--lora-rank",
    "lora_targets": "--lora-targets",
}
_QUANTITIES = ("params", "active_params", "flops", "tokens", "tflops", "gpu_hours", "price", "budget_usd", "samples",
               "epochs", "flops_per_sample")
_COUNTS = ("num_gpus", "seq_len", "tensor_parallel", "pipeline_parallel", "virtual_stages", "context_parallel",
           "expert_parallel", "global_batch", "micro_batch", "num_layouts", "measured_num_gpus", "lora_rank")
_NAMES = ("model", "gpu", "system", "provider", "dataset", "measured_gpu", "attention_kernel")
_PATHS = ("hf_config", "calibration")
LAYOUT_FIELDS = ("tensor_parallel", "pipeline_parallel", "virtual_stages", "context_parallel", "expert_parallel",
                 "zero_stage", "global_batch", "micro_batch", "recompute", "sequence_parallel", "flash_attention",
                 "stack", "compile", "master_weights", "attention_kernel")


@dataclass(frozen=True, slots=True)
class EstimateRequest:
    """One estimate question. Unset fields are None; every default is resolved later and shown.

    What is trained: exactly one of ``model`` (catalog id or alias), ``hf_config`` (a config.json),
    ``params`` (with ``tokens``; ``active_params`` for MoE) or ``flops`` (a total).
    Throughput: at most one of ``mfu`` (fraction of the dense peak), ``tflops`` (achieved TFLOP/s
    per device), ``gpu_hours`` (the inverse question), ``calibration`` (a ``gpucost profile`` file).
    Planning: ``deadline_s`` (seconds; or a string such as ``"30d"``) answers the devices needed;
    ``budget_usd`` the tokens bought (``chinchilla``: the compute-optimal size).
    Layout (the step-time model): ``tensor_parallel`` ... ``recompute``; unset sizes are searched.
    """

    model: str | None = None
    hf_config: Path | None = None
    params: float | None = None
    active_params: float | None = None
    flops: float | None = None
    tokens: float | None = None
    flops_method: FlopsMethod = FlopsMethod.SIX_ND
    seq_len: int | None = None
    gpu: str | None = None
    num_gpus: int | None = None
    precision: str = DEFAULT_PRECISION
    system: str | None = None
    mfu: float | None = None
    tflops: float | None = None
    gpu_hours: float | None = None
    calibration: Path | None = None
    price: float | None = None
    provider: str | None = None
    deadline_s: float | None = None
    budget_usd: float | None = None
    chinchilla: bool = False
    pue: float = DEFAULT_PUE
    electricity_usd_per_kwh: float = DEFAULT_ELECTRICITY_USD_PER_KWH
    life_years: float = DEFAULT_LIFE_YEARS
    time_model: TimeModel | None = None  # None: step when the architecture is known, else flat
    tensor_parallel: int | None = None
    pipeline_parallel: int | None = None
    virtual_stages: int | None = None  # interleaved chunks per pipeline stage (Megatron's virtual pipeline size)
    context_parallel: int | None = None
    expert_parallel: int | None = None
    zero_stage: int | None = None
    global_batch: int | None = None
    micro_batch: int | None = None
    recompute: str | None = None
    num_layouts: int = DEFAULT_NUM_LAYOUTS
    goodput: float | None = None
    scope: str | None = None
    dataset: str | None = None
    samples: float | None = None
    epochs: float | None = None
    flops_per_sample: float | None = None  # FORWARD FLOPs per sample; training = 3 x forward
    measured_time_s: float | None = None  # a reported wall-clock time of this run, to move to other hardware
    measured_gpu: str | None = None
    measured_num_gpus: int | None = None
    sequence_parallel: bool | None = None  # None: on whenever tensor parallelism is (Korthikanti et al. 2022)
    flash_attention: bool | None = None  # None: a fused attention kernel (FlashAttention, Dao et al. 2022)
    stack: str | None = None  # the training software (catalogs/stacks.yaml); None: megatron, the step model's own
    compile: bool | None = None  # torch.compile (the fsdp and hf stacks)
    master_weights: str | None = None  # fp32: mixed precision, 16 B/param; bf16: weights, grads, AdamW in bf16
    attention_kernel: str | None = None  # flash2 | flash1 (catalogs/stacks.yaml); None: the stack's own
    finetune: str | None = None  # full | lora | qlora (estimator.model.finetune); None: pre-training
    lora_rank: int | None = None  # LoRA rank r; None: 16
    lora_targets: tuple[str, ...] | None = None  # "q,k,v" or a list; None: q, k, v, o, gate, up, down

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in _NAMES:
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, str):
                    raise InputError(f"{OPTION[name]} must be a name, got {type(value).__name__} {value!r}")
                if not value.strip():
                    raise InputError(f"{OPTION[name]} must not be empty")
                set_(self, name, value.strip())
        for name in _PATHS:
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, (str, Path)) or not str(value).strip():
                    raise InputError(f"{OPTION[name]} must be a file path, got {value!r}")
                set_(self, name, Path(value))
        for name in _QUANTITIES:
            value = getattr(self, name)
            if value is not None:
                set_(self, name, parse_quantity(value, what=OPTION[name]))
        for name in _COUNTS:
            value = getattr(self, name)
            if value is not None:
                limit = {"num_gpus": MAX_DEVICES, "global_batch": 100 * MAX_DEVICES, "num_layouts": 50}.get(name, 10**7)
                parse = parse_seq_len if name == "seq_len" else parse_count  # 128K = 131,072 tokens
                set_(self, name, parse(value, what=OPTION[name], maximum=limit))
        if self.measured_time_s is not None:
            value = self.measured_time_s
            seconds = parse_duration_s(value, what="--measured-time") if isinstance(value, str) else \
                parse_quantity(value, what="--measured-time")
            set_(self, "measured_time_s", seconds)
        if self.deadline_s is not None:
            if isinstance(self.deadline_s, str):
                set_(self, "deadline_s", parse_duration_s(self.deadline_s))
            else:
                seconds = parse_quantity(self.deadline_s, what="--deadline")
                if seconds < 1:
                    raise InputError(f"--deadline must be at least 1 s, got {self.deadline_s!r}")
                set_(self, "deadline_s", seconds)
        set_(self, "precision", normalize_precision(self.precision))
        set_(self, "flops_method", _enum(FlopsMethod, self.flops_method, "flops_method"))
        if self.time_model is not None:
            set_(self, "time_model", _enum(TimeModel, self.time_model, "time_model"))
        if self.recompute is not None:
            set_(self, "recompute", choice(self.recompute, RECOMPUTE_MODES, what="--recompute"))
        if self.scope is not None:
            set_(self, "scope", choice(self.scope, ("pretrain", "all"), what="--scope"))
        if self.finetune is not None:
            set_(self, "finetune", choice(self.finetune, FINETUNE_METHODS, what="--finetune"))
        if self.lora_targets is not None:
            set_(self, "lora_targets", parse_lora_targets(self.lora_targets))
        if self.zero_stage is not None and (isinstance(self.zero_stage, bool) or self.zero_stage not in ZERO_STAGES):
            raise InputError(f"--zero-stage must be one of 0, 1, 2, 3, got {self.zero_stage!r}")
        if self.stack is not None:
            set_(self, "stack", choice(self.stack, STACKS, what="--stack"))
        if self.master_weights is not None:
            set_(self, "master_weights", choice(self.master_weights, MASTER_WEIGHTS, what="--master-weights"))
        if self.attention_kernel is not None:  # its names are the stack's (timing.stacks.stack_choice checks them)
            set_(self, "attention_kernel", self.attention_kernel.lower())
        for name in ("chinchilla", "sequence_parallel", "flash_attention", "compile"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise InputError(f"{OPTION[name]} must be true or false, got {value!r}")
        for name, low in (("mfu", 0.0), ("goodput", 0.0)):
            value = getattr(self, name)
            if value is not None:
                value = _number(value, name)
                if not low < value <= 1:
                    raise InputError(f"{OPTION[name]} must be a fraction in (0, 1], e.g. 0.4 for 40%, got {value:g}")
                set_(self, name, value)
        pue = _number(self.pue, "pue")
        if pue < 1 or pue > 10:
            raise InputError(f"--pue must be between 1.0 and 10, got {self.pue!r}")
        set_(self, "pue", pue)
        electricity = _number(self.electricity_usd_per_kwh, "electricity_usd_per_kwh")
        if electricity < 0:
            raise InputError(f"--electricity-price must be non-negative, got {self.electricity_usd_per_kwh!r}")
        set_(self, "electricity_usd_per_kwh", electricity)
        life = _number(self.life_years, "life_years")
        if not 0 < life <= 100:
            raise InputError(f"--life-years must be in (0, 100], got {self.life_years!r}")
        set_(self, "life_years", life)
        self._check_combinations()

    def _check_combinations(self) -> None:
        in_samples = self.dataset is not None or self.samples is not None
        adapters = [OPTION[n] for n in ("lora_rank", "lora_targets") if getattr(self, n) is not None]
        if adapters and self.finetune not in ("lora", "qlora"):
            raise InputError(f"{' and '.join(adapters)} describe LoRA adapters; add --finetune lora or --finetune qlora")
        if self.finetune is not None and not (self.model is not None or self.hf_config is not None):
            raise InputError("--finetune needs a model with an architecture: --model NAME or --hf-config PATH")
        if self.finetune is not None and (self.budget_usd is not None or self.chinchilla):
            raise InputError("--budget answers the tokens of a pre-training run; drop --finetune or --budget")
        if self.epochs is not None and not in_samples:
            raise InputError("--epochs counts passes over --dataset NAME or --samples N; give one of them")
        if self.flops_per_sample is not None and not in_samples:
            raise InputError("--flops-per-sample needs the samples trained: --dataset NAME or --samples N")
        if in_samples and (self.tokens is not None or self.flops is not None):
            raise InputError("--dataset/--samples say how much is trained; drop --tokens/--flops")
        if in_samples and self.params is not None and self.flops_per_sample is None:
            raise InputError("--params with --dataset/--samples needs --flops-per-sample (forward FLOPs of one sample)")
        if in_samples and self.budget_usd is not None:
            raise InputError("--budget answers the tokens of a token workload; drop --dataset/--samples")
        measured = [OPTION[n] for n in ("measured_gpu", "measured_num_gpus") if getattr(self, n) is not None]
        if measured and self.measured_time_s is None:
            raise InputError(f"{' and '.join(measured)} describe a measured run; add --measured-time (e.g. 30min)")
        if self.measured_time_s is not None and self.measured_gpu is None:
            raise InputError("--measured-time needs --measured-gpu (the accelerator the time was measured on)")
        given = [OPTION[n] for n in ("model", "hf_config", "params", "flops") if getattr(self, n) is not None]
        planning_size = self.chinchilla
        if len(given) > 1:
            raise InputError(f"give only one of --model, --hf-config, --params or --flops (got {' and '.join(given)})")
        if not given and not planning_size:
            raise InputError("say what is trained: --model NAME, --hf-config PATH, --params N (with --tokens), or --flops F")
        if self.active_params is not None and self.params is None and self.model is None:
            raise InputError("--active-params needs --params (the total) or --model")
        if self.active_params is not None and self.params is not None and self.active_params > self.params:
            raise InputError(f"--active-params ({self.active_params:.4g}) exceeds the total parameters ({self.params:.4g})")
        if self.flops is not None and self.tokens is not None:
            raise InputError("--tokens has no effect with --flops; drop one of them")
        if self.params is not None and self.tokens is None and self.budget_usd is None and not in_samples:
            raise InputError("--params needs --tokens (the number of training tokens, e.g. 300B)")
        architecture_known = self.model is not None or self.hf_config is not None
        if self.seq_len is not None and not architecture_known:
            raise InputError("--seq-len applies to a model with an architecture (--model or --hf-config); "
                             "with --params or --flops the count is 6ND, which has no sequence length")
        rates = [OPTION[n] for n in ("mfu", "tflops", "gpu_hours", "calibration", "measured_time_s")
                 if getattr(self, n) is not None]
        if len(rates) > 1:
            raise InputError("give only one of --mfu, --tflops, --gpu-hours, --calibration or --measured-time "
                             f"(got {' and '.join(rates)})")
        if self.price is not None and self.provider is not None:
            raise InputError("give --price or --provider, not both")
        if self.deadline_s is not None and self.num_gpus is not None:
            raise InputError("--deadline answers the number of devices; drop --num-gpus")
        if self.gpu_hours is not None and (self.deadline_s is not None or self.budget_usd is not None):
            raise InputError("--gpu-hours answers the inverse question; drop it with --deadline or --budget")
        if self.chinchilla and self.budget_usd is None:
            raise InputError("--chinchilla needs --budget (the money to spend)")
        if self.chinchilla and given:
            raise InputError("--chinchilla chooses the model size; drop " + " and ".join(given))
        if self.budget_usd is not None and (self.tokens is not None or self.flops is not None):
            raise InputError("--budget answers the tokens; drop --tokens/--flops")
        layout = [OPTION[n] for n in LAYOUT_FIELDS if getattr(self, n) is not None]
        if self.system is not None:
            layout.append("--system")
        if self.num_layouts != DEFAULT_NUM_LAYOUTS:
            layout.append("--layouts")
        if layout:
            if self.time_model is TimeModel.FLAT:
                raise InputError(f"{', '.join(layout)} describe a parallel layout, which --time-model flat ignores; "
                                 "drop them or the --time-model flag")
            if not architecture_known:
                raise InputError(f"{', '.join(layout)} need the step-time model, which needs an architecture: "
                                 "--model NAME (with an architecture) or --hf-config PATH")
            if rates and rates[0] in ("--mfu", "--tflops", "--gpu-hours", "--measured-time"):
                raise InputError(f"{rates[0]} sets the throughput directly (the flat model); drop it or "
                                 f"{', '.join(layout)}")
        if self.time_model is TimeModel.STEP and not architecture_known:
            raise InputError("--time-model step needs an architecture: --model NAME (with one) or --hf-config PATH")
        if self.time_model is TimeModel.STEP and rates and rates[0] in ("--mfu", "--tflops", "--gpu-hours",
                                                                        "--measured-time"):
            raise InputError(f"{rates[0]} sets the throughput directly; it cannot be combined with --time-model step")

    @property
    def architecture_known(self) -> bool:
        """Whether the request names a model that may carry an architecture."""
        return self.model is not None or self.hf_config is not None

    def with_(self, **changes: Any) -> EstimateRequest:
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)


def _keywords_only(init: Any) -> Any:
    """Wrap the dataclass ``__init__`` so that a positional value or an unknown keyword is an
    InputError naming it (with close matches), not Python's TypeError."""
    import difflib
    import functools

    @functools.wraps(init)
    def checked(self: EstimateRequest, *args: Any, **options: Any) -> None:
        if args:
            raise InputError(f"EstimateRequest takes keyword options only (params=\"7B\", gpu=\"h100\", ...), "
                             f"got {len(args)} positional value(s): {args[0]!r}")
        known = [f for f in EstimateRequest.__dataclass_fields__ if EstimateRequest.__dataclass_fields__[f].init]
        for name in options:
            if name not in known:
                matches = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
                hint = (f"did you mean {', '.join(repr(m) for m in matches)}?" if matches
                        else "see help(estimator.EstimateRequest) for the options")
                raise InputError(f"unknown estimate option {name!r}; {hint}")
        init(self, **options)

    return checked


EstimateRequest.__init__ = _keywords_only(EstimateRequest.__init__)  # type: ignore[method-assign]


def _enum(kind: type, value: Any, name: str) -> Any:
    try:
        return kind(value.strip().lower() if isinstance(value, str) else value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise InputError(f"unknown {OPTION[name]} {value!r}; use one of {choices}") from None


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{OPTION[name]} must be a number, got {value!r}")
    if isinstance(value, str):
        return parse_quantity(value, what=OPTION[name])
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{OPTION[name]} must be finite, got {value!r}")
    return value


__all__ = ["DEFAULT_ELECTRICITY_USD_PER_KWH", "DEFAULT_GPU", "DEFAULT_LIFE_YEARS", "DEFAULT_PUE", "EstimateRequest",
           "LAYOUT_FIELDS", "OPTION"]
