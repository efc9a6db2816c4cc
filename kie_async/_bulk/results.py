"""What the jobs of a journal produced: every result file, where it is saved, and when kie.ai
is expected to delete the ones that are not.

kie.ai has no call listing an account's tasks, so a bulk run's journal is the only record of
what it paid for. Its ``done`` lines hold each task's result URLs and completion time; the
``saved`` lines that :func:`~kie_async._bulk.results_download.download_journal` and a run's
:meth:`BulkRun.download` append say which file is saved where. Reading takes no lock (a run
may be appending): a last line cut short is left out, never cut off.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from .._errors import ConfigurationError, KieError
from .._protocol.wire import parse_record
from .journal import Entry, event_lines, fold

__all__ = ["JournalResults", "ResultFile", "read_results"]


@attrs.frozen
class ResultFile:
    """One result file a job of a journal produced.

    Attributes:
        key: the journal's key of the job (a chain's steps have one each).
        task_id: the task that made the file.
        task_type: kie's ``taskType`` of that task, when the journal has it.
        index: the file's position in the task's result URLs.
        url: the result URL, as kie.ai gave it.
        expires_at: when kie.ai is expected to delete the file (see
            :attr:`TaskRecord.expires_at`), aware UTC; ``None`` when the completion time is
            unknown.
        path: where the journal says the file was saved, or ``None``.
        saved: the journal says so *and* the file is still there (a regular file of the size
            recorded); a file deleted since then is not saved.
    """

    key: str
    task_id: str
    task_type: str | None
    index: int
    url: str
    expires_at: datetime | None
    path: Path | None = None
    saved: bool = False

    def as_json(self) -> dict[str, Any]:
        """The file as a JSON object (times in ISO 8601), as ``kie-async results --json``
        prints it."""
        return {
            "key": self.key,
            "task_id": self.task_id,
            "task_type": self.task_type,
            "index": self.index,
            "url": self.url,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "saved": self.saved,
            "path": str(self.path) if self.path is not None else None,
        }


def _urgency(file: ResultFile) -> tuple[bool, bool, datetime | None]:
    # Not saved first; among those, an unknown expiry first (it may be gone already), then
    # the soonest. sorted() is stable: equal files keep the journal's order.
    return (file.saved, file.expires_at is not None, file.expires_at)


@attrs.frozen
class JournalResults:
    """The result files of every job a journal records as succeeded; from
    :func:`read_results` (``kie_async.read_results``).

    Attributes:
        journal: the journal's path.
        files: every result file, not saved first (soonest expiry first, an unknown expiry
            before all), then the saved ones.
        unfinished: task ids the journal holds no end for (the run stopped, or the wait timed
            out): their results are not listed; a rerun of the bulk run on the journal
            re-attaches to them.

    Example::

        results = kie_async.read_results("run.jsonl")
        for file in results.missing:
            print(file.task_id, file.index, file.expires_at)
    """

    journal: Path
    files: tuple[ResultFile, ...]
    unfinished: tuple[str, ...] = ()

    @property
    def missing(self) -> tuple[ResultFile, ...]:
        """The files not saved yet, soonest expiry first."""
        return tuple(file for file in self.files if not file.saved)

    @property
    def saved(self) -> tuple[ResultFile, ...]:
        """The files saved (and still on disk)."""
        return tuple(file for file in self.files if file.saved)

    def as_json(self) -> dict[str, Any]:
        """The whole report as a JSON object, as ``kie-async results --json`` prints it."""
        return {
            "journal": str(self.journal),
            "saved": len(self.saved),
            "missing": len(self.missing),
            "files": [file.as_json() for file in self.files],
            "unfinished": list(self.unfinished),
        }


def _on_disk(path: str, size: object) -> bool:
    """Whether a regular file of ``size`` bytes (any size, if unknown) is at ``path``."""
    try:
        info = os.lstat(path)
    except (OSError, ValueError):
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    return not isinstance(size, int) or info.st_size == size


def _files(key: str, entry: Entry) -> list[ResultFile]:
    if entry.status != "succeeded" or not entry.record:
        return []
    try:
        record = parse_record(entry.record, task_id=entry.task_id or "")
    except KieError:
        return []
    task_id = entry.task_id or record.task_id
    return [
        ResultFile(key, task_id, record.task_type, index, url, record.expires_at)
        for index, url in enumerate(record.result_urls)
    ]


def _saved_line(line: Mapping[str, Any]) -> tuple[tuple[str, int], Mapping[str, Any]] | None:
    task_id, index, path = line.get("task_id"), line.get("index"), line.get("path")
    if not isinstance(task_id, str) or not isinstance(path, str) or not path:
        return None
    if isinstance(index, bool) or not isinstance(index, int):
        return None
    return (task_id, index), line


def results_of(path: Path, data: bytes) -> JournalResults:
    """The results recorded in ``data``, the bytes of the journal at ``path``.

    Raises:
        ConfigurationError: ``data`` is not a kie-async journal.
    """
    complete = data.rfind(b"\n") + 1
    tail = data[complete:]
    if tail.strip():
        try:
            json.loads(tail)
        except ValueError:
            data = data[:complete]  # a line being written (or cut by a crash): left out
    entries: dict[str, Entry] = {}
    saved: dict[tuple[str, int], Mapping[str, Any]] = {}
    for line in event_lines(data, path):
        if line.get("event") == "saved":
            found = _saved_line(line)
            if found is not None:
                saved[found[0]] = found[1]
        else:
            fold(entries, line)
    files: dict[tuple[str, int], ResultFile] = {}
    unfinished: list[str] = []
    for key, entry in entries.items():
        if entry.state == "submitted" and entry.task_id:
            unfinished.append(entry.task_id)
        for file in _files(key, entry):
            where = saved.get((file.task_id, file.index))
            if where is not None:
                on_disk = _on_disk(where["path"], where.get("size"))
                file = attrs.evolve(file, path=Path(where["path"]), saved=on_disk)
            files.setdefault((file.task_id, file.index), file)
    ordered = sorted(files.values(), key=_urgency)
    return JournalResults(path, tuple(ordered), tuple(dict.fromkeys(unfinished)))


def read_results(journal: str | os.PathLike[str]) -> JournalResults:
    """Read what the jobs of a bulk run's journal produced: every result file, which are
    saved where (still on disk), and when the others expire, soonest first. Sends nothing.

    Takes no lock: it may read a journal a run is writing (a line being written is left out).
    Reads journals of every kie-async version.

    Raises:
        ConfigurationError: no journal at ``journal``, it cannot be read, or it is not a
            kie-async journal.

    Example::

        results = kie_async.read_results("run.jsonl")
        print(len(results.saved), "saved;", len(results.missing), "to download")
    """
    path = Path(journal)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError("journal", f"cannot read {path}: {exc.strerror or exc}") from None
    return results_of(path, data)
