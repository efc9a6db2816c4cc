"""Sleeping between attempts: the only module that knows the ``backoff`` package.

backoff is unmaintained upstream, so it stays behind :func:`retry_call` and :func:`poll_until`,
and no backoff name appears anywhere else. Its loggers are switched off; we log retries ourselves
at DEBUG.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Generator
from typing import TypeVar

import attrs
import backoff as _bo
from backoff.types import Details

from ._errors import KieError

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("kie_async")


@attrs.frozen
class Schedule:
    """Delays that grow from ``initial`` by ``factor``, ± ``jitter`` (a fraction), never above
    ``cap``.

    A ``retry_after`` attribute on the failure (a server's ``Retry-After``, in seconds) is
    honoured up to ``retry_after_cap`` (``0`` ignores it): the delay is then at least
    ``min(retry_after, retry_after_cap)``, jitter only lengthens it, and it never passes
    ``retry_after_cap`` because of jitter.
    """

    initial: float
    factor: float
    cap: float
    jitter: float
    retry_after_cap: float


def next_delay(schedule: Schedule, base: float, failure: object, rng: random.Random) -> float:
    """The delay before the next attempt, given the current exponential ``base`` and the
    ``failure`` (or polled value) that ended the last one."""
    delay = min(base, schedule.cap)
    if schedule.jitter:
        delay *= 1 + rng.uniform(-schedule.jitter, schedule.jitter)
    delay = min(max(0.0, delay), schedule.cap)
    retry_after = getattr(failure, "retry_after", None)
    if (
        isinstance(retry_after, int | float)
        and not isinstance(retry_after, bool)
        and retry_after > 0
        and schedule.retry_after_cap > 0
    ):
        asked = min(float(retry_after), schedule.retry_after_cap)
        stretched = asked * (1 + rng.uniform(0, schedule.jitter))
        delay = max(delay, min(stretched, schedule.retry_after_cap))
    return delay


def delays(schedule: Schedule, rng: random.Random) -> Generator[float, object, None]:
    """A backoff wait generator; backoff sends it each failure (or polled value) in turn."""
    sent = yield 0.0  # backoff primes the generator with send(None) and ignores this value
    base = schedule.initial
    while True:
        delay = next_delay(schedule, base, sent, rng)
        if base < schedule.cap:
            base *= schedule.factor
        sent = yield delay


rng = random.Random()


async def retry_call(
    attempt: Callable[[], Awaitable[T]],
    *,
    schedule: Schedule,
    max_retries: int,
    should_retry: Callable[[KieError], bool],
    on_retry: Callable[[KieError, float], None] | None = None,
    what: str = "request",
) -> T:
    """Await ``attempt()``, retrying a :class:`KieError` that ``should_retry`` accepts.

    At most ``max_retries`` retries; the last failure is raised as it is.
    """
    if max_retries <= 0:
        return await attempt()
    # Most calls succeed at once, and building backoff's decorator costs about as much as a
    # loopback request: try once without it. A failure worth retrying is replayed into backoff
    # as its first attempt, so the delays, the retry count and the logging are unchanged.
    try:
        return await attempt()
    except KieError as exc:
        if not should_retry(exc):
            raise
        first_failure: KieError | None = exc

    async def replay() -> T:
        nonlocal first_failure
        if first_failure is not None:
            failure, first_failure = first_failure, None
            raise failure
        return await attempt()

    def backing_off(details: Details) -> None:
        exc = details["exception"]  # type: ignore[typeddict-item]
        log.debug(
            "retrying %s in %.2fs (attempt %d of %d) after: %s",
            what,
            details["wait"],
            details["tries"],
            max_retries + 1,
            exc,
        )
        if on_retry is not None:
            on_retry(exc, details["wait"])

    decorate = _bo.on_exception(
        functools.partial(delays, schedule, rng),
        KieError,
        max_tries=max_retries + 1,
        giveup=lambda exc: not (isinstance(exc, KieError) and should_retry(exc)),
        on_backoff=backing_off,
        jitter=None,
        logger=None,
        raise_on_giveup=True,
    )
    retrying: Callable[[], Awaitable[T]] = decorate(replay)
    return await retrying()


async def poll_until(
    fetch: Callable[[], Awaitable[R]],
    *,
    done: Callable[[R], bool],
    schedule: Schedule,
    max_time: float | None,
    on_wait: Callable[[R, float], None] | None = None,
) -> R:
    """Await ``fetch()`` until ``done(value)``, sleeping per ``schedule`` between calls.

    The first call is immediate. After ``max_time`` seconds the last value is returned even if
    not done: the caller decides what a give-up means.
    """
    # One wait per call: a bulk run does not come here (its poller schedules every task from
    # one heap with next_delay), so building backoff's decorator per wait costs nothing that
    # matters. backoff needs a coroutine function to await it.
    if not inspect.iscoroutinefunction(fetch):
        raise TypeError("poll_until() needs an async def function")

    def backing_off(details: Details) -> None:
        if on_wait is not None:
            on_wait(details["value"], details["wait"])

    decorate = _bo.on_predicate(
        functools.partial(delays, schedule, rng),
        lambda value: not done(value),
        max_time=max_time,
        on_backoff=backing_off,
        jitter=None,
        logger=None,
    )
    polling: Callable[[], Awaitable[R]] = decorate(fetch)
    return await polling()


async def within(awaitable: Awaitable[R], seconds: float | None) -> R | None:
    """Await ``awaitable`` for at most ``seconds`` (``None``: no limit); ``None`` when the time
    ran out first, after cancelling it and letting it unwind.

    Unlike ``asyncio.wait_for`` before Python 3.12, a cancellation of the caller is never lost
    when the awaitable finishes in the same instant: wait_for then returns the result and drops
    the cancellation, so a cancelled bulk worker went on to send new creates.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait({task}, timeout=seconds)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # nothing is left running when this returns or raises
    if task.cancelled():
        return None
    return task.result()
