"""Timeout.total of API calls (kept by ``kie_async._transport.deadlines``): every call in
flight ends at its own budget, the body included; a call that ends in time leaves no
cancellation behind; a caller's cancellation stays a cancellation; ``total=None`` bounds no
call by time."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
from rawserver import RawServer, answer, envelope, head, silent, trickle
from test_hostile import client

from kie_async import KieError, Timeout, TransportError
from kie_async.testing import FakeKieServer, fast_client


def limits(total: float | None, read: float = 5.0) -> Timeout:
    """The budgets of these tests' clients (``test_hostile.client``: no retries)."""
    return Timeout(total=total, connect=0.5, read=read)


def no_cancellation_left() -> None:
    """The current task carries no cancellation (Python 3.11+ counts them)."""
    task = asyncio.current_task()
    assert task is not None
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0


async def test_calls_in_flight_each_end_at_their_budget() -> None:
    """Eight calls to a server that trickles (never silent for the read timeout) all end
    with Timeout.total near their 0.3 s budget."""
    body = envelope({"credit": 5})
    script = trickle(head(length=len(body)) + body, every=0.02)
    async with (
        RawServer(script) as server,
        client(server.url, timeout=limits(0.3, read=0.2)) as kie,
    ):
        began = time.monotonic()
        calls = [asyncio.ensure_future(kie.credits()) for _ in range(8)]
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
        elapsed = time.monotonic() - began
    assert all(isinstance(r, TransportError) for r in results), results
    assert all("Timeout.total" in str(r) for r in results)
    assert 0.3 - 1e-3 <= elapsed < 2, f"{elapsed:.2f}s for a 0.3s budget"


async def test_a_body_trickled_past_the_budget_is_cut_off() -> None:
    """Headers in time and a body trickled byte by byte (never silent for the read timeout):
    the budget covers the body too."""
    body = envelope({"credit": 5})
    headers = head(length=len(body))
    script = trickle(headers + body, every=0.02, start=len(headers) + 1)
    async with (
        RawServer(script) as server,
        client(server.url, timeout=limits(0.3, read=0.2)) as kie,
    ):
        with pytest.raises(TransportError, match=r"Timeout\.total"):
            await asyncio.wait_for(kie.credits(), 10)


async def test_later_calls_get_a_budget_of_their_own() -> None:
    """A call started while an older one is in flight is cut at its own deadline, not at the
    older one's."""
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


async def test_a_call_in_time_leaves_no_cancellation(server: FakeKieServer) -> None:
    """A call answered within its budget returns the answer; the caller's task carries no
    cancellation after it (a later wait_for or timeout works as usual)."""
    async with fast_client(server, timeout=5) as kie:
        assert await kie.credits() >= 0
        no_cancellation_left()
        await asyncio.wait_for(asyncio.sleep(0), 1)


async def test_closing_the_client_ends_a_call_in_flight() -> None:
    """A client closed with a call still in flight: the call ends with a kie_async error."""
    async with RawServer(silent(3)) as server:
        kie = client(server.url, timeout=limits(30))
        call = asyncio.ensure_future(kie.credits())
        await asyncio.sleep(0.1)
        await kie.aclose()
        with pytest.raises(KieError):
            await asyncio.wait_for(call, 5)


async def test_an_unbounded_budget_bounds_no_call_by_time() -> None:
    """Timeout(total=None): an answer trickled over longer than a 0.2 s budget would allow
    (never silent for the read timeout) is read whole; with the budget it is cut off."""
    body = envelope(5)
    whole = head(length=len(body)) + body
    async with RawServer(trickle(whole, every=0.15, start=len(whole) - 3)) as server:
        async with client(server.url, timeout=limits(None, read=0.3)) as kie:
            assert await asyncio.wait_for(kie.credits(), 10) == 5
        async with client(server.url, timeout=limits(0.2, read=0.3)) as kie:
            with pytest.raises(TransportError, match=r"Timeout\.total"):
                await asyncio.wait_for(kie.credits(), 10)


async def test_a_cancellation_stays_a_cancellation() -> None:
    """The caller cancelling a call in flight gets a cancellation, not a time-out (a
    cancelled bulk worker must stop, not go on after a 'time-out')."""
    async with RawServer(silent(3)) as server, client(server.url, timeout=limits(30)) as kie:
        call = asyncio.ensure_future(kie.credits())
        await asyncio.sleep(0.1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call


async def test_an_answer_in_time_after_a_call_cut_off() -> None:
    """A real answer after a call that was cut off: the budget of the first does not touch
    the second, and the time-out leaves no cancellation on the caller's task."""
    body = envelope(7)
    async with (
        RawServer(silent(2), answer(body)) as raw,
        client(raw.url, timeout=limits(0.3)) as kie,
    ):
        with pytest.raises(TransportError, match=r"Timeout\.total"):
            await kie.credits()
        no_cancellation_left()
        assert await kie.credits() == 7
