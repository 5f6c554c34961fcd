"""The parsed-catalog cache (estimator/catalog/yaml_cache.py): a hit skips parsing, any change parses again,
and no failure of the cache is ever the user's error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from estimator.catalog import core as catalog, yaml_cache
from estimator.catalog.fields import load_yaml_file
from estimator.errors import CatalogError

CATALOGS = Path(__file__).resolve().parents[1] / "catalogs"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv("GPUCOST_CACHE_DIR", str(directory))
    monkeypatch.delenv("GPUCOST_NO_CACHE", raising=False)
    catalog._load.cache_clear()  # load_catalog memoizes per directory: read the files every time here
    yield directory
    catalog._load.cache_clear()


def load_catalog(directory):
    catalog._load.cache_clear()
    return catalog.load_catalog(directory)


def _no_parsing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("parsed although the cache holds the file")

    monkeypatch.setattr(yaml, "load", refuse)


def test_a_second_load_reads_the_cache_and_gives_the_same_records(cache, monkeypatch):
    first = load_catalog(CATALOGS)
    assert sorted(p.name.split("-")[0] for p in cache.iterdir()) == ["gpus.yaml", "models.yaml", "prices.yaml"]
    _no_parsing(monkeypatch)
    assert load_catalog(CATALOGS) == first


def test_a_changed_file_is_parsed_again_and_replaces_its_old_entry(cache, tmp_path):
    file = tmp_path / "gpus.yaml"
    file.write_text("schema_version: 1\naccelerators: []\n")
    assert load_yaml_file(file, cache=True) == {"schema_version": 1, "accelerators": []}
    file.write_text("schema_version: 1\naccelerators: [1]\n")
    os.utime(file, ns=(0, 0))  # even with the modification time put back, the bytes differ
    assert load_yaml_file(file, cache=True) == {"schema_version": 1, "accelerators": [1]}
    assert len(list(cache.iterdir())) == 1


def test_a_corrupt_or_unreadable_cache_is_ignored(cache, tmp_path):
    file = tmp_path / "a.yaml"
    file.write_text("x: 1\n")
    load_yaml_file(file, cache=True)
    (entry,) = cache.iterdir()
    entry.write_bytes(b"not a pickle")
    assert load_yaml_file(file, cache=True) == {"x": 1}
    entry.unlink()
    entry.mkdir()  # a directory where the entry should be
    assert load_yaml_file(file, cache=True) == {"x": 1}


def test_an_unwritable_cache_still_loads_and_leaves_nothing_behind(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("GPUCOST_CACHE_DIR", str(blocker / "cache"))  # its parent is a file
    file = tmp_path / "a.yaml"
    file.write_text("x: 1\n")
    assert load_yaml_file(file, cache=True) == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", "not-a-dir"]


def test_a_failed_write_removes_its_temporary_file(cache, tmp_path, monkeypatch):
    file = tmp_path / "a.yaml"
    file.write_text("x: 1\n")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(yaml_cache.os, "replace", full_disk)
    assert load_yaml_file(file, cache=True) == {"x": 1}
    assert list(cache.iterdir()) == []


def test_errors_are_never_cached(cache, tmp_path):
    file = tmp_path / "a.yaml"
    file.write_text("x: 1\nx: 2\n")
    for _ in range(2):
        with pytest.raises(CatalogError, match="duplicate key"):
            load_yaml_file(file, cache=True)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_it_can_be_turned_off(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCOST_NO_CACHE", "1")
    assert yaml_cache.cache_dir() is None
    load_catalog(CATALOGS)
    assert not cache.exists()


def test_the_default_place_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("GPUCOST_CACHE_DIR", raising=False)
    monkeypatch.delenv("GPUCOST_NO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert yaml_cache.cache_dir() == tmp_path / "gpucost"


def test_two_directories_with_the_same_file_names_keep_their_own_entries(cache, tmp_path):
    other = tmp_path / "mine"
    shutil.copytree(CATALOGS, other)
    load_catalog(CATALOGS)
    load_catalog(other)
    assert len([p for p in cache.iterdir() if p.name.startswith("gpus.yaml-")]) == 2


def test_ctrl_c_while_writing_leaves_no_temporary_file(cache, tmp_path, monkeypatch):
    file = tmp_path / "a.yaml"
    file.write_text("x: 1\n")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(yaml_cache.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_yaml_file(file, cache=True)
    assert list(cache.iterdir()) == []
