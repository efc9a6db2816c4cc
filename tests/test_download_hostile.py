"""Downloads from hostile file hosts: trickles and stalls end, redirects are checked, planted
symlinks redirect nothing, and the disk never stalls the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import stat
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from kie_async import (
    ConfigurationError,
    DownloadError,
    DownloadPolicy,
    KieClient,
    RetryPolicy,
    TaskRecord,
    TransportError,
)
from kie_async._download.rules import SpeedCheck, file_name, redirect_target
from kie_async._protocol.wire import parse_record
from kie_async.testing import FakeKieServer, TaskScript, fast_client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """A raw asyncio socket server on loopback running ``handler`` per connection; its base
    URL. Every connection still open is cancelled and closed on exit."""
    running: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            running.discard(task)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The request line and headers of one request."""
    return await reader.readuntil(b"\r\n\r\n")


def listing(directory: Path) -> list[str]:
    """The names in ``directory`` (none if it does not exist)."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def record_for(*urls: str, task_id: str = "t-hostile") -> TaskRecord:
    """A finished record whose results are ``urls``."""
    return parse_record({"taskId": task_id, "successFlag": 1, "resultInfoJson": list(urls)})


def client(server: FakeKieServer, policy: DownloadPolicy, retries: int = 0) -> KieClient:
    """A zero-wait client with ``policy`` and ``retries`` retries."""
    return fast_client(server, retry=RetryPolicy.zero_wait(max_retries=retries), download=policy)


SCALED = DownloadPolicy(read_timeout=0.5, min_speed=100, speed_window=0.5)


# -- bounded in time -------------------------------------------------------------------------


async def test_trickling_body_ends_with_a_clear_error(
    server: FakeKieServer, tmp_path: Path
) -> None:
    """A file host sending its body at 1 byte per second is given up on after about the speed
    window: a DownloadError caused by a TransportError naming the speed, and no file left."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: video/mp4\r\n\r\n")
        for _ in range(1000):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(1.0)

    policy = DownloadPolicy(read_timeout=2.0, min_speed=100, speed_window=0.5)
    async with raw_server(trickle) as url, client(server, policy) as kie:
        started = time.monotonic()
        with pytest.raises(DownloadError) as caught:
            await asyncio.wait_for(kie.download(record_for(f"{url}/v.mp4"), tmp_path), 10)
        took = time.monotonic() - started
    assert isinstance(caught.value.__cause__, TransportError)
    assert "below the minimum of 100 B/s" in str(caught.value)
    assert took < 3.0
    assert listing(tmp_path) == []


async def test_trickled_headers_end_within_the_read_timeout(
    server: FakeKieServer, tmp_path: Path
) -> None:
    """Headers sent a byte every 50 ms (so no single read ever times out) still end the GET
    within connect_timeout plus the policy's read_timeout."""

    async def slow_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Pad: ")
        for _ in range(10_000):
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.05)

    async with (
        raw_server(slow_headers) as url,
        fast_client(
            server,
            retry=RetryPolicy.zero_wait(max_retries=0),
            download=SCALED,
            connect_timeout=0.5,
        ) as kie,
    ):
        started = time.monotonic()
        with pytest.raises(DownloadError, match="headers within 1s"):
            await asyncio.wait_for(kie.download(record_for(f"{url}/v.mp4"), tmp_path), 10)
        took = time.monotonic() - started
    assert took < 2.5


async def test_silent_body_ends_within_the_read_timeout(
    server: FakeKieServer, tmp_path: Path
) -> None:
    """A host that sends headers and part of the body, then nothing, ends after read_timeout,
    and the retry policy's retries are each bounded the same way."""
    hits = 0

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal hits
        hits += 1
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
        await writer.drain()
        await asyncio.sleep(60)

    async with raw_server(stall) as url, client(server, SCALED, retries=1) as kie:
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"no data within 0\.5s"):
            await asyncio.wait_for(kie.download(record_for(f"{url}/v.mp4"), tmp_path), 10)
        took = time.monotonic() - started
    assert hits == 2
    assert took < 3.0


def test_speed_check_judges_whole_windows() -> None:
    """The speed is judged over whole windows: a slow start within the window passes, a slow
    window fails, and a fast window starts the count again."""
    check = SpeedCheck(min_speed=100, window=1.0, now=0.0)
    assert check.feed(0.5, 1) is None
    assert check.feed(1.0, 200) is None  # 201 bytes in 1 s
    assert check.feed(1.5, 10) is None
    problem = check.feed(2.5, 10)
    assert problem is not None and "20 bytes in 1.5s" in problem
    assert SpeedCheck(min_speed=0, window=1.0, now=0.0).feed(100.0, 0) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("read_timeout", 0),
        ("read_timeout", float("inf")),
        ("min_speed", -1),
        ("speed_window", True),
        ("max_redirects", -1),
        ("max_redirects", 1.5),
    ],
)
def test_download_policy_is_validated(field: str, value: object) -> None:
    """A bad DownloadPolicy setting is a ConfigurationError naming the field."""
    with pytest.raises(ConfigurationError, match=field):
        DownloadPolicy(**{field: value})  # type: ignore[arg-type]


def test_client_takes_a_download_policy() -> None:
    """KieClient(download=...) sets download_policy; anything else is refused."""
    policy = DownloadPolicy(read_timeout=7)
    assert KieClient(api_key="k", download=policy).download_policy is policy
    assert KieClient(api_key="k").download_policy == DownloadPolicy()
    with pytest.raises(ConfigurationError, match="download"):
        KieClient(api_key="k", download=30)  # type: ignore[arg-type]


# -- redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "location", "expected"),
    [
        ("https://a.example/x/v.mp4", "/y/v.mp4", "https://a.example/y/v.mp4"),
        ("https://a.example/v.mp4", "https://b.example/v.mp4?s=1", "https://b.example/v.mp4?s=1"),
        ("http://127.0.0.1:1/v.mp4", "https://b.example/v.mp4", "https://b.example/v.mp4"),
        ("http://127.0.0.1:1/v.mp4", "http://127.0.0.1:2/v.mp4", "http://127.0.0.1:2/v.mp4"),
    ],
)
def test_redirects_that_are_followed(current: str, location: str, expected: str) -> None:
    """Relative redirects, https to https and upgrades are followed."""
    assert redirect_target(current, location) == expected


@pytest.mark.parametrize(
    ("current", "location", "reason"),
    [
        ("https://a.example/v.mp4", "http://a.example/v.mp4", "from https to plain http"),
        ("https://a.example/v.mp4", "HTTP://a.example/v.mp4", "from https to plain http"),
        ("https://a.example/v.mp4", "//b.example/v.mp4", None),
        ("http://a.example/v.mp4", "file:///etc/passwd", "file:"),
        ("https://a.example/v.mp4", "ftp://a.example/v.mp4", "ftp:"),
        ("https://a.example/v.mp4", "javascript:alert(1)", "javascript:"),
        ("https://a.example/v.mp4", "data:video/mp4;base64,AAAA", "data:"),
        ("https://a.example/v.mp4", None, "without a Location"),
        ("https://a.example/v.mp4", "  ", "without a Location"),
        ("https://a.example/v.mp4", "http://[bad", "invalid"),
    ],
)
def test_redirects_that_are_refused(current: str, location: str | None, reason: str | None) -> None:
    """A downgrade to plain http, another scheme or no Location is refused with the reason
    (a scheme-relative redirect from https stays https, so it is followed)."""
    if reason is None:
        assert redirect_target(current, location) == "https://b.example/v.mp4"
        return
    with pytest.raises(ValueError, match=reason):
        redirect_target(current, location)


def redirecting_app(location: Callable[[web.Request], str], hits: list[str]) -> web.Application:
    """An app that redirects /r/* with 302 to ``location(request)`` and serves /f/* itself."""

    async def redirect(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        raise web.HTTPFound(location(request))

    async def serve(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        return web.Response(body=b"video bytes", content_type="video/mp4")

    app = web.Application()
    app.router.add_get("/r/{name}", redirect)
    app.router.add_get("/f/{name}", serve)
    return app


@contextlib.asynccontextmanager
async def serving(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` on loopback (over TLS with ``ssl_context``); its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/v.mp4", "gopher://x/"])
async def test_redirect_to_another_scheme_is_refused_at_once(
    server: FakeKieServer, tmp_path: Path, target: str
) -> None:
    """A redirect to a non-http URL is a DownloadError saying so, not retried, saving nothing."""
    hits: list[str] = []
    async with (
        serving(redirecting_app(lambda _: target, hits)) as url,
        client(server, SCALED, retries=3) as kie,
    ):
        with pytest.raises(DownloadError, match="refused a redirect") as caught:
            await kie.download(record_for(f"{url}/r/v.mp4"), tmp_path)
    assert target.split(":")[0] + ":" in str(caught.value)
    assert hits == ["/r/v.mp4"]
    assert listing(tmp_path) == []


async def test_redirects_are_followed_and_loops_end(server: FakeKieServer, tmp_path: Path) -> None:
    """A relative redirect is followed to the file; an endless redirect loop ends after
    max_redirects hops with a DownloadError."""
    hits: list[str] = []

    def location(request: web.Request) -> str:
        name = request.match_info["name"]
        return "/r/loop.mp4" if name == "loop.mp4" else f"/f/{name}"

    policy = DownloadPolicy(read_timeout=2, max_redirects=3)
    async with serving(redirecting_app(location, hits)) as url, client(server, policy) as kie:
        [path] = await kie.download(record_for(f"{url}/r/v.mp4"), tmp_path / "ok")
        assert path.read_bytes() == b"video bytes"
        with pytest.raises(DownloadError, match="more than 3 redirects"):
            await kie.download(record_for(f"{url}/r/loop.mp4"), tmp_path / "loop")
    assert hits.count("/r/loop.mp4") == 4


@pytest.fixture(name="tls", scope="module")
def _tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 made with the openssl tool: (server, client)
    SSL contexts, the client trusting only that certificate."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    client_side = ssl.create_default_context(cafile=str(cert))
    return server_side, client_side


async def test_https_to_http_redirect_is_refused(
    server: FakeKieServer, tmp_path: Path, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """An https file host redirecting to plain http is refused before anything is sent over
    http; a redirect to https on the same host is followed."""
    server_side, client_side = tls
    plain_hits: list[str] = []
    tls_hits: list[str] = []
    async with serving(redirecting_app(lambda r: "/f/x.mp4", plain_hits)) as plain_url:

        def location(request: web.Request) -> str:
            if request.match_info["name"] == "down.mp4":
                return f"{plain_url}/f/v.mp4"
            return "/f/v.mp4"

        async with (
            serving(redirecting_app(location, tls_hits), server_side) as tls_url,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_side)) as session,
            fast_client(server, session=session, retry=RetryPolicy.zero_wait(max_retries=2)) as kie,
        ):
            with pytest.raises(DownloadError, match="from https to plain http"):
                await kie.download(record_for(f"{tls_url}/r/down.mp4"), tmp_path / "down")
            [path] = await kie.download(record_for(f"{tls_url}/r/up.mp4"), tmp_path / "up")
    assert plain_hits == []
    assert tls_hits == ["/r/down.mp4", "/r/up.mp4", "/f/v.mp4"]
    assert path.read_bytes() == b"video bytes"
    assert listing(tmp_path / "down") == []


# -- the file system -------------------------------------------------------------------------


async def test_symlink_planted_as_the_temp_file_redirects_nothing(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A symlink planted under the temporary name, pointing outside the destination, is
    removed, not written through: its target keeps its content and the file lands in place."""
    server.script_next(TaskScript(videos=1))
    record = await (await kie.extend_video("src", prompt="go")).wait()
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    victim = outside / "victim"
    victim.write_bytes(b"precious")
    name = file_name(record.task_id, 0, record.result_urls[0])
    (dest / f".{name}.part").symlink_to(victim)
    [path] = await kie.download(record, dest)
    assert victim.read_bytes() == b"precious"
    assert not path.is_symlink()
    assert path.read_bytes() == server.file_bytes(record.task_id, "0.mp4")
    assert listing(dest) == [name]


async def test_symlink_planted_as_the_final_name_is_replaced(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A symlink under the final name is neither taken for a complete file nor followed: it is
    replaced by the downloaded file, and what it pointed to is untouched."""
    server.script_next(TaskScript(videos=1))
    record = await (await kie.extend_video("src", prompt="go")).wait()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    dest = tmp_path / "dest"
    dest.mkdir()
    target = dest / file_name(record.task_id, 0, record.result_urls[0])
    target.symlink_to(victim)
    [path] = await kie.download(record, dest)
    assert path == target
    assert not path.is_symlink()
    assert path.read_bytes() == server.file_bytes(record.task_id, "0.mp4")
    assert victim.read_bytes() == b"precious"
    assert server.counts["request:file"] == 1


async def test_slow_disk_never_stalls_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With fsync taking 0.6 s (a slow disk) and a 16 MiB file, the event loop never stalls
    more than 0.3 s during the download: the disk work runs in another thread."""
    real_fsync = os.fsync
    fsync_threads: list[int] = []

    def slow_fsync(fd: int) -> None:
        fsync_threads.append(threading.get_ident())
        if stat.S_ISREG(os.fstat(fd).st_mode):
            time.sleep(0.6)
        real_fsync(fd)

    async with FakeKieServer(file_size=16 * 1024 * 1024) as server, fast_client(server) as kie:
        server.script_next(TaskScript(videos=1))
        record = await (await kie.extend_video("src", prompt="go")).wait()
        monkeypatch.setattr(os, "fsync", slow_fsync)
        lags: list[float] = []
        stop = asyncio.Event()

        async def probe() -> None:
            while not stop.is_set():
                before = time.monotonic()
                await asyncio.sleep(0.01)
                lags.append(time.monotonic() - before - 0.01)

        probing = asyncio.ensure_future(probe())
        try:
            [path] = await kie.download(record, tmp_path)
        finally:
            stop.set()
            await probing
    assert path.stat().st_size == 16 * 1024 * 1024
    assert fsync_threads and threading.get_ident() not in fsync_threads
    assert max(lags) < 0.3
