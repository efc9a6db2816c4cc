"""KieClient: the facade that wires the layers for the user.

The settings are checked by :mod:`~kie_async._transport.config`, requests go through the
:class:`~kie_async._transport.exchange.Transport` (the one place aiohttp exceptions are
translated, and the key's only holder), task handles are :mod:`~kie_async._tasks.handle`'s, bulk
runs :mod:`~kie_async._bulk.run`'s and downloads :mod:`~kie_async._download.fetch`'s: each of
these names what it needs of the client with a small Protocol, and none imports this module.
"""

from __future__ import annotations

import logging
import os
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar

import aiohttp
import attrs

from ._calls import KindCalls, RunCalls
from ._errors import ConfigurationError, ValidationError
from ._kinds.registry import TaskRequest, check_http_url, check_task_id
from ._policies import (
    DownloadPolicy,
    PollPolicy,
    RateLimit,
    RedisRateLimit,
    RetryPolicy,
    Timeout,
    default_poll,
)
from ._protocol import envelope as proto
from ._protocol.records import TaskRecord
from ._retry import Schedule
from ._tasks.handle import TaskHandle
from ._tasks.submit import create_task, record_of
from ._text import printable
from ._transport.config import (
    _UNSET,
    _UNSET_CONNECT,
    _UNSET_TIMEOUT,
    DEFAULT_MAX_ANSWER_SIZE,
    _check_base_url,
    _limiter,
    _resolve_key,
    _resolve_timeout,
)
from ._transport.config import _Secret as _Secret  # its import path of 0.1.x (the CLI's too)
from ._transport.exchange import SendWatch, Transport
from ._transport.http import _FileAnswer

if TYPE_CHECKING:
    from .callbacks import CallbackReceiver

__all__ = ["KieClient"]

log = logging.getLogger("kie_async")

#: The default safety poll of a client wired to a callback receiver: the callback normally ends
#: the wait, so polls are rare (after 2 minutes, then 3, then every 5) and only catch lost ones.
SAFETY_POLL = PollPolicy(
    interval=120.0, factor=1.5, max_interval=300.0, first_delay=0.0, steady_polls=0
)


# Self for subclasses (typing.Self is 3.11+, and typing_extensions is no dependency).
_KieClientT = TypeVar("_KieClientT", bound="KieClient")


class KieClient(KindCalls, RunCalls):
    """An async client for kie.ai's Midjourney API: generate, upscale, vary and extend.

    Use it as an async context manager (or call :meth:`aclose`). It creates its own
    ``aiohttp.ClientSession`` on first use, or borrows ``session`` (and then never closes it).

    Args:
        api_key: your kie.ai API key; defaults to the ``KIE_API_KEY`` environment variable.
        base_url: the API root; defaults to ``KIE_BASE_URL`` or ``https://api.kie.ai``. Plain
            ``http://`` is refused unless it points to loopback or ``allow_insecure_http`` is set.
        session: an ``aiohttp.ClientSession`` to borrow instead of creating one.
        poll: the default :class:`PollPolicy` for :meth:`TaskHandle.wait` (default
            ``PollPolicy()``, or ``PollPolicy.zero_wait()`` when the environment variable
            ``KIE_POLL_ZERO_WAIT`` is ``1``: for a fake server only).
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
        timeout: float | Timeout = _UNSET_TIMEOUT,
        connect_timeout: float = _UNSET_CONNECT,
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
        self.poll_policy: PollPolicy = poll or default_poll()
        policy = retry or RetryPolicy()
        if max_retries is not None:
            policy = attrs.evolve(policy, max_retries=max_retries)
        limiter = _limiter(rate_limit, self._api_key)
        self._timeout = _resolve_timeout(timeout, connect_timeout)
        self._transport = Transport(
            self._api_key,
            self._base_url,
            session=session,
            timeout=self._timeout,
            max_answer_size=max_answer_size,
            max_connections=max_connections,
            user_agent=user_agent,
            retry_policy=policy,
            limiter=limiter,
        )
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
        return self._transport.limiter.limit

    @property
    def read_timeout(self) -> float:
        """Seconds a request waits for each read of an answer (``timeouts.read``)."""
        return self._timeout.read

    @property
    def timeouts(self) -> Timeout:
        """The :class:`Timeout` every API request of this client is held to."""
        return self._timeout

    @property
    def max_answer_size(self) -> int:
        """The largest API answer accepted, in bytes."""
        return self._transport.max_answer_size

    @property
    def max_connections(self) -> int:
        """How many requests this client has in flight at most (the connection pool's size)."""
        return self._transport.max_connections

    @property
    def retry_policy(self) -> RetryPolicy:
        """The :class:`RetryPolicy` of single requests (settable)."""
        return self._transport.retry_policy

    @retry_policy.setter
    def retry_policy(self, policy: RetryPolicy) -> None:
        self._transport.retry_policy = policy

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
        await self._transport.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session if this client created it. Safe to call more than once."""
        await self._transport.aclose()

    def _open_file(self, url: str) -> AbstractAsyncContextManager[_FileAnswer]:
        """GET a result file, one hop, bounded by :attr:`download_policy` (see
        :meth:`Transport.open_file`)."""
        return self._transport.open_file(url, self.download_policy.read_timeout)

    def _retry_schedule(self) -> Schedule:
        return self._transport.retry_schedule()

    # -- tasks ---------------------------------------------------------------------------------

    async def fetch_record(self, task_id: str) -> TaskRecord:
        """One ``record-info`` call, without retries (the waiting loop retries by itself)."""
        return record_of(await self.fetch_record_data(task_id), task_id)

    async def fetch_record_data(self, task_id: str) -> object:
        """:meth:`fetch_record`'s answer, not parsed yet: a waiting loop parses only what it
        needs (``_wire.still_generating``), then the rest with :meth:`_record_of`."""
        return await self._transport.call("GET", proto.RECORD_PATH, params={"taskId": task_id})

    _record_of = staticmethod(record_of)

    async def get_task(self, task_id: str) -> TaskRecord:
        """Fetch a task's current :class:`TaskRecord` (transient failures are retried).

        Raises:
            ValidationError: ``task_id`` is empty or malformed.
            TaskNotFoundError: kie.ai knows no such task.
            APIError, TransportError, UnexpectedResponseError: the call failed.
        """
        check_task_id(task_id)
        data = await self._transport.read("GET", proto.RECORD_PATH, params={"taskId": task_id})
        return record_of(data, task_id)

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
        """:meth:`submit`, telling ``watch`` when each attempt is about to go on the wire (past
        the rate limiter, holding a slot) and when it ended: bulk journals record intent there."""
        task_id = await create_task(self._transport, request, self._callback_url, watch)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("created task %s for %s", task_id, request.describe())
        return TaskHandle(self, task_id, request=request, fresh=True)

    # -- account and results ---------------------------------------------------------------------

    async def credits(self) -> Decimal:
        """The account's remaining credit balance (it can be fractional, e.g. ``60.62``).

        Raises:
            APIError, TransportError, UnexpectedResponseError: the call failed.
        """
        return proto.credit_balance(await self._transport.read("GET", proto.CREDIT_PATH))

    async def download_url(self, url: str) -> str:
        """A fresh download link (valid about 20 minutes) for a kie.ai result URL.

        Raises:
            ValidationError: ``url`` is not an absolute http(s) URL (nothing is sent).
            UnprocessableError: the URL is not a kie.ai result URL.
            APIError, TransportError, UnexpectedResponseError: the call failed.
        """
        check_http_url(url, "url")
        return proto.download_link(
            await self._transport.read("POST", proto.DOWNLOAD_URL_PATH, json={"url": url})
        )
