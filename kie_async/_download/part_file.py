"""The temporary file a download is written to, renamed into place only once whole.

Created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``) after removing whatever had its name,
so a symlink planted there cannot point the write elsewhere; every disk operation runs in a
worker thread, one at a time, so a slow disk never stalls the event loop and a cancelled
download never closes a file another thread still writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from .._errors import DownloadError

log = logging.getLogger("kie_async")

T = TypeVar("T")


#: Create only a new file, never through a symlink, and keep it from child processes.
_CREATE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a file system that cannot fsync a directory is fine."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class PartFile:
    """The temporary file a download is written to; removed unless renamed into place.

    Every disk operation runs in a worker thread, one at a time: :meth:`discard` waits for the
    one in flight, so a cancelled download never closes a file another thread still writes.
    """

    def __init__(self, target: Path, url: str, task_id: str) -> None:
        self.target = target
        self.path = target.with_name(f".{target.name}.part")
        self._url = url
        self._task_id = task_id
        self._file: IO[bytes] | None = None
        self._identity: tuple[int, int] | None = None
        self._pending: asyncio.Future[Any] | None = None
        self._committed = False
        self.written = 0

    def _error(self, reason: str) -> DownloadError:
        return DownloadError(
            url=self._url, reason=reason, path=str(self.target), task_id=self._task_id
        )

    def complete(self) -> bool:
        """Whether a whole file is under the final name: only those are ever renamed there.
        A symlink there is not one (it is replaced by the download, never followed)."""
        try:
            info = os.lstat(self.target)
        except OSError:
            return False
        if stat.S_ISLNK(info.st_mode):
            log.warning("%s is a symlink; replacing it with the downloaded file", self.target)
            return False
        return stat.S_ISREG(info.st_mode)

    async def _in_thread(self, call: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[T] = loop.run_in_executor(None, call, *args)
        self._pending = pending
        # Shielded: if we are cancelled, the thread's work still completes and discard() can
        # wait for it before closing the file.
        return await asyncio.shield(pending)

    def _open_now(self) -> None:
        self._close_now()
        self.written = 0
        try:
            # Whatever has the name (a stale part file, a planted symlink) is removed, never
            # followed; O_EXCL then fails rather than follow anything planted in between.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            fd = os.open(self.path, _CREATE_FLAGS, 0o666)
        except OSError as exc:
            raise self._error(f"cannot create {self.path}: {exc.strerror or exc}") from exc
        info = os.fstat(fd)
        self._identity = (info.st_dev, info.st_ino)
        self._file = os.fdopen(fd, "wb")

    async def open(self) -> None:
        await self._in_thread(self._open_now)

    def _write_now(self, chunk: bytes | bytearray) -> None:
        assert self._file is not None
        try:
            self._file.write(chunk)
        except OSError as exc:
            raise self._error(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    async def write(self, chunk: bytes | bytearray) -> None:
        await self._in_thread(self._write_now, chunk)
        self.written += len(chunk)

    def _still_ours(self) -> bool:
        try:
            info = os.lstat(self.path)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self._identity

    def _commit_now(self) -> None:
        assert self._file is not None
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._close_now()
            if not self._still_ours():
                raise self._error(f"{self.path} was replaced by someone else while downloading")
            os.replace(self.path, self.target)
        except OSError as exc:
            raise self._error(f"cannot finish {self.target}: {exc.strerror or exc}") from exc
        self._committed = True
        _fsync_dir(self.target.parent)

    async def commit(self) -> None:
        """Flush to disk and rename into place, so the final name only ever holds whole files
        (a symlink there is replaced, not followed)."""
        await self._in_thread(self._commit_now)

    def _close_now(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def _discard_now(self) -> None:
        self._close_now()
        if not self._committed and self._still_ours():
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    async def discard(self) -> None:
        """Close and remove the temporary file, once the disk operation in flight is over."""
        pending = self._pending
        if pending is not None and not pending.done():
            try:
                await asyncio.wait({pending})
            except asyncio.CancelledError:
                pending.add_done_callback(self._discard_after)
                raise
        if pending is not None:
            self._discard_after(pending)
        else:
            self._discard_now()

    def _discard_after(self, done: asyncio.Future[Any]) -> None:
        if not done.cancelled():
            done.exception()  # retrieved: a failure there was raised to the caller, if any
        self._discard_now()
