"""The communication side of the step model: the links a layout's groups span (Links, from the
system or a calibration file's collectives), one collective's time (latency + bytes x the
nccl-tests factor / bus bandwidth; NCCL's ring latency across nodes), ZeRO-3's per-layer exposure
and the straggler stretch (docs/scale.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from estimator.errors import InputError
LINK_EFFICIENCY = 0.77  # nccl-tests all-reduce busbw / NVLink per-direction bandwidth (A100: 232 / 300)
NETWORK_EFFICIENCY = 0.96  # nccl-tests across nodes / NIC line rate (400 Gb/s NIC: 48 of 50 GB/s)
LATENCY_INTRA_S = 20e-6  # one small collective inside a node (nccl-tests small-message time, NVLink)
LATENCY_INTER_S = 40e-6  # one small collective step across nodes (InfiniBand/RoCE)
# NCCL's own cost model of a collective (NVIDIA/nccl src/graph/tuning.cc, ncclTunerConstantsDefaults
# and ncclTopoTuneModel, commit 5067397c26, 2026-06): a ring of n ranks on k nodes takes
# baseLatency + (steps - inter_steps) x intra hop + inter_steps x network hop, with steps = n - 1 for
# all-gather and reduce-scatter (2(n - 1) for all-reduce) and inter_steps = k - 1 (2(k - 1)); NCCL has
# no tree for all-gather or reduce-scatter, so their latency grows with the ranks, not log2 of them.
NCCL_BASE_LATENCY_S = 8.4e-6  # baseLatencies, Ring, Simple protocol (the large-message protocol)
NCCL_NVLINK_HOP_S = 3.4e-6  # hwLatencies NVLINK, Ring, Simple
NCCL_NET_HOP_S = 14.0e-6  # hwLatencies NET, Ring, Simple
# Stragglers (Jiang et al. 2024, MegaScale, arXiv 2402.15627): "a minor fraction of machines
# (approximately 0.5%) exhibit substantially slower performance ... The training efficiency is
# predominantly determined by the slowest machine's performance" (section 5.1); "specific hosts took
# approximately 10% more time to execute the same forward computations compared to other ranks"
# (section 6.3). A synchronous step waits for its slowest host: with k hosts the chance that at least
# one is slow is 1 - (1 - share)^k, and the compute of the step stretches by the slow host's excess.
SLOW_HOST_SHARE = 0.005
SLOW_HOST_EXCESS = 0.10


@dataclass(frozen=True, slots=True)
class Links:
    """Bus bandwidths (GB/s) and latencies (s) of a system's two tiers, and where they came from."""

    per_node: int
    intra_allreduce_gbps: float
    intra_alltoall_gbps: float
    nic_gbps_per_gpu: float  # network bandwidth per accelerator, GB/s, x NETWORK_EFFICIENCY applied
    latency_intra_s: float = LATENCY_INTRA_S
    latency_inter_s: float = LATENCY_INTER_S
    source: str = ""

    def bandwidth(self, op: str, inside: bool, members_per_node: int) -> float:
        intra = self.intra_alltoall_gbps if op == "all_to_all" else self.intra_allreduce_gbps
        if inside:
            return intra
        if self.nic_gbps_per_gpu <= 0:
            raise InputError("this system has no network between nodes; use at most one node's accelerators")
        return min(intra, members_per_node * self.nic_gbps_per_gpu)


def links_for(system: Any, calibration: Any = None) -> Links:
    """The :class:`Links` of a systems.yaml entry, with measured figures from a calibration file's
    ``collectives`` section when it has them (estimator.records.collectives.link_figures)."""
    nvlink = system.scale_up_gbps
    intra_ar = system.scale_up_allreduce_busbw_gbps or nvlink * LINK_EFFICIENCY
    intra_a2a = system.scale_up_alltoall_busbw_gbps or intra_ar
    nics = system.scale_out_nics_per_node or 0
    nic = (nics * (system.scale_out_gbps_per_nic or 0) / 8.0 / system.accelerators_per_node) * NETWORK_EFFICIENCY
    source = (f"{system.id}: inside a node {intra_ar:g} GB/s all-reduce bus bandwidth "
              f"({'published nccl-tests' if system.scale_up_allreduce_busbw_gbps else f'{LINK_EFFICIENCY} x {nvlink:g} GB/s link'}), "
              + (f"across nodes {nic:.3g} GB/s per GPU ({nics} x {system.scale_out_gbps_per_nic:g} Gb/s per node x "
                 f"{NETWORK_EFFICIENCY})" if nics else "no network between nodes"))
    latency_intra, latency_inter = LATENCY_INTRA_S, LATENCY_INTER_S
    if calibration is not None and calibration.collectives:
        from estimator.records.collectives import link_figures

        figures = link_figures(calibration.collectives)
        measured = []
        if ("intra", "all_reduce") in figures:
            fig = figures[("intra", "all_reduce")]
            intra_ar, latency_intra = fig.busbw_gbps, fig.latency_s
            measured.append(fig.describe())
        if ("intra", "all_to_all") in figures:
            intra_a2a = figures[("intra", "all_to_all")].busbw_gbps
            measured.append(figures[("intra", "all_to_all")].describe())
        if ("inter", "all_reduce") in figures:  # one rank per node: what one GPU's share of the network moves
            fig = figures[("inter", "all_reduce")]
            nic, latency_inter = fig.busbw_gbps, fig.latency_s
            measured.append(fig.describe())
        if measured:
            source = f"{system.id}, with the calibration file's " + "; ".join(measured)
    return Links(system.scale_up_group, intra_ar, intra_a2a, nic, latency_intra, latency_inter, source)


def ring_latency_s(op: str, group: int, members_per_node: int) -> float:
    """NCCL's latency of one ring collective (Simple protocol) over ``group`` ranks placed
    ``members_per_node`` to a node: its base latency, an NVLink hop per step inside a node and a
    network hop per step between nodes (NVIDIA/nccl src/graph/tuning.cc; see ``NCCL_NET_HOP_S``)."""
    if group <= 1:
        return 0.0
    nodes = max(1, math.ceil(group / max(1, members_per_node)))
    twice = 2 if op == "all_reduce" else 1
    steps, inter_steps = twice * (group - 1), twice * (nodes - 1)
    return NCCL_BASE_LATENCY_S + (steps - inter_steps) * NCCL_NVLINK_HOP_S + inter_steps * NCCL_NET_HOP_S


def num_hosts(num_devices: int, per_node: int) -> int:
    """The hosts ``num_devices`` fill at ``per_node`` a host (the last may be partly used)."""
    return max(1, math.ceil(num_devices / max(1, per_node)))


def straggler_factor(num_nodes: int, slow_host_share: float = SLOW_HOST_SHARE,
                     slow_host_excess: float = SLOW_HOST_EXCESS) -> float:
    """The expected stretch of a synchronous step's compute by its slowest host, against one host's own
    expected step: each of ``num_nodes`` hosts is slow (``slow_host_excess`` more time) with probability
    ``slow_host_share``, and the step waits for the slowest, so 1 + excess x (P(at least one slow host)
    - P(one host is slow)) (MegaScale, sections 5.1 and 6.3): 1 on one host, which waits for no other."""
    hosts = max(1, num_nodes)
    return 1.0 + slow_host_excess * ((1.0 - (1.0 - slow_host_share) ** hosts) - slow_host_share)


def sharded_exposed_s(gather_s: float, scatter_s: float, layers: int, forward_s: float, backward_s: float,
                      micro_batches: int, zero_stage: int) -> float:
    """Seconds of sharded data-parallel traffic that show when each layer's collectives run beside the
    neighbouring layer's compute (FSDP's forward and backward prefetch; Zhao et al. 2023, arXiv 2304.11277,
    section 3.3): per pass over the layers, the first layer's collectives cannot hide and every other
    layer's show only where they are longer than a layer's compute.

    ``gather_s`` and ``scatter_s`` are one layer's all-gather (16-bit weights) and reduce-scatter
    (gradients); ``forward_s`` and ``backward_s`` one layer's compute per micro-batch. ZeRO-3 gathers
    every layer for every micro-batch's forward and again for its backward; ZeRO-2 gathers once per
    step (the updated weights); both reduce-scatter every layer's gradients every micro-batch."""
    def one_pass(comm: float, work: float) -> float:
        return comm + (layers - 1) * max(0.0, comm - work) if layers > 0 else 0.0

    forward_passes = micro_batches if zero_stage == 3 else 1
    backward_comm = scatter_s + (gather_s if zero_stage == 3 else 0.0)
    return forward_passes * one_pass(gather_s, forward_s) + micro_batches * one_pass(backward_comm, backward_s)


def _collective(op: str, size_bytes: float, group: int, inside: bool, per_node: int, links: Links,
                chunks: int = 1) -> float:
    """Seconds of one collective of ``size_bytes`` (the nccl-tests S) over ``group`` ranks, issued as
    ``chunks`` equal collectives (a per-layer ZeRO-3 gather, a gradient bucket): each pays the latency.

    Inside a node: the small-collective latency. Across nodes: all-gather and reduce-scatter have only
    rings in NCCL, whose latency grows with every rank and node (:func:`ring_latency_s`); an all-reduce
    has NCCL's tree and keeps ``latency_inter_s`` x log2 of the ranks (what the step model's constants
    were fitted with)."""
    if group <= 1 or size_bytes <= 0:
        return 0.0
    factor = {"all_reduce": 2 * (group - 1) / group, "p2p": 1.0}.get(op, (group - 1) / group)
    bw = links.bandwidth(op, inside, per_node) * 1e9
    if inside:
        latency = links.latency_intra_s
    elif op in ("all_gather", "reduce_scatter"):
        latency = ring_latency_s(op, group, per_node)
    else:  # all-reduce (NCCL's tree across nodes), all-to-all, point-to-point
        latency = links.latency_inter_s * max(1.0, math.log2(group))
    return max(1, chunks) * latency + size_bytes * factor / bw


#: the at-scale arguments of time_layout when neither the caller nor the stack's catalog entry sets them
#: (the step model's fitted convention: 16-bit gradients, ZeRO 3 per layer, ZeRO 2 bucketed, no prefetch)
SCALE_DEFAULTS = {"grad_reduce_bytes": 2.0, "sharded_per_layer": True, "zero2_per_layer": False, "prefetch": False,
                  "grad_accumulation_bytes": 0.0, "p2p_serial": False, "fp8_cast_bytes": None}


__all__ = ["LATENCY_INTER_S", "LATENCY_INTRA_S", "LINK_EFFICIENCY", "Links", "NCCL_BASE_LATENCY_S",
           "NCCL_NET_HOP_S", "NCCL_NVLINK_HOP_S", "NETWORK_EFFICIENCY", "SCALE_DEFAULTS", "SLOW_HOST_EXCESS",
           "SLOW_HOST_SHARE", "links_for", "num_hosts", "ring_latency_s", "sharded_exposed_s", "straggler_factor"]
