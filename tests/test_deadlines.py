"""The one timer behind :attr:`Timeout.total` of API calls (``kie_async._transport.deadlines``):
a queue of the calls in flight and one loop timer for its oldest, instead of aiohttp's timer per
request. What a caller sees (each call its own budget, the body included, no cancellation left
behind) is tested in ``test_total_timeout.py``; these tests check the queue itself."""

from __future__ import annotations

import asyncio
import sys

import pytest
from rawserver import RawServer, answer, envelope, silent
from test_hostile import client

from kie_async import KieError, Timeout, TransportError
from kie_async._transport.deadlines import Deadlines, expired
from kie_async.testing import FakeKieServer, fast_client


def limits(total: float, read: float = 5.0) -> Timeout:
    return Timeout(total=total, connect=1.0, read=read)


async def test_a_call_in_time_leaves_nothing_armed_and_no_cancellation(
    server: FakeKieServer,
) -> None:
    """A call answered within its budget: then no timer is armed, no call is queued, and the
    caller's task carries no cancellation."""
    async with fast_client(server, timeout=5) as kie:
        assert await kie.credits() >= 0
        assert kie._transport._deadlines._timer is None
        assert not kie._transport._deadlines._calls
        task = asyncio.current_task()
        assert task is not None
        if sys.version_info >= (3, 11):
            assert task.cancelling() == 0


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
    """Timeout(total=None): no call is queued and no timer armed (read and connect still
    bound each call)."""
    deadlines = Deadlines(None)
    assert deadlines.enter() is None
    deadlines.leave(None)
    assert deadlines._timer is None and not deadlines._calls


async def _in_a_call(deadlines: Deadlines, seen: list[bool], hold: float = 10) -> None:
    call = deadlines.enter()
    try:
        await asyncio.sleep(hold)
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


async def test_the_timer_moves_on_to_the_next_open_call() -> None:
    """The oldest call ends in time, the next runs out: the timer, armed for the first, is
    re-armed for the second's deadline and cuts off only that one."""
    deadlines = Deadlines(0.2)
    first: list[bool] = []
    second: list[bool] = []
    early = asyncio.ensure_future(_in_a_call(deadlines, first, hold=0.05))
    await asyncio.sleep(0.1)
    late = asyncio.ensure_future(_in_a_call(deadlines, second))
    await asyncio.wait_for(asyncio.gather(early, late), 5)
    assert first == [] and second == [True]
    assert not deadlines._calls and deadlines._timer is None


def test_a_client_on_a_new_event_loop_starts_afresh() -> None:
    """Calls left open on one event loop (its run ended under them) do not hold the timer
    of the next loop: the first call there starts a new queue."""
    deadlines = Deadlines(30)

    async def leave_one_open() -> None:
        deadlines.enter()

    asyncio.run(leave_one_open())
    seen: list[bool] = []

    async def on_the_next_loop() -> None:
        deadlines.seconds = 0.05
        await _in_a_call(deadlines, seen)

    asyncio.run(on_the_next_loop())
    assert seen == [True]
    assert not deadlines._calls and deadlines._timer is None


async def test_an_answer_in_time_after_a_call_cut_off() -> None:
    """A real answer after a call that was cut off: the first call's budget does not touch
    the second, and nothing stays armed."""
    async with (
        RawServer(silent(2), answer(envelope(7))) as raw,
        client(raw.url, timeout=limits(0.3)) as kie,
    ):
        with pytest.raises(TransportError, match=r"Timeout\.total"):
            await kie.credits()
        assert await kie.credits() == 7
        assert kie._transport._deadlines._timer is None
