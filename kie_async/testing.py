"""A fake kie.ai to test against: a real aiohttp server on loopback that speaks kie's API.

It serves every Midjourney create (generate, upscale, vary, extend) with kie's documented
validation, ``record-info`` and callbacks for all of them, and the account endpoints. It behaves
like the real service as far as it is known, quirks included: errors inside HTTP 200
answers, result URLs as ``{"resultUrl": ...}`` objects, string timestamps in changing formats,
``"null"`` strings, ``{"code": 422, "msg": "recordInfo is null"}`` for unknown tasks, a bearer key
check, a 403 for library-default user agents, and a rate limit that *rejects* creates.
On top, tests can script how each task ends, inject faults, and read every request it got.
Its answers are built from plain dicts, never from kie_async's own models.

Example::

    from kie_async import KieClient
    from kie_async.testing import FakeKieServer, TaskScript, fast_client

    async def test_extension_succeeds():
        async with FakeKieServer() as server:
            server.script_next(TaskScript(polls=2))
            async with fast_client(server) as kie:
                handle = await kie.extend_video("src-1", index=0, prompt="Into the nebula")
                record = await handle
            assert len(record.result_urls) == 4
            assert server.counts["create"] == 1
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import functools
import hashlib
import hmac
import itertools
import json
import random
import signal
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
import attrs
from aiohttp import web

from . import _fake_kinds as kinds
from ._client import KieClient
from ._download import DownloadPolicy
from ._polling import PollPolicy, RetryPolicy

__all__ = [
    "FAULT_KINDS",
    "FakeKieServer",
    "Faults",
    "RecordedRequest",
    "TaskScript",
    "fast_client",
]

DEFAULT_API_KEY = "test-key"

#: Every fault :class:`Faults` and :meth:`FakeKieServer.fail_next` know, by name.
FAULT_KINDS = (
    "rate_limited",  # 429 (nothing is created)
    "maintenance",  # 455 (nothing is created)
    "server_error",  # a JSON 500 envelope (nothing is created)
    "html_502",  # a Cloudflare-style HTML page with HTTP 502 (nothing is created)
    "drop_before",  # the connection is closed without an answer, before anything is done
    "drop_after",  # the request is carried out (a create is recorded), then the connection closes
    "truncated",  # the request is carried out, and the JSON answer is cut short
    "slow",  # the answer comes after Faults.slow_seconds (longer than a client's read timeout)
    "hang",  # the connection is accepted and never answered
)
_AFTER_ACTING = frozenset({"drop_after", "truncated", "slow"})

_CREATE_ENDPOINTS = frozenset({"create", "generate", "upscale", "vary"})
_UTC8 = timezone(timedelta(hours=8))


@attrs.define
class TaskScript:
    """How one fake task ends.

    Attributes:
        flag: the final ``successFlag``: 1 success, 2 failed, 3 generation failed (any other value
            is served as is, to test undocumented flags).
        polls: how many ``record-info`` polls answer "generating" (flag 0) before the end.
        seconds: how long after creation the task ends (both conditions must hold).
        videos: how many result URLs an extension's success carries (generations, upscales
            and variations carry their kind's count: 4 images, ``videoBatchSize`` videos,
            1 upscaled image, 4 variations).
        error_code / error_message: what a failure reports.
    """

    flag: int = 1
    polls: int = 0
    seconds: float = 0.0
    videos: int = 1
    error_code: str | None = None
    error_message: str | None = None

    @classmethod
    def failed(cls, message: str = "content policy violation", *, flag: int = 2) -> TaskScript:
        """A task that fails (flag 2, or 3 for "generation failed") with ``message``."""
        return cls(flag=flag, error_code="400", error_message=message)


@attrs.define
class Faults:
    """Probabilities (0 to 1) of injecting each fault into an answer; see :data:`FAULT_KINDS`.

    Only the endpoints named in ``endpoints`` are affected (``"create"`` (extend),
    ``"generate"``, ``"upscale"``, ``"vary"``, ``"record"``, ``"credit"``,
    ``"download_url"``). The draw is seeded, so a run repeats.

    Attributes:
        slow_seconds: how long a ``slow`` answer takes (make it longer than the client's
            ``timeout`` to provoke read timeouts).
        burst: how many answers in a row a drawn ``rate_limited`` fault refuses (a 429 burst,
            as when an account's window is full).
        retry_after: a ``Retry-After`` header for every 429 answer of the server: seconds
            (``2.5``) or an HTTP date (``"Wed, 21 Oct 2026 07:28:00 GMT"``); ``None`` sends none,
            as kie.ai documents none.

    Example::

        server.faults = Faults(rate_limited=0.05, burst=3, drop_after=0.01, html_502=0.02, seed=7)
    """

    rate_limited: float = 0.0
    maintenance: float = 0.0
    server_error: float = 0.0
    html_502: float = 0.0
    drop_before: float = 0.0
    drop_after: float = 0.0
    truncated: float = 0.0
    slow: float = 0.0
    hang: float = 0.0
    slow_seconds: float = 5.0
    endpoints: frozenset[str] = frozenset({"create", "record"})
    seed: int | None = 0
    burst: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    retry_after: float | str | None = None
    _rng: random.Random = attrs.field(init=False, repr=False, eq=False)
    _burst_left: dict[str, int] = attrs.field(init=False, repr=False, eq=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def draw(self, endpoint: str) -> str | None:
        """Pick a fault for one answer of ``endpoint``, or ``None``."""
        if endpoint not in self.endpoints:
            return None
        if self._burst_left.get(endpoint, 0) > 0:
            self._burst_left[endpoint] -= 1
            return "rate_limited"
        roll = self._rng.random()
        for kind in FAULT_KINDS:
            roll -= float(getattr(self, kind))
            if roll < 0:
                if kind == "rate_limited":
                    self._burst_left[endpoint] = self.burst - 1
                return kind
        return None


@attrs.frozen
class RecordedRequest:
    """One request the fake server received, as it arrived.

    Attributes:
        method, path: the HTTP method and path.
        query: the query string's parameters.
        headers: the request headers.
        json: the decoded JSON body, if there was one.
        at: when it arrived (``time.monotonic()``).
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    json: Any
    at: float


def _envelope(code: int, msg: str, data: Any = None) -> dict[str, Any]:
    return {"code": code, "msg": msg, "data": data}


# Self for subclasses (typing.Self is 3.11+, and typing_extensions is no dependency).
_FakeKieServerT = TypeVar("_FakeKieServerT", bound="FakeKieServer")


class FakeKieServer:
    """A fake kie.ai on ``127.0.0.1`` (an ephemeral port); an async context manager.

    Args:
        api_key: the bearer key it accepts (``"test-key"``).
        rate_limit: ``(requests, seconds)``: creates beyond that in any window are *rejected*
            with code 429, as kie.ai does; ``None`` for no limit.
        http_errors: send error answers with the error's HTTP status (as kie's docs describe);
            by default they come as HTTP 200 with the code in the body (as kie.ai really does).
        credits: the account's starting balance; each accepted create costs ``task_cost``.
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
        callback_lead: seconds by which a task's callback comes before ``record-info`` reports
            the task ended (kie.ai's record-info can lag its own callback); ``0`` agrees at once.

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
    ``token`` of a ``download-url`` link is answered 403.

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
    ) -> None:
        self.api_key = api_key
        self.rate_limit = rate_limit
        self.http_errors = http_errors
        self.credits = Decimal(credits)
        self.task_cost = Decimal(task_cost)
        self.strict_sources = strict_sources
        self.extend_extensions = extend_extensions
        self.max_extensions = max_extensions
        self.record_requests = record_requests
        self.file_size = file_size
        self.default_script = TaskScript()
        self.script_for: Callable[[Mapping[str, Any]], TaskScript | None] | None = None
        self.faults = Faults()
        self.requests: list[RecordedRequest] = []
        self.creates: list[dict[str, Any]] = []
        self._create_kinds: list[str] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.tasks: dict[str, dict[str, Any]] = {}
        self.injected: list[tuple[str, str, Any, dict[str, str]]] = []
        self._host = host
        self._port = port
        self._rng = random.Random(seed)
        self._queued: collections.deque[TaskScript] = collections.deque()
        self._one_shot: dict[str, collections.deque[str]] = collections.defaultdict(
            collections.deque
        )
        self._scripted: dict[str, collections.deque[dict[str, Any]]] = collections.defaultdict(
            collections.deque
        )
        self._window: collections.deque[float] = collections.deque()
        self._serial = itertools.count()
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self.url = ""
        self.callback_key = callback_key
        self.callback_duplicates = callback_duplicates
        self.callback_drop_rate = callback_drop_rate
        self.callback_retry_delay = callback_retry_delay
        self.callback_lead = callback_lead
        self.files_expired = False
        self.peak_file_streams = 0
        self._file_streams = 0
        self._deliveries: set[asyncio.Task[None]] = set()
        self._callback_session: aiohttp.ClientSession | None = None

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
        deliveries = list(self._deliveries)
        for delivery in deliveries:
            delivery.cancel()
        await asyncio.gather(*deliveries, return_exceptions=True)
        if self._callback_session is not None:
            session, self._callback_session = self._callback_session, None
            await session.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # -- scripting -----------------------------------------------------------------------------

    def script_next(self, *scripts: TaskScript) -> None:
        """Queue scripts for the next creates, in order (before :attr:`script_for`)."""
        self._queued.extend(scripts)

    def fail_next(self, endpoint: str, fault: str, times: int = 1) -> None:
        """Inject ``fault`` (one of :data:`FAULT_KINDS`) into the next ``times`` answers of
        ``endpoint`` (``"create"``, ``"record"``, ``"credit"``, ``"download_url"``)."""
        if fault not in FAULT_KINDS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULT_KINDS)}")
        self._one_shot[endpoint].extend([fault] * times)

    def answer_next(
        self, endpoint: str, code: int, msg: str = "scripted error", *, times: int = 1
    ) -> None:
        """Answer the next ``times`` requests to ``endpoint`` (``"create"``, ``"record"``,
        ``"credit"``, ``"download_url"``) with kie's error envelope
        ``{"code": code, "msg": msg, "data": null}``, without carrying them out.

        The envelope comes as HTTP 200 with the code in the body (as kie.ai really answers), or
        with ``code`` as the HTTP status when :attr:`http_errors` is set. The user agent and key
        are still checked first. Takes precedence over :meth:`fail_next` faults.

        Example::

            server.answer_next("record", 455, "Service under maintenance", times=2)
        """
        if code == 200:
            raise ValueError("answer_next scripts error answers; code 200 is success")
        self._scripted[endpoint].extend(_envelope(code, msg) for _ in range(times))

    def add_source_video(self, videos: int = 4, task_id: str | None = None) -> str:
        """Add a finished Midjourney video record (the kind you extend); returns its task id."""
        task_id = task_id or uuid.uuid4().hex
        body = {"taskType": "mj_video", "prompt": "a source video", "videoBatchSize": videos}
        self._new_task(task_id, "mj_video", body, TaskScript(videos=videos), finished=True)
        return task_id

    def add_source_image(
        self, images: int = 4, task_id: str | None = None, task_type: str = "mj_txt2img"
    ) -> str:
        """Add a finished Midjourney image record (the kind you upscale or vary); returns its
        task id."""
        task_id = task_id or uuid.uuid4().hex
        body = {"taskType": task_type, "prompt": "a source image"}
        task = self._new_task(task_id, task_type, body, TaskScript(videos=images), finished=True)
        task["ext"] = "jpeg"
        return task_id

    def set_record(self, task_id: str, data: Mapping[str, Any]) -> None:
        """Serve ``data`` verbatim as the ``record-info`` data of ``task_id`` (sample payloads)."""
        self.tasks[task_id] = {"raw": dict(data)}

    def complete(self, task_id: str) -> None:
        """Make a scripted task end now, whatever its script said about polls and seconds."""
        task = self.tasks[task_id]
        task["polls_left"] = 0
        task["ends_at"] = 0.0

    def duplicate_creates(self) -> int:
        """How many accepted creates repeated an earlier one's content (the money lost twice)."""
        seen: set[str] = set()
        dupes = 0
        for kind, body in zip(self._create_kinds, self.creates, strict=False):
            # The content, without what does not change what is made (the watermark text and
            # where the result is reported): for an extension, its taskId, index, taskType
            # and prompt.
            content = {k: v for k, v in body.items() if k not in ("waterMark", "callBackUrl")}
            key = json.dumps([kind, content], sort_keys=True)
            dupes += key in seen
            seen.add(key)
        return dupes

    def polls_for(self, task_id: str) -> int:
        """How many ``record-info`` requests asked about ``task_id``."""
        return sum(
            1
            for r in self.requests
            if r.path.endswith("record-info") and r.query.get("taskId") == task_id
        )

    # -- the machinery -------------------------------------------------------------------------

    def _answer(self, envelope: dict[str, Any]) -> web.Response:
        status = 200
        if self.http_errors and envelope["code"] != 200:
            status = int(envelope["code"])
        headers = None
        if envelope["code"] == 429 and self.faults.retry_after is not None:
            headers = {"Retry-After": str(self.faults.retry_after)}
        return web.json_response(envelope, status=status, headers=headers)

    def _remember(self, request: web.Request, body: Any) -> None:
        if self.record_requests:
            self.requests.append(
                RecordedRequest(
                    method=request.method,
                    path=request.path,
                    query=dict(request.query),
                    headers=dict(request.headers),
                    json=body,
                    at=time.monotonic(),
                )
            )

    async def _admit(self, request: web.Request, endpoint: str) -> tuple[Any, web.Response | None]:
        """Record the request and apply what kie's edge checks: user agent and bearer key."""
        body: Any = None
        raw = await request.read()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        self._remember(request, body)
        self.counts[f"request:{endpoint}"] += 1
        agent = request.headers.get("User-Agent", "")
        if not agent or agent.startswith(("Python/", "python-requests/", "python-httpx/")):
            self.counts["rejected:403"] += 1
            return body, web.Response(status=403, text="error code: 1010")
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            self.counts["rejected:401"] += 1
            return body, self._answer(_envelope(401, "You do not have access permissions"))
        return body, None

    def _draw(self, endpoint: str) -> str | None:
        queued = self._one_shot.get(endpoint)
        if queued:
            return queued.popleft()
        return self.faults.draw(endpoint)

    async def _serve(
        self,
        request: web.Request,
        endpoint: str,
        act: Callable[[Any], dict[str, Any]],
    ) -> web.StreamResponse:
        body, refused = await self._admit(request, endpoint)
        if refused is not None:
            return refused
        scripted = self._scripted.get(endpoint)
        if scripted:
            envelope = scripted.popleft()
            self.counts[f"answered:{envelope['code']}"] += 1
            return self._answer(envelope)
        fault = self._draw(endpoint)
        if fault is not None:
            self.counts[f"fault:{fault}"] += 1
            self.injected.append((endpoint, fault, body, dict(request.query)))
        if fault == "hang":
            assert self._closing is not None
            await self._closing.wait()
            return self._drop(request)
        if fault == "drop_before":
            return self._drop(request)
        if fault == "rate_limited":
            return self._answer(_envelope(429, "Too many requests, please try again later"))
        if fault == "maintenance":
            return self._answer(_envelope(455, "Service under maintenance"))
        if fault == "server_error":
            return self._answer(_envelope(500, "Internal server error"))
        if fault == "html_502":
            page = "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"
            return web.Response(status=502, text=page, content_type="text/html")
        envelope = act(body)
        if fault == "drop_after":
            return self._drop(request)
        if fault == "truncated":
            text = json.dumps(envelope)
            return web.Response(
                status=200, text=text[: max(1, len(text) // 2)], content_type="application/json"
            )
        if fault == "slow":
            assert self._closing is not None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.faults.slow_seconds)
        return self._answer(envelope)

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=200)

    def _rate_limited(self) -> bool:
        if self.rate_limit is None:
            return False
        count, per = self.rate_limit
        now = time.monotonic()
        while self._window and self._window[0] <= now - per:
            self._window.popleft()
        if len(self._window) >= count:
            return True
        self._window.append(now)
        return False

    def _next_script(self, body: Mapping[str, Any]) -> TaskScript:
        if self._queued:
            return self._queued.popleft()
        if self.script_for is not None:
            chosen = self.script_for(body)
            if chosen is not None:
                return chosen
        return self.default_script

    def _new_task(
        self,
        task_id: str,
        task_type: str,
        body: Mapping[str, Any],
        script: TaskScript,
        *,
        finished: bool = False,
    ) -> dict[str, Any]:
        now = time.monotonic()
        serial = next(self._serial)
        task = {
            "task_id": task_id,
            "task_type": task_type,
            "param_json": json.dumps(body, ensure_ascii=False),
            "script": script,
            "polls_left": 0 if finished else script.polls,
            "ends_at": 0.0 if finished else now + script.seconds,
            "created_wall": datetime.now(timezone.utc),
            "completed_wall": None,
            "serial": serial,
            "videos": script.videos,
        }
        self.tasks[task_id] = task
        return task

    def _time(self, task: Mapping[str, Any], when: datetime | None) -> str | None:
        # kie.ai has answered in ISO 8601 and in zone-less UTC+8; serve both.
        if when is None:
            return None
        if task["serial"] % 2:
            return when.astimezone(_UTC8).strftime("%Y-%m-%d %H:%M:%S")
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _null(self, task: Mapping[str, Any]) -> Any:
        # Empty values arrive as null, "" or the string "null".
        return (None, "", "null")[task["serial"] % 3]

    def _result_urls(self, task: Mapping[str, Any]) -> list[str]:
        ext = task.get("ext", "mp4")
        return [f"{self.url}/files/{task['task_id']}/{i}.{ext}" for i in range(task["videos"])]

    def _record_data(self, task: dict[str, Any]) -> dict[str, Any]:
        if "raw" in task:
            return dict(task["raw"])
        script: TaskScript = task["script"]
        ended = task["polls_left"] <= 0 and time.monotonic() >= task["ends_at"]
        if not ended:
            task["polls_left"] -= 1
        flag = script.flag if ended else 0
        if ended and task["completed_wall"] is None:
            task["completed_wall"] = datetime.now(timezone.utc)
        urls = None
        if flag == 1:
            urls = {"resultUrls": [{"resultUrl": url} for url in self._result_urls(task)]}
        failed = flag in (2, 3)
        return {
            "taskId": task["task_id"],
            "taskType": task["task_type"],
            "paramJson": task["param_json"],
            "completeTime": self._time(task, task["completed_wall"]),
            "resultInfoJson": urls,
            "successFlag": flag,
            "createTime": self._time(task, task["created_wall"]),
            "errorCode": script.error_code if failed and script.error_code else self._null(task),
            "errorMessage": (
                script.error_message if failed and script.error_message else self._null(task)
            ),
        }

    # -- endpoints -----------------------------------------------------------------------------

    def _charge(self) -> dict[str, Any] | None:
        if self.credits < self.task_cost:
            self.counts["rejected:402"] += 1
            return _envelope(402, "Credits insufficient")
        if self._rate_limited():
            self.counts["rejected:429"] += 1
            return _envelope(429, "Too many requests, please try again later")
        self.credits -= self.task_cost
        return None

    def _check_extend(self, body: Any) -> dict[str, Any] | None:
        if not isinstance(body, dict):
            return _envelope(400, "Request body must be JSON")
        for name in ("taskType", "taskId", "index"):
            if body.get(name) in (None, ""):
                return _envelope(500, f"{name}: This field is required")
        task_type = body["taskType"]
        if task_type not in ("mj_video_extend_manual", "mj_video_extend_auto"):
            return _envelope(422, f"taskType {task_type!r} is not supported")
        index = body["index"]
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            return _envelope(422, "index must be a non-negative integer")
        prompt = body.get("prompt")
        if task_type == "mj_video_extend_manual" and (
            not isinstance(prompt, str) or not prompt.strip()
        ):
            return _envelope(500, "prompt: This field is required")
        if isinstance(prompt, str) and len(prompt) > 2000:
            return _envelope(422, "prompt must be at most 2000 characters")
        callback = body.get("callBackUrl")
        if callback is not None and not (
            isinstance(callback, str) and callback.startswith(("http://", "https://"))
        ):
            return _envelope(422, "callBackUrl must be a URL")
        return kinds.check_extend_source(
            body,
            self.tasks,
            strict=self.strict_sources,
            extend_extensions=self.extend_extensions,
            max_extensions=self.max_extensions,
        )

    def _extend(self, body: Any) -> dict[str, Any]:
        problem = self._check_extend(body)
        if problem is not None:
            return problem
        depth = kinds.extension_depth(body, self.tasks)
        return self._accept("extend", body, body["taskType"], extensions=depth)

    def _accept(
        self,
        kind: str,
        body: dict[str, Any],
        task_type: str,
        *,
        results: int | None = None,
        ext: str = "mp4",
        extensions: int = 0,
    ) -> dict[str, Any]:
        """Charge for a valid create of any kind, make its task, and schedule its callback."""
        problem = self._charge()
        if problem is not None:
            return problem
        self.creates.append(body)
        self._create_kinds.append(kind)
        self.counts["create"] += 1
        self.counts[f"create:{kind}"] += 1
        task_id = uuid.uuid4().hex
        script = self._next_script(body)
        if results is not None:
            script = attrs.evolve(script, videos=results)
        task = self._new_task(task_id, task_type, body, script)
        task["ext"] = ext
        task["extensions"] = extensions
        if isinstance(body.get("callBackUrl"), str) and body["callBackUrl"]:
            self._schedule_callback(task_id, body["callBackUrl"])
        return _envelope(200, "success", {"taskId": task_id})

    async def _create(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "create", self._extend)

    def _original(self, body: Any) -> dict[str, Any]:
        problem = kinds.check_generate(body)
        if problem is not None:
            return problem
        results, ext = kinds.generate_results(body)
        return self._accept("generate", body, body["taskType"], results=results, ext=ext)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "generate", self._original)

    def _image_action(self, kind: str, body: Any) -> dict[str, Any]:
        upscale = kind == "upscale"
        problem = kinds.check_image_action(
            body,
            self.tasks,
            sources=kinds.UPSCALE_SOURCES if upscale else kinds.VARY_SOURCES,
            strict=self.strict_sources,
        )
        if problem is not None:
            return problem
        task_type = kinds.UPSCALE_TYPE if upscale else kinds.VARY_TYPE
        return self._accept(kind, body, task_type, results=1 if upscale else 4, ext="jpeg")

    async def _upscale(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(
            request, "upscale", lambda body: self._image_action("upscale", body)
        )

    async def _vary(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "vary", functools.partial(self._image_action, "vary"))

    async def _record_info(self, request: web.Request) -> web.StreamResponse:
        task_id = request.query.get("taskId", "")

        def act(_: Any) -> dict[str, Any]:
            self.counts["poll"] += 1
            if not task_id:
                return _envelope(500, "taskId: This field is required")
            task = self.tasks.get(task_id)
            if task is None:
                return _envelope(422, "recordInfo is null")
            return _envelope(200, "success", self._record_data(task))

        return await self._serve(request, "record", act)

    async def _credit(self, request: web.Request) -> web.StreamResponse:
        def act(_: Any) -> dict[str, Any]:
            value = float(self.credits) if self.credits != int(self.credits) else int(self.credits)
            return _envelope(200, "success", value)

        return await self._serve(request, "credit", act)

    async def _download_url(self, request: web.Request) -> web.StreamResponse:
        def act(body: Any) -> dict[str, Any]:
            url = body.get("url") if isinstance(body, dict) else None
            if not isinstance(url, str) or not url.startswith(f"{self.url}/files/"):
                return _envelope(422, "The url is not a kie.ai result url")
            token = uuid.uuid4().hex[:12]
            return _envelope(200, "success", f"{url}?token={token}")

        return await self._serve(request, "download_url", act)

    def file_bytes(self, task_id: str, name: str) -> bytes:
        """The deterministic content of a served result file."""
        seed = hashlib.sha256(f"{task_id}/{name}".encode()).digest()
        whole, rest = divmod(self.file_size, len(seed))
        return seed * whole + seed[:rest]

    def _file_chunks(self, task_id: str, name: str, size: int) -> Iterator[bytes]:
        # The content of file_bytes, made 64 KiB at a time: a large file never sits in memory.
        block = hashlib.sha256(f"{task_id}/{name}".encode()).digest() * 2048
        sent = 0
        while sent < size:
            chunk = block[: min(len(block), size - sent)]
            sent += len(chunk)
            yield chunk

    async def _file(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        name = request.match_info["name"]
        self._remember(request, None)
        self.counts["request:file"] += 1
        if task_id not in self.tasks:
            return web.Response(status=404, text="Not Found")
        if self.files_expired and "token" not in request.query:
            self.counts["file:403"] += 1
            return web.Response(status=403, text="AccessDenied: Request has expired")
        fault = self._draw("file")
        if fault is not None:
            self.counts[f"fault:{fault}"] += 1
        if fault == "drop_before":
            return self._drop(request)
        if fault == "rate_limited":
            return web.Response(status=429, text="Too Many Requests")
        if fault in ("html_502", "server_error", "maintenance"):
            return web.Response(status=502, text="<html>502 Bad Gateway</html>")
        cut = fault in ("truncated", "drop_after", "hang")
        self.counts["file"] += 1
        self._file_streams += 1
        self.peak_file_streams = max(self.peak_file_streams, self._file_streams)
        try:
            if fault == "slow":
                assert self._closing is not None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.faults.slow_seconds)
            kind = "image/jpeg" if name.endswith(".jpeg") else "video/mp4"
            response = web.StreamResponse(headers={"Content-Type": kind})
            response.content_length = self.file_size
            await response.prepare(request)
            size = self.file_size // 2 if cut else self.file_size
            for chunk in self._file_chunks(task_id, name, size):
                await response.write(chunk)
            if fault == "hang":
                assert self._closing is not None
                await self._closing.wait()
            if cut:
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
            return response
        finally:
            self._file_streams -= 1

    # -- callbacks -----------------------------------------------------------------------------

    def callback_payload(self, task_id: str) -> dict[str, Any]:
        """The body kie.ai POSTs to ``callBackUrl`` when ``task_id`` ends, as it would be sent
        now: ``{"code": 200|500, "msg": ..., "data": {"taskId", "promptJson", "resultUrls"}}``
        with the result URLs as plain strings (``null`` on failure)."""
        task = self.tasks[task_id]
        script: TaskScript = task["script"]
        ok = script.flag == 1
        urls = self._result_urls(task)
        return _envelope(
            200 if ok else 500,
            "success" if ok else (script.error_message or "generation failed"),
            {
                "taskId": task_id,
                "promptJson": task["param_json"],
                "resultUrls": urls if ok else None,
            },
        )

    def _schedule_callback(self, task_id: str, url: str) -> None:
        if self._closing is None or self._closing.is_set():
            return
        delivery = asyncio.ensure_future(self._deliver_callback(task_id, url))
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)

    async def _deliver_callback(self, task_id: str, url: str) -> None:
        task = self.tasks[task_id]
        delay = task["ends_at"] - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task["polls_left"] = 0
        if self.callback_lead > 0:
            task["ends_at"] = time.monotonic() + self.callback_lead
        if task["completed_wall"] is None:
            task["completed_wall"] = datetime.now(timezone.utc)
        if self._rng.random() < self.callback_drop_rate:
            self.counts["callback:dropped"] += 1
            return
        body = json.dumps(self.callback_payload(task_id)).encode()
        for _ in range(1 + self.callback_duplicates):
            await self._post_callback(url, task_id, body)

    async def _post_callback(self, url: str, task_id: str, body: bytes) -> None:
        if self._callback_session is None:
            self._callback_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        for attempt in range(4):  # kie.ai retries a failed delivery 3 times, then gives up
            if attempt:
                await asyncio.sleep(self.callback_retry_delay)
            headers = {"Content-Type": "application/json", "User-Agent": "kie-callback/1.0"}
            if self.callback_key is not None:
                stamp = int(time.time())
                headers["X-Webhook-Timestamp"] = str(stamp)
                headers["X-Webhook-Signature"] = self.sign(self.callback_key, task_id, stamp)
            try:
                async with self._callback_session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    status = answer.status
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                status = 0
            if status == 200:
                self.counts["callback:delivered"] += 1
                return
            self.counts["callback:failed"] += 1

    @staticmethod
    def sign(key: str, task_id: str, timestamp: int) -> str:
        """kie's webhook signature: ``base64(HMAC-SHA256(key, taskId + "." + timestamp))``."""
        digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256)
        return base64.b64encode(digest.digest()).decode()


def fast_client(server: FakeKieServer, **kwargs: Any) -> KieClient:
    """A :class:`KieClient` for ``server`` that never sleeps: zero-wait polling and retries,
    no client-side rate limit, short timeouts. Keyword arguments override any setting.

    Example::

        async with FakeKieServer() as server, fast_client(server) as kie:
            record = await (await kie.extend_video("src", prompt="go"))
    """
    settings: dict[str, Any] = {
        "api_key": server.api_key,
        "base_url": server.url,
        "poll": PollPolicy.zero_wait(),
        "retry": RetryPolicy.zero_wait(),
        "rate_limit": None,
        "timeout": 5.0,
        "connect_timeout": 5.0,
        "download": DownloadPolicy(read_timeout=5.0),
    }
    settings.update(kwargs)
    return KieClient(**settings)


def _parse_rate(text: str) -> tuple[int, float]:
    count, _, per = text.partition("/")
    return int(count), float(per or 10)


async def _serve_forever(args: argparse.Namespace) -> None:
    server = FakeKieServer(
        api_key=args.api_key,
        rate_limit=_parse_rate(args.rate_limit) if args.rate_limit else None,
        record_requests=False,
        host=args.host,
        port=args.port,
        extend_extensions=not args.refuse_reextend,
        max_extensions=args.max_extensions,
    )
    server.default_script = TaskScript(polls=args.polls, seconds=args.seconds)
    stop = asyncio.Event()
    # SIGTERM ends the run cleanly, so the counts below reach a parent process (benchmarks
    # read how many creates were accepted or rejected with 429 from them).
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows loops
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        print(server.url, flush=True)  # noqa: T201 - the parent process reads the URL here
        await stop.wait()
    print(json.dumps(dict(server.counts), sort_keys=True), flush=True)  # noqa: T201


_MAIN_HELP = """\
Run a fake kie.ai on this machine until interrupted, for trying a client without a key:

  python -m kie_async.testing --port 8765

The first line on standard output is the server's URL (pass it as the client's base URL).
On SIGTERM it stops and prints its counts ("create", "poll", "rejected:429", ...) as one
JSON object on a last line; Ctrl-C just stops it."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kie_async.testing",
        description=_MAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (127.0.0.1: loopback)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="the port to listen on (0: a free one, printed)"
    )
    parser.add_argument(
        "--api-key",
        default=DEFAULT_API_KEY,
        metavar="KEY",
        help=f"the key clients must send as 'Authorization: Bearer KEY' ({DEFAULT_API_KEY})",
    )
    parser.add_argument(
        "--rate-limit",
        metavar="N/SECONDS",
        help="refuse creates beyond N per SECONDS with 429, as kie.ai does, e.g. 20/10 "
        "(default: no limit)",
    )
    parser.add_argument(
        "--polls",
        type=int,
        default=0,
        metavar="N",
        help="polls that answer 'generating' before each task ends (0)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds after its creation before each task ends (0)",
    )
    parser.add_argument(
        "--refuse-reextend",
        action="store_true",
        help="refuse (422) to extend a video that is itself an extension's result",
    )
    parser.add_argument(
        "--max-extensions",
        type=int,
        metavar="N",
        help="refuse (422) an extension making a chain of more than N (default: no limit)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run a fake kie.ai until interrupted: ``python -m kie_async.testing --port 8765``.

    The first line on stdout is the server's URL. On SIGTERM it stops and prints its counts
    (``"create"``, ``"poll"``, ``"rejected:429"``, ...) as one JSON object on a last line.
    """
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args))


if __name__ == "__main__":
    main()
