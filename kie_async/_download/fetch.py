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

This module is the network loop; the pure decisions (the policy, file names, redirects, what is
worth a retry) live in ``rules`` and the temporary file in ``part_file``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

from .._errors import DownloadError, KieError, TransportError, ValidationError
from .._policies import DownloadPolicy, RetryPolicy
from .._protocol.records import TaskRecord
from .._retry import Schedule, retry_call
from .part_file import PartFile
from .rules import (
    CHUNK_SIZE,
    EXPIRED_STATUSES,
    REDIRECT_STATUSES,
    WRITE_SIZE,
    SpeedCheck,
    file_name,
    redirect_target,
    scheme_problem,
    transient,
)

__all__ = ["FileSource", "download_records", "make_dir", "save_file"]

log = logging.getLogger("kie_async")


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


def _refused(link: str, part: PartFile, task_id: str, reason: str) -> DownloadError:
    return DownloadError(url=link, reason=reason, path=str(part.target), task_id=task_id)


async def _fetch(client: FileSource, link: str, part: PartFile, url: str, task_id: str) -> None:
    """One GET of ``link`` into ``part`` (from the start), following checked redirects,
    bounded by the client's :class:`DownloadPolicy`, checked against Content-Length."""
    policy = client.download_policy
    problem = scheme_problem(link)
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


async def save_file(client: FileSource, task_id: str, url: str, target: Path) -> Path:
    """Download ``url`` to ``target`` unless it is there already."""
    part = PartFile(target, url, task_id)
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
                    should_retry=transient,
                    what=f"download of {target.name}",
                )
                break
            except DownloadError as exc:
                if refreshed or exc.http_status not in EXPIRED_STATUSES:
                    raise
                refreshed = True
                log.info(
                    "%s answered HTTP %d; asking the API for a fresh link",
                    url.split("?", 1)[0],
                    exc.http_status,
                )
                try:
                    link = await client.download_url(url)
                except KieError as err:
                    raise DownloadError(
                        url=url,
                        reason=f"the link answered HTTP {exc.http_status}, and the API gave no "
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


def make_dir(dest_dir: Path) -> None:
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # mkdir says "File exists" for a file in the way; say what it means.
        why = "not a directory" if dest_dir.exists() else (exc.strerror or str(exc))
        raise DownloadError(
            url="", reason=f"cannot save files in {dest_dir}: {why}", path=str(dest_dir)
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
    make_dir(dest_dir)
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
                await save_file(client, task_id, url, target)
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
