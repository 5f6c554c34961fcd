"""Property-based tests: the number grammar, and the invariants every estimate must keep."""

from __future__ import annotations

import json
import math

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from estimator import estimate  # noqa: E402
from estimator.errors import InputError  # noqa: E402
from estimator.numbers import parse_count, parse_quantity  # noqa: E402

SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12, "P": 1e15}
positive = st.floats(min_value=1e-6, max_value=1e30, allow_nan=False, allow_infinity=False)


@given(positive)
def test_a_float_written_by_python_reads_back_exactly(value):
    assert parse_quantity(repr(value)) == value


@given(st.integers(min_value=1, max_value=999_999), st.sampled_from(sorted(SUFFIX)))
def test_suffixes_scale_the_mantissa(mantissa, suffix):
    assert parse_quantity(f"{mantissa}{suffix}") == pytest.approx(mantissa * SUFFIX[suffix], rel=1e-12)
    assert parse_quantity(f"{mantissa}{suffix.lower()}") == pytest.approx(mantissa * SUFFIX[suffix], rel=1e-12)


@given(st.integers(min_value=1000, max_value=10**15))
def test_thousands_groups_of_three_are_accepted(number):
    assert parse_quantity(f"{number:,}") == number
    assert parse_quantity(f"{number:_}") == number
    assert parse_count(f"{number:,}", maximum=10**16) == number


@given(st.text(alphabet="0123456789,", min_size=2, max_size=12).filter(
    lambda s: "," in s and not all(len(g) == 3 for g in s.split(",")[1:]) or s.startswith(",")))
def test_misplaced_separators_are_refused(text):
    with pytest.raises(InputError):
        parse_quantity(text)


@given(st.text(max_size=12))
def test_any_text_is_a_number_or_one_input_error(text):
    try:
        value = parse_quantity(text, what="--x")
    except InputError as exc:
        assert str(exc).startswith("--x ") and "\n" not in str(exc)
    else:
        assert math.isfinite(value) and value > 0


@given(st.integers(min_value=1, max_value=60))
def test_an_exponent_needs_digits(digits):
    with pytest.raises(InputError):
        parse_quantity(f"{digits}e")


# -- estimate invariants ---------------------------------------------------------------------------

params = st.floats(min_value=1e6, max_value=2e12)
tokens = st.floats(min_value=1e6, max_value=1e14)
tflops = st.floats(min_value=0.01, max_value=5000)
devices = st.integers(min_value=1, max_value=100_000)
price = st.floats(min_value=0.01, max_value=100)


@settings(max_examples=60, deadline=None)
@given(params, tokens, tflops, devices, price, st.floats(min_value=1.5, max_value=10))
def test_time_is_linear_in_tokens_and_cost_is_hours_times_price(n, d, rate, gpus, usd, factor):
    one = estimate(params=n, tokens=d, gpu="h100", num_gpus=gpus, tflops=rate, price=usd)
    more = estimate(params=n, tokens=d * factor, gpu="h100", num_gpus=gpus, tflops=rate, price=usd)
    assert more.wall_clock_days == pytest.approx(one.wall_clock_days * factor, rel=1e-9)
    assert one.cost_usd == pytest.approx(one.gpu_hours * usd, rel=1e-12)
    assert one.gpu_hours == pytest.approx(one.wall_clock_days * 24 * gpus, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(params, tokens, tflops, devices)
def test_the_inverse_of_an_estimate_returns_its_throughput(n, d, rate, gpus):
    forward = estimate(params=n, tokens=d, gpu="a100", num_gpus=gpus, tflops=rate)
    inverse = estimate(params=n, tokens=d, gpu="a100", num_gpus=gpus, gpu_hours=forward.gpu_hours)
    assert inverse.achieved_tflops_per_gpu == pytest.approx(rate, rel=1e-9)
    assert inverse.mfu == pytest.approx(forward.mfu, rel=1e-9)


@settings(max_examples=80, deadline=None)
@given(st.floats(min_value=1e-3, max_value=1e300), st.floats(min_value=1e-3, max_value=1e300),
       st.floats(min_value=1e-12, max_value=1e6), st.integers(min_value=1, max_value=1_000_000))
def test_no_output_ever_contains_nan_or_inf(n, d, rate, gpus):
    try:
        est = estimate(params=n, tokens=d, gpu="h100", num_gpus=gpus, tflops=rate)
    except InputError as exc:
        assert "not a finite number" in str(exc) or "too" in str(exc)
        return
    json.loads(json.dumps(est.to_dict(), allow_nan=False))


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([8, 16, 64, 256, 1024]), st.sampled_from(["h100-sxm", "a100-sxm-80gb", "h800-sxm"]))
def test_step_estimates_are_finite_and_consistent(gpus, gpu):
    est = estimate(model="llama-3.1-8b", gpu=gpu, num_gpus=gpus)
    data = json.loads(json.dumps(est.to_dict(), allow_nan=False))
    assert data["time_model"] == "step"
    assert 0 < data["mfu"] <= data["hfu"] * 1.5 and data["hfu"] < 1
    layout = data["layout"]
    assert layout["tensor_parallel"] * layout["pipeline_parallel"] * layout["data_parallel"] \
        * layout["context_parallel"] == gpus
