"""Default utilisation by kind of run and machine balance, goodput, and what reported hours cover, derived from published runs.

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
``run_kind(params, active_params, precision)`` classifies a run by architecture (``dense``, or ``moe``
when fewer parameters are active per token than the model has), precision class (``16-bit``: bf16 and
fp16, and tf32/fp32, which take the 16-bit fraction of their own lower peak as
:mod:`estimator.timing.throughput` does; ``fp8``) and size class of the ACTIVE parameters (``<20B``,
``20-100B``, ``>100B``): 2 x 2 x 3 = 12 kinds.

The accelerator: machine balance, not a peak class
--------------------------------------------------
The catalog's runs on A100 and TPU v4 imply about twice the MFU of the runs on H100 and H800: the newer
chips tripled the matmul peak while HBM bandwidth grew 1.6x, so the memory-bound share of a step
(norms, activations, optimizer, attention softmax, small matmuls) grows. The default therefore moves
with the accelerator's machine balance ``balance = dense 16-bit peak / HBM bandwidth`` (FLOP per byte;
:func:`machine_balance`: A100 SXM 80GB 153, A100 40GB 201, TPU v4 229, H100/H800 295, H200 206, L40S
419, RTX 4090 164), as a roofline argument gives it: ``MFU(balance) = MFU_ref x (BALANCE_REF /
balance) ** BALANCE_EXPONENT``, at most ``MFU_CAP``. ``BALANCE_EXPONENT`` is fitted on the runs
(:func:`balance_exponent`: the least-squares slope of ln MFU on ln balance within groups of one
architecture and size, so the mix of model sizes on each chip does not pass for a hardware effect);
it comes out 1.0, i.e. the runs' achieved FLOP/s tracked HBM bandwidth more than peak. A smooth
function has no edge to fall off: an L40S (362 TFLOP/s, 0.86 TB/s) gets about a quarter of an H100's
rate, not three quarters. What it does not hold: the node's links (the runs were all on NVLink/ICI
and InfiniBand-class networks, so their effect cannot be separated; over PCIe, data-parallel traffic
adds a few percent at a 4M-token batch, which the step model counts when the architecture is known)
and anything that separates two chips of equal balance.

The rule (``derive_defaults``; ``RULE``)
----------------------------------------
- A run counts when it reports device-hours, or wall-clock days and a device count (device-hours =
  days x 24 x devices), and its scope. A ``scope: all`` run's hours are first divided by
  ``SCOPE_OVERHEAD`` (below) to pre-training hours, so both scopes describe the same quantity. Runs that
  report only a throughput are left out: their MFU is measured while training and omits lost time.
- Implied MFU on the 16-bit basis: ``m = 6 N D / (pre-training device-hours x 3600 x dense 16-bit
  peak)``, moved to ``BALANCE_REF`` by ``x (balance / BALANCE_REF) ** BALANCE_EXPONENT``. Pooling on
  one basis lets FP8 and 16-bit runs be compared; for an FP8 kind the value is converted to the FP8
  peak by ``FP8_PEAK_RATIO`` (16-bit peak / FP8 peak, 0.5 on every catalog accelerator that has both),
  i.e. FP8 is credited with no speed-up over 16-bit unless FP8 runs show one.
- Per kind: the median of the moved ``m`` over the kind's runs when there are at least ``MIN_RUNS``
  (4) of them; otherwise fall back to the first wider class that has ``MIN_RUNS``: (arch, size, any
  precision) -> (size, any architecture) -> all runs. The fallback and the count are stated in
  ``Utilisation.fallback_note`` and ``num_runs``.
- Goodput: reported device-hours include lost time, so the median implied MFU is an *effective* MFU.
  ``Utilisation.mfu`` is the MFU while training, ``effective / DEFAULT_GOODPUT``; an estimate applies
  goodput separately (device-hours = FLOPs / (mfu x goodput x peak x 3600)), so at the default goodput
  the product reproduces the runs' hours, and a user's ``--goodput`` or ``--mfu`` changes one factor.
- Band: for every counted run, the ratio of its ``m`` to what its default would be WITHOUT it (the
  exponent refitted and the kind's median taken on the other runs, at the run's own balance:
  ``leave_one_out_ratios``). That is the error of a default on a run it was not derived from, which
  is the error a user's run meets. The ratios are pooled and the band is the kind's MFU x their
  ``BAND_QUANTILES`` (5th and 95th percentiles, linear interpolation between order statistics): a
  stated 90% band. ``gpucost validate`` prints the share of the catalog's runs inside their band; the
  hold-out (benchmarks/holdout_runs.py) measures it on runs the defaults never saw.
- Rounding: MFU, band ends, ``FP8_PEAK_RATIO`` and ``SCOPE_OVERHEAD`` to 3 decimals, the exponent to
  2. ``DEFAULTS`` holds the rounded results at ``BALANCE_REF``; tests/test_utilisation.py fails when
  ``derive_defaults(load_catalog())`` or ``derive_balance_exponent`` differ.

Workloads counted in samples
----------------------------
A model trained on samples with forward FLOPs per sample (ResNet-50 on ImageNet) is not a transformer
and its runs are not token runs: :func:`derive_sample_default` takes the median MFU of the published
sample-counted runs in ``catalogs/sample_runs.yaml`` (NVIDIA DeepLearningExamples' ResNet-50 on DGX
A100 and DGX-1 V100; torchvision's on an H200, channels_last and NCHW), moved to ``BALANCE_REF`` with
the same exponent (they agree after the move: 0.08-0.10 at 300 FLOP/byte, the NCHW row 0.04). Their
throughput is measured while training, so no goodput is divided out.

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

from estimator.timing.goodput import DEFAULT_GOODPUT, GOODPUT_SOURCES

ARCHS = ("dense", "moe")
PRECISION_CLASSES = ("16-bit", "fp8")
SIZE_CLASSES = ("<20B", "20-100B", ">100B")
SIZE_EDGES = (20e9, 100e9)  # active parameters: < 20B, 20B to 100B, > 100B
# Machine balance: dense 16-bit peak FLOP/s per byte/s of HBM bandwidth. A default MFU is stored at
# BALANCE_REF and moves with an accelerator's balance as (BALANCE_REF / balance) ** BALANCE_EXPONENT.
BALANCE_REF = 300.0  # FLOP/byte, about an H100 SXM's (989.4 TFLOP/s / 3.35 TB/s = 295)
MFU_CAP = 0.80  # no default above the median maximum achievable matmul fraction (stas00 MAMF table)
MIN_RUNS = 4  # fewer runs than this in a kind: fall back to the wider class
BAND_QUANTILES = (0.05, 0.95)  # the printed band: 5th-95th percentile (a stated 90% band)
BAND_COVERAGE = BAND_QUANTILES[1] - BAND_QUANTILES[0]
DECIMALS = 3  # MFU, band ends, FP8_PEAK_RATIO and SCOPE_OVERHEAD are rounded to this many decimals

_SIXTEEN_BIT = ("bf16", "fp16")
_PRECISION_CLASS = {"bf16": "16-bit", "fp16": "16-bit", "tf32": "16-bit", "fp32": "16-bit", "fp8": "fp8"}

# -- goodput and scope ---------------------------------------------------------------------------

# DEFAULT_GOODPUT and GOODPUT_SOURCES: estimator.timing.goodput (imported above; an estimate reads them
# without this module's derivations)

SCOPE_OVERHEAD = 1.094  # all / pretrain device-hours; see derive_scope_overhead and the module docstring
SCOPE_OVERHEAD_SOURCE = ("median all / pre-training device-hours of 3 pre-trainings published both ways: "
                         "Llama 3.1 / Llama 3 model cards, 8B 1.46M / 1.3M = 1.123 and 70B 7.0M / 6.4M = 1.094 "
                         "H100-hours; DeepSeek-V3, arXiv 2412.19437 Table 1, 2,788K / 2,664K H800-hours = 1.047")


# -- kinds ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Kind:
    """A kind of training run: architecture, precision class and size class of the ACTIVE parameters.
    (The accelerator enters through its machine balance, continuously: :meth:`Utilisation.at`.)"""

    arch: str  # "dense" | "moe"
    precision: str  # "16-bit" | "fp8"
    size: str  # "<20B" | "20-100B" | ">100B"

    @property
    def label(self) -> str:
        return f"{self.arch} {self.precision} {self.size}"

    def __str__(self) -> str:
        return self.label


ALL_KINDS: tuple[Kind, ...] = tuple(Kind(a, p, s) for a in ARCHS for p in PRECISION_CLASSES for s in SIZE_CLASSES)


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


def machine_balance(acc: Any) -> float | None:
    """FLOP per byte: the accelerator's dense 16-bit peak (else its largest dense peak) over its HBM
    bandwidth; None when either is unknown. A100 SXM 80GB 312 / 2.039 = 153, H100 SXM 295, L40S 419."""
    peak = accelerator_peak(acc)
    bandwidth = getattr(acc, "memory_bandwidth_gbps", None)
    if not peak or not bandwidth:
        return None
    return peak * 1e12 / (bandwidth * 1e9)


def run_kind(params: float, active_params: float | None = None, precision: str = "bf16") -> Kind:
    """The kind of a run: ``params`` are ALL parameters, ``active_params`` those used per token (MoE;
    default ``params``, i.e. dense). A model is ``moe`` when fewer parameters are active than it has."""
    if not params > 0 or not math.isfinite(params):
        raise ValueError(f"parameters must be a positive number, got {params!r}")
    active = params if active_params is None else active_params
    if active > params * (1 + 1e-9):
        raise ValueError(f"active parameters ({active:g}) exceed the parameters ({params:g})")
    arch = "moe" if active < params * (1 - 1e-9) else "dense"
    return Kind(arch, precision_class(precision), size_class(active))


# -- the per-kind defaults -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Utilisation:
    """The default utilisation for one kind of run, and where it comes from.

    ``mfu`` and the band are MFU *while training*, as a fraction of the dense peak at the kind's
    precision, at machine balance ``balance`` (FLOP/byte; :data:`BALANCE_REF` as stored, an
    accelerator's own after :meth:`at`); multiply by ``goodput`` (``effective_mfu``) for the share of
    the peak that reported device-hours imply."""

    kind: Kind
    mfu: float
    band_low: float
    band_high: float
    num_runs: int  # runs behind ``mfu`` (of the class it was taken from)
    basis: str  # the class the median was taken over, e.g. the kind's label or "all runs"
    rule_text: str
    fallback_note: str | None  # why a wider class was used, or None
    goodput: float = DEFAULT_GOODPUT
    level: int = 0  # 0 the kind itself; 1 (arch, size); 2 size; 3 all runs
    kind_runs: int = 0  # counted runs of the kind itself
    balance: float = BALANCE_REF

    @property
    def effective_mfu(self) -> float:
        """MFU over wall-clock (training plus lost time): what reproduces reported device-hours."""
        return self.mfu * self.goodput

    @property
    def effective_band(self) -> tuple[float, float]:
        return self.band_low * self.goodput, self.band_high * self.goodput

    def at(self, balance: float | None, exponent: float | None = None) -> "Utilisation":
        """This default on an accelerator of machine ``balance`` (FLOP/byte): MFU and band x
        (BALANCE_REF / balance) ** BALANCE_EXPONENT, at most ``MFU_CAP``; unchanged for None."""
        if balance is None or not balance > 0:
            return self
        exponent = BALANCE_EXPONENT if exponent is None else exponent
        factor = min((BALANCE_REF / balance) ** exponent, MFU_CAP / self.mfu)
        rule = (f"{self.rule_text}; at machine balance {balance:.0f} FLOP/byte (dense 16-bit peak / HBM bandwidth): "
                f"x ({BALANCE_REF:g} / {balance:.0f})^{exponent:g}" + (f", capped at {MFU_CAP:.0%}" if factor
                                                                         == MFU_CAP / self.mfu else ""))
        return Utilisation(kind=self.kind, mfu=self.mfu * factor, band_low=self.band_low * factor,
                           band_high=self.band_high * factor, num_runs=self.num_runs, basis=self.basis,
                           rule_text=rule, fallback_note=self.fallback_note, goodput=self.goodput, level=self.level,
                           kind_runs=self.kind_runs, balance=balance)


def _basis_label(level: int, kind: Kind) -> str:
    return (kind.label, f"{kind.arch} {kind.size}, any precision", f"{kind.size}, any architecture",
            "all runs")[level]


def _make(kind: Kind, mfu: float, band_low: float, band_high: float, num_runs: int, level: int,
          level0_runs: int, pooled_runs: int, ratio_band: tuple[float, float], goodput: float,
          exponent: float) -> Utilisation:
    basis = _basis_label(level, kind)
    lo_q, hi_q = (round(q * 100) for q in BAND_QUANTILES)
    fp8 = " converted to the FP8 peak (x 16-bit/FP8 peak ratio)" if kind.precision == "fp8" else ""
    rule = (f"median MFU of {num_runs} published runs ({basis}; 6ND / (pre-training device-hours x 3600 x dense "
            f"16-bit peak), each moved to machine balance {BALANCE_REF:g} FLOP/byte by x (its balance / "
            f"{BALANCE_REF:g})^{exponent:g}){fp8}, divided by goodput {goodput:.2f}: {mfu:.3f} while training; "
            f"band = {lo_q}th-{hi_q}th percentile of the leave-one-out implied/predicted ratio over all "
            f"{pooled_runs} runs ({ratio_band[0]:.2f}-{ratio_band[1]:.2f}): {band_low:.3f}-{band_high:.3f}")
    note = None
    if level:
        note = (f"{level0_runs} run{'s' if level0_runs != 1 else ''} of kind {kind.label} (fewer than "
                f"{MIN_RUNS}): fell back to {basis} ({num_runs} runs)")
    return Utilisation(kind=kind, mfu=mfu, band_low=band_low, band_high=band_high, num_runs=num_runs,
                       basis=basis, rule_text=rule, fallback_note=note, goodput=goodput, level=level,
                       kind_runs=level0_runs)


# Stored results of derive_defaults(load_catalog()) (see RULE): kind -> (mfu while training at
# BALANCE_REF, band_low, band_high, runs behind the value, fallback level, runs of the kind itself).
# Regenerate with `python -c "from estimator.timing.utilisation import *; from estimator.catalog.core import
# load_catalog as L; c = L(); print(derive_balance_exponent(c.runs, c.accelerators, c.models),
# stored_table(derive_defaults(c.runs, c.accelerators, c.models)))"`.
BALANCE_EXPONENT = 1.0  # fitted: see derive_balance_exponent
_POOLED_RUNS = 39
_RATIO_BAND = (0.487, 1.643)
RATIO_BAND = _RATIO_BAND  # the band as a ratio to a kind's median MFU (5th-95th percentile)
_STORED: dict[tuple[str, str, str], tuple[float, float, float, int, int, int]] = {
    ("dense", "16-bit", "20-100B"): (0.27, 0.132, 0.444, 7, 0, 7),
    ("dense", "16-bit", "<20B"): (0.233, 0.114, 0.383, 20, 0, 20),
    ("dense", "16-bit", ">100B"): (0.258, 0.126, 0.424, 5, 0, 5),
    ("dense", "fp8", "20-100B"): (0.135, 0.066, 0.222, 7, 1, 0),
    ("dense", "fp8", "<20B"): (0.116, 0.057, 0.191, 20, 1, 0),
    ("dense", "fp8", ">100B"): (0.129, 0.063, 0.212, 5, 1, 0),
    ("moe", "16-bit", "20-100B"): (0.279, 0.136, 0.458, 10, 2, 1),
    ("moe", "16-bit", "<20B"): (0.241, 0.117, 0.396, 4, 0, 4),
    ("moe", "16-bit", ">100B"): (0.258, 0.126, 0.424, 5, 2, 0),
    ("moe", "fp8", "20-100B"): (0.139, 0.068, 0.228, 10, 2, 2),
    ("moe", "fp8", "<20B"): (0.12, 0.058, 0.197, 4, 1, 0),
    ("moe", "fp8", ">100B"): (0.129, 0.063, 0.212, 5, 2, 0),
}
FP8_PEAK_RATIO = 0.5  # dense 16-bit peak / dense FP8 peak (median over catalog accelerators with both)


def _build_stored() -> dict[Kind, Utilisation]:
    return {Kind(*key): _make(Kind(*key), *vals[:4], level=vals[4], level0_runs=vals[5], pooled_runs=_POOLED_RUNS,
                              ratio_band=_RATIO_BAND, goodput=DEFAULT_GOODPUT, exponent=BALANCE_EXPONENT)
            for key, vals in _STORED.items()}


DEFAULTS: dict[Kind, Utilisation] = _build_stored()
RULE = __doc__


def default_utilisation(kind: Kind) -> Utilisation:
    """The stored default utilisation for ``kind`` at ``BALANCE_REF`` (see :data:`RULE`)."""
    try:
        return DEFAULTS[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; kinds are {', '.join(k.label for k in ALL_KINDS)}") from None


def utilisation_for(params: float, active_params: float | None = None, precision: str = "bf16", *,
                    balance: float | None) -> Utilisation:
    """``default_utilisation(run_kind(params, active_params, precision)).at(balance)``."""
    return default_utilisation(run_kind(params, active_params, precision)).at(balance)


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
    """The peak in an accelerator's machine balance: dense 16-bit, else its largest dense peak."""
    return peak_16bit(acc) or max(acc.peak_tflops.values(), default=None)


def kind_of_run(run: Any, accelerators: Any = None, models: Any = None) -> Kind:
    """The kind of a catalog run (``run.params`` is the ACTIVE count)."""
    return run_kind(total_params(run, models), run.params, run.precision)


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
    balance: float = BALANCE_REF  # the accelerator's machine balance, FLOP/byte


def counted_runs(runs: Iterable[Any], accelerators: Any, models: Any = None,
                 scope_overhead: float = SCOPE_OVERHEAD) -> list[_Counted]:
    """The runs the defaults are derived from: every run with device-hours (or days x devices) and a
    scope; a ``scope: all`` run's hours are divided by ``scope_overhead`` to pre-training hours."""
    accs = _index(accelerators)
    out = []
    for run in runs:
        scope = getattr(run, "scope", None)
        m = implied_mfu_16bit(run, accelerators)
        balance = machine_balance(accs[run.accelerator.lower()]) if run.accelerator.lower() in accs else None
        if m is not None and scope in ("pretrain", "all") and balance:
            out.append(_Counted(run.id, kind_of_run(run, accelerators, models),
                                m * (scope_overhead if scope == "all" else 1.0), scope, balance))
    return out


def balance_exponent(counted: list[_Counted]) -> float:
    """The exponent b of MFU ~ balance^-b: the least-squares slope of ln(MFU) on ln(balance) within
    groups of the same architecture and size (each group its own intercept, so the runs' mix of sizes
    does not pass for an effect of the hardware), negated, rounded to 2 decimals."""
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for c in counted:
        groups.setdefault((c.kind.arch, c.kind.size), []).append((math.log(c.balance), math.log(c.mfu16)))
    num = den = 0.0
    for points in groups.values():
        mx = sum(x for x, _ in points) / len(points)
        my = sum(y for _, y in points) / len(points)
        num += sum((x - mx) * (y - my) for x, y in points)
        den += sum((x - mx) ** 2 for x, _ in points)
    if den == 0:
        raise ValueError("the runs span one machine balance: no exponent can be fitted")
    return round(-num / den, 2)


def derive_balance_exponent(runs: Iterable[Any], accelerators: Any, models: Any = None) -> float:
    """:func:`balance_exponent` of the catalog's counted runs (what ``BALANCE_EXPONENT`` stores)."""
    runs = list(runs)
    return balance_exponent(counted_runs(runs, accelerators, models, derive_scope_overhead(runs)[0]))


def _at_reference(c: _Counted, exponent: float) -> float:
    """A run's MFU moved to ``BALANCE_REF``: x (its balance / BALANCE_REF) ** exponent."""
    return c.mfu16 * (c.balance / BALANCE_REF) ** exponent


def _levels(kind: Kind) -> tuple:
    return (
        lambda k: k == kind,
        lambda k: (k.arch, k.size) == (kind.arch, kind.size),
        lambda k: k.size == kind.size,
        lambda k: True,
    )


def _class_median(kind: Kind, counted: list[_Counted], exponent: float) -> tuple[float, int, int, int]:
    """(median 16-bit-basis MFU at BALANCE_REF, runs behind it, level used, runs of the kind itself)."""
    own = sum(c.kind == kind for c in counted)
    last = len(_levels(kind)) - 1
    for level, member in enumerate(_levels(kind)):
        values = [_at_reference(c, exponent) for c in counted if member(c.kind)]
        if len(values) >= MIN_RUNS or level == last:
            if not values:
                raise ValueError("no counted runs to derive defaults from")
            return median(values), len(values), level, own
    raise AssertionError("unreachable")  # pragma: no cover


def leave_one_out_ratios(counted: list[_Counted], exponent: float | None = None) -> list[float]:
    """Each run's implied MFU over what its default would be with that run left out: the exponent
    refitted (unless ``exponent`` is given) and its kind's median taken without it, at its own
    balance. How far a run the defaults were not derived from lands from its default."""
    out = []
    for c in counted:
        others = [d for d in counted if d is not c]
        b = balance_exponent(others) if exponent is None else exponent
        predicted = _class_median(c.kind, others, b)[0] * (BALANCE_REF / c.balance) ** b
        out.append(c.mfu16 / predicted)
    return out


def derive_defaults(runs: Iterable[Any], accelerators: Any, models: Any = None,
                    goodput: float = DEFAULT_GOODPUT) -> dict[Kind, Utilisation]:
    """Recompute the per-kind defaults at ``BALANCE_REF`` from published runs (see :data:`RULE`),
    rounded as stored."""
    runs = list(runs)
    counted = counted_runs(runs, accelerators, models, derive_scope_overhead(runs)[0])
    exponent = balance_exponent(counted)
    ratio = fp8_peak_ratio(accelerators)
    medians = {kind: _class_median(kind, counted, exponent) for kind in ALL_KINDS}
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
                          ratio_band=ratio_band, goodput=goodput, exponent=exponent)
    return out


def stored_table(defaults: Mapping[Kind, Utilisation]) -> dict[tuple[str, str, str], tuple]:
    """The compact form of ``_STORED`` for a set of defaults (to regenerate the constants)."""
    return {(k.arch, k.precision, k.size): (u.mfu, u.band_low, u.band_high, u.num_runs, u.level, u.kind_runs)
            for k, u in sorted(defaults.items())}


# -- workloads counted in samples (convnets) ------------------------------------------------------

SAMPLE_KIND = Kind("convnet", "16-bit", "all sizes")


def sample_run_mfu(run: Any, accelerators: Any, models: Any) -> tuple[float, float] | None:
    """(MFU on the dense 16-bit peak, machine balance) of a catalogs/sample_runs.yaml row: 3 x the
    model's forward FLOPs per sample x samples per second per device / the peak; None without one."""
    acc = _index(accelerators).get(run.accelerator.lower())
    model = _index(models).get(run.model.lower())
    peak = peak_16bit(acc) if acc is not None else None
    balance = machine_balance(acc) if acc is not None else None
    if not peak or not balance or model is None or not model.forward_flops_per_sample:
        return None
    return 3.0 * model.forward_flops_per_sample * run.samples_per_s / run.num_devices / (peak * 1e12), balance


def derive_sample_default(sample_runs: Iterable[Any], accelerators: Any, models: Any,
                          exponent: float = BALANCE_EXPONENT) -> Utilisation:
    """The default utilisation of a workload counted in samples: the median over the published
    sample runs of their MFU moved to ``BALANCE_REF`` (x (balance / BALANCE_REF) ** exponent, the
    exponent fitted on the token runs), band from their own leave-one-out ratios (5th-95th
    percentiles). Their rates are measured while training, so no goodput is divided out."""
    points = [p for p in (sample_run_mfu(r, accelerators, models) for r in sample_runs) if p is not None]
    if len(points) < 2:
        raise ValueError("fewer than 2 sample runs to derive the convnet default from")
    moved = [m * (b / BALANCE_REF) ** exponent for m, b in points]
    mfu = round(median(moved), DECIMALS)
    ratios = [x / median(moved[:i] + moved[i + 1:]) for i, x in enumerate(moved)]
    band = tuple(round(percentile(ratios, q), DECIMALS) for q in BAND_QUANTILES)
    rule = (f"median MFU of {len(points)} published sample-counted runs (catalogs/sample_runs.yaml: 3 x forward "
            f"FLOPs per sample x samples/s per device / dense 16-bit peak, each moved to machine balance "
            f"{BALANCE_REF:g} FLOP/byte by x (its balance / {BALANCE_REF:g})^{exponent:g}, the exponent of the token "
            f"runs): {mfu:.3f} while training; band = {round(BAND_QUANTILES[0] * 100)}th-"
            f"{round(BAND_QUANTILES[1] * 100)}th percentile of their leave-one-out ratios ({band[0]:.2f}-{band[1]:.2f})")
    return Utilisation(kind=SAMPLE_KIND, mfu=mfu, band_low=round(mfu * band[0], DECIMALS),
                       band_high=round(mfu * band[1], DECIMALS), num_runs=len(points),
                       basis="published sample-counted runs (ResNet-50)", rule_text=rule, fallback_note=None,
                       level=0, kind_runs=len(points))


# derive_sample_default(catalog.sample_runs, ...) as stored: (mfu at BALANCE_REF, band_low, band_high, runs)
_SAMPLE_STORED = (0.087, 0.048, 0.102, 6)


def sample_utilisation(precision: str = "bf16", *, balance: float | None) -> Utilisation:
    """The stored default of a workload counted in samples (see :func:`derive_sample_default`) at
    ``balance``; for FP8, converted to the FP8 peak as the token kinds are (no speed-up credited)."""
    mfu, low, high, n = _SAMPLE_STORED
    if precision_class(precision) == "fp8":
        mfu, low, high = (round(v * FP8_PEAK_RATIO, DECIMALS) for v in (mfu, low, high))
    kind = Kind(SAMPLE_KIND.arch, precision_class(precision), SAMPLE_KIND.size)
    rule = (f"median MFU of {n} published sample-counted runs (catalogs/sample_runs.yaml), moved to machine balance "
            f"{BALANCE_REF:g} FLOP/byte: {mfu:.3f} while training")
    return Utilisation(kind=kind, mfu=mfu, band_low=low, band_high=high, num_runs=n,
                       basis="published sample-counted runs (ResNet-50)", rule_text=rule, fallback_note=None,
                       level=0, kind_runs=n).at(balance)


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
    "ALL_KINDS", "BALANCE_EXPONENT", "BALANCE_REF", "BAND_COVERAGE", "BAND_QUANTILES", "DEFAULTS",
    "DEFAULT_GOODPUT", "FP8_PEAK_RATIO", "GOODPUT_SOURCES", "MFU_CAP", "RATIO_BAND", "Kind", "MIN_RUNS", "RULE",
    "SAMPLE_KIND", "SCOPE_OVERHEAD", "balance_exponent", "derive_balance_exponent", "derive_sample_default",
    "machine_balance", "sample_run_mfu", "sample_utilisation",
    "SCOPE_OVERHEAD_SOURCE", "Utilisation", "counted_runs", "default_utilisation",
    "derive_defaults", "derive_scope_overhead", "fp8_peak_ratio", "goodput_evidence",
    "implied_mfu_16bit", "kind_of_run", "percentile", "precision_class", "reported_device_hours", "run_kind",
    "size_class", "stored_table", "total_params", "utilisation_for",
]
