"""The framework adapters under real servers on loopback: kie_async.callbacks.starlette under
uvicorn (Starlette and FastAPI), and the docs' examples and recipes run as they are: FastAPI and
Django under uvicorn, Flask under waitress, the aiohttp service against the fake server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn
from fastapi import FastAPI
from helpers import child_env
from starlette.applications import Starlette
from starlette.routing import Route

from kie_async.callbacks import CallbackEvent
from kie_async.callbacks.starlette import CallbackEndpoint
from kie_async.testing import FakeKieServer, TaskScript, sign_callback

KEY = "whsec-adapters"
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Server(uvicorn.Server):
    """uvicorn in this event loop, leaving the test process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free loopback port; yields its base URL."""
    port = free_port()
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.ensure_future(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start within 5 s"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def body_of(task_id: str, urls: list[str] | None = None) -> bytes:
    data = {
        "taskId": task_id,
        "promptJson": "{}",
        "resultUrls": urls or ["https://c.example/1.mp4"],
    }
    return json.dumps({"code": 200, "msg": "success", "data": data}).encode()


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers or {}) as answer,
    ):
        await answer.read()
        return answer.status


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
async def test_the_starlette_endpoint_under_uvicorn(framework: str) -> None:
    """Under uvicorn, in Starlette and in FastAPI: a signed callback reaches on_event once (a
    replay is answered 200 and dropped); forged, stale, unsigned, unreadable and oversized ones
    are refused with 401, 400 or 413 and reach nobody."""
    events: list[CallbackEvent] = []
    endpoint = CallbackEndpoint(events.append, key=KEY, max_body=4096)
    app: Any
    if framework == "fastapi":
        app = FastAPI()
        app.add_route("/kie", endpoint.endpoint, methods=["POST"])
    else:
        app = Starlette(routes=[Route("/kie", endpoint.endpoint, methods=["POST"])])
    async with serving(app) as base:
        url = base + "/kie"
        good = body_of("t1")
        headers = sign_callback(good, KEY)
        assert await post(url, good, headers) == 200
        assert await post(url, good, headers) == 200  # a replay
        stale = sign_callback(good, KEY, timestamp=int(time.time()) - 3600)
        forged = sign_callback(good, "not-the-key")
        assert await post(url, good, stale) == 401
        assert await post(url, good, forged) == 401
        assert await post(url, good) == 401
        assert await post(url, b"{not json", headers) == 400
        assert await post(url, b"x" * 5000, headers) == 413
    assert [(e.task_id, e.signature_valid, e.ok) for e in events] == [("t1", True, True)]
    counts = endpoint.verifier.counts
    assert counts["accepted"] == 1 and counts["replayed"] == 1
    assert counts["rejected:401"] == 3 and counts["rejected:400"] == 1


async def test_the_endpoint_answers_500_when_the_app_fails_and_takes_the_retry() -> None:
    """on_event raising, or overrunning handler_timeout, is answered 500 in time and the
    delivery is forgotten, so the same delivery retried is handed over again."""
    calls: list[str] = []

    async def flaky(event: CallbackEvent) -> None:
        calls.append(event.task_id)
        if len(calls) == 1:
            raise RuntimeError("the database is down")
        if len(calls) == 2:
            await asyncio.sleep(30)

    endpoint = CallbackEndpoint(flaky, key=KEY, handler_timeout=0.3)
    async with serving(Starlette(routes=[Route("/", endpoint.endpoint, methods=["POST"])])) as base:
        body = body_of("t2")
        headers = sign_callback(body, KEY)
        assert await post(base + "/", body, headers) == 500
        started = time.monotonic()
        assert await post(base + "/", body, headers) == 500
        assert time.monotonic() - started < 5
        assert await post(base + "/", body, headers) == 200
    assert calls == ["t2", "t2", "t2"]
    assert endpoint.verifier.counts["failed"] == 2


async def test_a_slow_body_is_answered_408_within_the_budget() -> None:
    """A client that trickles its body is answered 408 after body_timeout, not held."""
    endpoint = CallbackEndpoint(lambda e: None, key=KEY, body_timeout=0.3)
    async with serving(Starlette(routes=[Route("/", endpoint.endpoint, methods=["POST"])])) as base:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        started = time.monotonic()
        line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    assert b" 408 " in line
    assert time.monotonic() - started < 3


@contextlib.asynccontextmanager
async def running(args: list[str], port: int, env: dict[str, str]) -> AsyncIterator[str]:
    """A server started as a subprocess (cwd: docs/examples), until it answers on ``port``."""
    process = await asyncio.create_subprocess_exec(
        *args, cwd=EXAMPLES, env=child_env(**env), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(300):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                assert process.returncode is None, await process.stderr.read()  # type: ignore[union-attr]
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        else:
            pytest.fail(f"{args} did not listen within 15 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 15)


async def get_text(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        return answer.status, await answer.text()


async def until_text(url: str, wanted: str) -> str:
    for _ in range(200):
        status, text = await get_text(url)
        if status == 200 and wanted in text:
            return text
        await asyncio.sleep(0.05)
    pytest.fail(f"{url} never showed {wanted!r}")


async def test_the_fastapi_example_runs_against_the_fake_server() -> None:
    """docs/examples/fastapi_callbacks.py under uvicorn: an extension submitted through it is
    called back by the fake server (signed), confirmed with record-info, and its result shown;
    a forged callback is refused."""
    port = free_port()
    async with FakeKieServer(callback_key=KEY) as server:
        server.default_script = TaskScript(seconds=0.2)
        env = {
            "KIE_API_KEY": server.api_key,
            "KIE_BASE_URL": server.url,
            "KIE_WEBHOOK_KEY": KEY,
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
        args = [sys.executable, "-m", "uvicorn", "fastapi_callbacks:app", "--port", str(port)]
        async with running(args, port, env) as base:
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{base}/extend/src?prompt=go") as answer,
            ):
                task_id = (await answer.json())["task_id"]
            text = await until_text(f"{base}/results/{task_id}", "SUCCESS")
            forged = body_of(task_id, ["https://evil.example/x.mp4"])
            assert await post(f"{base}/kie/callback", forged, sign_callback(forged, "x")) == 401
        assert server.counts["callback:delivered"] == 1
    assert json.loads(text)["result_urls"] == server.callback_payload(task_id)["data"]["resultUrls"]


async def test_the_aiohttp_example_runs_against_the_fake_server() -> None:
    """docs/examples/aiohttp_callbacks.py extends two videos, hears both callbacks and prints
    the confirmed results, exit status 0."""
    port = free_port()
    async with FakeKieServer(callback_key=KEY) as server:
        server.default_script = TaskScript(seconds=0.2)
        env = {
            "KIE_API_KEY": server.api_key,
            "KIE_BASE_URL": server.url,
            "KIE_WEBHOOK_KEY": KEY,
            "PUBLIC_URL": f"http://127.0.0.1:{port}/kie",
            "PORT": str(port),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "aiohttp_callbacks.py", "src", "first", "second", cwd=EXAMPLES,
            env=child_env(**env), stdout=subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0
        assert server.counts["callback:delivered"] == 2
        assert server.counts["poll"] == 2  # one record-info call confirms each callback
    lines = out.decode().splitlines()
    assert len(lines) == 2 and all("http" in line for line in lines)


@pytest.mark.parametrize("framework", ["django", "flask"])
async def test_the_django_and_flask_recipes_under_real_servers(framework: str) -> None:
    """The Django async view (under uvicorn) and the Flask view (under waitress) from the docs
    take a signed callback once, drop its replay, and refuse forged, stale and unsigned ones."""
    port = free_port()
    if framework == "django":
        args = [sys.executable, "-m", "uvicorn", "django_callbacks:application"]
        args += ["--port", str(port)]
    else:
        args = [sys.executable, "-m", "waitress", f"--port={port}", "flask_callbacks:app"]
        args.insert(3, "--host=127.0.0.1")
    async with running(args, port, {"KIE_WEBHOOK_KEY": KEY}) as base:
        url = f"{base}/kie/callback"
        body = body_of("t7")
        headers = sign_callback(body, KEY)
        assert await post(url, body, headers) == 200
        assert await post(url, body, headers) == 200
        assert await post(url, body, sign_callback(body, "wrong")) == 401
        assert await post(url, body, sign_callback(body, KEY, timestamp=1)) == 401
        assert await post(url, body) == 401
        assert await post(url, b"[1]", headers) == 400
        # Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE itself, with a 400.
        too_big = 400 if framework == "django" else 413
        assert await post(url, b"x" * 70_000, headers) == too_big
        assert await get_text(f"{base}/received") == (200, "t7")
