"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import InputError
from ..render import FORMATS

Format = Annotated[str, typer.Option("--format", "-f", help=f"Output format: {', '.join(FORMATS)}.")]


def check_format(fmt: str) -> str:
    """The --format value, or InputError naming the valid ones."""
    if fmt not in FORMATS:
        raise InputError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt
