"""Shell-completion values for ``--gpu``, ``--model``, ``--provider``, ``--system``, ``--dataset`` and
the precisions.

Completion runs on every press of Tab, so it must feel instant: these functions read the catalog
YAML files as text and pick out the ``- id:``, ``aliases:`` and ``provider:`` lines with a regular
expression. No YAML parsing, no record building, no validation (a broken catalog still completes;
``gpucost`` itself reports the problem when the command runs), no torch. Each function has the
signature typer's ``autocompletion=`` expects, ``(incomplete: str) -> list[str]``; matching is a
case-insensitive prefix match, like the catalog's look-ups. For options that take a comma-separated
list (``--gpu h100,a1<Tab>``), the last item is completed and the ones before it kept.

The files are found where the catalog is (:func:`estimator.catalog.catalog_dir`, which honours
``$GPUCOST_CATALOG_DIR``); a missing or unreadable file completes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from estimator.catalog.fields import catalog_dir
from estimator.errors import GpucostError
from estimator.vocab import PRECISION_ALIASES, PRECISIONS, PROFILE_DTYPES

__all__ = [
    "catalog_names", "complete_dataset", "complete_dtype", "complete_gpu", "complete_model", "complete_precision",
    "complete_provider", "complete_system", "matching",
]

_VALUE = r"""(?P<value>"[^"\n]*"|'[^'\n]*'|[^\s#\[{][^#\n]*?)"""
_END = r"[ \t]*(?:#[^\n]*)?$"
# One pass over the whole text (re.M), in file order: a list entry's id ("  - id: h100-sxm"), and
# its aliases as a flow list ("    aliases: [h100, "h100-sxm5"]") or a block list ("    aliases:"
# then "      - h100" lines).
_NAMES = re.compile(rf"^[ \t]*-[ \t]+id[ \t]*:[ \t]*{_VALUE}{_END}"
                    rf"|^(?P<indent>[ \t]*)aliases[ \t]*:[ \t]*(?:\[(?P<flow>[^\]\n]*)\])?{_END}", re.M)
_ITEM = re.compile(rf"(?P<indent>[ \t]*)-[ \t]+{_VALUE}{_END}|[ \t]*(?:#[^\n]*)?$", re.M)
_SCALAR_KEY = r"^[ \t]*(?:-[ \t]+)?KEY[ \t]*:[ \t]*" + _VALUE + _END


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _text(name: str) -> str:
    try:
        return (catalog_dir() / name).read_text(encoding="utf-8", errors="replace")
    except (OSError, GpucostError):  # no such file or no catalog folder: nothing to complete
        return ""


def _block_items(text: str, start: int, indent: int) -> list[str]:
    """The items of a block list that starts on the line after ``start``, indented at least ``indent``."""
    found = []
    position = start + 1
    while position < len(text):
        match = _ITEM.match(text, position)
        if not match:
            break
        if match.group("value") is not None:
            if len(match.group("indent")) < indent:
                break
            found.append(_unquote(match.group("value")))
        position = match.end() + 1  # blank and comment lines are passed over
    return found


def catalog_names(file: str, *, aliases: bool = True, key: str | None = None) -> list[str]:
    """The entry ids in catalog ``file`` (``"gpus.yaml"``), each followed by its aliases; or, with
    ``key``, the distinct values of that scalar field (``key="provider"``). In file order, no
    duplicates."""
    text = _text(file)
    if key is not None:
        pattern = re.compile(_SCALAR_KEY.replace("KEY", re.escape(key), 1), re.M)
        return list(dict.fromkeys(v for v in (_unquote(m.group("value")) for m in pattern.finditer(text)) if v))
    found: list[str] = []
    for match in _NAMES.finditer(text):
        if match.group("value") is not None:
            found.append(_unquote(match.group("value")))
        elif not aliases:
            continue
        elif match.group("flow") is not None:
            found.extend(_unquote(v) for v in match.group("flow").split(","))
        else:
            found.extend(_block_items(text, match.end(), len(match.group("indent"))))
    return list(dict.fromkeys(v for v in found if v))


def matching(incomplete: str, values: Iterable[str]) -> list[str]:
    """The values that start with ``incomplete`` (case-insensitive), in order. For a comma-separated
    list the last item is matched and the items before it are kept as typed."""
    head, sep, last = incomplete.rpartition(",")
    prefix = head + sep
    chosen = {v.strip().lower() for v in head.split(",")} if sep else set()
    wanted = last.strip().lower()
    return [prefix + v for v in dict.fromkeys(values) if v.lower().startswith(wanted) and v.lower() not in chosen]


def _completer(values: Callable[[], list[str]]) -> Callable[[str], list[str]]:
    def complete(incomplete: str) -> list[str]:
        return matching(incomplete or "", values())

    return complete


def _precisions(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def complete(incomplete: str) -> list[str]:
        found = matching(incomplete or "", choices)
        if found:
            return found
        # "bfl<Tab>", "float1<Tab>": the spellings frameworks use, for the formats offered here.
        return matching(incomplete or "", [alias for alias, name in PRECISION_ALIASES.items() if name in choices])

    return complete


complete_gpu = _completer(lambda: catalog_names("gpus.yaml"))
complete_gpu.__doc__ = "Accelerator ids and aliases from gpus.yaml (``--gpu``)."
complete_model = _completer(lambda: catalog_names("models.yaml"))
complete_model.__doc__ = "Model ids and aliases from models.yaml (``--model``)."
complete_dataset = _completer(lambda: catalog_names("datasets.yaml"))
complete_dataset.__doc__ = "Dataset ids and aliases from datasets.yaml (``--dataset``); none while that file is absent."
complete_system = _completer(lambda: catalog_names("systems.yaml"))
complete_system.__doc__ = "System ids and aliases from systems.yaml (``--system``); none while that file is absent."


def complete_provider(incomplete: str) -> list[str]:
    """Providers from prices.yaml (``--provider``); the offer ids (which it also takes) when no
    provider starts with what was typed (``aws-<Tab>``)."""
    return (matching(incomplete or "", catalog_names("prices.yaml", key="provider"))
            or matching(incomplete or "", catalog_names("prices.yaml")))


complete_precision = _precisions(PRECISIONS)
complete_precision.__doc__ = "Training precisions (``--precision``): bf16, fp16, fp8, tf32, fp32."
complete_dtype = _precisions(PROFILE_DTYPES)
complete_dtype.__doc__ = "Precisions the profiler measures (``profile --dtype``, comma-separated lists too)."
