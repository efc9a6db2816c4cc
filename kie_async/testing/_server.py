"""FakeKieServer: the fake kie.ai's settings, its lifecycle and its routes.

The behaviour lives in the base classes, one concern each: :mod:`._edge` (what every request
goes through, faults), :mod:`._store` (the tasks and their scripts), :mod:`._endpoints` (the
API), :mod:`._files` (result files) and :mod:`._callbacks` (callback delivery).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from decimal import Decimal
from typing import TypeVar

from aiohttp import web

from ._endpoints import Endpoints
from ._files import FileServing
from ._scripts import DEFAULT_API_KEY

# Self for subclasses (typing.Self is 3.11+, and typing_extensions is no dependency).
_FakeKieServerT = TypeVar("_FakeKieServerT", bound="FakeKieServer")


class FakeKieServer(Endpoints, FileServing):
    """A fake kie.ai on ``127.0.0.1`` (an ephemeral port); an async context manager.

    Args:
        api_key: the bearer key it accepts (``"test-key"``).
        rate_limit: ``(requests, seconds)``: creates beyond that in any window are *rejected*
            with code 429, as kie.ai does; ``None`` for no limit.
        http_errors: send error answers with the error's HTTP status (as kie's docs describe);
            by default they come as HTTP 200 with the code in the body (as kie.ai really does).
        credits: the account's starting balance; each accepted create costs ``task_cost``,
            or its price in ``prices``. The balance (``/api/v1/chat/credit``) goes down as
            creates are accepted; a create the balance cannot pay is refused with code 402.
        prices: the server's own prices, independent of the SDK's price table: credits by
            ``"<taskType>:<videoBatchSize>"``, by ``taskType``, or by kind (``"extend"``,
            ``"generate"``, ``"upscale"``, ``"vary"``), the first found; else ``task_cost``.
        strict_sources: refuse extensions, upscales and variations of source tasks the server
            does not know (created on it, or added with :meth:`add_source_video` /
            :meth:`add_source_image`), of the wrong kind, or with an index beyond their
            results (code 422).
        extend_extensions: accept an extension of a video that is itself an extension's
            result (the default); ``False`` refuses it with code 422. kie.ai does not document
            which it does.
        max_extensions: refuse (code 422) an extension that would make a chain of more than
            this many extensions from one generated video (other Midjourney resellers allow
            4); ``None``, the default, sets no limit.
        record_requests: keep every request in :attr:`requests` (turn off for long benchmarks).
        file_size: the size in bytes of each served result file.
        seed: seeds fault draws and quirk choices, so a run repeats.
        callback_key: sign callbacks with this webhook HMAC key (``X-Webhook-Timestamp`` and
            ``X-Webhook-Signature`` headers, see :meth:`sign`); ``None`` sends them unsigned.
        callback_duplicates: how many extra times each callback is delivered (kie.ai may
            deliver the same task more than once).
        callback_drop_rate: the probability (0 to 1, seeded) that a task's callback is never
            sent, as when kie.ai gives up on a receiver.
        callback_retry_delay: seconds between the up to 3 retries of a callback that was not
            answered HTTP 200.
        unknown_task: how ``record-info`` answers a task id it does not know: ``"422"``
            (``{"code": 422, "msg": "recordInfo is null"}``, the default) or ``"null"``
            (``{"code": 200, "msg": "success", "data": null}``, as kie's sibling record-info
            endpoints answer); the client reads both as :class:`~kie_async.TaskNotFoundError`.
        callback_lead: seconds by which a task's callback comes before ``record-info`` reports
            the task ended (kie.ai's record-info can lag its own callback); ``0`` agrees at once.
        callback_url: where to deliver the callback of a create that names no ``callBackUrl``
            (``None``: nowhere, as kie.ai does).

    Callbacks: a create with a ``callBackUrl`` gets a background delivery that waits until the
    task's ``TaskScript.seconds`` have passed, ends the task (its ``polls`` no longer count, so
    ``record-info`` agrees with the callback, ``callback_lead`` seconds later if set), and
    POSTs kie's callback body (see :meth:`callback_payload`) from the server's own HTTP
    session. :meth:`close` cancels every delivery still pending. ``counts`` gains
    ``"callback:delivered"``, ``"callback:failed"`` (an answer other than 200, retried) and
    ``"callback:dropped"``.

    Result files (``/files/{task_id}/{name}``) are streamed in 64 KiB chunks, never need the
    API key, and can be faulted with ``fail_next("file", ...)``: ``"truncated"`` (the full
    ``Content-Length`` is announced, half the body is sent, the connection closes), ``"hang"``
    (half the body, then nothing until :meth:`close`), ``"slow"`` (the answer starts after
    ``faults.slow_seconds``), ``"drop_before"``, ``"rate_limited"`` (429) and ``"html_502"``.
    With :attr:`files_expired` set, a file URL without the
    ``token`` of a ``download-url`` link is answered 403; :meth:`expire_links` does the same
    for the links of some tasks only.

    Attributes:
        url: the base URL, e.g. ``"http://127.0.0.1:40123"`` (after start).
        default_script: the :class:`TaskScript` for creates with nothing else queued.
        script_for: optional ``f(create_body) -> TaskScript | None`` choosing a script per create.
        faults: the random :class:`Faults` in force.
        requests: every :class:`RecordedRequest`, in arrival order.
        creates: the JSON body of every accepted create, in order.
        counts: a counter of what happened: ``"create"`` (accepted), ``"poll"``, ``"rejected:429"``,
            ``"fault:drop_after"``, ...
        tasks: the raw state of every task by id.
        injected: every fault injected, in order, as ``(endpoint, fault, json_body, query)``:
            which request lost its answer, e.g. to check what a client reported as uncertain.
        files_expired: when true, direct result-file URLs answer 403 (an expired link) and
            only fresh ``download-url`` links work.
        expired_links: the task ids whose direct result-file URLs answer 403 (see
            :meth:`expire_links`).
        peak_file_streams: the most result files streamed at the same time.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        rate_limit: tuple[int, float] | None = None,
        http_errors: bool = False,
        credits: Decimal | int | str = Decimal("100000"),
        task_cost: Decimal | int | str = Decimal("1"),
        prices: Mapping[str, Decimal | int | str] | None = None,
        strict_sources: bool = False,
        record_requests: bool = True,
        file_size: int = 4096,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        callback_key: str | None = None,
        callback_duplicates: int = 0,
        callback_drop_rate: float = 0.0,
        callback_retry_delay: float = 0.05,
        extend_extensions: bool = True,
        max_extensions: int | None = None,
        callback_lead: float = 0.0,
        unknown_task: str = "422",
        callback_url: str | None = None,
    ) -> None:
        self._setup_edge(api_key=api_key, http_errors=http_errors, record_requests=record_requests)
        self._setup_store()
        self._setup_endpoints(
            rate_limit=rate_limit,
            credits=credits,
            task_cost=task_cost,
            prices=prices,
            strict_sources=strict_sources,
            extend_extensions=extend_extensions,
            max_extensions=max_extensions,
            unknown_task=unknown_task,
        )
        self._setup_files(file_size=file_size)
        self._setup_callbacks(
            key=callback_key,
            duplicates=callback_duplicates,
            drop_rate=callback_drop_rate,
            retry_delay=callback_retry_delay,
            lead=callback_lead,
            seed=seed,
            url=callback_url,
        )
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self: _FakeKieServerT) -> _FakeKieServerT:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start serving on loopback; :attr:`url` is set once this returns."""
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/api/v1/mj/generateVideoExtend", self._create)
        app.router.add_post("/api/v1/mj/generate", self._generate)
        app.router.add_post("/api/v1/mj/generateUpscale", self._upscale)
        app.router.add_post("/api/v1/mj/generateVary", self._vary)
        app.router.add_get("/api/v1/mj/record-info", self._record_info)
        app.router.add_get("/api/v1/chat/credit", self._credit)
        app.router.add_post("/api/v1/common/download-url", self._download_url)
        app.router.add_get("/files/{task_id}/{name}", self._file)
        app.router.add_route("*", "/{path:.*}", self._unrouted)  # last: any other path
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        assert sockets, "the fake server did not bind"
        sockname = sockets[0].getsockname()
        self.url = f"http://{self._host}:{sockname[1]}"

    async def close(self) -> None:
        """Stop serving and close every connection (hung answers are released)."""
        if self._closing is not None:
            self._closing.set()
        await self._close_callbacks()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
