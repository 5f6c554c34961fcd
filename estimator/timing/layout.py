"""A parallel layout of a training run (Megatron-LM / Llama 3 style) and the candidates the step
model searches.

Devices = TP x CP x PP x DP. Ranks are ordered TP fastest, then CP, then PP, then DP (Llama 3,
arXiv 2407.21783 section 3.3.2: "[TP, CP, PP, DP]"); expert-parallel ranks are carved out of the
data-parallel ranks next to CP (Megatron-Core's ``tp-cp-ep-dp-pp``), so EP divides DP. A group of
ranks with stride ``k`` (the product of the faster dimensions) and size ``g`` stays inside a node
of ``G`` accelerators when ``k x g <= G``; otherwise it spans nodes with ``max(1, G / k)`` members
on each.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from estimator.errors import InputError
from estimator.vocab import RECOMPUTE_MODES, ZERO_STAGES


@dataclass(frozen=True, slots=True)
class Layout:
    """How one optimizer step of ``global_batch`` sequences is split over the devices."""

    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int
    context_parallel: int = 1
    expert_parallel: int = 1
    micro_batch: int = 1
    global_batch: int = 1
    recompute: str = "none"
    zero_stage: int = 1
    sequence_parallel: bool = True  # Megatron sequence parallelism whenever TP > 1
    virtual_stages: int = 1  # interleaved pipeline chunks per rank (Narayanan et al. 2021 section 2.2.2)

    def __post_init__(self) -> None:
        for name in ("tensor_parallel", "pipeline_parallel", "data_parallel", "context_parallel", "expert_parallel",
                     "micro_batch", "global_batch", "virtual_stages"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"layout.{name} must be a positive integer, got {value!r}")
        if self.recompute not in RECOMPUTE_MODES:
            raise InputError(f"layout.recompute must be one of {', '.join(RECOMPUTE_MODES)}, got {self.recompute!r}")
        if self.zero_stage not in ZERO_STAGES:
            raise InputError(f"layout.zero_stage must be 0-3, got {self.zero_stage!r}")
        if self.data_parallel % self.expert_parallel:
            raise InputError(f"--expert-parallel ({self.expert_parallel}) must divide the data-parallel size "
                             f"({self.data_parallel})")
        if self.global_batch % (self.data_parallel * self.micro_batch):
            raise InputError(f"--global-batch ({self.global_batch}) must be a multiple of data-parallel x micro-batch "
                             f"({self.data_parallel} x {self.micro_batch})")

    @property
    def num_devices(self) -> int:
        return self.tensor_parallel * self.context_parallel * self.pipeline_parallel * self.data_parallel

    @property
    def num_micro_batches(self) -> int:
        """Micro-batches each pipeline runs per step: global batch / (DP x micro-batch)."""
        return self.global_batch // (self.data_parallel * self.micro_batch)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return describe_layout(self.to_dict())


def describe_layout(layout: dict[str, Any]) -> str:
    """``TP 8 x PP 16 x DP 64, micro-batch 1 of 2,048, recompute none, ZeRO 1`` (CP/EP when > 1)."""
    parts = [f"TP {layout['tensor_parallel']}"]
    if layout.get("context_parallel", 1) > 1:
        parts.append(f"CP {layout['context_parallel']}")
    parts.append(f"PP {layout['pipeline_parallel']}")
    parts.append(f"DP {layout['data_parallel']}")
    text = " x ".join(parts)
    if layout.get("expert_parallel", 1) > 1:
        text += f" (EP {layout['expert_parallel']})"
    if layout.get("virtual_stages", 1) > 1:
        text += f", {layout['virtual_stages']} chunks per stage"
    return (text + f", micro-batch {layout['micro_batch']} of {layout['global_batch']:,}, recompute "
            f"{layout['recompute']}, ZeRO {layout['zero_stage']}")


def group_span(stride: int, size: int, per_node: int) -> tuple[bool, int]:
    """(inside one node?, members per node) of a group of ``size`` ranks ``stride`` apart on nodes
    of ``per_node`` accelerators."""
    if size <= 1:
        return True, 1
    if stride * size <= per_node:
        return True, size
    return False, max(1, min(size, per_node // stride))


def _divisors(n: int, limit: int | None = None) -> list[int]:
    out = []
    k = 1
    while k * k <= n:
        if n % k == 0:
            out.append(k)
            if k != n // k:
                out.append(n // k)
        k += 1
    return sorted(d for d in out if limit is None or d <= limit)


def tensor_sizes(num_heads: int, num_kv_heads: int, per_node: int) -> list[int]:
    """TP sizes within a node that split the query heads and the KV heads (or replicate KV heads
    when TP exceeds them, as Megatron does for GQA)."""
    return [t for t in (1, 2, 4, 8, 16) if t <= per_node and num_heads % t == 0
            and (num_kv_heads % t == 0 or t % num_kv_heads == 0)]


def candidates(*, num_devices: int, num_layers: int, num_heads: int, num_kv_heads: int, seq_len: int,
               global_batch: int, per_node: int, num_experts: int | None, fixed: dict[str, Any],
               micro_batches: tuple[int, ...] = (1, 2, 4, 8)) -> Iterator[Layout]:
    """Every layout worth timing for these sizes; a size in ``fixed`` (a request field name) is held.

    TP: within a node, dividing heads; PP: dividing the layers (at most 128 stages); CP: 1, or for
    sequences of 16K tokens and more a power of two up to 32 dividing the sequence; EP: a power of
    two dividing the experts and the data-parallel size; micro-batch 1, 2, 4, 8 or ``micro_batches`` (dividing the
    sequences per data-parallel rank); recompute none/selective/full; ZeRO 1 (the distributed
    optimizer), 0 and 3; with PP > 1, 1, 2 or 4 interleaved chunks per stage (at least one layer
    each), or the ``virtual_stages`` given.
    """
    tps = [fixed["tensor_parallel"]] if fixed.get("tensor_parallel") else tensor_sizes(num_heads, num_kv_heads, per_node)
    pps = [fixed["pipeline_parallel"]] if fixed.get("pipeline_parallel") else _divisors(num_layers, 128)
    if fixed.get("context_parallel"):
        cps = [fixed["context_parallel"]]
    else:
        cps = [1] + ([c for c in (2, 4, 8, 16, 32) if seq_len % c == 0] if seq_len >= 16384 else [])
    recomputes = [fixed["recompute"]] if fixed.get("recompute") else list(RECOMPUTE_MODES)
    zeros = [fixed["zero_stage"]] if fixed.get("zero_stage") is not None else [1, 0, 3]
    for t in tps:
        for c in cps:
            for p in pps:
                if num_devices % (t * c * p):
                    continue
                d = num_devices // (t * c * p)
                if global_batch % d:
                    continue
                per_rank = global_batch // d
                if fixed.get("micro_batch"):
                    micros = [fixed["micro_batch"]] if per_rank % fixed["micro_batch"] == 0 else []
                else:
                    micros = [b for b in micro_batches if per_rank % b == 0]
                if fixed.get("expert_parallel"):
                    eps = [fixed["expert_parallel"]] if d % fixed["expert_parallel"] == 0 else []
                elif num_experts:
                    eps = [e for e in (1, 2, 4, 8, 16, 32, 64, 128, 256) if num_experts % e == 0 and d % e == 0]
                else:
                    eps = [1]
                # interleaved chunks need at least one layer each (uneven stages take ceil(L / p))
                if fixed.get("virtual_stages"):
                    chunks = [fixed["virtual_stages"]] if -(-num_layers // p) >= fixed["virtual_stages"] else []
                else:
                    chunks = [1] + [v for v in (2, 4) if p > 1 and -(-num_layers // p) >= v]
                for e in eps:
                    for b in micros:
                        for r in recomputes:
                            for z in zeros:
                                for v in chunks:
                                    yield Layout(tensor_parallel=t, pipeline_parallel=p, data_parallel=d,
                                                 context_parallel=c, expert_parallel=e, micro_batch=b,
                                                 global_batch=global_batch, recompute=r, zero_stage=z,
                                                 sequence_parallel=t > 1 and fixed.get("sequence_parallel") is not False,
                                                 virtual_stages=v)


__all__ = ["Layout", "candidates", "describe_layout", "group_span", "tensor_sizes"]
