"""Saving result files to disk: streamed, bounded, checked, atomic, and resumable by rerunning.

A file is written to ``.<name>.part`` in the destination directory and renamed into place with
``os.replace`` only once it is complete (its size matches ``Content-Length``) and flushed to
disk. So a file under its final name is always whole, a rerun skips it without a request, and a
failed or cancelled download removes its temporary file.

The temporary file is created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``) after removing
whatever had its name, so a symlink planted there cannot point the write elsewhere; a symlink
under the final name is replaced, never followed or skipped as "complete". Writes and fsyncs
run in a worker thread, so a slow disk never stalls the event loop. Redirects are followed here,
hop by hop, so each one is checked: never from https to plain http, never to another scheme.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import re
import stat
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol, TypeVar
from urllib.parse import unquote, urljoin, urlsplit

import attrs

from ._errors import ConfigurationError, DownloadError, KieError, TransportError, ValidationError
from ._models import TaskRecord
from ._polling import RetryPolicy
from ._retry import Schedule, retry_call

__all__ = ["DownloadPolicy"]

log = logging.getLogger("kie_async")

T = TypeVar("T")

#: Bytes read at a time: memory use stays flat whatever the file size.
CHUNK_SIZE = 64 * 1024
#: Bytes handed to the writer thread at a time (fewer thread hops per file).
WRITE_SIZE = 4 * CHUNK_SIZE
#: File-host answers that mean the link is dead or expired: ask kie.ai for a fresh one.
EXPIRED_STATUSES = frozenset({403, 404, 410})
#: Answers that send the GET elsewhere; each hop is checked by :func:`redirect_target`.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")
_MAX_STEM = 120


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(attribute.name, f"must be a number > 0, got {value!r}")
    if math.isinf(value):
        raise ConfigurationError(attribute.name, "must be finite")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError(attribute.name, f"must be a number >= 0, got {value!r}")
    if math.isinf(value):
        raise ConfigurationError(attribute.name, "must be finite")


def _redirects(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ConfigurationError(attribute.name, f"must be an int from 0 to 100, got {value!r}")


@attrs.frozen
class DownloadPolicy:
    """How long fetching a result file may take, so a stalled or trickling file host cannot
    hold a download for ever.

    A download fails with :class:`DownloadError` (caused by a :class:`TransportError`, so the
    client's :class:`RetryPolicy` retries it first) when:

    * the connection and the file host's status line and headers take longer than the
      client's ``connect_timeout`` plus ``read_timeout`` seconds (however slowly they trickle);
    * no byte of the body arrives for ``read_timeout`` seconds;
    * fewer than ``min_speed`` bytes per second arrive on average over any ``speed_window``
      seconds (``min_speed=0`` switches this off). A host sending one byte a second is given
      up on after about ``speed_window`` seconds.

    The defaults (30 s, 16 KiB/s over 30 s) let any working connection finish: a 100 MB video
    needs at most about 100 minutes at the minimum speed, and a typical one a few seconds.
    At most ``max_redirects`` redirects are followed per GET.

    Example::

        KieClient(download=DownloadPolicy(read_timeout=60, min_speed=4096, speed_window=120))
    """

    read_timeout: float = attrs.field(default=30.0, validator=_positive)
    min_speed: float = attrs.field(default=16 * 1024.0, validator=_non_negative)
    speed_window: float = attrs.field(default=30.0, validator=_positive)
    max_redirects: int = attrs.field(default=10, validator=_redirects)


class SpeedCheck:
    """Whether a body arrives fast enough: at least ``min_speed`` bytes per second, averaged
    over windows of ``window`` seconds (like curl's ``--speed-limit``/``--speed-time``). Pure:
    the caller passes the clock."""

    __slots__ = ("_bytes", "_min_speed", "_since", "_total", "_window")

    def __init__(self, min_speed: float, window: float, now: float) -> None:
        self._min_speed = min_speed
        self._window = window
        self._since = now
        self._bytes = 0
        self._total = 0

    def feed(self, now: float, size: int) -> str | None:
        """Count ``size`` bytes that arrived at ``now``; returns why the body is too slow, or
        ``None`` while it is fast enough."""
        self._bytes += size
        self._total += size
        elapsed = now - self._since
        if elapsed < self._window or not self._min_speed:
            return None
        rate = self._bytes / elapsed
        if rate < self._min_speed:
            return (
                f"the file host sent {self._bytes} bytes in {elapsed:.1f}s ({rate:.0f} B/s), "
                f"below the minimum of {self._min_speed:g} B/s"
            )
        self._since, self._bytes = now, 0
        return None


def file_name(task_id: str, index: int, url: str) -> str:
    """``<task_id>_<index><ext>``, safe on every file system and unique per task id; the
    extension comes from the URL's path (``.mp4`` when it has none that looks like one).

    An id made only of letters, digits, ``_``, ``.`` and ``-`` (with no upper case letter and
    no leading dot) keeps its name as it is. Any other id is made safe and gets ``~`` and a
    short hash of the real id, so ``a:b`` and ``a_b`` (or ``AB`` and ``ab`` on a
    case-insensitive disk) never share a file, and the same id always gets the same name.

    Example::

        >>> file_name("ee603959", 0, "https://cdn.example/v.mp4")
        'ee603959_0.mp4'
        >>> file_name("a:b", 0, "https://cdn.example/v.mp4")
        'a_b~6783a31eab_0.mp4'
    """
    stem = _UNSAFE.sub("_", task_id).lstrip(".")[:_MAX_STEM] or "task"
    if stem != task_id or stem != stem.lower():
        digest = hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        stem = f"{stem}~{digest}"
    try:
        suffix = PurePosixPath(unquote(urlsplit(url).path)).suffix.lower()
    except ValueError:
        suffix = ""
    if not _SUFFIX.fullmatch(suffix):
        suffix = ".mp4"
    return f"{stem}_{index}{suffix}"


def _scheme_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "not a valid URL"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return f"not an http(s) URL ({parts.scheme or 'no scheme'}:)"
    return None


def redirect_target(current: str, location: str | None) -> str:
    """The absolute URL a redirect from ``current`` to ``location`` leads to.

    Raises:
        ValueError: the redirect must not be followed: no ``Location``, a non-http(s) target
            (``file:``, ``ftp:``, ``javascript:``...), or a downgrade from https to plain http.

    Example::

        >>> redirect_target("https://cdn.example/a/v.mp4", "/b/v.mp4?sig=1")
        'https://cdn.example/b/v.mp4?sig=1'
        >>> redirect_target("https://cdn.example/v.mp4", "http://cdn.example/v.mp4")
        Traceback (most recent call last):
        ...
        ValueError: refused a redirect from https to plain http (cdn.example)
    """
    if location is None or not location.strip():
        raise ValueError("a redirect without a Location header")
    try:
        target = urljoin(current, location.strip())
    except ValueError:
        raise ValueError("a redirect to an invalid URL") from None
    problem = _scheme_problem(target)
    if problem is not None:
        raise ValueError(f"refused a redirect to a URL that is {problem}")
    parts = urlsplit(target)
    if urlsplit(current).scheme.lower() == "https" and parts.scheme.lower() == "http":
        raise ValueError(f"refused a redirect from https to plain http ({parts.hostname})")
    return target


class _Answer(Protocol):
    """What :func:`_fetch` needs of one file GET's answer."""

    status: int
    headers: Any

    @property
    def content_length(self) -> int | None: ...

    def chunks(self, size: int) -> Any: ...


class FileSource(Protocol):
    """What downloads need from the client: one file GET, the policies, and fresh links."""

    retry_policy: RetryPolicy
    download_policy: DownloadPolicy

    def _open_file(self, url: str) -> AbstractAsyncContextManager[_Answer]: ...

    def _retry_schedule(self) -> Schedule: ...

    async def download_url(self, url: str) -> str: ...


def _transient(exc: KieError) -> bool:
    """A failure worth another try: the connection, or a busy or failing file host."""
    if isinstance(exc, TransportError):
        return True
    status = getattr(exc, "http_status", None)
    return (
        isinstance(exc, DownloadError) and status is not None and (status == 429 or status >= 500)
    )


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


class _PartFile:
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


def _refused(link: str, part: _PartFile, task_id: str, reason: str) -> DownloadError:
    return DownloadError(url=link, reason=reason, path=str(part.target), task_id=task_id)


async def _fetch(client: FileSource, link: str, part: _PartFile, url: str, task_id: str) -> None:
    """One GET of ``link`` into ``part`` (from the start), following checked redirects,
    bounded by the client's :class:`DownloadPolicy`, checked against Content-Length."""
    policy = client.download_policy
    problem = _scheme_problem(link)
    if problem is not None:
        raise _refused(link, part, task_id, f"the result URL is {problem}")
    for _ in range(policy.max_redirects + 1):
        async with client._open_file(link) as answer:
            if answer.status in REDIRECT_STATUSES:
                try:
                    link = redirect_target(link, answer.headers.get("Location"))
                except ValueError as exc:
                    raise _refused(link, part, task_id, str(exc)) from None
                log.debug("redirected to %s", link.split("?", 1)[0])
                continue
            if answer.status != 200:
                raise DownloadError(
                    url=link,
                    reason=f"the file host answered HTTP {answer.status}",
                    path=str(part.target),
                    task_id=task_id,
                    http_status=answer.status,
                )
            expected = answer.content_length
            await part.open()
            speed = SpeedCheck(policy.min_speed, policy.speed_window, time.monotonic())
            batch = bytearray()
            async for chunk in answer.chunks(CHUNK_SIZE):
                batch += chunk
                if len(batch) >= WRITE_SIZE:
                    await part.write(batch)
                    batch = bytearray()
                slow = speed.feed(time.monotonic(), len(chunk))
                if slow is not None:
                    raise TransportError(message=slow, endpoint=link.split("?", 1)[0])
            if batch:
                await part.write(batch)
            if expected is not None and part.written != expected:
                raise DownloadError(
                    url=link,
                    reason=f"got {part.written} bytes, but Content-Length said {expected}",
                    path=str(part.target),
                    task_id=task_id,
                )
        log.debug("saved %d bytes of %s", part.written, url.split("?", 1)[0])
        return
    raise _refused(link, part, task_id, f"more than {policy.max_redirects} redirects")


async def _save(client: FileSource, task_id: str, url: str, target: Path) -> Path:
    """Download ``url`` to ``target`` unless it is there already."""
    part = _PartFile(target, url, task_id)
    if part.complete():
        log.debug("%s exists, skipped", target)
        return target
    link = url
    refreshed = False

    async def attempt() -> None:
        await _fetch(client, link, part, url, task_id)

    policy = client.retry_policy
    try:
        while True:
            try:
                await retry_call(
                    attempt,
                    schedule=client._retry_schedule(),
                    max_retries=policy.max_retries,
                    should_retry=_transient,
                    what=f"download of {target.name}",
                )
                break
            except DownloadError as exc:
                if refreshed or exc.http_status not in EXPIRED_STATUSES:
                    raise
                refreshed = True
                log.info(
                    "%s answered HTTP %d; asking kie.ai for a fresh link",
                    url.split("?", 1)[0],
                    exc.http_status,
                )
                try:
                    link = await client.download_url(url)
                except KieError as err:
                    raise DownloadError(
                        url=url,
                        reason=f"the link answered HTTP {exc.http_status}, and kie.ai gave no "
                        f"fresh one: {err}",
                        path=str(target),
                        task_id=task_id,
                        http_status=exc.http_status,
                    ) from err
            except TransportError as exc:
                raise DownloadError(
                    url=url, reason=exc.message, path=str(target), task_id=task_id
                ) from exc
        await part.commit()
    finally:
        await part.discard()
    return target


def _jobs(records: Iterable[TaskRecord], dest_dir: Path) -> list[tuple[str, str, Path]]:
    jobs: list[tuple[str, str, Path]] = []
    for record in records:
        if not isinstance(record, TaskRecord):
            raise TypeError(f"expected a TaskRecord, not {type(record).__name__}")
        if not record.result_urls:
            raise DownloadError(
                url="",
                reason=f"task {record.task_id} has no result files "
                f"(status {record.status.name.lower()})",
                task_id=record.task_id,
            )
        for index, url in enumerate(record.result_urls):
            target = dest_dir / file_name(record.task_id, index, url)
            jobs.append((record.task_id, url, target))
    return jobs


def _make_dir(dest_dir: Path) -> None:
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            url="", reason=f"cannot create {dest_dir}: {exc.strerror or exc}", path=str(dest_dir)
        ) from exc


async def download_records(
    client: FileSource,
    records: Iterable[TaskRecord],
    dest_dir: Path,
    *,
    concurrency: int = 4,
) -> list[Path]:
    """Download every result file of ``records`` into ``dest_dir``, ``concurrency`` at a time;
    see :meth:`KieClient.download_many`."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency", f"must be an int >= 1, got {concurrency!r}")
    jobs = _jobs(records, dest_dir)
    _make_dir(dest_dir)
    unique: dict[Path, tuple[str, str]] = {}
    for task_id, url, target in jobs:
        unique.setdefault(target, (task_id, url))
    queue = list(unique.items())
    queue.reverse()
    errors: list[BaseException] = []

    async def worker() -> None:
        while queue:
            target, (task_id, url) = queue.pop()
            try:
                await _save(client, task_id, url, target)
            except KieError as exc:
                errors.append(exc)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(queue)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    if errors:
        for extra in errors[1:]:
            log.error("%s", extra)
        raise errors[0]
    return [target for _, _, target in jobs]
