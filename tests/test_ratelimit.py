"""The client-side rate limiter for creates."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import StopBeforeSending, Stopped

from kie_async import ConfigurationError, ExtendRequest, OutcomeKind, RateLimit
from kie_async._protocol.envelope import EXTEND_PATH
from kie_async._transport.limiter import Limiter
from kie_async.testing import FakeKieServer, fast_client


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


# -- creates that never went out take no share of the window -------------------------------------


async def test_a_create_stopped_before_sending_gives_its_slot_back_unused(
    server: FakeKieServer,
) -> None:
    """A create stopped by its watch before it went out (a bulk run's stop) was never seen by
    kie.ai: with a window of one create a minute, a real create still goes at once after it."""
    async with fast_client(server, rate_limit=RateLimit(1, per=60)) as kie:
        with pytest.raises(Stopped):
            await kie._transport.create(
                EXTEND_PATH, {"taskId": "src", "index": 0}, StopBeforeSending(), "a create"
            )
        assert server.counts["request:create"] == 0
        handle = await asyncio.wait_for(kie.extend_video("src", prompt="go"), 5)
        assert handle.task_id and server.counts["request:create"] == 1


async def test_a_run_stopped_by_a_refused_key_does_not_wait_out_the_window(
    server: FakeKieServer,
) -> None:
    """A key refused mid-run (401) stops the run's creates; the workers already waiting for a
    slot then stop within one window (they used to take a share each, one after another:
    about 4 s here), and no create goes out after the 401."""
    server.answer_next("create", 401, "You do not have access permissions", times=50)
    async with fast_client(server, rate_limit=RateLimit(1, per=1.0)) as kie:
        requests = [ExtendRequest(f"src-{n}", 0, "go") for n in range(20)]
        started = time.monotonic()
        outcomes = [outcome async for outcome in kie.extend_many(requests, concurrency=5)]
        took = time.monotonic() - started
    assert server.counts["request:create"] == 1
    assert len(outcomes) == 20
    assert {outcome.kind for outcome in outcomes} == {OutcomeKind.FAILED, OutcomeKind.NOT_SUBMITTED}
    assert took < 3.0, f"the run took {took:.1f}s to stop"
