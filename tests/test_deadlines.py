"""Timeout.total of API calls is kept by one timer per client (``_deadlines``), not one per
request: every call in flight still ends at its own budget, a call that ends in time leaves
nothing armed and no cancellation behind, and a cancellation that comes with the deadline
stays a cancellation."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
from rawserver import RawServer, answer, envelope, head, silent, trickle
from test_hostile import client

from kie_async import KieError, Timeout, TransportError
from kie_async._deadlines import Deadlines, expired
from kie_async.testing import FakeKieServer, fast_client


def limits(total: float, read: float = 5.0) -> Timeout:
    """The budgets of these tests' clients (``test_hostile.client``: no retries)."""
    return Timeout(total=total, connect=0.5, read=read)


async def test_calls_in_flight_each_end_at_their_budget() -> None:
    """Eight calls to a server that trickles (never silent for the read timeout) all end
    with Timeout.total near their 0.3 s budget, while one timer at most was armed for all."""
    body = envelope({"credit": 5})
    script = trickle(head(length=len(body)) + body, every=0.02)
    async with (
        RawServer(script) as server,
        client(server.url, timeout=limits(0.3, read=0.2)) as kie,
    ):
        deadlines = kie._transport._deadlines
        began = time.monotonic()
        calls = [asyncio.ensure_future(kie.credits()) for _ in range(8)]
        await asyncio.sleep(0.1)
        assert len(deadlines._calls) == 8
        assert deadlines._timer is not None
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
        elapsed = time.monotonic() - began
        assert deadlines._timer is None, "nothing in flight, nothing armed"
        assert not deadlines._calls
    assert all(isinstance(r, TransportError) for r in results), results
    assert all("Timeout.total" in str(r) for r in results)
    assert 0.3 - 1e-3 <= elapsed < 2, f"{elapsed:.2f}s for a 0.3s budget"


async def test_later_calls_get_a_budget_of_their_own() -> None:
    """A call started while an older one is in flight is cut at its own deadline, not at the
    older one's: the timer moves on from call to call."""
    async with RawServer(silent(3)) as server, client(server.url, timeout=limits(0.4)) as kie:
        first = asyncio.ensure_future(kie.credits())
        await asyncio.sleep(0.25)
        began = time.monotonic()
        with pytest.raises(TransportError, match=r"Timeout\.total"):
            await asyncio.wait_for(kie.credits(), 10)
        elapsed = time.monotonic() - began
        with pytest.raises(TransportError, match=r"Timeout\.total"):
            await first
    assert 0.4 - 1e-3 <= elapsed < 1.5, f"the second call ended after {elapsed:.2f}s"


async def test_a_call_in_time_leaves_nothing_armed_and_no_cancellation(
    server: FakeKieServer,
) -> None:
    """A call answered within its budget returns the answer; then no timer is armed and the
    caller's task carries no cancellation (a later wait_for or timeout works as usual)."""
    async with fast_client(server, timeout=5) as kie:
        assert await kie.credits() >= 0
        assert kie._transport._deadlines._timer is None
        assert not kie._transport._deadlines._calls
        task = asyncio.current_task()
        assert task is not None
        if sys.version_info >= (3, 11):
            assert task.cancelling() == 0
        await asyncio.wait_for(asyncio.sleep(0), 1)


async def test_closing_the_client_disarms_the_timer() -> None:
    """A client closed with a call still in flight leaves no timer behind, and the call
    ends with a kie_async error."""
    async with RawServer(silent(3)) as server:
        kie = client(server.url, timeout=limits(30))
        call = asyncio.ensure_future(kie.credits())
        await asyncio.sleep(0.1)
        assert kie._transport._deadlines._timer is not None
        await kie.aclose()
        assert kie._transport._deadlines._timer is None
        with pytest.raises(KieError):
            await asyncio.wait_for(call, 5)


async def test_an_unbounded_budget_arms_nothing() -> None:
    """Timeout(total=None) bounds no call by time in all (read and connect still do)."""
    deadlines = Deadlines(None)
    assert deadlines.enter() is None
    deadlines.leave(None)
    assert deadlines._timer is None


# -- the cancellation, told apart ------------------------------------------------------------


async def _in_a_call(deadlines: Deadlines, seen: list[bool]) -> None:
    call = deadlines.enter()
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        seen.append(expired(call))
        if not seen[-1]:
            raise
    finally:
        deadlines.leave(call)


async def test_the_deadline_alone_is_a_time_out() -> None:
    """The budget running out cancels the call's task; the call takes that back (the task
    carries no cancellation after it) and reports a time-out."""
    deadlines = Deadlines(0.05)
    seen: list[bool] = []
    task = asyncio.ensure_future(_in_a_call(deadlines, seen))
    await asyncio.wait_for(task, 5)
    assert seen == [True]
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0
    assert deadlines._timer is None


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="3.10 cannot tell a deadline's cancellation apart"
)
async def test_a_cancellation_with_the_deadline_stays_a_cancellation() -> None:
    """The caller cancelling in the very instant the budget runs out: the call is cancelled,
    not timed out (a cancelled bulk worker must stop, not go on after a 'time-out')."""
    deadlines = Deadlines(30)
    seen: list[bool] = []
    task = asyncio.ensure_future(_in_a_call(deadlines, seen))
    await asyncio.sleep(0.01)
    deadlines._calls[0].deadline = 0.0  # due now
    deadlines._expire()  # the budget runs out ...
    task.cancel()  # ... and the caller cancels, before the task runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [False]
    assert deadlines._timer is None


async def test_one_timer_for_many_calls() -> None:
    """A hundred calls in flight at once arm one loop timer, not a hundred; each leaves the
    queue when it ends, and the last one out disarms it."""
    deadlines = Deadlines(30)
    release = asyncio.Event()
    armed: set[int] = set()

    async def one() -> None:
        call = deadlines.enter()
        armed.add(id(deadlines._timer))
        try:
            await release.wait()
        finally:
            deadlines.leave(call)

    tasks = [asyncio.ensure_future(one()) for _ in range(100)]
    await asyncio.sleep(0.01)
    assert len(armed) == 1 and len(deadlines._calls) == 100
    release.set()
    await asyncio.gather(*tasks)
    assert not deadlines._calls and deadlines._timer is None


async def test_an_answer_in_time_after_a_call_cut_off() -> None:
    """A real answer after a call that was cut off: the budget of the first does not touch
    the second (each call's own deadline)."""
    body = envelope(7)
    async with (
        RawServer(silent(2), answer(body)) as raw,
        client(raw.url, timeout=limits(0.3)) as kie,
    ):
        with pytest.raises(TransportError, match=r"Timeout\.total"):
            await kie.credits()
        assert await kie.credits() == 7
        assert kie._transport._deadlines._timer is None
