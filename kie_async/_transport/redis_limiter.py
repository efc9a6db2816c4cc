"""A rate limit on creates shared by every process of an account, kept in Redis.

kie.ai limits creates per *account* (about 20 per 10 s), so several processes (web workers, a job
queue, several machines) each holding their own :class:`RateLimit` send up to N times the limit
and collect 429s. :class:`RedisRateLimit` keeps one sliding window for all of them in a Redis
they share, with the same meaning as the in-process limiter:

* a slot is taken before a create goes out and counts from then; when the create ends, its time
  is stamped, and it counts for ``per`` seconds more (the server saw it at some moment before
  that, so the window stays honest whatever the latency);
* a 429 answer pauses every process on the account;
* a process that dies holding a slot does not hold it forever: a slot taken and never given back
  counts as if its create had ended ``lease`` seconds after it was taken.

Each step is one Lua script, so it is atomic on the Redis server, and every time comes from the
Redis server's clock (``TIME``), so processes on machines whose clocks differ still agree. The
keys are ``<prefix>:{<account>}:window`` (a sorted set: slot id -> the time it stops counting)
and ``<prefix>:{<account>}:pause``, where ``<account>`` is the ``name`` you give or ``key-`` and
a SHA-256 digest of the API key: the key itself never reaches Redis.

This module is the one place that knows redis-py; it is imported only when a
:class:`RedisRateLimit` is used. Every call into it goes through :meth:`RedisLimiter._call`,
which bounds it in time and turns *whatever* it raises into a kie_async error (an
``AttributeError`` of redis-py's own, meeting a server that answers nonsense, too).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from .._errors import ConfigurationError, TransportError
from .._policies import RedisRateLimit
from .._retry import within
from .._text import printable, redacted
from .limiter import Held

__all__ = ["RedisLimiter", "redis_limiter"]

log = logging.getLogger("kie_async")

_T = TypeVar("_T")

#: The longest sleep between two looks at a full window: a slot still in flight may be given
#: back at any moment, and only its lease says when it will be at the latest.
_MAX_NAP = 0.1

# ARGV: limit, per (ms), lease (ms), slot id. Returns 0 when the slot is taken, > 0 the ms the
# account's pause still lasts, < 0 minus the ms until the earliest slot stops counting.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, per, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return paused - now end
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + lease + per, ARGV[4])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(last[2]) - now) + 1000)
  return 0
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return -math.max(1, tonumber(first[2]) - now)
"""

# ARGV: per (ms), slot id. The slot's create ended now: it counts for `per` ms more.
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(last[2]) - now) + 1000)
return 0
"""

# ARGV: pause (ms). Every process of the account holds its creates back until then.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + ms > current then redis.call('SET', KEYS[1], now + ms, 'PX', ms + 1000) end
return 0
"""


def redis_limiter(limit: RedisRateLimit, api_key: str) -> RedisLimiter:
    """The limiter of a :class:`RedisRateLimit` for the account of ``api_key`` (by default a
    SHA-256 digest of it: the key itself never reaches Redis)."""
    account = limit.name or "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:32]
    return RedisLimiter(limit, account)


def _why(what: BaseException | str) -> str:
    """What went wrong, for a message: an exception's type and text, escaped (the text may be
    the server's)."""
    if isinstance(what, BaseException):
        what = f"{type(what).__name__}: {what}"
    return printable(what)


def _unreachable(limit: RedisRateLimit, what: BaseException | str) -> ConfigurationError:
    return ConfigurationError(
        "rate_limit",
        f"cannot use the shared rate limit's Redis at {redacted(limit.url)}: "
        f"{_why(what)} (kie-async does not fall back to a per-process limit)",
    )


async def _close(client: Any) -> None:
    try:
        await client.aclose()
    except Exception as exc:  # the connections are dropped all the same
        log.debug("closing the shared rate limit's Redis connections: %r", exc)


class RedisLimiter:
    """The limiter of one client for a :class:`RedisRateLimit`: the interface of
    :class:`~kie_async._transport.limiter.Limiter`, with the window in Redis."""

    def __init__(self, limit: RedisRateLimit, account: str) -> None:
        self.limit = limit
        base = f"{limit.prefix}:{{{account}}}"
        self._window = f"{base}:window"
        self._pause_key = f"{base}:pause"
        self._redis: Any = None
        self._scripts: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._start_lock = asyncio.Lock()
        self._local_pause = 0.0
        # Pauses being shared and slots being given back: aclose waits for them.
        self._pauses: set[asyncio.Future[None]] = set()

    def open(self) -> bool:
        """Never: every create takes a slot."""
        return False

    async def start(self) -> None:
        """Connect and check that Redis answers (a ``PING``, answered ``PONG``).

        Raises:
            ConfigurationError: redis-py is not installed, or Redis cannot be reached or
                answers what no Redis would.
        """
        async with self._start_lock:
            if self._redis is not None:
                return
            try:
                import redis.asyncio as aioredis
            except ImportError:
                raise ConfigurationError(
                    "rate_limit",
                    "RedisRateLimit needs redis-py: pip install redis (kie-async's redis extra)",
                ) from None
            try:
                # Bounded both ways: a Redis that stops answering fails a create (unsent)
                # instead of holding every create of the process forever.
                client = aioredis.from_url(
                    self.limit.url,
                    socket_connect_timeout=self.limit.timeout,
                    socket_timeout=self.limit.timeout,
                )
                scripts = {
                    "acquire": client.register_script(_ACQUIRE),
                    "release": client.register_script(_RELEASE),
                    "pause": client.register_script(_PAUSE),
                }
            except Exception as exc:  # redis-py's, whatever it is: see the module's docstring
                raise _unreachable(self.limit, exc) from None
            failed = functools.partial(_unreachable, self.limit)
            try:
                pong = await self._call(client.ping, failed)
                if pong is not True:
                    raise failed(f"PING was answered with {pong!r:.80}, not PONG")
            except BaseException:
                await _close(client)
                raise
            self._redis, self._scripts = client, scripts

    async def aclose(self) -> None:
        """Finish sharing pauses, then close the connections. Safe to call twice."""
        if self._pauses:
            await asyncio.gather(*self._pauses, return_exceptions=True)
        client, self._redis = self._redis, None
        if client is not None:
            await _close(client)

    async def _call(
        self, step: Callable[[], Awaitable[_T]], fail: Callable[[str], Exception] | None = None
    ) -> _T:
        """The one door into redis-py: ``await step()`` within the limit's ``timeout``,
        connecting included. Anything it raises, and running out of time, raise
        ``fail(reason)``: by default a :class:`TransportError` saying the create was not sent.
        A cancellation stays one.
        """
        fail = fail or self._failed
        try:
            done = await within(step(), self.limit.timeout)
        except Exception as exc:  # redis-py's, whatever it is: see the module's docstring
            raise fail(_why(exc)) from exc
        if done is None:
            raise fail(f"no complete answer within {self.limit.timeout:g}s")
        return done

    def _failed(self, why: str) -> TransportError:
        return TransportError(
            message=f"the shared rate limit's Redis at {redacted(self.limit.url)} failed: {why}",
            endpoint="rate limit",
            sent=False,
        )

    def pause(self, seconds: float) -> None:
        """Hold back every create of every process on the account for ``seconds``."""
        loop = asyncio.get_running_loop()
        self._local_pause = max(self._local_pause, loop.time() + max(0.0, seconds))
        if self._redis is None or seconds <= 0:
            return
        shared = asyncio.ensure_future(self._share_pause(seconds))
        self._pauses.add(shared)
        shared.add_done_callback(self._pauses.discard)

    async def _share_pause(self, seconds: float) -> None:
        pause = self._scripts["pause"]
        try:
            await self._call(lambda: pause(keys=[self._pause_key], args=[int(seconds * 1000)]))
        except TransportError as exc:
            log.warning("could not share a rate-limit pause through Redis: %s", exc.message)

    async def _take(self, args: list[Any]) -> int:
        # int(): an answer that is no number (a server answering nonsense) fails in _call.
        return int(await self._scripts["acquire"](keys=[self._window, self._pause_key], args=args))

    async def _acquire(self, slot_id: str) -> None:
        limit = self.limit
        loop = asyncio.get_running_loop()
        args = [limit.requests, int(limit.per * 1000), int(limit.lease * 1000), slot_id]
        async with self._lock:
            while True:
                local = self._local_pause - loop.time()
                if local > 0:
                    await asyncio.sleep(local)
                    continue
                try:
                    answer = await self._call(lambda: self._take(args))
                except BaseException:
                    # Failed or cancelled: the script may have taken the slot before its answer
                    # was lost; give it back rather than leave it to its lease.
                    self._forget(slot_id)
                    raise
                if answer == 0:
                    return
                wait = answer / 1000 if answer > 0 else min(-answer / 1000, _MAX_NAP)
                await asyncio.sleep(wait)

    def _forget(self, slot_id: str) -> None:
        client = self._redis

        async def remove() -> None:
            with contextlib.suppress(TransportError):
                await self._call(lambda: client.zrem(self._window, slot_id))

        if client is not None:
            task = asyncio.ensure_future(remove())
            self._pauses.add(task)  # awaited by aclose, like a pause being shared
            task.add_done_callback(self._pauses.discard)

    async def _give_back(self, slot_id: str, seen: bool) -> None:
        """The slot's create ended: it counts ``per`` seconds more; or, when the create never
        got a connection (kie.ai did not see it), not at all, as with the in-process limiter
        (retries against a dead API must not queue)."""
        client, release = self._redis, self._scripts["release"]
        per = int(self.limit.per * 1000)
        try:
            if seen:
                await self._call(lambda: release(keys=[self._window], args=[per, slot_id]))
            else:
                await self._call(lambda: client.zrem(self._window, slot_id))
        except TransportError as exc:
            log.warning(
                "could not give a rate-limit slot back to Redis (it ends with its lease, "
                "in %gs): %s",
                self.limit.lease,
                exc.message,
            )

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Held]:
        """Hold one slot of the shared window for the duration of one create request; a
        create the caller marks unseen (:class:`~kie_async._transport.limiter.Held`) is taken
        out of the window instead of counting in it.

        Raises:
            ConfigurationError: Redis could not be reached when the first slot was asked for.
            TransportError: Redis failed later (the create was not sent).
        """
        if self._redis is None:
            await self.start()
        slot_id = uuid.uuid4().hex
        await self._acquire(slot_id)
        held = Held()
        try:
            yield held
        finally:
            await self._give_back(slot_id, held.seen)
