"""Bulk extension: many requests submitted and awaited concurrently, every one accounted for."""

from __future__ import annotations

import asyncio
import collections
import enum
import heapq
import itertools
import logging
import math
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol

import attrs

from ._chains import BulkItem, journal_key, request_json
from ._errors import (
    AuthenticationError,
    FeatureDisabledError,
    InsufficientCreditsError,
    KieError,
    TransportError,
    _exception_fields,
)
from ._handle import CallbackSource, TaskHandle, finished
from ._journal import Journal, capped
from ._models import ExtendRequest, TaskRecord
from ._polling import CreateFailure, PollPolicy, create_failure, unreachable
from ._requests import REQUEST_TYPES, TaskRequest
from ._retry import grown, next_delay, poll_schedule, rng
from ._task_errors import SubmissionUncertainError, TaskFailedError, TaskTimeoutError
from ._wire import parse_record

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    from ._timeout import Timeout

    #: The request type of an outcome: an extension unless said otherwise (``extend_many``).
    R = TypeVar("R", covariant=True, bound=BulkItem, default=ExtendRequest)
else:
    from typing import TypeVar

    R = TypeVar("R", covariant=True)

__all__ = ["BulkRun", "ExtendOutcome", "OutcomeKind", "Progress", "extend_many"]

log = logging.getLogger("kie_async")


class Submitter(Protocol):
    """What a bulk run needs of its client (a :class:`~kie_async.KieClient` is one): its poll
    schedule, timeouts and pool size, whether callbacks end waits, and the two task calls."""

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

    async def _submit(self, request: TaskRequest, watch: _Send | None = None) -> TaskHandle:
        """Create the task, telling ``watch`` of each attempt (see :class:`_Send`)."""
        ...


#: Errors after which no later submission can succeed: stop submitting at once.
FATAL_ERRORS = (AuthenticationError, InsufficientCreditsError, FeatureDisabledError)
#: Creates in a row that could not reach kie.ai at all (each after its own connect retries)
#: after which no new create is sent: the API is down, or the base URL is wrong.
UNREACHABLE_STREAK = 3


class OutcomeKind(str, enum.Enum):
    """How one request of a bulk run ended."""

    #: The task finished successfully; ``record`` holds the result.
    SUCCEEDED = "succeeded"
    #: The create was refused, or the task failed or timed out; ``error`` says why.
    FAILED = "failed"
    #: The create's reply was lost: a task may exist. Not resubmitted unless you ask.
    UNCERTAIN = "uncertain"
    #: Never sent, because an earlier error doomed every submission (401, 402, 505, or kie.ai
    #: could not be reached by several creates in a row).
    NOT_SUBMITTED = "not_submitted"


@attrs.frozen
class ExtendOutcome(Generic[R]):
    """The outcome of one request in :meth:`KieClient.extend_many` or
    :meth:`KieClient.run_many`.

    Attributes:
        request: the :class:`ExtendRequest` (``extend_many``); for ``run_many``, the request of
            any kind or the :class:`Chain`.
        kind: how it ended (:class:`OutcomeKind`).
        task_id: the kie.ai task id, if a task was created (keep it: you can re-attach).
        record: the final :class:`TaskRecord`, if known (``None`` for a create that failed;
            a failed or timed-out task's last record otherwise). Use :attr:`result` for the
            record of a success, typed without ``None``.
        error: why it did not succeed.
        from_journal: ``True`` when the journal already held this final outcome and nothing
            was sent this run (for a chain: every step's).
        steps: for a :class:`Chain`, the outcome of each step that ran, in order (the request
            of each is the step's full request, with its source's task id); the chain's own
            ``kind``, ``task_id``, ``record`` and ``error`` are its last step's. Empty
            otherwise.
    """

    request: R
    kind: OutcomeKind
    task_id: str | None = None
    record: TaskRecord | None = None
    error: Exception | None = attrs.field(default=None, eq=False)
    from_journal: bool = False
    steps: tuple[ExtendOutcome[TaskRequest], ...] = ()

    @property
    def ok(self) -> bool:
        """True when the task succeeded (then :attr:`result` is its record)."""
        return self.kind is OutcomeKind.SUCCEEDED

    @property
    def result(self) -> TaskRecord:
        """The final :class:`TaskRecord` of a request that succeeded; typed, unlike
        :attr:`record`, without ``None``.

        Raises:
            KieError: the outcome's :attr:`error`, as ``concurrent.futures.Future.result()``
                does, when the request did not succeed.
            LookupError: no record is known (a success read back from a journal whose record
                was unreadable).

        Example::

            if outcome.ok:
                print(outcome.task_id, outcome.result.result_urls)
        """
        if self.ok and self.record is not None:
            return self.record
        if self.error is not None:
            raise self.error
        raise LookupError(f"no task record for {self.request.describe()} ({self.kind.value})")


#: The outcomes a run handles inside: of any request kind, or of a chain.
_Outcome = ExtendOutcome[BulkItem]


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
    """Raised before sending, when a fatal error or a stop of the run has ended submissions."""


def _record_fields(record: TaskRecord) -> dict[str, Any]:
    """What a journal's ``done`` line keeps of a record: enough for a rerun and a report,
    never kie's whole answer."""
    return {
        "task_type": record.task_type,
        "flag": record.success_flag,
        "result_urls": list(record.result_urls),
        "created": record.created_at_raw,
        "completed": record.completed_at_raw,
    }


class _Send:
    """Watches one request's create attempts for the client (see ``KieClient._submit``): the
    journal's intent goes to disk when the create is about to go on the wire, and a stopping
    run lets a create already on the wire finish instead of cutting it off."""

    __slots__ = ("intent", "key", "maybe_sent", "request", "run", "task")

    def __init__(self, run: _Run, key: str, request: TaskRequest) -> None:
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
            run._record("intent", self.key, request=request_json(self.request))
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
        requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
        *,
        keyed: bool = True,
        accept: tuple[type, ...] = (ExtendRequest,),
        caller: str = "extend_many",
    ) -> None:
        self._sync: Iterator[BulkItem] | None = None
        self._async: AsyncIterator[BulkItem] | None = None
        self._accept = accept
        self._caller = caller
        if isinstance(requests, Sequence):
            # A list or tuple is checked whole before the first create: a bad item at its end
            # must not cost the creates before it. An iterator is checked as it is read.
            for position, request in enumerate(requests):
                self._check(position, request)
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

    def _check(self, position: int, request: object) -> None:
        if not isinstance(request, self._accept):
            names = " or ".join(kind.__name__ for kind in self._accept)
            raise TypeError(
                f"{self._caller}() takes {names} items; item {position} is {type(request).__name__}"
            )

    async def next(self) -> tuple[int, str, BulkItem] | None:
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
        self._check(position, request)
        if not self._keyed:
            return position, "", request
        fingerprint = journal_key(request)
        self._seen[fingerprint] += 1
        occurrence = self._seen[fingerprint]
        key = fingerprint if occurrence == 1 else f"{fingerprint}#{occurrence}"
        return position, key, request


class _Waiting:
    """One task of a bulk run between polls: all the poller keeps for it."""

    __slots__ = (
        "base",
        "cut_short",
        "deadline",
        "delays",
        "grace_until",
        "handle",
        "key",
        "request",
    )

    def __init__(
        self, key: str, request: TaskRequest, handle: TaskHandle, policy: PollPolicy
    ) -> None:
        self.key = key
        self.request = request
        self.handle = handle
        self.base = policy.interval
        self.delays = 0
        timeout = policy.timeout
        self.deadline = time.monotonic() + timeout if timeout is not None else math.inf
        self.grace_until = handle._grace_until(policy)
        self.cut_short = False


class _Poller:
    """Polls every task of a bulk run from one heap instead of a coroutine per task.

    A run holds thousands of tasks in flight for minutes. As a suspended chain of coroutines each
    would cost kilobytes; here each is a :class:`_Waiting` in a heap ordered by its next poll.
    ``limit`` pollers take the due tasks from the heap and poll them, so at most ``limit`` polls
    are on the wire at once and no asyncio task is made per poll: a poller that finishes a poll
    takes the next due task at once, and idle pollers sleep until a task is due (one timer for
    the earliest, one poller woken per due task). The schedule is :meth:`TaskHandle.wait`'s: the
    first poll at once (or after the policy's ``first_delay`` for a task just created), then the
    policy's growing, jittered interval, transient failures retried on the same schedule, and
    one last poll at the deadline.
    """

    def __init__(self, run: _Run, policy: PollPolicy, limit: int) -> None:
        self._run = run
        self._policy = policy
        self._schedule = poll_schedule(policy)
        self._heap: list[tuple[float, int, _Waiting]] = []
        self._order = itertools.count()
        self._limit = limit
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._pollers: list[asyncio.Future[None]] = []

    def add(self, waiting: _Waiting, delay: float = 0.0) -> None:
        """Schedule the next poll of ``waiting`` in ``delay`` seconds."""
        due = time.monotonic() + delay
        heapq.heappush(self._heap, (due, next(self._order), waiting))
        self._keep_watch()

    def _wake_one(self) -> None:
        while self._idle:
            idle = self._idle.popleft()
            if not idle.done():
                idle.set_result(None)
                return

    def _arm(self, due: float) -> None:
        """One timer, for the earliest task due while pollers are idle."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        delay = max(due - time.monotonic(), 0.0)
        self._timer = asyncio.get_running_loop().call_later(delay, self._ring)

    def _ring(self) -> None:
        self._timer, self._timer_at = None, math.inf
        self._wake_one()

    def _keep_watch(self) -> None:
        """While pollers are idle, the next task due wakes one: now, or by the timer."""
        if self._idle and self._heap:
            due = self._heap[0][0]
            if due <= time.monotonic():
                self._wake_one()
            elif due < self._timer_at:
                self._arm(due)

    async def _work(self) -> None:
        heap, idle = self._heap, self._idle
        loop = asyncio.get_running_loop()
        while True:
            if heap and heap[0][0] <= time.monotonic():
                waiting = heapq.heappop(heap)[2]
                self._keep_watch()
                self._run.flush()  # a task's id is in the journal's file before its first poll
                await self._poll(waiting)
                continue
            waiter = loop.create_future()
            idle.append(waiter)
            self._keep_watch()
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()

    async def dispatch(self) -> None:
        """Run the pollers until cancelled."""
        self._pollers = [asyncio.ensure_future(self._work()) for _ in range(self._limit)]
        try:
            await asyncio.gather(*self._pollers)
        finally:
            await self.aclose()

    async def _poll(self, waiting: _Waiting) -> None:
        run, handle = self._run, waiting.handle
        try:
            remaining = waiting.deadline - time.monotonic()
            timer = None
            longest = run.client.timeouts.total
            if longest is None or remaining < longest:
                # A poll that hangs must not outlive the task's deadline (its budget would
                # end it only later): cancel this poll when the deadline comes.
                poll = asyncio.current_task()
                assert poll is not None
                timer = asyncio.get_running_loop().call_later(
                    max(remaining, 0.0), self._cut_short, waiting, poll
                )
            try:
                value = await handle._poll_step(waiting.grace_until)
            except asyncio.CancelledError:
                if not waiting.cut_short:
                    raise
                uncancel = getattr(asyncio.current_task(), "uncancel", None)
                if uncancel is not None:
                    uncancel()
                run.emit(
                    run._wait_failed(waiting.key, waiting.request, handle, self._expired(waiting))
                )
                return
            except KieError as exc:
                run.emit(run._wait_failed(waiting.key, waiting.request, handle, exc))
                return
            finally:
                if timer is not None:
                    timer.cancel()
            if finished(value):
                assert isinstance(value, TaskRecord)
                run.emit(run._ended(waiting.key, waiting.request, handle, value))
                return
            now = time.monotonic()
            if now >= waiting.deadline:
                run.emit(
                    run._wait_failed(waiting.key, waiting.request, handle, self._expired(waiting))
                )
                return
            delay = next_delay(self._schedule, waiting.base, value, rng)
            waiting.delays += 1
            waiting.base = grown(self._schedule, waiting.base, waiting.delays)
            delay = min(delay, waiting.deadline - now)
            if isinstance(value, KieError):
                log.debug(
                    "retrying poll of task %s in %.2fs after: %s", handle.task_id, delay, value
                )
            self.add(waiting, delay)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            run.fail(waiting.request, exc)

    @staticmethod
    def _cut_short(waiting: _Waiting, poll: asyncio.Task[Any]) -> None:
        waiting.cut_short = True
        poll.cancel()

    def _expired(self, waiting: _Waiting) -> TaskTimeoutError:
        handle = waiting.handle
        return TaskTimeoutError(
            task_id=handle.task_id, record=handle.last_record, timeout=self._policy.timeout or 0.0
        )

    async def aclose(self) -> None:
        """Cancel every poll in progress and wait for them to unwind."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        pollers, self._pollers = self._pollers, []
        for poller in pollers:
            poller.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)


class _Run:
    def __init__(
        self,
        client: Submitter,
        journal: Journal | None,
        poll: PollPolicy | None,
        counts: _Counts,
        resubmit_uncertain: bool,
        concurrency: int,
    ) -> None:
        self.client = client
        self.journal = journal
        self.poll = poll
        self.counts = counts
        self.resubmit_uncertain = resubmit_uncertain
        self.fatal: KieError | None = None
        self.unreachable = 0
        # Set when the run is being closed or cancelled: a worker whose cancellation was lost
        # (asyncio.wait_for before 3.12, async_timeout on 3.10) must still send nothing more.
        self.closing = False
        self.outcomes: asyncio.Queue[_Outcome | BaseException] = asyncio.Queue()
        # A place for each request in flight: taken before a request is read from the input,
        # given back only when the consumer has taken its outcome, so a consumer that stops
        # reading (or breaks out while holding the run) stops the creates too.
        self.in_flight = asyncio.Semaphore(concurrency)
        self.poller = _Poller(self, poll or client.poll_policy, client.max_connections)
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

    def emit(self, outcome: _Outcome) -> None:
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
            log.error("stopping new submissions, kie.ai cannot be reached: %s", exc)

    def _record(self, event: str, key: str, **fields: Any) -> None:
        if self.journal is not None:
            self.journal.record(event, key, **fields)

    def flush(self) -> None:
        """Write the journal's pending lines to its file."""
        if self.journal is not None:
            self.journal.flush()

    async def _sync(self) -> None:
        """Wait until the journal's lines so far are on disk."""
        if self.journal is not None:
            await self.journal.sync()

    async def process(self, key: str, request: BulkItem) -> _Outcome | None:
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
                self._record("uncertain", key, reason=reason)
                await self._sync()
            if not self.resubmit_uncertain:
                self.counts.change(queued=-1, uncertain=1)
                error = SubmissionUncertainError(request=request, reason=f"journal: {reason}")
                return ExtendOutcome(request, OutcomeKind.UNCERTAIN, error=error)
        return await self._submit(key, request)

    async def _submit(self, key: str, request: TaskRequest) -> _Outcome | None:
        if self.fatal is not None:
            self.counts.change(queued=-1, failed=1)
            return ExtendOutcome(request, OutcomeKind.NOT_SUBMITTED, error=self.fatal)

        send = _Send(self, key, request)
        try:
            handle = await self.client._submit(request, send)
        except asyncio.CancelledError:
            # Stopped while waiting for the limiter, a connection or a retry: nothing of this
            # request went out (a create cut off on the wire keeps its intent: uncertain).
            if send.intent and not send.maybe_sent:
                self._record("not_sent", key)
            raise
        except _StoppedError:
            if send.intent:
                self._record("not_sent", key)
            self.counts.change(queued=-1, failed=1)
            return ExtendOutcome(request, OutcomeKind.NOT_SUBMITTED, error=self.fatal)
        except SubmissionUncertainError as exc:
            self._record("uncertain", key, reason=exc.reason)
            self.counts.change(queued=-1, uncertain=1)
            await self._sync()
            return ExtendOutcome(request, OutcomeKind.UNCERTAIN, error=exc)
        except KieError as exc:
            self._note_unreachable(exc)
            self._note_fatal(exc)
            self._record("refused", key, error=capped(_exception_fields(exc)))
            self.counts.change(queued=-1, failed=1)
            return ExtendOutcome(request, OutcomeKind.FAILED, error=exc)
        self.unreachable = 0
        self._record("submitted", key, task_id=handle.task_id)
        self.counts.change(queued=-1, submitted=1, running=1)
        # In the file before the task's first poll (the poller flushes the journal), on disk
        # with the next fsync: nothing waits for the disk here.
        self._await(key, request, handle)
        return None

    def _await(self, key: str, request: TaskRequest, handle: TaskHandle) -> None:
        """Await the task: through the shared poller, or, with a callback receiver, through
        :meth:`TaskHandle.wait` in a task of its own."""
        if self.closing:
            return  # a create answered while the run stops: its id is saved, nobody waits
        if self.client.callbacks is None:
            policy = self.poll or self.client.poll_policy
            first = policy.first_wait(age=handle._age(), deadline=policy.timeout)
            self.poller.add(_Waiting(key, request, handle, policy), first)
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
                self.emit(self._ended(key, request, handle, ended))
            except KieError as exc:
                self.emit(self._wait_failed(key, request, handle, exc))
            else:
                self.emit(self._ended(key, request, handle, record))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.fail(request, exc)

    def _ended(
        self, key: str, request: TaskRequest, handle: TaskHandle, record: TaskRecord
    ) -> _Outcome:
        """The outcome of a task kie.ai reports ended, recorded as final in the journal."""
        task_id = handle.task_id
        try:
            handle._outcome(record)
        except TaskFailedError as exc:
            self._record(
                "done",
                key,
                task_id=task_id,
                status="failed",
                **_record_fields(record),
                error=capped(_exception_fields(exc)),
            )
            self.counts.change(running=-1, failed=1)
            return ExtendOutcome(request, OutcomeKind.FAILED, task_id, record, exc)
        self._record("done", key, task_id=task_id, status="succeeded", **_record_fields(record))
        self.counts.change(running=-1, succeeded=1)
        return ExtendOutcome(request, OutcomeKind.SUCCEEDED, task_id, record)

    def _wait_failed(
        self, key: str, request: TaskRequest, handle: TaskHandle, exc: KieError
    ) -> _Outcome:
        """A timeout or a lasting poll error: the task may still finish. The journal keeps it
        as submitted, so a rerun re-attaches to it."""
        self._note_fatal(exc)
        last = exc.record if isinstance(exc, TaskTimeoutError) else handle.last_record
        self.counts.change(running=-1, failed=1)
        return ExtendOutcome(request, OutcomeKind.FAILED, handle.task_id, last, exc)

    def _from_journal(self, request: TaskRequest, entry: Any) -> _Outcome:
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


class BulkRun(AsyncIterator[ExtendOutcome[R]]):
    """A bulk run from :meth:`KieClient.extend_many`: an async iterator of
    :class:`ExtendOutcome`, and an async context manager that ends the run when its block ends.

    Nothing is sent before the first outcome is asked for. At most ``concurrency`` requests are
    submitted and not yet consumed: while you hold an outcome (or stop asking for more), the run
    sends no new create. Leaving the block (or :meth:`aclose`) stops the run: no new create is
    sent, creates already on the wire are let finish (within their timeout) so their task ids
    reach the journal, and the waits are cancelled (the tasks go on at kie.ai; a rerun with the
    journal re-attaches to them).

    Example::

        async with kie.extend_many(requests, journal="run.jsonl") as run:
            async for outcome in run:
                if not outcome.ok:
                    break              # no further create is sent

    A plain ``async for outcome in kie.extend_many(...)`` works too; breaking out of it stops
    the run when the run is garbage-collected, and sends nothing more meanwhile.
    """

    __slots__ = ("_outcomes",)

    def __init__(self, outcomes: AsyncGenerator[ExtendOutcome[R], None]) -> None:
        self._outcomes = outcomes

    def __aiter__(self) -> BulkRun[R]:
        return self

    async def __anext__(self) -> ExtendOutcome[R]:
        return await self._outcomes.__anext__()

    async def aclose(self) -> None:
        """Stop the run (see above) and wait until it has stopped. Safe to call twice."""
        await self._outcomes.aclose()

    async def __aenter__(self) -> BulkRun[R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def extend_many(
    client: Submitter,
    requests: Iterable[ExtendRequest] | AsyncIterable[ExtendRequest],
    *,
    concurrency: int = 50,
    journal: Path | None = None,
    poll: PollPolicy | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    resubmit_uncertain: bool = False,
) -> BulkRun:
    """The :class:`BulkRun` of :meth:`KieClient.extend_many` (documented there)."""
    return BulkRun(
        _outcomes(  # type: ignore[arg-type]  # only ExtendRequest items are accepted
            client,
            requests,
            concurrency=concurrency,
            journal=journal,
            poll=poll,
            on_progress=on_progress,
            resubmit_uncertain=resubmit_uncertain,
        )
    )


async def _outcomes(
    client: Submitter,
    requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
    *,
    concurrency: int,
    journal: Path | None,
    poll: PollPolicy | None,
    on_progress: Callable[[Progress], None] | None,
    resubmit_uncertain: bool,
    accept: tuple[type, ...] = (ExtendRequest,),
    caller: str = "extend_many",
    run_type: type[_Run] = _Run,
) -> AsyncGenerator[_Outcome, None]:
    """The run itself, as an async generator; see :meth:`KieClient.extend_many`."""
    from ._errors import ValidationError

    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency", f"must be an int >= 1, got {concurrency!r}")
    if poll is not None and not isinstance(poll, PollPolicy):
        raise ValidationError("poll", f"must be a PollPolicy or None, got {type(poll).__name__}")
    if on_progress is not None and not callable(on_progress):
        raise ValidationError(
            "on_progress", f"must be a callable or None, got {type(on_progress).__name__}"
        )
    book = Journal(journal) if journal is not None else None
    counts = _Counts(callback=on_progress)
    run = run_type(client, book, poll, counts, resubmit_uncertain, concurrency)
    source = _Source(requests, keyed=book is not None, accept=accept, caller=caller)
    outcomes = run.outcomes
    done_reading = object()

    async def worker() -> None:
        # Workers only read and submit; waiting happens in the poller, so a few of them keep
        # any number of tasks in flight.
        try:
            while not run.closing:
                await run.in_flight.acquire()
                item = await source.next()
                if item is None:
                    run.in_flight.release()
                    break
                _, key, request = item
                counts.change(queued=1)
                try:
                    outcome = await run.process(key, request)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # nothing may lose the request: report it
                    counts.change(queued=-1)
                    run.fail(request, exc)
                    continue
                if outcome is not None:
                    run.emit(outcome)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            outcomes.put_nowait(exc)

    if book is not None:
        book.open()  # locks it for this run, or raises naming the run that holds it
    # Submitting is bounded by the connection pool (and the rate limit) long before it is by
    # the number of workers: more than the pool's size would only queue.
    submitters = min(concurrency, client.max_connections)
    workers = [asyncio.ensure_future(worker()) for _ in range(submitters)]
    dispatcher = asyncio.ensure_future(run.poller.dispatch())

    async def all_read() -> None:
        # asyncio.wait, not gather: cancelling this must not cancel the workers (a stopping
        # run lets the ones sending a create finish).
        await asyncio.wait(workers)
        # Every place back means every outcome is out.
        for _ in range(concurrency):
            await run.in_flight.acquire()
        outcomes.put_nowait(done_reading)  # type: ignore[arg-type]

    closer = asyncio.ensure_future(all_read())
    try:
        while True:
            got = await outcomes.get()
            if got is done_reading:
                break
            if isinstance(got, BaseException):
                raise got
            yield got
            # Back here means the consumer asked for the next one: this outcome is consumed.
            run.in_flight.release()
    finally:
        run.closing = True
        pending = [dispatcher, closer, *run.waits]
        for task in pending:
            task.cancel()
        try:
            await run.stop(workers)
        finally:
            try:
                pending += [wait for wait in run.waits if wait not in pending]
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                await run.poller.aclose()
            finally:
                if book is not None:
                    await book.aclose()
