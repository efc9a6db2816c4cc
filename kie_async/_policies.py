"""Every setting a user passes, checked one way: :class:`Timeout`, :class:`PollPolicy`,
:class:`RetryPolicy`, :class:`RateLimit`, :class:`RedisRateLimit` and :class:`DownloadPolicy`.

Pure values: nothing here sleeps, sends or imports redis-py (the Redis limiter itself is built
from a :class:`RedisRateLimit` in ``_transport/redis_limiter.py``). Every problem is a
:class:`~kie_async.ConfigurationError` raised when the setting is constructed, by the one
validator below, :func:`check_number`.
"""

from __future__ import annotations

import math
import os
from typing import Any

import attrs

from ._errors import ConfigurationError
from ._text import redacted

__all__ = [
    "DownloadPolicy",
    "PollPolicy",
    "RateLimit",
    "RedisRateLimit",
    "RetryPolicy",
    "Timeout",
    "check_number",
    "default_poll",
]


def check_number(
    field: str,
    value: object,
    *,
    low: float = 0,
    above: bool = False,
    high: float | None = None,
    integer: bool = False,
    none: bool = False,
    finite: bool = True,
    subject: str = "",
) -> Any:
    """``value`` if it is a number (an int with ``integer``; never a bool) ``>= low`` (``> low``
    with ``above``), at most ``high``, and finite; or ``None`` where ``none`` allows it.

    Raises:
        ConfigurationError: naming ``field``, and saying what it must be.
    """
    if value is None and none:
        return None
    kinds = int if integer else int | float
    fits = not isinstance(value, bool) and isinstance(value, kinds)
    if fits:
        fits = (value > low if above else value >= low) and (high is None or value <= high)  # type: ignore[operator]
    if not fits:
        if high is not None:
            words = (
                f"an int from {low:g} to {high:g}" if integer else f"between {low:g} and {high:g}"
            )
        else:
            words = f"{'an int' if integer else 'a number'} {'>' if above else '>='} {low:g}"
        raise ConfigurationError(
            field, f"must be {words}{' or None' if none else ''}, got {value!r}"
        )
    if finite and not integer and math.isinf(value):  # type: ignore[arg-type]
        # aiohttp cannot schedule an infinite timer; None says "no limit" where it is allowed.
        raise ConfigurationError(field, f"{subject}must be finite")
    return value


def _number(prefix: str = "", setting: str | None = None, **rules: Any) -> Any:
    """An attrs validator: :func:`check_number` with ``rules``, naming the field ``prefix`` and
    the attribute's name (``timeout.read``); or, with ``setting``, naming the setting (as
    ``KieClient``'s argument) and the attribute in the message (``rate_limit: per must be``)."""

    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if setting is None:
            check_number(prefix + attribute.name, value, **rules)
        else:
            check_number(setting, value, subject=f"{attribute.name} ", **rules)

    return check


_SECONDS = _number(above=True)
_NON_NEGATIVE = _number()
_POLL_TIMEOUT = _number(above=True, none=True, finite=False)
_FRACTION = _number(high=0.5)
_FACTOR = _number(low=1, high=100)
_COUNT = _number(integer=True)
_REDIRECTS = _number(integer=True, high=100)
_TIMEOUT = _number("timeout.", above=True)
_TIMEOUT_OR_NONE = _number("timeout.", above=True, none=True)
_REQUESTS = _number(setting="rate_limit", integer=True, low=1)
_PER = _number(setting="rate_limit", above=True)
_REDIS_SECONDS = _number(setting="rate_limit", above=True, high=1e9)


@attrs.frozen
class Timeout:
    """How long one API request may take, phase by phase and as a whole (as httpx's
    ``Timeout``, plus an overall deadline).

    Every API call (a create, ``record-info``, the balance, ``download-url``) is bounded by all
    four; each retry of a call starts a fresh budget.

    Attributes:
        total: seconds for the whole request once it has a connection slot: connecting,
            sending, and receiving the status line, the headers and the whole body. A server
            that trickles its answer a byte at a time never trips ``read``; it trips this.
            ``None`` switches the overall deadline off (not recommended).
        connect: seconds to establish a connection (DNS, TCP and TLS), capped at ``total``. A
            request that times out here was certainly not sent, so even a create is retried.
        read: seconds of silence allowed between two reads of the answer.
        pool: seconds to wait for a free connection when ``max_connections`` requests are
            already in flight; ``None`` (the default) waits as long as it takes, so a bulk run
            can queue any number of requests.

    There is no separate write timeout: a request's body is a few hundred bytes, written
    into the socket's buffer at once; ``total`` bounds it all the same.

    When ``total`` runs out on a create after the connection was made, the request may have
    reached kie.ai: the create raises :class:`SubmissionUncertainError` and is not retried.

    Raises:
        ConfigurationError: a value is not a finite number > 0 (or ``None`` where allowed).

    Example::

        KieClient(timeout=Timeout(total=30, connect=5, read=10))
    """

    total: float | None = attrs.field(default=120.0, validator=_TIMEOUT_OR_NONE)
    connect: float = attrs.field(default=15.0, validator=_TIMEOUT)
    read: float = attrs.field(default=60.0, validator=_TIMEOUT)
    pool: float | None = attrs.field(default=None, validator=_TIMEOUT_OR_NONE)

    @property
    def connect_budget(self) -> float:
        """The connect timeout actually applied: ``connect``, but never more than ``total``."""
        return self.connect if self.total is None else min(self.connect, self.total)


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

    interval: float = attrs.field(default=19.0, validator=_NON_NEGATIVE)
    factor: float = attrs.field(default=1.5, validator=_FACTOR)
    max_interval: float = attrs.field(default=30.0, validator=_NON_NEGATIVE)
    jitter: float = attrs.field(default=0.1, validator=_FRACTION)
    timeout: float | None = attrs.field(default=45 * 60.0, validator=_POLL_TIMEOUT)
    not_found_grace: float = attrs.field(default=30.0, validator=_NON_NEGATIVE)
    first_delay: float = attrs.field(default=120.0, validator=_NON_NEGATIVE)
    steady_polls: int = attrs.field(default=12, validator=_COUNT)

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

    max_retries: int = attrs.field(default=5, validator=_COUNT)
    initial_delay: float = attrs.field(default=1.0, validator=_NON_NEGATIVE)
    factor: float = attrs.field(default=2.0, validator=_FACTOR)
    max_delay: float = attrs.field(default=30.0, validator=_NON_NEGATIVE)
    jitter: float = attrs.field(default=0.25, validator=_FRACTION)
    max_retry_after: float = attrs.field(default=120.0, validator=_NON_NEGATIVE)
    max_connect_retries: int = attrs.field(default=3, validator=_COUNT)

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
class RateLimit:
    """At most ``requests`` new generation requests in any ``per``-second window.

    The default is kie.ai's documented limit, 20 per 10 seconds. Accounts whose limit support
    has raised pass their own, e.g. ``KieClient(rate_limit=RateLimit(50, per=10))``; pass
    ``rate_limit=None`` to switch the limiter off.
    """

    requests: int = attrs.field(default=20, validator=_REQUESTS)
    per: float = attrs.field(default=10.0, validator=_PER)


@attrs.frozen
class RedisRateLimit:
    """At most ``requests`` creates in any ``per``-second window, for every process that uses
    the same Redis and account: one limit for web workers, job queues and machines sharing a
    kie.ai account. It needs redis-py (the ``redis`` extra, or ``pip install redis``).

    Same meaning as :class:`RateLimit` (a sliding window of creates, and the pause after a 429,
    here shared by every process). A process that dies holding a slot leaves it counted for at
    most ``lease + per`` seconds.

    Args:
        url: the Redis URL, e.g. ``"redis://localhost:6379/0"`` (``rediss://`` for TLS).
        requests, per: the limit (default kie.ai's 20 per 10 s).
        name: the account's name in Redis; by default a SHA-256 digest of the API key (the key
            itself never reaches Redis). Give a name to share a limit between keys.
        lease: seconds after which a slot taken and never given back (its process died) counts
            as ended; longer than any create takes (the default 120 s is twice the client's
            read timeout).
        prefix: the start of every Redis key.
        timeout: seconds each exchange with Redis may take, connecting included: one that
            stops answering (or trickles its answer) fails the create (not sent) instead of
            holding every create back forever.

    Raises:
        ConfigurationError: a setting is invalid; and when the client starts (entering
            ``async with KieClient(...)``, or its first create), a Redis that cannot be
            reached, or answers what no Redis would: never a silent fallback to an
            unshared limit.
        TransportError: (from a create) Redis failed or answered nonsense after the start;
            the create was not sent. Nothing redis-py raises reaches you as it is.

    Example::

        limit = RedisRateLimit("redis://cache:6379/0", requests=20, per=10)
        async with KieClient(rate_limit=limit) as kie:
            ...

    The ``KIE_RATE_LIMIT_REDIS`` environment variable (a URL) gives ``KieClient()`` and the
    ``kie-async`` command this limit with the default numbers, unless ``rate_limit`` is passed.
    """

    url: str = attrs.field(repr=redacted)
    requests: int = attrs.field(default=20, validator=_REQUESTS)
    per: float = attrs.field(default=10.0, validator=_REDIS_SECONDS)
    name: str | None = None
    lease: float = attrs.field(default=120.0, validator=_REDIS_SECONDS)
    prefix: str = "kie-async"
    timeout: float = attrs.field(default=10.0, validator=_REDIS_SECONDS)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigurationError(
                "rate_limit",
                f"{redacted(str(self.url))!r} is not a redis://, rediss:// or unix:// URL",
            )
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ConfigurationError("rate_limit", "name must be a non-empty string")
        if not isinstance(self.prefix, str) or not self.prefix:
            raise ConfigurationError("rate_limit", "prefix must be a non-empty string")


@attrs.frozen
class DownloadPolicy:
    """How long fetching a result file may take, so a stalled or trickling file host cannot
    hold a download for ever.

    A download fails with :class:`DownloadError` (caused by a :class:`TransportError`, so the
    client's :class:`RetryPolicy` retries it first) when:

    * the connection and the file host's status line and headers take longer than the
      client's ``connect_timeout`` plus ``read_timeout`` seconds (however slowly they trickle);
    * no byte of the body arrives for ``read_timeout`` seconds;
    * fewer than ``min_speed`` bytes per second arrive on average over any ``speed_window``
      seconds (``min_speed=0`` switches this off). A host sending one byte a second is given
      up on after about ``speed_window`` seconds.

    The defaults (30 s, 16 KiB/s over 30 s) let any working connection finish: a 100 MB video
    needs at most about 100 minutes at the minimum speed, and a typical one a few seconds.
    At most ``max_redirects`` redirects are followed per GET.

    Example::

        KieClient(download=DownloadPolicy(read_timeout=60, min_speed=4096, speed_window=120))
    """

    read_timeout: float = attrs.field(default=30.0, validator=_SECONDS)
    min_speed: float = attrs.field(default=16 * 1024.0, validator=_NON_NEGATIVE)
    speed_window: float = attrs.field(default=30.0, validator=_SECONDS)
    max_redirects: int = attrs.field(default=10, validator=_REDIRECTS)
