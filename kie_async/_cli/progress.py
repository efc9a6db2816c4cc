"""Progress display of the ``kie-async`` command: a rich bar on a terminal, else plain lines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TextIO

from .._bulk.outcomes import Progress

INSTALL_HINT = "the cli extra, or pip install rich"

#: Seconds left at the earliest, before any task has finished, given the progress, the
#: number of jobs and the seconds since the run began: from the rate limit and the poll
#: schedule (:func:`first_estimate`).
Estimate = Callable[[Progress, int, float], float]


def first_estimate(creates_per_second: float | None, first_poll: float) -> Estimate:
    """The earliest the run can end, before any task has finished: the creates still to send
    at the rate limit (``None``: no limit), then ``first_poll`` (the delay from a create to
    its task's first poll) for the last of them. Once every create is sent, it counts down
    as that first poll comes nearer."""
    # The last moment (seconds into the run) a create was seen still unsent: the last create
    # went out after it, so its first poll comes no sooner than first_poll later.
    sending_until = 0.0

    def estimate(progress: Progress, total: int, elapsed: float) -> float:
        nonlocal sending_until
        unsent = max(total - progress.submitted - progress.failed - progress.uncertain, 0)
        if unsent:
            sending_until = elapsed
            return unsent / creates_per_second + first_poll if creates_per_second else first_poll
        return max(sending_until + first_poll - elapsed, 0.0)

    return estimate


def _clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _pace(
    progress: Progress, total: int, elapsed: float, estimate: Estimate | None = None
) -> tuple[str, str]:
    """The finishing rate and the estimated time left, as text; before the first task ends,
    the earliest end from ``estimate`` (``>=0:18``), when there is one."""
    if progress.done >= total:
        return f"{total / elapsed:.1f}/s" if elapsed > 0 else "-", "0:00"
    if progress.done == 0 or elapsed <= 0:
        return "-", ">=" + _clock(estimate(progress, total, elapsed)) if estimate else "?"
    rate = progress.done / elapsed
    return f"{rate:.1f}/s", _clock((total - progress.done) / rate)


def progress_line(
    progress: Progress, total: int, elapsed: float, estimate: Estimate | None = None
) -> str:
    """One plain progress line, e.g. ``[2.1s] done 12/36 · submitted 30 · ... · ETA 0:04``."""
    rate, eta = _pace(progress, total, elapsed, estimate)
    stamp = f"{elapsed:.1f}s" if elapsed < 60 else _clock(elapsed)
    return (
        f"[{stamp}] done {progress.done}/{total} · submitted {progress.submitted} · "
        f"running {progress.running} · failed {progress.failed} · "
        f"uncertain {progress.uncertain} · {rate} · ETA {eta}"
    )


class _Display:
    """Shows a bulk run's progress while it runs; refreshed by a ticker every ``interval``."""

    def __init__(
        self, stream: TextIO, total: int, interval: float, estimate: Estimate | None = None
    ) -> None:
        self.stream = stream
        self.total = total
        self.interval = interval
        self.estimate = estimate
        self.latest = Progress()
        self.started = time.monotonic()
        self._ticker: asyncio.Future[None] | None = None

    def update(self, progress: Progress) -> None:
        self.latest = progress
        if self._ticker is None:
            # Drawn from the first update on: a run that ends before it (its account check
            # failed, say) leaves no progress line behind.
            self.begin()
            self._ticker = asyncio.ensure_future(self._tick())

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def __aenter__(self) -> _Display:
        self.started = time.monotonic()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.wait([self._ticker])
            self.end()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.refresh()

    def begin(self) -> None:
        """Called once before the run."""

    def refresh(self) -> None:
        """Called every ``interval`` seconds."""

    def end(self) -> None:
        """Called once after the run, even an interrupted one."""


class _PlainDisplay(_Display):
    """Plain lines, for logs and pipes: one per interval when something changed (and now and
    then when nothing did, so a long wait does not look like a hang), and a last one."""

    QUIET_INTERVALS = 6

    def __init__(
        self, stream: TextIO, total: int, interval: float, estimate: Estimate | None = None
    ) -> None:
        super().__init__(stream, total, interval, estimate)
        self._shown: Progress | None = None
        self._shown_at = time.monotonic()

    def refresh(self) -> None:
        quiet = time.monotonic() - self._shown_at
        if self.latest != self._shown or quiet >= self.QUIET_INTERVALS * self.interval:
            self._show()

    def end(self) -> None:
        self._show()

    def _show(self) -> None:
        self._shown = self.latest
        self._shown_at = time.monotonic()
        line = progress_line(self.latest, self.total, self.elapsed, self.estimate)
        print(line, file=self.stream, flush=True)


class _BarDisplay(_Display):
    """A live ``rich`` progress bar on a terminal. Raises ImportError without ``rich``."""

    def __init__(self, stream: TextIO, total: int, estimate: Estimate | None = None) -> None:
        super().__init__(stream, total, interval=0.2, estimate=estimate)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
        from rich.progress import Progress as Bar

        self._bar = Bar(
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[pace]}"),
            console=Console(file=stream),
            auto_refresh=False,
        )
        self._task = self._bar.add_task("extending", total=total, counts="", pace="")

    def begin(self) -> None:
        self._bar.start()
        self.refresh()

    def refresh(self) -> None:
        p = self.latest
        rate, eta = _pace(p, self.total, self.elapsed, self.estimate)
        failed = f"[red]failed {p.failed}[/]" if p.failed else "failed 0"
        uncertain = f" · [yellow]uncertain {p.uncertain}[/]" if p.uncertain else ""
        counts = f"submitted {p.submitted} · running {p.running} · {failed}{uncertain}"
        pace = f"{rate} ETA {eta}"
        self._bar.update(self._task, completed=p.done, counts=counts, pace=pace)
        self._bar.refresh()

    def end(self) -> None:
        self.refresh()
        self._bar.stop()


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (OSError, ValueError):
        return False


def open_display(
    stream: TextIO, total: int, interval: float, estimate: Estimate | None = None
) -> _Display:
    """A bar on a terminal (if ``rich`` is installed), plain lines otherwise."""
    if is_terminal(stream):
        try:
            return _BarDisplay(stream, total, estimate)
        except ImportError:
            print(f"(for a live progress bar: {INSTALL_HINT})", file=stream, flush=True)
    return _PlainDisplay(stream, total, interval, estimate)
