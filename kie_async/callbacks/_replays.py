"""Which callback deliveries were seen already, so a replay within the window is dropped: the
:class:`ReplayStore` protocol, kept in this process (:class:`MemoryReplayStore`) or in a Redis
that every replica shares (:class:`RedisReplayStore`).

A key is a delivery's :attr:`~kie_async.callbacks.CallbackEvent.replay_key` (the task id and the
signed timestamp), kept as long as that timestamp is inside the freshness window.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from typing import Any, Protocol, runtime_checkable

from .._errors import ConfigurationError, TransportError
from .._text import printable, redacted

__all__ = ["MemoryReplayStore", "RedisReplayStore", "ReplayStore"]


@runtime_checkable
class ReplayStore(Protocol):
    """Where a receiver remembers the deliveries it accepted, for ``ttl`` seconds each.

    Implement it to keep them elsewhere (a database table with a unique key, say).
    """

    async def first_seen(self, key: str, ttl: float) -> bool:
        """Remember ``key`` for ``ttl`` seconds; ``True`` when it was not remembered yet (the
        delivery is new), ``False`` for a replay. Atomic: of two concurrent calls with one key,
        one gets ``True``."""
        ...

    async def forget(self, key: str) -> None:
        """Drop ``key`` (a delivery the app failed to handle, so kie.ai's retry is new)."""
        ...


class MemoryReplayStore:
    """A :class:`ReplayStore` in this process: enough for one replica.

    Args:
        max_keys: the most keys kept; past it the oldest are forgotten first.

    Example::

        receiver = CallbackReceiver(key=webhook_key, replays=MemoryReplayStore())
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ConfigurationError("max_keys", f"must be an int >= 1, got {max_keys!r}")
        self.max_keys = max_keys
        self._until: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    async def first_seen(self, key: str, ttl: float) -> bool:
        """See :meth:`ReplayStore.first_seen`."""
        now = time.monotonic()
        until = self._until.get(key)
        if until is not None and until > now:
            return False
        self._until.pop(key, None)
        self._until[key] = now + max(0.0, ttl)
        while self._until:
            oldest, expires = next(iter(self._until.items()))
            if expires > now and len(self._until) <= self.max_keys:
                break
            del self._until[oldest]
        return True

    async def forget(self, key: str) -> None:
        """See :meth:`ReplayStore.forget`."""
        self._until.pop(key, None)


class RedisReplayStore:
    """A :class:`ReplayStore` in Redis, shared by every replica of a receiver: a replayed
    delivery is dropped whichever replica it reaches. Needs redis-py (``pip install
    'kie-async[redis]'``), like :class:`~kie_async.RedisRateLimit`.

    Each key is one ``SET <prefix>:seen:<key> 1 NX PX <ttl>``, atomic on the Redis server, so
    two replicas given the same delivery at once accept it once. It connects on first use;
    :meth:`aclose` closes it.

    Args:
        url: the Redis URL, e.g. ``"redis://localhost:6379/0"`` (``rediss://`` for TLS).
        prefix: the start of every Redis key.
        timeout: seconds to wait for each answer of Redis (and for a free connection).
        max_connections: the most connections to Redis at once; more deliveries at once
            wait for one.

    Raises:
        ConfigurationError: a setting is invalid; redis-py is missing or Redis cannot be
            reached (on first use).

    Example::

        replays = RedisReplayStore("redis://cache:6379/0")
        receiver = CallbackReceiver(key=webhook_key, replays=replays)
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "kie-async",
        timeout: float = 10.0,
        max_connections: int = 32,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                "replays", f"{redacted(str(url))!r} is not a redis://, rediss:// or unix:// URL"
            )
        if not isinstance(prefix, str) or not prefix:
            raise ConfigurationError("replays", "prefix must be a non-empty string")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ConfigurationError("replays", f"timeout must be a number, got {timeout!r}")
        if not 0 < timeout < math.inf:
            raise ConfigurationError("replays", f"timeout must be > 0, got {timeout!r}")
        self.url = url
        self.prefix = prefix
        self.timeout = float(timeout)
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise ConfigurationError("replays", "max_connections must be an int")
        if max_connections < 1:
            raise ConfigurationError("replays", "max_connections must be >= 1")
        self.max_connections = max_connections
        self._redis: Any = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"RedisReplayStore({redacted(self.url)!r}, prefix={self.prefix!r})"

    async def _client(self) -> Any:
        async with self._lock:
            if self._redis is not None:
                return self._redis
            try:
                import redis.asyncio as aioredis
            except ImportError:
                raise ConfigurationError(
                    "replays",
                    "RedisReplayStore needs redis-py (the redis extra, or pip install redis)",
                ) from None
            try:
                # A blocking pool: a burst of deliveries waits (``timeout`` at most) for one of
                # ``max_connections`` rather than failing at once with "Too many connections".
                pool = aioredis.BlockingConnectionPool.from_url(
                    self.url,
                    max_connections=self.max_connections,
                    timeout=self.timeout,
                    socket_connect_timeout=self.timeout,
                    socket_timeout=self.timeout,
                )
                client = aioredis.Redis.from_pool(pool)
            except Exception as exc:  # redis-py's, whatever it is (AttributeError included)
                raise self._unreachable(exc) from None
            try:
                pong = await client.ping()
            except Exception as exc:  # redis-py 8 raises AttributeError on a bad HELLO answer
                await client.aclose()
                raise self._unreachable(exc) from None
            if pong is not True:  # redis-py 5-7 read any answer to PING as False but "PONG"
                await client.aclose()
                raise self._unreachable(f"PING was answered {pong!r}, not PONG")
            self._redis = client
            return client

    def _unreachable(self, exc: BaseException | str) -> ConfigurationError:
        why = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else exc
        return ConfigurationError(
            "replays",
            f"cannot use the replay store's Redis at {redacted(self.url)}: {printable(why)}",
        )

    def _failed(self, exc: BaseException) -> TransportError:
        return TransportError(
            message=f"the replay store's Redis at {redacted(self.url)} failed: "
            f"{type(exc).__name__}: {printable(exc)}",
            endpoint="replay store",
            sent=False,
        )

    async def first_seen(self, key: str, ttl: float) -> bool:
        """See :meth:`ReplayStore.first_seen`.

        Raises:
            ConfigurationError: Redis could not be reached on first use.
            TransportError: Redis failed (a receiver answers 503, so kie.ai retries).
        """
        client = await self._client()
        try:
            stored = await client.set(
                f"{self.prefix}:seen:{key}", b"1", nx=True, px=max(1, math.ceil(ttl * 1000))
            )
        except Exception as exc:  # redis-py's, whatever it is
            raise self._failed(exc) from None
        return bool(stored)

    async def forget(self, key: str) -> None:
        """See :meth:`ReplayStore.forget`.

        Raises:
            TransportError: Redis failed.
        """
        client = await self._client()
        try:
            await client.delete(f"{self.prefix}:seen:{key}")
        except Exception as exc:  # redis-py's, whatever it is
            raise self._failed(exc) from None

    async def aclose(self) -> None:
        """Close the connections to Redis. Safe to call twice."""
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()
