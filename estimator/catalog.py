"""Load, validate and look up the catalogs (accelerators, prices, models, published runs).

Each ``catalogs/*.yaml`` file is validated on load into frozen records. A malformed file raises
:class:`CatalogError` naming the file, the entry and the field. Look-ups accept an exact id or an
alias (case-insensitive); an unknown name raises :class:`UnknownNameError` with close matches.
Unknown hardware is never silently replaced by another device.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import errno
import functools
import math
import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from .errors import CatalogError, InputError, UnknownNameError
from .numbers import parse_quantity
from .vocab import CATALOG_DTYPES

SCHEMA_VERSION = 1
DTYPES = CATALOG_DTYPES
OFFERS = ("on-demand", "spot", "reserved", "capacity-block", "assumed")
RUN_SCOPES = ("pretrain", "all")
CATALOG_ENV = "GPUCOST_CATALOG_DIR"


def catalog_dir() -> Path:
    """The folder holding the catalogs: ``$GPUCOST_CATALOG_DIR``, else the one shipped with gpucost.

    In a wheel the catalogs live in ``estimator/catalogs``; in a source checkout in ``catalogs/``
    beside the package.
    """
    if env := os.environ.get(CATALOG_ENV):
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here / "catalogs", here.parent / "catalogs"):
        if (candidate / "gpus.yaml").is_file():
            return candidate
    raise CatalogError(str(here / "catalogs"), None, None, "catalog folder not found; reinstall gpucost")


# -- records -------------------------------------------------------------------------------------


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


# -- validation ----------------------------------------------------------------------------------
#
# Each field is converted by its annotation in the record class, so a new field needs no table:
# float (a number or "175B"), int (positive), bool, str (non-empty), date, tuple[str, ...]
# (non-empty strings), Mapping[str, float] (dtype -> dense TFLOP/s), Mapping[str, Any] (a mapping).
# ``| None`` makes a field optional. Fractions (``_FRACTIONS``) must lie in (0, 1].

_FRACTIONS = {"reported_mfu"}


def _convert(file: str, entry: str, name: str, value: Any, annotation: str) -> Any:
    def bad(problem: str) -> CatalogError:
        return CatalogError(file, entry, name, problem)

    kind = annotation.replace(" | None", "").strip()
    if kind == "float":
        if name in _FRACTIONS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise bad(f"must be a fraction in (0, 1], got {value!r}")
            return float(value)
        try:
            return parse_quantity(value, what=name)
        except InputError as exc:
            raise bad(str(exc)) from None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise bad(f"must be a positive integer, got {value!r}")
        return value
    if kind == "tuple[str, ...]":
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise bad("must be a list of non-empty strings")
        return tuple(value)
    if kind == "_dt.date":
        if isinstance(value, _dt.datetime):
            return value.date()
        if isinstance(value, _dt.date):
            return value
        try:
            return _dt.date.fromisoformat(str(value))
        except ValueError:
            raise bad(f"must be a date YYYY-MM-DD, got {value!r}") from None
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad(f"must be true or false, got {value!r}")
        return value
    if kind == "Mapping[str, float]":
        if not isinstance(value, dict) or not value:
            raise bad("must be a mapping of dtype to dense TFLOP/s")
        peaks = {}
        for dtype, tflops in value.items():
            if dtype not in DTYPES:
                raise bad(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
            numeric = isinstance(tflops, (int, float)) and not isinstance(tflops, bool)
            if not numeric or not math.isfinite(tflops) or tflops <= 0:
                raise bad(f"{dtype} peak must be a positive finite number, got {tflops!r}")
            peaks[dtype] = float(tflops)
        return MappingProxyType(peaks)
    if kind == "Mapping[str, Any]":
        if not isinstance(value, dict):
            raise bad("must be a mapping")
        return MappingProxyType(dict(value))
    if kind != "str":  # pragma: no cover - a record class with an annotation this table lacks
        raise bad(f"has an unsupported type {annotation!r}")
    if not isinstance(value, str) or not value.strip():
        raise bad(f"must be a non-empty string, got {value!r}")
    return value


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader that refuses a key given twice in one mapping (YAML would keep the last)."""


def _unique_mapping(loader: Any, node: Any, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        try:
            seen.add(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"unhashable key {key!r}", key_node.start_mark) from None
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml_file(file: Path, *, label: str | None = None, cache: bool = False) -> Any:
    """Parse a YAML file strictly (duplicate keys refused); any OS, decode or YAML error becomes a
    CatalogError naming the file (``label``, default the path). ``cache``: reuse the parse of the same
    bytes from an earlier run (:mod:`estimator.yaml_cache`)."""
    name = label or str(file)
    try:
        raw = file.read_bytes()
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise CatalogError(name, None, None, "file not found") from None
    except IsADirectoryError:
        raise CatalogError(name, None, None, "is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(name, None, None, f"is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise CatalogError(name[:80] + "...", None, None, "the file name is too long") from None
        raise CatalogError(name, None, None, f"cannot be read: {exc.strerror or exc}") from None
    try:
        if cache:
            from .yaml_cache import cached_parse

            return cached_parse(file, raw, lambda: yaml.load(text, Loader=_UniqueKeyLoader))  # noqa: S506
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise CatalogError(name, None, None, f"invalid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise CatalogError(name, None, None, "is nested too deeply") from None


def _records(file: Path, key: str, cls: type) -> tuple:
    """Load ``file``'s ``key`` list into ``cls`` records (fields converted by their annotations)."""
    name = file.name
    data = load_yaml_file(file, label=name, cache=True)
    if not isinstance(data, dict):
        raise CatalogError(name, None, None, "must be a mapping with schema_version and " + key)
    if data.get("schema_version") != SCHEMA_VERSION:
        raise CatalogError(name, None, "schema_version",
                           f"expected {SCHEMA_VERSION}, got {data.get('schema_version')!r}")
    entries = data.get(key)
    if not isinstance(entries, list):
        raise CatalogError(name, None, key, "must be a list of entries")
    allowed = {f.name: f for f in fields(cls)}
    annotations = {f.name: str(f.type) for f in fields(cls)}
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    out, seen = [], set()
    for index, raw in enumerate(entries):
        if not isinstance(raw, dict):
            raise CatalogError(name, f"#{index + 1}", None, "must be a mapping")
        entry_id = raw.get("id")
        label = str(entry_id) if entry_id else f"#{index + 1}"
        for unknown in (k for k in raw if k not in allowed):
            close = difflib.get_close_matches(str(unknown), list(allowed), n=1, cutoff=0.6)
            raise CatalogError(name, label, str(unknown), "is not a known field"
                               + (f" (did you mean {close[0]!r}?)" if close else ""))
        for missing in (r for r in required if r not in raw or raw[r] is None):
            raise CatalogError(name, label, missing, "is required")
        values = {k: _convert(name, label, k, v, annotations[k]) for k, v in raw.items() if v is not None}
        if values["id"] in seen:
            raise CatalogError(name, label, "id", "is duplicated")
        seen.add(values["id"])
        out.append(cls(**values))
    return tuple(out)


# -- the catalog ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Catalog:
    """All catalogs, validated. Use :func:`load_catalog` to get the shipped one."""

    accelerators: tuple[Accelerator, ...]
    prices: tuple[Price, ...]
    models: tuple[Model, ...]
    directory: Path

    def __post_init__(self) -> None:
        ids = {a.id for a in self.accelerators}
        names: dict[str, str] = {}
        for acc in self.accelerators:
            for alias in (acc.id, *acc.aliases):
                key = alias.lower()
                if key in names and names[key] != acc.id:
                    raise CatalogError("gpus.yaml", acc.id, "aliases", f"{alias!r} is also used by {names[key]!r}")
                names[key] = acc.id
        defaults: set[str] = set()
        for price in self.prices:
            if price.accelerator not in ids:
                raise CatalogError("prices.yaml", price.id, "accelerator",
                                   f"{price.accelerator!r} is not an id in gpus.yaml")
            if price.offer not in OFFERS:
                raise CatalogError("prices.yaml", price.id, "offer", f"must be one of {', '.join(OFFERS)}")
            if price.default:
                if price.accelerator in defaults:
                    raise CatalogError("prices.yaml", price.id, "default",
                                       f"a second default offer for {price.accelerator!r}")
                defaults.add(price.accelerator)
        for model in self.models:
            if model.active_params is not None and model.active_params > model.params:
                raise CatalogError("models.yaml", model.id, "active_params", "exceeds params")

    @functools.cached_property
    def _accelerator_index(self) -> dict[str, Accelerator]:
        return {k.lower(): a for a in self.accelerators for k in (a.id, *a.aliases)}

    @functools.cached_property
    def _model_index(self) -> dict[str, Model]:
        return {k.lower(): m for m in self.models for k in (m.id, *m.aliases)}

    def accelerator(self, name: str) -> Accelerator:
        """The accelerator with id or alias ``name``; UnknownNameError (with close matches) if none."""
        if not isinstance(name, str):
            raise InputError(f"a GPU name must be a string, got {type(name).__name__} {name!r}")
        found = self._accelerator_index.get(" ".join(name.strip().lower().split()))
        if found is None:
            found = self.match_device_name(name)  # the name the driver prints, e.g. "NVIDIA H100 80GB HBM3"
        if found is None:
            if not name.strip():
                raise InputError("--gpu must not be empty")
            raise UnknownNameError("GPU", name, self._accelerator_index)
        return found

    def model(self, name: str) -> Model:
        """The model with id or alias ``name``; UnknownNameError (with close matches) if none."""
        if not isinstance(name, str):
            raise InputError(f"a model name must be a string, got {type(name).__name__} {name!r}")
        found = self._model_index.get(name.strip().lower())
        if found is None:
            if not name.strip():
                raise InputError("--model must not be empty")
            raise UnknownNameError("model", name, self._model_index)
        return found

    @functools.cached_property
    def runs(self) -> tuple[Run, ...]:
        """Published training runs (catalogs/runs.yaml, for `gpucost validate`), loaded on first use."""
        runs_file = self.directory / "runs.yaml"
        runs = _records(runs_file, "runs", Run) if runs_file.exists() else ()
        ids = {a.id for a in self.accelerators}
        for run in runs:
            if run.accelerator not in ids:
                raise CatalogError("runs.yaml", run.id, "accelerator", f"{run.accelerator!r} is not an id in gpus.yaml")
            if run.scope is not None and run.scope not in RUN_SCOPES:
                raise CatalogError("runs.yaml", run.id, "scope", f"must be one of {', '.join(RUN_SCOPES)}, got {run.scope!r}")
        return runs

    @functools.cached_property
    def datasets(self) -> tuple[Dataset, ...]:
        """Training sets (catalogs/datasets.yaml), loaded on first use."""
        return _records(self.directory / "datasets.yaml", "datasets", Dataset)

    def dataset(self, name: str) -> Dataset:
        """The dataset with id or alias ``name``; UnknownNameError (with close matches) if none."""
        if not isinstance(name, str) or not name.strip():
            raise InputError("--dataset must not be empty")
        index = {k.lower(): d for d in self.datasets for k in (d.id, *d.aliases)}
        found = index.get(name.strip().lower())
        if found is None:
            raise UnknownNameError("dataset", name, index)
        return found

    @functools.cached_property
    def systems(self) -> tuple:
        """Node types (catalogs/systems.yaml, :mod:`estimator.systems`), loaded on first use."""
        from .systems import load_systems

        return load_systems(self.directory)

    def system(self, name: str) -> Any:
        """The system with id or alias ``name``; UnknownNameError (with close matches) if none."""
        index = {k.lower(): s for s in self.systems for k in (s.id, *s.aliases)}
        found = index.get(name.strip().lower()) if isinstance(name, str) else None
        if found is None:
            raise UnknownNameError("system", str(name), index)
        return found

    def system_for(self, accelerator_id: str, name: str | None = None) -> Any:
        """The system an accelerator runs on: ``name`` (which must hold that accelerator), else the
        accelerator's default system."""
        if name is not None:
            found = self.system(name)
            if found.accelerator != accelerator_id:
                raise InputError(f"system {found.id!r} holds {found.accelerator}, not {accelerator_id}; "
                                 f"choose a {accelerator_id} system (see `gpucost systems`)")
            return found
        for system in self.systems:
            if accelerator_id in system.default_for:
                return system
        raise InputError(f"no default system for {accelerator_id} in systems.yaml; give --system "
                         "(see `gpucost systems`) or --time-model flat")

    def prices_for(self, accelerator_id: str) -> tuple[Price, ...]:
        """Every price row for one accelerator, cheapest first."""
        return tuple(sorted((p for p in self.prices if p.accelerator == accelerator_id),
                            key=lambda p: p.usd_per_gpu_hour))

    def price(self, accelerator_id: str, provider: str | None = None) -> Price | None:
        """The price used for an accelerator: the given provider's cheapest offer (or an offer id),
        else the catalog's default offer, else None (no price known)."""
        if accelerator_id not in {a.id for a in self.accelerators}:
            raise UnknownNameError("GPU", str(accelerator_id), self._accelerator_index)
        rows = self.prices_for(accelerator_id)
        if provider is None:
            return next((p for p in rows if p.default), None)
        key = provider.strip().lower()
        matching = [p for p in rows if key in (p.provider.lower(), p.id.lower())]
        if not matching:
            raise UnknownNameError(f"provider for {accelerator_id}", provider,
                                   {p.provider for p in rows} | {p.id for p in rows})
        return matching[0]

    def match_device_name(self, device_name: str) -> Accelerator | None:
        """The accelerator whose driver-reported name is ``device_name`` (case- and space-insensitive),
        or None for an unknown device. Never guesses a different chip."""
        wanted = " ".join(device_name.lower().split())
        for acc in self.accelerators:
            if any(" ".join(n.lower().split()) == wanted for n in acc.device_names):
                return acc
        return None


@functools.lru_cache(maxsize=8)
def _load(directory: Path) -> Catalog:
    return Catalog(
        accelerators=_records(directory / "gpus.yaml", "accelerators", Accelerator),
        prices=_records(directory / "prices.yaml", "prices", Price),
        models=_records(directory / "models.yaml", "models", Model),
        directory=directory,
    )


def load_catalog(directory: str | Path | None = None) -> Catalog:
    """Load and validate the catalogs in ``directory`` (default: :func:`catalog_dir`). Cached."""
    return _load(Path(directory) if directory is not None else catalog_dir())
