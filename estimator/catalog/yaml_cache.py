"""A cache of parsed catalog files, so that every ``gpucost`` run does not parse the same YAML again.

PyYAML builds Python objects in Python even with libyaml: the four catalogs an estimate reads take
about 8 ms to parse on a 2-core VM, several times the 1 ms of reading a pickle of the result
(benchmarks/cold_start.py measures the whole start-up). Only what parsing returns is cached; every
load still validates it (:func:`estimator.catalog._records`), so an error names the file as before.

- Where: ``$GPUCOST_CACHE_DIR``, else ``$XDG_CACHE_HOME/gpucost``, else ``~/.cache/gpucost``; one
  file per catalog file (a new version replaces the old). ``GPUCOST_NO_CACHE=1`` turns it off.
  Deleting the directory is always safe. Its entries are pickles, which like Python's own
  ``__pycache__`` bytecode are code: the directory must be writable by you only (the default, under
  your home, is).
- Key: the file's size, modification time and CRC-32 of its bytes, gpucost's version and the Python
  and PyYAML versions; any change parses again.
- Failure is never an error: an unreadable, corrupt or unwritable cache parses the file as if there
  were none. A new entry is written to a temporary name and renamed, so none is half-written.
"""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

SUFFIX = ".pickle"


def cache_dir() -> Path | None:
    """The cache directory, or None when caching is off."""
    if os.environ.get("GPUCOST_NO_CACHE", "") not in ("", "0"):
        return None
    if os.environ.get("GPUCOST_CACHE_DIR"):
        return Path(os.environ["GPUCOST_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpucost"


def _entry(directory: Path, file: Path, raw: bytes) -> tuple[Path, str]:
    """(the cache entry for ``file``, the prefix its older entries share)."""
    import yaml

    from estimator import __version__

    stat = file.stat()
    key = f"{len(raw)}|{stat.st_mtime_ns}|{zlib.crc32(raw):08x}|{__version__}|{sys.version}|{yaml.__version__}"
    prefix = f"{file.name}-{zlib.crc32(str(file.resolve()).encode()):08x}-"
    return directory / f"{prefix}{zlib.crc32(key.encode()):08x}{SUFFIX}", prefix


def cached_parse(file: Path, raw: bytes, parse: Callable[[], Any]) -> Any:
    """``parse()``'s result for ``file`` (whose bytes are ``raw``), from the cache when it holds one.
    Errors from ``parse`` propagate and nothing is cached for them."""
    directory = cache_dir()
    if directory is None:
        return parse()
    try:
        entry, prefix = _entry(directory, file, raw)
    except OSError:
        return parse()
    import pickle

    try:
        with entry.open("rb") as handle:
            return pickle.load(handle)
    except Exception:  # noqa: BLE001 - absent, unreadable or corrupt: parse as if there were no cache
        pass
    data = parse()
    temporary = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.iterdir():
            if old.name.startswith(prefix) and old.name.endswith(SUFFIX):
                old.unlink(missing_ok=True)
        temporary.write_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(temporary, entry)
    except (OSError, pickle.PicklingError):  # read-only or full: the next run parses again
        pass
    finally:  # after a failure or Ctrl-C, no temporary file stays behind (after the rename there is none)
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass
    return data


__all__ = ["cache_dir", "cached_parse"]
