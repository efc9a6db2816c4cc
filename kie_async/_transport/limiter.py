"""The client-side limiter for create requests, shared by every submission of one client.

kie.ai *rejects* (does not queue) creates beyond about 20 per 10 seconds per account, so the
client keeps under the limit itself instead of provoking 429s. A slot's time is stamped when its
request *finishes*: the server saw it at some moment before that, so counting from the finish
keeps the sliding window honest whatever the network latency, without a safety margin.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from .._policies import RateLimit, RedisRateLimit

__all__ = ["CreateLimiter", "Held", "Limiter"]


class Held:
    """One create's hold on a slot of the window. ``seen`` stays True unless the caller learns
    that the create never reached kie.ai (stopped before it was sent, or no connection): the
    slot is then given back without taking a share of the window, so creates that were never
    sent (retries against an unreachable API, a run's stopped workers) do not queue behind the
    limit."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen = True


class CreateLimiter(Protocol):
    """What the transport needs of a limiter of creates: this module's in-process
    :class:`Limiter`, or the one shared through Redis (``redis_limiter.RedisLimiter``)."""

    @property
    def limit(self) -> RateLimit | RedisRateLimit | None: ...

    async def start(self) -> None:
        """Connect what the limiter needs, so a failure shows when the client starts."""

    async def aclose(self) -> None:
        """Let go of what :meth:`start` connected."""

    def open(self) -> bool:
        """True when a create may go at once without a slot: no limit and no pause."""

    def pause(self, seconds: float) -> None:
        """Hold every create back for ``seconds`` (after kie.ai refused one with 429)."""

    def slot(self) -> AbstractAsyncContextManager[Held]:
        """Hold one slot of the window for the duration of one create request (see
        :class:`Held`)."""


class Limiter:
    """A sliding-window limiter with a shared pause, first come first served."""

    def __init__(self, limit: RateLimit | None) -> None:
        self.limit = limit
        self._stamps: collections.deque[float] = collections.deque()
        self._in_flight = 0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self._released = asyncio.Event()

    async def start(self) -> None:
        """Nothing to connect: the window lives in this process."""

    async def aclose(self) -> None:
        """Nothing to let go of."""

    def open(self) -> bool:
        """True when a create may go at once without a slot: no limit and no pause."""
        return self.limit is None and self._paused_until <= time.monotonic()

    def pause(self, seconds: float) -> None:
        """Hold every submission back for ``seconds`` (after kie.ai refused one with 429)."""
        self._paused_until = max(self._paused_until, time.monotonic() + max(0.0, seconds))

    async def _acquire(self) -> None:
        limit = self.limit
        async with self._lock:
            while True:
                now = time.monotonic()
                wait = self._paused_until - now
                if limit is None:
                    if wait <= 0:
                        return
                    await asyncio.sleep(wait)
                    continue
                while self._stamps and self._stamps[0] <= now - limit.per:
                    self._stamps.popleft()
                full = len(self._stamps) + self._in_flight >= limit.requests
                if not full and wait <= 0:
                    self._in_flight += 1
                    return
                if full and self._stamps:
                    wait = max(wait, self._stamps[0] + limit.per - now)
                if wait > 0:
                    await asyncio.sleep(wait)
                else:
                    self._released.clear()
                    await self._released.wait()

    def _release(self, *, seen: bool = True) -> None:
        if self.limit is None:
            return
        self._in_flight -= 1
        if seen:
            self._stamps.append(time.monotonic())
        self._released.set()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Held]:
        """Hold one slot of the window for the duration of one create request; a create the
        caller marks unseen (:class:`Held`) uses no share of the window."""
        await self._acquire()
        held = Held()
        try:
            yield held
        finally:
            self._release(seen=held.seen)
