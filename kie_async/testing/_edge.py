"""The fake server's front door: what every API request goes through before and after its
endpoint acts.

kie's edge checks (a 403 for library-default user agents, the bearer key), the recording of
every request, the answers a test scripted with :meth:`~Edge.answer_next`, and the faults
(:mod:`._faults`) turned into answers: refusals before acting, dropped connections, cut or
slow answers after it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ._faults import FAULT_KINDS, Faults
from ._kinds import Envelope, envelope
from ._scripts import RecordedRequest


class Edge:
    """The request machinery of :class:`~kie_async.testing.FakeKieServer` (a base class)."""

    api_key: str
    http_errors: bool
    record_requests: bool
    faults: Faults
    requests: list[RecordedRequest]
    counts: collections.Counter[str]
    injected: list[tuple[str, str, Any, dict[str, str]]]
    _one_shot: dict[str, collections.deque[str]]
    _scripted: dict[str, collections.deque[Envelope]]
    _closing: asyncio.Event | None

    def _setup_edge(self, *, api_key: str, http_errors: bool, record_requests: bool) -> None:
        self.api_key = api_key
        self.http_errors = http_errors
        self.record_requests = record_requests
        self.faults = Faults()
        self.requests = []
        self.counts = collections.Counter()
        self.injected = []
        self._one_shot = collections.defaultdict(collections.deque)
        self._scripted = collections.defaultdict(collections.deque)
        self._closing = None

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
        self._scripted[endpoint].extend(envelope(code, msg) for _ in range(times))

    def polls_for(self, task_id: str) -> int:
        """How many ``record-info`` requests asked about ``task_id``."""
        return sum(
            1
            for r in self.requests
            if r.path.endswith("record-info") and r.query.get("taskId") == task_id
        )

    # -- the machinery -------------------------------------------------------------------------

    def _answer(self, answer: Envelope) -> web.Response:
        status = 200
        if self.http_errors and answer["code"] != 200:
            status = int(answer["code"])
        headers = None
        if answer["code"] == 429 and self.faults.retry_after is not None:
            headers = {"Retry-After": str(self.faults.retry_after)}
        return web.json_response(answer, status=status, headers=headers)

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
            return body, self._answer(envelope(401, "You do not have access permissions"))
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
        act: Callable[[Any], Envelope],
    ) -> web.StreamResponse:
        body, refused = await self._admit(request, endpoint)
        if refused is not None:
            return refused
        scripted = self._scripted.get(endpoint)
        if scripted:
            answer = scripted.popleft()
            self.counts[f"answered:{answer['code']}"] += 1
            return self._answer(answer)
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
            return self._answer(envelope(429, "Too many requests, please try again later"))
        if fault == "maintenance":
            return self._answer(envelope(455, "Service under maintenance"))
        if fault == "server_error":
            return self._answer(envelope(500, "Internal server error"))
        if fault == "html_502":
            page = "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"
            return web.Response(status=502, text=page, content_type="text/html")
        answer = act(body)
        if fault == "drop_after":
            return self._drop(request)
        if fault == "truncated":
            text = json.dumps(answer)
            return web.Response(
                status=200, text=text[: max(1, len(text) // 2)], content_type="application/json"
            )
        if fault == "slow":
            await self._pause(self.faults.slow_seconds)
        return self._answer(answer)

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=200)

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the server closes meanwhile."""
        assert self._closing is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
