"""The total budget of API calls (:attr:`Timeout.total`): one loop timer for every call in flight.

aiohttp's own ``ClientTimeout.total`` arms a timer per request. Beside the per-read timer
(``sock_read``, which keeps :attr:`Timeout.read`), that makes two timers of different lengths
per request, and every one pushed into the event loop's heap of timers then climbs past the
longer ones (a Python comparison per level). This module re-implements a part of aiohttp
because a CPU-time benchmark of a poll-heavy bulk run shows that it pays for itself
(``docs/benchmarks.md``, "Two re-implementations weighed").

Every API call of a client has the same budget, so the calls' deadlines come in the order the
calls start: a queue, and one timer armed for its oldest open call. When a call's time is up,
its task is cancelled, exactly as aiohttp's own total timer does it, and the call turns the
cancellation into its :class:`~kie_async.TransportError` (:func:`expired`). A cancellation of
the caller's own, in the same instant, stays a cancellation (Python 3.11 and later can tell the
two apart; 3.10 cannot, as aiohttp's timer cannot).
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Call", "Deadlines", "expired"]

#: A deadline this close is due: the loop runs a timer up to its clock's resolution early.
_DUE = 0.001


class Call:
    """One API call under the budget: open until :meth:`Deadlines.leave`."""

    __slots__ = ("deadline", "expired", "open", "task")

    def __init__(self, deadline: float, task: asyncio.Task[object]) -> None:
        self.deadline = deadline
        self.task = task
        self.open = True
        self.expired = False


class Deadlines:
    """The budget of ``seconds`` for each call between :meth:`enter` and :meth:`leave`;
    ``None`` bounds nothing."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._calls: deque[Call] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def enter(self) -> Call | None:
        """Start the budget of a call made by the current task (``None`` when unbounded)."""
        if self.seconds is None:
            return None
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None, "API calls run in a task"
        if loop is not self._loop:
            self.close()  # a client used from a new event loop starts afresh
            self._loop = loop
        call = Call(loop.time() + self.seconds, task)
        self._calls.append(call)
        if self._timer is None:
            self._timer = loop.call_at(call.deadline, self._expire)
        return call

    def leave(self, call: Call | None) -> None:
        """The call is over (answered, failed or cancelled): its budget no longer runs."""
        if call is None:
            return
        call.open = False
        if call.expired:
            _uncancel(call)  # its cancellation never surfaced: take it back all the same
        calls = self._calls
        while calls and not calls[0].open:
            calls.popleft()
        if not calls:
            self._disarm()

    def close(self) -> None:
        """Forget every call and disarm the timer (the client is closing)."""
        self._disarm()
        self._calls.clear()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        calls = self._calls
        while calls:
            head = calls[0]
            if not head.open:
                calls.popleft()
            elif head.deadline - now > _DUE:
                self._timer = loop.call_at(head.deadline, self._expire)
                return
            else:
                calls.popleft()
                head.open = False
                head.expired = True
                head.task.cancel()


def expired(call: Call | None) -> bool:
    """Whether a :class:`asyncio.CancelledError` caught in ``call`` is its budget running out
    (and only that): if so, the cancellation is taken back and the caller reports a time-out;
    if the caller was cancelled as well, it stays a cancellation."""
    if call is None or not call.expired:
        return False
    return _uncancel(call) in (None, 0)


def _uncancel(call: Call) -> int | None:
    """Take back the cancellation of ``call``'s budget; the cancellations the task still has
    (another's), or ``None`` on Python 3.10, which does not count them."""
    call.expired = False  # settled, once
    uncancel = getattr(call.task, "uncancel", None)
    return None if uncancel is None else int(uncancel())
