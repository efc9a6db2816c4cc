"""Sleeping between attempts: the only module that knows the ``backoff`` package.

backoff is unmaintained upstream, so it stays behind :func:`retry_call` and :func:`delays`,
and no backoff name appears anywhere else. Only its wait generator ``backoff.expo`` is used,
for the exponential growth of a :class:`Schedule`; the loops that retry and poll are our own.
backoff's decorators (``on_exception``, ``on_predicate``) are not used: they call
``asyncio.iscoroutinefunction``, which Python 3.14 deprecates, so under warnings-as-errors every
retry and every wait would fail there (docs/reliability.md says more).

Retries are logged here: at DEBUG, and the first retry after a connection failure also as a WARNING
that says what failed and when the next try is.

:func:`create_failure`, :func:`poll_is_transient` and :func:`unreachable` are the only place that
decides which failures are retried; ``docs/reliability.md`` explains each line of this table.

Which failures are retried
==========================

=========================================  ==================  ================================
failure                                    poll (read-only)    create (costs credits)
=========================================  ==================  ================================
429 rate limited (body, HTTP, or page)     retry               retry, and pause all creates
455 maintenance                            retry               retry
500 JSON envelope from kie                 retry               raise ``ServerError``
other 5xx JSON envelope (502, 503, ...)    retry               raise ``ServerError``
501 generation failed, 505 disabled        raise               raise
non-JSON / truncated / envelope-less 5xx   retry               raise ``SubmissionUncertainError``
answer over the size cap, malformed HTTP   retry               raise ``SubmissionUncertainError``
record-info answer for another task        retry               (not a create)
connection refused / connect timeout       retry, at most      retry, at most
                                           ``max_connect_``    ``max_connect_retries`` times
                                           ``retries`` times   (nothing was sent)
TLS failure, invalid URL (``permanent``)   raise               raise (nothing was sent)
connection dropped / read or total timeout retry               raise ``SubmissionUncertainError``
any other kie code (400, 401, 402, 422)    raise               raise
=========================================  ==================  ================================

A create is retried only when it certainly created nothing: kie.ai has no idempotency key, so a
second create after a lost reply may pay twice. A JSON ``500`` envelope is an answer from kie
itself (it uses 500 for validation, "This field is required"), so as far as we can know nothing
was created and it is raised, not retried: resending a request kie.ai judged invalid would only
fail again. A ``5xx`` page that is not kie's JSON comes from a proxy in front of kie, which may
have forwarded the request before failing: its fate is unknown, so it is uncertain.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import TypeVar

import attrs
import backoff as _bo

from ._errors import (
    APIError,
    FeatureDisabledError,
    GenerationFailedError,
    KieError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    TransportError,
    UnexpectedResponseError,
)
from ._policies import PollPolicy
from ._text import server_name

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("kie_async")


class CreateFailure(enum.Enum):
    """What a failed create means for the money: retry it, give up, or report it as uncertain."""

    RETRY = "retry"
    RAISE = "raise"
    UNCERTAIN = "uncertain"


def create_failure(exc: KieError) -> CreateFailure:
    """Decide a failed create: retry only what certainly created nothing.

    * ``RETRY``: 429 and 455 (kie.ai refused the request), or no connection was made.
    * ``UNCERTAIN``: the request may have reached kie.ai but its answer was lost or unreadable
      (dropped connection, read or total timeout, an HTML, truncated, oversized or malformed
      answer).
    * ``RAISE``: kie.ai answered with an error (including a JSON 500): nothing was created; or
      the failure is permanent (TLS, an invalid URL): nothing was sent, and nothing would be.

    Example::

        >>> from kie_async import RateLimitError, TransportError
        >>> create_failure(RateLimitError(code=429, message="slow down", http_status=200))
        <CreateFailure.RETRY: 'retry'>
        >>> create_failure(TransportError(message="reset", sent=True))
        <CreateFailure.UNCERTAIN: 'uncertain'>
    """
    if isinstance(exc, RateLimitError | ServiceUnavailableError):
        return CreateFailure.RETRY
    if isinstance(exc, TransportError):
        if exc.sent:
            return CreateFailure.UNCERTAIN
        return CreateFailure.RAISE if exc.permanent else CreateFailure.RETRY
    if isinstance(exc, UnexpectedResponseError):
        return CreateFailure.UNCERTAIN
    return CreateFailure.RAISE


def poll_is_transient(exc: BaseException) -> bool:
    """Whether a failed read-only call (a poll, a balance check) is worth retrying.

    Every failure that may pass is: 429, 455, 5xx answers (JSON or not), unreadable answers,
    dropped connections and timeouts. kie's own verdicts are not: 4xx codes, and 501
    (generation failed) and 505 (feature disabled), which no retry changes; nor are permanent
    transport failures (TLS, an invalid URL).

    Example::

        >>> from kie_async import ServerError, AuthenticationError
        >>> poll_is_transient(ServerError(code=502, message="bad gateway", http_status=502))
        True
        >>> poll_is_transient(AuthenticationError(code=401, message="bad key", http_status=200))
        False
    """
    if isinstance(exc, GenerationFailedError | FeatureDisabledError):
        return False
    if isinstance(exc, RateLimitError | ServiceUnavailableError | ServerError):
        return True
    if isinstance(exc, APIError):
        return exc.code >= 500
    if isinstance(exc, TransportError):
        return not exc.permanent
    return isinstance(exc, UnexpectedResponseError)


def unreachable(exc: BaseException) -> bool:
    """Whether a failure means kie.ai could not be reached at all: no connection was made
    (refused, connect timeout, no DNS answer) and trying again might help. Such failures are
    retried only ``RetryPolicy.max_connect_retries`` times, and a bulk run stops submitting
    after a few in a row.

    Example::

        >>> from kie_async import TransportError
        >>> unreachable(TransportError(message="refused", sent=False))
        True
        >>> unreachable(TransportError(message="TLS", sent=False, permanent=True))
        False
    """
    return isinstance(exc, TransportError) and not exc.sent and not exc.permanent


@attrs.frozen
class Schedule:
    """Delays that grow from ``initial`` by ``factor``, ± ``jitter`` (a fraction), never above
    ``cap``.

    A ``retry_after`` attribute on the failure (a server's ``Retry-After``, in seconds) is
    honoured up to ``retry_after_cap`` (``0`` ignores it): the delay is then at least
    ``min(retry_after, retry_after_cap)``, jitter only lengthens it, and it never passes
    ``retry_after_cap`` because of jitter. The first ``steady`` delays stay at ``initial``;
    growth starts after them.
    """

    initial: float
    factor: float
    cap: float
    jitter: float
    retry_after_cap: float
    steady: int = 0


def poll_schedule(policy: PollPolicy) -> Schedule:
    """The delays between the polls of ``policy`` (after the first poll), as the waiting loops
    and ``benchmarks/poll_schedule.py`` use them; ``Retry-After`` honoured up to
    ``max_interval``."""
    return Schedule(
        policy.interval,
        policy.factor,
        policy.max_interval,
        policy.jitter,
        retry_after_cap=policy.max_interval,
        steady=policy.steady_polls,
    )


def grown(schedule: Schedule, base: float, delays_so_far: int) -> float:
    """The exponential base for the next delay, after ``delays_so_far`` delays at ``base``."""
    if delays_so_far >= schedule.steady and base < schedule.cap:
        return base * schedule.factor
    return base


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


_LONGEST = 86_400.0


def _bases(schedule: Schedule) -> Iterator[float]:
    """The un-jittered delays: ``initial`` for the first ``steady`` steps, then times ``factor``
    per step, then ``cap`` for ever.

    backoff's ``expo`` computes ``factor ** n`` at every step, which overflows a float after a
    few thousand steps (a long wait): it is only asked until it reaches the cap.
    """
    if schedule.initial <= 0 or schedule.cap <= 0:
        return itertools.repeat(0.0)
    expo = _bo.expo(base=schedule.factor, factor=schedule.initial, max_value=schedule.cap)
    next(expo)  # backoff's wait generators are primed with one send(None)
    if schedule.factor <= 1:
        # Never grows (factor 1): the first value for ever, without computing powers.
        return itertools.repeat(float(next(expo)))
    # A cap past a day would let the powers overflow before reaching it; no wait needs more.
    ceiling = min(float(schedule.cap), _LONGEST)
    growing = itertools.takewhile(lambda base: base < ceiling, expo)
    # expo's first value is ``initial``: with it, the first ``steady`` delays stay there.
    held = itertools.repeat(float(min(schedule.initial, ceiling)), max(schedule.steady - 1, 0))
    return itertools.chain(held, growing, itertools.repeat(ceiling))


def delays(schedule: Schedule, rng: random.Random) -> Generator[float, object, None]:
    """The delays of ``schedule``, jittered; send each failure (or polled value) to get the
    delay after it. Prime it with ``send(None)`` first (its answer means nothing)."""
    sent = yield 0.0
    for base in _bases(schedule):
        sent = yield next_delay(schedule, base, sent, rng)


rng = random.Random()


#: Seconds after a warning that a host is unreachable during which later ones about the same
#: host are logged at DEBUG: a host that dies under a bulk run would otherwise get a WARNING
#: from every request in flight.
WARN_AGAIN_AFTER = 10.0

#: When each host was last warned about (a few hosts per process; cleared if it ever grows).
warned_at: dict[str, float] = {}


def warn_unreachable(exc: KieError, wait: float, what: object, retry: str) -> None:
    """Log that the host of ``exc`` could not be reached and ``retry`` follows in ``wait``
    seconds (the retry loop's and a wait's first connection failure): a WARNING, or DEBUG
    when the same host was warned about less than :data:`WARN_AGAIN_AFTER` seconds ago."""
    host = server_name(getattr(exc, "url", ""))
    now = time.monotonic()
    last = warned_at.get(host)
    level = logging.WARNING
    if last is not None and now - last < WARN_AGAIN_AFTER:
        level = logging.DEBUG
    else:
        if len(warned_at) >= 64:
            warned_at.clear()
        warned_at[host] = now
    log.log(level, "%s unreachable, %s in %s s (%s: %s)", host, retry, _seconds(wait), what, exc)


def _seconds(wait: float) -> str:
    return f"{wait:.2g}" if wait < 10 else f"{wait:.0f}"


async def retry_call(
    attempt: Callable[[], Awaitable[T]],
    *,
    schedule: Schedule,
    max_retries: int,
    should_retry: Callable[[KieError], bool],
    on_retry: Callable[[KieError, float], None] | None = None,
    what: object = "request",
    max_connect_retries: int | None = None,
) -> T:
    """Await ``attempt()``, retrying a :class:`KieError` that ``should_retry`` accepts.

    At most ``max_retries`` retries, of which at most ``max_connect_retries`` after failures
    to connect at all (``None``: no such limit); the last failure is raised as it is. The
    first retry of a network failure is logged as a WARNING (``api.kie.ai unreachable, retry
    1/3 in 1 s (...)``, naming the host called; once per host in :data:`WARN_AGAIN_AFTER`
    seconds, see :func:`warn_unreachable`), the others at DEBUG.
    """
    waits: Generator[float, object, None] | None = None  # built on the first failure only
    warned = False
    tries = 0
    connect_failures = 0
    while True:
        tries += 1
        try:
            return await attempt()
        except KieError as exc:
            if tries > max_retries or not should_retry(exc):
                raise
            limit = max_retries
            if max_connect_retries is not None and unreachable(exc):
                connect_failures += 1
                if connect_failures > max_connect_retries:
                    raise
                limit = min(max_retries, max_connect_retries)
            if waits is None:
                waits = delays(schedule, rng)
                waits.send(None)
            wait = waits.send(exc)
            if isinstance(exc, TransportError) and not warned:
                warned = True
                warn_unreachable(exc, wait, what, f"retry {tries}/{limit}")
            log.debug(
                "retrying %s in %.2fs (attempt %d of %d) after: %s",
                what,
                wait,
                tries,
                max_retries + 1,
                exc,
            )
            if on_retry is not None:
                on_retry(exc, wait)
            await asyncio.sleep(wait)


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
