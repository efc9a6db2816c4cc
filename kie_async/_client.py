"""KieClient: owns (or borrows) the aiohttp session and glues the pure protocol to I/O.

Foreign exceptions are translated in exactly one place, :meth:`KieClient._exchange`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp
import attrs

from . import _protocol as proto
from ._download import DownloadPolicy
from ._errors import (
    ClientClosedError,
    ConfigurationError,
    KieError,
    SubmissionUncertainError,
    TransportError,
    ValidationError,
)
from ._handle import TaskHandle
from ._models import ExtendMode, ExtendRequest, TaskRecord, check_http_url, check_task_id
from ._polling import (
    CreateFailure,
    PollPolicy,
    RetryPolicy,
    create_failure,
    poll_is_transient,
)
from ._ratelimit import Limiter, RateLimit
from ._redis_limit import RedisLimiter, RedisRateLimit
from ._requests import (
    REQUEST_TYPES,
    GenerateRequest,
    TaskRequest,
    UpscaleRequest,
    VaryRequest,
    image_action,
)
from ._retry import Schedule, retry_call, within
from ._wire import parse_record

if TYPE_CHECKING:
    from ._bulk import BulkRun, Progress
    from .callbacks import CallbackReceiver

__all__ = ["KieClient"]

log = logging.getLogger("kie_async")

_DEFAULT_RATE_LIMIT = RateLimit()

#: The default safety poll of a client wired to a callback receiver: the callback normally ends
#: the wait, so polls are rare (after 2 minutes, then 3, then every 5) and only catch lost ones.
SAFETY_POLL = PollPolicy(interval=120.0, factor=1.5, max_interval=300.0)


class SendWatch(Protocol):
    """What :meth:`KieClient._submit` tells about each attempt of a create (bulk runs use it)."""

    async def sending(self) -> None:
        """The attempt is about to go on the wire; raising here stops it unsent."""

    def ended(self, exc: BaseException | None) -> None:
        """The attempt is over: answered (``None``) or failed with ``exc``."""


class _Unset:
    """The default of ``rate_limit`` when none is given; its repr is the limit it stands for,
    so signatures (``help()``, the API reference) show the real default."""

    def __repr__(self) -> str:
        return repr(_DEFAULT_RATE_LIMIT)


_UNSET: Any = _Unset()


class _Secret:
    """A string that never shows itself in a repr, str or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base_url(base_url: str, allow_insecure_http: bool) -> str:
    try:
        parts = urlsplit(base_url)
        host = parts.hostname
    except ValueError as exc:
        raise ConfigurationError("base_url", f"{base_url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigurationError("base_url", f"{base_url!r} must be an http(s) URL with a host")
    if parts.query or parts.fragment:
        raise ConfigurationError("base_url", "must not carry a query or fragment")
    if parts.scheme == "http" and not _is_loopback(host) and not allow_insecure_http:
        raise ConfigurationError(
            "base_url",
            f"{base_url!r} would send your API key in clear text; use https, a loopback "
            "address, or pass allow_insecure_http=True if you really mean it",
        )
    return base_url.rstrip("/")


def _resolve_key(api_key: str | None) -> _Secret:
    key = api_key if api_key is not None else os.environ.get("KIE_API_KEY")
    if key is not None and not isinstance(key, str):
        raise ConfigurationError("api_key", f"must be a string, not {type(key).__name__}")
    if key is None or not key.strip():
        raise ConfigurationError(
            "api_key", "no API key: pass KieClient(api_key=...) or set KIE_API_KEY"
        )
    key = key.strip()
    if any(c.isspace() or ord(c) < 32 for c in key):
        raise ConfigurationError("api_key", "contains whitespace or control characters")
    return _Secret(key)


def _positive(name: str, value: float | None, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(name, f"must be a number > 0, got {value!r}")
    if value == float("inf"):
        # aiohttp cannot schedule an infinite timer: every request would raise OverflowError.
        raise ConfigurationError(name, "must be finite (a stalled server would hang the call)")
    return float(value)


_FILE_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def _file_transport_error(
    exc: BaseException, where: str, read_timeout: float | None
) -> TransportError:
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return TransportError(message=f"could not connect: {exc}", endpoint=where, sent=False)
    if isinstance(exc, asyncio.TimeoutError):
        return TransportError(message=f"no data within {read_timeout or 0:g}s", endpoint=where)
    return TransportError(message=f"{type(exc).__name__}: {exc}", endpoint=where)


class _FileAnswer:
    """The answer to a result-file GET: status, headers, and the body in bounded chunks."""

    __slots__ = ("_read_timeout", "_response", "_where", "headers", "status")

    def __init__(
        self, response: aiohttp.ClientResponse, where: str, read_timeout: float | None
    ) -> None:
        self._response = response
        self._where = where
        self._read_timeout = read_timeout
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    @property
    def content_length(self) -> int | None:
        """The announced body size, when it is the size of the bytes we will get."""
        if self.headers.get("Content-Encoding", "identity").lower() != "identity":
            return None
        return self._response.content_length

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        """The body, at most ``size`` bytes at a time, as it arrives."""
        stream = self._response.content
        while True:
            try:
                chunk = await stream.read(size)
            except _FILE_ERRORS as exc:
                raise _file_transport_error(exc, self._where, self._read_timeout) from exc
            if not chunk:
                return
            yield chunk


# Self for subclasses (typing.Self is 3.11+, and typing_extensions is no dependency).
_KieClientT = TypeVar("_KieClientT", bound="KieClient")


class KieClient:
    """An async client for kie.ai's Midjourney API: generate, upscale, vary and extend.

    Use it as an async context manager (or call :meth:`aclose`). It creates its own
    ``aiohttp.ClientSession`` on first use, or borrows ``session`` (and then never closes it).

    Args:
        api_key: your kie.ai API key; defaults to the ``KIE_API_KEY`` environment variable.
        base_url: the API root; defaults to ``KIE_BASE_URL`` or ``https://api.kie.ai``. Plain
            ``http://`` is refused unless it points to loopback or ``allow_insecure_http`` is set.
        session: an ``aiohttp.ClientSession`` to borrow instead of creating one.
        poll: the default :class:`PollPolicy` for :meth:`TaskHandle.wait`.
        retry: the :class:`RetryPolicy` for single requests.
        max_retries: shorthand to override ``retry.max_retries`` (``0`` disables retries).
        rate_limit: the client-side limit on creates, shared by every submission of this client
            (default kie's 20 per 10 s); a :class:`RedisRateLimit` shares it with every process
            of the account; ``None`` switches it off. Unset, the ``KIE_RATE_LIMIT_REDIS``
            environment variable (a Redis URL) gives ``RedisRateLimit(url)``.
        timeout: seconds to wait for each read of an answer, so a stalled server cannot hang a call.
        connect_timeout: seconds to establish a connection.
        max_connections: the size of the connection pool; requests beyond it wait their turn
            without counting against their timeouts.
        allow_insecure_http: allow a plain ``http://`` base URL that is not loopback.
        user_agent: the ``User-Agent`` header (default ``kie-async/<version>``).
        callback_url: the public URL of your callback receiver, sent as ``callBackUrl`` with
            every create that does not name its own (a request's ``callback_url`` wins).
        callbacks: a :class:`~kie_async.callbacks.CallbackReceiver` that receives those
            callbacks in this process: waits then finish as soon as a task's callback arrives
            (confirmed by one ``record-info`` call), while a slow safety poll runs in case it
            never does. Needs ``callback_url``. See :meth:`attach_callbacks`.
        safety_poll: the :class:`PollPolicy` of that safety poll (default: a first poll of a
            task created here after 2 minutes, then after 3, then every 5, within this
            client's poll ``timeout``).
        download: the :class:`DownloadPolicy` bounding result-file downloads (the time to
            the headers, each read, a minimum speed, redirects).

    Raises:
        ConfigurationError: no API key, or an invalid setting.

    Example::

        async with KieClient() as kie:
            handle = await kie.extend_video("ee603959", index=0, prompt="Into a nebula")
            record = await handle
            print(record.result_urls)
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        poll: PollPolicy | None = None,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        rate_limit: RateLimit | RedisRateLimit | None = _UNSET,
        timeout: float = 60.0,
        connect_timeout: float = 15.0,
        max_connections: int = 100,
        allow_insecure_http: bool = False,
        user_agent: str | None = None,
        callback_url: str | None = None,
        callbacks: CallbackReceiver | None = None,
        safety_poll: PollPolicy | None = None,
        download: DownloadPolicy | None = None,
    ) -> None:
        self._api_key = _resolve_key(api_key)
        url = base_url or os.environ.get("KIE_BASE_URL") or proto.DEFAULT_BASE_URL
        self._base_url = _check_base_url(url, allow_insecure_http)
        if poll is not None and not isinstance(poll, PollPolicy):
            raise ConfigurationError("poll", "must be a PollPolicy")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError("retry", "must be a RetryPolicy")
        self.poll_policy: PollPolicy = poll or PollPolicy()
        policy = retry or RetryPolicy()
        if max_retries is not None:
            policy = RetryPolicy(
                max_retries=max_retries,
                initial_delay=policy.initial_delay,
                factor=policy.factor,
                max_delay=policy.max_delay,
                jitter=policy.jitter,
                max_retry_after=policy.max_retry_after,
            )
        self.retry_policy: RetryPolicy = policy
        if rate_limit is _UNSET:
            shared = os.environ.get("KIE_RATE_LIMIT_REDIS", "").strip()
            rate_limit = RedisRateLimit(shared) if shared else _DEFAULT_RATE_LIMIT
        self._limiter: Limiter | RedisLimiter
        if isinstance(rate_limit, RedisRateLimit):
            self._limiter = rate_limit._limiter(self._api_key.reveal())
        elif rate_limit is None or isinstance(rate_limit, RateLimit):
            self._limiter = Limiter(rate_limit)
        else:
            raise ConfigurationError("rate_limit", "must be a RateLimit, a RedisRateLimit or None")
        self._read_timeout: float = _positive("timeout", timeout) or 0.0
        self._connect_timeout = _positive("connect_timeout", connect_timeout)
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or (max_connections < 1)
        ):
            raise ConfigurationError("max_connections", "must be an int >= 1")
        self._max_connections = max_connections
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise ConfigurationError("session", "must be an aiohttp.ClientSession")
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._slots: asyncio.Semaphore | None = None
        self._client_timeout: aiohttp.ClientTimeout | None = None
        # The key joins the headers only per request, so no attribute of the client holds it
        # in the clear (an error reporter dumping vars(client) shows the _Secret's '***').
        self._user_agent = user_agent or proto.USER_AGENT
        self._callback_url: str | None = None
        self._callbacks: CallbackReceiver | None = None
        self.safety_poll: PollPolicy = attrs.evolve(SAFETY_POLL, timeout=self.poll_policy.timeout)
        if download is not None and not isinstance(download, DownloadPolicy):
            raise ConfigurationError("download", "must be a DownloadPolicy")
        #: The :class:`DownloadPolicy` of :meth:`download` and :meth:`download_many`.
        self.download_policy: DownloadPolicy = download or DownloadPolicy()
        if callback_url is not None or callbacks is not None or safety_poll is not None:
            self.attach_callbacks(callbacks, callback_url, safety_poll=safety_poll)

    # -- lifecycle ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"KieClient(base_url={self._base_url!r}, api_key='***')"

    @property
    def base_url(self) -> str:
        """The API root this client talks to."""
        return self._base_url

    @property
    def rate_limit(self) -> RateLimit | RedisRateLimit | None:
        """The client-side limit on creates, or ``None`` when switched off."""
        return self._limiter.limit

    @property
    def read_timeout(self) -> float:
        """Seconds a request waits for each read of an answer (the ``timeout`` setting)."""
        return self._read_timeout

    @property
    def max_connections(self) -> int:
        """How many requests this client has in flight at most (the connection pool's size)."""
        return self._max_connections

    @property
    def callback_url(self) -> str | None:
        """The ``callBackUrl`` sent with creates that do not name their own, if any."""
        return self._callback_url

    @property
    def callbacks(self) -> CallbackReceiver | None:
        """The callback receiver that waits listen to, if one is attached."""
        return self._callbacks

    def attach_callbacks(
        self,
        receiver: CallbackReceiver | None,
        callback_url: str | None,
        *,
        safety_poll: PollPolicy | None = None,
    ) -> None:
        """Wire this client to a callback receiver (hybrid waiting), or detach it with
        ``attach_callbacks(None, None)``.

        From now on creates carry ``callBackUrl=callback_url`` unless their request names its
        own URL, and :meth:`TaskHandle.wait` (so also :meth:`extend_many`) races a slow safety
        poll against the receiver: when the task's callback arrives, one ``record-info`` call
        confirms it (the signature does not cover the body) and the wait ends; if that record
        is not final yet, polling resumes. Without a receiver, ``callback_url`` alone only sets
        ``callBackUrl`` (for a receiver in another process) and waits poll as usual.

        Args:
            receiver: the :class:`~kie_async.callbacks.CallbackReceiver`, or ``None``.
            callback_url: the receiver's public http(s) URL, as kie.ai must reach it.
            safety_poll: the :class:`PollPolicy` used while a receiver is attached, unless a
                wait passes its own ``poll``.

        Raises:
            ConfigurationError: a receiver without a URL, a URL that is not http(s), or a
                wrong type.

        Example::

            receiver = CallbackReceiver(key=webhook_key)
            await receiver.start(port=8080)
            kie.attach_callbacks(receiver, "https://hooks.example.com/kie")
        """
        from .callbacks import CallbackReceiver

        if receiver is not None and not isinstance(receiver, CallbackReceiver):
            raise ConfigurationError("callbacks", "must be a CallbackReceiver or None")
        if receiver is not None and callback_url is None:
            raise ConfigurationError(
                "callback_url",
                "a callback receiver needs the public URL kie.ai should post to",
            )
        if callback_url is not None:
            try:
                check_http_url(callback_url, "callback_url")
            except ValidationError as exc:
                raise ConfigurationError("callback_url", exc.reason) from None
        if safety_poll is not None:
            if not isinstance(safety_poll, PollPolicy):
                raise ConfigurationError("safety_poll", "must be a PollPolicy")
            self.safety_poll = safety_poll
        self._callbacks = receiver
        self._callback_url = callback_url

    async def __aenter__(self: _KieClientT) -> _KieClientT:
        self._ensure_session()
        if isinstance(self._limiter, RedisLimiter):
            try:
                await self._limiter.start()  # Redis unreachable: an error now, not mid-run
            except BaseException:
                await self.aclose()
                raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session if this client created it. Safe to call more than once."""
        self._closed = True
        if isinstance(self._limiter, RedisLimiter):
            await self._limiter.aclose()
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("this KieClient is closed; create a new one")
        if self._session is not None and self._session.closed:
            # Only a borrowed session can be closed here (aclose drops an owned one); aiohttp
            # would raise a bare RuntimeError for it.
            raise ClientClosedError("the aiohttp session this KieClient borrowed was closed")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                timeout=self._timeouts(),
            )
        return self._session

    def _timeouts(self) -> aiohttp.ClientTimeout:
        # Waiting for a pooled connection is not bounded here: our own semaphore keeps requests
        # out of aiohttp's pool queue, so only connecting and reading are timed. Built once:
        # it is immutable, and every request passes it (a borrowed session has its own).
        if self._client_timeout is None:
            self._client_timeout = aiohttp.ClientTimeout(
                total=None,
                connect=None,
                sock_connect=self._connect_timeout,
                sock_read=self._read_timeout,
            )
        return self._client_timeout

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
        session = self._ensure_session()
        assert self._slots is not None
        url = self._base_url + path
        debug = log.isEnabledFor(logging.DEBUG)
        async with self._slots:
            if before_send is not None:
                await before_send()  # a connection is ours: the request goes out next
            started = time.monotonic()
            if debug:
                log.debug("-> %s %s %s Authorization: Bearer ***", method, path, dict(params or {}))
            try:
                async with session.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    headers=proto.auth_headers(self._api_key.reveal(), self._user_agent),
                    timeout=self._timeouts(),
                    raise_for_status=False,
                    allow_redirects=False,
                ) as response:
                    body = await response.read()
                    status, headers = response.status, response.headers
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                raise TransportError(
                    message=f"could not connect: {exc}", endpoint=path, sent=False
                ) from exc
            except asyncio.TimeoutError as exc:
                raise TransportError(
                    message=f"no answer within {self._read_timeout:g}s", endpoint=path
                ) from exc
            except aiohttp.ClientError as exc:
                raise TransportError(message=f"{type(exc).__name__}: {exc}", endpoint=path) from exc
            except OSError as exc:
                raise TransportError(message=f"{type(exc).__name__}: {exc}", endpoint=path) from exc
        if debug:
            log.debug(
                "<- %s %s HTTP %d, %d bytes in %.0f ms",
                method,
                path,
                status,
                len(body),
                (time.monotonic() - started) * 1000,
            )
        return status, headers, body

    @contextlib.asynccontextmanager
    async def _open_file(self, url: str) -> AsyncIterator[_FileAnswer]:
        """GET a result file, one hop: a plain GET with the User-Agent and never the API key
        (result files live on other hosts), no compression (so ``Content-Length`` is the size
        on disk), and redirects not followed (the caller checks each hop). Bounded by
        :attr:`download_policy`: the connection and headers within ``connect_timeout`` plus its
        ``read_timeout``, and each read of the body within its ``read_timeout``. aiohttp
        failures become :class:`TransportError` here and in :meth:`_FileAnswer.chunks`, as in
        :meth:`_exchange`."""
        session = self._ensure_session()
        assert self._slots is not None
        where = url.split("?", 1)[0]
        headers = {"User-Agent": self._user_agent, "Accept-Encoding": "identity"}
        read_timeout = self.download_policy.read_timeout
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
            except _FILE_ERRORS as exc:
                raise _file_transport_error(exc, where, read_timeout) from exc
            if response is None:
                raise TransportError(
                    message=f"no complete answer headers within {head_timeout:g}s", endpoint=where
                )
            try:
                yield _FileAnswer(response, where, read_timeout)
            finally:
                response.release()

    async def _call(
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
        return proto.decipher(status, headers, body, endpoint=path)

    def _retry_schedule(self) -> Schedule:
        p = self.retry_policy
        return Schedule(p.initial_delay, p.factor, p.max_delay, p.jitter, p.max_retry_after)

    async def _read(self, method: str, path: str, **kwargs: Any) -> Any:
        """A read-only call, retried on transient failures."""
        return await retry_call(
            lambda: self._call(method, path, **kwargs),
            schedule=self._retry_schedule(),
            max_retries=self.retry_policy.max_retries,
            should_retry=poll_is_transient,
            what=f"{method} {path}",
        )

    # -- tasks ---------------------------------------------------------------------------------

    async def fetch_record(self, task_id: str) -> TaskRecord:
        """One ``record-info`` call, without retries (the waiting loop retries by itself)."""
        data = await self._call("GET", proto.RECORD_PATH, params={"taskId": task_id})
        return parse_record(data, task_id=task_id, endpoint=proto.RECORD_PATH)

    async def get_task(self, task_id: str) -> TaskRecord:
        """Fetch a task's current :class:`TaskRecord` (transient failures are retried).

        Raises:
            ValidationError: ``task_id`` is empty or malformed.
            TaskNotFoundError: kie.ai knows no such task.
            APIError, TransportError, UnexpectedResponseError: the call failed.
        """
        check_task_id(task_id)
        data = await self._read("GET", proto.RECORD_PATH, params={"taskId": task_id})
        return parse_record(data, task_id=task_id, endpoint=proto.RECORD_PATH)

    def task(self, task_id: str) -> TaskHandle:
        """A :class:`TaskHandle` for a task submitted earlier, even by another process.

        No request is made. Use it to re-attach after a restart::

            record = await kie.task("a1b2c3").wait()

        Raises:
            ValidationError: ``task_id`` is empty or malformed.
        """
        check_task_id(task_id)
        return TaskHandle(self, task_id)

    async def submit(self, request: TaskRequest) -> TaskHandle:
        """Submit one request of any kind (:class:`GenerateRequest`, :class:`UpscaleRequest`,
        :class:`VaryRequest`, :class:`ExtendRequest`) and return the new task's
        :class:`TaskHandle`.

        The create is held to the client's rate limit. It is retried only when kie.ai certainly
        created nothing (429, 455, or no connection); see the reliability docs.

        Raises:
            SubmissionUncertainError: the reply was lost after the request was sent: a task may
                exist. It is never retried by the SDK.
            APIError: kie.ai refused the request (e.g. :class:`InsufficientCreditsError`).
            TransportError: no connection could be made, even after retries.
        """
        return await self._submit(request)

    async def _submit(self, request: TaskRequest, watch: SendWatch | None = None) -> TaskHandle:
        """:meth:`submit`, telling ``watch`` when each attempt is about to go on the wire
        (past the rate limiter, holding a connection slot) and when it ended: bulk journals
        record intent there, and a stopping run lets a create on the wire finish."""
        if not isinstance(request, REQUEST_TYPES):
            kinds = ", ".join(kind.__name__ for kind in REQUEST_TYPES)
            raise TypeError(f"submit() takes one of {kinds}, not {type(request).__name__}")
        path = request.endpoint
        body = request.body()
        if self._callback_url is not None and "callBackUrl" not in body:
            body["callBackUrl"] = self._callback_url
        sending = watch.sending if watch is not None else None

        async def attempt() -> str:
            try:
                if self._limiter.open():
                    # No limit and no pause: nothing to hold, so skip the slot's bookkeeping.
                    data = await self._call("POST", path, json=body, before_send=sending)
                else:
                    async with self._limiter.slot():
                        data = await self._call("POST", path, json=body, before_send=sending)
                task_id = proto.created_task_id(data, path)
            except BaseException as exc:
                if watch is not None:
                    watch.ended(exc)
                raise
            if watch is not None:
                watch.ended(None)
            return task_id

        def refused(exc: KieError, wait: float) -> None:
            if getattr(exc, "code", None) == 429:
                self._limiter.pause(wait)

        try:
            task_id = await retry_call(
                attempt,
                schedule=self._retry_schedule(),
                max_retries=self.retry_policy.max_retries,
                should_retry=lambda exc: create_failure(exc) is CreateFailure.RETRY,
                on_retry=refused,
                what=f"create for {request.describe()}",
            )
        except KieError as exc:
            if create_failure(exc) is CreateFailure.UNCERTAIN:
                raise SubmissionUncertainError(request=request, reason=str(exc)) from exc
            raise
        log.debug("created task %s for %s", task_id, request.describe())
        return TaskHandle(self, task_id, request=request, fresh=True)

    async def extend_video(
        self,
        task_id: str,
        index: int = 0,
        prompt: str | None = None,
        *,
        mode: ExtendMode | str | None = None,
        watermark: str | None = None,
        callback_url: str | None = None,
    ) -> TaskHandle:
        """Extend one video of a Midjourney video record; returns the new task's handle.

        Manual mode (your ``prompt`` says what happens next) when a prompt is given, auto mode
        (the model continues) otherwise; ``mode`` overrides. Input is validated before anything
        is sent.

        Raises:
            ValidationError: an argument is invalid (nothing was sent).
            SubmissionUncertainError, APIError, TransportError: see :meth:`submit`.

        Example::

            handle = await kie.extend_video("ee603959", index=0, prompt="Into a nebula")
            record = await handle.wait()
        """
        request = ExtendRequest(
            task_id, index, prompt, mode=mode, watermark=watermark, callback_url=callback_url
        )
        return await self.submit(request)

    async def generate(self, request: GenerateRequest) -> TaskHandle:
        """Start a Midjourney generation (images, or a video from an image); returns the new
        task's handle. Build the request with :meth:`GenerateRequest.image`,
        :meth:`~GenerateRequest.video` and the other constructors.

        Raises:
            TypeError: ``request`` is not a :class:`GenerateRequest`.
            SubmissionUncertainError, APIError, TransportError: see :meth:`submit`.

        Example::

            handle = await kie.generate(GenerateRequest.image("a lighthouse in a storm"))
            record = await handle           # record.result_urls: 4 images
        """
        if not isinstance(request, GenerateRequest):
            raise TypeError(f"generate() takes a GenerateRequest, not {type(request).__name__}")
        return await self.submit(request)

    async def upscale(
        self,
        task_id: str | UpscaleRequest,
        index: int | None = None,
        *,
        watermark: str | None = None,
        callback_url: str | None = None,
    ) -> TaskHandle:
        """Upscale image ``index`` (0-3) of an image task; returns the new task's handle.
        Pass an :class:`UpscaleRequest` instead of ``task_id`` and ``index`` if you have one.

        Raises:
            ValidationError: an argument is invalid (nothing was sent).
            SubmissionUncertainError, APIError, TransportError: see :meth:`submit`.

        Example::

            record = await (await kie.upscale(image_task_id, index=2)).wait()
        """
        return await self.submit(
            image_action(UpscaleRequest, task_id, index, watermark, callback_url)
        )

    async def vary(
        self,
        task_id: str | VaryRequest,
        index: int | None = None,
        *,
        watermark: str | None = None,
        callback_url: str | None = None,
    ) -> TaskHandle:
        """Make variations of image ``index`` (0-3) of an image task; returns the new task's
        handle. Pass a :class:`VaryRequest` instead of ``task_id`` and ``index`` if you have
        one.

        Raises:
            ValidationError: an argument is invalid (nothing was sent).
            SubmissionUncertainError, APIError, TransportError: see :meth:`submit`.

        Example::

            record = await (await kie.vary(image_task_id, index=0)).wait()
        """
        request = image_action(VaryRequest, task_id, index, watermark, callback_url)
        return await self.submit(request)

    # -- account and results ---------------------------------------------------------------------

    async def credits(self) -> Decimal:
        """The account's remaining credit balance (it can be fractional, e.g. ``60.62``).

        Raises:
            APIError, TransportError, UnexpectedResponseError: the call failed.
        """
        return proto.credit_balance(await self._read("GET", proto.CREDIT_PATH))

    async def download_url(self, url: str) -> str:
        """A fresh download link (valid about 20 minutes) for a kie.ai result URL.

        Raises:
            UnprocessableError: the URL is not a kie.ai result URL.
            APIError, TransportError, UnexpectedResponseError: the call failed.
        """
        return proto.download_link(
            await self._read("POST", proto.DOWNLOAD_URL_PATH, json={"url": url})
        )

    async def download(
        self,
        record: TaskRecord,
        dest_dir: str | os.PathLike[str],
        *,
        concurrency: int = 4,
    ) -> list[Path]:
        """Save a finished task's result files in ``dest_dir``; returns their paths in order.

        Each file is named ``<task_id>_<i>.<ext>`` (``i`` its position in
        ``record.result_urls``, the extension from the URL, ``.mp4`` by default; an id that is
        not a safe file name as it is gets a short hash, so distinct ids never share a file)
        and streamed to a temporary file in the same directory (created exclusively, never
        through a symlink; written off the event loop), checked against ``Content-Length``,
        then renamed into place: a file under its final name is always complete, and one that
        exists already is skipped without a request. A link that answers 403, 404 or 410
        (expired) is replaced once by a fresh one from :meth:`download_url`; dropped
        connections, 5xx answers and hosts too slow for the client's :class:`DownloadPolicy`
        are retried by its :class:`RetryPolicy`. Redirects are followed, but never from https
        to http nor to another scheme. Files are fetched with a plain GET: the API key goes
        only to the API's base URL, never to a file host.

        Raises:
            DownloadError: the record has no result URLs, or a file could not be saved (after
                the other files of the call were finished). No partial file is left behind.
            ValidationError: ``concurrency`` is not an int >= 1.

        Example::

            record = await handle
            paths = await kie.download(record, "videos/")
        """
        from ._download import download_records

        return await download_records(self, [record], Path(dest_dir), concurrency=concurrency)

    async def download_many(
        self,
        records: Iterable[TaskRecord],
        dest_dir: str | os.PathLike[str],
        *,
        concurrency: int = 4,
    ) -> list[Path]:
        """Save the result files of many finished tasks, at most ``concurrency`` at a time;
        returns every path, in the order of ``records`` and their URLs.

        Each file is handled as in :meth:`download`, so a rerun after a crash or an error
        fetches only what is missing.

        Raises:
            DownloadError: a record has no result URLs (checked before anything is fetched),
                or a file could not be saved (the first such error, raised once every other
                file is finished; the others are logged).
            ValidationError: ``concurrency`` is not an int >= 1.

        Example::

            records = [o.record for o in outcomes if o.ok and o.record]
            paths = await kie.download_many(records, "videos/", concurrency=8)
        """
        from ._download import download_records

        return await download_records(self, records, Path(dest_dir), concurrency=concurrency)

    # -- bulk ------------------------------------------------------------------------------------

    def extend_many(
        self,
        requests: Iterable[ExtendRequest] | AsyncIterable[ExtendRequest],
        *,
        concurrency: int = 50,
        journal: str | os.PathLike[str] | None = None,
        poll: PollPolicy | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        resubmit_uncertain: bool = False,
    ) -> BulkRun:
        """Submit and await many extensions: a :class:`BulkRun` yielding one
        :class:`ExtendOutcome` per request as each finishes (not in input order).

        One bad request never ends the run. After an error that dooms every later submission
        (401 bad key, 402 out of credits, 505 feature disabled) no new create is sent: tasks
        already submitted are still awaited, and the remaining requests are yielded as
        :attr:`OutcomeKind.NOT_SUBMITTED`. Every create goes through the client's rate limiter.

        Args:
            requests: the :class:`ExtendRequest` items, a sync or async iterable; read lazily,
                so a generator of any length works.
            concurrency: at most this many requests submitted and not yet consumed: an outcome
                you have not taken yet still holds its place, so a consumer that stops reading
                stops the creates too.
            journal: a JSON-lines file recording progress. A rerun with the same journal skips
                finished requests, re-attaches to submitted ones, and reports a request whose
                create may have reached kie.ai as :attr:`OutcomeKind.UNCERTAIN` instead of
                sending it again.
            poll: the :class:`PollPolicy` for waiting; defaults to the client's.
            on_progress: called with a :class:`Progress` whenever a count changes; an
                exception it raises is logged and ignored.
            resubmit_uncertain: resubmit requests the journal marks uncertain (may pay twice).

        Raises:
            ValidationError: ``concurrency`` is not a positive int.
            ConfigurationError: the journal cannot be read, is not a kie-async journal, or is
                in use by another run (its pid, host and start time are named); a
                :class:`RedisRateLimit` whose Redis cannot be reached.
            OSError: the journal cannot be written (the run stops).
            TypeError: an item of ``requests`` is not an :class:`ExtendRequest`.

        These are raised from the iteration, not from this call. Use the run as an async
        context manager (or ``contextlib.aclosing``) to end it when the block ends; see
        :class:`BulkRun` for what a stop costs.

        Example::

            async with kie.extend_many(requests, journal="run.jsonl") as run:
                async for outcome in run:
                    print(outcome.request.task_id, outcome.kind.value)
        """
        from ._bulk import extend_many

        return extend_many(
            self,
            requests,
            concurrency=concurrency,
            journal=Path(journal) if journal is not None else None,
            poll=poll,
            on_progress=on_progress,
            resubmit_uncertain=resubmit_uncertain,
        )
