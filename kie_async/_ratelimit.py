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
from contextlib import asynccontextmanager

import attrs

from ._errors import ConfigurationError, TransportError

__all__ = ["RateLimit"]


@attrs.frozen
class RateLimit:
    """At most ``requests`` new generation requests in any ``per``-second window.

    The default is kie.ai's documented limit, 20 per 10 seconds. Accounts whose limit support
    has raised pass their own, e.g. ``KieClient(rate_limit=RateLimit(50, per=10))``; pass
    ``rate_limit=None`` to switch the limiter off.
    """

    requests: int = 20
    per: float = 10.0

    def __attrs_post_init__(self) -> None:
        if isinstance(self.requests, bool) or not isinstance(self.requests, int):
            raise ConfigurationError("rate_limit", "requests must be an int")
        if self.requests < 1:
            raise ConfigurationError("rate_limit", f"requests must be >= 1, got {self.requests}")
        if isinstance(self.per, bool) or not isinstance(self.per, int | float) or not self.per > 0:
            raise ConfigurationError("rate_limit", f"per must be a number > 0, got {self.per!r}")


class Limiter:
    """A sliding-window limiter with a shared pause, first come first served."""

    def __init__(self, limit: RateLimit | None) -> None:
        self.limit = limit
        self._stamps: collections.deque[float] = collections.deque()
        self._in_flight = 0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self._released = asyncio.Event()

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
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot of the window for the duration of one create request. A request
        that never got a connection was not seen by kie.ai: it uses no share of the window
        (retries against an unreachable API must not queue behind the limit)."""
        await self._acquire()
        seen = True
        try:
            yield
        except TransportError as exc:
            seen = exc.sent
            raise
        finally:
            self._release(seen=seen)
