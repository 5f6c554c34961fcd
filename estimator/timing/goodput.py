"""Goodput: the share of wall-clock (and of device-hours) that trains, with its published sources.

The rest is lost to failures and restarts, checkpointing, evaluation and data stalls. Kept apart from
:mod:`estimator.timing.utilisation`, whose default MFU it completes, so that an estimate from the step
model reads it without loading the derivations (benchmarks/cold_start.py).
"""

from __future__ import annotations

DEFAULT_GOODPUT = 0.90
GOODPUT_SOURCES: tuple[tuple[str, str], ...] = (
    ("Llama 3 Herd of Models, arXiv 2407.21783, Section 3.3.4",
     "\"higher than 90% effective training time\" over a 54-day pre-training snapshot with 466 job "
     "interruptions (47 planned, 419 unexpected) on up to 16K H100 GPUs"),
    ("PaLM, arXiv 2204.02311, Appendix E and Section 4 (catalog run palm-540b)",
     "hours \"including some downtime and repeated steps\": 0.30 MFU implied vs 0.462 reported (ratio 0.66)"),
    ("BLOOM, arXiv 2211.05100, Section 3.5 (catalog run bloom-176b)",
     "1,082,990 GPU-hours imply 0.32 MFU vs the best measured 156 TFLOP/s = 0.50 (ratio 0.64)"),
    ("OPT model card and arXiv 2205.01068 Section 2.4 (catalog run opt-175b)",
     "~33 days of continuous training on 992 A100s imply 0.21 MFU vs 'up to 147 TFLOP/s' = 0.47 (ratio 0.45)"),
    ("Google Cloud blog, 'Introducing ML Productivity Goodput' (2024-04-10)",
     "goodput = scheduling x runtime x program goodput: the share of time making preserved training progress"),
)

__all__ = ["DEFAULT_GOODPUT", "GOODPUT_SOURCES"]
