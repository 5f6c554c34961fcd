"""Shell-completion values: read from the catalog files as text (no validation), the same names the
full catalog load gives, and much faster than that load."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import pytest
import typer
from typer.testing import CliRunner

from estimator.catalog.core import load_catalog
from estimator.completion import (catalog_names, complete_dataset, complete_dtype, complete_gpu, complete_model,
                                  complete_precision, complete_provider, complete_system, matching)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_gpu_names_are_every_id_and_alias_of_the_catalog(catalog):
    names = catalog_names("gpus.yaml")
    assert set(names) == {n for a in catalog.accelerators for n in (a.id, *a.aliases)}
    assert len(names) == len(set(names))
    assert names.index("h100-sxm") < names.index("h100")  # an id comes before its aliases


def test_model_and_provider_names_match_the_catalog(catalog):
    assert set(catalog_names("models.yaml")) == {n for m in catalog.models for n in (m.id, *m.aliases)}
    assert set(catalog_names("prices.yaml", key="provider")) == {p.provider for p in catalog.prices}
    assert set(catalog_names("prices.yaml")) == {p.id for p in catalog.prices}


def test_gpu_h_offers_the_h_series():
    found = complete_gpu("h")
    assert {"h100-sxm", "h100-pcie", "h100-nvl", "h200-sxm", "h800-sxm", "h20", "h100"} <= set(found)
    assert all(name.startswith("h") for name in found)
    assert complete_gpu("H1") == [n for n in found if n.startswith("h1")]  # case-insensitive, like the look-up


def test_precision_offers_the_training_precisions_and_the_framework_spellings():
    assert complete_precision("") == ["bf16", "fp16", "fp8", "tf32", "fp32"]
    assert complete_precision("fp") == ["fp16", "fp8", "fp32"]
    assert complete_precision("bfl") == ["bfloat16"]
    assert "fp64" not in complete_precision("")  # a catalog dtype, not a training precision
    assert complete_dtype("") == ["fp32", "tf32", "bf16", "fp16", "fp8"]


def test_comma_separated_lists_complete_the_last_item():
    assert complete_dtype("bf16,fp") == ["bf16,fp32", "bf16,fp16", "bf16,fp8"]
    assert "h100,a100" in complete_gpu("h100,a1")
    assert "h100,h100" not in complete_gpu("h100,h1")  # an item already given is not offered again


def test_model_provider_and_system():
    assert "llama-3.1-405b" in complete_model("llama-3.1")
    assert complete_provider("a") == ["aws", "azure"]
    assert complete_provider("aws-p5-") and all(p.startswith("aws-p5-") for p in complete_provider("aws-p5-"))
    assert complete_provider("nosuchcloud") == []
    assert "dgx-h100" in complete_system("dgx-h")


def test_every_catalog_file_with_ids_completes_the_names_the_loader_reads(catalog):
    for file, attribute in (("systems.yaml", "systems"), ("datasets.yaml", "datasets")):
        records = getattr(catalog, attribute, None)
        if records is None:  # that catalog is not there yet
            continue
        assert set(catalog_names(file)) == {n for r in records for n in (r.id, *r.aliases)}, file
    assert complete_dataset("imag") == ["imagenet-1k", "imagenet"] if hasattr(catalog, "datasets") else True


def test_matching_keeps_order_and_drops_duplicates():
    assert matching("a", ["b", "ab", "a", "A1", "a"]) == ["ab", "a", "A1"]


def test_a_missing_or_broken_catalog_completes_what_it_can(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCOST_CATALOG_DIR", str(tmp_path))
    assert complete_gpu("") == []
    (tmp_path / "gpus.yaml").write_text(
        "schema_version: 1\naccelerators:\n"
        "  - id: 'my-gpu'   # quoted, with a comment\n    aliases: [mine, \"my\"]\n    peak_tflops: not a mapping\n"
        "  - id: other\n    aliases:\n      - oth\n      - 'o2'  # block list\n    name: Other\n"
        "  - {id: flow-style-is-not-read}\n", encoding="utf-8")
    assert complete_gpu("") == ["my-gpu", "mine", "my", "other", "oth", "o2"]
    (tmp_path / "gpus.yaml").write_bytes(b"\xff\xfe not utf-8 - id: x\n")
    assert complete_gpu("") == []


def test_completion_is_much_faster_than_a_full_catalog_load(monkeypatch):
    """A ratio, not an absolute time: completion reads text, the load parses and validates (with the
    parse cache off, as on the first run after a catalog changes)."""
    from estimator.catalog.core import _load

    monkeypatch.setenv("GPUCOST_NO_CACHE", "1")

    def best_of(fn, repeat=7):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    def full_load():  # every file the completions read: gpus, models, prices, systems (and runs)
        _load.cache_clear()
        catalog = load_catalog()
        for lazy in ("runs", "systems"):  # loaded on first use
            getattr(catalog, lazy, None)

    def complete_all():
        complete_gpu("h")
        complete_model("")
        complete_provider("")
        complete_system("")

    full, fast = best_of(full_load), best_of(complete_all)
    assert fast * 5 < full, f"completion {fast * 1e3:.2f} ms vs full catalog load {full * 1e3:.2f} ms"


def test_the_functions_work_as_typer_autocompletion_callbacks():
    app = typer.Typer()

    @app.command()
    def estimate(gpu: Annotated[Optional[str], typer.Option(autocompletion=complete_gpu)] = None,
                 precision: Annotated[str, typer.Option(autocompletion=complete_precision)] = "bf16") -> None:
        pass

    @app.command()
    def other() -> None:
        pass

    def complete(words: str) -> list[str]:
        """What bash gets for the command line ``words`` (a trailing space: complete a new word)."""
        env = {"_GPUCOST_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
        result = CliRunner().invoke(app, [], env=env, prog_name="gpucost")
        assert result.exit_code == 0, result.output
        return result.output.split()

    assert complete("gpucost estimate --gpu h") == complete_gpu("h")
    assert complete("gpucost estimate --precision ") == ["bf16", "fp16", "fp8", "tf32", "fp32"]


def test_completion_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, estimator.completion as c; c.complete_gpu('h'); c.complete_model('');"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
