"""One bulk run's state, and each request's way through it: the journal, the create, the wait
and the outcome (the runner, in ``run``, feeds it requests from its workers)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import (
    AuthenticationError,
    FeatureDisabledError,
    InsufficientCreditsError,
    KieError,
    TransportError,
)
from .._kinds.registry import REQUEST_TYPES, TaskRequest
from .._policies import PollPolicy
from .._protocol.records import TaskRecord
from .._protocol.wire import parse_record
from .._retry import CreateFailure, create_failure, unreachable
from .._tasks.callback_race import CallbackSource
from .._tasks.errors import SubmissionUncertainError, TaskFailedError, TaskTimeoutError
from .._tasks.handle import TaskHandle
from .._text import server_name
from .budget import Budget, Hold
from .chains import BulkItem
from .journal import Journal
from .learning import Learner
from .learning import hold as hold_price
from .outcomes import Counts, ExtendOutcome, Outcome, OutcomeKind
from .poller import Poller, Waiting
from .preflight import Account

if TYPE_CHECKING:
    from decimal import Decimal

    from .._policies import Timeout

log = logging.getLogger("kie_async")


class Submitter(Account, Protocol):
    """What a bulk run needs of its client (a :class:`~kie_async.KieClient` is one): its poll
    schedule, timeouts and pool size, whether callbacks end waits, the two task calls, and the
    balance (the check before the first create)."""

    @property
    def poll_policy(self) -> PollPolicy: ...

    @property
    def read_timeout(self) -> float: ...

    @property
    def timeouts(self) -> Timeout: ...

    @property
    def max_connections(self) -> int: ...

    @property
    def callbacks(self) -> CallbackSource | None: ...

    def task(self, task_id: str) -> TaskHandle:
        """A handle on a task created earlier (a journal's), by id."""
        ...

    async def credits(self) -> Decimal:
        """The account's balance (a budgeted run learning a price reads it)."""
        ...

    async def _submit(self, request: TaskRequest, watch: _Send | None = None) -> TaskHandle:
        """Create the task, telling ``watch`` of each attempt (see :class:`_Send`)."""
        ...


#: Errors after which no later submission can succeed: stop submitting at once.
FATAL_ERRORS = (AuthenticationError, InsufficientCreditsError, FeatureDisabledError)
#: Creates in a row that could not reach kie.ai at all (each after its own connect retries)
#: after which no new create is sent: the API is down, or the base URL is wrong.
UNREACHABLE_STREAK = 3


class _StoppedError(Exception):
    """Raised before sending, when a fatal error or a stop of the run has ended submissions."""


class _Send:
    """Watches one request's create attempts for the client (see ``KieClient._submit``): the
    journal's intent goes to disk when the create is about to go on the wire, and a stopping
    run lets a create already on the wire finish instead of cutting it off."""

    __slots__ = ("intent", "key", "maybe_sent", "request", "run", "task")

    def __init__(self, run: Run, key: str, request: TaskRequest) -> None:
        self.run = run
        self.key = key
        self.request = request
        self.intent = False
        # True from the moment an attempt may have reached kie.ai until one is known not to.
        self.maybe_sent = False
        self.task: asyncio.Task[Any] | None = None

    async def sending(self) -> None:
        """The create is about to go out (its connection slot is ours). Raises
        :class:`_StoppedError` when the run no longer sends."""
        run = self.run
        if run.fatal is not None or run.closing:
            raise _StoppedError
        if not self.intent:
            if run.journal is not None:
                run.journal.record_intent(self.key, self.request)
            self.intent = True
            await run._sync()
            if run.fatal is not None or run.closing:
                raise _StoppedError
        self.task = task = asyncio.current_task()
        self.maybe_sent = True
        if task is not None:
            run.on_wire.add(task)

    def ended(self, exc: BaseException | None) -> None:
        """One attempt is over: answered, or failed with ``exc``."""
        if isinstance(exc, KieError) and create_failure(exc) is CreateFailure.RETRY:
            self.maybe_sent = False  # kie.ai refused it, or no connection: nothing was created
        if self.task is not None:
            self.run.on_wire.discard(self.task)
            self.task = None
            self.run.wire_changed.set()


class Run:
    def __init__(
        self,
        client: Submitter,
        journal: Journal | None,
        poll: PollPolicy | None,
        counts: Counts,
        resubmit_uncertain: bool,
        concurrency: int,
    ) -> None:
        self.client = client
        self.journal = journal
        self.poll = poll
        self.counts = counts
        self.resubmit_uncertain = resubmit_uncertain
        self.fatal: KieError | None = None
        self.budget: Budget | None = None  # with max_credits
        self.unreachable = 0
        # Set when the run is being closed or cancelled: a worker whose cancellation was lost
        # (asyncio.wait_for before 3.12, async_timeout on 3.10) must still send nothing more.
        self.closing = False
        self.outcomes: asyncio.Queue[Outcome | BaseException] = asyncio.Queue()
        # A place for each request in flight: taken before a request is read from the input,
        # given back only when the consumer has taken its outcome, so a consumer that stops
        # reading (or breaks out while holding the run) stops the creates too.
        self.in_flight = asyncio.Semaphore(concurrency)
        self.poller = Poller(self, poll or client.poll_policy, client.max_connections)
        # With a callback receiver, a task waits through TaskHandle.wait, which races the
        # callback against a slow safety poll: one task per such wait.
        self.waits: set[asyncio.Future[None]] = set()
        # Workers whose create is on the wire: a stop lets them finish, so their task ids
        # are saved instead of being lost as uncertain.
        self.on_wire: set[asyncio.Task[Any]] = set()
        self.wire_changed = asyncio.Event()

    async def stop(self, workers: Sequence[asyncio.Future[None]]) -> None:
        """Stop submitting at once: cancel every worker not sending a create, and wait for the
        creates already on the wire to be answered (each within its timeouts), then cancel
        what is left. A cancellation of this wait (a second Ctrl-C) cuts them off at once."""
        self.closing = True
        loop = asyncio.get_running_loop()
        client = self.client
        deadline = loop.time() + client.read_timeout + (client.timeouts.connect or 0.0) + 1.0
        cancelled: set[asyncio.Future[None]] = set()
        announced = False
        try:
            while True:
                for worker in workers:
                    if not worker.done() and worker not in self.on_wire and worker not in cancelled:
                        worker.cancel()
                        cancelled.add(worker)
                live = [worker for worker in workers if not worker.done()]
                if not live:
                    return
                if self.on_wire and not announced:
                    announced = True
                    log.warning(
                        "stopping: no new creates; waiting for %d create(s) already sent, so "
                        "their task ids are saved",
                        len(self.on_wire),
                    )
                remaining = deadline - loop.time()
                if remaining <= 0:
                    log.warning(
                        "stopping: %d create(s) still unanswered; cut off (uncertain)",
                        len(self.on_wire),
                    )
                    return
                self.wire_changed.clear()
                changed: asyncio.Future[Any] = asyncio.ensure_future(self.wire_changed.wait())
                waiting: set[asyncio.Future[Any]] = {*live, changed}
                try:
                    await asyncio.wait(
                        waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    changed.cancel()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def emit(self, outcome: Outcome) -> None:
        """Hand ``outcome`` to the consumer; its place is freed once the consumer took it."""
        self.outcomes.put_nowait(outcome)

    def fail(self, request: BulkItem, exc: BaseException) -> None:
        """Report an unexpected error for ``request``; a journal that cannot be written, or
        anything else that is not an ``Exception``, ends the run."""
        if isinstance(exc, OSError) or not isinstance(exc, Exception):
            self.outcomes.put_nowait(exc)
            return
        log.exception("unexpected error for %s", request.describe(), exc_info=exc)
        self.counts.change(failed=1)
        self.emit(ExtendOutcome(request, OutcomeKind.FAILED, error=exc))

    def _note_fatal(self, exc: BaseException) -> None:
        if isinstance(exc, FATAL_ERRORS) and self.fatal is None:
            self.fatal = exc
            log.error("stopping new submissions: %s", exc)

    def _note_unreachable(self, exc: KieError) -> None:
        """A failed create: a permanent transport failure (TLS, an invalid URL), or the
        ``UNREACHABLE_STREAK``-th create in a row that could not connect, stops submissions."""
        permanent = isinstance(exc, TransportError) and exc.permanent
        self.unreachable = self.unreachable + 1 if unreachable(exc) else 0
        if (permanent or self.unreachable >= UNREACHABLE_STREAK) and self.fatal is None:
            self.fatal = exc
            where = server_name(getattr(exc, "url", ""))
            log.error("stopping new submissions, %s cannot be reached: %s", where, exc)

    def flush(self) -> None:
        """Write the journal's pending lines to its file."""
        if self.journal is not None:
            self.journal.flush()

    async def _sync(self) -> None:
        """Wait until the journal's lines so far are on disk."""
        if self.journal is not None:
            await self.journal.sync()

    async def process(self, key: str, request: BulkItem) -> Outcome | None:
        """Start ``request``: its outcome, or ``None`` once its task is being awaited."""
        assert isinstance(request, REQUEST_TYPES), "only run_many's runs take chains"
        # Taken out, not looked up: a rerun's memory shrinks as it goes instead of holding
        # every earlier entry to the end.
        entry = self.journal.entries.pop(key, None) if self.journal is not None else None
        if entry is not None and entry.state == "done":
            return self._from_journal(request, entry)
        if entry is not None and entry.state == "submitted" and entry.task_id:
            self.counts.change(queued=-1, submitted=1, running=1)
            self._await(key, request, self.client.task(entry.task_id))
            return None
        if entry is not None and entry.state in ("intent", "uncertain"):
            reason = entry.reason or "the run stopped after sending it, before the reply was saved"
            if entry.state == "intent":
                if self.journal is not None:
                    self.journal.record_uncertain(key, reason)
                await self._sync()
            if not self.resubmit_uncertain:
                self.counts.change(queued=-1, uncertain=1)
                error = SubmissionUncertainError(request=request, reason=f"journal: {reason}")
                return ExtendOutcome(request, OutcomeKind.UNCERTAIN, error=error)
        return await self._submit(key, request)

    async def _submit(self, key: str, request: TaskRequest) -> Outcome | None:
        hold = None
        if self.budget is not None and not self.fatal:
            # May wait while a price is being learned (see ``learning``).
            hold = await hold_price(self.budget, request, self.client)
            if isinstance(hold, Hold) and self.fatal:  # set while it waited
                hold.settle(False)
        if refusal := self.fatal or (hold if isinstance(hold, KieError) else None):
            self.counts.change(queued=-1, failed=1)
            return ExtendOutcome(request, OutcomeKind.NOT_SUBMITTED, error=refusal)
        send = _Send(self, key, request)
        paid: bool | None = None  # a held price is kept unless the create was certainly refused
        answered = False
        try:
            handle = await self.client._submit(request, send)
            answered = True
        except asyncio.CancelledError:
            # Stopped while waiting for the limiter, a connection or a retry: nothing of this
            # request went out (a create cut off on the wire keeps its intent: uncertain).
            if send.intent and not send.maybe_sent and self.journal is not None:
                self.journal.record_not_sent(key)
            raise
        except _StoppedError:
            if send.intent and self.journal is not None:
                self.journal.record_not_sent(key)
            self.counts.change(queued=-1, failed=1)
            return ExtendOutcome(request, OutcomeKind.NOT_SUBMITTED, error=self.fatal)
        except SubmissionUncertainError as exc:
            paid = True
            if self.journal is not None:
                self.journal.record_uncertain(key, exc.reason)
            self.counts.change(queued=-1, uncertain=1)
            await self._sync()
            return ExtendOutcome(request, OutcomeKind.UNCERTAIN, error=exc)
        except KieError as exc:
            paid = False  # kie.ai refused it, or it never reached kie.ai: nothing was created
            self._note_unreachable(exc)
            self._note_fatal(exc)
            if self.journal is not None:
                self.journal.record_refused(key, exc)
            self.counts.change(queued=-1, failed=1)
            return ExtendOutcome(request, OutcomeKind.FAILED, error=exc)
        finally:
            if isinstance(hold, Hold):  # paid None: as far as the create went
                hold.settle(send.maybe_sent if paid is None else paid, answered)
        self.unreachable = 0
        if self.journal is not None:
            self.journal.record_submitted(key, handle.task_id)
        self.counts.change(queued=-1, submitted=1, running=1)
        # In the file before the task's first poll (the poller flushes the journal), on disk
        # with the next fsync: nothing waits for the disk here.
        self._await(key, request, handle)
        if isinstance(hold, Learner):  # its task id is saved: now read what it cost
            await hold.measure(self.client)
        return None

    def _await(self, key: str, request: TaskRequest, handle: TaskHandle) -> None:
        """Await the task: through the shared poller, or, with a callback receiver, through
        :meth:`TaskHandle.wait` in a task of its own."""
        if self.closing:
            return  # a create answered while the run stops: its id is saved, nobody waits
        if self.client.callbacks is None:
            policy = self.poll or self.client.poll_policy
            first = policy.first_wait(age=handle._age(), deadline=policy.timeout)
            self.poller.add(Waiting(key, request, handle, policy), first)
            return
        self.flush()
        wait = asyncio.ensure_future(self._wait(key, request, handle))
        self.waits.add(wait)
        wait.add_done_callback(self.waits.discard)

    async def _wait(self, key: str, request: TaskRequest, handle: TaskHandle) -> None:
        try:
            try:
                record = await handle.wait(poll=self.poll)
            except TaskFailedError as exc:
                ended = exc.record if exc.record is not None else handle.last_record
                if ended is None:
                    raise
                self.emit(self.task_ended(key, request, handle, ended))
            except KieError as exc:
                self.emit(self.wait_failed(key, request, handle, exc))
            else:
                self.emit(self.task_ended(key, request, handle, record))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.fail(request, exc)

    def task_ended(
        self, key: str, request: TaskRequest, handle: TaskHandle, record: TaskRecord
    ) -> Outcome:
        """The outcome of a task kie.ai reports ended, recorded as final in the journal."""
        task_id = handle.task_id
        try:
            handle._outcome(record)
        except TaskFailedError as exc:
            if self.journal is not None:
                self.journal.record_done(key, task_id, record, exc)
            self.counts.change(running=-1, failed=1)
            return ExtendOutcome(request, OutcomeKind.FAILED, task_id, record, exc)
        if self.journal is not None:
            self.journal.record_done(key, task_id, record)
        self.counts.change(running=-1, succeeded=1)
        return ExtendOutcome(request, OutcomeKind.SUCCEEDED, task_id, record)

    def wait_failed(
        self, key: str, request: TaskRequest, handle: TaskHandle, exc: KieError
    ) -> Outcome:
        """A timeout or a lasting poll error: the task may still finish. The journal keeps it
        as submitted, so a rerun re-attaches to it."""
        self._note_fatal(exc)
        last = exc.record if isinstance(exc, TaskTimeoutError) else handle.last_record
        self.counts.change(running=-1, failed=1)
        return ExtendOutcome(request, OutcomeKind.FAILED, handle.task_id, last, exc)

    def _from_journal(self, request: TaskRequest, entry: Any) -> Outcome:
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
