"""The fake server's API endpoints: the four creates, ``record-info``, the credit balance and
``download-url``.

Each endpoint is a small function of the JSON body that returns kie's envelope as a plain
dict; :meth:`~kie_async.testing._edge.Edge._serve` wraps it with the edge checks and faults.
A valid create is charged (credits, and a rate limit that *rejects* as kie.ai does), becomes
a task in the store, and gets its callback scheduled.
"""

from __future__ import annotations

import collections
import functools
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs
from aiohttp import web

from . import _kinds as kinds
from . import _records as records
from ._callbacks import CallbackDelivery
from ._kinds import Envelope, envelope

#: How ``record-info`` may answer an unknown task id: ``"422"``, ``{"code": 422, "msg":
#: "recordInfo is null"}``; ``"null"``, ``{"code": 200, "msg": "success", "data": null}``.
UNKNOWN_TASK_ANSWERS = ("422", "null")


class Endpoints(CallbackDelivery):
    """The API endpoints of :class:`~kie_async.testing.FakeKieServer` (a base class)."""

    rate_limit: tuple[int, float] | None
    credits: Decimal
    task_cost: Decimal
    prices: dict[str, Decimal]
    strict_sources: bool
    extend_extensions: bool
    max_extensions: int | None
    _window: collections.deque[float]

    def _setup_endpoints(
        self,
        *,
        rate_limit: tuple[int, float] | None,
        credits: Decimal | int | str,
        task_cost: Decimal | int | str,
        prices: Mapping[str, Decimal | int | str] | None,
        strict_sources: bool,
        extend_extensions: bool,
        max_extensions: int | None,
        unknown_task: str = "422",
    ) -> None:
        if unknown_task not in UNKNOWN_TASK_ANSWERS:
            known = ", ".join(map(repr, UNKNOWN_TASK_ANSWERS))
            raise ValueError(f"unknown_task must be one of {known}, got {unknown_task!r}")
        self.unknown_task = unknown_task
        self.rate_limit = rate_limit
        self.credits = Decimal(credits)
        self.task_cost = Decimal(task_cost)
        self.prices = {key: Decimal(value) for key, value in (prices or {}).items()}
        self.strict_sources = strict_sources
        self.extend_extensions = extend_extensions
        self.max_extensions = max_extensions
        self._window = collections.deque()

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

    def cost_of(self, kind: str, body: Mapping[str, Any]) -> Decimal:
        """What a create of ``kind`` with ``body`` costs on this server: the first of
        ``prices["<taskType>:<videoBatchSize>"]``, ``prices[taskType]``, ``prices[kind]``,
        else ``task_cost``."""
        task_type = body.get("taskType")
        batch = body.get("videoBatchSize") or 1
        for key in (f"{task_type}:{batch}", task_type, kind):
            if isinstance(key, str) and key in self.prices:
                return self.prices[key]
        return self.task_cost

    def _charge(self, cost: Decimal) -> Envelope | None:
        if self.credits < cost:
            self.counts["rejected:402"] += 1
            return envelope(402, "Credits insufficient")
        if self._rate_limited():
            self.counts["rejected:429"] += 1
            return envelope(429, "Too many requests, please try again later")
        self.credits -= cost
        return None

    def _extend(self, body: Any) -> Envelope:
        problem = kinds.check_extend(
            body,
            self.tasks,
            strict=self.strict_sources,
            extend_extensions=self.extend_extensions,
            max_extensions=self.max_extensions,
        )
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
    ) -> Envelope:
        """Charge for a valid create of any kind, make its task, and schedule its callback."""
        problem = self._charge(self.cost_of(kind, body))
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
        elif self.callback_url is not None:
            self._schedule_callback(task_id, self.callback_url)
        return envelope(200, "success", {"taskId": task_id})

    async def _create(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "create", self._extend)

    def _original(self, body: Any) -> Envelope:
        problem = kinds.check_generate(body)
        if problem is not None:
            return problem
        results, ext = kinds.generate_results(body)
        return self._accept("generate", body, body["taskType"], results=results, ext=ext)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "generate", self._original)

    def _image_action(self, kind: str, body: Any) -> Envelope:
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

        def act(_: Any) -> Envelope:
            self.counts["poll"] += 1
            if not task_id:
                return envelope(500, "taskId: This field is required")
            task = self.tasks.get(task_id)
            if task is None:
                if self.unknown_task == "null":  # as kie's sibling record-info endpoints do
                    return envelope(200, "success", None)
                return envelope(422, "recordInfo is null")
            return envelope(200, "success", records.record_data(task, self.url, time.monotonic()))

        return await self._serve(request, "record", act)

    async def _credit(self, request: web.Request) -> web.StreamResponse:
        def act(_: Any) -> Envelope:
            value = float(self.credits) if self.credits != int(self.credits) else int(self.credits)
            return envelope(200, "success", value)

        return await self._serve(request, "credit", act)

    async def _download_url(self, request: web.Request) -> web.StreamResponse:
        def act(body: Any) -> Envelope:
            url = body.get("url") if isinstance(body, dict) else None
            if not isinstance(url, str) or not url.startswith(f"{self.url}/files/"):
                return envelope(422, "The url is not a kie.ai result url")
            token = uuid.uuid4().hex[:12]
            return envelope(200, "success", f"{url}?token={token}")

        return await self._serve(request, "download_url", act)

    async def _unrouted(self, request: web.Request) -> web.StreamResponse:
        # A path kie does not route: a real HTTP 404 with a Spring Boot error body and no
        # envelope (real-samples O11), as a wrong base URL or a removed endpoint meets it.
        body = {
            "timestamp": int(time.time() * 1000),
            "status": 404,
            "error": "Not Found",
            "message": "No message available",
            "path": request.path,
        }
        return web.json_response(body, status=404)
