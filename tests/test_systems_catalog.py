"""Integrity of catalogs/systems.yaml and catalogs/layout_runs.yaml (after dstackai/gpuhunt's
integrity tests), golden checks of layout rows against the papers' printed numbers, and the
errors a broken file gives."""

import datetime as dt
import math

import pytest

from estimator.catalog.fields import catalog_dir
from estimator.catalog.core import load_catalog
from estimator.errors import CatalogError
from estimator.catalog.systems import (FLOPS_CONVENTIONS, PRECISIONS, RECOMPUTE_MODES, SCALE_OUT_KINDS, SCALE_UP_KINDS, implied_step_time_s, korthikanti2022_model_flops, load_layout_runs, load_systems, matmul_params, narayanan2021_flops)

CATALOG = load_catalog()
SYSTEMS = load_systems(catalog_dir())
RUNS = load_layout_runs(catalog_dir())
BY_ID = {s.id: s for s in SYSTEMS}
RUN = {r.id: r for r in RUNS}
REQUIRED_SYSTEMS = ["dgx-a100-40gb", "dgx-a100-80gb", "dgx-h100", "hgx-h800", "hgx-h200", "hgx-b200",
                    "pcie4-server-a100-pcie-80gb", "aws-g6e-48xlarge", "pcie4-server-rtx-4090",
                    "mi300x-platform", "tpu-v4-slice", "tpu-v5p-slice"]
# Per-accelerator unidirectional link rates, GB/s (stas00/ml-engineering network/README.md NVLink
# and PCIe tables; H800: DeepSeek arXiv 2505.09343 Section 4.1, 400 GB/s bidirectional).
LINK_GBPS = {"nvlink2": 150, "nvlink3": 300, "nvlink4": 450, "nvlink4-h800": 200, "nvlink5": 900,
             "pcie4": 31, "pcie4-host": 31, "pcie5": 63}


# -- systems.yaml ----------------------------------------------------------------------------------


def test_the_required_node_types_are_present_and_ids_unique():
    ids = [s.id for s in SYSTEMS]
    assert len(ids) == len(set(ids))
    assert set(REQUIRED_SYSTEMS) <= set(ids)
    names = [n.lower() for s in SYSTEMS for n in (s.id, *s.aliases)]
    assert len(names) == len(set(names))


def test_every_accelerator_with_a_16_bit_peak_has_exactly_one_default_system():
    sixteen_bit = {a.id for a in CATALOG.accelerators if {"bf16", "fp16"} & set(a.peak_tflops)}
    defaults = [acc for s in SYSTEMS for acc in s.default_for]
    assert sorted(defaults) == sorted(set(defaults)), "an accelerator has two default systems"
    assert set(defaults) == sixteen_bit
    for system in SYSTEMS:
        assert set(system.default_for) <= {system.accelerator}


@pytest.mark.parametrize("system", SYSTEMS, ids=lambda s: s.id)
def test_every_system_is_sourced_dated_and_physically_plausible(system):
    assert ("http" in system.source or "arXiv" in system.source) and system.retrieved >= dt.date(2026, 1, 1)
    CATALOG.accelerator(system.accelerator)
    assert system.scale_up in SCALE_UP_KINDS and system.scale_out in SCALE_OUT_KINDS
    assert system.accelerators_per_node >= 1 and system.scale_up_gbps > 0
    # a measured bus bandwidth cannot beat the link it runs on (busbw GB/s vs the per-direction rate;
    # SHARP figures, which can, are kept in the notes)
    for busbw in (system.scale_up_allreduce_busbw_gbps, system.scale_up_alltoall_busbw_gbps):
        if busbw is not None:
            assert busbw <= system.scale_up_gbps
    # across nodes the same collective still crosses the scale-up link inside each node
    for outside, inside in ((system.scale_out_allreduce_busbw_gbps, system.scale_up_allreduce_busbw_gbps),
                            (system.scale_out_alltoall_busbw_gbps, system.scale_up_alltoall_busbw_gbps)):
        if outside is not None and inside is not None:
            assert outside <= inside
        if outside is not None:
            assert outside <= system.scale_up_gbps
    if system.scale_up in LINK_GBPS:
        assert system.scale_up_gbps == LINK_GBPS[system.scale_up]
    if system.scale_out in ("none", "ici"):
        assert system.scale_out_nics_per_node is None
    else:
        assert system.scale_out_gbytes_per_node > 0


def test_h800_and_the_4090_server_are_the_slow_links_they_should_be():
    assert BY_ID["hgx-h800"].scale_up_gbps < BY_ID["dgx-h100"].scale_up_gbps
    assert BY_ID["hgx-h800"].scale_out_gbytes_per_node == BY_ID["dgx-h100"].scale_out_gbytes_per_node == 400
    rtx = BY_ID["pcie4-server-rtx-4090"]
    assert rtx.scale_up == "pcie4-host" and rtx.scale_up_allreduce_busbw_gbps is None
    assert BY_ID["tpu-v5p-slice"].scale_up_group == 6144 and BY_ID["dgx-h100"].scale_up_group == 8


def test_measured_bus_bandwidths_match_the_nvidia_slides():
    # NVIDIA GTC24 S62129 / GTC25 S72583 "Collective Communication Bandwidth" and "All-to-all
    # Communication Bandwidth" slides (reproduced in stas00/ml-engineering network/): all-reduce
    # busbw within 8 GPUs A100 232, H100 370, B200 700; across 32 GPUs DGX A100 192, DGX H100 370;
    # all-to-all 8 GPUs A100 210, H100 320, B200 640; 32 GPUs DGX A100 24, DGX H100 48.
    a100, h100, b200 = BY_ID["dgx-a100-80gb"], BY_ID["dgx-h100"], BY_ID["hgx-b200"]
    assert (a100.scale_up_allreduce_busbw_gbps, h100.scale_up_allreduce_busbw_gbps,
            b200.scale_up_allreduce_busbw_gbps) == (232, 370, 700)
    assert (a100.scale_up_alltoall_busbw_gbps, h100.scale_up_alltoall_busbw_gbps,
            b200.scale_up_alltoall_busbw_gbps) == (210, 320, 640)
    assert (a100.scale_out_allreduce_busbw_gbps, h100.scale_out_allreduce_busbw_gbps) == (192, 370)
    assert (a100.scale_out_alltoall_busbw_gbps, h100.scale_out_alltoall_busbw_gbps) == (24, 48)


# -- layout_runs.yaml ------------------------------------------------------------------------------


def test_the_published_tables_are_all_there():
    tables = [r.source_table for r in RUNS]
    assert tables.count("narayanan2021-table1") == 10
    assert tables.count("korthikanti2022-table5") == 8
    assert tables.count("llama3-table4") == 3
    assert tables.count("deepseek-v3-sections-3.1-3.2") == 1
    assert len({r.id for r in RUNS}) == len(RUNS)


@pytest.mark.parametrize("run", RUNS, ids=lambda r: r.id)
def test_every_layout_row_is_consistent(run):
    assert run.tensor_parallel * run.pipeline_parallel * run.data_parallel * run.context_parallel == run.num_devices
    assert run.global_batch % ((run.micro_batch or 1) * run.data_parallel) == 0
    assert BY_ID[run.system].accelerator == run.accelerator
    assert run.precision in PRECISIONS and run.flops_convention in FLOPS_CONVENTIONS
    assert run.recompute is None or run.recompute in RECOMPUTE_MODES
    assert run.architecture is not None or None not in (run.num_layers, run.hidden_size, run.num_heads, run.vocab_size)
    assert ("http" in run.source or "arXiv" in run.source) and run.retrieved >= dt.date(2026, 1, 1)
    # the stored implied step time is what the row's own convention gives from its fields
    assert run.implied_step_time_s == pytest.approx(implied_step_time_s(run), rel=0.01)


# -- golden checks against the papers' printed numbers -----------------------------------------------


def test_narayanan_table1_rows_reproduce_the_printed_aggregate_throughput():
    # Narayanan et al. 2021 (arXiv 2104.04473) Table 1, as printed in the authors' README table
    # (NVIDIA/Megatron-LM images/cases_april2021.png): 1T model, 3072 GPUs, batch 3072, 163 TFLOP/s
    # per GPU, 52% of peak, 502.0 PFLOP/s aggregate; 145.6B: 1536 GPUs, 148 TFLOP/s, 227.1 PFLOP/s.
    one_t, mid = RUN["narayanan2021-1008b"], RUN["narayanan2021-145.6b"]
    assert (one_t.num_layers, one_t.hidden_size, one_t.num_heads) == (128, 25600, 160)
    assert (one_t.num_devices, one_t.global_batch, one_t.reported_tflops_per_device) == (3072, 3072, 163)
    assert (one_t.tensor_parallel, one_t.pipeline_parallel) == (8, 64)
    assert one_t.reported_tflops_per_device * one_t.num_devices / 1e3 == pytest.approx(502.0, rel=0.005)
    assert one_t.reported_tflops_per_device / CATALOG.accelerator("a100-sxm-80gb").peak_tflops["fp16"] == pytest.approx(0.52, abs=0.005)
    assert mid.reported_tflops_per_device * mid.num_devices / 1e3 == pytest.approx(227.1, rel=0.005)
    # Eq. 3 FLOPs over the implied step time give back the reported per-GPU throughput
    assert narayanan2021_flops(one_t) / (one_t.implied_step_time_s * one_t.num_devices) / 1e12 == pytest.approx(163, rel=0.01)
    # the 12 l h^2 parameter count of the 1T row is the printed 1008.0B (embeddings included)
    params = 12 * one_t.num_layers * one_t.hidden_size ** 2 + (one_t.vocab_size + one_t.seq_len) * one_t.hidden_size
    assert params / 1e9 == pytest.approx(1008.0, rel=0.001)


@pytest.mark.parametrize(("row", "seconds", "mfu"), [
    ("korthikanti2022-22b-selective", 1.10, 0.415),
    ("korthikanti2022-175b-selective", 13.75, 0.514),
    ("korthikanti2022-530b-selective", 37.83, 0.560),
    ("korthikanti2022-1t-selective", 71.49, 0.563),
])
def test_korthikanti_table5_times_reproduce_the_readme_mfu(row, seconds, mfu):
    # Korthikanti et al. 2022 (arXiv 2205.05198) Table 5 iteration times (as encoded in
    # calculon-ai/calculon calculon/llm/validation.py) and the NVIDIA/Megatron-LM README MFU table
    # (22B 41.5%, 175B 51.4%, 530B 56.0%, 1T 56.3%), A100 fp16 peak 312 TFLOP/s.
    run = RUN[row]
    assert run.reported_step_time_s == seconds and run.reported_mfu == mfu
    peak = CATALOG.accelerator(run.accelerator).peak_tflops["fp16"] * 1e12
    assert korthikanti2022_model_flops(run) / (seconds * run.num_devices * peak) == pytest.approx(mfu, rel=0.01)


def test_korthikanti_full_recompute_rows_are_slower_by_the_printed_times():
    # Table 5: full recompute 1.42 / 18.13 / 49.05 / 94.42 s against 1.10 / 13.75 / 37.83 / 71.49 s
    for size, full, selective in (("22b", 1.42, 1.10), ("175b", 18.13, 13.75), ("530b", 49.05, 37.83), ("1t", 94.42, 71.49)):
        assert RUN[f"korthikanti2022-{size}-full"].implied_step_time_s == full
        assert RUN[f"korthikanti2022-{size}-selective"].implied_step_time_s == selective
        assert RUN[f"korthikanti2022-{size}-full"].recompute == "full"
        assert RUN[f"korthikanti2022-{size}-selective"].sequence_parallel is True


def test_llama3_table4_rows():
    # Llama 3 (arXiv 2407.21783) Table 4: 8,192 GPUs TP 8 CP 1 PP 16 DP 64, seq 8,192, batch/DP 32,
    # 16M tokens per batch, 430 TFLOP/s per GPU, 43% BF16 MFU; long-context row CP 16, seq 131,072.
    run = RUN["llama3-405b-8k-8192gpu"]
    assert (run.tensor_parallel, run.context_parallel, run.pipeline_parallel, run.data_parallel) == (8, 1, 16, 64)
    assert run.global_batch == 64 * 32 and run.tokens_per_step == 2 ** 24
    peak = CATALOG.accelerator("h100-sxm").peak_tflops["bf16"]
    assert run.reported_tflops_per_device / peak == pytest.approx(0.43, abs=0.005)
    long = RUN["llama3-405b-128k-16384gpu"]
    assert long.tokens_per_step == run.tokens_per_step and long.context_parallel == 16
    assert long.data_parallel == 8  # the paper prints 4, inconsistent with its 16,384 GPUs and 16M tokens
    # the matmul weights from the row's shape are the 405B model less its 2.1B input embedding
    assert matmul_params(run) == pytest.approx(405.85e9 - 128256 * 16384, rel=0.001)


def test_deepseek_v3_row_matches_the_reported_gpu_hours():
    # DeepSeek-V3 (arXiv 2412.19437) Section 1 / Table 1: 180K H800 GPU-hours per trillion tokens,
    # 2,664K GPU-hours for 14.8T pre-training tokens, 2,048 GPUs ("3.7 days" per trillion tokens).
    run = RUN["deepseek-v3-pretrain"]
    assert run.reported_gpu_hours_per_trillion_tokens * 14.8 == pytest.approx(2664e3, rel=0.001)
    assert run.reported_gpu_hours_per_trillion_tokens / run.num_devices / 24 == pytest.approx(3.7, abs=0.05)
    assert (run.tensor_parallel, run.pipeline_parallel, run.expert_parallel, run.zero_stage) == (1, 16, 64, 1)
    assert run.precision == "fp8" and run.architecture == "deepseek-v3"
    tokens_per_gpu_s = run.tokens_per_step / (run.implied_step_time_s * run.num_devices)
    # ~343 TFLOP/s per GPU by 6 x 37e9 active parameters (the inverse question in shared/REFERENCE.md)
    assert 6 * 37e9 * tokens_per_gpu_s / 1e12 == pytest.approx(343, rel=0.01)
    assert not math.isnan(implied_step_time_s(run))


# -- broken files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("systems.yaml", "accelerator: h800-sxm", "accelerator: h900", "entry 'hgx-h800', field 'accelerator'"),
        ("systems.yaml", "default_for: [h20]", "default_for: [h100-sxm]", "field 'default_for'"),
        ("systems.yaml", "scale_up: nvlink4-h800", "scale_up: nvlink9", "field 'scale_up': must be one of"),
        ("systems.yaml", "scale_up_gbps: 200", "scale_up_gbbps: 200", "field 'scale_up_gbbps': is not a known field"),
        ("layout_runs.yaml", "data_parallel: 32", "data_parallel: 31", "entry 'narayanan2021-1.7b', field 'data_parallel'"),
        ("layout_runs.yaml", "system: dgx-a100-80gb", "system: dgx-h100", "field 'system'"),
        ("layout_runs.yaml", "implied_step_time_s: 3.528", "implied_step_time_s: 4.0", "field 'implied_step_time_s'"),
        ("layout_runs.yaml", "recompute: full", "recompute: most", "field 'recompute'"),
        ("layout_runs.yaml", "micro_batch: 16", "micro_batch: 15", "field 'global_batch'"),
    ],
)
def test_a_broken_file_names_the_file_entry_and_field(broken_catalog, file, old, new, message):
    directory = broken_catalog(file, old, new)
    with pytest.raises(CatalogError) as info:
        load_layout_runs(directory)
    assert file in str(info.value) and message in str(info.value)
