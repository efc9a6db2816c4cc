"""The journal's lock: one run at a time per journal, and who holds it when another tries.

A run holds an exclusive ``fcntl.flock`` on the journal for its whole life; where there is no
``flock``, a ``<journal>.lock`` file created exclusively stands in for it. The holder takes the
lock a moment before it writes down who it is (its ``run`` line, or the lock file's content), so a
run that finds the journal locked reads again for up to :data:`HOLDER_WAIT` rather than name an
earlier, finished run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError

try:
    import fcntl

    _HAS_FLOCK = True
except ImportError:  # pragma: no cover - not on POSIX
    _HAS_FLOCK = False

#: Seconds a run that finds the journal locked waits for the holder to write down who it is: the
#: holder takes the lock a moment before its ``run`` line (or lock file) says so.
HOLDER_WAIT = 1.0


def now_iso() -> str:
    """The time now, as the journal writes it (UTC, to the second)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_all(fd: int) -> bytes:
    """All of the file open at ``fd``, from its start."""
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _may_be_running(holder: Mapping[str, Any]) -> bool:
    """Whether ``holder`` (a ``run`` line) may be the run holding the lock now: a process of
    another host may be; one of this host must still be alive."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, but another user's (PermissionError), or cannot tell
        return True
    return True


class JournalLock:
    """The lock one run holds on the journal at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_file: Path | None = None

    def acquire(self, fd: int) -> None:
        """Take the lock for this run, on ``fd`` (the journal, open for reading).

        Raises:
            ConfigurationError: another run holds it (named, once it has written who it is),
                or the file system has no locks.
        """
        if _HAS_FLOCK:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._wait_for_holder(lambda: self._holder(read_all(fd)))
                raise self._busy(holder) from None
            except OSError as exc:  # e.g. a network file system without locks
                raise ConfigurationError(
                    "journal",
                    f"cannot lock {self.path} ({exc.strerror or exc}): a journal needs a file "
                    "system with file locks, so that two runs cannot pay twice",
                ) from None
            return
        # No flock (Windows): a lock file made exclusively stands in for it; a run that died
        # leaves it behind, and the error says so.
        lock_file = self.path.with_name(self.path.name + ".lock")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": now_iso()}
        try:
            lock_fd = os.open(lock_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise self._busy(
                self._wait_for_holder(lambda: self._lock_file_holder(lock_file), stale_ok=True),
                f"; if that process is gone, delete {lock_file}",
            ) from None
        with os.fdopen(lock_fd, "w", encoding="utf-8") as out:
            json.dump(holder, out)
        self._lock_file = lock_file

    def release(self) -> None:
        """Give up a lock file taken where there is no flock (closing the journal releases
        a flock)."""
        if self._lock_file is not None:
            lock_file, self._lock_file = self._lock_file, None
            with contextlib.suppress(OSError):
                lock_file.unlink()

    def _busy(self, holder: Mapping[str, Any], hint: str = "") -> ConfigurationError:
        if holder:
            pid, host = holder.get("pid", "?"), holder.get("host", "?")
            mine = " (this process)" if pid == os.getpid() and host == socket.gethostname() else ""
            who = f"pid {pid}{mine} on {host}, started {holder.get('started', '?')}"
        else:
            who = "one that has not yet written down who it is"
        return ConfigurationError(
            "journal",
            f"{self.path} is in use by another run: {who}; one journal serves one run at a "
            f"time (wait for it to end, or use another journal){hint}",
        )

    @staticmethod
    def _wait_for_holder(
        read: Callable[[], dict[str, Any]], *, stale_ok: bool = False
    ) -> dict[str, Any]:
        """Who holds the lock, read again for up to :data:`HOLDER_WAIT` while it has not said
        so yet. A journal's last ``run`` line may be an earlier run's, whose process is gone:
        that one is not named. A lock file's holder whose process is gone is (``stale_ok``):
        it left the file behind, and the user must know which run that was."""
        deadline = time.monotonic() + HOLDER_WAIT
        while True:
            holder = read()
            if _may_be_running(holder):
                return holder
            if time.monotonic() >= deadline:
                return holder if stale_ok else {}
            time.sleep(0.01)

    @staticmethod
    def _lock_file_holder(lock_file: Path) -> dict[str, Any]:
        try:
            found = json.loads(lock_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    @staticmethod
    def _holder(data: bytes) -> dict[str, Any]:
        """The last ``run`` line of ``data``: who opened the journal last."""
        at = len(data)
        while True:
            at = data.rfind(b'{"event":"run"', 0, at)
            if at < 0:
                return {}
            end = data.find(b"\n", at)
            try:
                line = json.loads(data[at : end if end >= 0 else len(data)])
            except ValueError:
                continue
            if isinstance(line, dict):
                return line
