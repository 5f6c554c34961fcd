"""A dependency-free progress bar for stderr: redrawn in place on a terminal, one line per step otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``bar(done, total, label)`` draws ``[#####.....]  5/10  12s  matmul bf16 4096x4096x4096``."""

    def __init__(self, stream: TextIO | None = None, width: int = 24, enabled: bool = True):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = enabled
        self.start_s = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = False

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self.enabled:
            return
        filled = self.width * done // max(total, 1)
        line = (f"[{'#' * filled}{'.' * (self.width - filled)}] {done:>{len(str(total))}}/{total} "
                f"{time.monotonic() - self.start_s:4.0f}s  {label}")
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the in-place line so later output starts on a fresh one."""
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
