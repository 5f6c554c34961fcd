"""The profile progress bar: cut to the terminal's width (no wrapped, stale rows), an ETA, one
whole line per step in a log, silent when disabled."""

from __future__ import annotations

import importlib.util
import io
import re
from pathlib import Path

import pytest

# profiler/__init__ imports torch; the progress bar itself does not, so load its file alone.
_spec = importlib.util.spec_from_file_location(
    "_progress", Path(__file__).resolve().parents[1] / "profiler" / "progress.py")
progress = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(progress)
ProgressBar, format_seconds = progress.ProgressBar, progress.format_seconds

LABEL = "matmul bf16 16384x8192x8192 (pass 2 of 3)"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drawn_lines(text: str) -> list[str]:
    """What each redraw puts on the terminal row: the text between a \\r and the clear-to-end."""
    return re.findall(r"\r(.*?)\x1b\[K", text)


def test_a_log_gets_one_whole_line_per_step_with_elapsed_time_and_eta():
    clock, stream = Clock(), io.StringIO()
    bar = ProgressBar(stream, width=10, clock=clock, columns=30)  # columns apply to a terminal only
    clock.now += 10
    bar(2, 10, LABEL)
    clock.now += 10
    bar(10, 10, "done")
    bar.close()
    assert stream.getvalue().splitlines() == [f"[##........]  2/10  10s, ~40s left  {LABEL}",
                                              "[##########] 10/10  20s  done"]
    assert stream.getvalue().endswith("done\n")


@pytest.mark.parametrize("columns", [20, 40, 60, 80, 200])
def test_on_a_terminal_every_redraw_fits_the_width(columns):
    clock, stream = Clock(), Terminal()
    bar = ProgressBar(stream, clock=clock, columns=columns)
    for done in range(0, 31, 5):
        clock.now += 65
        bar(done, 30, LABEL + " and a long tail of words" * 3)
    bar.close()
    lines = drawn_lines(stream.getvalue())
    assert len(lines) == 7
    assert all(len(line) <= columns - 1 for line in lines), max(lines, key=len)
    assert all("/30" in line for line in lines)  # the counts survive the narrowest terminal
    assert stream.getvalue().endswith("\n") and stream.getvalue().count("\n") == 1


def test_on_a_wide_terminal_the_whole_label_and_eta_show():
    clock, stream = Clock(), Terminal()
    bar = ProgressBar(stream, clock=clock, columns=120)
    clock.now += 185
    bar(5, 10, LABEL)
    (line,) = drawn_lines(stream.getvalue())
    assert line == f"[############............]  5/10  3m05s, ~3m05s left  {LABEL}"


def test_a_narrow_terminal_shortens_the_bar_then_the_label():
    clock, stream = Clock(), Terminal()
    bar = ProgressBar(stream, clock=clock, columns=60)
    clock.now += 30
    bar(5, 10, LABEL)
    (line,) = drawn_lines(stream.getvalue())
    assert line.startswith("[") and line.index("]") < 24 and line.endswith("...")
    assert len(line) == 59


def test_the_terminal_width_is_read_at_every_step(monkeypatch):
    stream = Terminal()
    bar = ProgressBar(stream, clock=Clock())
    monkeypatch.setenv("COLUMNS", "100")
    bar(1, 4, LABEL)
    monkeypatch.setenv("COLUMNS", "30")
    bar(2, 4, LABEL)
    wide, narrow = drawn_lines(stream.getvalue())
    assert len(wide) > 29 and len(narrow) <= 29


def test_disabled_prints_nothing():
    for stream in (io.StringIO(), Terminal()):
        bar = ProgressBar(stream, enabled=False)
        bar(1, 2, LABEL)
        bar.close()
        assert stream.getvalue() == ""


def test_no_eta_before_the_first_step_and_newlines_in_a_label_are_flattened():
    stream = io.StringIO()
    bar = ProgressBar(stream, clock=Clock(), width=4)
    bar(0, 3, "warming up\nthe device")
    assert stream.getvalue() == "[....] 0/3  0s  warming up the device\n"


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 42.4, 60, 185, 3600, 7300)] == ["0s", "42s", "1m00s", "3m05s", "1h00m",
                                                                           "2h01m"]
