"""A progress line on stderr for the long runs (simulations, what-if grids), only on a terminal.

Nothing is written when stderr is not a TTY (pipes, files, CI, ``--json`` consumers), and
nothing before ``delay_s`` has passed, so quick runs look as they always did. The line is redrawn
in place (``\\r``) by a daemon thread about twice a second and erased when the work ends, however
it ends. Plain ASCII, so it works under ``LANG=C``.
"""

from __future__ import annotations

import sys
import threading
import time


class Progress:
    """``with Progress("simulating 20,000 requests") as p: ... p.update(done, total)``."""

    def __init__(self, label: str, total: int | None = None, stream=None, delay_s: float = 1.0,
                 interval_s: float = 0.5):
        self.label, self.total, self.done = label, total, 0
        self.stream = sys.stderr if stream is None else stream
        self.delay_s, self.interval_s = delay_s, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown = 0  # width of the line last drawn
        self._t0 = 0.0

    @property
    def active(self) -> bool:
        try:
            return bool(self.stream.isatty())
        except (AttributeError, ValueError, OSError):
            return False

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total

    def text(self) -> str:
        elapsed = time.monotonic() - self._t0
        count = f" {self.done:,}/{self.total:,}" if self.total else ""
        return f"{self.label}...{count} {elapsed:.0f} s"

    def _draw(self, line: str) -> None:
        try:
            pad = max(self._shown - len(line), 0)
            self.stream.write("\r" + line + " " * pad)
            self.stream.flush()
            self._shown = len(line)
        except (OSError, ValueError):  # a closed or broken stderr: give up quietly
            self._stop.set()

    def _run(self) -> None:
        if self._stop.wait(self.delay_s):
            return
        while not self._stop.is_set():
            self._draw(self.text())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Progress:
        self._t0 = time.monotonic()
        if self.active:
            self._thread = threading.Thread(target=self._run, name="pdplan-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            if self._shown:
                self._draw("")
                try:
                    self.stream.write("\r")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
        return None
