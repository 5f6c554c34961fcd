"""Reading catalog files: strict YAML (duplicate keys refused), the parse cache, and conversion of
each entry's fields by the record class's annotations, with errors naming file, entry and field.

The bottom of the catalog wing: records, systems and the Catalog all load through :func:`_records`.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import errno
import math
import os
from dataclasses import MISSING, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from estimator.errors import CatalogError, InputError
from estimator.numbers import parse_quantity
from estimator.vocab import CATALOG_DTYPES

SCHEMA_VERSION = 1
DTYPES = CATALOG_DTYPES
CATALOG_ENV = "GPUCOST_CATALOG_DIR"


def catalog_dir() -> Path:
    """The folder holding the catalogs: ``$GPUCOST_CATALOG_DIR``, else the one shipped with gpucost.

    In a wheel the catalogs live in ``estimator/catalogs``; in a source checkout in ``catalogs/``
    beside the package.
    """
    if env := os.environ.get(CATALOG_ENV):
        return Path(env)
    package = Path(__file__).resolve().parent.parent  # estimator/
    for candidate in (package / "catalogs", package.parent / "catalogs"):
        if (candidate / "gpus.yaml").is_file():
            return candidate
    raise CatalogError(str(package / "catalogs"), None, None, "catalog folder not found; reinstall gpucost")



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
    bytes from an earlier run (:mod:`estimator.catalog.yaml_cache`)."""
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
            from estimator.catalog.yaml_cache import cached_parse

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

