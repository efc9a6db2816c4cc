"""The client-side rate limiter for creates."""

from __future__ import annotations

import asyncio
import time

import pytest

from kie_async import ConfigurationError, RateLimit
from kie_async._transport.limiter import Limiter


async def _take(limiter: Limiter, stamps: list[float], hold: float = 0.0) -> None:
    async with limiter.slot():
        stamps.append(time.monotonic())
        await asyncio.sleep(hold)


async def test_no_window_ever_holds_more_than_the_limit() -> None:
    """However many callers, at most `requests` slots start within any `per`-second window."""
    limiter = Limiter(RateLimit(5, per=0.1))
    stamps: list[float] = []
    await asyncio.gather(*(_take(limiter, stamps) for _ in range(23)))
    stamps.sort()
    for i in range(len(stamps) - 5):
        assert stamps[i + 5] - stamps[i] >= 0.1 - 1e-3
    # ... and it does not dawdle: 23 slots need 4 full windows, not many more.
    assert stamps[-1] - stamps[0] < 0.4 + 0.15


async def test_window_counts_from_when_a_request_finished() -> None:
    """A slot still in flight blocks the window; its time starts when it is released."""
    limiter = Limiter(RateLimit(1, per=0.05))
    stamps: list[float] = []
    await asyncio.gather(_take(limiter, stamps, hold=0.1), _take(limiter, stamps))
    assert stamps[1] - stamps[0] >= 0.15 - 1e-3


async def test_pause_holds_back_every_caller() -> None:
    """After pause(), no slot is handed out until the pause is over."""
    limiter = Limiter(None)
    limiter.pause(0.1)
    started = time.monotonic()
    stamps: list[float] = []
    await asyncio.gather(*(_take(limiter, stamps) for _ in range(3)))
    assert min(stamps) - started >= 0.1 - 1e-3


async def test_cancelled_waiter_gives_its_place_back() -> None:
    """Cancelling a caller waiting for a slot leaves the limiter usable and consistent."""
    limiter = Limiter(RateLimit(1, per=0.05))
    stamps: list[float] = []
    await _take(limiter, stamps)
    waiter = asyncio.ensure_future(_take(limiter, stamps))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await _take(limiter, stamps)
    assert len(stamps) == 2


@pytest.mark.parametrize(
    ("requests", "per"), [(0, 10.0), (-1, 10.0), (True, 10.0), (5, 0), (5, -1.0), (2.5, 1.0)]
)
def test_invalid_rate_limits_are_refused(requests: int, per: float) -> None:
    """A rate limit that cannot be kept is a ConfigurationError naming rate_limit."""
    with pytest.raises(ConfigurationError, match="rate_limit"):
        RateLimit(requests, per=per)
