"""Load, validate and look up the catalogs (accelerators, prices, models, published runs).

Each ``catalogs/*.yaml`` file is validated on load into frozen records. A malformed file raises
:class:`CatalogError` naming the file, the entry and the field. Look-ups accept an exact id or an
alias (case-insensitive); an unknown name raises :class:`UnknownNameError` with close matches.
Unknown hardware is never silently replaced by another device.
"""


from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from estimator.catalog.fields import _records, catalog_dir
from estimator.catalog.records import OFFERS, RUN_SCOPES, Accelerator, Dataset, Model, Price, Run, SampleRun
from estimator.catalog.systems import load_systems
from estimator.errors import CatalogError, InputError, UnknownNameError



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

    @functools.cached_property
    def _accelerator_loose_index(self) -> dict[str, Accelerator]:
        """:func:`loose_gpu_name` of every id, alias and driver name -> its accelerator; a spelling
        two accelerators share is left out (never guessed)."""
        index: dict[str, Accelerator] = {}
        shared: set[str] = set()
        for acc in self.accelerators:
            for name in (acc.id, *acc.aliases, *acc.device_names):
                key = loose_gpu_name(name)
                if index.get(key, acc) is not acc:
                    shared.add(key)
                index[key] = acc
        return {k: a for k, a in index.items() if k not in shared}

    def accelerator(self, name: str) -> Accelerator:
        """The accelerator with id or alias ``name``; UnknownNameError (with close matches) if none.
        Spaces, hyphens, underscores, case and a leading vendor word do not matter: ``RTX 4090``,
        ``rtx_4090`` and ``NVIDIA H100`` are found, as are the names the driver prints."""
        if not isinstance(name, str):
            raise InputError(f"a GPU name must be a string, got {type(name).__name__} {name!r}")
        found = self._accelerator_index.get(" ".join(name.strip().lower().split()))
        if found is None:
            found = self.match_device_name(name)  # the name the driver prints, e.g. "NVIDIA H100 80GB HBM3"
        if found is None and name.strip():
            found = self._accelerator_loose_index.get(loose_gpu_name(name))
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
    def sample_runs(self) -> tuple[SampleRun, ...]:
        """Published throughput of sample-counted workloads (catalogs/sample_runs.yaml), loaded on first use."""
        path = self.directory / "sample_runs.yaml"
        rows = _records(path, "sample_runs", SampleRun) if path.exists() else ()
        ids = {a.id for a in self.accelerators}
        models = {m.id: m for m in self.models}
        for row in rows:
            if row.accelerator not in ids:
                raise CatalogError("sample_runs.yaml", row.id, "accelerator",
                                   f"{row.accelerator!r} is not an id in gpus.yaml")
            if row.model not in models or models[row.model].forward_flops_per_sample is None:
                raise CatalogError("sample_runs.yaml", row.id, "model",
                                   f"{row.model!r} is not a models.yaml id with forward_flops_per_sample")
            if not row.samples_per_s > 0 or row.num_devices < 1:
                raise CatalogError("sample_runs.yaml", row.id, "samples_per_s", "must be positive, on 1 or more devices")
        return rows

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
        """Node types (catalogs/systems.yaml, :mod:`estimator.catalog.systems`), loaded on first use."""
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


VENDOR_WORDS = ("nvidia", "geforce", "tesla", "amd", "instinct", "google", "cloud")


def loose_gpu_name(name: str) -> str:
    """``"NVIDIA RTX 4090"`` -> ``"rtx4090"``: lower case, leading vendor words dropped, no spaces,
    hyphens or underscores (how a look-up forgives the ways one chip is written)."""
    words = name.lower().replace("_", " ").replace("-", " ").split()
    while len(words) > 1 and words[0] in VENDOR_WORDS:
        words = words[1:]
    return "".join(words)


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
