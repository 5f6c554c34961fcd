"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated

import typer

from estimator.errors import InputError
from estimator.vocab import FORMATS

def choices_metavar(choices: tuple[str, ...]) -> str:
    """``[table|json|yaml]``: how an option with fixed choices shows them in help."""
    return "[" + "|".join(choices) + "]"


def completer(choices: tuple[str, ...]):
    """A shell-completion callback offering ``choices`` that start with what was typed."""
    def complete(incomplete: str) -> list[str]:
        return [c for c in choices if c.startswith(incomplete.lower())]

    return complete


Format = Annotated[str, typer.Option("--format", "-f", metavar=choices_metavar(FORMATS), show_default=True,
                                     autocompletion=completer(FORMATS), help="Output format.")]


def check_format(fmt: str) -> str:
    """The --format value, or InputError naming the valid ones."""
    if fmt not in FORMATS:
        raise InputError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt


Wide = Annotated[bool, typer.Option("--wide", help="Print every column in full, whatever the terminal's width "
                                                     "(tables are fitted to a terminal; piped output is never cut).")]


def terminal_width(wide: bool = False) -> int | None:
    """The terminal's width when stdout is one (tables are fitted to it), else None: piped output
    and ``--wide`` keep whole lines."""
    import shutil
    import sys

    if wide:
        return None
    try:
        if not sys.stdout.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return max(40, shutil.get_terminal_size().columns)


def wrap_list(items: list[str], width: int | None, indent: str = "  - ") -> str:
    """``  - item`` lines, wrapped to ``width`` when given (continuation lines indented)."""
    if not width:
        return "\n".join(f"{indent}{item}" for item in items)
    import textwrap

    return "\n".join(textwrap.fill(item, width=width, initial_indent=indent, subsequent_indent=" " * len(indent),
                                    break_long_words=True, break_on_hyphens=False) for item in items)


def paragraph(text: str, width: int | None) -> str:
    """Prose under a table, wrapped to the terminal's ``width`` when given (its line breaks kept)."""
    if not width:
        return text
    import textwrap

    return "\n".join(textwrap.fill(line, width=width, break_long_words=True, break_on_hyphens=False) if line else ""
                     for line in text.split("\n"))


def records(key: str, data: list, fmt: str) -> object:
    """What a listing prints: json and yaml wrap the records as ``{"schema_version": 1, key: [...]}``
    (docs/json.md); csv, table and markdown take the records themselves."""
    from estimator.estimate import SCHEMA_VERSION

    return {"schema_version": SCHEMA_VERSION, key: data} if fmt in ("json", "yaml") else data
