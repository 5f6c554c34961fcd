"""gpucost profiler: measure what the local device delivers and write a calibration file.

Needs torch (and nvidia-ml-py on NVIDIA GPUs): ``pip install ".[profile]"`` from the checkout, after
the torch build this machine needs (CPU or CUDA; docs/profile.md). The entry point is
:func:`profile` (what ``gpucost profile`` runs). Modules, one concept each: ``api`` (that entry
point), ``device`` (what device is this), ``nvml`` (the only pynvml user), ``telemetry``
(clock/power/throttle sampling), ``timing`` (how a kernel is timed), ``kernels`` (what is timed),
``model`` (a model's own training step), ``run`` (the sweep and the calibration record),
``progress`` (the stderr progress bar). The record's schema, and reading/writing it, live in
:mod:`estimator.records.calibration`.
"""

from profiler.api import profile

__all__ = ["profile"]
