"""Planning answers: devices for a deadline, tokens (or a compute-optimal size) for a budget.

Both invert the identity FLOPs = devices x seconds x achieved FLOP/s per device, with training
FLOPs = 6 x N x D (Kaplan et al. 2020). The compute-optimal split uses D ~ 20 N (Hoffmann et al.
2022, "Training Compute-Optimal Large Language Models", arXiv 2203.15556), so C = 6 N D = 120 N^2.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from .catalog import Catalog, load_catalog
from .errors import InputError
from .estimate import (DEFAULT_GPU, Estimate, Plan, Workload, estimate, resolve_params, resolve_price, throughput,
                       workload)
from .numbers import parse_duration_s, parse_quantity

CHINCHILLA_TOKENS_PER_PARAM = 20.0


def devices_for_deadline(flops: float, achieved_tflops: float, deadline_s: float) -> int:
    """Smallest device count that finishes ``flops`` within ``deadline_s`` at ``achieved_tflops`` each
    (perfect scaling assumed)."""
    return max(1, math.ceil(flops / (achieved_tflops * 1e12 * deadline_s) - 1e-9))


def chinchilla_for_flops(flops: float, tokens_per_param: float = CHINCHILLA_TOKENS_PER_PARAM) -> tuple[float, float]:
    """Compute-optimal (params, tokens) for ``flops``: D = r N and C = 6 N D, so N = sqrt(C / (6 r))."""
    params = math.sqrt(flops / (6.0 * tokens_per_param))
    return params, tokens_per_param * params


def plan_estimate(
    *,
    gpu: str | None = None,
    deadline: str | None = None,
    budget: float | str | None = None,
    chinchilla: bool = False,
    model: str | None = None,
    hf_config: str | Path | None = None,
    params: float | str | None = None,
    active_params: float | str | None = None,
    tokens: float | str | None = None,
    flops: float | str | None = None,
    flops_method: str = "6nd",
    seq_len: int | None = None,
    num_gpus: int | None = None,
    precision: str = "bf16",
    mfu: float | None = None,
    tflops: float | str | None = None,
    calibration: str | Path | None = None,
    price: float | str | None = None,
    provider: str | None = None,
    catalog: Catalog | None = None,
    **estimate_options: Any,
) -> Estimate:
    """An Estimate that also answers ``deadline`` (devices needed, e.g. "30d") and/or ``budget``
    (USD: the tokens it buys for the given model, or with ``chinchilla`` the compute-optimal
    parameters and tokens), with the throughput from ``calibration`` (a ``gpucost profile`` file,
    see :mod:`estimator.measured`) when given. ``gpu`` defaults to the calibration file's device,
    else ``DEFAULT_GPU``. Without a question it is a plain :func:`estimate`."""
    catalog = catalog or load_catalog()
    if chinchilla and budget is None:
        raise InputError("--chinchilla needs --budget (the money to spend)")
    if estimate_options.get("gpu_hours") is not None and (deadline or budget or calibration):
        raise InputError("--gpu-hours answers the inverse question; drop it with --deadline, --budget or --calibration")
    file_warnings: list[str] = []
    rate = None
    if calibration is not None:
        from .calibration import read_calibration
        from .measured import calibrated_throughput, device_accelerator

        if mfu is not None or tflops is not None:
            raise InputError("--calibration gives the throughput; drop --mfu/--tflops")
        record = read_calibration(calibration)
        acc = catalog.accelerator(gpu) if gpu else device_accelerator(record, catalog)
        model_id = resolve_params(model=model, params=None, active_params=None, hf_config=hf_config,
                                  catalog=catalog)[0] if (model or hf_config) else None
        rate, file_warnings, model_step = calibrated_throughput(
            record, acc, precision, num_gpus=2 if deadline is not None else (num_gpus or 1), model=model_id)
        if model_step:  # the measurement counted the detailed FLOPs; the time must divide the same count
            flops_method = "detailed"
            seq_len = seq_len or record["model"]["seq_len"]  # at the sequence length it was measured at
    else:
        acc = catalog.accelerator(gpu or DEFAULT_GPU)

    questions: dict[str, Any] = {}
    if budget is not None:
        rate = rate or throughput(acc, precision, mfu=mfu, tflops=tflops)
        budget_usd = parse_quantity(budget, what="--budget")
        usd_per_hour, _, _ = resolve_price(acc, price=price, provider=provider, catalog=catalog)
        if usd_per_hour is None:
            raise InputError(f"--budget needs a price for {acc.id}: give --price USD per device-hour or --provider")
        hours = budget_usd / usd_per_hour
        compute = hours * 3600.0 * rate.achieved_tflops * 1e12
        if tokens is not None or flops is not None:
            raise InputError("--budget answers the tokens; drop --tokens/--flops")
        if chinchilla:
            if model is not None or params is not None or hf_config is not None:
                raise InputError("--chinchilla chooses the model size; drop --model/--hf-config/--params")
            n, d = chinchilla_for_flops(compute)
            work = Workload(flops=compute, tokens=d, params=n, active_params=n,
                            flops_method="6 x params x tokens, compute-optimal D = 20 N (Hoffmann et al. 2022)")
        else:
            if model is None and params is None and hf_config is None:
                raise InputError("--budget needs the model (--model, --hf-config or --params), or --chinchilla")
            _, _, active, _ = resolve_params(model=model, params=params, active_params=active_params,
                                             hf_config=hf_config, catalog=catalog)
            work = workload(model=model, params=params, active_params=active_params, hf_config=hf_config,
                            tokens=compute / (6.0 * active), seq_len=seq_len, catalog=catalog)
        questions.update(budget_usd=budget_usd, budget_gpu_hours=hours, budget_flops=compute,
                         params=work.params, tokens=work.tokens)
        if rate.band_tflops is not None and not chinchilla:
            low, high = (work.tokens * t / rate.achieved_tflops for t in rate.band_tflops)
            questions.update(tokens_low=low, tokens_high=high)
        rate = dataclasses.replace(rate, band_tflops=None)  # the budget fixes the cost; the tokens vary
    else:
        work = workload(model=model, params=params, active_params=active_params, tokens=tokens, flops=flops,
                        flops_method=flops_method, seq_len=seq_len, hf_config=hf_config, catalog=catalog)
    if deadline is not None:
        if num_gpus is not None:
            raise InputError("--deadline answers the number of devices; drop --num-gpus")
        rate = rate or throughput(acc, precision, mfu=mfu, tflops=tflops)
        seconds = parse_duration_s(deadline)
        num_gpus = devices_for_deadline(work.flops, rate.achieved_tflops, seconds)
        questions.update(deadline_days=seconds / 86400.0, num_gpus_needed=num_gpus)
    question = " and ".join(q for q, on in (("deadline", deadline is not None), ("budget", budget is not None)) if on)
    if rate is not None:
        mfu = tflops = None
    est = estimate(work, acc, num_gpus=num_gpus, precision=precision, mfu=mfu, tflops=tflops, rate=rate,
                   price=price, provider=provider, plan=Plan(question=question, **questions) if question else None,
                   catalog=catalog, **estimate_options)
    return dataclasses.replace(est, warnings=tuple(file_warnings) + est.warnings) if file_warnings else est
