"""The report of one architecture (``gpucost models show``): exact parameters, FLOPs per token,
training memory per device and, on a GPU, the fit check. :func:`resolve_architecture` finds the
architecture of a catalog model or a config.json; :func:`model_report` builds the record. Pure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from estimator.model.arch import Architecture
from estimator.model.hf_config import architecture_for_model, load_hf_config
from estimator.model.params import count_params
from estimator.errors import InputError
from estimator.model.flops import flops_per_token
from estimator.model.memory import (DEFAULT_GRAD_BYTES, DEFAULT_OPTIMIZER_BYTES, DEFAULT_RESERVE_GB, DEFAULT_WEIGHT_BYTES, GB, Parallelism, fit_check, min_devices, training_memory)

def _arch_fields(arch: Architecture) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model_type": arch.model_type, "num_layers": arch.num_layers, "hidden_size": arch.hidden_size,
        "num_heads": arch.num_heads, "num_kv_heads": arch.num_kv_heads, "head_dim": arch.head_dim,
        "ffn_size": arch.ffn_size, "gated_ffn": arch.gated_ffn, "vocab_size": arch.vocab_size,
        "tie_embeddings": arch.tie_embeddings, "position_embedding": arch.position_embedding, "norm": arch.norm,
    }
    if arch.moe is not None:
        m = arch.moe
        out["moe"] = {"num_experts": m.num_experts, "experts_per_token": m.experts_per_token,
                      "expert_ffn_size": m.expert_ffn_size, "num_shared_experts": m.num_shared_experts,
                      "first_k_dense": m.first_k_dense, "num_moe_layers": arch.num_moe_layers}
    if arch.mla is not None:
        a = arch.mla
        out["mla"] = {"q_lora_rank": a.q_lora_rank, "kv_lora_rank": a.kv_lora_rank,
                      "qk_nope_head_dim": a.qk_nope_head_dim, "qk_rope_head_dim": a.qk_rope_head_dim,
                      "v_head_dim": a.v_head_dim}
    if arch.num_mtp_layers:
        out["num_mtp_layers"] = arch.num_mtp_layers
    return out


@dataclass(frozen=True, slots=True)
class FlopsReport:
    """FLOPs per token (see :class:`estimator.model.flops.FlopsPerToken`)."""

    forward: float
    train_model: float
    train_hardware: float
    recompute: str
    six_n: float
    palm_6n_12lhqt: float
    detailed_over_six_n: float
    forward_breakdown: dict[str, float]
    mtp_forward: float | None = None


@dataclass(frozen=True, slots=True)
class MemoryReport:
    """Training memory on the most loaded device, decimal GB, and the layout it assumes."""

    micro_batch: int
    recompute: str
    flash_attention: bool
    parallel: dict[str, Any]
    bytes_per_param: dict[str, float]
    params_per_device: float
    weights_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    total_gb: float


@dataclass(frozen=True, slots=True)
class FitReport:
    """Whether the layout fits a GPU, and the fewest devices that hold the run."""

    gpu: str
    memory_gb: float
    reserve_gb: float
    usable_gb: float
    required_gb: float
    fits: bool
    min_devices: int | None = None
    min_devices_note: str | None = None
    min_layout: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ModelReport:
    """The ``gpucost models show`` record. ``to_dict``/``from_dict`` give its JSON form (optional
    parts absent when they do not apply)."""

    model: str
    architecture: dict[str, Any]
    params_total: int
    params_active: int
    params_breakdown: dict[str, int]
    params_active_breakdown: dict[str, int]
    seq_len: int
    seq_len_source: str
    causal: bool
    train_flops_per_token: float
    flops_per_token: FlopsReport
    memory: MemoryReport
    fit: FitReport | None = None
    params_mtp_total: int | None = None
    params_mtp_active: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        optional = [(data, "params_mtp_total"), (data, "params_mtp_active"), (data, "fit"),
                    (data["flops_per_token"], "mtp_forward")]
        if data["fit"] is not None:
            optional += [(data["fit"], "min_devices_note"), (data["fit"], "min_layout")]
        for where, key in optional:
            if where[key] is None:
                del where[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelReport:
        parts = dict(data)
        parts["flops_per_token"] = FlopsReport(**data["flops_per_token"])
        parts["memory"] = MemoryReport(**data["memory"])
        parts["fit"] = FitReport(**data["fit"]) if data.get("fit") else None
        return cls(**parts)


def model_report(arch: Architecture, *, seq_len: int, seq_len_source: str = "given", causal: bool = False,
                 recompute: str = "none", micro_batch: int = 1, parallel: Parallelism | None = None,
                 flash_attention: bool = False, weight_bytes: float = DEFAULT_WEIGHT_BYTES,
                 grad_bytes: float = DEFAULT_GRAD_BYTES, optimizer_bytes: float = DEFAULT_OPTIMIZER_BYTES,
                 gpu: Any = None, reserve_gb: float = DEFAULT_RESERVE_GB,
                 search: dict[str, int | None] | None = None) -> ModelReport:
    """The ``models show`` record: parameters (exact), FLOPs per token, memory per device and,
    when ``gpu`` (a catalog Accelerator) is given, the fit check and the minimum device count.
    FLOPs in FLOPs per token; memory in decimal GB (``_gb``)."""
    parallel = parallel or Parallelism()
    params = count_params(arch)
    flops = flops_per_token(arch, seq_len, causal=causal, recompute=recompute)
    memory = training_memory(arch, seq_len=seq_len, micro_batch=micro_batch, parallel=parallel, recompute=recompute,
                             flash_attention=flash_attention, weight_bytes=weight_bytes, grad_bytes=grad_bytes,
                             optimizer_bytes=optimizer_bytes)
    fit_report = None
    if gpu is not None:
        fit = fit_check(memory, gpu.memory_gb, reserve_gb=reserve_gb)
        search = search or {}
        try:
            plan = min_devices(arch, gpu.memory_gb, seq_len=seq_len, micro_batch=micro_batch,
                               zero_stage=parallel.zero_stage, recompute=recompute, flash_attention=flash_attention,
                               sequence_parallel=parallel.sequence_parallel, reserve_gb=reserve_gb,
                               weight_bytes=weight_bytes, grad_bytes=grad_bytes, optimizer_bytes=optimizer_bytes,
                               tensor=search.get("tensor"), pipeline=search.get("pipeline"), expert=search.get("expert"))
            why = None
        except InputError as exc:
            plan, why = None, str(exc)
        min_layout = None
        if plan is not None:
            p = plan.parallel
            min_layout = {"data": p.data, "tensor": p.tensor, "pipeline": p.pipeline, "expert": p.expert,
                          "zero_stage": p.zero_stage, "sequence_parallel": p.sequence_parallel,
                          "required_gb": plan.memory.total_bytes / GB}
        fit_report = FitReport(gpu=gpu.id, memory_gb=gpu.memory_gb, reserve_gb=reserve_gb,
                               usable_gb=fit.usable_bytes / GB, required_gb=fit.required_bytes / GB, fits=fit.fits,
                               min_devices=plan.num_devices if plan else None, min_devices_note=why,
                               min_layout=min_layout)
    return ModelReport(
        model=arch.name, architecture=_arch_fields(arch), params_total=params.total, params_active=params.active,
        params_breakdown=dict(params.breakdown), params_active_breakdown=dict(params.active_breakdown),
        params_mtp_total=params.mtp_total or None, params_mtp_active=params.mtp_active if params.mtp_total else None,
        seq_len=seq_len, seq_len_source=seq_len_source, causal=flops.causal, train_flops_per_token=flops.train_model,
        flops_per_token=FlopsReport(
            forward=flops.forward, train_model=flops.train_model, train_hardware=flops.train_hardware,
            recompute=flops.recompute, six_n=flops.six_n, palm_6n_12lhqt=flops.palm,
            detailed_over_six_n=flops.train_model / flops.six_n, forward_breakdown=dict(flops.breakdown),
            mtp_forward=flops.mtp_forward or None),
        memory=MemoryReport(
            micro_batch=micro_batch, recompute=recompute, flash_attention=flash_attention,
            parallel={"data": parallel.data, "tensor": parallel.tensor, "pipeline": parallel.pipeline,
                      "expert": parallel.expert, "sequence_parallel": parallel.sequence_parallel,
                      "zero_stage": parallel.zero_stage},
            bytes_per_param={"weights": weight_bytes, "gradients": grad_bytes, "optimizer": optimizer_bytes},
            params_per_device=memory.params_per_device, **dict(memory.as_gb())),
        fit=fit_report,
    )


def resolve_architecture(name: str | None, hf_config: Path | None, *, mlm_head: bool = False) -> tuple[Architecture, int | None]:
    """(architecture, the catalog's training seq_len or None) for a catalog name or a config file."""
    if (name is None) == (hf_config is None):
        raise InputError("give a catalog model NAME or --hf-config PATH (exactly one)")
    if hf_config is not None:
        return load_hf_config(hf_config, mlm_head=mlm_head), None
    from estimator.catalog.core import load_catalog

    assert name is not None
    model = load_catalog().model(name)
    arch = architecture_for_model(model)
    if arch is None:
        raise InputError(f"model {model.id!r} has no architecture (catalogs/architectures/{model.id}.json); "
                         "pass its config.json with --hf-config")
    if mlm_head:
        from dataclasses import replace

        if arch.model_type != "bert":
            raise InputError("--mlm-head applies to BERT-style encoders only")
        arch = replace(arch, mlm_head=True)
    return arch, model.seq_len


__all__ = ["FitReport", "FlopsReport", "MemoryReport", "ModelReport", "model_report", "resolve_architecture"]
