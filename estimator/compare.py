"""``compare``: one estimate request answered on several accelerators (and price offers), cheapest
first, each on its own default system; accelerators that cannot hold the run are kept and marked."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from estimator.catalog.core import Catalog
from estimator.errors import InputError, UnknownNameError
from estimator.estimate import Estimate, estimate
from estimator.request import EstimateRequest


@dataclass(frozen=True, slots=True)
class CompareRow:
    """One accelerator (and offer) of a comparison. ``fits`` is False when no layout holds the run
    (``note`` says why); the time and cost fields are then None."""

    gpu: str
    fits: bool
    note: str | None
    price_usd_per_gpu_hour: float | None
    price_source: str | None
    peak_tflops: float | None
    mfu: float | None
    achieved_tflops_per_gpu: float | None
    wall_clock_days: float | None
    gpu_hours: float | None
    cost_usd: float | None
    time_model: str
    layout: dict[str, Any] | None
    system: str | None
    num_gpus: int
    flops: float
    flops_method: str
    throughput_source: str | None
    tokens: float | None = None  # trained; with a budget, the tokens it buys on this accelerator

    @property
    def layout_text(self) -> str:
        from estimator.timing.layout import describe_layout

        return describe_layout(self.layout) if self.layout else "-"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row(est: Estimate) -> CompareRow:
    return CompareRow(
        gpu=est.gpu, fits=True, note=None, price_usd_per_gpu_hour=est.price_usd_per_gpu_hour,
        price_source=est.price_source, peak_tflops=est.peak_tflops, mfu=est.mfu,
        achieved_tflops_per_gpu=est.achieved_tflops_per_gpu, wall_clock_days=est.wall_clock_days,
        gpu_hours=est.gpu_hours, cost_usd=est.cost_usd, time_model=est.time_model, layout=est.layout,
        system=est.system, num_gpus=est.num_gpus, flops=est.flops, flops_method=est.flops_method,
        throughput_source=est.throughput_source,
        tokens=est.plan.tokens if est.plan is not None and est.plan.budget_usd is not None else est.tokens)


def _offers(catalog: Catalog, acc_id: str, provider: str | None, all_offers: bool, named: bool) -> list:
    """The price offers to answer on: the default (or every one), or only ``provider``'s. An
    accelerator the provider does not offer is an error when it was named, else left out."""
    if provider is None:
        return catalog.prices_for(acc_id) if all_offers else [catalog.price(acc_id)]
    key = provider.strip().lower()
    offers = [p for p in catalog.prices_for(acc_id) if key in (p.provider.lower(), p.id.lower())]
    if not offers and named:
        catalog.price(acc_id, provider)  # raises UnknownNameError with the providers it has
    return offers if all_offers else offers[:1]


def compare(request: EstimateRequest, *, gpus: list[str] | None = None, all_offers: bool = False,
            device_counts: list[int] | None = None, catalog: Catalog) -> list[CompareRow]:
    """Answer ``request`` on each accelerator of ``gpus`` (default: every one with a dense peak for
    the precision), at each one's default price (or every offer with ``all_offers``), and for each
    of ``device_counts`` (default: the request's). The request's ``provider`` keeps only that
    provider's offers; its ``deadline_s`` and ``budget_usd`` are answered on each accelerator as
    ``estimate`` answers them (the devices needed; the tokens bought). One device count: sorted by
    cost (rows without a price, then rows that do not fit, last), with a budget by tokens bought;
    several: a scaling table, by accelerator then devices."""
    if request.gpu is not None:
        raise InputError("compare takes --gpu as the list of accelerators to compare")
    accs = [catalog.accelerator(g) for g in gpus] if gpus else [
        a for a in catalog.accelerators if a.peak_for(request.precision)]
    counts = device_counts or [request.num_gpus]
    rows: list[CompareRow] = []
    for acc in accs:
        offers = _offers(catalog, acc.id, request.provider, all_offers, named=bool(gpus))
        if request.provider is not None and not offers:
            continue
        for offer, count in ((o, n) for o in (offers or [None]) for n in counts):
            asked = request.with_(gpu=acc.id, provider=offer.id if offer else None, num_gpus=count)
            try:
                rows.append(_row(estimate(asked, catalog=catalog)))
            except UnknownNameError:
                raise
            except InputError as exc:
                if "does not fit" not in str(exc) and "no layout" not in str(exc):
                    raise
                rows.append(CompareRow(
                    gpu=acc.id, fits=False, note=str(exc), price_usd_per_gpu_hour=offer.usd_per_gpu_hour if offer else None,
                    price_source=None, peak_tflops=acc.peak_for(request.precision), mfu=None,
                    achieved_tflops_per_gpu=None, wall_clock_days=None, gpu_hours=None, cost_usd=None,
                    time_model="step", layout=None, system=None, num_gpus=count or 1, flops=0.0,
                    flops_method="", throughput_source=None))
    if not rows and request.provider is not None:
        raise UnknownNameError("provider", request.provider, {p.provider for p in catalog.prices})
    fitting = [r for r in rows if r.fits]
    if fitting:
        rows = [r if r.fits else CompareRow(**{**asdict(r), "flops": fitting[0].flops,
                                                "flops_method": fitting[0].flops_method}) for r in rows]
    if request.budget_usd is not None:  # each row spends the budget: the most tokens first
        rows.sort(key=lambda r: (not r.fits, r.tokens is None, -(r.tokens or 0.0)))
    elif len(counts) == 1:
        rows.sort(key=lambda r: (not r.fits, r.cost_usd is None, r.cost_usd or 0.0, r.wall_clock_days or 0.0))
    return rows


__all__ = ["CompareRow", "compare"]
