"""The bulk poller: every task of a bulk run polled from one heap, by a fixed set of pollers."""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import KieError
from .._kinds.registry import TaskRequest
from .._policies import PollPolicy
from .._protocol.records import TaskRecord
from .._retry import grown, next_delay, poll_schedule, rng
from .._tasks.callback_race import finished
from .._tasks.errors import TaskTimeoutError
from .._tasks.handle import TaskHandle
from .chains import BulkItem

if TYPE_CHECKING:
    from .._policies import Timeout
    from .outcomes import Outcome

log = logging.getLogger("kie_async")


class _TimeoutSource(Protocol):
    @property
    def timeouts(self) -> Timeout: ...


class PolledRun(Protocol):
    """What the poller needs of its bulk run (``tracker.Run`` is one): the client's timeouts,
    the journal's flush, and the run's outcome calls."""

    @property
    def client(self) -> _TimeoutSource: ...

    def flush(self) -> None: ...

    def emit(self, outcome: Outcome) -> None: ...

    def fail(self, request: BulkItem, exc: BaseException) -> None: ...

    def task_ended(
        self, key: str, request: TaskRequest, handle: TaskHandle, record: TaskRecord
    ) -> Outcome: ...

    def wait_failed(
        self, key: str, request: TaskRequest, handle: TaskHandle, exc: KieError
    ) -> Outcome: ...


class Waiting:
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


class Poller:
    """Polls every task of a bulk run from one heap instead of a coroutine per task.

    A run holds thousands of tasks in flight for minutes. As a suspended chain of coroutines each
    would cost kilobytes; here each is a :class:`Waiting` in a heap ordered by its next poll.
    ``limit`` pollers take the due tasks from the heap and poll them, so at most ``limit`` polls
    are on the wire at once and no asyncio task is made per poll: a poller that finishes a poll
    takes the next due task at once, and idle pollers sleep until a task is due (one timer for
    the earliest, one poller woken per due task). The schedule is :meth:`TaskHandle.wait`'s: the
    first poll at once (or after the policy's ``first_delay`` for a task just created), then the
    policy's growing, jittered interval, transient failures retried on the same schedule, and
    one last poll at the deadline.
    """

    def __init__(self, run: PolledRun, policy: PollPolicy, limit: int) -> None:
        self._run = run
        self._policy = policy
        self._schedule = poll_schedule(policy)
        self._heap: list[tuple[float, int, Waiting]] = []
        self._order = itertools.count()
        self._limit = limit
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._pollers: list[asyncio.Future[None]] = []

    def add(self, waiting: Waiting, delay: float = 0.0) -> None:
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

    async def _poll(self, waiting: Waiting) -> None:
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
                    run.wait_failed(waiting.key, waiting.request, handle, self._expired(waiting))
                )
                return
            except KieError as exc:
                run.emit(run.wait_failed(waiting.key, waiting.request, handle, exc))
                return
            finally:
                if timer is not None:
                    timer.cancel()
            if finished(value):
                assert isinstance(value, TaskRecord)
                run.emit(run.task_ended(waiting.key, waiting.request, handle, value))
                return
            now = time.monotonic()
            if now >= waiting.deadline:
                run.emit(
                    run.wait_failed(waiting.key, waiting.request, handle, self._expired(waiting))
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
    def _cut_short(waiting: Waiting, poll: asyncio.Task[Any]) -> None:
        waiting.cut_short = True
        poll.cancel()

    def _expired(self, waiting: Waiting) -> TaskTimeoutError:
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
