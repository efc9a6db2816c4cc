"""Bulk runs spend only what the consumer takes: backpressure, and every way of stopping a run."""

from __future__ import annotations

import asyncio
import contextlib
import gc

from kie_async import BulkRun, ExtendRequest, KieClient
from kie_async.testing import FakeKieServer


def make_requests(count: int, prefix: str = "src") -> list[ExtendRequest]:
    return [ExtendRequest(f"{prefix}{i // 4}", i % 4, f"scene {i}") for i in range(count)]


async def settle(seconds: float = 0.5) -> None:
    """Give a run that should be idle the time to misbehave (zero-wait polling is quick)."""
    await asyncio.sleep(seconds)


async def test_a_slow_consumer_never_has_more_than_concurrency_unconsumed(
    kie: KieClient, server: FakeKieServer
) -> None:
    """However slowly outcomes are taken, creates stay within consumed + concurrency."""
    consumed = 0
    async with kie.extend_many(make_requests(40), concurrency=4) as run:
        async for _ in run:
            consumed += 1
            await asyncio.sleep(0.02)
            # The outcome in hand is not consumed until the next one is asked for.
            assert server.counts["create"] <= consumed - 1 + 4
    assert consumed == 40
    assert server.counts["create"] == 40


async def test_break_while_holding_the_run_sends_no_further_creates(
    kie: KieClient, server: FakeKieServer
) -> None:
    """A break with the run still referenced: the server's create count stays at the break's."""
    run = kie.extend_many(make_requests(100), concurrency=5)
    taken = 0
    async for _ in run:
        taken += 1
        if taken == 3:
            await settle()  # the run has every chance to go on creating meanwhile
            at_break = server.counts["create"]
            break
    await settle(1.0)
    assert server.counts["create"] == at_break
    # Two outcomes consumed, five places (the one in hand included): seven creates at most.
    assert at_break <= 2 + 5
    await run.aclose()
    assert server.counts["create"] == at_break


async def test_break_dropping_the_run_sends_no_further_creates(
    kie: KieClient, server: FakeKieServer
) -> None:
    """A break that drops the only reference to the run: nothing more is created after it."""
    async for _ in kie.extend_many(make_requests(100), concurrency=5):
        await settle()
        at_break = server.counts["create"]
        break
    gc.collect()
    await settle(1.0)
    assert server.counts["create"] == at_break <= 5


async def test_break_inside_aclosing_or_async_with_sends_no_further_creates(
    kie: KieClient, server: FakeKieServer
) -> None:
    """Both explicit forms end the run at the break: no create after it."""
    async with contextlib.aclosing(kie.extend_many(make_requests(100), concurrency=5)) as run:
        async for _ in run:
            await settle()
            first = server.counts["create"]
            break
    async with kie.extend_many(make_requests(100, prefix="other"), concurrency=5) as run2:
        assert isinstance(run2, BulkRun)
        async for _ in run2:
            await settle()
            second = server.counts["create"]
            break
    await settle(1.0)
    assert server.counts["create"] == second
    assert first <= 5 and second - first <= 5


async def test_a_run_never_iterated_sends_nothing(kie: KieClient, server: FakeKieServer) -> None:
    """Creating a run and leaving its block without asking for an outcome sends no request."""
    async with kie.extend_many(make_requests(10)):
        await settle(0.1)
    assert server.counts["request:create"] == 0
