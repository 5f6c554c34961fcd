"""The answer to a planning question (``--deadline``, ``--budget``): its own record, so that
resolve.py (which answers it) and estimate.py (which reports it) both import it from below."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Plan:
    """A planning question (``--deadline``, ``--budget``) and its answer. Unset fields are None."""

    question: str
    deadline_days: float | None = None
    num_gpus_needed: int | None = None
    budget_usd: float | None = None
    budget_gpu_hours: float | None = None
    budget_flops: float | None = None
    params: float | None = None
    tokens: float | None = None
    tokens_low: float | None = None  # what the budget buys at the slow end of the utilisation band
    tokens_high: float | None = None


__all__ = ["Plan"]
