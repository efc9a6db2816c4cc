"""Pure decisions about waiting and retrying: the policies, and what each failure means.

Nothing here sleeps or sends; :mod:`kie_async._retry` carries the decisions out. The functions
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

import enum
import math
import os

import attrs

from ._errors import (
    APIError,
    ConfigurationError,
    FeatureDisabledError,
    GenerationFailedError,
    KieError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    TransportError,
    UnexpectedResponseError,
)

__all__ = ["PollPolicy", "RetryPolicy"]


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError(attribute.name, f"must be a number >= 0, got {value!r}")
    if math.isinf(value):
        raise ConfigurationError(attribute.name, "must be finite")


def _optional_positive(_: object, attribute: attrs.Attribute[float], value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(attribute.name, f"must be a number > 0 or None, got {value!r}")


def _fraction(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 0.5:
        raise ConfigurationError(attribute.name, f"must be between 0 and 0.5, got {value!r}")


def _factor(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 100:
        raise ConfigurationError(attribute.name, f"must be between 1 and 100, got {value!r}")


def _count(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(attribute.name, f"must be an int >= 0, got {value!r}")


@attrs.frozen
class PollPolicy:
    """How :meth:`TaskHandle.wait` and :meth:`KieClient.extend_many` poll ``record-info``.

    A task this process just created is first polled after ``first_delay`` seconds (at most
    half the deadline); a task you re-attach to is polled at once, since it may be done
    already. Then the delay between polls stays at ``interval`` for the next
    ``steady_polls`` polls, and after that grows by ``factor`` per poll up to
    ``max_interval``. Each delay is varied by up to ± ``jitter`` (a fraction, never beyond
    ``max_interval``) so that many waiting tasks spread out. The whole wait ends after
    ``timeout`` seconds with :class:`TaskTimeoutError`.

    The defaults come from an assumption about how long a video extension takes (kie.ai
    publishes no durations): not under 2 minutes, mostly within 5.5, some 20 or more.
    So nothing is polled in the first 2 minutes, then every 19 s until about 5.5 minutes (a
    task is noticed about 10 s after it ends), then every 30 s (about 15 s). A 2, 5, 10 or
    20-minute task costs about 2, 11, 22 or 43 ``record-info`` calls, far below kie's
    3-queries-per-second guidance. The 45-minute deadline leaves a slow 20-minute task more
    than twice its length. ``docs/waiting.md`` has the computed table
    (``benchmarks/poll_schedule.py``). Transient poll failures (429, 455, 5xx, dropped
    connections) follow the same schedule, honouring a server's ``Retry-After``.

    ``not_found_grace`` is how long a task submitted by this process may still be unknown to
    ``record-info`` ("recordInfo is null") before that is believed: a freshly created task can
    take a moment to appear.

    Against a fake server use :meth:`testing` (or set ``first_delay`` along with short
    intervals): the two-minute default applies to every task created in the process.

    Raises:
        ConfigurationError: a setting is out of range (e.g. a negative interval, jitter > 0.5).

    Example::

        policy = PollPolicy(first_delay=30, interval=10, max_interval=60, timeout=60 * 60)
        record = await handle.wait(poll=policy)
    """

    interval: float = attrs.field(default=19.0, validator=_non_negative)
    factor: float = attrs.field(default=1.5, validator=_factor)
    max_interval: float = attrs.field(default=30.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.1, validator=_fraction)
    timeout: float | None = attrs.field(default=45 * 60.0, validator=_optional_positive)
    not_found_grace: float = attrs.field(default=30.0, validator=_non_negative)
    first_delay: float = attrs.field(default=120.0, validator=_non_negative)
    steady_polls: int = attrs.field(default=12, validator=_count)

    @classmethod
    def testing(cls, timeout: float | None = 60.0) -> PollPolicy:
        """The test mode: a schedule for a fake server, which answers in seconds and never spins.

        A new task is polled at once, then every 0.1 s for 5 polls, then at delays growing by
        1.5 up to 0.5 s: never more than 10 polls a second for one task, a task that ends at
        once costs 1 poll, one of 3 seconds 13 and one of 10 seconds 27, each noticed at most
        0.5 s after it ends. No not-found grace (a fake server knows its tasks at once), no
        jitter (poll counts repeat), a 60-second deadline. ``KIE_POLL_ZERO_WAIT=1`` makes it
        the default policy of every client. Never use it against the real kie.ai.

        Example::

            >>> PollPolicy.testing().first_wait(age=0.0, deadline=60)
            0.0
        """
        return cls(
            interval=0.1,
            factor=1.5,
            max_interval=0.5,
            jitter=0,
            timeout=timeout,
            not_found_grace=0,
            first_delay=0,
            steady_polls=5,
        )

    @classmethod
    def zero_wait(cls, timeout: float | None = 30.0) -> PollPolicy:
        """A policy that never sleeps between polls, for tests whose fake tasks end after a
        number of polls (``TaskScript(polls=N)``), as :func:`kie_async.testing.fast_client`'s.

        A task that ends after some *seconds* is polled as fast as the network allows until
        then (thousands of polls a second): use :meth:`testing` for those.
        """
        return cls(
            interval=0,
            factor=1,
            max_interval=0,
            jitter=0,
            timeout=timeout,
            not_found_grace=0,
            first_delay=0,
            steady_polls=0,
        )

    def first_wait(self, *, age: float | None, deadline: float | None) -> float:
        """Seconds before the first poll of a wait: what is left of ``first_delay`` for a task
        this process created ``age`` seconds ago, at most half of ``deadline``; none for a task
        re-attached by id (``age`` is ``None``)."""
        if age is None:
            return 0.0
        wait = max(self.first_delay - age, 0.0)
        return wait if deadline is None else min(wait, deadline / 2)


def default_poll() -> PollPolicy:
    """``PollPolicy()``, or the test mode ``PollPolicy.testing()`` when ``KIE_POLL_ZERO_WAIT=1``
    (so that a script or the command-line tool can be pointed at a fake server).

    Raises:
        ConfigurationError: ``KIE_POLL_ZERO_WAIT`` is set to anything but ``0`` or ``1``.
    """
    flag = os.environ.get("KIE_POLL_ZERO_WAIT", "").strip()
    if flag in ("", "0"):
        return PollPolicy()
    if flag != "1":
        raise ConfigurationError("KIE_POLL_ZERO_WAIT", f"must be 0 or 1, got {flag[:40]!r}")
    return PollPolicy.testing()


@attrs.frozen
class RetryPolicy:
    """How single requests are retried after transient failures (see the table in the docs).

    Delays start at ``initial_delay`` and double (``factor``) up to ``max_delay``, varied by up
    to ± ``jitter``; a server's ``Retry-After`` is honoured, capped at ``max_retry_after``, and
    never shortened by jitter. ``max_retries=0`` disables retries.

    Of those retries, at most ``max_connect_retries`` follow a failure to connect (refused,
    connect timeout, no DNS answer): with the default delays a dead or unreachable API is
    reported after about 7 seconds (1 + 2 + 4), not after every retry. TLS failures and
    invalid URLs are never retried.

    Example::

        KieClient(retry=RetryPolicy(max_retries=8, max_delay=60))
    """

    max_retries: int = attrs.field(default=5)
    initial_delay: float = attrs.field(default=1.0, validator=_non_negative)
    factor: float = attrs.field(default=2.0, validator=_factor)
    max_delay: float = attrs.field(default=30.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.25, validator=_fraction)
    max_retry_after: float = attrs.field(default=120.0, validator=_non_negative)
    max_connect_retries: int = attrs.field(default=3)

    @max_retries.validator
    @max_connect_retries.validator
    def _check_max_retries(self, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(attribute.name, f"must be an int >= 0, got {value!r}")

    @classmethod
    def zero_wait(cls, max_retries: int = 5) -> RetryPolicy:
        """Retries without delays (``Retry-After`` ignored): for tests against a fake server."""
        return cls(
            max_retries=max_retries,
            initial_delay=0,
            factor=1,
            max_delay=0,
            jitter=0,
            max_retry_after=0,
        )


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
