"""kie.ai's callbacks in Django: an async view over CallbackVerifier (one file, runnable).

In your project, only the view and its URL matter; the settings here make the file a project
of its own, served by any ASGI server::

    export KIE_WEBHOOK_KEY=...
    uvicorn django_callbacks:application --port 8000
"""

from __future__ import annotations

import os

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        SECRET_KEY="only-for-this-example",  # noqa: S106
        DATA_UPLOAD_MAX_MEMORY_SIZE=64 * 1024,
    )

from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from kie_async.callbacks import CallbackEvent, CallbackVerifier

verifier = CallbackVerifier(os.environ["KIE_WEBHOOK_KEY"])
events: list[CallbackEvent] = []  # your database


async def save(event: CallbackEvent) -> None:
    """A new, verified delivery (idempotent on the task id: kie.ai may deliver again)."""
    events.append(event)


async def kie_callback(request: HttpRequest) -> HttpResponse:
    """The callback view: verified, replays dropped, ``save`` awaited, answered in time."""
    answer = await verifier.answer(request.body, request.headers, on_event=save)
    return HttpResponse(answer.content, status=answer.status, content_type="application/json")


async def received(request: HttpRequest) -> HttpResponse:
    """What came so far (for the example's test)."""
    return HttpResponse(",".join(e.task_id for e in events))


# kie.ai sends no CSRF token: exempt the view (only POST is allowed).
urlpatterns = [
    path("kie/callback", csrf_exempt(require_POST(kie_callback))),
    path("received", received),
]
application = get_asgi_application()
