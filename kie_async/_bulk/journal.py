"""The bulk journal: an append-only JSON-lines file that lets a killed run finish, paying once.

Lines, one JSON object each::

    {"journal": "kie-async", "version": 1}                      header, first line
    {"event": "run", "pid": P, "host": H, "started": ISO}       a run opened the journal
    {"event": "intent", "key": K, "request": {...}}             the create is going on the wire
    {"event": "not_sent", "key": K}                             stopped before it went out
    {"event": "submitted", "key": K, "task_id": T}              kie.ai answered with a task id
    {"event": "refused", "key": K, "error": {...}}              kie.ai certainly created nothing
    {"event": "uncertain", "key": K, "reason": "..."}           the create's reply was lost
    {"event": "done", "key": K, "task_id": T, "status": S, ...} final (S: succeeded or failed)
    {"event": "saved", "key": K, "task_id": T, "index": I,      a result file was saved (by
     "path": P, "size": N}                                     ``download_journal`` or a run)

:meth:`Journal.record_done` and :meth:`Journal.record_saved` write the ``done`` and ``saved``
lines, for a run and for a download alike.

A ``done`` line holds what a rerun and a report need (task type, status, result URLs, kie's
times, the error), never kie's whole answer, so the file grows with the number of tasks and not
with the size of their answers.

Readers ignore events they do not know (kie-async 0.1 did too), so a ``saved`` line leaves a
rerun as it was; :mod:`kie_async._bulk.results` reads them.

One run at a time: the run holds the journal's lock (:mod:`kie_async._bulk.journal_lock`) for its
whole life.
Lines reach the file within 2 ms of being recorded (one write for all the lines of that moment),
and a task's ``submitted`` line before its first poll, so a killed process loses at most that
moment's lines; ``intent`` is written and on disk (fsynced) before its create goes out, so not
even a power cut can make a rerun send it again. fsyncs run in a thread, one for every line
recorded while the previous one ran, so the event loop does not wait for the disk. A last line
cut short by a crash is cut off when the next run opens the journal, so every later rerun
reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from .._errors import ConfigurationError, exception_fields
from .._kinds.extend import ExtendMode, ExtendRequest
from .._kinds.registry import TaskRequest
from .._protocol.records import TaskRecord
from .chains import BulkItem, Chain, fields_json
from .journal_lock import JournalLock, now_iso, read_all

log = logging.getLogger("kie_async")

HEADER = {"journal": "kie-async", "version": 1}

#: The start of every event line: a line cut short by a crash still starts like this.
_EVENT_PREFIX = b'{"event":'

#: Error texts kept in a line, at most (an error page can be large; the start says enough).
_TEXT_CAP = 1000

#: Seconds a recorded line may wait in memory for others to be written with it. A kill loses
#: only lines recorded this recently (an intent never: it is written and fsynced before its
#: create goes out).
FLUSH_DELAY = 0.002

# Built once: json.dumps with options builds an encoder per call, a cost every line would pay.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


# -- keys and requests as the lines spell them (bytes that must not change) ------------------


def journal_key(item: BulkItem) -> str:
    """The journal key of ``item`` (before counting repeats): an extension's fingerprint as in
    kie-async 0.1.0 (so its journals still match), the kind and the fingerprint otherwise."""
    if isinstance(item, ExtendRequest):
        return item.fingerprint()
    kind = "chain" if isinstance(item, Chain) else item.kind.value
    return f"{kind}:{item.fingerprint()}"


def request_json(request: TaskRequest) -> dict[str, Any]:
    """A request as a journal's ``intent`` line and a results file keep it: an extension as in
    0.1.0, any other kind as its kind and its fields, spelled as a jobs file spells them."""
    if isinstance(request, ExtendRequest):
        return _extend_json(request)
    return {"kind": request.kind.value, **fields_json(request)}


def _extend_json(request: ExtendRequest) -> dict[str, Any]:
    """An extension as kie-async 0.1.0 kept it in journals and results files (its bytes must not
    change: journals written then are still read)."""
    return {
        "task_id": request.task_id,
        "index": request.index,
        "prompt": request.prompt,
        "mode": "manual" if request.mode is ExtendMode.MANUAL else "auto",
        "watermark": request.watermark,
        "callback_url": request.callback_url,
        "key": request.key,
    }


def step_key(chain_key: str, number: int) -> str:
    """The journal key of step ``number`` (0: the first request) of the chain keyed
    ``chain_key``."""
    return f"{chain_key}/{number}" if chain_key else ""


@attrs.define
class Entry:
    """What the journal knows of one request (by key), folded from its lines in order."""

    state: str  # "intent" | "not_sent" | "submitted" | "refused" | "uncertain" | "done"
    task_id: str | None = None
    status: str | None = None
    #: A ``done`` line's record fields, as kie's record-info ``data`` would hold them.
    record: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    reason: str | None = None
    #: The request of the last ``intent`` line (as :func:`request_json` spells it).
    request: Mapping[str, Any] | None = None
    #: Creates of this key that may have cost credits: sent (an intent not followed by
    #: ``not_sent`` or ``refused``), answered or uncertain. Read by a budget and a dry run.
    paid: int = 0
    #: An intent not yet followed by another event: a create that may be on the wire.
    pending: bool = False


def _done_record(line: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The record of a ``done`` line, in kie's shape: from the slim fields, or the whole
    answer of a journal written by kie-async 0.1."""
    raw = line.get("record")
    if isinstance(raw, Mapping):
        return raw
    if "result_urls" not in line and "flag" not in line:
        return None
    error = line.get("error") if isinstance(line.get("error"), Mapping) else {}
    assert isinstance(error, Mapping)
    return {
        "taskId": line.get("task_id"),
        "taskType": line.get("task_type"),
        "successFlag": line.get("flag"),
        "resultInfoJson": {"resultUrls": list(line.get("result_urls") or ())},
        "createTime": line.get("created"),
        "completeTime": line.get("completed"),
        "errorCode": error.get("error_code"),
        "errorMessage": error.get("error_message"),
    }


def fold(entries: dict[str, Entry], line: Mapping[str, Any]) -> None:
    key = line.get("key")
    event = line.get("event")
    if not isinstance(key, str) or not isinstance(event, str):
        return
    entry = entries.get(key)
    request = entry.request if entry is not None else None
    paid = entry.paid if entry is not None else 0
    pending = entry is not None and entry.pending
    if event == "intent":
        raw = line.get("request")
        request = raw if isinstance(raw, Mapping) else request
        if entry is None or entry.state in ("refused", "uncertain", "not_sent"):
            entries[key] = Entry("intent", request=request, paid=paid + pending, pending=True)
        elif entry is not None:
            entry.request = request
    elif event == "not_sent":
        if entry is not None and entry.state == "intent":
            entries[key] = Entry("not_sent", request=request, paid=paid)
    elif event == "submitted":
        paid += pending or entry is None or entry.state != "intent"
        entries[key] = Entry("submitted", task_id=line.get("task_id"), request=request, paid=paid)
    elif event == "refused":
        entries[key] = Entry("refused", error=line.get("error"), request=request, paid=paid)
    elif event == "uncertain":
        paid += pending
        entries[key] = Entry("uncertain", reason=line.get("reason"), request=request, paid=paid)
    elif event == "done":
        entries[key] = Entry(
            "done",
            task_id=line.get("task_id") or (entry.task_id if entry else None),
            status=line.get("status"),
            record=_done_record(line),
            error=line.get("error"),
            request=request,
            paid=paid + pending or max(paid, 1),
        )


def event_lines(data: bytes, path: Path) -> Iterator[dict[str, Any]]:
    """The event lines of a journal's bytes ``data`` (complete lines only), in order: the
    header checked and left out, and a line kie-async 0.1 left cut short mid-file skipped.

    Raises:
        ConfigurationError: ``path`` is not a kie-async journal.
    """
    for number, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            if raw.startswith(_EVENT_PREFIX) and number > 1:
                # kie-async 0.1 appended after a cut line instead of cutting it off.
                log.warning("journal %s: skipping line %d, cut short by a crash", path, number)
                continue
            raise ConfigurationError(
                "journal", f"{path} line {number} is not JSON; is it a kie-async journal?"
            ) from None
        if not isinstance(line, dict):
            raise ConfigurationError("journal", f"{path} line {number} is not an object")
        if number == 1 and "event" not in line:
            if line.get("journal") != "kie-async":
                raise ConfigurationError("journal", f"{path} is not a kie-async journal")
            continue
        yield line


def paid_creates(entry: Entry) -> int:
    """How many creates of ``entry``'s key may have cost credits (an intent still pending, its
    create maybe on the wire when the run stopped, counts)."""
    return entry.paid + entry.pending


def capped(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with every long string cut to a size a journal line should hold."""
    return {
        name: value[:_TEXT_CAP] + "..."
        if isinstance(value, str) and len(value) > _TEXT_CAP
        else value
        for name, value in fields.items()
    }


def record_fields(record: TaskRecord) -> dict[str, Any]:
    """What a journal's ``done`` line keeps of a record: enough for a rerun and a report,
    never kie's whole answer."""
    return {
        "task_type": record.task_type,
        "flag": record.success_flag,
        "result_urls": list(record.result_urls),
        "created": record.created_at_raw,
        "completed": record.completed_at_raw,
    }


def _fold_lines(entries: dict[str, Entry], data: bytes, path: Path) -> None:
    """Fold every event line of a journal's ``data`` into ``entries``.

    Raises:
        ConfigurationError: a line is not JSON or not an object, or the file is not a
            kie-async journal.
    """
    for line in event_lines(data, path):
        fold(entries, line)


def read_entries(path: Path) -> dict[str, Entry]:
    """What the journal at ``path`` records, read without locking or writing it (a dry run
    reads a journal a running run may hold); a missing file records nothing, and a last line
    cut short by a crash is left out.

    Raises:
        ConfigurationError: the file cannot be read or is not a kie-async journal.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigurationError("journal", f"cannot read {path}: {exc.strerror or exc}") from None
    entries: dict[str, Entry] = {}
    complete = data.rfind(b"\n") + 1
    with contextlib.suppress(ValueError):
        if data[complete:].strip():
            json.loads(data[complete:])
            complete = len(data)  # a complete last line that lost only its newline
    _fold_lines(entries, data[:complete], path)
    return entries


#: Data and the size, not the times: all a reader needs, and cheaper than a full fsync.
_datasync = getattr(os, "fdatasync", os.fsync)


class Journal:
    """A journal: what earlier runs recorded (:attr:`entries`, after :meth:`open`), and the
    append handle of this run, which holds the file's lock until :meth:`aclose`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Requests earlier runs recorded, by key; a run takes each out as it handles it.
        self.entries: dict[str, Entry] = {}
        self._fd: int | None = None
        self._lock = JournalLock(path)
        self._written = 0
        self._synced = 0
        self._syncing: asyncio.Future[None] | None = None
        # Lines recorded in the last moment, written together: a write is a system call, and a
        # busy run records a few lines per millisecond.
        self._pending: list[str] = []
        self._flush_soon: asyncio.TimerHandle | None = None
        # The key of each task the journal records as succeeded, for the ``saved`` lines of
        # its files (see :meth:`key_of`).
        self._succeeded: dict[str, str] = {}

    # -- opening: lock, read, repair --------------------------------------------------------

    def open(self) -> None:
        """Lock the journal for this run, read what it holds, cut off a last line cut short by
        a crash, and get ready to append.

        Raises:
            ConfigurationError: another run holds the journal (its pid, host and start time
                are named), or the file cannot be read or is not a kie-async journal.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise ConfigurationError(
                "journal", f"cannot open {self.path}: {exc.strerror or exc}"
            ) from None
        try:
            self._lock.acquire(fd)
            data = read_all(fd)
            self._load(fd, data)
        except BaseException:
            self._lock.release()
            os.close(fd)
            raise
        self._fd = fd
        if not data:
            self._pending.append(_ENCODER.encode(HEADER))
        run = {"event": "run", "pid": os.getpid(), "host": socket.gethostname()}
        self._pending.append(_ENCODER.encode({**run, "started": now_iso()}))
        self._written += 1
        self._flush()
        os.fsync(fd)
        self._synced = self._written

    def _load(self, fd: int, data: bytes) -> None:
        if not data:
            return
        complete = data.rfind(b"\n") + 1
        tail = data[complete:]
        if tail.strip():
            try:
                json.loads(tail)
            except ValueError:
                # A run killed mid-line: cut the fragment off, so this run appends after a
                # complete line and every later run reads the file without a complaint.
                log.warning(
                    "journal %s: cut off a last line cut short by a crash (%d bytes)",
                    self.path,
                    len(tail),
                )
                os.ftruncate(fd, complete)
                data = data[:complete]
            else:
                os.write(fd, b"\n")  # a complete line that lost only its newline
        _fold_lines(self.entries, data, self.path)
        for key, entry in self.entries.items():
            if entry.status == "succeeded" and entry.task_id:
                self._succeeded[entry.task_id] = key

    def key_of(self, task_id: str) -> str | None:
        """The key of the job whose task ``task_id`` the journal records as succeeded (by an
        earlier run or this one), or ``None``."""
        return self._succeeded.get(task_id)

    # -- writing -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the pending lines now (see :meth:`_flush`)."""
        if self._pending:
            self._flush()

    def _flush(self) -> None:
        """Write the pending lines to the file, where a kill of this process cannot lose them."""
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        if not self._pending or self._fd is None:
            return
        text = "\n".join(self._pending) + "\n"
        self._pending.clear()
        # kie's JSON may carry "\ud800"-style escapes, which decode to lone surrogates UTF-8
        # cannot encode; written back as the same escape, every line stays JSON and lossless.
        data = text.encode("utf-8", "backslashreplace")
        while data:
            data = data[os.write(self._fd, data) :]

    def record(self, event: str, key: str, **fields: Any) -> None:
        """Append one event for ``key``. It reaches the file within :data:`FLUSH_DELAY`
        seconds, or at once in :meth:`sync`, which also puts it on disk."""
        if self._fd is None:
            raise RuntimeError("journal is not open")
        line = {"event": event, "key": key, "at": round(time.time(), 3), **fields}
        self._pending.append(_ENCODER.encode(line))
        self._written += 1
        if self._flush_soon is None:
            self._flush_soon = asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush)

    def record_intent(self, key: str, request: TaskRequest) -> None:
        """Record that ``key``'s create is going on the wire, with ``request`` as
        :func:`request_json` spells it. Until an answer is recorded, a rerun takes it as
        uncertain."""
        self.record("intent", key, request=request_json(request))

    def record_not_sent(self, key: str) -> None:
        """Record that ``key``'s create, whose intent was recorded, never went out."""
        self.record("not_sent", key)

    def record_submitted(self, key: str, task_id: str) -> None:
        """Record that kie.ai answered ``key``'s create with ``task_id``."""
        self.record("submitted", key, task_id=task_id)

    def record_uncertain(self, key: str, reason: str) -> None:
        """Record that ``key``'s create may have reached kie.ai, its answer lost (``reason``)."""
        self.record("uncertain", key, reason=reason)

    def record_refused(self, key: str, error: BaseException) -> None:
        """Record that ``key``'s create was refused, or never reached kie.ai: nothing was
        created, so a rerun sends it again."""
        self.record("refused", key, error=capped(exception_fields(error)))

    def record_done(
        self, key: str, task_id: str, record: TaskRecord, error: BaseException | None = None
    ) -> None:
        """Record that ``key``'s task ``task_id`` ended: ``record`` is its final record,
        ``error`` why it failed (``None``: it succeeded). A rerun takes the job as finished."""
        fields = record_fields(record)
        if error is not None:
            failed = capped(exception_fields(error))
            self.record("done", key, task_id=task_id, status="failed", **fields, error=failed)
            return
        self.record("done", key, task_id=task_id, status="succeeded", **fields)
        self._succeeded[task_id] = key

    def record_saved(self, key: str, task_id: str, index: int, path: Path, size: int) -> None:
        """Record that result file ``index`` of ``key``'s task ``task_id`` is saved at
        ``path`` (absolute), ``size`` bytes long."""
        self.record("saved", key, task_id=task_id, index=index, path=str(path), size=size)

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`aclose`: this process holds the journal."""
        return self._fd is not None

    async def sync(self) -> None:
        """Return once every line written so far is on disk.

        The fsync runs in a thread; callers arriving while one runs share the next one.

        Raises:
            OSError: the fsync failed.
        """
        target = self._written
        # The fsync writes what is pending first: callers arriving while one runs share one
        # write and one fsync.
        while self._synced < target:
            if self._syncing is None:
                self._syncing = asyncio.ensure_future(self._fsync())
            await asyncio.shield(self._syncing)

    async def _fsync(self) -> None:
        try:
            self._flush()
            upto = self._written
            fd = self._fd
            if fd is None:
                raise RuntimeError("journal is not open")
            await asyncio.get_running_loop().run_in_executor(None, _datasync, fd)
            self._synced = max(self._synced, upto)
        finally:
            self._syncing = None

    async def aclose(self) -> None:
        """Put everything on disk, release the lock and close the file. Safe to call twice."""
        if self._fd is None:
            return
        try:
            self._flush()
            if self._syncing is not None:
                with contextlib.suppress(OSError):
                    await asyncio.shield(self._syncing)
            if self._synced < self._written:
                os.fsync(self._fd)  # the run is over: one last fsync, on the loop
        finally:
            fd, self._fd = self._fd, None
            self._lock.release()
            os.close(fd)  # closing the file releases its flock
