"""The step model's at-scale terms: NCCL's ring latency, per-layer ZeRO-3 collectives and their
prefetch, the data-parallel gradient's bytes on the wire, and stragglers (docs/scale.md)."""

from __future__ import annotations

import math

import pytest

from estimator.catalog import load_catalog
from estimator.hf_config import load_architecture
from estimator.layout import Layout
from estimator.step import (NCCL_BASE_LATENCY_S, NCCL_NET_HOP_S, NCCL_NVLINK_HOP_S, SLOW_HOST_EXCESS,
                            SLOW_HOST_SHARE, _collective, links_for, ring_latency_s, shape_of, straggler_factor,
                            time_layout)


@pytest.fixture(scope="module")
def dgx_a100():
    catalog = load_catalog()
    return catalog, catalog.accelerator("a100-sxm-80gb"), links_for(catalog.system_for("a100-sxm-80gb", None))


def test_ring_latency_is_nccls_base_plus_one_hop_per_step():
    # NVIDIA/nccl src/graph/tuning.cc: 2 nodes of 8 ranks, reduce-scatter: 15 steps, 1 of them between nodes
    assert ring_latency_s("reduce_scatter", 16, 8) == pytest.approx(
        NCCL_BASE_LATENCY_S + 14 * NCCL_NVLINK_HOP_S + 1 * NCCL_NET_HOP_S)
    # an all-reduce ring walks it twice
    assert ring_latency_s("all_reduce", 16, 8) == pytest.approx(
        NCCL_BASE_LATENCY_S + 28 * NCCL_NVLINK_HOP_S + 2 * NCCL_NET_HOP_S)
    assert ring_latency_s("all_gather", 1, 8) == 0.0


def test_all_gather_latency_grows_with_every_node_but_all_reduce_takes_the_tree(dgx_a100):
    _, _, links = dgx_a100
    tiny = 1024.0  # bytes: latency-bound
    gather = [_collective("all_gather", tiny, n, False, 1, links) for n in (16, 64, 256)]
    reduce = [_collective("all_reduce", tiny, n, False, 1, links) for n in (16, 64, 256)]
    # one rank per node: the ring's network hops grow linearly with the ranks
    assert gather[2] / gather[0] == pytest.approx(
        ring_latency_s("all_gather", 256, 1) / ring_latency_s("all_gather", 16, 1), rel=0.01)
    assert gather[2] > 10 * gather[0]
    # the all-reduce's tree grows with log2 of the ranks only
    assert reduce[2] / reduce[0] < 2.5
    assert reduce[2] < gather[2]


def test_a_collective_in_chunks_pays_the_latency_of_each_chunk(dgx_a100):
    _, _, links = dgx_a100
    size = 4e8
    one = _collective("all_gather", size, 64, False, 1, links)
    eighty = _collective("all_gather", size, 64, False, 1, links, chunks=80)
    assert eighty - one == pytest.approx(79 * ring_latency_s("all_gather", 64, 1), rel=1e-6)


def test_no_straggler_stretch_on_one_host_and_the_published_excess_at_thousands():
    assert straggler_factor(1) == pytest.approx(1 + SLOW_HOST_EXCESS * SLOW_HOST_SHARE)
    # MegaScale's 12,288 GPUs are 1,536 hosts: a slow one is all but certain
    assert straggler_factor(1536) == pytest.approx(1 + SLOW_HOST_EXCESS * (1 - (1 - SLOW_HOST_SHARE) ** 1536))
    assert straggler_factor(1536) > 1 + 0.99 * SLOW_HOST_EXCESS
    factors = [straggler_factor(k) for k in (1, 8, 32, 128, 512, 2048)]
    assert factors == sorted(factors)
    assert straggler_factor(32, slow_host_share=0.0) == 1.0


@pytest.fixture(scope="module")
def llama70_shape():
    return shape_of(load_architecture("llama-3.1-70b"), 4096)


def _zero3(num_devices: int, tp: int = 8) -> Layout:
    return Layout(tensor_parallel=tp, pipeline_parallel=1, data_parallel=num_devices // tp, micro_batch=1,
                  global_batch=num_devices // tp * 4, recompute="full", zero_stage=3)


def test_zero3_per_layer_gathers_cost_more_than_one_whole_model_gather(dgx_a100, llama70_shape):
    catalog, acc, links = dgx_a100
    layout = _zero3(512)
    per_layer = time_layout(llama70_shape, layout, acc, "bf16", links)
    whole = time_layout(llama70_shape, layout, acc, "bf16", links, zero3_gathers_per_layer=False)
    gathers = 2 * layout.num_micro_batches * 80  # forward and backward, every layer, every micro-batch
    extra = per_layer.breakdown_s["data_parallel"] - whole.breakdown_s["data_parallel"]
    assert extra == pytest.approx((gathers - 2 * layout.num_micro_batches) * ring_latency_s("all_gather", 64, 1),
                                  rel=0.05)


def test_zero3_prefetch_hides_gathers_but_never_more_than_all_of_them(dgx_a100, llama70_shape):
    catalog, acc, links = dgx_a100
    layout = _zero3(512)
    exposed = time_layout(llama70_shape, layout, acc, "bf16", links)
    half = time_layout(llama70_shape, layout, acc, "bf16", links, zero3_prefetch_overlap=0.5)
    full = time_layout(llama70_shape, layout, acc, "bf16", links, zero3_prefetch_overlap=1.0)
    assert full.step_time_s < half.step_time_s < exposed.step_time_s
    assert full.breakdown_s.get("data_parallel", 0.0) <= exposed.breakdown_s["data_parallel"]
    assert math.isfinite(full.step_time_s) and full.step_time_s > 0


def test_fp32_gradient_reduction_doubles_the_data_parallel_bytes(dgx_a100, llama70_shape):
    catalog, acc, links = dgx_a100
    layout = Layout(tensor_parallel=8, pipeline_parallel=1, data_parallel=64, micro_batch=1, global_batch=256,
                    recompute="full", zero_stage=1)
    bf16 = time_layout(llama70_shape, layout, acc, "bf16", links)
    fp32 = time_layout(llama70_shape, layout, acc, "bf16", links, grad_reduce_bytes=4.0)
    latency = links.latency_inter_s * math.log2(64)
    bf16_bytes_s = bf16.breakdown_s["data_parallel"] - latency
    assert fp32.breakdown_s["data_parallel"] - latency == pytest.approx(2 * bf16_bytes_s, rel=0.05)


def test_stragglers_stretch_compute_by_the_expected_slowest_host(dgx_a100, llama70_shape):
    catalog, acc, links = dgx_a100
    layout = _zero3(1024)
    plain = time_layout(llama70_shape, layout, acc, "bf16", links)
    slow = time_layout(llama70_shape, layout, acc, "bf16", links, stragglers=True)
    stretch = straggler_factor(1024 // 8)
    assert "stragglers" not in plain.breakdown_s
    assert slow.breakdown_s["stragglers"] == pytest.approx(
        (plain.breakdown_s["compute"] + plain.breakdown_s.get("tensor_parallel", 0.0)) * (stretch - 1), rel=1e-6)
    assert slow.step_time_s == pytest.approx(plain.step_time_s + slow.breakdown_s["stragglers"], rel=1e-9)
