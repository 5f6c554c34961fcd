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
ZERO_STAGES = (0, 1, 2, 3)

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


def resolve_seq_len(given: int | None, catalog_seq_len: int | None, config_seq_len: int | None) -> tuple[int, str]:
    """(sequence length, where it came from): the user's, else the catalog's pre-training length,
    else the config's (original) max_position_embeddings, else ``DEFAULT_SEQ_LEN``."""
    if given is not None:
        return given, "--seq-len"
    if catalog_seq_len is not None:
        return catalog_seq_len, "catalog pre-training length"
    if config_seq_len is not None:
        return config_seq_len, "config.json (original_)max_position_embeddings"
    return DEFAULT_SEQ_LEN, f"default {DEFAULT_SEQ_LEN} (no length known for the model)"


__all__ = [
    "CATALOG_DTYPES", "DEFAULT_CALIBRATION_FILE", "DEFAULT_PRECISION", "DEFAULT_SEQ_LEN", "FORMATS", "FlopsMethod", "PRECISIONS",
    "PRECISION_ALIASES", "PROFILE_DTYPES", "RECOMPUTE_MODES", "TimeModel", "ZERO_STAGES", "choice",
    "normalize_precision", "resolve_seq_len",
]
