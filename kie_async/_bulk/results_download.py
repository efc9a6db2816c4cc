"""Saving every result of a journal not saved yet, and recording each in the journal; and
saving a bulk run's outcome as the run goes (:meth:`BulkRun.download`), recorded in the
run's own journal.

The download holds the journal's lock (:mod:`kie_async._bulk.journal_lock`) from start to end, as a
bulk run does: a second download, or a run, on the same journal fails at once naming the
holder, so two processes never fetch the same files into the same temporary names nor
interleave their lines. Each saved file gets a ``saved`` line (task id, index, absolute path,
size); a file already complete in the directory is recorded without a request. A download
killed midway keeps the lines written so far; the rerun finds the files of the lines it lost
complete on disk, and records them without fetching them again.

Tasks the journal holds no end for (a run stopped, or its wait timed out) are looked up first,
one ``record-info`` each, never created: one that has ended gets its ``done`` line (as a run
writes it, so a rerun does not wait for it again), and a success's files are saved with the
rest.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import attrs

from .._download.fetch import FileSource, make_dir, save_file
from .._download.part_file import PartFile
from .._download.rules import file_name
from .._errors import ConfigurationError, DownloadError, KieError, ValidationError
from .._protocol.records import TaskRecord
from .._tasks.errors import TaskFailedError
from .journal import Journal
from .outcomes import ExtendOutcome
from .results import JournalResults, ResultFile, read_results

__all__ = ["JournalDownload", "JournalSource", "download_journal", "save_outcome"]

log = logging.getLogger("kie_async")

_T = TypeVar("_T")


class JournalSource(FileSource, Protocol):
    """What a journal's download needs of the client: downloads, and a task's record."""

    async def get_task(self, task_id: str) -> TaskRecord:
        """The task's current record (one ``record-info``)."""
        ...


@attrs.frozen
class JournalDownload:
    """What :meth:`KieClient.download_journal` did.

    Attributes:
        results: the journal's results after the call (:class:`JournalResults`): what is
            saved now, and what is still missing.
        fetched: the files this call fetched, with the path each was saved at.
        found: files already complete in the directory, recorded as saved without a request
            (e.g. saved by :meth:`KieClient.download`, or by a download or a run killed
            before it recorded them).
        failed: the files that could not be saved, each with its :class:`DownloadError`.
        ended: tasks the journal held no end for (``results.unfinished`` before the call)
            that kie.ai reports ended: their end is recorded in the journal now (a rerun of
            the bulk run takes them as finished), and a success's files were saved with the
            others. Those still running stay in ``results.unfinished``.
        unchecked: tasks the journal held no end for whose record could not be read, each
            with its error (a :class:`TaskNotFoundError`, a failed call); still unfinished.

    Example::

        done = await kie.download_journal("run.jsonl", "videos/")
        for file, error in done.failed:
            print(file.task_id, error.reason)
    """

    results: JournalResults
    fetched: tuple[ResultFile, ...] = ()
    found: tuple[ResultFile, ...] = ()
    failed: tuple[tuple[ResultFile, DownloadError], ...] = ()
    ended: tuple[str, ...] = ()
    unchecked: tuple[tuple[str, KieError], ...] = ()

    @property
    def ok(self) -> bool:
        """True when every file of the journal is saved now and every task it held no end
        for could be looked up (some may still be running: see ``results.unfinished``)."""
        return not self.failed and not self.results.missing and not self.unchecked


def _open(journal: Path) -> Journal:
    """The journal, locked for this download and ready to append."""
    if not journal.is_file():
        # Journal.open() would create it: a mistyped path must not become an empty journal.
        raise ConfigurationError("journal", f"no journal at {journal}")
    writer = Journal(journal)
    writer.open()
    return writer


def _saved_at(target: Path) -> tuple[Path, int]:
    """The absolute path and the size of a file just saved at ``target``."""
    return Path(os.path.abspath(target)), os.lstat(target).st_size


async def _each(
    items: Iterable[_T], concurrency: int, action: Callable[[_T], Awaitable[None]]
) -> None:
    """Run ``action`` on every item, at most ``concurrency`` at a time, in order."""
    todo = list(items)
    todo.reverse()

    async def worker() -> None:
        while todo:
            await action(todo.pop())

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(todo)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


@attrs.define
class _Saving:
    """What a batch of saves came to (see :func:`_save_files`)."""

    fetched: list[ResultFile] = attrs.Factory(list)
    found: list[ResultFile] = attrs.Factory(list)
    failed: list[tuple[ResultFile, DownloadError]] = attrs.Factory(list)


async def _save_files(
    client: FileSource,
    queue: Iterable[tuple[Path, ResultFile]],
    writer: Journal | None,
    concurrency: int,
) -> _Saving:
    """Save each file at its target, ``concurrency`` at a time, and record each saved one in
    ``writer`` (a file whose key is ``""`` is not recorded: the journal has no job for it)."""
    saving = _Saving()

    async def save(item: tuple[Path, ResultFile]) -> None:
        target, file = item
        there = PartFile(target, file.url, file.task_id).complete()
        try:
            await save_file(client, file.task_id, file.url, target)
            path, size = _saved_at(target)
        except DownloadError as exc:
            saving.failed.append((file, exc))
            return
        except (KieError, OSError) as exc:
            error = DownloadError(
                url=file.url, reason=str(exc), path=str(target), task_id=file.task_id
            )
            saving.failed.append((file, error))
            return
        if writer is not None and file.key:
            writer.record_saved(file.key, file.task_id, file.index, path, size)
        done = attrs.evolve(file, path=path, saved=True)
        (saving.found if there else saving.fetched).append(done)

    await _each(queue, concurrency, save)
    return saving


async def _look_up(
    client: JournalSource, writer: Journal, concurrency: int
) -> tuple[list[str], list[tuple[str, KieError]]]:
    """Look up every task ``writer``'s journal holds no end for (one ``record-info`` each,
    never a create) and record the end of those that ended; returns those task ids, and the
    lookups that failed."""
    waiting = {
        entry.task_id: key
        for key, entry in writer.entries.items()
        if entry.state == "submitted" and entry.task_id
    }
    ended: list[str] = []
    unchecked: list[tuple[str, KieError]] = []

    async def look_up(item: tuple[str, str]) -> None:
        task_id, key = item
        try:
            record = await client.get_task(task_id)
        except KieError as exc:
            log.warning("task %s (not finished in the journal): %s", task_id, exc)
            unchecked.append((task_id, exc))
            return
        if not record.status.is_terminal:
            return
        error = None
        if not record.status.ok:
            error = TaskFailedError(
                task_id=task_id,
                record=record,
                error_code=record.error_code,
                error_message=record.error_message,
            )
        writer.record_done(key, task_id, record, error)
        ended.append(task_id)

    await _each(waiting.items(), concurrency, look_up)
    writer.flush()  # the done lines in the file, where read_results reads them
    order = {task_id: place for place, task_id in enumerate(waiting)}
    ended.sort(key=order.__getitem__)
    unchecked.sort(key=lambda pair: order[pair[0]])
    return ended, unchecked


def dest_path(value: object) -> Path:
    """``value`` as a :class:`~pathlib.Path`, or a :class:`ValidationError` naming
    ``dest_dir`` for anything that is not a ``str`` or ``os.PathLike[str]``."""
    if isinstance(value, str | os.PathLike):
        try:
            return Path(value)
        except TypeError:
            pass  # an os.PathLike[bytes]
    raise ValidationError(
        "dest_dir", f"must be a path (str or os.PathLike), got {type(value).__name__}"
    )


def _check_concurrency(concurrency: object) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency", f"must be an int >= 1, got {concurrency!r}")
    return concurrency


async def download_journal(
    client: JournalSource, journal: Path, dest_dir: Path, *, concurrency: int = 4
) -> JournalDownload:
    """Save every result of ``journal`` not saved yet in ``dest_dir``; see
    :meth:`KieClient.download_journal`."""
    _check_concurrency(concurrency)
    writer = _open(journal)
    try:
        ended, unchecked = await _look_up(client, writer, concurrency)
        before = read_results(journal)
        queue: dict[Path, ResultFile] = {}
        if before.missing:
            make_dir(dest_dir)
        for file in before.missing:
            queue.setdefault(dest_dir / file_name(file.task_id, file.index, file.url), file)
        saving = await _save_files(client, queue.items(), writer, concurrency)
    finally:
        await writer.aclose()
    rank = {(file.task_id, file.index): place for place, file in enumerate(before.missing)}

    def in_order(files: list[ResultFile]) -> tuple[ResultFile, ...]:
        return tuple(sorted(files, key=lambda file: rank[file.task_id, file.index]))

    return JournalDownload(
        read_results(journal),
        in_order(saving.fetched),
        in_order(saving.found),
        tuple(sorted(saving.failed, key=lambda pair: rank[pair[0].task_id, pair[0].index])),
        tuple(ended),
        tuple(unchecked),
    )


async def save_outcome(
    client: FileSource,
    journal: Journal | None,
    outcome: ExtendOutcome[Any],
    dest_dir: Path,
    *,
    concurrency: int = 4,
) -> list[Path]:
    """Save ``outcome``'s files and record them in the run's ``journal``; see
    :meth:`BulkRun.download`."""
    _check_concurrency(concurrency)
    if not isinstance(outcome, ExtendOutcome):
        raise TypeError(f"expected an ExtendOutcome, not {type(outcome).__name__}")
    if not outcome.ok:
        raise ValidationError(
            "outcome", f"{outcome.kind.value}: only a succeeded outcome has files to save"
        )
    if journal is not None and not journal.is_open:
        raise RuntimeError(
            "the run is over and its journal closed: save its files with "
            "KieClient.download_journal(journal, dest_dir), which records them"
        )
    records = [step.record for step in outcome.steps] or [outcome.record]
    files: dict[Path, ResultFile] = {}
    for record in records:
        if record is None:
            continue
        key = (journal.key_of(record.task_id) if journal is not None else None) or ""
        for index, url in enumerate(record.result_urls):
            file = ResultFile(key, record.task_id, record.task_type, index, url, record.expires_at)
            files.setdefault(dest_dir / file_name(record.task_id, index, url), file)
    if not files:
        raise DownloadError(
            url="", reason=f"task {outcome.task_id} has no result files", task_id=outcome.task_id
        )
    make_dir(dest_dir)
    saving = await _save_files(client, files.items(), journal, concurrency)
    if saving.failed:
        for _, extra in saving.failed[1:]:
            log.error("%s", extra)
        raise saving.failed[0][1]
    return list(files)
