"""CallbackReceiver: the aiohttp side of callbacks, from a POST to your code.

It bounds and reads each body, verifies it and drops replays (:mod:`._verifier`, the core of
every receiver), drops repeated bodies (:mod:`._dedupe`) and hands each new event to
``on_event``, to every iterator (:mod:`._stream`) and to clients waiting on the task.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

from aiohttp import ClientPayloadError, web

from .._errors import ConfigurationError
from .._protocol.records import TaskRecord
from .._retry import within
from .._text import printable
from ._dedupe import MAX_BODIES, Deliveries, Verdict
from ._errors import CallbackVerificationError
from ._events import CallbackEvent
from ._replays import ReplayStore
from ._stream import EventStream
from ._verifier import CallbackVerifier, OnEvent, call

log = logging.getLogger("kie_async")

# Self for subclasses (typing.Self is 3.11+, and typing_extensions is no dependency).
_CallbackReceiverT = TypeVar("_CallbackReceiverT", bound="CallbackReceiver")


class CallbackReceiver:
    """Receives kie.ai's callback POSTs and hands each finished task to your code, once per
    distinct body.

    Mount :meth:`handler` in your own aiohttp app, or use :meth:`make_app`, or let the receiver
    serve itself with :meth:`start`. For every POST it:

    1. refuses bodies over ``max_body`` bytes (HTTP 413), bodies not sent within
       ``body_timeout`` seconds (HTTP 408, and the connection is closed) and unreadable ones
       (HTTP 400); a client that disconnects mid-body is logged in one line;
    2. with a ``key``, checks ``X-Webhook-Signature`` and the ``X-Webhook-Timestamp`` freshness
       window; unsigned, forged and stale callbacks are logged and answered HTTP 401, and never
       passed on;
    3. answers HTTP 200 at once; a delivery with the same body as one already seen for its
       task (kie.ai may deliver more than once) is acknowledged and dropped. A different body
       for the same task is passed on too, with a warning: the signature does not cover the
       body, so a replayed signature with an altered body must not shut out the real one.
       Waiting clients confirm with ``record-info`` whichever arrives;
    4. passes the :class:`CallbackEvent` on: to ``on_event`` (sync or async, run in the
       background; its exceptions are logged), to every open iterator (``async for event in
       receiver``), and to clients waiting on the task (``KieClient(callbacks=receiver, ...)``).

    Args:
        key: the account's webhook HMAC key; without it every well-formed callback is accepted
            (``event.signature_valid`` is ``False``), which is only safe on a private network.
        on_event: called with each new :class:`CallbackEvent`.
        max_age: the signature freshness window in seconds, both directions (default 300).
        max_body: the largest body accepted, in bytes (default 64 KiB).
        body_timeout: seconds a client has to send its whole body (default 10; kie.ai waits
            15 s for the answer), so slow or stalled clients cannot pile up.
        remember: how many task ids are remembered to drop repeated deliveries.
        queue_size: how many events an iterator may fall behind before new ones are dropped
            for it (with a warning; :meth:`get` still has them).
        replays: where deliveries seen are kept for the window, so replays are dropped: a
            :class:`MemoryReplayStore` by default, a :class:`RedisReplayStore` for replicas.
        backlog: the listen backlog of :meth:`start` (default 65535, capped by the system's
            ``somaxconn``), so a burst of deliveries is queued rather than refused.

    Attributes:
        counts: what happened: ``"accepted"``, ``"duplicate"``, ``"conflicting"`` (accepted
            with another body than an earlier delivery of its task), ``"rejected:401"``,
            ``"rejected:400"``, ``"rejected:408"``, ``"rejected:413"``, ``"rejected:503"``,
            ``"disconnected"`` (the client left mid-body), ``"replayed"`` (a delivery seen
            already within the window, also counted in ``"duplicate"``).

    Raises:
        ConfigurationError: an invalid setting.

    Example::

        async def store(event: CallbackEvent) -> None:
            await db.save(event.task_id, event.result_urls)

        receiver = CallbackReceiver(key=webhook_key, on_event=store)
        app = receiver.make_app("/kie/callback")   # run it with aiohttp's web.run_app(app)
    """

    def __init__(
        self,
        key: str | bytes | None = None,
        *,
        on_event: OnEvent | None = None,
        max_age: float = 300.0,
        max_body: int = 64 * 1024,
        body_timeout: float = 10.0,
        remember: int = 10_000,
        queue_size: int = 1000,
        replays: ReplayStore | None = None,
        backlog: int = 65535,
    ) -> None:
        if isinstance(max_age, bool) or not isinstance(max_age, int | float) or not max_age > 0:
            raise ConfigurationError("max_age", f"must be a number > 0, got {max_age!r}")
        number = isinstance(body_timeout, int | float) and not isinstance(body_timeout, bool)
        if not number or not 0 < body_timeout < math.inf:
            raise ConfigurationError(
                "body_timeout", f"must be a finite number > 0, got {body_timeout!r}"
            )
        for name, value in (
            ("max_body", max_body),
            ("remember", remember),
            ("queue_size", queue_size),
            ("backlog", backlog),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(name, f"must be an int >= 1, got {value!r}")
        if on_event is not None and not callable(on_event):
            raise ConfigurationError("on_event", "must be callable")
        self._key = key
        self._on_event = on_event
        self.max_age = float(max_age)
        self.max_body = max_body
        self.backlog = backlog
        # The core every receiver shares: verify_callback, then the replay store.
        self._verifier = CallbackVerifier(
            key,
            allow_unsigned=key is None,
            tolerance=self.max_age,
            replays=replays,
            max_body=max_body,
        )
        self.body_timeout = float(body_timeout)
        self._queue_size = queue_size
        self._seen = Deliveries(remember)
        self._watchers: dict[str, list[asyncio.Event]] = {}
        self._streams: set[EventStream] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.counts: collections.Counter[str] = collections.Counter()
        self.closed = False
        self.url = ""

    def __repr__(self) -> str:
        signed = "signed" if self._key is not None else "unsigned"
        return f"<CallbackReceiver {signed} {self.url or 'not serving'}>"

    @property
    def signed(self) -> bool:
        """Whether callbacks must carry a valid signature (a key was given)."""
        return self._key is not None

    # -- serving -------------------------------------------------------------------------------

    def make_app(self, path: str = "/") -> web.Application:
        """An aiohttp application that receives callbacks at ``path`` (POST) and closes this
        receiver when it shuts down.

        Example::

            web.run_app(receiver.make_app("/kie/callback"), port=8080)
        """
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post(path, self.handler)

        async def _closing(_: web.Application) -> None:
            await self.close()

        app.on_cleanup.append(_closing)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0, path: str = "/") -> str:
        """Serve :meth:`make_app` on ``host:port`` (``0``: any free port) until :meth:`close`;
        returns the local URL, e.g. ``"http://127.0.0.1:40321/"`` (also in :attr:`url`).

        kie.ai must reach it from the internet: put it behind a reverse proxy or tunnel with
        a public https URL, and give that URL to the client as ``callback_url``.

        Raises:
            RuntimeError: it is already serving, or closed.
            OSError: the address cannot be bound.
        """
        if self._runner is not None or self.closed:
            raise RuntimeError("this CallbackReceiver is already serving, or closed")
        runner = web.AppRunner(self.make_app(path), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=self.backlog)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        sockets = getattr(site._server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound}{path}"
        return self.url

    async def close(self) -> None:
        """Stop serving (if :meth:`start` was used), end every iterator, and wait for running
        ``on_event`` calls (they are cancelled if still running after 5 seconds). Later
        callbacks are answered HTTP 503, so kie.ai retries them. Safe to call more than once."""
        self.closed = True
        for stream in list(self._streams):
            stream.offer(None)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._tasks:
            pending = set(self._tasks)
            _, late = await asyncio.wait(pending, timeout=5.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def __aenter__(self: _CallbackReceiverT) -> _CallbackReceiverT:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the handler -----------------------------------------------------------------------------

    async def handler(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp request handler: ``app.router.add_post("/kie", receiver.handler)``."""
        if self.closed:
            self.counts["rejected:503"] += 1
            return web.json_response({"code": 503, "msg": "not accepting callbacks"}, status=503)
        peer = request.remote or "?"
        length = request.content_length
        if length is not None and length > self.max_body:
            return self._reject(413, f"a {length}-byte body is over the limit", peer)
        body = bytearray()
        try:
            complete = await within(self._read_body(request, body), self.body_timeout)
        except (OSError, ClientPayloadError) as exc:
            # The client went away: nobody is left to answer, and it is no server error.
            self.counts["disconnected"] += 1
            announced = f" of {length}" if length is not None else ""
            log.warning(
                "a callback from %s ended mid-body after %d%s bytes (%s)",
                peer,
                len(body),
                announced,
                type(exc).__name__,
            )
            return web.Response(status=400)
        if complete is None:
            return await self._cut(request, peer, len(body))
        if len(body) > self.max_body:
            return self._reject(413, f"the body is over {self.max_body} bytes", peer)
        try:
            event = self._verifier.verify(bytes(body), request.headers)
        except CallbackVerificationError as exc:
            where = f"task {exc.task_id}: " if exc.task_id is not None else ""
            return self._reject(exc.status, where + exc.reason, peer)
        answer = await self._verifier.check_replay(event)
        if answer.status != 200:
            self.counts[f"rejected:{answer.status}"] += 1
            return web.Response(body=answer.content, status=answer.status)
        if answer.new:
            self.accept(event)
        else:  # a replay within the window
            self.counts.update(("duplicate", "replayed"))
        return web.json_response({"code": 200, "msg": "success"})

    async def _read_body(self, request: web.Request, body: bytearray) -> bool:
        """Read the body into ``body``, stopping once it is over ``max_body``."""
        while len(body) <= self.max_body:
            chunk = await request.content.read(self.max_body + 1 - len(body))
            if not chunk:
                break
            body += chunk
        return True

    async def _cut(self, request: web.Request, peer: str, received: int) -> web.StreamResponse:
        """Answer 408 to a client too slow to send its body, and close its connection (aiohttp
        would otherwise keep reading the rest of it for a while)."""
        self.counts["rejected:408"] += 1
        log.warning(
            "rejected a callback from %s with HTTP 408: %d bytes of body in %gs, too slow",
            peer,
            received,
            self.body_timeout,
        )
        response = web.json_response({"code": 408, "msg": "request timeout"}, status=408)
        response.force_close()
        with contextlib.suppress(ConnectionError):  # it may be gone already: nothing to tell
            await response.prepare(request)
            await response.write_eof()
        if request.transport is not None:
            request.transport.close()
        return response

    def _reject(self, status: int, reason: str, peer: str) -> web.Response:
        self.counts[f"rejected:{status}"] += 1
        # The reason may quote the sender's task id: escaped, so it cannot forge log lines.
        log.warning("rejected a callback from %s with HTTP %d: %s", peer, status, printable(reason))
        return web.json_response({"code": status, "msg": "rejected"}, status=status)

    def accept(self, event: CallbackEvent) -> bool:
        """Pass ``event`` on as if it had arrived (for receivers on other frameworks, after
        :func:`verify_callback`). Returns ``False`` for a body
        already seen for its task, which is dropped."""
        verdict = self._seen.add(event)
        if verdict is Verdict.DUPLICATE:
            self.counts["duplicate"] += 1
            log.debug("dropped a repeated callback for task %s", event.task_id)
            return False
        if verdict is Verdict.FLOOD:
            self.counts["duplicate"] += 1
            log.warning(
                "dropped a callback for task %s: %d different bodies came already",
                event.task_id,
                MAX_BODIES,
            )
            return False
        if verdict is Verdict.CONFLICTING:
            self.counts["conflicting"] += 1
            log.warning(
                "callback for task %s has another body than an earlier one; passing it on "
                "as well (the signature does not cover the body: confirm with record-info)",
                event.task_id,
            )
        self.counts["accepted"] += 1
        log.debug("callback for task %s: code %s", event.task_id, event.code)
        # An acknowledgment (no result, no outcome) does not end the task: waits go on.
        for arrived in self._watchers.get(event.task_id, ()) if event.terminal else ():
            arrived.set()
        for stream in list(self._streams):
            stream.offer(event)
        if self._on_event is not None:
            task = asyncio.ensure_future(self._run_user_code(self._on_event, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    def _confirm(self, record: TaskRecord) -> None:
        """Keep ``record`` (a final ``record-info`` answer) on the task's event: the body that
        agrees with it, or else the latest one (whose :attr:`~CallbackEvent.confirmed` is then
        ``False``)."""
        if self._seen.confirm(record) is False:
            log.warning(
                "the callback for task %s does not agree with record-info; record-info wins",
                record.task_id,
            )

    @staticmethod
    async def _run_user_code(on_event: OnEvent, event: CallbackEvent) -> None:
        try:
            await call(on_event, event)
        except Exception:
            log.exception("on_event raised for the callback of task %s", event.task_id)

    # -- consuming events --------------------------------------------------------------------------

    def events(self) -> AsyncIterator[CallbackEvent]:
        """An async iterator over new events from now on; it ends when the receiver closes.

        ``async for event in receiver`` is the same. Each iterator gets every event.
        """
        return EventStream(self._streams, self._queue_size, closed=self.closed)

    def __aiter__(self) -> AsyncIterator[CallbackEvent]:
        return self.events()

    def get(self, task_id: str) -> CallbackEvent | None:
        """The event received for ``task_id``, if it is among the remembered ones: once a
        waiting client confirmed it, the event whose body agrees with ``record-info``, with
        that record in :attr:`~CallbackEvent.record`; before, the latest one received."""
        return self._seen.get(task_id)

    @contextlib.contextmanager
    def watch(self, task_id: str) -> Iterator[asyncio.Event]:
        """A context manager giving an ``asyncio.Event`` of your own that is set when a
        callback for ``task_id`` that says the task ended is accepted (at once, if one
        already was; acknowledgments do not set it). Clear it to hear of the next one
        (another body for the same task). This is what waiting clients use.

        Example::

            with receiver.watch(handle.task_id) as arrived:
                await arrived.wait()
        """
        arrived = asyncio.Event()
        if self._seen.ended(task_id):  # an acknowledgment alone does not count
            arrived.set()
        watchers = self._watchers.setdefault(task_id, [])
        watchers.append(arrived)
        try:
            yield arrived
        finally:
            watchers.remove(arrived)
            if not watchers and self._watchers.get(task_id) is watchers:
                del self._watchers[task_id]
