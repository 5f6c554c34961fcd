"""gpucost estimator: training compute, time and cost from arithmetic and catalogs. No torch here.

    >>> from estimator import estimate
    >>> est = estimate(params="175B", tokens="300B", gpu="a100", num_gpus=1024, tflops=80)
    >>> round(est.wall_clock_days, 1)
    44.5
"""

from __future__ import annotations

__version__ = "0.2.0"

from estimator.catalog.records import Accelerator, Model, Price, Run
from estimator.catalog.core import Catalog, load_catalog
from estimator.compare import CompareRow, compare
from estimator.errors import CatalogError, GpucostError, InputError, UnknownNameError
from estimator.estimate import Estimate, Range, estimate
from estimator.plan import Plan
from estimator.model.flops import train_flops_6nd
from estimator.numbers import parse_quantity
from estimator.request import EstimateRequest
from estimator.timing.throughput import Throughput, ThroughputKind
from estimator.vocab import FlopsMethod, TimeModel
from estimator.workload import Workload, workload



def __getattr__(name: str):
    """``validate`` loads on first use (PEP 562): the back-test's records cost a cold ``gpucost estimate``
    start-up time it does not need (benchmarks/cold_start.py). The other public names are imported
    above: ``estimate``, ``compare`` and ``workload`` are also submodules, whose import would
    rebind the package attribute a lazy look-up had not yet set."""
    if name == "validate":
        from estimator.validation.runs import validate

        globals()["validate"] = validate
        return validate
    raise AttributeError(f"module 'estimator' has no attribute {name!r}")


__all__ = [
    "Accelerator", "Catalog", "CatalogError", "CompareRow", "Estimate", "EstimateRequest",
    "FlopsMethod", "GpucostError", "InputError", "Model", "Plan", "Price", "Range", "Run", "Throughput",
    "ThroughputKind", "TimeModel", "UnknownNameError", "Workload", "__version__", "compare", "estimate",
    "load_catalog", "parse_quantity", "train_flops_6nd", "validate", "workload",
]
