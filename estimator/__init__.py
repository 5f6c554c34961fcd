"""gpucost estimator: training compute, time and cost from arithmetic and catalogs. No torch here.

    >>> from estimator import estimate
    >>> est = estimate(params="175B", tokens="300B", gpu="a100", num_gpus=1024, tflops=80)
    >>> round(est.wall_clock_days, 1)
    44.5
"""

from __future__ import annotations

__version__ = "0.2.0"

from .catalog import Accelerator, Catalog, Model, Price, Run, load_catalog
from .compare import CompareRow, compare
from .errors import CatalogError, GpucostError, InputError, UnknownNameError
from .estimate import Estimate, Plan, Range, estimate
from .flops import train_flops_6nd
from .numbers import parse_quantity
from .request import EstimateRequest
from .throughput import Throughput, ThroughputKind
from .validate import validate
from .vocab import FlopsMethod, TimeModel
from .workload import Workload, workload

__all__ = [
    "Accelerator", "Catalog", "CatalogError", "CompareRow", "Estimate", "EstimateRequest",
    "FlopsMethod", "GpucostError", "InputError", "Model", "Plan", "Price", "Range", "Run", "Throughput",
    "ThroughputKind", "TimeModel", "UnknownNameError", "Workload", "__version__", "compare", "estimate",
    "load_catalog", "parse_quantity", "train_flops_6nd", "validate", "workload",
]
