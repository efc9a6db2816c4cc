"""Saving result files to disk: streamed, checked, atomic, and resumable by rerunning.

A file is written to ``.<name>.part`` in the destination directory and renamed into place with
``os.replace`` only once it is complete (its size matches ``Content-Length``) and flushed to
disk. So a file under its final name is always whole, a rerun skips it without a request, and a
failed or cancelled download removes its temporary file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ._errors import DownloadError, KieError, TransportError, ValidationError
from ._models import TaskRecord
from ._retry import retry_call

if TYPE_CHECKING:
    from ._client import KieClient

log = logging.getLogger("kie_async")

#: Bytes read and written at a time: memory use stays flat whatever the file size.
CHUNK_SIZE = 64 * 1024
#: File-host answers that mean the link is dead or expired: ask kie.ai for a fresh one.
EXPIRED_STATUSES = frozenset({403, 404, 410})

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")


def file_name(task_id: str, index: int, url: str) -> str:
    """``<task_id>_<index><ext>``, safe on every file system; the extension comes from the
    URL's path (``.mp4`` when it has none that looks like one)."""
    stem = _UNSAFE.sub("_", task_id).lstrip(".")[:120] or "task"
    try:
        suffix = PurePosixPath(unquote(urlsplit(url).path)).suffix.lower()
    except ValueError:
        suffix = ""
    if not _SUFFIX.fullmatch(suffix):
        suffix = ".mp4"
    return f"{stem}_{index}{suffix}"


def _transient(exc: KieError) -> bool:
    """A failure worth another try: the connection, or a busy or failing file host."""
    if isinstance(exc, TransportError):
        return True
    status = getattr(exc, "http_status", None)
    return (
        isinstance(exc, DownloadError) and status is not None and (status == 429 or status >= 500)
    )


class _PartFile:
    """The temporary file a download is written to; removed unless renamed into place."""

    def __init__(self, target: Path, url: str, task_id: str) -> None:
        self.target = target
        self.path = target.with_name(f".{target.name}.part")
        self._url = url
        self._task_id = task_id
        self._file: IO[bytes] | None = None
        self.written = 0

    def _error(self, reason: str) -> DownloadError:
        return DownloadError(
            url=self._url, reason=reason, path=str(self.target), task_id=self._task_id
        )

    def complete(self) -> bool:
        """Whether the final file exists: only a whole file is ever renamed there."""
        return self.target.exists()

    def open(self) -> None:
        self.close()
        self.written = 0
        try:
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()/discard()
        except OSError as exc:
            raise self._error(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def write(self, chunk: bytes) -> None:
        assert self._file is not None
        try:
            self._file.write(chunk)
        except OSError as exc:
            raise self._error(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self.written += len(chunk)

    def commit(self) -> None:
        """Flush to disk and rename into place, so the final name only ever holds whole files."""
        assert self._file is not None
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self.close()
            os.replace(self.path, self.target)
        except OSError as exc:
            raise self._error(f"cannot finish {self.target}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


async def _fetch(client: KieClient, link: str, part: _PartFile, url: str, task_id: str) -> None:
    """One GET of ``link`` into ``part`` (from the start), checked against Content-Length."""
    async with client._open_file(link) as answer:
        if answer.status != 200:
            raise DownloadError(
                url=link,
                reason=f"the file host answered HTTP {answer.status}",
                path=str(part.target),
                task_id=task_id,
                http_status=answer.status,
            )
        expected = answer.content_length
        part.open()
        async for chunk in answer.chunks(CHUNK_SIZE):
            part.write(chunk)
        if expected is not None and part.written != expected:
            raise DownloadError(
                url=link,
                reason=f"got {part.written} bytes, but Content-Length said {expected}",
                path=str(part.target),
                task_id=task_id,
            )
    log.debug("saved %d bytes of %s", part.written, url.split("?", 1)[0])


async def _save(client: KieClient, task_id: str, url: str, target: Path) -> Path:
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
        part.commit()
    finally:
        part.discard()
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
    client: KieClient,
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
