"""Standard output and error that may fail: a closed pipe (``| head``), a full disk, a reader
that stopped reading. Nothing the command prints may stand between a signal (or a money
decision) and its effect.

In the console script (:func:`installed`), ``sys.stdout`` and ``sys.stderr`` become
:class:`Output` streams. A write only queues its bytes for one writer thread, which writes
them in order to file descriptors 1 and 2; so a print, a log line or a progress bar never
raises and never blocks the event loop. A descriptor whose write fails (EPIPE, ENOSPC, EIO)
is given up for good, and what it was sent later is dropped; a reader that stops reading holds
up only the writer thread, and what piles up past :data:`_QUEUE_LIMIT` is dropped. A reader
that went away (EPIPE, on either stream) is told to :meth:`Outputs.on_reader_gone`: the command
stops as a Unix tool that SIGPIPE ends, but cleanly (a bulk run saves its journal). At the end
:meth:`Outputs.settle` waits for the writer: as long as it takes after a normal end (as any
Unix tool waits for its reader), at most :data:`_DRAIN_AFTER_STOP` seconds after a signal.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import io
import os
import select
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TextIO, cast

from .context import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK

#: Exit status when standard output was closed before everything was written (``| head``):
#: 128 + SIGPIPE, what a shell reports for a Unix tool that a closed pipe ends.
EXIT_OUTPUT_CLOSED = 141

#: Bytes waiting for a reader that does not read; what comes beyond them is dropped.
_QUEUE_LIMIT = 1 << 20
#: Seconds the output may take to drain after a signal, before the command exits regardless.
_DRAIN_AFTER_STOP = 2.0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:  # a descriptor someone else made non-blocking
            select.select([], [fd], [], 1.0)
            continue
        view = view[written:]


def _reader_gone(failure: OSError | None) -> bool:
    return failure is not None and failure.errno in (errno.EPIPE, errno.ECONNRESET)


class _Writer:
    """Writes queued chunks to their file descriptors, in order, in a daemon thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._chunks: collections.deque[tuple[int, bytes]] = collections.deque()
        self._queued = 0
        self._busy = False
        self._closed = False
        #: The error that ended each descriptor given up.
        self.failures: dict[int, OSError] = {}
        #: Called (in the writer thread) at the first write that finds its reader gone.
        self.on_reader_gone: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name="kie-async output", daemon=True)
        self._thread.start()

    def put(self, fd: int, data: bytes) -> None:
        with self._cond:
            if fd in self.failures or self._queued + len(data) > _QUEUE_LIMIT:
                return
            self._chunks.append((fd, data))
            self._queued += len(data)
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._chunks or self._closed)
                if not self._chunks:
                    return
                fd, data = self._chunks.popleft()
                self._busy = True
            failure: OSError | None = None
            try:
                _write_all(fd, data)
            except OSError as exc:
                failure = exc
            with self._cond:
                self._queued -= len(data)
                self._busy = False
                if failure is not None:
                    self.failures.setdefault(fd, failure)
                    kept = [chunk for chunk in self._chunks if chunk[0] != fd]
                    self._queued = sum(len(chunk[1]) for chunk in kept)
                    self._chunks = collections.deque(kept)
                self._cond.notify_all()
                gone = None
                if _reader_gone(failure):
                    gone, self.on_reader_gone = self.on_reader_gone, None
            if gone is not None:
                with contextlib.suppress(Exception):
                    gone()

    def drain(self, timeout: float | None) -> bool:
        """Wait until everything queued is written (or given up); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._chunks and not self._busy, timeout)

    def close(self) -> None:
        """Let the thread end once the queue is empty (a blocked write keeps it, a daemon)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Output(io.TextIOBase):
    """A text stream on a file descriptor whose writes never raise nor block: they are handed
    to the writer thread (see the module's docstring). ``isatty`` and ``fileno`` are the
    original stream's, so progress bars and terminals are detected as before."""

    def __init__(self, stream: TextIO, fd: int, writer: _Writer) -> None:
        super().__init__()
        self._stream = stream
        self._fd = fd
        self._writer = writer
        self._encoding = getattr(stream, "encoding", None) or "utf-8"

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "backslashreplace"

    def write(self, text: str) -> int:
        if os.linesep != "\n":
            text = text.replace("\n", os.linesep)
        try:
            data = text.encode(self._encoding, "backslashreplace")
        except (LookupError, TypeError, AttributeError):  # not text, or an unknown codec
            data = str(text).encode("utf-8", "backslashreplace")
        self._writer.put(self._fd, data)
        return len(text)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        """Nothing to do: the writer thread writes each chunk as soon as it can."""

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        try:
            return bool(self._stream.isatty())
        except (OSError, ValueError, AttributeError):
            return False

    @property
    def failure(self) -> OSError | None:
        """The error that made this stream give up its descriptor, if one did."""
        return self._writer.failures.get(self._fd)


class Outputs:
    """The console script's two :class:`Output` streams and their writer."""

    def __init__(self, out: Output, err: Output, writer: _Writer) -> None:
        self.out = out
        self.err = err
        self._writer = writer

    def on_reader_gone(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` once, from the writer thread, when a write finds that the reader
        of standard output or error went away (EPIPE)."""
        self._writer.on_reader_gone = callback

    def settle(self, status: int) -> int:
        """Wait for the output to be written, and the exit status it makes: a closed standard
        output gives :data:`EXIT_OUTPUT_CLOSED` (unless the command was interrupted); one that
        failed otherwise (a full disk) is reported on standard error and makes a success a
        failure."""
        self._writer.on_reader_gone = None
        after_signal = status in (EXIT_INTERRUPTED, EXIT_OUTPUT_CLOSED)
        self._writer.drain(_DRAIN_AFTER_STOP if after_signal else None)
        failure = self.out.failure
        if failure is None or after_signal:
            return status
        if _reader_gone(failure):
            return EXIT_OUTPUT_CLOSED
        reason = failure.strerror or type(failure).__name__
        self.err.write(f"error: cannot write standard output: {reason}\n")
        self._writer.drain(_DRAIN_AFTER_STOP)
        return EXIT_FAILED if status == EXIT_OK else status


@contextlib.contextmanager
def installed() -> Iterator[Outputs | None]:
    """``sys.stdout`` and ``sys.stderr`` as :class:`Output` streams for the block (``None``,
    and the streams left as they are, when they have no file descriptors: captured in a
    test, say)."""
    stdout, stderr = sys.stdout, sys.stderr
    try:
        out_fd, err_fd = stdout.fileno(), stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield None
        return
    for stream in (stdout, stderr):
        with contextlib.suppress(Exception):
            stream.flush()  # what was written before goes first
    writer = _Writer()
    outputs = Outputs(Output(stdout, out_fd, writer), Output(stderr, err_fd, writer), writer)
    sys.stdout, sys.stderr = cast(TextIO, outputs.out), cast(TextIO, outputs.err)
    try:
        yield outputs
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        writer.close()


def tell(text: str) -> None:
    """One line on standard error that can never raise (a signal handler's note)."""
    with contextlib.suppress(Exception):
        print(text, file=sys.stderr, flush=True)
