"""TaskHandle: one submitted task, and the one place that sleeps between polls."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Generator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from . import _retry
from ._errors import (
    KieError,
    TaskNotFoundError,
    ValidationError,
)
from ._models import TaskRecord, TaskStatus
from ._polling import PollPolicy, poll_is_transient
from ._retry import Schedule, next_delay, poll_schedule, poll_until, within
from ._task_errors import TaskFailedError, TaskTimeoutError
from ._wire import GENERATING, Generating, still_generating

if TYPE_CHECKING:
    from ._requests import TaskRequest

__all__ = ["CallbackSource", "RecordSource", "TaskHandle"]

log = logging.getLogger("kie_async")


class _Default:
    def __repr__(self) -> str:
        return "<policy timeout>"


_POLICY_TIMEOUT: Any = _Default()

_NO_FLAGS: frozenset[int | None] = frozenset()


class CallbackSource(Protocol):
    """What a wait needs of a callback receiver (a :class:`~kie_async.callbacks.CallbackReceiver`
    is one): to hear of a task's callback, and to keep the record that confirmed it."""

    def watch(self, task_id: str) -> AbstractContextManager[asyncio.Event]:
        """An event of the caller's own, set when a callback for ``task_id`` is accepted."""
        ...

    def _confirm(self, record: TaskRecord) -> None:
        """Keep ``record`` (a final ``record-info`` answer) on the task's callback event."""
        ...


#: What one poll gives a waiting loop: a record, a transient failure to retry, or GENERATING.
Polled = TaskRecord | KieError | Generating


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
        schedule = poll_schedule(policy)
        grace_until = self._grace_until(policy)

        async def poll_once() -> Polled:
            return await self._poll_step(grace_until)

        def waiting(value: Polled, delay: float) -> None:
            if isinstance(value, KieError):
                log.debug("retrying poll of task %s in %.2fs after: %s", self.task_id, delay, value)

        def polling(max_time: float | None) -> Awaitable[Polled]:
            return poll_until(
                poll_once, done=finished, schedule=schedule, max_time=max_time, on_wait=waiting
            )

        result: Polled | None
        if receiver is not None:
            # A task this process just created cannot be done yet: let the callback speak first.
            first_delay = policy.interval if self._fresh_until is not None else 0.0
            result = await self._race_callback(
                receiver, polling, poll_once, finished, deadline, first_delay, policy
            )
        else:
            # A task created a moment ago cannot be done yet: its first poll waits.
            first = policy.first_wait(age=self._age(), deadline=deadline)
            if first:
                await asyncio.sleep(first)
            remaining = None if deadline is None else deadline - first
            # Not asyncio.wait_for: before Python 3.12 it can swallow a cancellation.
            result = await within(polling(remaining), remaining)
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

    async def _race_callback(
        self,
        receiver: CallbackSource,
        polling: Callable[[float | None], Awaitable[Polled]],
        poll_once: Callable[[], Awaitable[Polled]],
        finished: Callable[[Polled], bool],
        deadline: float | None,
        first_delay: float,
        policy: PollPolicy,
    ) -> Polled | None:
        """Race the poll loop against the task's callback; ``None`` when the deadline passed.

        When the callback wins, the poll loop is cancelled and ``record-info`` confirms it (the
        signature does not cover the body). A callback not confirmed yet (``record-info`` can
        lag its own callback, and a body can lie) is re-checked soon: after about a second,
        then twice as long each time up to the policy's ``max_interval``, and at once when
        another callback for the task arrives. The confirmed record is kept on the event.
        """
        loop = asyncio.get_running_loop()
        end = None if deadline is None else loop.time() + deadline

        def left() -> float | None:
            return None if end is None else end - loop.time()

        async def delayed(delay: float, remaining: float | None) -> Polled:
            if delay > 0:
                await asyncio.sleep(delay)
                remaining = None if remaining is None else max(remaining - delay, 0.001)
            return await polling(remaining)

        with receiver.watch(self.task_id) as arrived:
            if not arrived.is_set():
                remaining = left()
                poller = asyncio.ensure_future(delayed(first_delay, remaining))
                listener = asyncio.ensure_future(arrived.wait())
                try:
                    done, _ = await asyncio.wait(
                        {poller, listener}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for racer in (poller, listener):
                        racer.cancel()
                    await asyncio.gather(poller, listener, return_exceptions=True)
                if poller in done:
                    return self._confirmed(receiver, poller.result(), finished)
                if not done:
                    return None
            recheck = Schedule(
                min(1.0, policy.max_interval),
                2.0,
                policy.max_interval,
                policy.jitter,
                retry_after_cap=0,
            )
            base = recheck.initial
            while True:
                arrived.clear()
                value = await poll_once()
                if finished(value):
                    log.debug("task %s ended, as its callback said", self.task_id)
                    return self._confirmed(receiver, value, finished)
                delay = next_delay(recheck, base, None, _retry.rng)
                base = min(base * recheck.factor, recheck.cap)
                remaining = left()
                if remaining is not None and remaining <= 0:
                    return None
                log.info(
                    "task %s: callback not confirmed by record-info yet; checking again in %.1fs",
                    self.task_id,
                    delay,
                )
                if await within(
                    arrived.wait(), delay if remaining is None else min(delay, remaining)
                ):
                    base = recheck.initial  # another body came: check it now, and soon again

    @staticmethod
    def _confirmed(
        receiver: CallbackSource,
        value: Polled,
        finished: Callable[[Polled], bool],
    ) -> Polled:
        """``value``, first kept on the task's callback event when it is a final record."""
        if isinstance(value, TaskRecord) and finished(value):
            receiver._confirm(value)
        return value


def finished(value: Polled) -> bool:
    """Whether a poll's value ends the wait: a record in a terminal state."""
    return isinstance(value, TaskRecord) and value.status.is_terminal
