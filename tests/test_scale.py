"""The step model's at-scale terms: NCCL's ring latency, per-layer ZeRO-3 collectives and their
prefetch, the data-parallel gradient's bytes on the wire, and stragglers (docs/scale.md)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from estimator.catalog.core import load_catalog
from estimator.model.hf_config import load_architecture
from estimator.timing.layout import Layout
from estimator.timing.comm import NCCL_BASE_LATENCY_S, NCCL_NET_HOP_S, NCCL_NVLINK_HOP_S, SLOW_HOST_EXCESS, SLOW_HOST_SHARE, _collective, links_for, ring_latency_s, sharded_exposed_s, straggler_factor
from estimator.timing.roofline import Constants, shape_of
from estimator.timing.step import time_layout


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
    assert straggler_factor(1) == 1.0  # one host waits for no other
    # MegaScale's 12,288 GPUs are 1,536 hosts: a slow one is all but certain; against one host's own
    # expected step (slow with the same probability) the stretch is the excess less that share
    assert straggler_factor(1536) == pytest.approx(
        1 + SLOW_HOST_EXCESS * (1 - (1 - SLOW_HOST_SHARE) ** 1536 - SLOW_HOST_SHARE))
    assert straggler_factor(1536) > 1 + 0.98 * SLOW_HOST_EXCESS
    factors = [straggler_factor(k) for k in (1, 8, 32, 128, 512, 2048)]
    assert factors == sorted(factors)
    assert straggler_factor(32, slow_host_share=0.0) == 1.0


@pytest.fixture(scope="module")
def llama70_shape():
    return shape_of(load_architecture("llama-3.1-70b"), 4096)


def _zero3(num_devices: int, tp: int = 8) -> Layout:
    return Layout(tensor_parallel=tp, pipeline_parallel=1, data_parallel=num_devices // tp, micro_batch=1,
                  global_batch=num_devices // tp * 4, recompute="full", zero_stage=3)


def test_zero3_per_layer_collectives_pay_one_latency_per_layer(dgx_a100, llama70_shape):
    catalog, acc, links = dgx_a100
    layout = _zero3(512)  # DP 64, one member per node (TP 8 fills it), 80 layers, 4 micro-batches
    # no blanket overlap on either path, so that only the collectives' count differs
    flat = Constants(dp_overlap=0.0)
    per_layer = time_layout(llama70_shape, layout, acc, "bf16", links, constants=flat)
    whole = time_layout(llama70_shape, layout, acc, "bf16", links, sharded_per_layer=False, constants=flat)
    layers, m = 80, layout.num_micro_batches
    ring = ring_latency_s("all_gather", 64, 1)  # the reduce-scatter ring has the same steps
    # both: the gradients' reduce-scatter and an all-gather for every micro-batch's forward and backward (no
    # gather after the step: the next forward gathers the weights), the same bytes; per layer each pays L rings
    expected = (layers - 1) * ring + 2 * m * (layers - 1) * ring
    extra = per_layer.breakdown_s["data_parallel"] - whole.breakdown_s["data_parallel"]
    assert extra == pytest.approx(expected, rel=0.02)


def test_zero3_moves_two_gathers_per_micro_batch_and_one_reduce_scatter_per_step(dgx_a100, llama70_shape):
    # ZeRO 3 (FSDP FULL_SHARD, DeepSpeed stage 3) gathers each layer's weights before its forward and again
    # before its backward, and reduce-scatters its gradients; the optimizer updates the local shard, so no
    # gather follows the step (Rajbhandari et al. 2020 section 5.3, 1.5x data parallelism's volume: 3 x the
    # parameters' bytes for 2 gathers and 1 reduce-scatter). Exposed, one micro-batch:
    catalog, acc, links = dgx_a100
    layout = Layout(tensor_parallel=8, pipeline_parallel=1, data_parallel=64, micro_batch=1, global_batch=64,
                    recompute="full", zero_stage=3)
    step = time_layout(llama70_shape, layout, acc, "bf16", links, constants=Constants(dp_overlap=0.0),
                       grad_reduce_bytes=2, prefetch=False)
    params = llama70_shape.total_params / 8
    gather = _collective("all_gather", params * 2, 64, False, 1, links, chunks=80)
    scatter = _collective("reduce_scatter", params * 2, 64, False, 1, links, chunks=80)
    assert step.breakdown_s["data_parallel"] == pytest.approx(2 * gather + scatter, rel=1e-9)


def test_zero2_reduces_per_layer_only_when_the_stack_does(dgx_a100, llama70_shape):
    catalog, acc, links = dgx_a100
    layout = Layout(tensor_parallel=8, pipeline_parallel=1, data_parallel=64, micro_batch=1, global_batch=64,
                    recompute="full", zero_stage=2)
    flat = Constants(dp_overlap=0.0)  # no blanket overlap on either path: only the collectives' count differs
    bucketed = time_layout(llama70_shape, layout, acc, "bf16", links, constants=flat)
    layered = time_layout(llama70_shape, layout, acc, "bf16", links, zero2_per_layer=True, constants=flat)
    ring = ring_latency_s("reduce_scatter", 64, 1)
    tree = links.latency_inter_s * math.log2(64)  # the bucketed all-reduce's latency
    assert layered.breakdown_s["data_parallel"] - bucketed.breakdown_s["data_parallel"] == pytest.approx(
        2 * 80 * ring - tree, rel=0.02)


def test_prefetch_shows_only_the_first_layer_when_compute_is_longer():
    # every layer's collectives shorter than its compute: only the first layer's show, once per pass
    assert sharded_exposed_s(1.0, 2.0, 10, forward_s=5.0, backward_s=10.0, micro_batches=3, zero_stage=3) == \
        pytest.approx(3 * 1.0 + 3 * (2.0 + 1.0))
    # no compute to hide behind: all of it shows
    assert sharded_exposed_s(1.0, 2.0, 10, forward_s=0.0, backward_s=0.0, micro_batches=3, zero_stage=3) == \
        pytest.approx(3 * 10 * 1.0 + 3 * 10 * 3.0)
    # ZeRO 2 gathers the updated weights once per step, and reduce-scatters every micro-batch
    assert sharded_exposed_s(1.0, 2.0, 10, forward_s=0.0, backward_s=0.0, micro_batches=3, zero_stage=2) == \
        pytest.approx(10 * 1.0 + 3 * 10 * 2.0)


def test_prefetch_never_makes_a_step_slower(dgx_a100, llama70_shape):
    catalog, acc, links = dgx_a100
    for devices in (64, 512, 2048):
        layout = _zero3(devices)
        exposed = time_layout(llama70_shape, layout, acc, "bf16", links)
        overlapped = time_layout(llama70_shape, layout, acc, "bf16", links, prefetch=True)
        assert overlapped.step_time_s <= exposed.step_time_s
        assert math.isfinite(overlapped.step_time_s) and overlapped.step_time_s > 0


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
    """On by default: a synchronous step across hosts waits for the slowest (docs/scale.md)."""
    catalog, acc, links = dgx_a100
    layout = _zero3(1024)
    plain = time_layout(llama70_shape, layout, acc, "bf16", links, stragglers=False)
    slow = time_layout(llama70_shape, layout, acc, "bf16", links)
    stretch = straggler_factor(1024 // 8)
    assert "stragglers" not in plain.breakdown_s
    assert slow.breakdown_s["stragglers"] == pytest.approx(
        (plain.breakdown_s["compute"] + plain.breakdown_s.get("tensor_parallel", 0.0)) * (stretch - 1), rel=1e-6)
    assert slow.step_time_s == pytest.approx(plain.step_time_s + slow.breakdown_s["stragglers"], rel=1e-9)


def test_every_published_stack_row_cites_its_source_and_converts_its_metric_to_seconds():
    from pathlib import Path

    from estimator.catalog.fields import load_yaml_file

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "stack_runs.yaml"
    rows = load_yaml_file(path, label=path.name)["rows"]
    assert len({row["id"] for row in rows}) == len(rows)
    for row in rows:
        assert row["split"] in ("train", "holdout") and row["stack"] in ("megatron", "deepspeed", "fsdp", "hf")
        assert row["source"] and row["quote"], row["id"]
        assert bool(row.get("model")) != bool(row.get("hf_config")), row["id"]
        if row.get("hf_config"):
            assert (path.parents[1] / row["hf_config"]).is_file(), row["id"]
        assert row["global_batch"] % (row["micro_batch"] * row["data_parallel"]) == 0, row["id"]
        assert row["tensor_parallel"] * row["pipeline_parallel"] * row["context_parallel"] * row["data_parallel"] \
            == row["num_gpus"], row["id"]
        metric, value = row["reported"]["metric"], row["reported"]["value"]
        tokens = row["global_batch"] * row["seq_len"]
        if "per GPU" in metric or "/GPU" in metric:  # tokens per second per GPU
            assert row["step_time_s"] == pytest.approx(tokens / (value * row["num_gpus"]), rel=1e-3), row["id"]
        elif "T/s" in metric or "Tokens Per Second" in metric:  # tokens per second in all
            assert row["step_time_s"] == pytest.approx(tokens / value, rel=1e-3), row["id"]
        elif "flops_per_iteration" in row["reported"]:  # TFLOP/s per device under the source's FLOPs per step
            flops = row["reported"]["flops_per_iteration"]
            assert row["step_time_s"] == pytest.approx(flops / (value * 1e12 * row["num_gpus"]), rel=1e-3), row["id"]
        else:  # an iteration time, as published
            assert row["step_time_s"] == pytest.approx(value), row["id"]


def test_unfused_gradient_accumulation_is_one_stream_pass_per_micro_batch(dgx_a100, llama70_shape):
    """DeepSpeed's pipeline engine adds each micro-batch's bf16 gradients into fp32 ones (12 B per
    parameter, catalogs/stacks.yaml): m passes over this device's parameters at the HBM stream rate,
    on every stage and in the bubble, and none where the matmul accumulates (Megatron's fusion)."""
    from estimator.timing.roofline import HBM_EFFICIENCY

    catalog, acc, links = dgx_a100
    layout = Layout(tensor_parallel=8, pipeline_parallel=4, data_parallel=8, micro_batch=1, global_batch=256,
                    recompute="full", zero_stage=1)
    fused = time_layout(llama70_shape, layout, acc, "bf16", links, stragglers=False)
    unfused = time_layout(llama70_shape, layout, acc, "bf16", links, grad_accumulation_bytes=12.0, stragglers=False)
    assert "gradient_accumulation" not in fused.breakdown_s
    params_here = llama70_shape.total_params / (8 * 4)
    per_micro_batch = params_here * 12.0 / (acc.memory_bandwidth_gbps * 1e9 * HBM_EFFICIENCY)
    m = layout.num_micro_batches
    assert unfused.breakdown_s["gradient_accumulation"] == pytest.approx(m * per_micro_batch)
    bubble = (4 - 1) * per_micro_batch  # the slowest stage's pass also stretches the pipeline's fill and drain
    assert unfused.step_time_s - fused.step_time_s == pytest.approx(m * per_micro_batch + bubble, rel=1e-6)


def test_the_stack_entry_sets_the_at_scale_terms_unless_the_caller_does(dgx_a100, llama70_shape):
    from estimator.catalog.stacks import load_stacks
    from estimator.timing.stacks import StackChoice

    catalog, acc, links = dgx_a100
    stacks = {s.id: s for s in load_stacks(catalog.directory)}
    layout = Layout(tensor_parallel=8, pipeline_parallel=1, data_parallel=64, micro_batch=1, global_batch=256,
                    recompute="full", zero_stage=1)
    fsdp = StackChoice(stacks["fsdp"])
    assert stacks["fsdp"].grad_reduce_bytes == 4  # FSDP's reduce_dtype fp32 (torchtitan, Composer DEFAULT)
    by_stack = time_layout(llama70_shape, layout, acc, "bf16", links, stack=fsdp)
    by_hand = time_layout(llama70_shape, layout, acc, "bf16", links, grad_reduce_bytes=4.0, zero2_per_layer=True)
    assert by_stack.breakdown_s["data_parallel"] == pytest.approx(by_hand.breakdown_s["data_parallel"])
    overridden = time_layout(llama70_shape, layout, acc, "bf16", links, stack=fsdp, grad_reduce_bytes=2.0)
    assert overridden.breakdown_s["data_parallel"] < by_stack.breakdown_s["data_parallel"]
    # the default stack keeps the step model's fitted convention (catalogs/layout_runs.yaml answers unchanged)
    megatron = time_layout(llama70_shape, layout, acc, "bf16", links, stack=StackChoice(stacks["megatron"]))
    assert megatron.step_time_s == time_layout(llama70_shape, layout, acc, "bf16", links).step_time_s


def test_validate_gives_each_stack_its_error_at_scale_train_and_held_out_apart():
    """gpucost validate back-tests the published steps at scale (catalogs/stack_runs_at_scale.yaml,
    from benchmarks/stack_runs.yaml) per stack, the rows read from papers (held out) apart from the
    projects' own documents (train), and apart from the one-device rows."""
    from estimator.validation.stack_runs import validate_stacks

    result = validate_stacks()
    at_scale = [r for r in result.rows if r.num_gpus > 1]
    assert max(r.num_gpus for r in at_scale) == 12288 and "stack_runs_at_scale.yaml" in result.files
    groups = {(s.stack, s.split): s for s in result.summaries if s.at_scale}
    assert {("megatron", "held_out"), ("deepspeed", "held_out"), ("deepspeed", "train"), ("fsdp", "train")} <= set(groups)
    for (stack, split), summary in groups.items():
        mine = [abs(r.time_error) for r in at_scale if r.stack == stack and r.split == split]
        assert summary.num_rows == len(mine) and summary.num_time_within_15pct == sum(e <= 0.15 for e in mine)
    assert all(not s.at_scale for s in result.summaries if s.stack == "hf")


def test_deepspeeds_schedule_has_megatrons_critical_path_plus_its_serial_transfers():
    """benchmarks/pipeline_schedules.py simulates DeepSpeed's TrainSchedule as written and Megatron's 1F1B:
    with free transfers both take the ideal (m + p - 1)(F + B); with transfers, DeepSpeed's two per exchange
    (receive, then send) cost more than Megatron's one batched exchange, which is what p2p_serial times."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "pipeline_schedules.py"
    spec = importlib.util.spec_from_file_location("pipeline_schedules", path)
    sim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sim)
    for stages, m in ((4, 8), (5, 12)):
        programs = {name: [make(s, stages, m) for s in range(stages)]
                    for name, make in (("ds", sim.deepspeed_program), ("mg", sim.megatron_program))}
        ideal = (m + stages - 1) * (1.0 + 3.0)
        assert sim.makespan(programs["ds"], 1.0, 3.0, 0.0) == pytest.approx(ideal)
        assert sim.makespan(programs["mg"], 1.0, 3.0, 0.0) == pytest.approx(ideal)
        ds, mg = (sim.makespan(programs[k], 1.0, 3.0, 0.1) for k in ("ds", "mg"))
        assert ideal < mg < ds
