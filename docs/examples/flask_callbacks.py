"""kie.ai's callbacks in Flask: a plain (sync) view over verify_callback (one file, runnable).

Serve it with any WSGI server::

    export KIE_WEBHOOK_KEY=...
    waitress-serve --port 8000 flask_callbacks:app
"""

from __future__ import annotations

import os
import threading
import time

from flask import Flask, request

from kie_async.callbacks import CallbackEvent, CallbackVerificationError, verify_callback

KEY = os.environ["KIE_WEBHOOK_KEY"]
TOLERANCE = 300.0

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 64 * 1024  # a larger body is answered 413
events: list[CallbackEvent] = []  # your database

# The deliveries seen within the window, so a replay is dropped. One process only: with
# several, use Redis (SET kie:seen:<replay_key> 1 NX EX 600) or a unique key in your database.
_seen: dict[str, float] = {}
_lock = threading.Lock()


def first_time(event: CallbackEvent) -> bool:
    now = time.monotonic()
    with _lock:
        for key in [k for k, until in _seen.items() if until < now]:
            del _seen[key]
        if event.replay_key in _seen:
            return False
        _seen[event.replay_key] = now + 2 * TOLERANCE
        return True


@app.post("/kie/callback")
def kie_callback() -> tuple[dict[str, object], int]:
    try:
        event = verify_callback(request.get_data(), request.headers, key=KEY, tolerance=TOLERANCE)
    except CallbackVerificationError as exc:
        return {"code": exc.status, "msg": "rejected"}, exc.status
    if first_time(event):
        events.append(event)  # keep it short: kie.ai waits 15 s for the answer
    return {"code": 200, "msg": "success"}, 200


@app.get("/received")
def received() -> str:
    """What came so far (for the example's test)."""
    return ",".join(e.task_id for e in events)
