"""A dependency-free progress bar for stderr: redrawn in place on a terminal, one line per step otherwise.

On a terminal the line is cut to the terminal's current width (read again at every step, so a
resize is followed), so it never wraps: a wrapped line is what leaves stale rows behind when
``\\r`` returns only to the start of the last row. The estimated time left is the average time of the
steps done so far times the steps still to do. In a log (stderr not a terminal) every step is one
whole line, never cut. ``enabled=False`` (``gpucost profile --quiet``) prints nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

MIN_BAR = 10  # on a narrow terminal the bar shrinks to this many cells, then goes
LABEL_ROOM = 20  # characters of the label kept before the bar is given up
ELLIPSIS = "..."


def format_seconds(seconds: float) -> str:
    """``42`` -> ``"42s"``, ``185`` -> ``"3m05s"``, ``7300`` -> ``"2h01m"``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def terminal_columns(stream: TextIO, default: int = 80) -> int:
    """The width of the terminal ``stream`` writes to; ``$COLUMNS`` when set, else ``default``."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return os.get_terminal_size(stream.fileno()).columns or default
    except (AttributeError, ValueError, OSError):  # no file descriptor, or not a terminal
        return default


class ProgressBar:
    """``bar(done, total, label)`` draws ``[#####.....]  5/10  12s, ~12s left  matmul bf16 4096x4096x4096``.

    ``stream`` defaults to stderr; ``width`` is the bar's width in cells when the terminal has room
    (it shrinks, then goes, before the counts and times do); ``columns`` fixes the terminal width
    (default: read from the terminal at each step).
    """

    def __init__(self, stream: TextIO | None = None, width: int = 24, enabled: bool = True, *,
                 columns: int | None = None, clock: Callable[[], float] = time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = enabled
        self.columns = columns
        self.clock = clock
        self.start_s = clock()
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError, OSError):
            self.tty = False
        self._drawn = False

    def eta_s(self, done: int, total: int) -> float | None:
        """Seconds left: the mean time per step so far x the steps left; None before the first step."""
        if done <= 0 or total <= 0:
            return None
        return max(0.0, (self.clock() - self.start_s) / done * max(total - done, 0))

    def line(self, done: int, total: int, label: str, columns: int | None = None) -> str:
        """The text of one update; at most ``columns - 1`` characters when ``columns`` is given."""
        total_text = str(total)
        counts = f"{done:>{len(total_text)}}/{total_text}"
        elapsed = format_seconds(self.clock() - self.start_s)
        eta = self.eta_s(done, total)
        times = f"{elapsed}, ~{format_seconds(eta)} left" if eta is not None and done < total else elapsed
        label = " ".join(label.split())  # one line, whatever the caller sent

        def bar(cells: int) -> str:
            filled = cells * min(max(done, 0), max(total, 1)) // max(total, 1)
            return f"[{'#' * filled}{'.' * (cells - filled)}] "

        if columns is None:
            return f"{bar(self.width)}{counts}  {times}  {label}"
        room = max(columns - 1, 1)  # the last column stays empty: some terminals wrap on it
        fixed = f"{counts}  {times}"
        # Keep LABEL_ROOM characters of the label if the bar can shrink to make room for them.
        cells = min(self.width, room - len(fixed) - len("[] ") - len("  ") - LABEL_ROOM)
        head = (bar(cells) if cells >= MIN_BAR else "") + fixed
        text = f"{head}  {label}"
        if len(text) <= room:
            return text
        if room - len(head) - len("  ") > len(ELLIPSIS):
            return text[:room - len(ELLIPSIS)] + ELLIPSIS
        return head[:room]

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            columns = self.columns or terminal_columns(self.stream)
            self.stream.write("\r" + self.line(done, total, label, columns) + "\033[K")
        else:
            self.stream.write(self.line(done, total, label) + "\n")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the in-place line so later output starts on a fresh one."""
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
