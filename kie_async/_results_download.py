"""Saving every result of a journal not saved yet, and recording each in the journal.

The download holds the journal's lock (:mod:`kie_async._journal_lock`) from start to end, as a
bulk run does: a second download, or a run, on the same journal fails at once naming the
holder, so two processes never fetch the same files into the same temporary names nor
interleave their lines. Each saved file gets a ``saved`` line (task id, index, absolute path,
size); a file already complete in the directory is recorded without a request. A download
killed midway keeps the lines written so far; the rerun finds the files of the lines it lost
complete on disk, and records them without fetching them again.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import attrs

from ._download import FileSource, _make_dir, _save
from ._download_core import file_name
from ._errors import ConfigurationError, DownloadError, KieError, ValidationError
from ._journal import Journal
from ._part_file import PartFile
from ._results import JournalResults, ResultFile, read_results

__all__ = ["JournalDownload", "download_journal"]


@attrs.frozen
class JournalDownload:
    """What :meth:`KieClient.download_journal` did.

    Attributes:
        results: the journal's results after the call (:class:`JournalResults`): what is
            saved now, and what is still missing.
        fetched: the files this call fetched, with the path each was saved at.
        found: files already complete in the directory, recorded as saved without a request
            (e.g. saved by ``kie-async bulk --download`` or a download killed before it
            recorded them).
        failed: the files that could not be saved, each with its :class:`DownloadError`.

    Example::

        done = await kie.download_journal("run.jsonl", "videos/")
        for file, error in done.failed:
            print(file.task_id, error.reason)
    """

    results: JournalResults
    fetched: tuple[ResultFile, ...] = ()
    found: tuple[ResultFile, ...] = ()
    failed: tuple[tuple[ResultFile, DownloadError], ...] = ()

    @property
    def ok(self) -> bool:
        """True when every file of the journal is saved now."""
        return not self.failed and not self.results.missing


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


async def download_journal(
    client: FileSource, journal: Path, dest_dir: Path, *, concurrency: int = 4
) -> JournalDownload:
    """Save every result of ``journal`` not saved yet in ``dest_dir``; see
    :meth:`KieClient.download_journal`."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency", f"must be an int >= 1, got {concurrency!r}")
    writer = _open(journal)
    try:
        before = read_results(journal)
        queue: dict[Path, ResultFile] = {}
        if before.missing:
            _make_dir(dest_dir)
        for file in before.missing:
            queue.setdefault(dest_dir / file_name(file.task_id, file.index, file.url), file)
        fetched: list[ResultFile] = []
        found: list[ResultFile] = []
        failed: list[tuple[ResultFile, DownloadError]] = []
        todo = list(queue.items())
        todo.reverse()

        async def save(target: Path, file: ResultFile) -> None:
            there = PartFile(target, file.url, file.task_id).complete()
            try:
                await _save(client, file.task_id, file.url, target)
                path, size = _saved_at(target)
            except DownloadError as exc:
                failed.append((file, exc))
                return
            except (KieError, OSError) as exc:
                reason = str(exc)
                error = DownloadError(
                    url=file.url, reason=reason, path=str(target), task_id=file.task_id
                )
                failed.append((file, error))
                return
            writer.record(
                "saved", file.key, task_id=file.task_id, index=file.index, path=str(path), size=size
            )
            done = attrs.evolve(file, path=path, saved=True)
            (found if there else fetched).append(done)

        async def worker() -> None:
            while todo:
                await save(*todo.pop())

        workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(todo)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    finally:
        await writer.aclose()
    rank = {(file.task_id, file.index): place for place, file in enumerate(before.missing)}

    def in_order(files: list[ResultFile]) -> tuple[ResultFile, ...]:
        return tuple(sorted(files, key=lambda file: rank[file.task_id, file.index]))

    return JournalDownload(
        read_results(journal),
        in_order(fetched),
        in_order(found),
        tuple(sorted(failed, key=lambda pair: rank[pair[0].task_id, pair[0].index])),
    )
