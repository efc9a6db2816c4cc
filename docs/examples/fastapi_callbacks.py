"""A FastAPI app that extends videos and saves each result when kie.ai's callback says so.

Run it (kie.ai must reach PUBLIC_URL: a reverse proxy or a tunnel in front of port 8000)::

    export KIE_API_KEY=...  KIE_WEBHOOK_KEY=...  PUBLIC_URL=https://hooks.example.com
    uvicorn fastapi_callbacks:app --port 8000
    curl -X POST 'http://127.0.0.1:8000/extend/ee603959?prompt=Into+a+nebula'
    curl http://127.0.0.1:8000/results/<task id>

Each callback is verified (signature, window, replays), then ``record-info`` decides: the
signature covers only the task id and the time, never the body's URLs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException

from kie_async import KieClient, TaskRecord
from kie_async.callbacks import CallbackEvent
from kie_async.callbacks.starlette import CallbackEndpoint

PUBLIC_URL = os.environ["PUBLIC_URL"].rstrip("/")
results: dict[str, TaskRecord] = {}  # your database
clients: list[KieClient] = []  # the app's one client, while it runs


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with KieClient(callback_url=f"{PUBLIC_URL}/kie/callback") as kie:
        clients.append(kie)
        yield
        clients.clear()


async def on_callback(event: CallbackEvent) -> None:
    """A new, verified delivery: confirm it and keep the record (then it is answered 200)."""
    if not event.terminal:
        return  # an acknowledgment: the task goes on, its final callback comes later
    record = await clients[0].confirm(event)  # one record-info call decides
    if not record.status.is_terminal:
        # record-info lags its callback: raising answers 500, and kie.ai delivers it again
        raise RuntimeError(f"task {record.task_id} is not final on record-info yet")
    results[record.task_id] = record


app = FastAPI(lifespan=lifespan)
callbacks = CallbackEndpoint(on_callback, key=os.environ["KIE_WEBHOOK_KEY"])
app.add_route("/kie/callback", callbacks.endpoint, methods=["POST"])


@app.post("/extend/{source}")
async def extend(source: str, prompt: str) -> dict[str, str]:
    """Submit an extension of ``source``; its callback comes to /kie/callback."""
    handle = await clients[0].extend_video(source, prompt=prompt)
    return {"task_id": handle.task_id}


@app.get("/results/{task_id}")
async def result(task_id: str) -> dict[str, object]:
    """The confirmed outcome of a task, once its callback came."""
    record = results.get(task_id)
    if record is None:
        raise HTTPException(404, "no confirmed callback for this task yet")
    return {"status": record.status.name, "result_urls": list(record.result_urls)}
