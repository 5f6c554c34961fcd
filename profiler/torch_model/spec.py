"""Finding the callable a ``--torch-model SPEC`` names (profiler/torch_model/step.py says what a SPEC is
and what the callable returns): ``module:callable``, ``path/to/file.py:callable`` or
``builtin:NAME``. Imports the module, never calls the callable; every error is an InputError naming
the SPEC in one line, with a close match where there is one.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from estimator.errors import InputError

BUILTIN_PREFIX = "builtin:"
RETURN_FORMS = "(model, batch) or a dict with 'model' and 'batch'"
_RETURN = RETURN_FORMS


@dataclass(frozen=True)
class Resolved:
    """A SPEC resolved to its callable: ``model_id`` is the id the file will use unless the
    callable's dict gives one; ``folder`` joins sys.path while the callable runs (file specs)."""

    spec: str
    function: Callable[..., Any]
    model_id: str
    folder: str | None = None


@contextlib.contextmanager
def _on_path(folder: str | None) -> Iterator[None]:
    if folder is None or folder in sys.path:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0].strip()
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _syntax() -> str:
    return "use module:callable, path/to/file.py:callable, or builtin:NAME (builtins: mnist-mlp, resnet-50)"


def resolve_spec(spec: str, cwd: str | Path | None = None) -> Resolved:
    """Find the callable that SPEC names (imports its module; does not call it). Raises
    InputError naming the SPEC: bad syntax, unknown builtin, module or file not found, import
    failed, no such attribute, not callable."""
    from profiler.torch_model.builtin import BUILTINS

    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"--torch-model needs a SPEC; {_syntax()}")
    spec = spec.strip()
    if spec.startswith(BUILTIN_PREFIX):
        name = spec[len(BUILTIN_PREFIX):]
        if name not in BUILTINS:
            close = difflib.get_close_matches(name, list(BUILTINS), n=1, cutoff=0.5)
            hint = f"did you mean builtin:{close[0]}?" if close else f"builtins: {', '.join(BUILTINS)}"
            raise InputError(f"--torch-model {spec}: unknown builtin {name!r}; {hint}")
        return Resolved(spec, BUILTINS[name], name)
    target, colon, attribute = spec.rpartition(":")
    if not colon or not target or not attribute:
        raise InputError(f"--torch-model {spec}: expected a ':' between the module or file and the callable; {_syntax()}")
    cwd = str(cwd or os.getcwd())
    is_file = target.endswith(".py") or "/" in target or os.sep in target
    if is_file:
        path = Path(target) if Path(target).is_absolute() else Path(cwd) / target
        if not path.is_file():
            raise InputError(f"--torch-model {spec}: file {target} not found")
        folder = str(path.resolve().parent)
        module_name = f"_gpucost_torch_model_{path.stem}"
        with _on_path(folder):
            try:
                loader_spec = importlib.util.spec_from_file_location(module_name, path)
                if loader_spec is None or loader_spec.loader is None:
                    raise InputError(f"--torch-model {spec}: {target} cannot be imported as a Python file")
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[module_name] = module
                loader_spec.loader.exec_module(module)
            except InputError:
                raise
            except BaseException as exc:  # noqa: BLE001 - whatever the user's file raises, in one line
                sys.modules.pop(module_name, None)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                raise InputError(f"--torch-model {spec}: importing {target} failed: {_first_line(exc)}") from None
        where = target
    else:
        folder = cwd
        with _on_path(folder):
            try:
                module = importlib.import_module(target)
            except ModuleNotFoundError as exc:
                if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
                    raise InputError(f"--torch-model {spec}: no module named {target!r} in the current directory "
                                     "or on PYTHONPATH") from None
                raise InputError(f"--torch-model {spec}: importing {target} failed: {_first_line(exc)}") from None
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001
                raise InputError(f"--torch-model {spec}: importing {target} failed: {_first_line(exc)}") from None
        where = f"module {target}"
    value: Any = module
    walked = []
    for part in attribute.split("."):
        if not hasattr(value, part):
            owner = where if not walked else f"{where}: {'.'.join(walked)}"
            names = [n for n in dir(value) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(f"--torch-model {spec}: {owner} has no attribute {part!r}{hint}")
        value = getattr(value, part)
        walked.append(part)
    if not callable(value):
        raise InputError(f"--torch-model {spec}: {attribute} is a {type(value).__name__}, not a callable that returns "
                         f"{_RETURN}")
    if isinstance(value, nn.Module):
        raise InputError(f"--torch-model {spec}: {attribute} is a model instance; name a function that returns "
                         f"{_RETURN}")
    return Resolved(spec, value, getattr(value, "__name__", attribute.split(".")[-1]), folder if is_file else cwd)


__all__ = ["BUILTIN_PREFIX", "RETURN_FORMS", "Resolved", "resolve_spec"]
