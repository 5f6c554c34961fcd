"""What is trained: total training FLOPs, the model behind them and how they were counted.

Training FLOPs are 6 x active parameters x tokens (Kaplan et al. 2020, arXiv 2001.08361) unless
``--flops`` gives the total. For a model with an architecture (a catalog entry or a config.json)
the detailed count (matmuls incl. attention scores and output head at the sequence length, see
:mod:`estimator.model.flops`) is computed too; ``--flops-method detailed`` makes the time use it. The
default stays 6ND because the default MFU band was derived with 6ND counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from estimator.catalog.core import Catalog
from estimator.catalog.records import Model
from estimator.errors import GpucostError, InputError
from estimator.model.flops import CHINCHILLA_TOKENS_PER_PARAM, train_flops_6nd
from estimator.request import EstimateRequest
from estimator.vocab import FlopsMethod, resolve_seq_len

DEFAULT_FINETUNE_DATASET = "alpaca"  # the fine-tune's tokens when none are given: one epoch of it


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
    flops_detailed: float | None = None  # architecture-aware count (estimator.model.flops), when known
    method: FlopsMethod = FlopsMethod.SIX_ND
    samples: float | None = None  # samples trained, all epochs (workloads in samples)
    epochs: float | None = None
    dataset: str | None = None
    catalog_model: Model | None = field(default=None, repr=False, compare=False)
    architecture: Any = field(default=None, repr=False, compare=False)
    tokens_assumed: str | None = None  # why the tokens are a default, when no count was given or published
    finetune: Any = field(default=None, repr=False, compare=False)  # estimator.model.finetune.FinetuneSpec
    finetune_batch: tuple[int, str] | None = None  # (sequences per step, where from) of a fine-tune
    finetune_notes: tuple[str, ...] = ()  # the fine-tuning defaults taken, for the assumptions


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
        from estimator.model.hf_config import load_hf_config
        from estimator.model.params import count_params

        arch = load_hf_config(request.hf_config)
        counts = count_params(arch)
        size = ModelSize(arch.name, float(counts.total), float(counts.active), None, None, arch,
                         _published_seq_len(catalog, arch.name, float(counts.total)))
    elif request.model is not None:
        from estimator.model.hf_config import architecture_for_model

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


def _published_seq_len(catalog: Catalog, name: str | None, params: float) -> int | None:
    """The catalog's published pre-training length of the model a config.json describes: the catalog
    model of that name (or alias) whose parameter count is within 2% of the config's, else None."""
    if not name:
        return None
    try:
        record = catalog.model(name)
    except GpucostError:  # not in the catalog: no published length
        return None
    if record.seq_len is None or abs(record.params - params) > 0.02 * params:
        return None
    return record.seq_len


def _samples_workload(request: EstimateRequest, catalog: Catalog, size: ModelSize | None) -> Workload | float:
    """A workload in samples and epochs: 3 x forward FLOPs per sample x samples for a model that
    gives its forward FLOPs per sample (or ``--flops-per-sample``); for a transformer with an
    architecture the tokens (samples x tokens per sample), returned as a float for the token path."""
    dataset = catalog.dataset(request.dataset) if request.dataset is not None else None
    per_epoch = request.samples if request.samples is not None else dataset.samples
    epochs = request.epochs if request.epochs is not None else 1.0
    total = per_epoch * epochs
    what = (f"{per_epoch:,.0f} {dataset.id} samples" if dataset and request.samples is None else f"{per_epoch:,.0f} samples")
    forward = request.flops_per_sample
    if forward is None and size is not None and size.record is not None:
        forward = size.record.forward_flops_per_sample
    if forward is not None:
        where = "--flops-per-sample" if request.flops_per_sample is not None else (
            f"{size.name}: {size.record.input_size or 'per sample'}")
        return Workload(
            flops=3.0 * forward * total, params=size.params if size else None,
            active_params=size.active_params if size else None, model=size.name if size else None,
            flops_method=(f"3 x forward FLOPs per sample ({forward:.3g}, {where}; backward = 2 x forward) x "
                          f"{what} x {epochs:g} epoch{'s' if epochs != 1 else ''}"),
            samples=total, epochs=epochs, dataset=dataset.id if dataset else None,
            catalog_model=size.record if size else None)
    if size is not None and size.architecture is not None:
        given = request.seq_len or (dataset.seq_len if dataset else None) or (
            _finetune_seq_len(size) if _finetune_method(request, catalog) else None)
        seq_len = resolve_seq_len(given, size.catalog_seq_len, size.architecture.default_seq_len,
                                  size.architecture.max_position_embeddings)[0]
        return total * seq_len
    raise InputError(f"{size.name if size else 'the model'!r} gives no FLOPs per sample: add --flops-per-sample F "
                     "(forward FLOPs of one sample) or use a model with an architecture")


def build_workload(request: EstimateRequest, catalog: Catalog, *, tokens: float | None = None) -> Workload:
    """The Workload of ``request``; ``tokens`` overrides the request's (the budget question)."""
    if request.flops is not None:
        return Workload(flops=request.flops, flops_method="given (--flops)")
    in_samples = request.dataset is not None or request.samples is not None
    size = model_size(request, catalog) if request.params is not None or request.architecture_known else None
    if in_samples:
        sampled = _samples_workload(request, catalog, size)
        if isinstance(sampled, Workload):
            return sampled
        tokens = sampled
        dataset = catalog.dataset(request.dataset) if request.dataset is not None else None
        if request.seq_len is None and dataset is not None and dataset.seq_len is not None:
            request = request.with_(seq_len=dataset.seq_len)
    size = size or model_size(request, catalog)
    tok = tokens if tokens is not None else request.tokens
    assumed = None
    method = _finetune_method(request, catalog)
    if tok is None and method is not None and size.architecture is not None:
        # a fine-tune does not inherit the pre-training tokens: one epoch of a common fine-tuning set
        default_set = catalog.dataset(DEFAULT_FINETUNE_DATASET)
        seq = request.seq_len or _finetune_seq_len(size)
        tok = float(default_set.samples * seq)
        assumed = (f"no --dataset, --samples or --tokens for the fine-tune: one epoch of {default_set.id} "
                   f"({default_set.samples:,} sequences of {seq:,} tokens, {tok:.3g} tokens); the step time does not "
                   "depend on it, the totals do")
    elif tok is None and size.published_tokens is not None:
        tok = size.published_tokens
    elif tok is None and size.architecture is not None:
        # A step (layout, step time, MFU) needs no token count; the totals take the compute-optimal one.
        tok = CHINCHILLA_TOKENS_PER_PARAM * size.active_params
        assumed = (f"no --tokens and none published for {size.name}: {tok:.3g} tokens, the compute-optimal "
                   f"{CHINCHILLA_TOKENS_PER_PARAM:g} per {'active ' if size.active_params != size.params else ''}"
                   "parameter (Hoffmann et al. 2022); the step time does not depend on it, the totals do")
    elif tok is None:
        raise InputError(f"model {size.name!r} has no published training tokens; give --tokens" if size.name
                         else "--params needs --tokens (the number of training tokens, e.g. 300B)")
    six_nd = train_flops_6nd(size.active_params, tok)
    method_text = ("6 x active params x tokens (Kaplan et al. 2020)" if size.active_params != size.params
                   else "6 x params x tokens (Kaplan et al. 2020)")
    arch, detailed, seq_len, seq_source = size.architecture, None, None, None
    spec = None
    notes: list[str] = []
    if method is not None and arch is None:
        raise InputError(f"--finetune needs a model with an architecture (its layers decide the adapters); "
                         f"{size.name or 'a bare --params'} has none: use --model NAME with one, or --hf-config PATH")
    if arch is not None:
        from estimator.model.flops import flops_per_token

        if method is not None and request.seq_len is None:
            seq_len = _finetune_seq_len(size)
            seq_source = (f"fine-tuning default {seq_len:,} (torchtune's published fine-tuning runs; no --seq-len "
                          "and no sequence length for the dataset)")
        else:
            seq_len, seq_source = resolve_seq_len(request.seq_len, size.catalog_seq_len, arch.default_seq_len,
                                                  arch.max_position_embeddings)
        arch.check_seq_len(seq_len)
        # one convention with the step model's time: a fused (flash) kernel on causal attention runs
        # half the score matmuls, so the count it is reported against has half of them too
        causal = request.flash_attention is not False and arch.causal
        train_per_token = flops_per_token(arch, seq_len, causal=causal).train_model
        if method is not None:
            from estimator.model.finetune import finetune_spec

            spec = finetune_spec(arch, method, rank=request.lora_rank, targets=request.lora_targets)
            train_per_token = spec.train_model_per_token(train_per_token)
            notes.append(spec.describe())
            if request.finetune is None:
                notes.append(f"fine-tuning: {catalog.dataset(request.dataset).id} is a fine-tuning set, so the whole "
                             "model is fine-tuned (--finetune lora or qlora for adapters)")
        detailed = train_per_token * tok
    elif request.seq_len is not None:
        raise InputError(f"--seq-len needs an architecture; {size.name!r} has none (pass its config.json with --hf-config)")
    if spec is not None and spec.frozen:
        # frozen weights: forward 2N + input gradients 2N per token; adapters 6 per parameter per token
        six_nd = 4.0 * size.active_params * tok + 6.0 * spec.trainable_params * tok
        method_text = ("4 x params x tokens + 6 x adapter params x tokens (Kaplan et al. 2020's 6ND; frozen "
                       "weights: forward and input gradients, no weight gradients)")
    chosen = six_nd
    finetune_batch = None
    if method is not None:
        dataset = catalog.dataset(request.dataset) if request.dataset is not None else None
        if dataset is not None and dataset.finetune_batch:
            finetune_batch = (dataset.finetune_batch, f"{dataset.id}'s published fine-tuning batch, "
                                                      f"{dataset.finetune_batch:,} sequences")
        else:
            from estimator.model.finetune import DEFAULT_FINETUNE_BATCH

            finetune_batch = (DEFAULT_FINETUNE_BATCH, f"fine-tuning default: {DEFAULT_FINETUNE_BATCH} sequences per step "
                                                      "(BERT's SQuAD batch; tens of sequences, not a pre-training batch)")
    if request.flops_method is FlopsMethod.DETAILED:
        if detailed is None:
            raise InputError("--flops-method detailed needs a model with an architecture "
                             "(see `gpucost models show NAME`, or --hf-config)")
        chosen = detailed
        method_text = (f"detailed count from the architecture at sequence length {seq_len} (PaLM appendix B convention"
                       + ("; causal attention at half the score matmuls, as a fused kernel runs them)" if causal else ")"))
    samples = epochs = dataset_id = None
    if in_samples:
        epochs = request.epochs if request.epochs is not None else 1.0
        samples = tok / seq_len
        dataset_id = request.dataset and catalog.dataset(request.dataset).id
        method_text += f"; {samples:,.0f} sequences of {seq_len} tokens ({epochs:g} epoch{'s' if epochs != 1 else ''})"
    return Workload(flops=chosen, flops_method=method_text, tokens=tok, params=size.params,
                    active_params=size.active_params, model=size.name, seq_len=seq_len, seq_len_source=seq_source,
                    flops_6nd=six_nd, flops_detailed=detailed, method=request.flops_method, samples=samples,
                    epochs=epochs, dataset=dataset_id, catalog_model=size.record, architecture=arch,
                    tokens_assumed=assumed, finetune=spec, finetune_batch=finetune_batch, finetune_notes=tuple(notes))


def _finetune_method(request: EstimateRequest, catalog: Catalog) -> str | None:
    """full, lora or qlora: ``--finetune``, else full on a fine-tuning dataset (one with a published
    fine-tuning batch), else None (pre-training)."""
    if request.finetune is not None:
        return request.finetune
    if request.dataset is not None and catalog.dataset(request.dataset).finetune_batch:
        return "full"
    return None


def _finetune_seq_len(size: ModelSize) -> int:
    """A fine-tune's sequence length without --seq-len or a dataset's: the default, within the model's."""
    from estimator.model.finetune import DEFAULT_FINETUNE_SEQ_LEN

    longest = size.catalog_seq_len or (size.architecture.default_seq_len if size.architecture else None)
    return min(DEFAULT_FINETUNE_SEQ_LEN, longest) if longest else DEFAULT_FINETUNE_SEQ_LEN





def workload(*, catalog: Catalog | None = None, **options: Any) -> Workload:
    """The Workload of an estimate request given as keywords (``workload(model="deepseek-v3")``,
    ``workload(params="175B", tokens="300B")``): the FLOPs and how they were counted."""
    from estimator.catalog.core import load_catalog

    return build_workload(EstimateRequest(**options), catalog or load_catalog())
__all__ = ["ModelSize", "Workload", "build_workload", "model_size", "workload"]
