"""``profiler.profile()``: one call that does what ``gpucost profile`` does, for library users.

    >>> import profiler
    >>> record = profiler.profile("cpu", ["fp32"])            # about a minute; returns the calibration record
    >>> record["matmul"]["fp32"]["best_tflops"]

The record's schema, and writing it to a file, are in :mod:`estimator.records.calibration`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from estimator.model.arch import Architecture
from estimator.catalog.core import Catalog
from estimator.errors import InputError
from estimator.vocab import PROFILE_DTYPES

from profiler import run
from profiler.device import DeviceInfo, describe, free_memory_bytes, resolve_device
from profiler.run import Plan, Progress

# announce(device info, plan, model dtypes to be measured): called once before measuring starts
Announce = Callable[[DeviceInfo, Plan, Sequence[str]], None]


def profile(
    device: str = "auto",
    dtypes: Sequence[str] | None = None,
    *,
    full: bool = False,
    arch: Architecture | None = None,
    model_id: str | None = None,
    source: str | None = None,
    seq_len: int | None = None,
    micro_batch: int | None = None,
    max_layers: int | None = None,
    sweep: bool = False,
    catalog: Catalog | None = None,
    command: str = "profiler.profile()",
    progress: Progress | None = None,
    notes: Sequence[str] = (),
    announce: Announce | None = None,
    sustained_s: float | None = None,
) -> dict[str, Any]:
    """Measure ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and return the calibration record.

    Without ``arch``: the device sweep (quick, or ``full``) for ``dtypes`` (None: all the device
    supports). With ``arch`` (an :class:`estimator.model.arch.Architecture`): the model's own training
    step (:func:`profiler.model.profile_model`), plus the sweep when ``sweep`` or ``full``.
    ``catalog`` names the device and its peaks (None: reported as unknown). ``sustained_s``: the
    sustained window of each dtype's best matmul shape and MLP width (profiler/sustained.py; None:
    5 s on a GPU, 1 s on a CPU; 0: none).
    """
    if sustained_s is not None and (isinstance(sustained_s, bool) or not isinstance(sustained_s, (int, float))
                                    or not 0 <= sustained_s <= 3600):
        raise InputError(f"sustained_s must be a number of seconds from 0 to 3600, got {sustained_s!r}")
    if not isinstance(device, str):
        raise InputError(f"device must be a string such as 'cpu', 'cuda' or 'cuda:0', got {device!r}")
    if dtypes is not None:
        if isinstance(dtypes, str) or not all(isinstance(d, str) for d in dtypes):
            raise InputError(f"dtypes must be a list of names among {', '.join(PROFILE_DTYPES)}, got {dtypes!r}")
        unknown = [d for d in dtypes if d not in PROFILE_DTYPES]
        if unknown:
            raise InputError(f"unknown dtype {unknown[0]!r}; use one of {', '.join(PROFILE_DTYPES)}")
    if arch is not None and not isinstance(arch, Architecture):
        raise InputError(f"arch must be an estimator.model.arch.Architecture, got {type(arch).__name__}")
    if catalog is not None and not isinstance(catalog, Catalog):
        raise InputError(f"catalog must be an estimator.Catalog (load_catalog()), got {type(catalog).__name__}")
    torch_device = resolve_device(device)
    info = describe(torch_device, catalog)
    plan = run.make_plan(info, dtypes, full=full, free_bytes=free_memory_bytes(torch_device),
                         sweep=arch is None or sweep or full, sustained_s=sustained_s)
    job, measured = None, []
    if arch is not None:
        from profiler.model import check_supported, plan_dtypes, profile_model

        check_supported(arch)
        model_dtypes, model_skipped = plan_dtypes(info, dtypes)
        measured = [d for d in model_dtypes if d not in model_skipped]

        def job(step_progress: Any) -> dict[str, Any]:
            return profile_model(arch, model_id=model_id or arch.name, source=source, device=torch_device,
                                 dtype=model_dtypes, skipped=model_skipped, seq_len=seq_len,
                                 micro_batch=micro_batch, max_layers=max_layers, progress=step_progress)

    if announce is not None:
        announce(info, plan, measured)
    return run.run_profile(plan, torch_device, info, progress=progress, extra_notes=notes, model=job, command=command)
