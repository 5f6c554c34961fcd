"""Catalog integrity (after dstackai/gpuhunt's integrity tests) and broken-catalog errors."""

import pytest

from estimator.catalog.fields import DTYPES
from estimator.catalog.records import OFFERS
from estimator.catalog.core import load_catalog
from estimator.errors import CatalogError, UnknownNameError

CATALOG = load_catalog()
REQUIRED_GPUS = ["rtx-4090", "a100-sxm-40gb", "a100-sxm-80gb", "a100-pcie-80gb", "h100-sxm", "h100-pcie",
                 "h800-sxm", "h200-sxm", "b200", "l40s", "mi300x"]
REQUIRED_MODELS = ["gpt3-175b", "deepseek-v3", "llama-3.1-405b", "llama-3.1-70b", "llama-3.1-8b", "bert-base"]


def test_catalog_has_the_required_accelerators_and_models():
    ids = {a.id for a in CATALOG.accelerators}
    assert set(REQUIRED_GPUS) <= ids
    assert any(a.startswith("v100") for a in ids)
    assert set(REQUIRED_MODELS) <= {m.id for m in CATALOG.models}


@pytest.mark.parametrize("acc", CATALOG.accelerators, ids=lambda a: a.id)
def test_every_accelerator_has_positive_dense_peaks_and_a_source(acc):
    assert acc.peak_tflops and all(v > 0 for v in acc.peak_tflops.values())
    assert set(acc.peak_tflops) <= set(DTYPES)
    assert acc.memory_gb > 0 and acc.memory_bandwidth_gbps > 0 and acc.tdp_w > 0
    assert ("http" in acc.source or "arXiv" in acc.source) and acc.retrieved.year >= 2017
    # dense ordering sanity: lower precision is never slower than higher precision on one chip
    order = [d for d in ("fp32", "tf32", "bf16", "fp8", "fp4") if d in acc.peak_tflops]
    assert [acc.peak_tflops[d] for d in order] == sorted(acc.peak_tflops[d] for d in order)


def test_sparse_peaks_are_not_passed_off_as_dense():
    # Vendor sheets print 2x sparse figures: H100 SXM dense BF16 is 989.4 (1,979 sparse); MI300X dense FP16 1,307.4.
    assert CATALOG.accelerator("h100").peak_tflops["bf16"] == pytest.approx(989.4, rel=0.01)
    assert CATALOG.accelerator("mi300x").peak_tflops["fp16"] == pytest.approx(1307.4, rel=0.01)
    assert CATALOG.accelerator("a100").peak_tflops["bf16"] == 312


@pytest.mark.parametrize("price", CATALOG.prices, ids=lambda p: p.id)
def test_every_price_is_positive_dated_sourced_and_for_a_known_gpu(price):
    assert price.usd_per_gpu_hour > 0
    assert price.offer in OFFERS
    CATALOG.accelerator(price.accelerator)
    assert price.source and price.observed.year >= 2020


def test_each_accelerator_has_at_most_one_default_price_and_the_main_ones_have_one():
    for acc in ("h100", "a100", "h800", "h200"):
        assert CATALOG.price(CATALOG.accelerator(acc).id) is not None, acc


def test_slides_prices_are_in_the_catalog_and_marked_as_such():
    slide_rows = [p for p in CATALOG.prices if p.provider == "slides" or "slides" in (p.notes or "").lower()]
    assert slide_rows


def test_ids_and_aliases_are_unique():
    for records in (CATALOG.accelerators, CATALOG.prices, CATALOG.models, CATALOG.runs):
        ids = [r.id for r in records]
        assert len(ids) == len(set(ids))
    names = [n.lower() for a in CATALOG.accelerators for n in (a.id, *a.aliases)]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(("alias", "target"), [("a100", "a100-sxm-80gb"), ("h100", "h100-sxm"), ("4090", "rtx-4090"),
                                               ("H800", "h800-sxm"), ("gpt3", "gpt3-175b")])
def test_short_aliases_resolve_to_the_documented_entry(alias, target):
    found = CATALOG.model(alias) if alias == "gpt3" else CATALOG.accelerator(alias)
    assert found.id == target


@pytest.mark.parametrize(("driver_name", "expected"), [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"),
    ("NVIDIA A100-SXM4-40GB", "a100-sxm-40gb"), ("NVIDIA GeForce RTX 4090", "rtx-4090"),
    ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb"), ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA GeForce RTX 3050 Laptop GPU", None),
])
def test_device_names_from_the_driver_match_exactly_one_entry_or_none(driver_name, expected):
    found = CATALOG.match_device_name(driver_name)
    assert (found.id if found else None) == expected


@pytest.mark.parametrize("model", CATALOG.models, ids=lambda m: m.id)
def test_every_model_has_a_source_and_sane_sizes(model):
    assert model.source and model.params > 0
    assert model.params_active <= model.params
    assert model.training_tokens is None or model.training_tokens > 1e9


def test_unknown_names_list_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean 'h100'"):
        CATALOG.accelerator("h10")


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("gpus.yaml", "tdp_w: 700", "tdp_w: lots", "gpus.yaml: entry 'h100-sxm', field 'tdp_w'"),
        ("gpus.yaml", "memory_gb: 80", "memory_gbb: 80", "field 'memory_gbb': is not a known field"),
        ("prices.yaml", "accelerator: h800-sxm", "accelerator: h900", "prices.yaml: entry"),
        ("models.yaml", "schema_version: 1", "schema_version: 9", "models.yaml, field 'schema_version'"),
        ("gpus.yaml", "accelerators:", "accelerators: [", "gpus.yaml: invalid YAML"),
    ],
)
def test_a_broken_catalog_names_the_file_entry_and_field(broken_catalog, file, old, new, message):
    directory = broken_catalog(file, old, new)
    with pytest.raises(CatalogError) as info:
        load_catalog(directory)
    assert message in str(info.value)


def test_a_broken_catalog_is_one_error_line_from_the_cli(broken_catalog, monkeypatch, cli):
    monkeypatch.setenv("GPUCOST_CATALOG_DIR", str(broken_catalog("gpus.yaml", "tdp_w: 700", "tdp_w: -1")))
    result = cli("gpus")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: gpus.yaml: entry 'h100-sxm', field 'tdp_w': tdp_w must be positive")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(("written", "target"), [
    ("RTX 4090", "rtx-4090"), ("rtx_4090", "rtx-4090"), ("NVIDIA H100", "h100-sxm"), ("h100 sxm5", "h100-sxm"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("A100 SXM4 80GB", "a100-sxm-80gb"), ("AMD Instinct MI300X", "mi300x"),
    ("  H800  ", "h800-sxm"),
])
def test_a_gpu_written_with_spaces_or_a_vendor_word_is_found(written, target):
    assert CATALOG.accelerator(written).id == target


def test_no_loose_spelling_of_a_gpu_is_shared_by_two_accelerators():
    from estimator.catalog.core import loose_gpu_name

    owners: dict[str, set[str]] = {}
    for acc in CATALOG.accelerators:
        for name in (acc.id, *acc.aliases, *acc.device_names):
            owners.setdefault(loose_gpu_name(name), set()).add(acc.id)
    assert {k: v for k, v in owners.items() if len(v) > 1} == {}


def test_a_loose_spelling_of_an_unknown_gpu_still_gets_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean"):
        CATALOG.accelerator("H10 0X")
