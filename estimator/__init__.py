"""gpucost estimator: training compute, time and cost from arithmetic and catalogs. No torch here.

    >>> from estimator import workload, estimate
    >>> est = estimate(workload(params="175B", tokens="300B"), "a100", num_gpus=1024, tflops=80)
    >>> round(est.wall_clock_days, 1)
    44.5
"""

from __future__ import annotations

__version__ = "0.1.0"

from .catalog import Accelerator, Catalog, Model, Price, Run, load_catalog
from .errors import CatalogError, GpucostError, InputError, UnknownNameError
from .estimate import DEFAULT_MFU, MFU_BAND, Estimate, Range, Workload, estimate, workload
from .flops import train_flops_6nd
from .numbers import parse_quantity
from .plan import plan_estimate
from .validate import validate

__all__ = [
    "Accelerator", "Catalog", "CatalogError", "DEFAULT_MFU", "Estimate", "GpucostError", "InputError",
    "MFU_BAND", "Model", "Price", "Range", "Run", "UnknownNameError", "Workload", "__version__",
    "estimate", "load_catalog", "parse_quantity", "plan_estimate", "train_flops_6nd", "validate", "workload",
]
