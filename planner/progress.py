"""Progress on stderr for the long runs (simulations, what-if grids, calibrate, validate), drawn
with ``rich.progress``, only for a person watching a terminal.

Nothing is written when stderr is not a TTY (pipes, files, CI), when the command prints a
document (``--json``, ``--format json|yaml``: a script is reading), or before ``delay_s`` has
passed, so quick runs look as they always did. One daemon thread draws the bar (label, done/total
where known, elapsed time) about twice a second and erases it when the work ends, however it ends
(``transient``). rich never redirects stdout or stderr here, so the command's output stays where
it was; on a terminal whose encoding is not UTF-8 rich draws the bar in ASCII.
"""

from __future__ import annotations

import sys
import threading

DOCUMENT_FORMATS = ("json", "yaml")


def _document_output() -> bool:
    """True when the running pdplan command prints a JSON/YAML document (see planner.cli)."""
    click = sys.modules.get("click")
    ctx = click.get_current_context(silent=True) if click is not None else None
    return ctx is not None and ctx.meta.get("pdplan.format") in DOCUMENT_FORMATS


class Progress:
    """``with Progress("simulating 20,000 requests") as p: ... p.update(done, total)``."""

    def __init__(self, label: str, total: int | None = None, stream=None, delay_s: float = 1.0,
                 interval_s: float = 0.5, quiet: bool | None = None):
        self.label, self.total, self.done = label, total, 0
        self.stream = sys.stderr if stream is None else stream
        self.delay_s, self.interval_s = delay_s, interval_s
        self.quiet = _document_output() if quiet is None else quiet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        if self.quiet:
            return False
        try:
            return bool(self.stream.isatty())
        except (AttributeError, ValueError, OSError):
            return False

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total

    def _columns(self):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

        cols = [TextColumn("{task.description}")]
        if self.total:
            cols += [BarColumn(bar_width=30), MofNCompleteColumn()]
        return [*cols, TimeElapsedColumn()]

    def _run(self) -> None:
        if self._stop.wait(self.delay_s):
            return
        from rich.console import Console
        from rich.progress import Progress as Bar

        try:
            console = Console(file=self.stream, highlight=False)
            with Bar(*self._columns(), console=console, transient=True, auto_refresh=False,
                     redirect_stdout=False, redirect_stderr=False) as bar:
                task = bar.add_task(self.label, total=self.total)
                while not self._stop.is_set():
                    bar.update(task, completed=self.done, total=self.total)
                    bar.refresh()
                    self._stop.wait(self.interval_s)
        except (OSError, ValueError):  # a closed or broken stderr: give up quietly
            self._stop.set()

    def __enter__(self) -> Progress:
        if self.active:
            self._thread = threading.Thread(target=self._run, name="pdplan-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        return None
