"""The project's vocabulary, defined once: precisions and dtypes, output formats, recompute modes,
ZeRO stages, FLOP-counting methods, time models, and the default sequence length.

Every other module imports these; nothing else spells them out.
"""

from __future__ import annotations

import enum

from estimator.errors import InputError

# Numeric formats an accelerator can have a dense peak for (catalogs/gpus.yaml ``peak_tflops``).
CATALOG_DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "fp4")
# Training precisions an estimate can use (picks the dense peak), in the order they are listed.
PRECISIONS = ("bf16", "fp16", "fp8", "tf32", "fp32")
DEFAULT_PRECISION = "bf16"
# Precisions the profiler measures (matmul, MLP and model steps).
PROFILE_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8")
# Spellings people and frameworks use for the same formats.
PRECISION_ALIASES = {
    "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32", "single": "fp32",
    "tensorfloat32": "tf32", "float8": "fp8", "float64": "fp64", "double": "fp64", "float4": "fp4",
}

FORMATS = ("table", "json", "yaml", "csv", "markdown")
DEFAULT_CALIBRATION_FILE = "gpucost-calibration.yaml"  # what `gpucost profile` writes by default
RECOMPUTE_MODES = ("none", "selective", "full")
# What --recompute selective keeps: "attention" is Megatron's (Korthikanti et al. 2022 section 5: rerun
# the attention core only); "alternate_matmuls" is torchtitan's op-level selective activation
# checkpointing (estimator.model.memory.layer_linears)
SELECTIVE_POLICIES = ("attention", "alternate_matmuls")
ZERO_STAGES = (0, 1, 2, 3)
# the training stacks of catalogs/stacks.yaml (--stack) and the master-weights modes (--master-weights)
STACKS = ("megatron", "deepspeed", "fsdp", "hf")
MASTER_WEIGHTS = ("fp32", "bf16")

# When neither the user, the catalog nor the config gives a training sequence length.
DEFAULT_SEQ_LEN = 2048


class FlopsMethod(str, enum.Enum):
    """How training FLOPs are counted for the time: 6ND (Kaplan et al. 2020) or the detailed
    per-layer count of the architecture (PaLM appendix B convention, :mod:`estimator.model.flops`)."""

    SIX_ND = "6nd"
    DETAILED = "detailed"


class TimeModel(str, enum.Enum):
    """How wall-clock is derived: ``flat`` (device-hours / devices at one MFU, perfect scaling) or
    ``step`` (the step-time model of a parallel layout, :mod:`estimator.timing.step`)."""

    FLAT = "flat"
    STEP = "step"


def normalize_precision(text: str, *, what: str = "--precision", choices: tuple[str, ...] = PRECISIONS) -> str:
    """``"bfloat16"`` -> ``"bf16"``; InputError naming ``what`` and the choices for anything else."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{what} must be one of {', '.join(choices)}, got {text!r}")
    key = text.strip().lower().replace("-", "").replace("_", "")
    key = PRECISION_ALIASES.get(key, key)
    if key not in choices:
        raise InputError(f"unknown {what} {text!r}; use one of {', '.join(choices)}")
    return key


def choice(text: str, choices: tuple[str, ...], *, what: str) -> str:
    """``text`` if it is one of ``choices`` (case-insensitive), else InputError naming them."""
    if isinstance(text, str) and text.strip().lower() in choices:
        return text.strip().lower()
    raise InputError(f"unknown {what} {text!r}; use one of {', '.join(choices)}")


#: Fine-tuning methods (estimator.model.finetune) and the linear projections LoRA can adapt.
FINETUNE_METHODS = ("full", "lora", "qlora")
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


def parse_lora_targets(value: object) -> tuple[str, ...]:
    """The LoRA targets of ``value`` (``"q,v"``, ``["q_proj", "v_proj"]``, ``"all"``) in canonical
    order, or InputError naming the close match."""
    if isinstance(value, str):
        parts = [p.strip().lower() for p in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(p, str) for p in value):
        parts = [p.strip().lower() for p in value]
    else:
        raise InputError(f"--lora-targets must be a comma-separated list such as q,k,v,o, got {value!r}")
    parts = [p[:-5] if p.endswith("_proj") else p for p in parts if p]
    if parts == ["all"]:
        return LORA_TARGETS
    if not parts:
        raise InputError(f"--lora-targets must name at least one of {', '.join(LORA_TARGETS)}, or all")
    for part in parts:
        if part not in LORA_TARGETS:
            import difflib

            close = difflib.get_close_matches(part, LORA_TARGETS, n=1)
            raise InputError(f"unknown --lora-targets entry {part!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; use some of {', '.join(LORA_TARGETS)}, or all")
    return tuple(t for t in LORA_TARGETS if t in parts)


# An ordinary pre-training length, for a config.json whose only length is its context window: Llama 2
# (arXiv 2307.09288 section 2.2), OLMo 2 (arXiv 2501.00656), Qwen2.5 (arXiv 2412.15115 section 3.1:
# 4,096 tokens, then 32,768 in a final long-context stage) and DeepSeek-V3 (arXiv 2412.19437 section
# 4.3) pre-train at 4,096; the long context is a short, later stage that the window describes.
ORDINARY_SEQ_LEN = 4096


def resolve_seq_len(given: int | None, catalog_seq_len: int | None, config_seq_len: int | None,
                    max_position_embeddings: int | None = None) -> tuple[int, str]:
    """(sequence length, where it came from): the user's; else the catalog's published pre-training
    length; else a config's length from before its context was extended (rope_scaling's
    ``original_max_position_embeddings``, shorter than its window); else ``ORDINARY_SEQ_LEN``, or the
    config's window when that is shorter (a context window is what a model can read, not what it was
    pre-trained at); else ``DEFAULT_SEQ_LEN``."""
    if given is not None:
        return given, "--seq-len"
    if catalog_seq_len is not None:
        return catalog_seq_len, "catalog pre-training length"
    if config_seq_len is not None:
        if max_position_embeddings is not None and config_seq_len < max_position_embeddings:
            return config_seq_len, ("config.json's original_max_position_embeddings (the pre-training length "
                                    f"before the context was extended to {max_position_embeddings:,})")
        if config_seq_len <= ORDINARY_SEQ_LEN:
            return config_seq_len, f"config.json's context window ({config_seq_len:,}), the whole of it"
        return ORDINARY_SEQ_LEN, (f"an ordinary pre-training length, {ORDINARY_SEQ_LEN:,} (Llama 2, OLMo 2, Qwen2.5, "
                                  f"DeepSeek-V3), not the config's {config_seq_len:,}-token context window; "
                                  "set --seq-len")
    return DEFAULT_SEQ_LEN, f"default {DEFAULT_SEQ_LEN} (no length known for the model)"


__all__ = [
    "CATALOG_DTYPES", "DEFAULT_CALIBRATION_FILE", "ORDINARY_SEQ_LEN", "DEFAULT_PRECISION", "DEFAULT_SEQ_LEN",
    "FINETUNE_METHODS", "FORMATS", "FlopsMethod", "LORA_TARGETS", "PRECISIONS", "PRECISION_ALIASES", "PROFILE_DTYPES",
    "MASTER_WEIGHTS", "RECOMPUTE_MODES", "SELECTIVE_POLICIES", "STACKS", "TimeModel", "ZERO_STAGES", "choice",
    "parse_lora_targets",
    "normalize_precision", "resolve_seq_len",
]
