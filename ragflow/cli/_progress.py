"""The initial-indexing progress display on stderr: a live bar (rich) on an interactive terminal, a plain
line every few seconds anywhere else (a pipe, a log file, a container's output)."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from rich.console import Console

    from ragflow.store import Progress

PLAIN_BAR_WIDTH = 24
"""Characters between the brackets of ``progress_line``'s bar."""


class ReportsProgress(Protocol):
    """What the display reads: a ``DocumentStore``."""

    def progress(self) -> Progress: ...


@dataclass(frozen=True, slots=True)
class ProgressFigures:
    """What both displays show of a ``Progress``."""

    fraction: float
    """How full the bar is, from 0 to 1."""
    text: str
    """Documents and chunks done/seen, rate and ETA; ``+`` after a total while sources still list."""


def progress_figures(p: Progress) -> ProgressFigures:
    """The bar's fill and the text beside it for ``p``."""
    more = "" if p.snapshot_complete else "+"
    # The chunks of an epoch are counted once it completes, so while the first epoch embeds, more chunks
    # are done than seen: the total is not known yet, and the bar follows the documents instead.
    chunks_known = p.chunks_seen >= p.chunks_embedded and p.chunks_seen > 0
    if chunks_known:
        fraction = p.chunks_embedded / p.chunks_seen
    else:
        fraction = p.documents_done / p.documents_seen if p.documents_seen else 0.0
    eta = f"{p.eta:4.0f}s" if chunks_known and p.eta is not None else "   ?"
    if p.snapshot_complete and p.chunks_seen == 0 == p.chunks_embedded:
        chunks_known, fraction, eta = True, 1.0, "   0s"  # nothing to embed (all restored or empty)
    chunks_total = f"{p.chunks_seen}{more}" if chunks_known else "?"
    restored = f"  ({p.documents_restored} restored)" if p.documents_restored else ""
    return ProgressFigures(
        fraction=min(fraction, 1.0),
        text=f"docs {p.documents_done}/{p.documents_seen}{more}{restored}  "
        f"chunks {p.chunks_embedded}/{chunks_total}  {p.chunk_rate:5.1f} chunks/s  ETA {eta}",
    )


def progress_line(p: Progress) -> str:
    """One line: a bar, documents and chunks done/seen, rate and ETA (``+`` while sources still list)."""
    figures = progress_figures(p)
    filled = int(PLAIN_BAR_WIDTH * figures.fraction)
    return f"[{'#' * filled}{'-' * (PLAIN_BAR_WIDTH - filled)}] {figures.text}"


class ProgressBar:
    """Shows a store's ``progress()`` on stderr from a thread until closed, and a last time on ``close``.

    On an interactive terminal it is a live bar redrawn in place, which rich fits to the terminal's
    width; log records (through ``StderrHandler``) and anything else written to ``sys.stderr`` meanwhile
    print above it. Anywhere else it is ``progress_line`` every ``log_interval`` seconds, so that logs
    stay readable. ``console`` replaces the one made for ``stream`` (tests pass a forced terminal).
    """

    def __init__(
        self,
        store: ReportsProgress,
        stream: TextIO | None = None,
        log_interval: float = 5.0,
        *,
        console: Console | None = None,
    ) -> None:
        # Imported here, not at the top: `query` and `status` import this package and draw no bar.
        from rich.console import Console

        self.store = store
        self.console = console or Console(file=stream or sys.stderr)
        self._display: _LiveBar | _PlainLines = (
            _LiveBar(self.console)
            if self.console.is_interactive
            else _PlainLines(self.console.file, log_interval)
        )
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ragflow-progress", daemon=True)

    def __enter__(self) -> ProgressBar:
        self._display.start()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self, final: bool = True) -> None:
        """Stop redrawing; with ``final``, show the progress once more (as it ends)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join()
        if final:
            self._display.show(self.store.progress())
        self._display.stop()

    def _run(self) -> None:
        while not self._closed.wait(self._display.interval):
            self._display.show(self.store.progress())


class _PlainLines:
    """``progress_line`` on a stream, one line per reading."""

    def __init__(self, stream: IO[str], interval: float) -> None:
        self.stream = stream
        self.interval = interval

    def start(self) -> None:
        pass  # the first line comes after an interval: a short run prints only its last line

    def show(self, progress: Progress) -> None:
        print(progress_line(progress), file=self.stream, flush=True)

    def stop(self) -> None:
        pass


class _LiveBar:
    """A rich progress bar with ``ProgressFigures.text`` beside it, live on a terminal console."""

    interval = 0.2

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, Progress, TextColumn

        self._bar = Progress(
            BarColumn(bar_width=None),
            TextColumn("{task.description}", markup=False),
            console=console,
            auto_refresh=False,  # redrawn after each reading (and by rich when something prints above it)
            redirect_stdout=False,  # stdout carries results, printed once the bar is done
            redirect_stderr=True,
            expand=True,
        )
        self._task = self._bar.add_task("", total=1.0)

    def start(self) -> None:
        self._bar.start()

    def show(self, progress: Progress) -> None:
        figures = progress_figures(progress)
        self._bar.update(self._task, completed=figures.fraction, description=figures.text, refresh=True)

    def stop(self) -> None:
        self._bar.stop()
