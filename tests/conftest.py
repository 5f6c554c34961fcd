"""Shared fixtures: run the CLI in-process, and skip `gpu`-marked tests where CUDA is absent. The
parsed-catalog cache (estimator/catalog/yaml_cache.py) lives in a temporary directory for the whole session,
never in the user's ~/.cache."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

import pytest

from estimator.cli import main


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def cli(capsys):
    """``cli("estimate", "--params", "1B", ...)`` -> Result(exit_code, stdout, stderr)."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@pytest.fixture
def broken_catalog(tmp_path):
    """``broken_catalog(file, old, new)``: a copy of the shipped catalogs with the first ``old`` in
    ``file`` replaced by ``new``; returns the copy's directory."""
    import shutil

    from estimator.catalog.fields import catalog_dir

    def make(file: str, old: str, new: str):
        target = tmp_path / "catalogs"
        shutil.copytree(catalog_dir(), target)
        path = target / file
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
        return target

    return make


def pytest_configure(config):
    config._gpucost_cache = tempfile.TemporaryDirectory(prefix="gpucost-test-cache-")
    os.environ["GPUCOST_CACHE_DIR"] = config._gpucost_cache.name  # subprocesses inherit it too
    os.environ.pop("GPUCOST_NO_CACHE", None)


def pytest_unconfigure(config):
    cache = getattr(config, "_gpucost_cache", None)
    if cache is not None:
        cache.cleanup()


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in gpu_items:
            item.add_marker(skip)
