"""KieClient: the facade that wires the layers for the user.

The settings are checked by :mod:`~kie_async._transport.config`, requests go through the
:class:`~kie_async._transport.exchange.Transport` (the one place aiohttp exceptions are
translated, and the key's only holder), task handles are :mod:`~kie_async._tasks.handle`'s, bulk
runs :mod:`~kie_async._bulk.run`'s and downloads :mod:`~kie_async._download.fetch`'s: each of
these names what it needs of the client with a small Protocol, and none imports this module.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from ._errors import ValidationError
from ._kinds.extend import ExtendMode, ExtendRequest
from ._kinds.generate import GenerateRequest
from ._kinds.image_actions import UpscaleRequest, VaryRequest, image_action
from ._kinds.registry import TaskRequest
from ._policies import PollPolicy
from ._protocol.records import TaskRecord
from ._tasks.handle import TaskHandle

if TYPE_CHECKING:
    from ._bulk.chains import BulkItem
    from ._bulk.outcomes import Progress
    from ._bulk.plan import RunPlan
    from ._bulk.results_download import JournalDownload
    from ._bulk.run import BulkRun
    from .callbacks import CallbackEvent, CallbackReceiver


import logging
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, TypeVar

import aiohttp
import attrs

from ._errors import ConfigurationError
from ._kinds.common import check_http_url, check_task_id
from ._policies import (
    DownloadPolicy,
    RateLimit,
    RedisRateLimit,
    RetryPolicy,
    Timeout,
    default_poll,
)
from ._protocol import envelope as proto
from ._retry import Schedule
from ._tasks.submit import create_task, record_of
from ._text import printable
from ._transport.config import (
    DEFAULT_MAX_ANSWER_SIZE,
    UNSET,
    UNSET_CONNECT,
    UNSET_TIMEOUT,
    Secret,
    check_base_url,
    limiter_for,
    resolve_key,
    resolve_timeout,
)
from ._transport.exchange import SendWatch, Transport
from ._transport.http import FileAnswer

if TYPE_CHECKING:
    from .callbacks import CallbackReceiver

__all__ = ["KieClient"]

log = logging.getLogger("kie_async")

#: The default safety poll of a client wired to a callback receiver: the callback normally ends
#: the wait, so polls are rare (after 2 minutes, then 3, then every 5) and only catch lost ones.
SAFETY_POLL = PollPolicy(
    interval=120.0, factor=1.5, max_interval=300.0, first_delay=0.0, steady_polls=0
)


def _path(name: str, value: object) -> Path:
    """``value`` as a :class:`~pathlib.Path`, or a :class:`ValidationError` naming ``name``
    for anything that is not a ``str`` or ``os.PathLike[str]`` (``None``, a number, bytes)."""
    if isinstance(value, str | os.PathLike):
        try:
            return Path(value)
        except TypeError:
            pass  # an os.PathLike[bytes]
    raise ValidationError(name, f"must be a path (str or os.PathLike), got {type(value).__name__}")


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
        rate_limit: RateLimit | RedisRateLimit | None = UNSET,
        timeout: float | Timeout = UNSET_TIMEOUT,
        connect_timeout: float = UNSET_CONNECT,
        max_answer_size: int = DEFAULT_MAX_ANSWER_SIZE,
        max_connections: int = 100,
        allow_insecure_http: bool = False,
        user_agent: str | None = None,
        callback_url: str | None = None,
        callbacks: CallbackReceiver | None = None,
        safety_poll: PollPolicy | None = None,
        download: DownloadPolicy | None = None,
    ) -> None:
        # The key goes into a Secret first thing: a traceback with capture_locals (as error
        # reporters take) shows this frame's locals, and a parameter is one.
        given = api_key if isinstance(api_key, Secret) else Secret(api_key)
        api_key = None
        self._api_key = resolve_key(given)
        url = base_url or os.environ.get("KIE_BASE_URL") or proto.DEFAULT_BASE_URL
        self._base_url = check_base_url(url, allow_insecure_http)
        if poll is not None and not isinstance(poll, PollPolicy):
            raise ConfigurationError("poll", "must be a PollPolicy")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError("retry", "must be a RetryPolicy")
        self.poll_policy: PollPolicy = poll or default_poll()
        policy = retry or RetryPolicy()
        if max_retries is not None:
            policy = attrs.evolve(policy, max_retries=max_retries)
        limiter = limiter_for(rate_limit, self._api_key)
        self._timeout = resolve_timeout(timeout, connect_timeout)
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

    def _open_file(self, url: str) -> AbstractAsyncContextManager[FileAnswer]:
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
        needs (``_protocol.wire.still_generating``), then the rest with :meth:`_record_of`."""
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

    # -- one method per task kind: build its request (validated before anything is sent) and
    # submit it. A new kind adds its method here.

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

    # -- callbacks, downloads and bulk runs: the client handed to the layers below, which name
    # what they need of it with a Protocol.

    async def confirm(self, event: CallbackEvent) -> TaskRecord:
        """What ``record-info`` says of a callback's task: one read that decides, since the
        signature covers only the task id and the time, never the body's result or outcome.

        Returns the current :class:`TaskRecord`, final or not: an acknowledgment (or a body
        ahead of ``record-info``) may find the task still generating; wait for it with
        ``await kie.task(event.task_id)``. Trust the record's ``result_urls`` and ``status``,
        not the event's. With a receiver attached, a final record is kept on its event too.

        Raises:
            TaskNotFoundError: kie.ai knows no such task (a forged or foreign callback).
            APIError, TransportError, UnexpectedResponseError: the call failed.

        Example::

            event = verify_callback(body, headers, key=webhook_key)
            record = await kie.confirm(event)
            if record.status.ok:
                await kie.download(record, "videos/")
        """
        record = await self.get_task(event.task_id)
        receiver = self.callbacks
        if receiver is not None and record.status.is_terminal:
            receiver._confirm(record)
        return record

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
            ValidationError: ``concurrency`` is not an int >= 1, or ``dest_dir`` is not a path
                (nothing is fetched).

        Example::

            record = await handle
            paths = await kie.download(record, "videos/")
        """
        from ._download.fetch import download_records

        return await download_records(
            self, [record], _path("dest_dir", dest_dir), concurrency=concurrency
        )

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
            ValidationError: ``concurrency`` is not an int >= 1, or ``dest_dir`` is not a path
                (nothing is fetched).

        Example::

            records = [o.record for o in outcomes if o.ok and o.record]
            paths = await kie.download_many(records, "videos/", concurrency=8)
        """
        from ._download.fetch import download_records

        return await download_records(
            self, records, _path("dest_dir", dest_dir), concurrency=concurrency
        )

    async def download_journal(
        self,
        journal: str | os.PathLike[str],
        dest_dir: str | os.PathLike[str],
        *,
        concurrency: int = 4,
    ) -> JournalDownload:
        """Save in ``dest_dir`` every result file a bulk run's journal records and has not
        saved yet, and record each in the journal, so the next call fetches nothing.

        kie.ai deletes result files about 14 days after a task ends and has no call listing
        an account's tasks: the journal is the only record of what a run paid for. Files are
        fetched as :meth:`download` fetches them (named ``<task_id>_<i>.<ext>`` inside
        ``dest_dir`` whatever the journal holds, atomic, resumable, a stale link replaced by
        a fresh one from :meth:`download_url`); a file already complete in ``dest_dir`` is
        recorded without a request. A file the journal says was saved counts as saved while
        it is still where it was saved (in any directory); one deleted since is fetched
        again. One file's failure does not stop the others: failures are returned, not
        raised. The call holds the journal's lock, so it cannot run beside a bulk run or
        another download on the same journal. See :func:`read_results` to look without
        fetching.

        Returns:
            A :class:`JournalDownload`: what was fetched, found, and failed, and the journal's
            :class:`JournalResults` after the call (``.ok`` when everything is saved).

        Raises:
            ConfigurationError: no journal at ``journal``, it is not a kie-async journal, or
                it is in use by a run or another download (named); nothing is fetched.
            ValidationError: ``concurrency`` is not an int >= 1, or a path is not a path.
            DownloadError: ``dest_dir`` cannot hold files.
            OSError: the journal cannot be written.

        Example::

            done = await kie.download_journal("run.jsonl", "videos/")
            print(len(done.fetched), "fetched;", len(done.results.missing), "still missing")
        """
        from ._bulk.results_download import download_journal

        return await download_journal(
            self,
            _path("journal", journal),
            _path("dest_dir", dest_dir),
            concurrency=concurrency,
        )

    def extend_many(
        self,
        requests: Iterable[ExtendRequest] | AsyncIterable[ExtendRequest],
        *,
        concurrency: int = 50,
        journal: str | os.PathLike[str] | None = None,
        poll: PollPolicy | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        resubmit_uncertain: bool = False,
        max_credits: int | Decimal | None = None,
        prices: Mapping[str, int | Decimal | str] | None = None,
        preflight: bool = True,
    ) -> BulkRun:
        """Submit and await many extensions: a :class:`BulkRun` yielding one
        :class:`ExtendOutcome` per request as each finishes (not in input order).

        Before the first create, one cheap call checks the key and the host: the account's
        balance (:meth:`credits`, logged at INFO and kept as :attr:`BulkRun.balance`). A bad
        key or an API that cannot be reached ends the run there, raising from the first
        iteration, with nothing sent.

        One bad request never ends the run. After an error that dooms every later submission
        (401 bad key, 402 out of credits, 505 feature disabled, a TLS failure, or three creates
        in a row that could not connect to kie.ai at all) no new create is sent: tasks already
        submitted are still awaited, and the remaining requests are yielded as
        :attr:`OutcomeKind.NOT_SUBMITTED`. Every create goes through the client's rate limiter.

        Args:
            requests: the :class:`ExtendRequest` items, a sync or async iterable; read lazily,
                so a generator of any length works. A sequence (a list, a tuple) has every
                item checked before the first create; an iterator or async iterable is
                checked as it is read (the items before a bad one are submitted).
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
            max_credits: a budget: no create is sent that could take the run's spend (with
                what the journal records as spent by earlier runs) past it. Each create's
                price is reserved before it is sent and kept unless kie.ai certainly did not
                accept it (an uncertain create counts as spent); requests held back end as
                :attr:`OutcomeKind.NOT_SUBMITTED` with a :class:`BudgetExceededError`, and
                :attr:`BulkRun.spend` says what was spent and what is left.
            prices: credits per create by kind, taskType or ``"taskType:batch"`` (e.g.
                ``{"extend": 60, "mj_video_hd:2": 90}``), before :data:`DEFAULT_PRICES`. A
                budgeted run refuses to start when a create has no price (see the bulk docs).
                ``"learn:CEILING"`` (or ``"learn"``) instead of a number: a budgeted run
                learns the price from the balance before and after its first create of each
                taskType (alone: no other create goes out meanwhile), which may cost at most
                CEILING (``"learn"``: at most the balance); approximate when the account is
                used elsewhere at the same time. A price that cannot be learned ends every
                later create of it :attr:`OutcomeKind.NOT_SUBMITTED` with a
                :class:`ConfigurationError`; :attr:`BulkRun.spend` names the learned prices.
            preflight: check the key and the host with the balance call before the first
                create (the default). ``False`` skips that call: for a caller that has just
                checked them (many small runs in a row, say), or a host without kie's balance
                endpoint (one that answers it 404 is passed over anyway, with a warning).

        Raises:
            AuthenticationError: the preflight's balance call was refused (401): nothing is
                sent.
            TransportError, APIError, UnexpectedResponseError: the preflight's balance call
                failed after the client's retries (an API that cannot be reached or answers
                errors): nothing is sent.
            ValidationError: ``concurrency`` is not a positive int, ``poll`` is not a
                :class:`PollPolicy`, ``on_progress`` is not callable, or ``preflight`` is not
                a bool (nothing is sent); ``journal`` is not a path (raised by this call
                itself).
            ConfigurationError: ``max_credits`` or ``prices`` is invalid (raised by this call
                itself); with ``max_credits``, a create (an item, a chain's step, or a paid
                create in the journal) has no price (nothing is sent; a sequence is checked
                whole first, an iterator as it is read).
            ConfigurationError: the journal cannot be read, is not a kie-async journal, or is
                in use by another run (its pid, host and start time are named); a
                :class:`RedisRateLimit` whose Redis cannot be reached.
            OSError: the journal cannot be written (the run stops).
            TypeError: an item of ``requests`` is not an :class:`ExtendRequest` (for a
                sequence, before anything is sent).

        Except for a ``journal`` that is not a path and invalid ``max_credits`` or ``prices``,
        these are raised from the iteration, not from this call. Use the run as an async
        context manager (or ``contextlib.aclosing``) to end it when the block ends; see
        :class:`BulkRun` for what a stop costs.

        Example::

            async with kie.extend_many(requests, journal="run.jsonl") as run:
                async for outcome in run:
                    print(outcome.request.task_id, outcome.kind.value)
        """
        from ._bulk.run import RunOptions, extend_many, make_budget

        options = RunOptions(
            concurrency=concurrency,
            journal=_path("journal", journal) if journal is not None else None,
            poll=poll,
            on_progress=on_progress,
            resubmit_uncertain=resubmit_uncertain,
            budget=make_budget(max_credits, prices),
            preflight=preflight,
        )
        return extend_many(self, requests, options)

    def run_many(
        self,
        requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
        *,
        concurrency: int = 50,
        journal: str | os.PathLike[str] | None = None,
        poll: PollPolicy | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        resubmit_uncertain: bool = False,
        max_credits: int | Decimal | None = None,
        prices: Mapping[str, int | Decimal | str] | None = None,
        preflight: bool = True,
    ) -> BulkRun[BulkItem]:
        """Submit and await many requests of any kind, and chains: :meth:`extend_many` for a
        mix of :class:`GenerateRequest`, :class:`UpscaleRequest`, :class:`VaryRequest`,
        :class:`ExtendRequest` and :class:`Chain` items, with the same arguments, journal, rate
        limit, backpressure, stops and :class:`ExtendOutcome` outcomes (``outcome.request`` is
        the item).

        A :class:`Chain` yields one outcome: its steps run one after another, each journaled
        as a request of its own (its intent before its create, its task id, its end), so a
        rerun resumes a chain at the step it reached and never pays for a finished step
        again; ``outcome.steps`` holds every step's outcome. Journal keys name the kind
        (an extension's key is the same as :meth:`extend_many`'s, so its journals match).

        Raises:
            TypeError: an item is not a request or a :class:`Chain` (every item of a
                sequence is checked before the first create, an iterator's as it is read);
                and the errors of :meth:`extend_many`, from the iteration.

        Example::

            chain = Chain(GenerateRequest.video("waves", image_url=frame), ExtendStep(0, "calm"))
            async with kie.run_many([chain, UpscaleRequest(image_task, 2)]) as run:
                async for outcome in run:
                    print(outcome.request.describe(), outcome.kind.value, outcome.task_id)
        """
        from ._bulk.many import run_many
        from ._bulk.run import RunOptions, make_budget

        options = RunOptions(
            concurrency=concurrency,
            journal=_path("journal", journal) if journal is not None else None,
            poll=poll,
            on_progress=on_progress,
            resubmit_uncertain=resubmit_uncertain,
            budget=make_budget(max_credits, prices),
            preflight=preflight,
        )
        return run_many(self, requests, options)

    async def plan(
        self,
        requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
        *,
        journal: str | os.PathLike[str] | None = None,
        concurrency: int = 50,
        resubmit_uncertain: bool = False,
        max_credits: int | Decimal | None = None,
        prices: Mapping[str, int | Decimal | str] | None = None,
        balance: bool = True,
    ) -> RunPlan:
        """A dry run of :meth:`run_many`: read and check every item, and say what the run
        would send, cost and take, as a :class:`RunPlan`. **No create is sent**; the journal
        is read without being locked or written; the one call is the balance's.

        Args:
            requests, journal, concurrency, resubmit_uncertain, max_credits, prices: as for
                :meth:`run_many` (a missing price is reported, not raised).
            balance: read the account's balance (one call), to say whether it covers the cost.

        Raises:
            TypeError: an item is not a request or a :class:`Chain`.
            ValidationError: ``concurrency`` is not a positive int; ``journal`` is not a path.
            ConfigurationError: ``max_credits`` or ``prices`` is invalid, or the journal cannot
                be read or is not a kie-async journal.
            APIError, TransportError, UnexpectedResponseError: the balance call failed.

        Example::

            plan = await kie.plan(requests, journal="run.jsonl", prices={"upscale": 5})
            print(plan.creates, plan.cost, plan.balance, plan.covers, plan.seconds)
        """
        from ._bulk.plan import plan

        return await plan(
            self,
            requests,
            journal=_path("journal", journal) if journal is not None else None,
            concurrency=concurrency,
            resubmit_uncertain=resubmit_uncertain,
            max_credits=max_credits,
            prices=prices,
            balance=balance,
        )
