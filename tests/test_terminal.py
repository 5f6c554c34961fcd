"""Output in a real terminal: every command run in a pseudo-terminal of 80, 120 and 200 columns
exits 0 and prints no line wider than the terminal; piped output keeps whole lines. These run with
whichever tabulate is installed (CI's floor job: the lowest allowed; the main job: the latest)."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios

import pytest

from estimator.render import fit_table, render

GPT3_COMPARE = ["compare", "--model", "gpt3-175b", "--num-gpus", "1024"]
LISTINGS = [["gpus"], ["prices"], ["systems"], ["datasets"], ["models"], ["validate"],
            ["models", "show", "deepseek-v3", "--gpu", "h100"]]
ANSWERS = [GPT3_COMPARE,
           ["compare", "--params", "7B", "--tokens", "1T", "--num-gpus", "64"],
           ["estimate", "--model", "llama-3.1-70b", "--gpu", "h100", "--num-gpus", "512", "--tokens", "1T"],
           ["estimate", "--params", "7B", "--tokens", "1T", "--gpu", "h100", "--num-gpus", "64"]]


def in_terminal(args: list[str], columns: int) -> tuple[int, list[str]]:
    """Run ``gpucost ARGS`` with stdout, stderr and stdin on a pseudo-terminal ``columns`` wide;
    return its exit status and the lines it printed."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen([sys.executable, "-m", "estimator", *args], stdin=follower, stdout=follower,
                            stderr=follower, env=env, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    status = proc.wait(timeout=120)
    return status, b"".join(chunks).decode().replace("\r\n", "\n").splitlines()


def _too_wide(lines: list[str], columns: int) -> list[str]:
    return [f"{len(line)}: {line}" for line in lines if len(line) > columns]


@pytest.mark.parametrize("columns", [80, 120, 200])
@pytest.mark.parametrize("args", ANSWERS, ids=lambda a: " ".join(a[:3]))
def test_estimates_and_comparisons_fit_the_terminal_they_print_to(args, columns):
    status, lines = in_terminal(args, columns)
    assert status == 0, "\n".join(lines)
    assert not _too_wide(lines, columns)


@pytest.mark.parametrize("args", LISTINGS, ids=" ".join)
def test_every_listing_fits_a_120_column_terminal(args):
    status, lines = in_terminal(args, 120)
    assert status == 0, "\n".join(lines)
    assert not _too_wide(lines, 120)


@pytest.mark.parametrize("args", LISTINGS[:3] + LISTINGS[5:], ids=" ".join)
def test_every_listing_fits_an_80_column_terminal(args):
    status, lines = in_terminal(args, 80)
    assert status == 0, "\n".join(lines)
    assert not _too_wide(lines, 80)


def test_an_estimate_at_80_columns_puts_each_basis_under_its_value():
    status, lines = in_terminal(ANSWERS[2], 80)
    assert status == 0
    table = lines[:lines.index("")]
    assert len(table) <= 40  # was 63 lines, a 14-column basis wrapped word by word
    assert any(line.startswith("cost ") for line in table)


def test_a_dropped_column_is_named_and_wide_shows_it():
    status, lines = in_terminal(GPT3_COMPARE, 80)
    assert status == 0
    note = " ".join(lines[next(i for i, line in enumerate(lines) if "not shown at 80 columns" in line):])
    assert "layout" in note and "--wide" in note
    status, lines = in_terminal([*GPT3_COMPARE, "--wide"], 80)
    assert status == 0
    assert any("TP 2 x PP 16 x DP 32, 4 chunks per stage, micro-batch 1 of 1,536" in line for line in lines)


def test_piped_output_keeps_whole_lines():
    out = subprocess.run([sys.executable, "-m", "estimator", *GPT3_COMPARE], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "80"}, timeout=120)
    assert out.returncode == 0, out.stderr
    h800 = next(line for line in out.stdout.splitlines() if line.startswith("h800-sxm"))
    assert "micro-batch 1 of 1,536, recompute none, ZeRO 1" in h800 and "paper assumed" in h800


def test_bare_gpucost_shows_the_help_without_an_error():
    out = subprocess.run([sys.executable, "-m", "estimator"], capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 2)
    assert "Error" not in out.stdout + out.stderr
    assert "Usage: gpucost" in out.stdout and "estimate" in out.stdout


def test_formatted_numbers_in_a_fitted_table_stay_text():
    """tabulate 0.9-0.10 parse cells as numbers while wrapping them, whatever disable_numparse says
    ("1,024" -> int("1,024") -> ValueError); the fitted table wraps its cells itself."""
    rows = [("h100-sxm", "1,024", "1,251,719", "TP 2 x PP 16 x DP 32, 4 chunks per stage, micro-batch 1 of 1,536")] * 3
    text = render({}, "table", rows=rows, headers=("gpu", "devices", "device-hours", "layout"), width=50)
    assert "1,024" in text and "1,251,719" in text
    assert max(len(line) for line in text.splitlines()) <= 50


@pytest.mark.parametrize("width", [30, 44, 60, 90])
def test_a_fitted_table_never_exceeds_its_width(width):
    rows = [(f"row-{i}", "x" * (7 * i), "a few words " * i, f"{i * 1234567:,}") for i in range(1, 8)]
    headers = ("identifier", "a long header name", "words", "number")
    text = render({}, "table", rows=rows, headers=headers, width=width, optional=("words",))
    assert max(len(line) for line in text.splitlines()) <= width


def test_optional_columns_are_dropped_first_named_first():
    rows = [("a" * 10, "b" * 40, "c" * 40, "d" * 5)]
    _, headers, dropped = fit_table(rows, ("one", "two", "three", "four"), 40, optional=("three", "two"))
    assert dropped == ["three"] and headers == ["one", "two", "four"]
