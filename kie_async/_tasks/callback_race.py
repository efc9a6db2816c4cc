"""A wait that hears its task's callback: :meth:`TaskHandle.wait` with a callback receiver
attached races the poll loop against the callback, and believes a callback only once
``record-info`` confirms it.

The poll loop itself is the handle's (:meth:`TaskHandle._poll_loop`): this module gets it, and
one poll, as callables, so that it needs nothing of :class:`TaskHandle`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractContextManager
from typing import Any, Protocol

from .. import _retry
from .._errors import KieError
from .._policies import PollPolicy
from .._protocol.records import TaskRecord
from .._protocol.wire import Generating
from .._retry import Schedule, next_delay, within

__all__ = ["CallbackSource", "Polled", "finished", "race_callback"]

log = logging.getLogger("kie_async")


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


def finished(value: Polled) -> bool:
    """Whether a poll's value ends the wait: a record in a terminal state."""
    return isinstance(value, TaskRecord) and value.status.is_terminal


async def race_callback(
    receiver: CallbackSource,
    task_id: str,
    polling: Callable[[], Coroutine[Any, Any, Polled]],
    poll_once: Callable[[], Awaitable[Polled]],
    deadline: float | None,
    policy: PollPolicy,
) -> Polled | None:
    """Race the poll loop (``polling()``) against the task's callback; ``None`` when the
    deadline passed.

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

    with receiver.watch(task_id) as arrived:
        if not arrived.is_set():
            remaining = left()
            poller = asyncio.ensure_future(polling())
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
                return _confirmed(receiver, poller.result())
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
                log.debug("task %s ended, as its callback said", task_id)
                return _confirmed(receiver, value)
            delay = next_delay(recheck, base, None, _retry.rng)
            base = min(base * recheck.factor, recheck.cap)
            remaining = left()
            if remaining is not None and remaining <= 0:
                return None
            log.info(
                "task %s: callback not confirmed by record-info yet; checking again in %.1fs",
                task_id,
                delay,
            )
            if await within(arrived.wait(), delay if remaining is None else min(delay, remaining)):
                base = recheck.initial  # another body came: check it now, and soon again


def _confirmed(receiver: CallbackSource, value: Polled) -> Polled:
    """``value``, first kept on the task's callback event when it is a final record."""
    if finished(value):
        assert isinstance(value, TaskRecord)
        receiver._confirm(value)
    return value
