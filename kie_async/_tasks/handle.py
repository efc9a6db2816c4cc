"""TaskHandle: one submitted task, and the one place that sleeps between polls."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import time
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any, Protocol

from .. import _retry
from .._errors import (
    KieError,
    TaskNotFoundError,
    TransportError,
    ValidationError,
)
from .._policies import PollPolicy
from .._protocol.records import TaskRecord, TaskStatus
from .._protocol.wire import GENERATING, still_generating
from .._retry import grown, next_delay, poll_is_transient, poll_schedule, within
from .callback_race import CallbackSource, Polled, finished, race_callback
from .errors import TaskFailedError, TaskTimeoutError

if TYPE_CHECKING:
    from .._kinds.registry import TaskRequest

__all__ = ["RecordSource", "TaskHandle"]

log = logging.getLogger("kie_async")


class _Default:
    def __repr__(self) -> str:
        return "<policy timeout>"


_POLICY_TIMEOUT: Any = _Default()

_NO_FLAGS: frozenset[int | None] = frozenset()

#: The delays of a policy: made once per policy, not once per wait (policies are frozen).
_schedule_of = functools.lru_cache(maxsize=16)(poll_schedule)

if sys.version_info >= (3, 11):

    async def _bounded(polling: Coroutine[Any, Any, Polled], seconds: float) -> Polled | None:
        """``await polling`` for at most ``seconds``; ``None`` when the time ran out first.

        It runs in the caller's own task (no Task, no ``asyncio.wait``, per wait: thousands of
        waits sleep at once): ``asyncio.timeout`` cancels it at the deadline, and tells that
        cancellation apart from the caller's, so that a cancelled wait is never taken for a
        time-out (nor the other way round).
        """
        scope = asyncio.timeout(seconds)
        try:
            async with scope:
                return await polling
        except TimeoutError:
            if scope.expired():
                return None
            raise

else:  # Python 3.10 cannot tell its own cancellations apart: the poll loop gets a Task.
    _bounded = within


class RecordSource(Protocol):
    """What a :class:`TaskHandle` needs of its client (a :class:`~kie_async.KieClient` is one):
    its poll schedules, its callback receiver, and a task's record."""

    @property
    def poll_policy(self) -> PollPolicy: ...

    @property
    def safety_poll(self) -> PollPolicy: ...

    @property
    def callbacks(self) -> CallbackSource | None: ...

    async def fetch_record(self, task_id: str) -> TaskRecord:
        """One ``record-info`` call, not retried."""
        ...

    async def fetch_record_data(self, task_id: str) -> object:
        """One ``record-info`` call, not retried, its ``data`` not parsed yet."""
        ...

    def _record_of(self, data: object, task_id: str) -> TaskRecord:
        """The record in a ``record-info`` answer about ``task_id`` (or the error it is)."""
        ...

    async def get_task(self, task_id: str) -> TaskRecord:
        """The task's record, transient failures retried."""
        ...


class TaskHandle:
    """A kie.ai task you can poll or await.

    Get one from :meth:`KieClient.generate`, :meth:`~KieClient.upscale`, :meth:`~KieClient.vary`,
    :meth:`~KieClient.extend_video` or :meth:`~KieClient.submit`, or re-attach to any
    task by id with :meth:`KieClient.task`. ``await handle`` is ``await handle.wait()``.

    Attributes:
        task_id: the kie.ai task id. Keep it: it is all you need to re-attach later.
        request: the request (any kind) that created the task, when this process sent it.

    Example::

        handle = await kie.extend_video("ee603959", prompt="Into a nebula")
        print("submitted", handle.task_id)
        record = await handle
    """

    __slots__ = (
        "_client",
        "_fresh_until",
        "_last",
        "_pending",
        "_warned_flags",
        "request",
        "task_id",
    )

    def __init__(
        self,
        client: RecordSource,
        task_id: str,
        *,
        request: TaskRequest | None = None,
        fresh: bool = False,
    ) -> None:
        self._client = client
        self.task_id = task_id
        self.request = request
        self._last: TaskRecord | None = None
        # The data of the latest poll while it said "still generating": its record is built
        # only if someone asks for it (a bulk run's polls mostly say just that).
        self._pending: object = None
        # Shared and empty, so a handle costs no set until an undocumented flag shows up (a bulk
        # run holds one handle per task in flight).
        self._warned_flags = _NO_FLAGS
        # A task created a moment ago may not be visible to record-info yet.
        self._fresh_until = time.monotonic() if fresh else None

    def __repr__(self) -> str:
        last = self.last_record
        status = last.status.name if last is not None else "not polled"
        return f"<TaskHandle {self.task_id} {status}>"

    @property
    def last_record(self) -> TaskRecord | None:
        """The most recent :class:`TaskRecord` seen by :meth:`refresh` or :meth:`wait`."""
        if self._pending is not None:
            data, self._pending = self._pending, None
            self._last = self._client._record_of(data, self.task_id)
        return self._last

    async def refresh(self) -> TaskRecord:
        """Poll once: fetch the task's current :class:`TaskRecord` (transient failures retried).

        Raises:
            TaskNotFoundError: kie.ai knows no task with this id.
            APIError, TransportError, UnexpectedResponseError: the call failed.
        """
        record = await self._client.get_task(self.task_id)
        self._seen(record)
        return record

    def _seen(self, record: TaskRecord) -> None:
        self._pending = None
        self._last = record
        if record.status is TaskStatus.UNKNOWN and record.success_flag not in self._warned_flags:
            self._warned_flags |= {record.success_flag}
            log.warning(
                "task %s reports undocumented successFlag %r; still waiting",
                self.task_id,
                record.success_flag,
            )

    def __await__(self) -> Generator[Any, None, TaskRecord]:
        return self.wait().__await__()

    async def wait(
        self, *, timeout: float | None = _POLICY_TIMEOUT, poll: PollPolicy | None = None
    ) -> TaskRecord:
        """Poll until the task ends; return its :class:`TaskRecord` on success.

        The first poll goes out at once (for a task this process just created: after the
        policy's ``first_delay``), then at the growing, jittered interval of ``poll``
        (default: the client's :class:`PollPolicy`). Transient trouble (429, 455, 5xx, dropped
        connections, HTML error pages, read timeouts) does not end the wait: it is retried inside
        the deadline. Cancelling the awaiting task cancels the wait cleanly.

        Args:
            timeout: the overall deadline in seconds (``None``: wait for ever); defaults to the
                policy's ``timeout``.
            poll: the polling schedule; defaults to the client's.

        Raises:
            TaskFailedError: kie.ai reports the task failed (``successFlag`` 2 or 3).
            TaskTimeoutError: the deadline passed first (the task may still finish: wait again).
            TaskNotFoundError: kie.ai knows no task with this id.
            APIError: a non-transient error, e.g. :class:`AuthenticationError`.
            ValidationError: ``timeout`` is not a number > 0 or ``None``, or ``poll`` is not a
                :class:`PollPolicy` (checked before any request is sent).

        With a callback receiver attached to the client (:meth:`KieClient.attach_callbacks`), the
        wait also listens for the task's callback, and ``poll`` defaults to the client's slower
        ``safety_poll``: when the callback arrives, polling stops, a ``record-info`` call
        confirms it, and the wait ends. If that record is not final yet (``record-info`` may
        lag the callback), the wait checks again after about 1 s, 2 s, 4 s... (up to the
        policy's ``max_interval``), and at once when another callback for the task arrives.
        """
        if poll is not None and not isinstance(poll, PollPolicy):
            raise ValidationError(
                "poll", f"must be a PollPolicy or None, got {type(poll).__name__}"
            )
        receiver = self._client.callbacks
        if poll is None and receiver is not None:
            poll = self._client.safety_poll
        policy = poll or self._client.poll_policy
        deadline: float | None = policy.timeout if timeout is _POLICY_TIMEOUT else timeout
        if deadline is not None and (
            isinstance(deadline, bool) or not isinstance(deadline, int | float) or not deadline > 0
        ):
            raise ValidationError("timeout", f"must be a number > 0 or None, got {deadline!r}")
        grace_until = self._grace_until(policy)
        result: Polled | None
        if receiver is not None:
            # A task this process just created cannot be done yet: let the callback speak first.
            first_delay = policy.interval if self._fresh_until is not None else 0.0
            result = await race_callback(
                receiver,
                self.task_id,
                lambda: self._poll_loop(policy, grace_until, first_delay),
                functools.partial(self._poll_step, grace_until),
                deadline,
                policy,
            )
        else:
            # A task created a moment ago cannot be done yet: its first poll waits.
            first = policy.first_wait(age=self._age(), deadline=deadline)
            polling = self._poll_loop(policy, grace_until, first)
            result = await polling if deadline is None else await _bounded(polling, deadline)
        if result is None or not finished(result):
            raise TaskTimeoutError(
                task_id=self.task_id, record=self.last_record, timeout=deadline or 0
            )
        assert isinstance(result, TaskRecord)
        return self._outcome(result)

    def _age(self) -> float | None:
        """Seconds since this process created the task; ``None`` for a re-attached one."""
        return None if self._fresh_until is None else time.monotonic() - self._fresh_until

    def _grace_until(self, policy: PollPolicy) -> float | None:
        """Until when "recordInfo is null" is not believed for this task (fresh tasks only)."""
        if self._fresh_until is None:
            return None
        return self._fresh_until + policy.not_found_grace

    async def _poll_step(self, grace_until: float | None) -> Polled:
        """One poll: the record (or :data:`GENERATING`, the record kept unparsed), or a transient
        failure to retry later; anything else raises."""
        try:
            data = await self._client.fetch_record_data(self.task_id)
        except TaskNotFoundError as exc:
            if grace_until is not None and time.monotonic() < grace_until:
                return exc
            raise
        except KieError as exc:
            if not poll_is_transient(exc):
                raise
            return exc
        # The fast lane only for an answer about this very task: any other goes through the
        # client's full reading, which refuses an answer about another task.
        if still_generating(data) and data.get("taskId") == self.task_id:  # type: ignore[attr-defined]
            self._pending = data
            return GENERATING
        try:
            record = self._client._record_of(data, self.task_id)
        except KieError as exc:  # an unreadable answer, or one about another task
            if not poll_is_transient(exc):
                raise
            return exc
        self._seen(record)
        return record

    async def _poll_loop(
        self, policy: PollPolicy, grace_until: float | None, first: float
    ) -> Polled:
        """Poll until a value ends the wait (:func:`finished`): after ``first`` seconds, then at
        the delays of ``policy`` (``Retry-After`` honoured). The caller bounds it in time.

        One coroutine, no generator or closure: thousands of these sleep at once (the delays
        are those of :func:`~kie_async._retry.delays`, computed as the bulk poller does)."""
        if first:
            await asyncio.sleep(first)
        schedule = _schedule_of(policy)
        base = schedule.initial
        polls = 0
        warned = False
        while True:
            value = await self._poll_step(grace_until)
            if finished(value):
                return value
            delay = next_delay(schedule, base, value, _retry.rng)
            polls += 1
            base = grown(schedule, base, polls)
            if isinstance(value, KieError):
                if isinstance(value, TransportError) and not warned:
                    warned = True
                    _retry.warn_unreachable(value, delay, "poll", "polling again")
                log.debug("retrying poll of task %s in %.2fs after: %s", self.task_id, delay, value)
            await asyncio.sleep(delay)

    def _outcome(self, record: TaskRecord) -> TaskRecord:
        """``record`` if the task succeeded; :class:`TaskFailedError` if it ended in failure."""
        if not record.status.ok:
            raise TaskFailedError(
                task_id=self.task_id,
                record=record,
                error_code=record.error_code,
                error_message=record.error_message,
            )
        return record
