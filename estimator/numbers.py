"""Parse human quantities ("175B", "14.8T", "2.664M", "1e21", "30d") and format results for people."""

from __future__ import annotations

import math
import re

from estimator.errors import InputError

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}
# digits with optional thousands groups (1,500 or 1_500: groups of exactly three), a fraction, an
# exponent with digits (e21, e+21, e-3), then an optional suffix.
_NUMBER = r"(?:\d{1,3}(?:[,_]\d{3})+|\d+)(?:\.\d*)?|\.\d+"
_QUANTITY = re.compile(rf"^([+-]?(?:{_NUMBER})(?:e[+-]?\d+)?)\s*([kmbgtp]?)$", re.I)
_DURATION_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0, "y": 365 * 86400.0}
_DURATION = re.compile(rf"^((?:{_NUMBER})(?:e[+-]?\d+)?)\s*([a-z]*)$", re.I)
QUANTITY_GRAMMAR = ("a number such as 175e9, 175B, 14.8T, 2.664M or 1,500 (suffixes K M B/G T P; "
                    "thousands separators , or _ in groups of three)")
DURATION_UNITS_TEXT = "s, min, h, d, w, y (a bare number is days)"


def parse_quantity(text: str | float | int, *, what: str = "value", allow_zero: bool = False) -> float:
    """Return ``text`` as a float: ``"175B"`` -> 1.75e11, ``"2.664M"`` -> 2.664e6, ``"1e21"`` -> 1e21.

    Grammar (case-insensitive): digits, optionally grouped in threes by ``,`` or ``_``
    (``1,500``; ``1,5`` is refused), an optional fraction, an optional exponent that must have
    digits (``1e21``; ``1e`` is refused), then an optional suffix K=1e3, M=1e6, B or G=1e9,
    T=1e12, P=1e15; a leading ``$`` is ignored. Raises InputError naming ``what`` for anything
    else, for non-finite values, for a positive number that underflows to zero, and for negative
    values (or zero unless ``allow_zero``).
    """
    if isinstance(text, bool):
        raise InputError(f"{what} must be a number, got {text!r}")
    if isinstance(text, (int, float)):
        try:
            value = float(text)
        except OverflowError:
            raise InputError(f"{what} is too large, got {text!r}") from None
        underflow = False
    elif isinstance(text, str):
        cleaned = text.strip()
        cleaned = cleaned[1:].lstrip() if cleaned.startswith("$") else cleaned
        match = _QUANTITY.match(cleaned)
        if not match:
            raise InputError(f"{what} must be {QUANTITY_GRAMMAR}, got {text!r}")
        mantissa = float(match.group(1).replace(",", "").replace("_", ""))
        value = mantissa * _SUFFIX[match.group(2).lower()]
        underflow = value == 0 and re.search(r"[1-9]", match.group(1).split("e")[0].split("E")[0]) is not None
    else:
        raise InputError(f"{what} must be a number, got {type(text).__name__} {text!r}")
    if not math.isfinite(value):
        raise InputError(f"{what} must be finite, got {text!r}")
    if underflow:
        raise InputError(f"{what} is too small: {text!r} underflows to zero")
    if value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{what} must be {'non-negative' if allow_zero else 'positive'}, got {text!r}")
    return value


def parse_count(text: str | int, *, what: str = "value", maximum: int = 10**9) -> int:
    """A positive whole number: ``8``, ``1,024``, ``16K`` (= 16,000; the suffixes of
    :func:`parse_quantity`), at most ``maximum``. Raises InputError naming ``what``."""
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise InputError(f"{what} must be a whole number, got {text!r}")
    try:
        value = parse_quantity(text, what=what)
    except InputError as exc:
        if "positive" in str(exc):
            raise InputError(f"{what} must be a positive whole number, got {text!r}") from None
        raise
    if value != int(value):
        raise InputError(f"{what} must be a whole number, got {text!r}")
    if value > maximum:
        raise InputError(f"{what} must be at most {maximum:,}, got {text!r}")
    return int(value)


SEQ_LEN_GRAMMAR = "a whole number of tokens such as 8192, 8,192 or 8K (K = 1,024 and M = 1,048,576 here)"


def parse_seq_len(text: str | int, *, what: str = "--seq-len", maximum: int = 10**7) -> int:
    """A sequence length in tokens: ``8192``, ``8,192``, or with a binary suffix as model cards write
    them, ``8K`` = 8,192 and ``128K`` = 131,072, ``1M`` = 1,048,576 (context lengths are powers of
    two; ``parse_count``'s K is 1,000). Raises InputError naming ``what``."""
    if isinstance(text, str) and text.strip()[-1:].lower() in ("k", "m"):
        cleaned = text.strip()
        try:
            if cleaned[:-1].strip()[-1:].isalpha():  # one suffix only: "1KK" is not a length
                raise InputError("two suffixes")
            mantissa = parse_quantity(cleaned[:-1], what=what)
        except InputError:
            raise InputError(f"{what} must be {SEQ_LEN_GRAMMAR}, got {text!r}") from None
        value = mantissa * (2**10 if cleaned[-1].lower() == "k" else 2**20)
        if value != int(value):
            raise InputError(f"{what} must be a whole number of tokens, got {text!r} = {value:g}")
        if value > maximum:
            raise InputError(f"{what} must be at most {maximum:,}, got {text!r}")
        return int(value)
    return parse_count(text, what=what, maximum=maximum)


def parse_duration_s(text: str, *, what: str = "--deadline") -> float:
    """Return a duration in seconds: ``"30d"`` -> 2592000, ``"12h"``, ``"2w"``, ``"90min"``,
    ``"90"`` (days). Units: s, min, h, d, w, y. At least one second, at most 1000 years."""
    if not isinstance(text, str):
        raise InputError(f"{what} must be a duration such as 30d, got {text!r}")
    match = _DURATION.match(text.strip())
    unit = match.group(2).lower() if match else None
    if not match or (unit and unit not in _DURATION_UNITS):
        hint = " ('m' is ambiguous: write min or 30d)" if unit == "m" else ""
        raise InputError(f"{what} must be a duration such as 30d, 12h or 90min (units: {DURATION_UNITS_TEXT}), "
                         f"got {text!r}{hint}")
    value = float(match.group(1).replace(",", "").replace("_", "")) * _DURATION_UNITS[unit or "d"]
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{what} must be a positive, finite duration, got {text!r}")
    if value < 1.0:
        raise InputError(f"{what} must be at least 1 s, got {text!r}")
    if value > 1000 * _DURATION_UNITS["y"]:
        raise InputError(f"{what} must be at most 1000 years, got {text!r}")
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
