"""Bulk extension: many requests submitted and awaited concurrently, every one accounted for."""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import (
    AuthenticationError,
    FeatureDisabledError,
    InsufficientCreditsError,
    KieError,
    SubmissionUncertainError,
    TaskFailedError,
    TaskTimeoutError,
    _exception_fields,
)
from ._journal import Journal
from ._models import ExtendRequest, TaskRecord
from ._polling import PollPolicy
from ._wire import parse_record, request_to_json

if TYPE_CHECKING:
    from ._client import KieClient
    from ._handle import TaskHandle

__all__ = ["ExtendOutcome", "OutcomeKind", "Progress", "extend_many"]

log = logging.getLogger("kie_async")

#: Errors after which no later submission can succeed: stop submitting at once.
FATAL_ERRORS = (AuthenticationError, InsufficientCreditsError, FeatureDisabledError)


class OutcomeKind(str, enum.Enum):
    """How one request of a bulk run ended."""

    #: The task finished successfully; ``record`` holds the result.
    SUCCEEDED = "succeeded"
    #: The create was refused, or the task failed or timed out; ``error`` says why.
    FAILED = "failed"
    #: The create's reply was lost: a task may exist. Not resubmitted unless you ask.
    UNCERTAIN = "uncertain"
    #: Never sent, because an earlier error doomed every submission (401, 402, 505).
    NOT_SUBMITTED = "not_submitted"


@attrs.frozen
class ExtendOutcome:
    """The outcome of one request in :meth:`KieClient.extend_many`.

    Attributes:
        request: the :class:`ExtendRequest`.
        kind: how it ended (:class:`OutcomeKind`).
        task_id: the kie.ai task id, if a task was created (keep it: you can re-attach).
        record: the final :class:`TaskRecord`, if known.
        error: why it did not succeed.
        from_journal: ``True`` when the journal already held this final outcome and nothing
            was sent this run.
    """

    request: ExtendRequest
    kind: OutcomeKind
    task_id: str | None = None
    record: TaskRecord | None = None
    error: Exception | None = attrs.field(default=None, eq=False)
    from_journal: bool = False

    @property
    def ok(self) -> bool:
        """True when the task succeeded."""
        return self.kind is OutcomeKind.SUCCEEDED


@attrs.frozen
class Progress:
    """Counts of a bulk run, passed to ``on_progress`` whenever one changes.

    Attributes:
        queued: requests taken from the input and not yet submitted.
        submitted: creates kie.ai accepted in this run, plus tasks re-attached from a journal.
        running: submitted tasks not finished yet.
        succeeded, failed, uncertain: finished requests by outcome (``failed`` includes
            requests not submitted because of a fatal error).
    """

    queued: int = 0
    submitted: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    uncertain: int = 0

    @property
    def done(self) -> int:
        """Requests with a final outcome."""
        return self.succeeded + self.failed + self.uncertain


class _StoppedError(Exception):
    """Raised before sending, when a fatal error has stopped submissions."""


@attrs.define
class _Counts:
    queued: int = 0
    submitted: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    uncertain: int = 0
    callback: Callable[[Progress], None] | None = None

    def change(self, **deltas: int) -> None:
        for name, delta in deltas.items():
            setattr(self, name, getattr(self, name) + delta)
        if self.callback is not None:
            snapshot = Progress(
                self.queued,
                self.submitted,
                self.running,
                self.succeeded,
                self.failed,
                self.uncertain,
            )
            try:
                self.callback(snapshot)
            except Exception:
                log.exception("on_progress callback raised; the run goes on")


class _Source:
    """Hands out requests one at a time to many workers, from a sync or async iterable,
    each with its journal key (fingerprint, plus the occurrence number for repeats), or ``""``
    when not ``keyed``."""

    def __init__(
        self,
        requests: Iterable[ExtendRequest] | AsyncIterable[ExtendRequest],
        *,
        keyed: bool = True,
    ) -> None:
        self._sync: Iterator[ExtendRequest] | None = None
        self._async: AsyncIterator[ExtendRequest] | None = None
        if isinstance(requests, AsyncIterable):
            self._async = aiter(requests)
        else:
            self._sync = iter(requests)
        self._lock = asyncio.Lock()
        self._seen: collections.Counter[str] = collections.Counter()
        self._position = 0
        # Keys cost a JSON dump and a hash per request, and counting repeats keeps every
        # fingerprint for the whole run: only a run with a journal uses them.
        self._keyed = keyed

    async def next(self) -> tuple[int, str, ExtendRequest] | None:
        async with self._lock:
            try:
                if self._async is not None:
                    request = await anext(self._async)
                else:
                    assert self._sync is not None
                    request = next(self._sync)
            except (StopIteration, StopAsyncIteration):
                return None
            position = self._position
            self._position += 1
        if not isinstance(request, ExtendRequest):
            raise TypeError(
                f"extend_many() takes ExtendRequest items; item {position} is "
                f"{type(request).__name__}"
            )
        if not self._keyed:
            return position, "", request
        fingerprint = request.fingerprint()
        self._seen[fingerprint] += 1
        occurrence = self._seen[fingerprint]
        key = fingerprint if occurrence == 1 else f"{fingerprint}#{occurrence}"
        return position, key, request


class _Run:
    def __init__(
        self,
        client: KieClient,
        journal: Journal | None,
        poll: PollPolicy | None,
        counts: _Counts,
        resubmit_uncertain: bool,
    ) -> None:
        self.client = client
        self.journal = journal
        self.poll = poll
        self.counts = counts
        self.resubmit_uncertain = resubmit_uncertain
        self.fatal: KieError | None = None
        # Set when the run is being closed or cancelled: a worker whose cancellation was lost
        # (asyncio.wait_for before 3.12, async_timeout on 3.10) must still send nothing more.
        self.closing = False

    def _note_fatal(self, exc: BaseException) -> None:
        if isinstance(exc, FATAL_ERRORS) and self.fatal is None:
            self.fatal = exc
            log.error("stopping new submissions: %s", exc)

    def _record(self, event: str, key: str, *, durable: bool = False, **fields: Any) -> None:
        if self.journal is not None:
            self.journal.record(event, key, durable=durable, **fields)

    async def process(self, key: str, request: ExtendRequest) -> ExtendOutcome:
        entry = self.journal.entries.get(key) if self.journal is not None else None
        if entry is not None and entry.state == "done":
            return self._from_journal(request, entry)
        if entry is not None and entry.state == "submitted" and entry.task_id:
            self.counts.change(queued=-1, submitted=1, running=1)
            return await self._await(key, request, self.client.task(entry.task_id))
        if entry is not None and entry.state in ("intent", "uncertain"):
            reason = entry.reason or "the run stopped after sending it, before the reply was saved"
            if entry.state == "intent":
                self._record("uncertain", key, durable=True, reason=reason)
            if not self.resubmit_uncertain:
                self.counts.change(queued=-1, uncertain=1)
                error = SubmissionUncertainError(request=request, reason=f"journal: {reason}")
                return ExtendOutcome(request, OutcomeKind.UNCERTAIN, error=error)
        return await self._submit(key, request)

    async def _submit(self, key: str, request: ExtendRequest) -> ExtendOutcome:
        if self.fatal is not None:
            self.counts.change(queued=-1, failed=1)
            return ExtendOutcome(request, OutcomeKind.NOT_SUBMITTED, error=self.fatal)

        def before_send() -> None:
            if self.fatal is not None or self.closing:
                raise _StoppedError
            self._record("intent", key, durable=True, request=request_to_json(request))

        try:
            handle = await self.client._submit(request, before_send)
        except _StoppedError:
            self.counts.change(queued=-1, failed=1)
            return ExtendOutcome(request, OutcomeKind.NOT_SUBMITTED, error=self.fatal)
        except SubmissionUncertainError as exc:
            self._record("uncertain", key, durable=True, reason=exc.reason)
            self.counts.change(queued=-1, uncertain=1)
            return ExtendOutcome(request, OutcomeKind.UNCERTAIN, error=exc)
        except KieError as exc:
            self._note_fatal(exc)
            self._record("refused", key, error=_exception_fields(exc))
            self.counts.change(queued=-1, failed=1)
            return ExtendOutcome(request, OutcomeKind.FAILED, error=exc)
        self._record("submitted", key, durable=True, task_id=handle.task_id)
        self.counts.change(queued=-1, submitted=1, running=1)
        return await self._await(key, request, handle)

    async def _await(self, key: str, request: ExtendRequest, handle: TaskHandle) -> ExtendOutcome:
        task_id = handle.task_id
        try:
            record = await handle.wait(poll=self.poll)
        except TaskFailedError as exc:
            self._record(
                "done",
                key,
                task_id=task_id,
                status="failed",
                record=dict(exc.record.data) if exc.record else None,
                error=_exception_fields(exc),
            )
            self.counts.change(running=-1, failed=1)
            return ExtendOutcome(request, OutcomeKind.FAILED, task_id, exc.record, exc)
        except KieError as exc:
            # A timeout or a lasting poll error: the task may still finish. The journal keeps it
            # as submitted, so a rerun re-attaches to it.
            self._note_fatal(exc)
            last = exc.record if isinstance(exc, TaskTimeoutError) else handle.last_record
            self.counts.change(running=-1, failed=1)
            return ExtendOutcome(request, OutcomeKind.FAILED, task_id, last, exc)
        self._record("done", key, task_id=task_id, status="succeeded", record=dict(record.data))
        self.counts.change(running=-1, succeeded=1)
        return ExtendOutcome(request, OutcomeKind.SUCCEEDED, task_id, record)

    def _from_journal(self, request: ExtendRequest, entry: Any) -> ExtendOutcome:
        record = None
        if entry.record:
            try:
                record = parse_record(entry.record, task_id=entry.task_id or "")
            except KieError:
                record = None
        if entry.status == "succeeded":
            self.counts.change(queued=-1, succeeded=1)
            return ExtendOutcome(
                request, OutcomeKind.SUCCEEDED, entry.task_id, record, from_journal=True
            )
        error_fields = entry.error or {}
        error = TaskFailedError(
            task_id=entry.task_id or "",
            record=record,
            error_code=error_fields.get("error_code"),
            error_message=error_fields.get("error_message") or error_fields.get("message"),
        )
        self.counts.change(queued=-1, failed=1)
        return ExtendOutcome(
            request, OutcomeKind.FAILED, entry.task_id, record, error, from_journal=True
        )


async def extend_many(
    client: KieClient,
    requests: Iterable[ExtendRequest] | AsyncIterable[ExtendRequest],
    *,
    concurrency: int = 50,
    journal: Path | None = None,
    poll: PollPolicy | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    resubmit_uncertain: bool = False,
) -> AsyncGenerator[ExtendOutcome, None]:
    """Submit and await ``requests``, yielding one :class:`ExtendOutcome` per request as each
    finishes (not in input order).

    * At most ``concurrency`` requests are in flight (submitted and not finished) at once. The
      input is read lazily, so it can be a generator of any length.
    * One bad request never ends the run. After an error that dooms every later submission
      (401 bad key, 402 out of credits, 505 feature disabled) no new create is sent; tasks already
      submitted are still awaited, and the remaining requests are yielded as ``NOT_SUBMITTED``.
    * Every create goes through the client's rate limiter.
    * With ``journal`` (a path), progress is recorded in an append-only JSON-lines file: a rerun
      with the same journal and requests skips finished requests, re-attaches to submitted ones,
      and never resubmits a request whose create may have reached kie.ai (it is reported
      ``UNCERTAIN``), unless ``resubmit_uncertain`` is set.

    Break out early with ``contextlib.aclosing`` to stop at once::

        async with aclosing(kie.extend_many(requests)) as outcomes:
            async for outcome in outcomes:
                ...

    Raises:
        ValidationError: ``concurrency`` is not a positive int.
        ConfigurationError: the journal cannot be read or is not a kie-async journal.
        OSError: the journal cannot be written (the run stops: it could not promise safety).
        TypeError: an item of ``requests`` is not an :class:`ExtendRequest`.
    """
    from ._errors import ValidationError

    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency", f"must be an int >= 1, got {concurrency!r}")
    book = Journal(journal) if journal is not None else None
    counts = _Counts(callback=on_progress)
    run = _Run(client, book, poll, counts, resubmit_uncertain)
    source = _Source(requests, keyed=book is not None)
    outcomes: asyncio.Queue[ExtendOutcome | BaseException | None] = asyncio.Queue()

    async def worker() -> None:
        try:
            while not run.closing and (item := await source.next()) is not None:
                _, key, request = item
                counts.change(queued=1)
                try:
                    outcome = await run.process(key, request)
                except OSError:
                    raise  # the journal cannot be written: no promise can be kept, stop
                except Exception as exc:  # nothing may lose the request: report it
                    log.exception("unexpected error for %s", request.describe())
                    counts.change(queued=-1, failed=1)
                    outcome = ExtendOutcome(request, OutcomeKind.FAILED, error=exc)
                outcomes.put_nowait(outcome)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            outcomes.put_nowait(exc)
        finally:
            outcomes.put_nowait(None)

    if book is not None:
        book.open()
    workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    try:
        running = len(workers)
        while running:
            got = await outcomes.get()
            if got is None:
                running -= 1
            elif isinstance(got, BaseException):
                raise got
            else:
                yield got
    finally:
        run.closing = True
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if book is not None:
            book.close()
