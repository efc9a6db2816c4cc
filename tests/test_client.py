"""KieClient: configuration, session ownership, input checked before sending, no hangs, no leaks."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import pytest

from kie_async import (
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    KieClient,
    PollPolicy,
    RetryPolicy,
    SubmissionUncertainError,
    TaskFailedError,
    TaskRecord,
    TaskTimeoutError,
    TransportError,
    ValidationError,
)
from kie_async._errors import exception_fields
from kie_async.testing import FakeKieServer, TaskScript, fast_client

SECRET = "sk-live-7Q9xZr4TmW2pLk8vNb3cYd6F"

# -- input is checked before anything is sent ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (("",), {}, "task_id"),
        (("   ",), {}, "task_id"),
        (("src", "0"), {}, "index"),
        (("src", 1.5), {}, "index"),
        (("src", True), {}, "index"),
        (("src", -1), {}, "index"),
        (("src", 4), {}, "index"),
        (("src", 0), {"mode": "manual"}, "prompt"),
        (("src", 0, "   "), {}, "prompt"),
        (("src", 0, "x" * 2001), {}, "prompt"),
        (("src", 0, "go on"), {"mode": "auto"}, "prompt"),
        (("src", 0), {"mode": "extend"}, "mode"),
        (("src", 0), {"callback_url": "example.com/hook"}, "callback_url"),
        (("src", 0), {"callback_url": "ftp://example.com/hook"}, "callback_url"),
        (("src", 0), {"callback_url": "/relative/hook"}, "callback_url"),
    ],
)
async def test_invalid_input_sends_nothing(
    kie: KieClient, server: FakeKieServer, args: tuple[Any, ...], kwargs: dict[str, Any], field: str
) -> None:
    """Invalid extend_video input raises a ValueError-ValidationError naming the field, unsent."""
    with pytest.raises(ValidationError) as info:
        await kie.extend_video(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    assert info.value.field == field
    assert field in str(info.value)
    assert server.requests == []


@pytest.mark.parametrize("task_id", ["", "  ", "a b", "x/y"])
async def test_invalid_task_id_is_not_polled(
    kie: KieClient, server: FakeKieServer, task_id: str
) -> None:
    """get_task() and task() refuse a malformed task id without a request."""
    with pytest.raises(ValidationError):
        await kie.get_task(task_id)
    with pytest.raises(ValidationError):
        kie.task(task_id)
    assert server.requests == []


async def test_submit_refuses_a_non_request(kie: KieClient, server: FakeKieServer) -> None:
    """submit() takes only an ExtendRequest and sends nothing otherwise."""
    with pytest.raises(TypeError):
        await kie.submit({"taskId": "src"})  # type: ignore[arg-type]
    assert server.requests == []


# -- configuration ------------------------------------------------------------------------------


def test_key_from_argument() -> None:
    """An explicit api_key is used."""
    assert KieClient(api_key="abc").base_url == "https://api.kie.ai"


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an argument the key comes from KIE_API_KEY."""
    monkeypatch.setenv("KIE_API_KEY", "from-env")
    KieClient()


@pytest.mark.parametrize("key", [None, "", "   "])
def test_no_key_is_a_configuration_error(key: str | None) -> None:
    """No key in the argument or the environment raises ConfigurationError naming api_key."""
    with pytest.raises(ConfigurationError) as info:
        KieClient(api_key=key)
    assert info.value.setting == "api_key"
    assert isinstance(info.value, ValueError)


def test_key_with_whitespace_inside_is_refused() -> None:
    """A key with a line break inside cannot become a header: ConfigurationError."""
    with pytest.raises(ConfigurationError):
        KieClient(api_key="abc\ndef")


async def test_environment_key_is_sent(
    monkeypatch: pytest.MonkeyPatch, server: FakeKieServer
) -> None:
    """The KIE_API_KEY key is the one sent as the bearer token."""
    monkeypatch.setenv("KIE_API_KEY", server.api_key)
    async with KieClient(base_url=server.url, retry=RetryPolicy.zero_wait()) as kie:
        await kie.credits()
    assert server.requests[-1].headers["Authorization"] == f"Bearer {server.api_key}"


def test_base_url_default_and_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """The base URL is the argument, else KIE_BASE_URL, else https://api.kie.ai (no slash)."""
    assert KieClient(api_key="k").base_url == "https://api.kie.ai"
    monkeypatch.setenv("KIE_BASE_URL", "https://proxy.example.com/kie/")
    assert KieClient(api_key="k").base_url == "https://proxy.example.com/kie"
    assert KieClient(api_key="k", base_url="https://other.example").base_url == (
        "https://other.example"
    )


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://localhost:1234", "http://[::1]:9000", "https://a.example"],
)
def test_loopback_http_and_https_are_allowed(url: str) -> None:
    """Plain http is fine for loopback addresses; https always."""
    assert KieClient(api_key="k", base_url=url).base_url == url


def test_plain_http_elsewhere_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """http:// to a non-loopback host is refused unless allow_insecure_http=True."""
    with pytest.raises(ConfigurationError) as info:
        KieClient(api_key="k", base_url="http://api.kie.ai")
    assert info.value.setting == "base_url"
    monkeypatch.setenv("KIE_BASE_URL", "http://10.0.0.5")
    with pytest.raises(ConfigurationError):
        KieClient(api_key="k")
    allowed = KieClient(api_key="k", base_url="http://api.kie.ai", allow_insecure_http=True)
    assert allowed.base_url == "http://api.kie.ai"


@pytest.mark.parametrize("url", ["ftp://api.kie.ai", "api.kie.ai", "https://", "https://h/?q=1"])
def test_malformed_base_url_is_refused(url: str) -> None:
    """A base URL without an http(s) scheme and host, or with a query, is refused."""
    with pytest.raises(ConfigurationError):
        KieClient(api_key="k", base_url=url)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"connect_timeout": 0},
        {"max_connections": 0},
        {"max_retries": -1},
        {"poll": "fast"},
        {"retry": 3},
        {"rate_limit": 20},
    ],
)
def test_bad_settings_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    """Nonsense settings raise ConfigurationError when the client is made, not later."""
    with pytest.raises(ConfigurationError):
        KieClient(api_key="k", **kwargs)


# -- sessions and lifecycle ----------------------------------------------------------------------


async def test_borrowed_session_is_used_and_left_open(server: FakeKieServer) -> None:
    """A borrowed session carries the requests and is not closed by aclose()."""
    async with aiohttp.ClientSession(headers={"X-Borrowed": "yes"}) as session:
        kie = fast_client(server, session=session)
        async with kie:
            await kie.credits()
        assert server.requests[-1].headers.get("X-Borrowed") == "yes"
        assert not session.closed
        await kie.aclose()
        assert not session.closed
        async with session.get(f"{server.url}/files/none/0.mp4") as response:
            assert response.status == 404  # the session still works


async def test_own_session_is_closed_on_exit(server: FakeKieServer) -> None:
    """The session a client creates itself is closed when the async with block ends."""
    async with fast_client(server) as kie:
        await kie.credits()
        session = kie._transport._session  # the private session: nothing public exposes it
        assert session is not None and not session.closed
    assert session.closed


async def test_closed_client_refuses_calls(server: FakeKieServer) -> None:
    """Every call on a closed client raises ClientClosedError (also a RuntimeError)."""
    kie = fast_client(server)
    async with kie:
        await kie.credits()
    calls = [
        kie.credits(),
        kie.get_task("t1"),
        kie.extend_video("src", prompt="go"),
        kie.download_url(f"{server.url}/files/t1/0.mp4"),
    ]
    for call in calls:
        with pytest.raises(ClientClosedError):
            await call
    with pytest.raises(RuntimeError):
        async with kie:
            pass
    await kie.aclose()  # closing twice is fine
    assert len(server.requests) == 1


async def test_closed_before_first_use(server: FakeKieServer) -> None:
    """A client closed before it ever sent anything also refuses calls."""
    kie = fast_client(server)
    await kie.aclose()
    with pytest.raises(ClientClosedError):
        await kie.credits()
    assert server.requests == []


@pytest.mark.parametrize("fault", ["slow", "hang"])
async def test_stalled_server_cannot_hang_a_call(server: FakeKieServer, fault: str) -> None:
    """An answer slower than the client's timeout raises TransportError quickly."""
    server.faults.slow_seconds = 10.0
    server.fail_next("credit", fault)
    started = time.monotonic()
    async with fast_client(server, timeout=0.3, max_retries=0) as kie:
        with pytest.raises(TransportError) as info:
            await kie.credits()
    assert time.monotonic() - started < 3.0
    assert info.value.endpoint == "/api/v1/chat/credit"
    assert info.value.sent is True


async def test_stalled_create_is_uncertain_not_hung(server: FakeKieServer) -> None:
    """A create whose answer never comes is reported as uncertain, quickly, and not resent."""
    server.faults.slow_seconds = 10.0
    server.fail_next("create", "slow")
    started = time.monotonic()
    async with fast_client(server, timeout=0.3) as kie:
        with pytest.raises(SubmissionUncertainError):
            await kie.extend_video("src", prompt="go")
    assert time.monotonic() - started < 3.0
    assert server.counts["request:create"] == 1


async def test_refused_connection_is_transport_error() -> None:
    """Nothing listening on the port is a TransportError that says nothing was sent."""
    async with FakeKieServer() as gone:
        url = gone.url
    async with KieClient(api_key="k", base_url=url, max_retries=0, timeout=2) as kie:
        with pytest.raises(TransportError) as info:
            await kie.credits()
    assert info.value.sent is False


async def test_credits_and_download_url(kie: KieClient, server: FakeKieServer) -> None:
    """credits() reads a fractional balance exactly and download_url() returns kie's link."""
    server.credits = server.credits.__class__("60.62")
    assert str(await kie.credits()) == "60.62"
    link = await kie.download_url(f"{server.url}/files/t1/0.mp4")
    assert link.startswith(f"{server.url}/files/t1/0.mp4?token=")


@pytest.mark.parametrize("url", [None, "", "files/t1/0.mp4", "ftp://host/0.mp4", 5])
async def test_download_url_refuses_a_non_url_before_sending(
    kie: KieClient, server: FakeKieServer, url: object
) -> None:
    """download_url() without an http(s) URL is a ValidationError naming ``url``; none is sent."""
    with pytest.raises(ValidationError, match=r"^url: "):
        await kie.download_url(url)  # type: ignore[arg-type]
    assert server.requests == []


# -- the API key never shows -----------------------------------------------------------------------


async def test_api_key_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    """The key is absent from reprs, strs and every DEBUG log line of a full, bumpy run."""
    caplog.set_level(logging.DEBUG, logger="kie_async")
    shown: list[object] = []
    async with FakeKieServer(api_key=SECRET) as server:
        server.script_next(TaskScript(polls=2), TaskScript.failed(flag=3), TaskScript(polls=10**6))
        server.fail_next("create", "rate_limited")
        server.fail_next("record", "html_502")
        server.fail_next("record", "rate_limited")
        async with fast_client(server) as kie:
            shown.append(kie)
            handle = await kie.extend_video("src", 1, "Into the nebula", watermark="w")
            shown.append(handle)
            record: TaskRecord = await handle
            shown += [handle, record, record.data, record.params]
            failing = await kie.extend_video("src", 2)
            with pytest.raises(TaskFailedError) as failed:
                await failing
            shown.append(failed.value)
            slow = await kie.extend_video("src", 3)
            with pytest.raises(TaskTimeoutError) as timed_out:
                await slow.wait(
                    timeout=0.2, poll=PollPolicy(interval=0.05, factor=1, jitter=0, first_delay=0)
                )
            shown.append(timed_out.value)
            server.fail_next("create", "drop_after")
            with pytest.raises(SubmissionUncertainError) as uncertain:
                await kie.extend_video("src", 0, "again")
            shown.append(uncertain.value)
            # aiohttp itself resends a GET once on a dropped connection, so drop it twice.
            server.fail_next("credit", "drop_before", times=2)
            async with fast_client(server, max_retries=0) as once:
                with pytest.raises(TransportError) as transport:
                    await once.credits()
            shown.append(transport.value)
        async with fast_client(server, api_key=SECRET + "x", max_retries=0) as wrong:
            with pytest.raises(AuthenticationError) as auth:
                await wrong.credits()
            shown += [wrong, auth.value]
    assert server.counts["create"] >= 3
    for thing in shown:
        assert SECRET not in repr(thing)
        assert SECRET not in str(thing)
        if isinstance(thing, BaseException):
            assert SECRET not in repr(exception_fields(thing))
    debug_lines = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("Bearer ***" in r.getMessage() for r in debug_lines)
    for entry in caplog.records:
        assert SECRET not in entry.getMessage()
    assert SECRET not in caplog.text


async def test_no_tasks_left_after_a_stall(server: FakeKieServer) -> None:
    """A timed-out call leaves no client task of ours pending on the loop."""
    server.fail_next("credit", "hang")
    async with fast_client(server, timeout=0.2, max_retries=0) as kie:
        with pytest.raises(TransportError):
            await kie.credits()
    await asyncio.sleep(0)
    ours = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        if task is not asyncio.current_task() and "kie_async/_" in filename:
            ours.append(task)
    assert ours == []


async def test_dropped_create_is_never_resent(server: FakeKieServer) -> None:
    """A create whose connection drops is reported as uncertain and sent exactly once."""
    server.fail_next("create", "drop_before")
    async with fast_client(server) as kie:
        with pytest.raises(SubmissionUncertainError) as info:
            await kie.extend_video("src", 0, "go")
    assert info.value.request.task_id == "src"
    assert server.counts["request:create"] == 1
