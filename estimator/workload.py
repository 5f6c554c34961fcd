"""What is trained: total training FLOPs, the model behind them and how they were counted.

Training FLOPs are 6 x active parameters x tokens (Kaplan et al. 2020, arXiv 2001.08361) unless
``--flops`` gives the total. For a model with an architecture (a catalog entry or a config.json)
the detailed count (matmuls incl. attention scores and output head at the sequence length, see
:mod:`estimator.flops`) is computed too; ``--flops-method detailed`` makes the time use it. The
default stays 6ND because the default MFU band was derived with 6ND counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .catalog import Catalog, Model
from .errors import InputError
from .flops import train_flops_6nd
from .request import EstimateRequest
from .vocab import FlopsMethod, resolve_seq_len

if TYPE_CHECKING:
    from .arch import Architecture


@dataclass(frozen=True, slots=True)
class Workload:
    """What is trained: total training FLOPs and how they were obtained."""

    flops: float
    flops_method: str
    tokens: float | None = None
    params: float | None = None
    active_params: float | None = None
    model: str | None = None
    seq_len: int | None = None
    seq_len_source: str | None = None
    flops_6nd: float | None = None
    flops_detailed: float | None = None  # architecture-aware count (estimator.flops), when known
    method: FlopsMethod = FlopsMethod.SIX_ND
    catalog_model: Model | None = field(default=None, repr=False, compare=False)
    architecture: Any = field(default=None, repr=False, compare=False)

    @property
    def arch(self) -> Architecture | None:
        return self.architecture


@dataclass(frozen=True, slots=True)
class ModelSize:
    """A model as a size: its id (None for bare ``--params``), total and active parameters, the
    published training tokens, the catalog record and the architecture (None when unknown)."""

    name: str | None
    params: float
    active_params: float
    published_tokens: float | None
    record: Model | None = None
    architecture: Any = None
    catalog_seq_len: int | None = None


def model_size(request: EstimateRequest, catalog: Catalog) -> ModelSize:
    """The model of ``request`` (catalog model, config.json or ``--params``) with its sizes."""
    if request.hf_config is not None:
        from .hf_config import load_hf_config
        from .params import count_params

        arch = load_hf_config(request.hf_config)
        counts = count_params(arch)
        size = ModelSize(arch.name, float(counts.total), float(counts.active), None, None, arch)
    elif request.model is not None:
        from .hf_config import architecture_for_model

        record = catalog.model(request.model)
        arch = architecture_for_model(record, catalog.directory / "architectures")
        size = ModelSize(record.id, record.params, record.params_active, record.training_tokens, record, arch,
                         record.seq_len)
    elif request.params is not None:
        size = ModelSize(None, request.params, request.params, None)
    else:
        raise InputError("give --model NAME, --hf-config PATH or --params N")
    if request.active_params is not None:
        if request.active_params > size.params:
            raise InputError(f"--active-params ({request.active_params:.4g}) exceeds the total parameters "
                             f"({size.params:.4g})")
        size = ModelSize(size.name, size.params, request.active_params, size.published_tokens, size.record,
                         size.architecture, size.catalog_seq_len)
    return size


def build_workload(request: EstimateRequest, catalog: Catalog, *, tokens: float | None = None) -> Workload:
    """The Workload of ``request``; ``tokens`` overrides the request's (the budget question)."""
    if request.flops is not None:
        return Workload(flops=request.flops, flops_method="given (--flops)")
    size = model_size(request, catalog)
    tok = tokens if tokens is not None else request.tokens
    if tok is None:
        if size.published_tokens is None:
            raise InputError(f"model {size.name!r} has no published training tokens; give --tokens" if size.name
                             else "--params needs --tokens (the number of training tokens, e.g. 300B)")
        tok = size.published_tokens
    six_nd = train_flops_6nd(size.active_params, tok)
    method_text = ("6 x active params x tokens (Kaplan et al. 2020)" if size.active_params != size.params
                   else "6 x params x tokens (Kaplan et al. 2020)")
    arch, detailed, seq_len, seq_source = size.architecture, None, None, None
    if arch is not None:
        from .flops import train_flops

        seq_len, seq_source = resolve_seq_len(request.seq_len, size.catalog_seq_len, arch.default_seq_len)
        arch.check_seq_len(seq_len)
        detailed = train_flops(arch, tok, seq_len)
    elif request.seq_len is not None:
        raise InputError(f"--seq-len needs an architecture; {size.name!r} has none (pass its config.json with --hf-config)")
    chosen = six_nd
    if request.flops_method is FlopsMethod.DETAILED:
        if detailed is None:
            raise InputError("--flops-method detailed needs a model with an architecture "
                             "(see `gpucost models show NAME`, or --hf-config)")
        chosen = detailed
        method_text = f"detailed count from the architecture at sequence length {seq_len} (PaLM appendix B convention)"
    return Workload(flops=chosen, flops_method=method_text, tokens=tok, params=size.params,
                    active_params=size.active_params, model=size.name, seq_len=seq_len, seq_len_source=seq_source,
                    flops_6nd=six_nd, flops_detailed=detailed, method=request.flops_method, catalog_model=size.record,
                    architecture=arch)





def workload(*, catalog: Catalog | None = None, **options: Any) -> Workload:
    """The Workload of an estimate request given as keywords (``workload(model="deepseek-v3")``,
    ``workload(params="175B", tokens="300B")``): the FLOPs and how they were counted."""
    from .catalog import load_catalog

    return build_workload(EstimateRequest(**options), catalog or load_catalog())
__all__ = ["ModelSize", "Workload", "build_workload", "model_size", "workload"]
