"""Domain errors. The library raises these; only ``cli.py`` turns them into ``Error: ...`` and an exit code."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GpucostError(Exception):
    """Base class for every error gpucost reports to a user. The message is one line."""

    exit_code = 1


class InputError(GpucostError):
    """A value given by the user is invalid (negative, non-numeric, out of range, conflicting)."""

    exit_code = 2


class UnknownNameError(GpucostError):
    """A name (accelerator, model, provider, ...) is not in the catalog."""

    exit_code = 2

    def __init__(self, kind: str, name: str, choices: Iterable[str]):
        self.kind = kind
        self.name = name
        choices = sorted(set(choices))
        self.matches = difflib.get_close_matches(name.lower(), choices, n=3, cutoff=0.5)
        hint = (
            f"did you mean {', '.join(repr(m) for m in self.matches)}?"
            if self.matches
            else f"known: {', '.join(choices[:12])}{', ...' if len(choices) > 12 else ''}"
        )
        super().__init__(f"unknown {kind} {name!r}; {hint}")


class CatalogError(GpucostError):
    """A catalog or calibration file is malformed: the message names file, entry and field."""

    exit_code = 1

    def __init__(self, file: str, entry: str | None, field: str | None, problem: str):
        self.file, self.entry, self.field = file, entry, field
        where = file
        if entry is not None:
            where += f": entry {entry!r}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")
