"""Receiving kie.ai's callbacks in Starlette or FastAPI: :class:`CallbackEndpoint`.

A thin adapter: it reads the request's body (bounded in size and time) and headers, lets
:class:`~kie_async.callbacks.CallbackVerifier` verify them and drop replays, awaits your
``on_event`` for a new delivery, and writes the answer. Starlette is not a dependency of
kie-async: install it yourself (the ``starlette`` extra, ``pip install starlette``, or FastAPI).

Example (FastAPI)::

    from fastapi import FastAPI
    from kie_async.callbacks import CallbackEvent
    from kie_async.callbacks.starlette import CallbackEndpoint

    async def save(event: CallbackEvent) -> None:
        ...  # store it, queue the work: answered 200 once this returns

    app = FastAPI()
    kie = CallbackEndpoint(save, key=os.environ["KIE_WEBHOOK_KEY"])
    app.add_route("/kie/callback", kie.endpoint, methods=["POST"])
"""

from __future__ import annotations

import math

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from .._errors import ConfigurationError
from .._retry import within
from ._replays import ReplayStore
from ._verifier import CallbackAnswer, CallbackVerifier, OnEvent

__all__ = ["CallbackEndpoint"]


class CallbackEndpoint:
    """A Starlette (and FastAPI) endpoint for kie.ai's callbacks: mount :meth:`endpoint`.

    Every POST is answered within kie.ai's 15-second budget: the body must arrive within
    ``body_timeout`` seconds (else 408) and ``on_event`` must finish within
    ``handler_timeout`` (else 500, and kie.ai retries). Refused callbacks get 400, 401 or 413
    and never reach ``on_event``; replays of a delivery get 200 and do not either.

    Args:
        on_event: called (and awaited, if async) with each new verified
            :class:`~kie_async.callbacks.CallbackEvent`. Keep it short and idempotent on the
            task id; the body's claims are confirmed with ``record-info``
            (:meth:`KieClient.confirm <kie_async.KieClient.confirm>`).
        key, allow_unsigned, tolerance, replays, max_body: as for
            :class:`~kie_async.callbacks.CallbackVerifier`.
        body_timeout: seconds a client has to send its body (default 5).
        handler_timeout: seconds ``on_event`` may take (default 8).

    Attributes:
        verifier: the :class:`~kie_async.callbacks.CallbackVerifier` (its ``counts``).

    Raises:
        ConfigurationError: an invalid setting.

    Example::

        kie = CallbackEndpoint(save, key=os.environ["KIE_WEBHOOK_KEY"])
        app = Starlette(routes=[Route("/kie/callback", kie.endpoint, methods=["POST"])])
    """

    def __init__(
        self,
        on_event: OnEvent,
        *,
        key: str | bytes | None,
        allow_unsigned: bool = False,
        tolerance: float = 300.0,
        replays: ReplayStore | None = None,
        max_body: int = 64 * 1024,
        body_timeout: float = 5.0,
        handler_timeout: float = 8.0,
    ) -> None:
        if not callable(on_event):
            raise ConfigurationError("on_event", "must be callable")
        for name, value in (("body_timeout", body_timeout), ("handler_timeout", handler_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(name, f"must be a number of seconds, got {value!r}")
            if not 0 < value < math.inf:
                raise ConfigurationError(name, f"must be a finite number > 0, got {value!r}")
        self.verifier = CallbackVerifier(
            key,
            allow_unsigned=allow_unsigned,
            tolerance=tolerance,
            replays=replays,
            max_body=max_body,
        )
        self._on_event = on_event
        self.body_timeout = float(body_timeout)
        self.handler_timeout = float(handler_timeout)

    async def endpoint(self, request: Request) -> Response:
        """The request handler: ``app.add_route(path, endpoint.endpoint, methods=["POST"])``."""
        limit = self.verifier.max_body
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return _send(CallbackAnswer(413))
        body = bytearray()
        try:
            read = await within(_read(request, body, limit), self.body_timeout)
        except ClientDisconnect:
            return Response(status_code=400)
        if read is None:
            self.verifier.counts["rejected:408"] += 1
            return Response(status_code=408, headers={"Connection": "close"})
        answer = await self.verifier.answer(
            bytes(body), request.headers, self._on_event, handler_timeout=self.handler_timeout
        )
        return _send(answer)


async def _read(request: Request, body: bytearray, limit: int) -> bool:
    """Read the body into ``body``, stopping once it is over ``limit``."""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            break
    return True


def _send(answer: CallbackAnswer) -> Response:
    return Response(answer.content, status_code=answer.status, media_type="application/json")
