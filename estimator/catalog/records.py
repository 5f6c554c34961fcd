"""The catalog's records: accelerators, prices, models, datasets and published runs (frozen; each
field converted by its annotation when :func:`estimator.catalog.fields._records` loads a file)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OFFERS = ("on-demand", "spot", "reserved", "capacity-block", "assumed")
RUN_SCOPES = ("pretrain", "all")


@dataclass(frozen=True, slots=True)
class Accelerator:
    """One accelerator model. ``peak_tflops`` holds DENSE peaks per dtype (TFLOP/s)."""

    id: str
    name: str
    vendor: str
    peak_tflops: Mapping[str, float]
    memory_gb: float
    memory_bandwidth_gbps: float
    tdp_w: float | None  # required in gpus.yaml; None only for a calibrated device with no datasheet
    interconnect: str
    source: str
    retrieved: _dt.date
    # the chip generation (volta, ampere, ada, hopper, blackwell, cdna3, tpu): what a stack's kernels
    # can use (catalogs/stacks.yaml attention_fraction); None for a calibrated device without a datasheet
    generation: str | None = None
    aliases: tuple[str, ...] = ()
    device_names: tuple[str, ...] = ()
    purchase_price_usd: float | None = None
    purchase_price_source: str | None = None
    notes: str | None = None

    def peak_for(self, precision: str) -> float | None:
        """Dense peak TFLOP/s for ``precision``, or None when the chip has no such mode."""
        return self.peak_tflops.get(precision)


@dataclass(frozen=True, slots=True)
class Price:
    """A rental price for one accelerator-hour (USD) from one provider and offer."""

    id: str
    accelerator: str
    provider: str
    offer: str
    usd_per_gpu_hour: float
    observed: _dt.date
    source: str
    instance: str | None = None
    gpus_per_instance: int | None = None
    region: str | None = None
    default: bool = False
    notes: str | None = None


@dataclass(frozen=True, slots=True)
class Model:
    """A model with its published size and training tokens. MoE: ``active_params`` < ``params``."""

    id: str
    name: str
    params: float
    source: str
    retrieved: _dt.date
    aliases: tuple[str, ...] = ()
    active_params: float | None = None
    training_tokens: float | None = None
    seq_len: int | None = None
    architecture: Mapping[str, Any] | None = None
    global_batch_tokens: float | None = None  # published tokens per optimizer step (the step model's default)
    forward_flops_per_sample: float | None = None  # models trained on samples (images): forward FLOPs each
    input_size: str | None = None  # what one sample is, for forward_flops_per_sample
    notes: str | None = None

    @property
    def params_active(self) -> float:
        """Parameters used per token: ``active_params`` for MoE, else ``params``."""
        return self.active_params if self.active_params is not None else self.params


@dataclass(frozen=True, slots=True)
class Dataset:
    """A training set: the samples one epoch trains on (and, for text, the tokens per sample)."""

    id: str
    name: str
    samples: int
    sample: str
    source: str
    retrieved: _dt.date
    aliases: tuple[str, ...] = ()
    seq_len: int | None = None
    notes: str | None = None
    finetune_batch: int | None = None  # a fine-tuning set's published batch (sequences per optimizer step)


@dataclass(frozen=True, slots=True)
class SampleRun:
    """Published training throughput of a workload counted in samples (catalogs/sample_runs.yaml): the
    runs the default utilisation of a non-transformer model comes from."""

    id: str
    model: str  # a models.yaml id with forward_flops_per_sample
    accelerator: str
    num_devices: int
    precision: str
    samples_per_s: float  # all devices together, while training
    setting: str
    source: str
    retrieved: _dt.date
    notes: str | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """A published training run, for back-testing estimates (``gpucost validate``)."""

    id: str
    model: str
    params: float
    tokens: float
    accelerator: str
    num_devices: int
    precision: str
    source: str
    retrieved: _dt.date
    device_hours: float | None = None
    wall_clock_days: float | None = None
    reported_tflops_per_device: float | None = None
    reported_mfu: float | None = None
    reported_flops: float | None = None
    scope: str | None = None  # what device_hours cover: "pretrain" or "all" (pre- and post-training); see RUN_SCOPES
    total_params: float | None = None  # MoE: all parameters (``params`` is the ACTIVE count); None for dense
    notes: str | None = None

