"""KieClient: owns (or borrows) the aiohttp session and glues the pure protocol to I/O.

Foreign exceptions of API calls are translated in exactly one place, :meth:`KieClient._send`,
and never chained: aiohttp's exceptions (and the locals of its frames, which a traceback with
``capture_locals`` shows) hold the request's headers, so the Authorization header too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import re
import time
import zlib
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
    TransportError,
    UnexpectedResponseError,
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
from ._task_errors import SubmissionUncertainError
from ._text import printable, redact, redact_bytes
from ._timeout import Timeout
from ._wire import is_loopback, parse_record

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
    """A value that never shows itself in a repr, str or traceback (``capture_locals``
    included: only ``'***'`` is shown for a local that holds one)."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def reveal(self) -> Any:
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with the secret (as it is, or JSON-escaped) replaced by ``***``."""
        return redact(text, self._value)

    def redact_bytes(self, data: bytes) -> bytes:
        """:meth:`redact` for an answer's raw body."""
        return redact_bytes(data, self._value)

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def _check_base_url(base_url: str, allow_insecure_http: bool) -> str:
    if not isinstance(base_url, str):
        raise ConfigurationError("base_url", f"must be a string, not {type(base_url).__name__}")
    shown = printable(repr(base_url[:200]))
    if not base_url.isprintable() or " " in base_url:
        raise ConfigurationError("base_url", f"{shown} contains whitespace or control characters")
    try:
        parts = urlsplit(base_url)
        host = parts.hostname
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ConfigurationError("base_url", f"{shown} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigurationError("base_url", f"{shown} must be an http(s) URL with a host")
    problem = _host_problem(host)
    if problem is None and port == 0:
        problem = "port 0 cannot be connected to"
    if problem is not None:
        raise ConfigurationError("base_url", f"{shown} is not a valid URL ({problem})")
    if parts.query or parts.fragment:
        raise ConfigurationError("base_url", "must not carry a query or fragment")
    if parts.scheme == "http" and not is_loopback(host) and not allow_insecure_http:
        raise ConfigurationError(
            "base_url",
            f"{shown} would send your API key in clear text; use https, a loopback "
            "address, or pass allow_insecure_http=True if you really mean it",
        )
    return base_url.rstrip("/")


_HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")


def _host_problem(host: str) -> str | None:
    """What makes ``host`` impossible to connect to (found only when connecting, otherwise),
    or ``None``: an IP address, or a name whose labels are letters, digits, ``-`` and ``_``
    once IDNA-encoded, each at most 63 characters."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host.partition("%")[0])
        return None
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return "the host name has an empty or over-long label"
    if not _HOST_NAME.fullmatch(ascii_host):
        return "the host name has characters a host name cannot have"
    return None


def _key_problem(given: _Secret) -> str | None:
    """What is wrong with the key in ``given``, or ``None``. It returns instead of raising, so
    that no frame holding the key in clear is in the traceback of the error."""
    key = given.reveal()
    if key is not None and not isinstance(key, str):
        return f"must be a string, not {type(key).__name__}"
    if key is None or not key.strip():
        return "no API key: pass KieClient(api_key=...) or set KIE_API_KEY"
    if any(c.isspace() or ord(c) < 32 for c in key.strip()):
        return "contains whitespace or control characters"
    return None


def _resolve_key(given: _Secret) -> _Secret:
    """The key in ``given`` (or ``KIE_API_KEY``), stripped and checked, kept in a secret."""
    if given.reveal() is None:
        given = _Secret(os.environ.get("KIE_API_KEY"))
    problem = _key_problem(given)
    if problem is not None:
        raise ConfigurationError("api_key", problem)
    return _Secret(given.reveal().strip())


def _positive(name: str, value: float | None, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(name, f"must be a number > 0, got {value!r}")
    if value == float("inf"):
        # aiohttp cannot schedule an infinite timer: every request would raise OverflowError.
        raise ConfigurationError(name, "must be finite (a stalled server would hang the call)")
    return float(value)


#: The largest API answer accepted by default: kie's answers are a few KB.
DEFAULT_MAX_ANSWER_SIZE = 1 << 20


def _resolve_timeout(timeout: object, connect_timeout: object) -> Timeout:
    """The :class:`Timeout` for the ``timeout`` and ``connect_timeout`` arguments."""
    if isinstance(timeout, Timeout):
        if connect_timeout is not _UNSET:
            raise ConfigurationError(
                "connect_timeout", "with a Timeout object, set Timeout(connect=...) instead"
            )
        return timeout
    default = Timeout()
    read = default.read if timeout is _UNSET else _seconds("timeout", timeout)
    connect = (
        default.connect
        if connect_timeout is _UNSET
        else _seconds("connect_timeout", connect_timeout)
    )
    # A number is the per-read timeout of earlier versions: the overall limit never cuts a
    # request shorter than one connect and one read.
    total = max(default.total or 0.0, read + connect)
    return Timeout(total=total, connect=connect, read=read)


def _seconds(name: str, value: object) -> float:
    seconds = _positive(name, value)  # type: ignore[arg-type]
    assert seconds is not None
    return seconds


#: How much of a large answer is read at a time: the memory a refused answer costs.
_CHUNK = 1 << 16

_FILE_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def _give_back(slots: asyncio.Semaphore) -> Callable[[asyncio.Future[Any]], None]:
    def done(acquiring: asyncio.Future[Any]) -> None:
        if not acquiring.cancelled() and acquiring.exception() is None:
            slots.release()

    return done


async def _acquire_within(slots: asyncio.Semaphore, seconds: float) -> bool:
    """Take one of ``slots`` within ``seconds``; ``False`` if none came free in time.

    A slot taken at the very moment the time runs out, or the caller is cancelled, is given
    back (``asyncio.wait_for`` before Python 3.12 can lose it)."""
    acquiring = asyncio.ensure_future(slots.acquire())
    try:
        await asyncio.wait({acquiring}, timeout=seconds)
    except BaseException:
        acquiring.cancel()
        acquiring.add_done_callback(_give_back(slots))
        raise
    if acquiring.done() and not acquiring.cancelled() and acquiring.exception() is None:
        return True
    acquiring.cancel()
    acquiring.add_done_callback(_give_back(slots))
    return False


def _describe(exc: BaseException) -> str:
    """An aiohttp failure in words, without its request headers (a ``ClientResponseError``'s
    repr shows them all, Authorization included)."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.message or f"HTTP {exc.status}"
    return str(exc) or type(exc).__name__


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes | str:
    """The whole body (inflated, if it came compressed), or why it was refused: larger than
    ``cap`` bytes (known as soon as that much has arrived or been announced), compressed in
    an unknown way, or corrupt. Never more than ``cap`` plus one chunk is held. aiohttp's own
    inflating is off (``auto_decompress=False``): older aiohttp versions inflate each network
    chunk whole, so a small gzip bomb could fill memory before a byte was read here."""
    too_large = f"the answer is larger than {cap} bytes (max_answer_size); it was not read"
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    length = response.content_length
    if encoding == "identity":
        if length is not None:
            if length > cap:
                return too_large
            # aiohttp reads exactly Content-Length bytes (a short body is an error), so the
            # body is already bounded: read it in one go, the common case.
            return await response.read()
        inflater = None
    elif encoding in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(47)  # a gzip or zlib header, told apart by zlib
    else:
        return f"the answer is compressed with {encoding[:40]!r}, which was not asked for"
    body = bytearray()
    stream = response.content
    try:
        while chunk := await stream.read(_CHUNK):
            if inflater is None:
                body += chunk
            else:
                # Inflate at most one byte past the cap: a bomb stops here.
                body += inflater.decompress(chunk, cap + 1 - len(body))
                while inflater.unconsumed_tail and len(body) <= cap:
                    body += inflater.decompress(inflater.unconsumed_tail, cap + 1 - len(body))
            if len(body) > cap:
                return too_large
        if inflater is not None:
            body += inflater.flush()
    except zlib.error as exc:
        return f"the answer's {encoding} body is corrupt ({exc})"
    if len(body) > cap:
        return too_large
    return bytes(body)


def _file_transport_error(
    exc: BaseException, where: str, read_timeout: float | None
) -> TransportError:
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return TransportError(message=f"could not connect: {exc}", endpoint=where, sent=False)
    if isinstance(exc, asyncio.TimeoutError):
        return TransportError(message=f"no data within {read_timeout or 0:g}s", endpoint=where)
    return TransportError(message=f"{type(exc).__name__}: {exc}", endpoint=where)


def _record_of(data: object, task_id: str) -> TaskRecord:
    """The :class:`TaskRecord` in a record-info answer for ``task_id``.

    Raises:
        UnexpectedResponseError: the answer is about another task (a confused cache or proxy,
            or a hostile server): it must never be taken for this task's state.
    """
    record = parse_record(data, task_id=task_id, endpoint=proto.RECORD_PATH)
    if record.task_id != task_id:
        raise UnexpectedResponseError(
            message=f"record-info answered for task {record.task_id[:80]!r}, not {task_id!r}",
            http_status=200,
            endpoint=proto.RECORD_PATH,
            body_excerpt=repr(data)[:300],
        )
    return record


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
        timeout: the time budget of each API request: a :class:`Timeout` (overall, connect,
            read and pool limits), or a number, the seconds to wait for each read of an answer
            (as in earlier versions; the overall limit is then 120 s, or ``timeout +
            connect_timeout`` if that is longer). Default: ``Timeout()``, 120 s in all, 15 s
            to connect, 60 s for each read.
        connect_timeout: seconds to establish a connection, with a number ``timeout`` (pass
            ``Timeout(connect=...)`` otherwise).
        max_answer_size: the largest API answer accepted, in bytes (default 1 MiB; kie's
            answers are a few KB). A larger one is refused with
            :class:`UnexpectedResponseError` as soon as it is announced or has arrived that
            far, without reading the rest.
        max_connections: the size of the connection pool; requests beyond it wait their turn
            (for at most ``Timeout.pool`` seconds, by default as long as it takes) without
            counting against their other timeouts.
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
        timeout: float | Timeout = _UNSET,
        connect_timeout: float = _UNSET,
        max_answer_size: int = DEFAULT_MAX_ANSWER_SIZE,
        max_connections: int = 100,
        allow_insecure_http: bool = False,
        user_agent: str | None = None,
        callback_url: str | None = None,
        callbacks: CallbackReceiver | None = None,
        safety_poll: PollPolicy | None = None,
        download: DownloadPolicy | None = None,
    ) -> None:
        # The key goes into a _Secret first thing: a traceback with capture_locals (as error
        # reporters take) shows this frame's locals, and a parameter is one.
        given = api_key if isinstance(api_key, _Secret) else _Secret(api_key)
        api_key = None
        self._api_key = _resolve_key(given)
        url = base_url or os.environ.get("KIE_BASE_URL") or proto.DEFAULT_BASE_URL
        self._base_url = _check_base_url(url, allow_insecure_http)
        if poll is not None and not isinstance(poll, PollPolicy):
            raise ConfigurationError("poll", "must be a PollPolicy")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError("retry", "must be a RetryPolicy")
        self.poll_policy: PollPolicy = poll or PollPolicy()
        policy = retry or RetryPolicy()
        if max_retries is not None:
            policy = attrs.evolve(policy, max_retries=max_retries)
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
        self._timeout = _resolve_timeout(timeout, connect_timeout)
        self._read_timeout: float = self._timeout.read
        self._connect_timeout = self._timeout.connect
        if (
            isinstance(max_answer_size, bool)
            or not isinstance(max_answer_size, int)
            or max_answer_size < 1
        ):
            raise ConfigurationError("max_answer_size", "must be an int >= 1 (bytes)")
        self._max_answer_size = max_answer_size
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
        self._api_timeout: aiohttp.ClientTimeout | None = None
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
        # Never raises, even for a client whose __init__ failed half-way (an error reporter
        # may show it while handling that very error).
        base_url = getattr(self, "_base_url", None)
        shown = "<unset>" if base_url is None else printable(repr(base_url))
        return f"KieClient(base_url={shown}, api_key='***')"

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
        """Seconds a request waits for each read of an answer (``timeouts.read``)."""
        return self._read_timeout

    @property
    def timeouts(self) -> Timeout:
        """The :class:`Timeout` every API request of this client is held to."""
        return self._timeout

    @property
    def max_answer_size(self) -> int:
        """The largest API answer accepted, in bytes."""
        return self._max_answer_size

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
        # The session's default only: API calls pass _api_timeouts(), result files their
        # DownloadPolicy's. Waiting for a pooled connection is not bounded here: our own
        # semaphore keeps requests out of aiohttp's pool queue. Built once: it is immutable.
        if self._client_timeout is None:
            self._client_timeout = aiohttp.ClientTimeout(
                total=None,
                connect=None,
                sock_connect=self._connect_timeout,
                sock_read=self._read_timeout,
            )
        return self._client_timeout

    def _api_timeouts(self) -> aiohttp.ClientTimeout:
        # aiohttp's total runs until the connection is released, so it bounds the body too.
        # No rounding: aiohttp would round limits of 5 s and more up to a whole second.
        if self._api_timeout is None:
            budget = self._timeout
            self._api_timeout = aiohttp.ClientTimeout(
                total=budget.total,
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
        session = self._ensure_session()
        slots = self._slots
        assert slots is not None
        debug = log.isEnabledFor(logging.DEBUG)
        pool = self._timeout.pool
        if pool is None or not slots.locked():
            await slots.acquire()
        elif not await _acquire_within(slots, pool):
            raise TransportError(
                message=f"no free connection within {pool:g}s "
                f"({self._max_connections} requests in flight; Timeout.pool)",
                endpoint=path,
                sent=False,
            )
        try:
            if before_send is not None:
                await before_send()  # a connection is ours: the request goes out next
            started = time.monotonic()
            if debug:
                log.debug("-> %s %s %s Authorization: Bearer ***", method, path, dict(params or {}))
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
                path,
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
        try:
            async with session.request(
                method,
                self._base_url + path,
                json=json,
                params=params,
                headers=proto.auth_headers(self._api_key.reveal(), self._user_agent),
                timeout=self._api_timeouts(),
                raise_for_status=False,
                allow_redirects=False,
                auto_decompress=False,
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                body = await _read_capped(response, self._max_answer_size)
                if isinstance(body, str):
                    refused = body
                    response.close()  # do not drain the rest: drop the connection
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            return self._translate(exc, path)
        if refused is not None:
            return UnexpectedResponseError(message=refused, http_status=status, endpoint=path)
        assert isinstance(body, bytes)
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        return status, headers, self._api_key.redact_bytes(body)

    def _translate(self, exc: BaseException, path: str) -> TransportError:
        """The :class:`TransportError` for an aiohttp failure, described in words (the key
        redacted, should the server have echoed it into a status line) and never chained."""
        what = self._api_key.redact(_describe(exc))
        budget = self._timeout
        if isinstance(exc, aiohttp.ClientSSLError):
            return TransportError(
                message=f"TLS failure (not retried): {what}",
                endpoint=path,
                sent=False,
                permanent=True,
            )
        if isinstance(exc, aiohttp.InvalidURL | UnicodeError):
            return TransportError(
                message=f"invalid URL (not retried): {what}",
                endpoint=path,
                sent=False,
                permanent=True,
            )
        if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            return TransportError(message=f"could not connect: {what}", endpoint=path, sent=False)
        if isinstance(exc, aiohttp.SocketTimeoutError):
            return TransportError(
                message=f"no data for {budget.read:g}s (Timeout.read)", endpoint=path
            )
        if isinstance(exc, asyncio.TimeoutError):
            return TransportError(
                message=f"no complete answer within {budget.total or 0:g}s (Timeout.total)",
                endpoint=path,
            )
        if isinstance(exc, aiohttp.ClientResponseError):
            return TransportError(message=f"malformed HTTP answer: {what}", endpoint=path)
        return TransportError(message=f"{type(exc).__name__}: {what}", endpoint=path)

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
            max_connect_retries=self.retry_policy.max_connect_retries,
        )

    # -- tasks ---------------------------------------------------------------------------------

    async def fetch_record(self, task_id: str) -> TaskRecord:
        """One ``record-info`` call, without retries (the waiting loop retries by itself)."""
        data = await self._call("GET", proto.RECORD_PATH, params={"taskId": task_id})
        return _record_of(data, task_id)

    async def get_task(self, task_id: str) -> TaskRecord:
        """Fetch a task's current :class:`TaskRecord` (transient failures are retried).

        Raises:
            ValidationError: ``task_id`` is empty or malformed.
            TaskNotFoundError: kie.ai knows no such task.
            APIError, TransportError, UnexpectedResponseError: the call failed.
        """
        check_task_id(task_id)
        data = await self._read("GET", proto.RECORD_PATH, params={"taskId": task_id})
        return _record_of(data, task_id)

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
            TransportError: no connection could be made, even after retries, or a permanent
                failure (TLS, an invalid URL; never retried).
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
                max_connect_retries=self.retry_policy.max_connect_retries,
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
        (401 bad key, 402 out of credits, 505 feature disabled, a TLS failure, or three creates
        in a row that could not connect to kie.ai at all) no new create is sent: tasks already
        submitted are still awaited, and the remaining requests are yielded as
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
