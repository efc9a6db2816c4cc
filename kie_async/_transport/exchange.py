"""The transport: the session, the one exchange, timeouts (``Timeout.total`` kept by
:mod:`~kie_async._transport.deadlines`), the answer size cap, retries of reads, creates under the
rate limiter, result-file GETs. It knows nothing about tasks.

Foreign exceptions of API calls are translated in exactly one place, :meth:`Transport._send`,
and never chained: aiohttp's exceptions (and the locals of its frames, which a traceback with
``capture_locals`` shows) hold the request's headers, so the Authorization header too. The key
lives only in a :class:`~kie_async._transport.config.Secret`, revealed inline in the frame
that sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp

from .._errors import ClientClosedError, KieError, TransportError, UnexpectedResponseError
from .._policies import RetryPolicy, Timeout
from .._protocol import envelope as proto
from .._retry import CreateFailure, Schedule, create_failure, poll_is_transient, retry_call, within
from .._text import printable
from .config import Secret, check_pool
from .deadlines import Deadlines, expired
from .http import (
    FILE_ERRORS,
    FileAnswer,
    acquire_within,
    api_transport_error,
    describe,
    file_transport_error,
    read_capped,
)
from .limiter import CreateLimiter

__all__ = ["SendWatch", "Transport"]

log = logging.getLogger("kie_async")


class SendWatch(Protocol):
    """What :meth:`Transport.create` tells about each attempt of a create (bulk runs use it)."""

    async def sending(self) -> None:
        """The attempt is about to go on the wire; raising here stops it unsent."""

    def ended(self, exc: BaseException | None) -> None:
        """The attempt is over: answered (``None``) or failed with ``exc``."""


class Transport:
    """The HTTP side of a :class:`~kie_async.KieClient`: it owns (or borrows) the session,
    holds every request to the :class:`Timeout`, the size cap and ``max_connections``.

    Raises:
        ConfigurationError: ``max_answer_size``, ``max_connections`` or ``session`` is invalid
            (see :func:`~kie_async._transport.config.check_pool`).
    """

    def __init__(
        self,
        api_key: Secret,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None,
        timeout: Timeout,
        max_answer_size: int,
        max_connections: int,
        user_agent: str | None,
        retry_policy: RetryPolicy,
        limiter: CreateLimiter,
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url
        self.retry_policy = retry_policy
        self.limiter = limiter
        self.timeout = timeout
        self._read_timeout: float = self.timeout.read
        self._connect_timeout = self.timeout.connect
        check_pool(max_answer_size, max_connections, session)
        self.max_answer_size = max_answer_size
        self.max_connections = max_connections
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._slots: asyncio.Semaphore | None = None
        self._client_timeout: aiohttp.ClientTimeout | None = None
        self._api_timeout: aiohttp.ClientTimeout | None = None
        self._deadlines = Deadlines(timeout.total)  # Timeout.total of API calls, one timer
        self._schedule: tuple[RetryPolicy, Schedule] | None = None
        # The key joins the headers only per request, so no attribute holds it in the clear
        # (an error reporter dumping vars() shows the Secret's '***').
        self.user_agent = user_agent or proto.USER_AGENT

    def __repr__(self) -> str:
        return f"<Transport {printable(repr(self.base_url))}, api_key='***'>"

    async def start(self) -> None:
        """Open the session; connect a shared (Redis) limiter, so an unreachable Redis is an
        error now, not mid-run."""
        self.ensure_session()
        try:
            await self.limiter.start()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Close the session if this transport created it. Safe to call more than once."""
        self._closed = True
        self._deadlines.close()
        await self.limiter.aclose()
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()

    def ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("this KieClient is closed; create a new one")
        if self._session is not None and self._session.closed:
            # Only a borrowed session can be closed here (aclose drops an owned one); aiohttp
            # would raise a bare RuntimeError for it.
            raise ClientClosedError("the aiohttp session this KieClient borrowed was closed")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_connections)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                timeout=self._timeouts(),
            )
        return self._session

    def _timeouts(self) -> aiohttp.ClientTimeout:
        # The session's default only (API calls pass _api_timeouts(), result files their own);
        # our semaphore keeps requests out of aiohttp's pool queue. Built once: immutable.
        if self._client_timeout is None:
            self._client_timeout = aiohttp.ClientTimeout(
                total=None,
                connect=None,
                sock_connect=self._connect_timeout,
                sock_read=self._read_timeout,
            )
        return self._client_timeout

    def _api_timeouts(self) -> aiohttp.ClientTimeout:
        # Timeout.total is self._deadlines' (see deadlines), not aiohttp's: a second timer per
        # request. No rounding: aiohttp would round limits of 5 s and more up to a whole second.
        if self._api_timeout is None:
            budget = self.timeout
            self._api_timeout = aiohttp.ClientTimeout(
                total=None,
                connect=budget.connect_budget,
                sock_connect=budget.connect_budget,
                sock_read=budget.read,
                ceil_threshold=math.inf,
            )
        return self._api_timeout

    # -- one HTTP exchange: the only place aiohttp exceptions are seen -------------------------

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        before_send: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request within the client's :class:`Timeout` and answer size cap: the status,
        the headers the protocol reads, and the body with a reflected key redacted.

        Failures are raised here, outside any ``except`` block, so that they carry no
        ``__context__``, and from a frame whose locals hold no headers and no answer."""
        session = self.ensure_session()
        slots = self._slots
        assert slots is not None
        debug = log.isEnabledFor(logging.DEBUG)
        pool = self.timeout.pool
        if pool is None or not slots.locked():
            await slots.acquire()
        elif not await acquire_within(slots, pool):
            raise TransportError(
                message=f"no free connection within {pool:g}s "
                f"({self.max_connections} requests in flight; Timeout.pool)",
                endpoint=path,
                sent=False,
                url=self.base_url + path,
            )
        try:
            if before_send is not None:
                await before_send()  # a connection is ours: the request goes out next
            started = time.monotonic()
            if debug:
                where, query = self.base_url + path, dict(params or {})
                log.debug("-> %s %s %s Authorization: Bearer ***", method, where, query)
            answer = await self._send(session, method, path, json, params)
        finally:
            slots.release()
        if isinstance(answer, KieError):
            raise answer
        status, headers, body = answer
        if debug:
            log.debug(
                "<- %s %s HTTP %d, %d bytes in %.0f ms",
                method,
                self.base_url + path,
                status,
                len(body),
                (time.monotonic() - started) * 1000,
            )
        return status, headers, body

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        json: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
    ) -> tuple[int, Mapping[str, str], bytes] | KieError:
        """Send one request and read its answer; a failure is *returned*, translated, for
        :meth:`_exchange` to raise (see there). The Authorization header is built inline, so
        no local of this frame holds the key."""
        refused: str | None = None
        call = self._deadlines.enter()  # Timeout.total: from here to the body's last byte
        try:
            async with session.request(
                method,
                self.base_url + path,
                json=json,
                params=params,
                headers=proto.auth_headers(self._api_key.reveal(), self.user_agent),
                timeout=self._api_timeouts(),
                raise_for_status=False,
                allow_redirects=False,
                auto_decompress=False,
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                body = await read_capped(response, self.max_answer_size)
                if isinstance(body, str):
                    refused = body
                    response.close()  # do not drain the rest: drop the connection
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            return self._translate(exc, path)
        except asyncio.CancelledError:
            if not expired(call):
                raise
            return self._translate(asyncio.TimeoutError(), path)
        except Exception:
            if not self._closed:
                raise
            # aclose() closed the session under this call; older aiohttp releases then fail
            # inside their own code (an AssertionError, an AttributeError).
            return ClientClosedError("this KieClient was closed while the call was in flight")
        finally:
            self._deadlines.leave(call)
        if refused is not None:
            return UnexpectedResponseError(refused, status, path, url=self.base_url + path)
        assert isinstance(body, bytes)
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        return status, headers, self._api_key.redact_bytes(body)

    def _translate(self, exc: BaseException, path: str) -> TransportError:
        """The :class:`TransportError` for an aiohttp failure, described in words (the key
        redacted, should the server have echoed it into a status line) and never chained."""
        what = self._api_key.redact(describe(exc))
        return api_transport_error(exc, path, what, self.timeout, self.base_url + path)

    @contextlib.asynccontextmanager
    async def open_file(self, url: str, read_timeout: float) -> AsyncIterator[FileAnswer]:
        """GET a result file, one hop: a plain GET with the User-Agent and never the API key
        (result files live on other hosts), no compression (so ``Content-Length`` is the size
        on disk), and redirects not followed (the caller checks each hop). Bounded by the
        client's :class:`DownloadPolicy`: the connection and headers within ``connect_timeout``
        plus ``read_timeout``, and each read of the body within ``read_timeout``. aiohttp
        failures become :class:`TransportError` here and in :meth:`FileAnswer.chunks`, as in
        :meth:`_exchange`."""
        session = self.ensure_session()
        assert self._slots is not None
        where = url.split("?", 1)[0]
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "identity"}
        timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=self._connect_timeout, sock_read=read_timeout
        )

        async def get() -> aiohttp.ClientResponse:
            return await session.get(
                url, headers=headers, timeout=timeout, raise_for_status=False, allow_redirects=False
            )

        # A per-read timeout never trips on headers trickled a byte at a time: bound them all.
        head_timeout = (self._connect_timeout or 0) + read_timeout
        async with self._slots:
            log.debug("-> GET %s (result file)", where)
            try:
                response = await within(get(), head_timeout)
            except FILE_ERRORS as exc:
                raise file_transport_error(exc, where, read_timeout) from exc
            if response is None:
                raise TransportError(
                    message=f"no complete answer headers within {head_timeout:g}s", endpoint=where
                )
            try:
                yield FileAnswer(response, where, read_timeout)
            finally:
                response.release()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        before_send: Callable[[], Awaitable[None]] | None = None,
    ) -> Any:
        """One request, deciphered: the envelope's ``data`` or a :class:`KieError`.
        ``before_send`` is awaited once a connection slot is held, right before sending."""
        status, headers, body = await self._exchange(
            method, path, json=json, params=params, before_send=before_send
        )
        return proto.decipher(status, headers, body, endpoint=path, url=self.base_url + path)

    def retry_schedule(self) -> Schedule:
        """The retry policy's delays, built once per policy: most calls are never retried."""
        p = self.retry_policy
        if self._schedule is None or self._schedule[0] is not p:
            delays = Schedule(p.initial_delay, p.factor, p.max_delay, p.jitter, p.max_retry_after)
            self._schedule = (p, delays)
        return self._schedule[1]

    async def read(self, method: str, path: str, **kwargs: Any) -> Any:
        """A read-only call, retried on transient failures."""
        return await retry_call(
            lambda: self.call(method, path, **kwargs),
            schedule=self.retry_schedule(),
            max_retries=self.retry_policy.max_retries,
            should_retry=poll_is_transient,
            what=f"{method} {path}",
            max_connect_retries=self.retry_policy.max_connect_retries,
        )

    async def _limited_create(
        self,
        path: str,
        body: Mapping[str, Any],
        sending: Callable[[], Awaitable[None]] | None,
    ) -> Any:
        """One create within a slot of the limiter. The slot takes no share of the window when
        the create certainly never reached kie.ai: it failed before ``sending`` let it go (a
        stopped run, a cancellation, no free connection), or it could not connect."""
        passed = False

        async def gate() -> None:
            nonlocal passed
            if sending is not None:
                await sending()
            passed = True

        async with self.limiter.slot() as held:
            try:
                return await self.call("POST", path, json=body, before_send=gate)
            except BaseException as exc:
                held.seen = passed and not (isinstance(exc, TransportError) and not exc.sent)
                raise

    async def create(
        self, path: str, body: Mapping[str, Any], watch: SendWatch | None, what: object
    ) -> str:
        """POST a create and return the new task's id: held to the rate limit, retried only
        when kie.ai certainly created nothing (:func:`create_failure` says ``RETRY``; a 429
        also pauses the limiter), telling ``watch`` when each attempt is about to go on the
        wire and when it ended. Any other failure is raised as it is."""
        sending = watch.sending if watch is not None else None

        async def attempt() -> str:
            try:
                if self.limiter.open():
                    # No limit and no pause: nothing to hold, so skip the slot's bookkeeping.
                    data = await self.call("POST", path, json=body, before_send=sending)
                else:
                    data = await self._limited_create(path, body, sending)
                task_id = proto.created_task_id(data, path, self.base_url + path)
            except BaseException as exc:
                if watch is not None:
                    watch.ended(exc)
                raise
            if watch is not None:
                watch.ended(None)
            return task_id

        def refused(exc: KieError, wait: float) -> None:
            if getattr(exc, "code", None) == 429:
                self.limiter.pause(wait)

        return await retry_call(
            attempt,
            schedule=self.retry_schedule(),
            max_retries=self.retry_policy.max_retries,
            should_retry=lambda exc: create_failure(exc) is CreateFailure.RETRY,
            on_retry=refused,
            what=what,
            max_connect_retries=self.retry_policy.max_connect_retries,
        )
