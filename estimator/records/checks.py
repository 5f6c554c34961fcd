"""The one validator the profiler's files share: each check raises CatalogError(file, entry, field,
problem), so a broken calibration file is reported by file, entry and field. The bottom of the
records wing: calibration.py and collectives.py build on it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from estimator.errors import CatalogError

_STATS_KEYS = ("min", "median", "max")


class Check:
    """Validation helpers that raise CatalogError(file, entry, field, problem)."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, entry: str | None, field: str | None, problem: str) -> CatalogError:
        return CatalogError(self.file, entry, field, problem)

    def mapping(self, value: Any, entry: str | None, field: str | None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(entry, field, f"must be a mapping, got {type(value).__name__}")
        return value

    def keys(self, data: Mapping[str, Any], entry: str | None, allowed: Iterable[str],
             required: Iterable[str] = ()) -> None:
        allowed = set(allowed)
        for name in required:
            if name not in data:
                raise self.fail(entry, name, "is required")
        for name in data:
            if name not in allowed:
                raise self.fail(entry, str(name), "is not a known field")

    def number(self, data: Mapping[str, Any], entry: str | None, field: str, *, optional: bool = False,
               minimum: float = 0.0, positive: bool = False) -> None:
        value = data.get(field)
        if value is None:
            if optional:
                return
            raise self.fail(entry, field, "is required" if field not in data else "must be a number, got null")
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or not math.isfinite(value) or value < minimum or (positive and value <= 0):
            bound = f"> {minimum:g}" if positive else f">= {minimum:g}"
            raise self.fail(entry, field, f"must be a finite number {bound}, got {value!r}")

    def integer(self, data: Mapping[str, Any], entry: str | None, field: str, *, optional: bool = False,
                minimum: int = 0) -> None:
        value = data.get(field)
        if value is None:
            if optional:
                return
            raise self.fail(entry, field, "is required")
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(entry, field, f"must be an integer >= {minimum}, got {value!r}")

    def string(self, data: Mapping[str, Any], entry: str | None, field: str, *, optional: bool = False,
               choices: Sequence[str] | None = None) -> None:
        value = data.get(field)
        if value is None:
            if optional:
                return
            raise self.fail(entry, field, "is required")
        if not isinstance(value, str) or not value.strip():
            raise self.fail(entry, field, f"must be a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(entry, field, f"must be one of {', '.join(choices)}, got {value!r}")

    def stats(self, data: Mapping[str, Any], entry: str, field: str) -> None:
        value = data.get(field)
        if value is None:
            return
        value = self.mapping(value, entry, field)
        self.keys(value, f"{entry}.{field}", _STATS_KEYS, _STATS_KEYS)
        for key in _STATS_KEYS:
            self.number(value, f"{entry}.{field}", key, minimum=-math.inf)
