import pytest

from estimator.errors import InputError
from estimator.numbers import parse_duration_s, parse_quantity, usd


@pytest.mark.parametrize(
    ("text", "value"),
    [("175e9", 175e9), ("175B", 175e9), ("14.8T", 14.8e12), ("2.664M", 2.664e6), ("1e21", 1e21),
     ("37b", 37e9), ("2K", 2000.0), ("1_000", 1000.0), ("$2", 2.0), ("0.5", 0.5), (80, 80.0), ("1.2G", 1.2e9)],
)
def test_parse_quantity_accepts_suffixes_and_exponents(text, value):
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["-5", "abc", "12X", "", "1e400", "nan", "0"])
def test_parse_quantity_rejects_bad_values_naming_the_option(text):
    with pytest.raises(InputError, match="--tokens"):
        parse_quantity(text, what="--tokens")


def test_parse_quantity_allows_zero_only_when_asked():
    assert parse_quantity("0", allow_zero=True) == 0.0


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * 86400), ("12h", 12 * 3600), ("2w", 14 * 86400), ("90", 90 * 86400)])
def test_parse_duration_understands_units(text, seconds):
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["30x", "-3d", "d", "0d", "1e-320s", "5m", "1e400d"])
def test_parse_duration_rejects_bad_durations(text):
    with pytest.raises(InputError, match="--deadline"):
        parse_duration_s(text)


def test_usd_formats_large_and_small_amounts():
    assert usd(5_328_000) == "$5,328,000"
    assert usd(12.345) == "$12.35"
    assert usd(None) == "n/a"
