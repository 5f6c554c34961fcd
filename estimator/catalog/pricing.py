"""Which price an estimate uses: ``--price``, a ``--provider``'s offer, or the catalog default."""

from __future__ import annotations

from dataclasses import dataclass

from estimator.catalog.records import Accelerator, Price
from estimator.catalog.core import Catalog


@dataclass(frozen=True, slots=True)
class PriceChoice:
    """USD per device-hour (None: no price known), where it came from, and the catalog row."""

    usd_per_gpu_hour: float | None
    source: str | None
    row: Price | None = None


def resolve_price(acc: Accelerator, *, price: float | None, provider: str | None, catalog: Catalog) -> PriceChoice:
    """The price for ``acc``: ``price`` as given, the cheapest offer of ``provider`` (or a price
    id), else the catalog's default offer, else no price (UnknownNameError for an unknown provider)."""
    if price is not None:
        return PriceChoice(price, "given (--price)")
    if provider is None and acc.id not in {a.id for a in catalog.accelerators}:
        return PriceChoice(None, None)  # a calibrated device that is not in the catalog
    row = catalog.price(acc.id, provider)
    if row is None:
        return PriceChoice(None, None)
    where = f"{row.provider} {row.offer}{(' ' + row.instance) if row.instance else ''}, observed {row.observed.isoformat()}"
    return PriceChoice(row.usd_per_gpu_hour, where + ("" if provider else " (catalog default)"), row)


__all__ = ["PriceChoice", "resolve_price"]
