"""Node types (``catalogs/systems.yaml``) and published layout runs (``catalogs/layout_runs.yaml``).

A :class:`System` is one kind of node: which accelerator, how many per node, the scale-up link
between them (per-GPU unidirectional GB/s and, where published, the measured nccl-tests bus
bandwidth) and the scale-out network between nodes. A :class:`LayoutRun` is a published training
throughput measurement with its full parallel layout, used to validate the step-time model.

Both files are loaded with :func:`estimator.catalog._records` (fields converted by their type
annotations) and then cross-checked against each other and against ``gpus.yaml``; a broken entry
raises :class:`~estimator.errors.CatalogError` naming the file, the entry and the field.

Units are in the field names: ``*_gbps`` on the scale-up side and ``*_busbw_gbps`` are GB/s
(decimal, 1e9 bytes/s, the unit nccl-tests prints); ``scale_out_gbps_per_nic`` is Gb/s (bits), as
NIC vendors print it (200, 400). Pure Python, no torch.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

from estimator.catalog.fields import _records
from estimator.catalog.records import Accelerator
from estimator.errors import CatalogError

SYSTEMS_FILE = "systems.yaml"
LAYOUT_RUNS_FILE = "layout_runs.yaml"

#: scale-up link kinds. ``pcie4-host``: PCIe Gen4 without peer-to-peer, so GPU-to-GPU traffic is
#: staged through host memory (GeForce cards with the stock driver); ``nvlink4-h800``: NVLink 4
#: cut to 400 GB/s bidirectional (export variant); ``ici``: Google TPU inter-chip interconnect.
SCALE_UP_KINDS = ("nvlink2", "nvlink3", "nvlink4", "nvlink4-h800", "nvlink5", "pcie4", "pcie5",
                  "pcie4-host", "infinity-fabric", "ici")
#: scale-out network kinds; ``ici`` means the chips of a TPU slice stay on ICI across hosts.
SCALE_OUT_KINDS = ("infiniband-edr", "infiniband-hdr", "infiniband-ndr", "roce", "efa", "ethernet",
                   "ici", "none")
RECOMPUTE_MODES = ("none", "selective", "full")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8")
#: how a row's published figure turns back into seconds per step; see :func:`implied_step_time_s`.
FLOPS_CONVENTIONS = ("narayanan2021-eq3", "korthikanti2022-model", "palm-6n-attention",
                     "gpu-hours-per-token")


# -- records -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class System:
    """One node type: its accelerators, the scale-up link between them and the network between nodes.

    ``scale_up_gbps`` is per accelerator and per direction (GB/s): NVLink 4 is 450, not the 900
    bidirectional figure vendors print. ``*_busbw_gbps`` are published nccl-tests bus bandwidths
    (GB/s) measured on such nodes: ``scale_up_*`` within one node (all accelerators of the node),
    ``scale_out_*`` across several nodes (which still use the scale-up link inside each node, so
    a scale-out busbw is not a NIC speed). ``scale_out_gbps_per_nic`` is in Gb/s (bits).
    ``scale_up_domain`` is the number of accelerators that share the scale-up fabric when that is
    more than one node (a TPU slice on ICI); None means one node. ``default_for`` lists the
    accelerator ids for which this is the node assumed when none is named.
    """

    id: str
    name: str
    accelerator: str
    accelerators_per_node: int
    scale_up: str
    scale_up_gbps: float
    scale_out: str
    source: str
    retrieved: _dt.date
    scale_up_domain: int | None = None
    scale_up_allreduce_busbw_gbps: float | None = None
    scale_up_alltoall_busbw_gbps: float | None = None
    scale_out_nics_per_node: int | None = None
    scale_out_gbps_per_nic: float | None = None
    scale_out_allreduce_busbw_gbps: float | None = None
    scale_out_alltoall_busbw_gbps: float | None = None
    default_for: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    notes: str | None = None

    @property
    def scale_up_group(self) -> int:
        """Accelerators reachable over the scale-up link: the slice for TPUs, else one node."""
        return self.scale_up_domain if self.scale_up_domain is not None else self.accelerators_per_node

    @property
    def scale_out_gbytes_per_node(self) -> float | None:
        """Scale-out link bandwidth of one node, GB/s per direction (NICs x Gb/s / 8), or None."""
        if self.scale_out_nics_per_node is None or self.scale_out_gbps_per_nic is None:
            return None
        return self.scale_out_nics_per_node * self.scale_out_gbps_per_nic / 8


@dataclass(frozen=True, slots=True)
class LayoutRun:
    """A published throughput measurement with its full layout (for validating the step model).

    The model is given either by ``architecture`` (an id of ``catalogs/architectures/<id>.json``)
    or by the shape fields (``num_layers``, ``hidden_size``, ``num_heads``, ``vocab_size``;
    ``num_kv_heads`` None means multi-head attention, ``ffn_size`` None means 4 x hidden). Rows
    that name an architecture may repeat its shape for the FLOPs formula of their convention.
    ``global_batch`` and ``micro_batch`` are in sequences of ``seq_len`` tokens; ``micro_batch``,
    ``recompute`` and ``sequence_parallel`` are None where the source does not publish them.
    ``zero_stage`` None means plain data parallelism (no optimizer sharding).
    ``implied_step_time_s`` is the seconds per optimizer step that the reported figure implies by
    the source's own formula (``flops_convention``); :func:`implied_step_time_s` recomputes it.
    """

    id: str
    source_table: str
    model: str
    accelerator: str
    system: str
    num_devices: int
    seq_len: int
    global_batch: int
    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int
    precision: str
    flops_convention: str
    implied_step_time_s: float
    source: str
    retrieved: _dt.date
    architecture: str | None = None
    num_layers: int | None = None
    hidden_size: int | None = None
    num_heads: int | None = None
    num_kv_heads: int | None = None
    ffn_size: int | None = None
    vocab_size: int | None = None
    gated_ffn: bool = False
    micro_batch: int | None = None
    context_parallel: int = 1
    expert_parallel: int = 1
    virtual_stages: int | None = None
    recompute: str | None = None
    sequence_parallel: bool | None = None
    zero_stage: int | None = None
    reported_tflops_per_device: float | None = None
    reported_mfu: float | None = None
    reported_step_time_s: float | None = None
    reported_gpu_hours_per_trillion_tokens: float | None = None
    notes: str | None = None

    @property
    def tokens_per_step(self) -> int:
        """Tokens in one optimizer step: global batch x sequence length."""
        return self.global_batch * self.seq_len

    @property
    def ffn(self) -> int | None:
        """The FFN width: ``ffn_size``, else 4 x hidden (None without a hidden size)."""
        if self.ffn_size is not None:
            return self.ffn_size
        return 4 * self.hidden_size if self.hidden_size is not None else None

    @property
    def kv_heads(self) -> int | None:
        """Key/value heads: ``num_kv_heads``, else ``num_heads`` (multi-head attention)."""
        return self.num_kv_heads if self.num_kv_heads is not None else self.num_heads


# -- the FLOPs conventions of the sources ----------------------------------------------------------
#
# Each published throughput is turned back into seconds per optimizer step with the formula its
# authors used, so that rows are compared on step time rather than on MFU conventions that differ.


def _shape(run: LayoutRun, convention: str) -> tuple[int, int, int, int]:
    missing = [f for f in ("num_layers", "hidden_size", "num_heads", "vocab_size") if getattr(run, f) is None]
    if missing:
        raise CatalogError(LAYOUT_RUNS_FILE, run.id, missing[0], f"is required by flops_convention {convention!r}")
    return run.num_layers, run.hidden_size, run.num_heads, run.vocab_size  # type: ignore[return-value]


def narayanan2021_flops(run: LayoutRun) -> float:
    """FLOPs of one step by Narayanan et al. 2021 (arXiv 2104.04473), Eq. 3, which counts the
    recompute forward pass of full activation recomputation (so it is hardware FLOPs)::

        F = 96 B s l h^2 (1 + s / (6 h) + V / (16 l h))

    B sequences of s tokens, l layers, hidden h, vocabulary V. (The logit term is not recomputed:
    96 / 16 = 72 / 12, the same 6 B s h V as Korthikanti's formula.)
    """
    l, h, _, v = _shape(run, "narayanan2021-eq3")
    b, s = run.global_batch, run.seq_len
    return 96 * b * s * l * h * h * (1 + s / (6 * h) + v / (16 * l * h))


def korthikanti2022_model_flops(run: LayoutRun) -> float:
    """Model FLOPs of one step (no recomputation) by Korthikanti et al. 2022 (arXiv 2205.05198),
    Section 6, the numerator of their MFU::

        F = 72 B s l h^2 (1 + s / (6 h) + V / (12 h l))
    """
    l, h, _, v = _shape(run, "korthikanti2022-model")
    b, s = run.global_batch, run.seq_len
    return 72 * b * s * l * h * h * (1 + s / (6 * h) + v / (12 * h * l))


def matmul_params(run: LayoutRun) -> float:
    """Weights that take part in matrix multiplies, from the row's shape: per layer the Q and
    output projections (2 h^2), K and V (2 h x kv_heads x head_dim), the FFN (3 h f gated, else
    2 h f), plus the output head (V h). The input embedding is a lookup (no FLOPs) and is left out;
    norms and biases are negligible and left out."""
    l, h, heads, v = _shape(run, "palm-6n-attention")
    head_dim = h // heads
    kv = run.kv_heads or heads
    ffn = run.ffn or 4 * h
    per_layer = 2 * h * h + 2 * h * kv * head_dim + (3 if run.gated_ffn else 2) * h * ffn
    return l * per_layer + v * h


def palm_model_flops(run: LayoutRun) -> float:
    """Model FLOPs of one step in the MFU convention of Chowdhery et al. 2022 (PaLM, arXiv
    2204.02311, Appendix B), which Llama 3 (arXiv 2407.21783, Section 3.3.2) cites for its MFU::

        F = tokens x (6 N + 12 L H Q T)

    N the matmul weights (:func:`matmul_params`), L layers, H heads of size Q, T the sequence
    length; the attention term counts the full T x T score matrix (no causal halving).
    """
    l, h, _, _ = _shape(run, "palm-6n-attention")
    return run.tokens_per_step * (6 * matmul_params(run) + 12 * l * h * run.seq_len)


def implied_step_time_s(run: LayoutRun) -> float:
    """Seconds per optimizer step implied by the row's reported figure under its convention:

    - ``narayanan2021-eq3``: :func:`narayanan2021_flops` / (TFLOP/s per GPU x 1e12 x GPUs);
    - ``korthikanti2022-model``: the measured iteration time the paper reports
      (``reported_step_time_s``); its MFU is :func:`korthikanti2022_model_flops` over that time;
    - ``palm-6n-attention``: :func:`palm_model_flops` / (TFLOP/s per GPU x 1e12 x GPUs);
    - ``gpu-hours-per-token``: tokens per step x (GPU-hours per 1e12 tokens / 1e12) x 3600 / GPUs,
      i.e. the average rate of the whole run applied to one step at the row's batch.
    """
    convention = run.flops_convention

    def need(field: str) -> float:
        value = getattr(run, field)
        if value is None:
            raise CatalogError(LAYOUT_RUNS_FILE, run.id, field, f"is required by flops_convention {convention!r}")
        return value

    if convention == "narayanan2021-eq3":
        return narayanan2021_flops(run) / (need("reported_tflops_per_device") * 1e12 * run.num_devices)
    if convention == "korthikanti2022-model":
        return need("reported_step_time_s")
    if convention == "palm-6n-attention":
        return palm_model_flops(run) / (need("reported_tflops_per_device") * 1e12 * run.num_devices)
    if convention == "gpu-hours-per-token":
        gpu_seconds = run.tokens_per_step * need("reported_gpu_hours_per_trillion_tokens") / 1e12 * 3600
        return gpu_seconds / run.num_devices
    raise CatalogError(LAYOUT_RUNS_FILE, run.id, "flops_convention",
                       f"must be one of {', '.join(FLOPS_CONVENTIONS)}, got {convention!r}")


# -- loading and cross-checks ----------------------------------------------------------------------


def _one_of(file: str, entry: str, field: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise CatalogError(file, entry, field, f"must be one of {', '.join(allowed)}, got {value!r}")


def _accelerator_ids(directory: Path) -> set[str]:
    """The accelerator ids of ``<directory>/gpus.yaml`` (each entry validated as the catalog does)."""
    return {a.id for a in _records(directory / "gpus.yaml", "accelerators", Accelerator)}


def load_systems(directory: Path) -> tuple[System, ...]:
    """Load and cross-check ``<directory>/systems.yaml``: accelerator ids exist in gpus.yaml, kinds
    are known, each accelerator is the default of at most one system, aliases are unique, and the
    optional bandwidth fields are positive."""
    directory = Path(directory)
    systems = _records(directory / SYSTEMS_FILE, "systems", System)
    accelerators = _accelerator_ids(directory)
    names: dict[str, str] = {}
    defaults: dict[str, str] = {}
    for system in systems:
        if system.accelerator not in accelerators:
            raise CatalogError(SYSTEMS_FILE, system.id, "accelerator", f"{system.accelerator!r} is not an id in gpus.yaml")
        _one_of(SYSTEMS_FILE, system.id, "scale_up", system.scale_up, SCALE_UP_KINDS)
        _one_of(SYSTEMS_FILE, system.id, "scale_out", system.scale_out, SCALE_OUT_KINDS)
        for field in ("scale_up_gbps", "scale_up_allreduce_busbw_gbps", "scale_up_alltoall_busbw_gbps",
                      "scale_out_gbps_per_nic", "scale_out_allreduce_busbw_gbps", "scale_out_alltoall_busbw_gbps"):
            value = getattr(system, field)
            if value is not None and not value > 0:
                raise CatalogError(SYSTEMS_FILE, system.id, field, f"must be positive, got {value!r}")
        if (system.scale_out_nics_per_node is None) != (system.scale_out_gbps_per_nic is None):
            raise CatalogError(SYSTEMS_FILE, system.id, "scale_out_gbps_per_nic",
                               "give scale_out_nics_per_node and scale_out_gbps_per_nic together, or neither")
        if system.scale_out == "none" and system.scale_out_nics_per_node is not None:
            raise CatalogError(SYSTEMS_FILE, system.id, "scale_out_nics_per_node", "given, but scale_out is 'none'")
        if system.scale_up_domain is not None and system.scale_up_domain < system.accelerators_per_node:
            raise CatalogError(SYSTEMS_FILE, system.id, "scale_up_domain", "is smaller than accelerators_per_node")
        for accelerator in system.default_for:
            if accelerator not in accelerators:
                raise CatalogError(SYSTEMS_FILE, system.id, "default_for", f"{accelerator!r} is not an id in gpus.yaml")
            if accelerator != system.accelerator:
                raise CatalogError(SYSTEMS_FILE, system.id, "default_for",
                                   f"{accelerator!r} is not this system's accelerator {system.accelerator!r}")
            if accelerator in defaults:
                raise CatalogError(SYSTEMS_FILE, system.id, "default_for",
                                   f"{accelerator!r} is already the default of {defaults[accelerator]!r}")
            defaults[accelerator] = system.id
        for alias in (system.id, *system.aliases):
            key = alias.lower()
            if key in names and names[key] != system.id:
                raise CatalogError(SYSTEMS_FILE, system.id, "aliases", f"{alias!r} is also used by {names[key]!r}")
            names[key] = system.id
    return systems


def load_layout_runs(directory: Path) -> tuple[LayoutRun, ...]:
    """Load and cross-check ``<directory>/layout_runs.yaml``: accelerator and system ids exist and
    agree, TP x PP x DP x CP = num_devices, the global batch divides into micro-batches per
    data-parallel rank, expert parallelism divides TP x DP x CP, enums are known, the model is given
    by an architecture file or by its shape, and ``implied_step_time_s`` matches its convention
    within 1%."""
    directory = Path(directory)
    runs = _records(directory / LAYOUT_RUNS_FILE, "layout_runs", LayoutRun)
    accelerators = _accelerator_ids(directory)
    systems = {s.id: s for s in load_systems(directory)}
    file = LAYOUT_RUNS_FILE
    for run in runs:
        if run.accelerator not in accelerators:
            raise CatalogError(file, run.id, "accelerator", f"{run.accelerator!r} is not an id in gpus.yaml")
        system = systems.get(run.system)
        if system is None:
            raise CatalogError(file, run.id, "system", f"{run.system!r} is not an id in systems.yaml")
        if system.accelerator != run.accelerator:
            raise CatalogError(file, run.id, "system",
                               f"{run.system!r} holds {system.accelerator!r}, not {run.accelerator!r}")
        _one_of(file, run.id, "precision", run.precision, PRECISIONS)
        _one_of(file, run.id, "recompute", run.recompute, RECOMPUTE_MODES)
        _one_of(file, run.id, "flops_convention", run.flops_convention, FLOPS_CONVENTIONS)
        layout = run.tensor_parallel * run.pipeline_parallel * run.data_parallel * run.context_parallel
        if layout != run.num_devices:
            raise CatalogError(file, run.id, "data_parallel",
                               f"TP x PP x DP x CP = {layout}, but num_devices is {run.num_devices}")
        per_step = (run.micro_batch or 1) * run.data_parallel
        if run.global_batch % per_step:
            raise CatalogError(file, run.id, "global_batch",
                               f"{run.global_batch} is not divisible by micro_batch x data_parallel = {per_step}")
        if (run.tensor_parallel * run.data_parallel * run.context_parallel) % run.expert_parallel:
            raise CatalogError(file, run.id, "expert_parallel", "does not divide TP x DP x CP")
        if run.virtual_stages is not None and run.virtual_stages > 1 and run.pipeline_parallel == 1:
            raise CatalogError(file, run.id, "virtual_stages", "interleaving needs pipeline_parallel > 1")
        if run.architecture is None:
            for field in ("num_layers", "hidden_size", "num_heads", "vocab_size"):
                if getattr(run, field) is None:
                    raise CatalogError(file, run.id, field, "is required when no architecture is named")
        elif not (directory / "architectures" / f"{run.architecture}.json").is_file():
            raise CatalogError(file, run.id, "architecture", f"no file architectures/{run.architecture}.json")
        expected = implied_step_time_s(run)
        if abs(run.implied_step_time_s - expected) > 0.01 * expected:
            raise CatalogError(file, run.id, "implied_step_time_s",
                               f"{run.implied_step_time_s} differs from {expected:.4g} by its convention")
    return runs


__all__ = ["FLOPS_CONVENTIONS", "LayoutRun", "PRECISIONS", "RECOMPUTE_MODES", "SCALE_OUT_KINDS",
           "SCALE_UP_KINDS", "System", "implied_step_time_s", "korthikanti2022_model_flops",
           "load_layout_runs", "load_systems", "matmul_params", "narayanan2021_flops", "palm_model_flops"]
