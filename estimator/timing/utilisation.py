"""Default utilisation by kind of run, goodput, and what reported hours cover, derived from published runs.

A default estimate from parameters and tokens alone needs three numbers that a single "default MFU"
used to mix together:

1. **MFU while training** (``Utilisation.mfu``): model FLOPs (6 x active params x tokens) per second
   while the job is training, as a fraction of the accelerator's DENSE peak at the run's precision.
2. **Goodput** (``DEFAULT_GOODPUT``): the share of wall-clock (and of device-hours) that trains at all;
   the rest is lost to failures and restarts, checkpointing, evaluation and data stalls.
3. **Scope** (``SCOPE_OVERHEAD``): reported hours cover pre-training only (``scope: pretrain``) or all
   of training (``scope: all``: context extension, annealing, post-training, or a figure the source does
   not restrict to pre-training).

Kinds
-----
``run_kind(params, active_params, precision, peak_tflops=...)`` classifies a run by architecture
(``dense``, or ``moe`` when fewer parameters are active per token than the model has), precision class
(``16-bit``: bf16 and fp16, and tf32/fp32, which take the 16-bit fraction of their own lower peak as
:mod:`estimator.timing.throughput` does; ``fp8``), size class of the ACTIVE parameters (``<20B``, ``20-100B``,
``>100B``) and the accelerator's peak class: dense 16-bit peak ``<500`` or ``>=500`` TFLOP/s
(``PEAK_EDGE_TFLOPS``). That gives 2 x 2 x 3 x 2 = 24 kinds.

Why a peak class: the catalog's runs on A100 (312 TFLOP/s) and TPU v4 (275) imply a median MFU about
1.7 times that of the runs on H100 and H800 (989). The newer chips tripled the matmul peak while HBM
bandwidth grew 1.7x and NVLink 1.5x, so the memory-bound and communication share of a step grows, and
the largest achievable matmul is a smaller share of the peak (shared/REFERENCE.md section 3, "MAMF":
0.87 of the bf16 peak on A100 SXM, 0.80 on H100 SXM). Any edge between 312 and 989 splits the runs the
same way; 500 is a round number between them. Chips above it without runs of their own (H200, B200,
MI300X) take the H100-class figures because no published run says otherwise; for the MI300X, whose
largest achievable matmul is 0.51 of its peak, that is likely optimistic.

The rule (``derive_defaults``; ``RULE``)
----------------------------------------
- A run counts when it reports device-hours, or wall-clock days and a device count (device-hours =
  days x 24 x devices), and its scope. A ``scope: all`` run's hours are first divided by
  ``SCOPE_OVERHEAD`` (below) to pre-training hours, so both scopes describe the same quantity. Runs that
  report only a throughput are left out: their MFU is measured while training and omits lost time.
- Implied MFU on the 16-bit basis: ``m = 6 N D / (pre-training device-hours x 3600 x dense 16-bit
  peak)``. Pooling on one basis lets FP8 and 16-bit runs be compared; for an FP8 kind the value is
  converted to the FP8 peak by ``FP8_PEAK_RATIO`` (16-bit peak / FP8 peak, 0.5 on every catalog
  accelerator that has both), i.e. FP8 is credited with no speed-up over 16-bit unless FP8 runs show
  one. (DeepSeek-V3, the one FP8 pre-training, implies 0.35 of the BF16 peak, above its class.)
- Per kind: the median of ``m`` over the kind's runs when there are at least ``MIN_RUNS`` (4) of them;
  otherwise fall back to the first wider class that has ``MIN_RUNS``, keeping the peak class longest
  because it moves MFU most: (peak, arch, size, any precision) -> (peak, size, any architecture) ->
  (peak) -> all runs. The fallback and the count are stated in ``Utilisation.fallback_note`` and
  ``num_runs``.
- Goodput: reported device-hours include lost time, so the median implied MFU is an *effective* MFU.
  ``Utilisation.mfu`` is the MFU while training, ``effective / DEFAULT_GOODPUT``; an estimate applies
  goodput separately (device-hours = FLOPs / (mfu x goodput x peak x 3600)), so at the default goodput
  the product reproduces the runs' hours, and a user's ``--goodput`` or ``--mfu`` changes one factor.
- Band: for every counted run, the ratio of its ``m`` to the median its kind gets WITHOUT it (the same
  rule on the other runs: ``leave_one_out_ratios``). That is the error of a default on a run it was not
  derived from, which is the error a user's run meets; the in-sample ratio to a median that includes
  the run is narrower than the error on new runs. The ratios are pooled (no kind has enough runs to
  estimate its own tails) and the band is the kind's MFU x their ``BAND_QUANTILES`` (5th and 95th
  percentiles, linear interpolation between order statistics): a stated 90% band. A run of lower MFU
  takes longer: the printed device-hours range is FLOPs / (band_high ... band_low). ``gpucost
  validate`` prints the share of the catalog's runs inside their band; the hold-out
  (benchmarks/holdout_runs.py) measures it on runs the defaults never saw.
- Rounding: MFU, band ends, ``FP8_PEAK_RATIO`` and ``SCOPE_OVERHEAD`` to 3 decimals. ``DEFAULTS``
  holds the rounded results; tests/test_utilisation.py fails when ``derive_defaults(load_catalog())``
  differs.

Scope overhead
--------------
``SCOPE_OVERHEAD`` is the median of all/pretrain device-hours over the pre-trainings that are published
both ways (``derive_scope_overhead``: a ``pretrain`` and an ``all`` record with the same active
parameters, tokens and accelerator). DeepSeek-V3 publishes both in one table: 2,788K total / 2,664K
pre-training H800 GPU-hours = 1.047 (arXiv 2412.19437 Table 1). Meta's Llama 3 model cards give the
pre-training hours of the 8B and 70B (1.3M and 6.4M H100-hours, 15T tokens) and the Llama 3.1 cards,
for the same sizes, tokens and cluster, "the total GPU time required for training each model" (1.46M
and 7.0M): 1.123 and 1.094. (The 3.1 models are a later release, so the pairing assumes they repeat
the same pre-training; the cards give no other split.) Median of the three: 1.094.

Goodput
-------
``DEFAULT_GOODPUT = 0.90``: Llama 3 (arXiv 2407.21783, Section 3.3.4): "we achieved higher than 90%
effective training time ... The effective training time measures the time spent on useful training over
the elapsed time", over a 54-day snapshot of pre-training with 466 job interruptions (47 planned, 419
unexpected) on up to 16K H100s. Older or less automated runs did worse: PaLM's hours are "including some
downtime and repeated steps" and imply 0.30 MFU against the 0.462 it reports while training (ratio
0.66); BLOOM's 1,082,990 hours imply 0.32 against its best 156 TFLOP/s (0.50; ratio 0.64); OPT-175B's
"~33 days of continuous training" on 992 A100s imply 67 TFLOP/s against the paper's "up to 147" (ratio
0.45). These ratios also hold any gap between a best or "up to" throughput and the run's average, so
they bound goodput from below only loosely. ``goodput_evidence`` computes them from the catalog.
Google Cloud's "ML Productivity Goodput" (2024) splits the same loss into scheduling, runtime and program
goodput. The default is the best-documented modern figure, applied to wall-clock and device-hours; the
per-kind MFU absorbs whatever the catalog runs lost beyond it.

Pure Python (no torch). :func:`default_utilisation` and the constants are what an estimate needs;
:func:`derive_defaults`, :func:`derive_scope_overhead` and :func:`backtest` recompute them from a catalog.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ARCHS = ("dense", "moe")
PRECISION_CLASSES = ("16-bit", "fp8")
SIZE_CLASSES = ("<20B", "20-100B", ">100B")
SIZE_EDGES = (20e9, 100e9)  # active parameters: < 20B, 20B to 100B, > 100B
PEAK_CLASSES = ("<500", ">=500")
PEAK_EDGE_TFLOPS = 500.0  # dense 16-bit peak: A100 312, TPU v4 275 below; H100/H800/H200 989, B200, MI300X above
MIN_RUNS = 4  # fewer runs than this in a kind: fall back to the wider class
BAND_QUANTILES = (0.05, 0.95)  # the printed band: 5th-95th percentile (a stated 90% band)
BAND_COVERAGE = BAND_QUANTILES[1] - BAND_QUANTILES[0]
DECIMALS = 3  # MFU, band ends, FP8_PEAK_RATIO and SCOPE_OVERHEAD are rounded to this many decimals

_SIXTEEN_BIT = ("bf16", "fp16")
_PRECISION_CLASS = {"bf16": "16-bit", "fp16": "16-bit", "tf32": "16-bit", "fp32": "16-bit", "fp8": "fp8"}

# -- goodput and scope ---------------------------------------------------------------------------

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

SCOPE_OVERHEAD = 1.094  # all / pretrain device-hours; see derive_scope_overhead and the module docstring
SCOPE_OVERHEAD_SOURCE = ("median all / pre-training device-hours of 3 pre-trainings published both ways: "
                         "Llama 3.1 / Llama 3 model cards, 8B 1.46M / 1.3M = 1.123 and 70B 7.0M / 6.4M = 1.094 "
                         "H100-hours; DeepSeek-V3, arXiv 2412.19437 Table 1, 2,788K / 2,664K H800-hours = 1.047")


# -- kinds ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Kind:
    """A kind of training run: architecture, precision class, size class of the ACTIVE parameters, and
    the peak class of the accelerator (its dense 16-bit peak below or at least ``PEAK_EDGE_TFLOPS``)."""

    arch: str  # "dense" | "moe"
    precision: str  # "16-bit" | "fp8"
    size: str  # "<20B" | "20-100B" | ">100B"
    peak: str  # "<500" | ">=500" (TFLOP/s, dense 16-bit)

    @property
    def label(self) -> str:
        return f"{self.arch} {self.precision} {self.size} on {self.peak} TFLOP/s"

    def __str__(self) -> str:
        return self.label


ALL_KINDS: tuple[Kind, ...] = tuple(Kind(a, p, s, k) for k in PEAK_CLASSES for a in ARCHS
                                    for p in PRECISION_CLASSES for s in SIZE_CLASSES)


def precision_class(precision: str) -> str:
    """``16-bit`` for bf16/fp16 (and tf32/fp32, which use the 16-bit fraction of their own peak), ``fp8``."""
    try:
        return _PRECISION_CLASS[precision.strip().lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(_PRECISION_CLASS)}") from None


def size_class(active_params: float) -> str:
    """Size class of the active parameters: ``<20B``, ``20-100B`` or ``>100B``."""
    if not active_params > 0 or not math.isfinite(active_params):
        raise ValueError(f"active parameters must be a positive number, got {active_params!r}")
    if active_params < SIZE_EDGES[0]:
        return SIZE_CLASSES[0]
    return SIZE_CLASSES[1] if active_params <= SIZE_EDGES[1] else SIZE_CLASSES[2]


def peak_class(peak_16bit_tflops: float | None) -> str:
    """``>=500`` for an accelerator whose dense 16-bit peak is at least ``PEAK_EDGE_TFLOPS``, else ``<500``
    (also when the peak is unknown)."""
    return PEAK_CLASSES[1] if peak_16bit_tflops and peak_16bit_tflops >= PEAK_EDGE_TFLOPS else PEAK_CLASSES[0]


def run_kind(params: float, active_params: float | None = None, precision: str = "bf16", *,
             peak_tflops: float | None) -> Kind:
    """The kind of a run: ``params`` are ALL parameters, ``active_params`` those used per token (MoE;
    default ``params``, i.e. dense), ``peak_tflops`` the accelerator's dense 16-bit peak (see
    :func:`accelerator_peak`). A model is ``moe`` when fewer parameters are active than it has."""
    if not params > 0 or not math.isfinite(params):
        raise ValueError(f"parameters must be a positive number, got {params!r}")
    active = params if active_params is None else active_params
    if active > params * (1 + 1e-9):
        raise ValueError(f"active parameters ({active:g}) exceed the parameters ({params:g})")
    arch = "moe" if active < params * (1 - 1e-9) else "dense"
    return Kind(arch, precision_class(precision), size_class(active), peak_class(peak_tflops))


# -- the per-kind defaults -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Utilisation:
    """The default utilisation for one kind of run, and where it comes from.

    ``mfu`` and the band are MFU *while training*, as a fraction of the dense peak at the kind's
    precision; multiply by ``goodput`` (``effective_mfu``) for the share of the peak that reported
    device-hours imply."""

    kind: Kind
    mfu: float
    band_low: float
    band_high: float
    num_runs: int  # runs behind ``mfu`` (of the class it was taken from)
    basis: str  # the class the median was taken over, e.g. the kind's label or "all runs on >=500 TFLOP/s"
    rule_text: str
    fallback_note: str | None  # why a wider class was used, or None
    goodput: float = DEFAULT_GOODPUT
    level: int = 0  # 0 the kind itself; 1 (peak, arch, size); 2 (peak, size); 3 peak; 4 all runs
    kind_runs: int = 0  # counted runs of the kind itself

    @property
    def effective_mfu(self) -> float:
        """MFU over wall-clock (training plus lost time): what reproduces reported device-hours."""
        return self.mfu * self.goodput

    @property
    def effective_band(self) -> tuple[float, float]:
        return self.band_low * self.goodput, self.band_high * self.goodput


def _basis_label(level: int, kind: Kind) -> str:
    on = f"on {kind.peak} TFLOP/s"
    return (kind.label, f"{kind.arch} {kind.size} {on}, any precision", f"{kind.size} {on}, any architecture",
            f"all runs {on}", "all runs")[level]


def _make(kind: Kind, mfu: float, band_low: float, band_high: float, num_runs: int, level: int,
          level0_runs: int, pooled_runs: int, ratio_band: tuple[float, float], goodput: float) -> Utilisation:
    basis = _basis_label(level, kind)
    lo_q, hi_q = (round(q * 100) for q in BAND_QUANTILES)
    fp8 = " converted to the FP8 peak (x 16-bit/FP8 peak ratio)" if kind.precision == "fp8" else ""
    rule = (f"median implied MFU of {num_runs} published runs ({basis}; 6ND / (pre-training device-hours x "
            f"3600 x dense 16-bit peak)){fp8}, divided by goodput {goodput:.2f}: {mfu:.2f} while training; "
            f"band = {lo_q}th-{hi_q}th percentile of the leave-one-out implied/predicted ratio over all "
            f"{pooled_runs} runs ({ratio_band[0]:.2f}-{ratio_band[1]:.2f}): {band_low:.2f}-{band_high:.2f}")
    note = None
    if level:
        note = (f"{level0_runs} run{'s' if level0_runs != 1 else ''} of kind {kind.label} (fewer than "
                f"{MIN_RUNS}): fell back to {basis} ({num_runs} runs)")
    return Utilisation(kind=kind, mfu=mfu, band_low=band_low, band_high=band_high, num_runs=num_runs,
                       basis=basis, rule_text=rule, fallback_note=note, goodput=goodput, level=level,
                       kind_runs=level0_runs)


# Stored results of derive_defaults(load_catalog()) (see RULE): kind -> (mfu while training, band_low,
# band_high, runs behind the value, fallback level, runs of the kind itself). 39 runs with hours are
# counted; their leave-one-out implied/predicted ratio has 5th-95th percentiles 0.526-1.543.
# Regenerate with `python -c "from estimator.timing.utilisation import *; from estimator.catalog import
# load_catalog as L; c = L(); print(stored_table(derive_defaults(c.runs, c.accelerators, c.models)))"`.
_POOLED_RUNS = 39
_RATIO_BAND = (0.526, 1.543)
RATIO_BAND = _RATIO_BAND  # the band as a ratio to a kind's median MFU (5th-95th percentile)
_STORED: dict[tuple[str, str, str, str], tuple[float, float, float, int, int, int]] = {
    ("dense", "16-bit", "20-100B", "<500"): (0.476, 0.25, 0.735, 5, 0, 5),
    ("dense", "16-bit", "20-100B", ">=500"): (0.31, 0.163, 0.478, 5, 2, 2),
    ("dense", "16-bit", "<20B", "<500"): (0.434, 0.228, 0.67, 11, 0, 11),
    ("dense", "16-bit", "<20B", ">=500"): (0.215, 0.113, 0.332, 9, 0, 9),
    ("dense", "16-bit", ">100B", "<500"): (0.346, 0.182, 0.534, 4, 0, 4),
    ("dense", "16-bit", ">100B", ">=500"): (0.267, 0.14, 0.412, 19, 3, 1),
    ("dense", "fp8", "20-100B", "<500"): (0.238, 0.125, 0.367, 5, 1, 0),
    ("dense", "fp8", "20-100B", ">=500"): (0.155, 0.081, 0.239, 5, 2, 0),
    ("dense", "fp8", "<20B", "<500"): (0.217, 0.114, 0.335, 11, 1, 0),
    ("dense", "fp8", "<20B", ">=500"): (0.108, 0.057, 0.167, 9, 1, 0),
    ("dense", "fp8", ">100B", "<500"): (0.173, 0.091, 0.267, 4, 1, 0),
    ("dense", "fp8", ">100B", ">=500"): (0.133, 0.07, 0.205, 19, 3, 0),
    ("moe", "16-bit", "20-100B", "<500"): (0.476, 0.25, 0.735, 5, 2, 0),
    ("moe", "16-bit", "20-100B", ">=500"): (0.31, 0.163, 0.478, 5, 2, 1),
    ("moe", "16-bit", "<20B", "<500"): (0.434, 0.228, 0.67, 11, 2, 0),
    ("moe", "16-bit", "<20B", ">=500"): (0.244, 0.128, 0.377, 4, 0, 4),
    ("moe", "16-bit", ">100B", "<500"): (0.346, 0.182, 0.534, 4, 2, 0),
    ("moe", "16-bit", ">100B", ">=500"): (0.267, 0.14, 0.412, 19, 3, 0),
    ("moe", "fp8", "20-100B", "<500"): (0.238, 0.125, 0.367, 5, 2, 0),
    ("moe", "fp8", "20-100B", ">=500"): (0.155, 0.081, 0.239, 5, 2, 2),
    ("moe", "fp8", "<20B", "<500"): (0.217, 0.114, 0.335, 11, 2, 0),
    ("moe", "fp8", "<20B", ">=500"): (0.122, 0.064, 0.188, 4, 1, 0),
    ("moe", "fp8", ">100B", "<500"): (0.173, 0.091, 0.267, 4, 2, 0),
    ("moe", "fp8", ">100B", ">=500"): (0.133, 0.07, 0.205, 19, 3, 0),
}
FP8_PEAK_RATIO = 0.5  # dense 16-bit peak / dense FP8 peak (median over catalog accelerators with both)


def _build_stored() -> dict[Kind, Utilisation]:
    return {Kind(*key): _make(Kind(*key), *vals[:4], level=vals[4], level0_runs=vals[5], pooled_runs=_POOLED_RUNS,
                              ratio_band=_RATIO_BAND, goodput=DEFAULT_GOODPUT)
            for key, vals in _STORED.items()}


DEFAULTS: dict[Kind, Utilisation] = _build_stored()
RULE = __doc__


def default_utilisation(kind: Kind) -> Utilisation:
    """The stored default utilisation for ``kind`` (see :data:`RULE`)."""
    try:
        return DEFAULTS[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; kinds are {', '.join(k.label for k in ALL_KINDS)}") from None


def utilisation_for(params: float, active_params: float | None = None, precision: str = "bf16", *,
                    peak_tflops: float | None) -> Utilisation:
    """``default_utilisation(run_kind(params, active_params, precision, peak_tflops=peak_tflops))``."""
    return default_utilisation(run_kind(params, active_params, precision, peak_tflops=peak_tflops))


# -- deriving them from a catalog ----------------------------------------------------------------


def _index(items: Any) -> dict[str, Any]:
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        for key in (item.id, *getattr(item, "aliases", ())):
            out.setdefault(key.lower(), item)
    return out


def peak_16bit(acc: Any) -> float | None:
    """Dense 16-bit peak TFLOP/s of an accelerator (bf16, else fp16), or None."""
    for dtype in _SIXTEEN_BIT:
        peak = acc.peak_tflops.get(dtype)
        if peak:
            return peak
    return None


def fp8_peak_ratio(accelerators: Any) -> float:
    """Median of dense 16-bit peak / dense FP8 peak over the accelerators that have both."""
    ratios = [peak_16bit(a) / a.peak_tflops["fp8"] for a in _index(accelerators).values()
              if peak_16bit(a) and a.peak_tflops.get("fp8")]
    if not ratios:
        raise ValueError("no accelerator has both a 16-bit and an FP8 peak")
    return round(median(ratios), DECIMALS)


def reported_device_hours(run: Any) -> float | None:
    """Reported device-hours, else wall-clock days x 24 x devices, else None."""
    if getattr(run, "device_hours", None) is not None:
        return run.device_hours
    if getattr(run, "wall_clock_days", None) is not None:
        return run.wall_clock_days * 24.0 * run.num_devices
    return None


def total_params(run: Any, models: Any = None) -> float:
    """All parameters of a run's model: the run's ``total_params``, else the models catalog entry of its
    ``model`` when that is an MoE (active < params), else the run's ``params`` (dense)."""
    if getattr(run, "total_params", None):
        return run.total_params
    model = _index(models).get(str(getattr(run, "model", "")).lower())
    if model is not None and model.active_params is not None and model.active_params < model.params:
        return model.params
    return run.params


def accelerator_peak(acc: Any) -> float | None:
    """The peak that sets an accelerator's peak class: dense 16-bit, else its largest dense peak."""
    return peak_16bit(acc) or max(acc.peak_tflops.values(), default=None)


def kind_of_run(run: Any, accelerators: Any, models: Any = None) -> Kind:
    """The kind of a catalog run (``run.params`` is the ACTIVE count) on its accelerator."""
    acc = _index(accelerators).get(run.accelerator.lower())
    return run_kind(total_params(run, models), run.params, run.precision,
                    peak_tflops=accelerator_peak(acc) if acc is not None else None)


def implied_mfu_16bit(run: Any, accelerators: Any) -> float | None:
    """6ND / (reported device-hours x 3600 x dense 16-bit peak), or None without hours or a 16-bit peak."""
    hours = reported_device_hours(run)
    acc = _index(accelerators).get(run.accelerator.lower())
    peak = peak_16bit(acc) if acc is not None else None
    if hours is None or not peak:
        return None
    return 6.0 * run.params * run.tokens / (hours * 3600.0 * peak * 1e12)


def median(values: Iterable[float]) -> float:
    """The median (``percentile(values, 0.5)``, which equals ``statistics.median``)."""
    return percentile(values, 0.5)


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile (0-1) by linear interpolation between order statistics (numpy's 'linear')."""
    data = sorted(values)
    if not data:
        raise ValueError("no values")
    pos = q * (len(data) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class _Counted:
    id: str
    kind: Kind
    mfu16: float  # implied MFU on the 16-bit basis, over PRE-TRAINING hours (scope:all hours / overhead)
    scope: str


def counted_runs(runs: Iterable[Any], accelerators: Any, models: Any = None,
                 scope_overhead: float = SCOPE_OVERHEAD) -> list[_Counted]:
    """The runs the defaults are derived from: every run with device-hours (or days x devices) and a
    scope; a ``scope: all`` run's hours are divided by ``scope_overhead`` to pre-training hours."""
    out = []
    for run in runs:
        scope = getattr(run, "scope", None)
        m = implied_mfu_16bit(run, accelerators)
        if m is not None and scope in ("pretrain", "all"):
            out.append(_Counted(run.id, kind_of_run(run, accelerators, models),
                                m * (scope_overhead if scope == "all" else 1.0), scope))
    return out


def _levels(kind: Kind) -> tuple:
    return (
        lambda k: k == kind,
        lambda k: (k.peak, k.arch, k.size) == (kind.peak, kind.arch, kind.size),
        lambda k: (k.peak, k.size) == (kind.peak, kind.size),
        lambda k: k.peak == kind.peak,
        lambda k: True,
    )


def _class_median(kind: Kind, counted: list[_Counted]) -> tuple[float, int, int, int]:
    """(median 16-bit-basis MFU, runs behind it, level used, runs of the kind itself)."""
    own = sum(c.kind == kind for c in counted)
    for level, member in enumerate(_levels(kind)):
        values = [c.mfu16 for c in counted if member(c.kind)]
        if len(values) >= MIN_RUNS or level == 4:
            if not values:
                raise ValueError("no counted runs to derive defaults from")
            return median(values), len(values), level, own
    raise AssertionError("unreachable")  # pragma: no cover


def leave_one_out_ratios(counted: list[_Counted]) -> list[float]:
    """Each run's implied MFU over its kind's median with that run left out (the same fallback rule on
    the other runs): how far a run the defaults were not derived from lands from its default."""
    return [c.mfu16 / _class_median(c.kind, [d for d in counted if d is not c])[0] for c in counted]


def derive_defaults(runs: Iterable[Any], accelerators: Any, models: Any = None,
                    goodput: float = DEFAULT_GOODPUT) -> dict[Kind, Utilisation]:
    """Recompute the per-kind defaults from published runs (see :data:`RULE`), rounded as stored."""
    runs = list(runs)
    counted = counted_runs(runs, accelerators, models, derive_scope_overhead(runs)[0])
    ratio = fp8_peak_ratio(accelerators)
    medians = {kind: _class_median(kind, counted) for kind in ALL_KINDS}
    residuals = leave_one_out_ratios(counted)
    ratio_band = tuple(round(percentile(residuals, q), DECIMALS) for q in BAND_QUANTILES)
    out = {}
    for kind in ALL_KINDS:
        med16, n, level, own = medians[kind]
        effective = med16 * (ratio if kind.precision == "fp8" else 1.0)
        mfu = round(effective / goodput, DECIMALS)
        band = (round(mfu * percentile(residuals, BAND_QUANTILES[0]), DECIMALS),
                round(mfu * percentile(residuals, BAND_QUANTILES[1]), DECIMALS))
        out[kind] = _make(kind, mfu, *band, n, level=level, level0_runs=own, pooled_runs=len(counted),
                          ratio_band=ratio_band, goodput=goodput)
    return out


def stored_table(defaults: Mapping[Kind, Utilisation]) -> dict[tuple[str, str, str, str], tuple]:
    """The compact form of ``_STORED`` for a set of defaults (to regenerate the constants)."""
    return {(k.arch, k.precision, k.size, k.peak): (u.mfu, u.band_low, u.band_high, u.num_runs, u.level, u.kind_runs)
            for k, u in sorted(defaults.items())}


def derive_scope_overhead(runs: Iterable[Any]) -> tuple[float, list[tuple[str, float]]]:
    """Median all/pretrain device-hours over the pre-trainings published both ways: a ``pretrain`` and an
    ``all`` record with the same active parameters, tokens and accelerator (one model, or a later release
    of the same pre-training whose card counts all of training), rounded; and the ("pretrain-id /
    all-id", ratio) pairs behind it."""
    by_training: dict[tuple[float, float, str], dict[str, tuple[float, str]]] = {}
    for run in runs:
        hours = reported_device_hours(run)
        if hours is not None and getattr(run, "scope", None) in ("pretrain", "all"):
            key = (run.params, run.tokens, run.accelerator.lower())
            by_training.setdefault(key, {})[run.scope] = (hours, run.id)
    pairs = [(f"{s['pretrain'][1]} / {s['all'][1]}", s["all"][0] / s["pretrain"][0])
             for _, s in sorted(by_training.items()) if {"pretrain", "all"} <= s.keys()]
    if not pairs:
        raise ValueError("no pre-training has both a pretrain and an all record")
    return round(median(r for _, r in pairs), DECIMALS), sorted(pairs)


def goodput_evidence(runs: Iterable[Any], accelerators: Any) -> list[tuple[str, float, float, float, str]]:
    """For runs that report both device-hours and a throughput measured while training: (id, implied MFU,
    reported MFU, implied/reported, scope). The ratio is a lower bound on goodput (it also holds any gap
    between an "up to" throughput and the run's average). A cross-check; the default is a published figure."""
    accs = _index(accelerators)
    out = []
    for run in runs:
        acc = accs.get(run.accelerator.lower())
        hours = reported_device_hours(run)
        peak = acc.peak_tflops.get(run.precision) if acc is not None else None
        if hours is None or not peak:
            continue
        reported = run.reported_mfu
        if reported is None and run.reported_tflops_per_device is not None:
            reported = run.reported_tflops_per_device / peak
        if reported is None:
            continue
        implied = 6.0 * run.params * run.tokens / (hours * 3600.0 * peak * 1e12)
        out.append((run.id, implied, reported, implied / reported, run.scope or "?"))
    return out


__all__ = [
    "ALL_KINDS", "BAND_COVERAGE", "BAND_QUANTILES", "DEFAULTS", "DEFAULT_GOODPUT", "FP8_PEAK_RATIO",
    "GOODPUT_SOURCES", "RATIO_BAND", "Kind", "MIN_RUNS", "RULE", "SCOPE_OVERHEAD",
    "SCOPE_OVERHEAD_SOURCE", "Utilisation", "counted_runs", "default_utilisation",
    "derive_defaults", "derive_scope_overhead", "fp8_peak_ratio", "goodput_evidence",
    "implied_mfu_16bit", "kind_of_run", "percentile", "precision_class", "reported_device_hours", "run_kind",
    "size_class", "stored_table", "total_params", "utilisation_for",
]
