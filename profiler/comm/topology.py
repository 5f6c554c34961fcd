"""Which process groups the collective benchmark measures, from the host name of every rank.

Pure Python (no torch), so the grouping can be tested with a faked topology:

- ``all``: every rank (always measured);
- ``intra``: with more than one node, the ranks sharing a host, one group per node (the scale-up
  link: NVLink, PCIe); all nodes' groups run at the same time, as tensor-parallel groups do;
- ``inter``: with more than one node, one rank per node: group ``j`` holds the ``j``-th rank of every
  node (nccl-tests' ``NCCL_TESTS_SPLIT=MOD<ranks per node>``), all ``j`` at the same time, so every
  NIC carries traffic as in data-parallel training (the scale-out link).

A node with a single rank has no intra-node group; with one rank per node the world group already
is the inter-node group and no separate one is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Group:
    """One process group: ``kind`` all | intra | inter, ``index`` within its kind, global ``ranks``."""

    kind: str
    index: int
    ranks: tuple[int, ...]
    host: str | None = None  # intra groups: the node's host name


@dataclass(frozen=True, slots=True)
class Topology:
    hosts: tuple[str, ...]  # host of each rank, rank order
    nodes: tuple[str, ...]  # distinct hosts, in order of their lowest rank
    groups: tuple[Group, ...]

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def kinds(self) -> tuple[str, ...]:
        """The group kinds measured, in measuring order (all, then intra, then inter)."""
        return tuple(dict.fromkeys(g.kind for g in self.groups))

    def group_of(self, kind: str, rank: int) -> Group | None:
        """The group of ``kind`` that ``rank`` belongs to, or None (it idles while that kind runs)."""
        return next((g for g in self.groups if g.kind == kind and rank in g.ranks), None)


def plan_groups(hosts: Sequence[str]) -> Topology:
    """The groups to measure for ranks whose host names are ``hosts`` (``hosts[r]`` is rank r's)."""
    if not hosts:
        raise ValueError("plan_groups needs the host of at least one rank")
    hosts = tuple(str(h) for h in hosts)
    nodes = tuple(dict.fromkeys(hosts))
    groups = [Group("all", 0, tuple(range(len(hosts))))]
    if len(nodes) > 1:
        per_node = {node: tuple(r for r, h in enumerate(hosts) if h == node) for node in nodes}
        groups += [Group("intra", i, ranks, node) for i, (node, ranks) in enumerate(
            (node, ranks) for node, ranks in per_node.items() if len(ranks) > 1)]
        depth = max(len(ranks) for ranks in per_node.values())
        if depth > 1:  # with one rank per node, "all" is the inter-node group already
            for j in range(depth):
                ranks = tuple(r[j] for r in per_node.values() if len(r) > j)
                if len(ranks) > 1:
                    groups.append(Group("inter", j, ranks))
    return Topology(hosts=hosts, nodes=nodes, groups=tuple(groups))
