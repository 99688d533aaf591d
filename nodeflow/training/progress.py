"""A dependency-free progress bar for the training command (stderr, redrawn in place)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import torch


def format_seconds(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressBar:
    """Callable ``(step, total, loss)``; redraws at most every ``interval`` seconds.

    The loss tensor is read (a device synchronisation) only when the bar is drawn. When the
    stream is not a terminal (a log file), each draw is a line of its own.
    """

    def __init__(self, label: str, stream: TextIO = sys.stderr, interval: float = 0.5) -> None:
        self.label, self.stream, self.interval = label, stream, interval
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.terminal = stream.isatty()
        if not self.terminal:
            self.interval = max(interval, 15.0)

    def __call__(self, step: int, total: int, loss: torch.Tensor | float) -> None:
        now = time.perf_counter()
        if now - self.last_draw < self.interval and step != total:
            return
        self.last_draw = now
        elapsed = now - self.start
        rate = step / elapsed if elapsed > 0 else 0.0
        eta = (total - step) / rate if rate > 0 else 0.0
        filled = int(24 * step / total)
        line = (f"[{self.label}] |{'#' * filled}{'.' * (24 - filled)}| {step}/{total} "
                f"{rate:.2f} it/s elapsed {format_seconds(elapsed)} eta {format_seconds(eta)} "
                f"loss {float(loss):.4f}")
        self.stream.write(("\r" + line) if self.terminal else line + "\n")
        if self.terminal and step == total:
            self.stream.write("\n")
        self.stream.flush()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
