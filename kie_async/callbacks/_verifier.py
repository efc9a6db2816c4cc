"""CallbackVerifier: the core every receiver shares, from a request's ``(body, headers)`` to an
answer (status and JSON) and, for a new delivery, the event handed to the app.

It checks the size, :func:`verify_callback`, and the :class:`ReplayStore`; the framework
adapters (:mod:`kie_async.callbacks.starlette`, :class:`CallbackReceiver`, the Django and Flask
recipes) only read the request and write the answer.
"""

from __future__ import annotations

import collections
import inspect
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from .._errors import ConfigurationError, KieError
from .._retry import within
from ._errors import CallbackVerificationError
from ._events import CallbackEvent
from ._replays import MemoryReplayStore, ReplayStore
from ._verify import Headers, check_settings, verify_callback

__all__ = ["CallbackAnswer", "CallbackVerifier", "OnEvent", "call"]

log = logging.getLogger("kie_async")

#: What a verifier hands each new event to: a function, sync or async.
OnEvent = Callable[[CallbackEvent], Awaitable[None] | None]

_MESSAGES = {200: "success", 400: "bad request", 401: "unauthorized", 413: "too large"}


@attrs.frozen
class CallbackAnswer:
    """What to answer one callback POST: :attr:`status` and the JSON :attr:`content`.

    Attributes:
        status: the HTTP status (200; 400, 401, 413 refused; 500 or 503 so kie.ai retries).
        event: the verified event (``None`` when refused).
        new: whether the event is a new delivery (``False`` for a replay, also answered 200).
    """

    status: int
    event: CallbackEvent | None = None
    new: bool = False

    @property
    def content(self) -> bytes:
        """The JSON body to send: ``{"code": status, "msg": ...}``."""
        message = _MESSAGES.get(self.status, "try again later")
        return json.dumps({"code": self.status, "msg": message}).encode()


class CallbackVerifier:
    """Verifies callback deliveries, drops replays, and says what to answer: the core of every
    receiver, whatever serves the HTTP.

    Args:
        key: the account's webhook HMAC key, or ``None`` with ``allow_unsigned=True``.
        allow_unsigned: accept unsigned callbacks (an account without a webhook key; only on
            a private network).
        tolerance: the freshness window in seconds, both directions (default 300).
        replays: where deliveries already seen are kept: a :class:`MemoryReplayStore` by
            default (this process), a :class:`RedisReplayStore` for several replicas.
        max_body: the largest body accepted, in bytes (default 64 KiB).

    Attributes:
        counts: what happened: ``"accepted"``, ``"replayed"``, ``"rejected:<status>"``,
            ``"failed"`` (the app's code raised or overran; answered 500).

    Raises:
        ConfigurationError: an invalid setting, or no key without ``allow_unsigned``.

    Example::

        verifier = CallbackVerifier(key=os.environ["KIE_WEBHOOK_KEY"])

        async def kie_callback(request):                  # a Django async view
            answer = await verifier.answer(request.body, request.headers, on_event=save)
            return HttpResponse(answer.content, status=answer.status,
                                content_type="application/json")
    """

    def __init__(
        self,
        key: str | bytes | None,
        *,
        allow_unsigned: bool = False,
        tolerance: float = 300.0,
        replays: ReplayStore | None = None,
        max_body: int = 64 * 1024,
    ) -> None:
        check_settings(key, allow_unsigned, tolerance)
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
            raise ConfigurationError("max_body", f"must be an int >= 1, got {max_body!r}")
        if replays is not None and not isinstance(replays, ReplayStore):
            raise ConfigurationError("replays", "must be a ReplayStore (first_seen, forget)")
        self._key = key
        self.allow_unsigned = allow_unsigned
        self.tolerance = float(tolerance)
        self.replays: ReplayStore = MemoryReplayStore() if replays is None else replays
        self.max_body = max_body
        self.counts: collections.Counter[str] = collections.Counter()

    def __repr__(self) -> str:
        signed = "signed" if self._key is not None else "unsigned"
        return f"<CallbackVerifier {signed}, tolerance {self.tolerance:g}s>"

    def verify(self, body: bytes, headers: Headers, *, now: float | None = None) -> CallbackEvent:
        """:func:`verify_callback` with this verifier's settings (raises the same errors)."""
        return verify_callback(
            body,
            headers,
            key=self._key,
            tolerance=self.tolerance,
            now=now,
            allow_unsigned=self.allow_unsigned,
        )

    async def check(
        self, body: bytes, headers: Headers, *, now: float | None = None
    ) -> CallbackAnswer:
        """Verify one delivery and check it against the replay store, without handing it to
        anyone: the answer's ``event`` is set and ``new`` says whether it was seen before."""
        if len(body) > self.max_body:
            return self._refused(413, f"a {len(body)}-byte body is over {self.max_body} bytes")
        try:
            event = self.verify(body, headers, now=now)
        except CallbackVerificationError as exc:
            return self._refused(exc.status, exc.reason)
        return await self.check_replay(event, now=now)

    async def check_replay(
        self, event: CallbackEvent, *, now: float | None = None
    ) -> CallbackAnswer:
        """Check a verified ``event`` against the replay store (and remember it): ``new`` is
        false for a delivery seen within the window; status 503 when the store failed."""
        clock = time.time() if now is None else now
        ttl = (
            self.tolerance if event.timestamp is None else event.timestamp + self.tolerance - clock
        )
        try:
            new = await self.replays.first_seen(event.replay_key, max(1.0, math.ceil(ttl)))
        except KieError as exc:  # the replay store failed: kie.ai retries a 503
            log.warning("callback for task %s answered 503: %s", event.task_id, exc)
            self.counts["rejected:503"] += 1
            return CallbackAnswer(503, event)
        if not new:
            self.counts["replayed"] += 1
            log.debug("dropped a replayed callback for task %s", event.task_id)
            return CallbackAnswer(200, event, new=False)
        self.counts["accepted"] += 1
        return CallbackAnswer(200, event, new=True)

    async def answer(
        self,
        body: bytes,
        headers: Headers,
        on_event: OnEvent,
        *,
        handler_timeout: float = 8.0,
    ) -> CallbackAnswer:
        """Verify one delivery and hand a new one to ``on_event`` (awaited, at most
        ``handler_timeout`` seconds), then say what to answer.

        Refused deliveries get 400, 401 or 413 and reach nobody; replays get 200 and reach
        nobody. When ``on_event`` raises or overruns (it is then cancelled), the delivery is
        forgotten and the answer is 500, so kie.ai's retry is taken as new: keep
        ``on_event`` short (store the event, queue the work) and idempotent on the task id.
        """
        checked = await self.check(body, headers)
        if not checked.new or checked.event is None:
            return checked
        event = checked.event
        try:
            done = await within(call(on_event, event), handler_timeout)
        except Exception:
            log.exception("on_event raised for the callback of task %s", event.task_id)
            done = None
        if done is None:
            self.counts["failed"] += 1
            log.warning(
                "the callback of task %s was answered 500 (on_event failed or took over %gs); "
                "kie.ai will retry it",
                event.task_id,
                handler_timeout,
            )
            try:
                await self.replays.forget(event.replay_key)
            except KieError as exc:
                log.warning("could not forget the callback of task %s: %s", event.task_id, exc)
            return CallbackAnswer(500, event)
        return checked

    def _refused(self, status: int, reason: str) -> CallbackAnswer:
        self.counts[f"rejected:{status}"] += 1
        log.warning("rejected a callback with HTTP %d: %s", status, reason)
        return CallbackAnswer(status)


async def call(on_event: OnEvent, event: CallbackEvent) -> bool:
    """Call ``on_event``, awaiting what it returns if it is awaitable."""
    result: Any = on_event(event)
    if inspect.isawaitable(result):
        await result
    return True
