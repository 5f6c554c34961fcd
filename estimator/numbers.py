"""Parse human quantities ("175B", "14.8T", "2.664M", "1e21", "30d") and format results for people."""

from __future__ import annotations

import math
import re

from .errors import InputError

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15, "e": 1e18}
_QUANTITY = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)\s*([kmbgtpe]?)\s*$", re.I)
_DURATION = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0, "y": 365 * 86400.0}


def parse_quantity(text: str | float | int, *, what: str = "value", allow_zero: bool = False) -> float:
    """Return ``text`` as a float: ``"175B"`` -> 1.75e11, ``"2.664M"`` -> 2.664e6, ``"1e21"`` -> 1e21.

    Suffixes (case-insensitive): K=1e3, M=1e6, B or G=1e9, T=1e12, P=1e15, E=1e18; a leading ``$``
    and ``_``/``,`` digit separators are ignored. Raises InputError naming ``what`` for anything
    else, and for negative values (or zero unless ``allow_zero``).
    """
    if isinstance(text, bool):
        raise InputError(f"{what} must be a number, got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        cleaned = text.strip().lstrip("$").replace("_", "").replace(",", "")
        match = _QUANTITY.match(cleaned)
        if not match:
            raise InputError(
                f"{what} must be a number such as 175e9, 175B, 14.8T or 2.664M, got {text!r}"
            )
        value = float(match.group(1)) * _SUFFIX[match.group(2).lower()]
    if not math.isfinite(value):
        raise InputError(f"{what} must be finite, got {text!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{what} must be {'non-negative' if allow_zero else 'positive'}, got {text!r}")
    return value


def parse_duration_s(text: str) -> float:
    """Return a duration in seconds: ``"30d"`` -> 2592000, ``"12h"``, ``"2w"``, ``"90"`` (days)."""
    match = re.match(r"^\s*((?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)\s*([a-z]*)\s*$", text.strip(), re.I)
    unit = match.group(2).lower() if match else None
    if not match or (unit and unit not in _DURATION):
        raise InputError(f"duration must look like 30d, 12h, 2w or 1y, got {text!r}")
    value = float(match.group(1)) * _DURATION[unit or "d"]
    if value <= 0:
        raise InputError(f"duration must be positive, got {text!r}")
    return value


def si(value: float | None, unit: str = "", digits: int = 3) -> str:
    """Format with an SI-style suffix for people: 3.15e23 -> '3.15e+23' for FLOPs, 5.3e6 -> '5.33M'."""
    if value is None:
        return "n/a"
    if unit == "FLOP":
        return f"{value:.{digits - 1}e} FLOP"
    for threshold, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= threshold:
            return f"{value / threshold:.{digits}g}{suffix}{(' ' + unit) if unit else ''}"
    return f"{value:.{digits}g}{(' ' + unit) if unit else ''}"


def usd(value: float | None) -> str:
    """Format dollars for people: 5328000 -> '$5,328,000', 12.345 -> '$12.35'."""
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"${value:,.0f}"
    return f"${value:,.2f}"


def days(value: float) -> str:
    """Format a duration given in days: '44.5 days', or hours/minutes below a day ('2.6 hours')."""
    if value >= 1:
        return f"{value:,.1f} days"
    hours = value * 24
    return f"{hours:.3g} hours" if hours >= 1 else f"{hours * 60:.3g} minutes"


def count(value: float) -> str:
    """Format a count for people: 1,093,750 or, below 100, three significant digits (2.07)."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
