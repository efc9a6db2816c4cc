"""Hostile servers: every API call bounded in time and memory, permanent failures not retried,
answers checked before they are trusted. Against raw loopback sockets (tests/rawserver.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import socket
import ssl
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from rawserver import (
    Connection,
    RawServer,
    Request,
    answer,
    endless,
    envelope,
    gzip_bomb,
    head,
    raw,
    silent,
    trickle,
    unread,
)

import kie_async._protocol.envelope as proto
from kie_async import (
    ExtendRequest,
    KieClient,
    KieError,
    OutcomeKind,
    PollPolicy,
    RateLimit,
    RetryPolicy,
    SubmissionUncertainError,
    TaskTimeoutError,
    Timeout,
    TransportError,
    UnexpectedResponseError,
)
from kie_async._cli import run
from kie_async._retry import CreateFailure, create_failure, poll_is_transient, unreachable

KEY = "sk-hostile-3Jd9SECRETq7"
DATA = Path(__file__).resolve().parent / "data"
MB = 1 << 20

#: A record-info answer for task "t1" that has succeeded.
RECORD = envelope(
    {
        "taskId": "t1",
        "successFlag": 1,
        "resultInfoJson": {"resultUrls": [{"resultUrl": "https://cdn.example.com/t1.mp4"}]},
    }
)


def client(url: str, **settings: Any) -> KieClient:
    """A client for a raw server: no retries, no rate limit, scaled-down budgets."""
    options: dict[str, Any] = {
        "api_key": KEY,
        "base_url": url,
        "poll": PollPolicy.zero_wait(timeout=2),
        "retry": RetryPolicy.zero_wait(max_retries=0),
        "rate_limit": None,
        "timeout": Timeout(total=0.5, connect=0.5, read=0.3),
    }
    options.update(settings)
    return KieClient(**options)


CALLS: dict[str, Callable[[KieClient], Any]] = {
    "credits": lambda kie: kie.credits(),
    "get_task": lambda kie: kie.get_task("t1"),
    "download_url": lambda kie: kie.download_url("https://cdn.example.com/t1.mp4"),
    "extend_video": lambda kie: kie.extend_video("src", 0, "go"),
}


def _free_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _counting_session() -> tuple[aiohttp.ClientSession, list[str]]:
    """A session that notes every request it starts (aiohttp's public tracing hooks)."""
    started: list[str] = []

    async def on_start(_: object, __: object, params: aiohttp.TraceRequestStartParams) -> None:
        started.append(params.url.path)

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(on_start)
    return aiohttp.ClientSession(trace_configs=[tracing]), started


# -- every call is bounded in time ----------------------------------------------------------


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("part", ["headers", "body"])
async def test_a_trickling_server_cannot_hold_a_call(call: str, part: str) -> None:
    """A server sending its headers or its body one byte at a time (never silent long enough
    for the read timeout) is cut at the total budget; a create so cut is uncertain and sent
    once only."""
    body = envelope({"taskId": "t1", "credit": 5, "url": "https://x.example/t1.mp4"})
    whole = head(length=len(body)) + body
    start = 0 if part == "headers" else len(whole) - len(body)
    async with RawServer(trickle(whole, every=0.02, start=start)) as server:
        retries = 3 if call == "extend_video" else 0
        async with client(
            server.url,
            retry=RetryPolicy.zero_wait(max_retries=retries),
            timeout=Timeout(total=0.25, connect=0.5, read=0.15),
        ) as kie:
            began = time.monotonic()
            with pytest.raises(KieError) as caught:
                await asyncio.wait_for(CALLS[call](kie), 10)
            elapsed = time.monotonic() - began
    if call == "extend_video":
        assert isinstance(caught.value, SubmissionUncertainError)
        assert "Timeout.total" in caught.value.reason
        assert len(server.requests) == 1, "an uncertain create is never sent again"
    else:
        assert isinstance(caught.value, TransportError)
        assert "Timeout.total" in str(caught.value)
    assert elapsed < 2, f"the call took {elapsed:.1f}s with a 0.25s budget"


async def test_bulk_creates_are_bounded_by_the_budget() -> None:
    """extend_many against a trickling API ends: each create is cut at its budget and
    reported uncertain."""
    body = envelope({"taskId": "t1"})
    async with (
        RawServer(trickle(head(length=len(body)) + body, every=0.02)) as server,
        client(server.url, timeout=Timeout(total=0.25, connect=0.5, read=0.15)) as kie,
    ):
        requests = [ExtendRequest("src", i, "go") for i in range(3)]
        # preflight=False: the creates themselves are under test (no balance on this server).
        outcomes = await asyncio.wait_for(_collect(kie.extend_many(requests, preflight=False)), 10)
    assert [o.kind for o in outcomes] == [OutcomeKind.UNCERTAIN] * 3
    assert len(server.requests) == 3


async def test_a_bulk_wait_ends_at_its_deadline_while_a_poll_trickles() -> None:
    """A bulk run's wait ends at its deadline even when its poll is a trickling answer whose
    total budget runs longer than the time left (the read timeout never trips)."""
    record = envelope({"taskId": "t1", "successFlag": 0})
    slow = trickle(head(length=len(record)) + record, every=0.05)
    async with RawServer(answer(envelope({"taskId": "t1"})), slow) as server:
        timeout = Timeout(total=5, connect=0.5, read=0.2)
        poll = PollPolicy.zero_wait(timeout=0.6)
        async with client(server.url, timeout=timeout, poll=poll) as kie:
            began = time.monotonic()
            outcomes = await asyncio.wait_for(
                _collect(kie.extend_many([ExtendRequest("src", 0, "go")], preflight=False)), 10
            )
            elapsed = time.monotonic() - began
    assert isinstance(outcomes[0].error, TaskTimeoutError)
    assert elapsed < 3, f"the wait took {elapsed:.1f}s with a 0.6s deadline"


async def _collect(outcomes: AsyncIterator[Any]) -> list[Any]:
    return [outcome async for outcome in outcomes]


async def test_a_silent_server_trips_the_read_timeout() -> None:
    """A server that says nothing after the request trips Timeout.read, named in the error."""
    async with RawServer(silent(3)) as server:
        timeout = Timeout(total=2, connect=0.5, read=0.2)
        async with client(server.url, timeout=timeout) as kie:
            with pytest.raises(TransportError) as caught:
                await asyncio.wait_for(kie.credits(), 10)
    assert "Timeout.read" in str(caught.value)


async def test_waiting_for_a_free_connection_is_bounded_by_the_pool_timeout() -> None:
    """With every connection busy, a request waits Timeout.pool at most, then fails unsent."""
    async with RawServer(silent(1.5)) as server:
        timeout = Timeout(total=3, connect=0.5, read=2, pool=0.1)
        async with client(server.url, timeout=timeout, max_connections=1) as kie:
            busy = asyncio.ensure_future(kie.credits())
            await asyncio.sleep(0.05)
            with pytest.raises(TransportError) as caught:
                await asyncio.wait_for(kie.get_task("t1"), 10)
            busy.cancel()
            with contextlib.suppress(asyncio.CancelledError, KieError):
                await busy
    assert "Timeout.pool" in str(caught.value)
    assert caught.value.sent is False


def test_timeout_is_validated_and_the_old_arguments_still_work() -> None:
    """Timeout rejects bad values naming the field; a number ``timeout`` is still the per-read
    limit, with an overall limit that never cuts it short."""
    for bad in ({"total": 0}, {"read": -1}, {"connect": float("inf")}, {"pool": "1"}):
        with pytest.raises(ValueError, match=f"timeout.{next(iter(bad))}"):
            Timeout(**bad)
    legacy = KieClient(KEY, timeout=300, connect_timeout=20)
    assert legacy.read_timeout == 300
    assert legacy.timeouts == Timeout(total=320, connect=20, read=300)
    assert KieClient(KEY).timeouts == Timeout()
    with pytest.raises(ValueError, match="connect_timeout"):
        KieClient(KEY, timeout=Timeout(), connect_timeout=5)
    assert Timeout(total=1).connect_budget == 1


MALFORMED = {
    "malformed status line": b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}",
    "not HTTP at all": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "header without colon": b"HTTP/1.1 200 OK\r\nContent-Length 2\r\nBogus\r\n\r\n{}",
    "oversized header line": b"HTTP/1.1 200 OK\r\nX-Big: "
    + b"a" * 20000
    + b"\r\nContent-Length: 2\r\n\r\n{}",
    "body shorter than Content-Length": head(length=100) + b'{"code": 200, "data": 5}',
}


@pytest.mark.parametrize("answer_bytes", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_answers_are_transport_errors_and_uncertain_creates(
    answer_bytes: bytes,
) -> None:
    """A malformed HTTP answer (status line, header, a body shorter than announced) is a
    TransportError for a read, retried; for a create it is uncertain and not resent."""
    async with (
        RawServer(raw(answer_bytes)) as server,
        client(server.url, retry=RetryPolicy.zero_wait(max_retries=2)) as kie,
    ):
        with pytest.raises(TransportError) as caught:
            await kie.credits()
        assert len(server.requests) == 3, "a read is retried"
        with pytest.raises(SubmissionUncertainError):
            await kie.extend_video("src", 0, "go")
        assert len(server.requests) == 4, "a create is sent once"
    assert caught.value.sent


# -- every answer is bounded in size --------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        endless(200 * MB, length=True),
        endless(200 * MB),
        endless(200 * MB, chunked=True),
        gzip_bomb(200 * MB),
    ],
    ids=["announced", "until-close", "chunked", "gzip-bomb"],
)
async def test_a_200_mb_answer_is_refused_without_buffering_it(script: Any) -> None:
    """A 200 MB answer (announced, until the connection closes, chunked, or a gzip bomb) is
    refused as UnexpectedResponseError while peak memory grows by less than 4 MiB."""
    async with (
        RawServer(script) as server,
        client(server.url, timeout=Timeout(total=20, connect=1, read=5)) as kie,
    ):
        tracemalloc.start()
        try:
            with pytest.raises(UnexpectedResponseError) as caught:
                await asyncio.wait_for(kie.credits(), 30)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert "larger than 1048576 bytes" in str(caught.value)
    assert peak < 4 * MB, f"peak memory grew by {peak / MB:.1f} MiB"


@pytest.mark.parametrize("announced", [True, False])
async def test_a_gzip_answer_is_inflated_within_the_cap(announced: bool) -> None:
    """A gzip-compressed answer (with or without its Content-Length) is inflated and read;
    one that inflates past the cap, is corrupt, or uses an encoding not asked for is refused
    as UnexpectedResponseError."""
    packed = gzip.compress(envelope(7))
    bomb = gzip.compress(envelope("0" * (2 * MB)))
    gz = {"Content-Encoding": "gzip"}

    def compressed(body: bytes, headers: dict[str, str]) -> Any:
        return raw(head(headers=headers, length=len(body) if announced else None) + body)

    scripts = [
        compressed(packed, gz),
        compressed(bomb, gz),
        compressed(b"this is not gzip at all" * 4, gz),
        compressed(packed, {"Content-Encoding": "br"}),
    ]
    async with RawServer(*scripts) as server, client(server.url) as kie:
        assert await kie.credits() == 7
        for reason in ("larger than", "corrupt", "'br', which was not asked for"):
            with pytest.raises(UnexpectedResponseError, match=reason):
                await kie.credits()
    assert server.requests[0].headers["accept-encoding"] == "gzip"


async def test_answer_size_cap_is_configurable() -> None:
    """max_answer_size sets the cap: an answer just over it is refused, one under it read."""
    small = envelope(5)
    big = envelope("x" * 200)
    async with (
        RawServer(answer(small), answer(big), endless(len(big), chunk=big)) as server,
        client(server.url, max_answer_size=len(small) + 10) as kie,
    ):
        assert await kie.credits() == 5
        for _ in range(2):
            with pytest.raises(UnexpectedResponseError, match="max_answer_size"):
                await kie.credits()
    with pytest.raises(ValueError, match="max_answer_size"):
        KieClient(KEY, max_answer_size=0)


async def test_an_oversized_create_answer_is_uncertain() -> None:
    """A create answered with more than the cap may have created a task: uncertain, not
    retried."""
    async with (
        RawServer(endless(5 * MB)) as server,
        client(server.url, retry=RetryPolicy.zero_wait(max_retries=3)) as kie,
    ):
        with pytest.raises(SubmissionUncertainError, match="larger than"):
            await kie.extend_video("src", 0, "go")
    assert len(server.requests) == 1


def test_garbage_is_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer that cannot be kie's envelope (it does not start with an object) is refused
    without being handed to the JSON parser; an envelope still is parsed."""
    parsed: list[int] = []
    real = json.loads

    def spy(data: Any, **kwargs: Any) -> Any:
        parsed.append(len(data))
        return real(data, **kwargs)

    monkeypatch.setattr(proto.json, "loads", spy)
    for garbage in (b"[" * 500_000, b"<html>" + b"x" * 900_000, b'"' + b"a" * 900_000 + b'"'):
        with pytest.raises(UnexpectedResponseError, match="not JSON"):
            proto.decipher(200, {}, garbage)
    assert parsed == []
    assert proto.decipher(200, {}, b'  {"code": 200, "data": 1}') == 1


# -- permanent failures fail fast, a dead API is reported in seconds ------------------------


async def _plain_http_answer(conn: Connection, request: Request | None) -> None:
    """What a plain-http server answers to a TLS ClientHello: an HTTP 400 page."""
    await conn.reader.read(1)
    await conn.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await asyncio.sleep(0.2)


@pytest.mark.parametrize("call", ["credits", "extend_video"])
async def test_https_to_a_plain_http_server_fails_at_once(call: str) -> None:
    """An https:// base URL pointing at a plain-http server is a permanent TLS failure: one
    attempt, not retried, and a create raises it as it is (nothing was sent)."""
    async with RawServer(unread(_plain_http_answer)) as server:
        url = server.url.replace("http://", "https://")
        async with client(url, retry=RetryPolicy.zero_wait(max_retries=5)) as kie:
            with pytest.raises(TransportError) as caught:
                await asyncio.wait_for(CALLS[call](kie), 10)
    assert caught.value.permanent and not caught.value.sent
    assert "TLS" in str(caught.value) and "not retried" in str(caught.value)
    assert server.connections == 1


async def test_an_untrusted_certificate_fails_at_once() -> None:
    """A server whose certificate is not trusted (self-signed) fails on the first handshake:
    a permanent TLS failure, never retried."""
    handshakes: list[str | None] = []
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(DATA / "selfsigned.pem", DATA / "selfsigned.key")
    tls.sni_callback = lambda _sock, name, _ctx: handshakes.append(name)  # type: ignore[assignment,misc,func-returns-value]
    async with RawServer(answer(envelope(5)), tls=tls) as server:
        url = f"https://localhost:{server.port}"
        async with client(url, retry=RetryPolicy.zero_wait(max_retries=5)) as kie:
            with pytest.raises(TransportError) as caught:
                await asyncio.wait_for(kie.credits(), 10)
    assert caught.value.permanent
    assert "certificate" in str(caught.value).lower()
    assert handshakes == ["localhost"]


@pytest.mark.parametrize(
    "url",
    [
        "https://api.kie.ai:99999",
        "https://api.kie.ai:port",
        "https://exa mple.com",
        "https://api.kie.ai\x1b[2J",
        "https://api.kie.ai/\n",
        "https://api..kie.ai",
        "https://" + "a" * 64 + ".kie.ai",
        "https://%61pi.kie.ai",
        "http://127.0.0.1:0",
    ],
)
def test_invalid_base_urls_are_refused_before_any_request(url: str) -> None:
    """A base URL with a bad port, a host name no DNS could hold, whitespace or control
    characters is a ConfigurationError at construction, shown without its control
    characters."""
    with pytest.raises(ValueError, match="base_url") as caught:
        KieClient(KEY, base_url=url)
    assert "\x1b" not in str(caught.value) and "\n" not in str(caught.value)


def test_permanent_transport_failures_are_never_retried() -> None:
    """The pure table: a permanent TransportError is neither a transient poll failure nor a
    create to retry, and not 'unreachable'; a refused connection is all three."""
    permanent = TransportError(message="TLS", sent=False, permanent=True)
    assert not poll_is_transient(permanent)
    assert create_failure(permanent) is CreateFailure.RAISE
    assert not unreachable(permanent)
    refused = TransportError(message="refused", sent=False)
    assert poll_is_transient(refused)
    assert create_failure(refused) is CreateFailure.RETRY
    assert unreachable(refused)
    assert not unreachable(TransportError(message="reset", sent=True))


async def test_a_refused_connection_is_retried_only_a_few_times(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Connection refused is retried max_connect_retries times (3 by default), although
    max_retries allows more, and the first retry's WARNING counts those; then a clear
    TransportError."""
    caplog.set_level(logging.WARNING, logger="kie_async")
    session, started = _counting_session()
    async with session:
        url = f"http://127.0.0.1:{_free_port()}"
        retry = RetryPolicy.zero_wait(max_retries=10)
        async with client(url, retry=retry, session=session) as kie:
            with pytest.raises(TransportError, match="could not connect") as caught:
                await kie.credits()
            assert not caught.value.sent
            assert len(started) == 4
            warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warned) == 1 and " unreachable, retry 1/3 " in warned[0]
            started.clear()
            with pytest.raises(TransportError):
                await kie.extend_video("src", 0, "go")
            assert len(started) == 4
        started.clear()
        once = RetryPolicy.zero_wait(max_retries=10)
        async with client(
            url, retry=attrs_evolve(once, max_connect_retries=1), session=session
        ) as kie:
            with pytest.raises(TransportError):
                await kie.get_task("t1")
        assert len(started) == 2


def attrs_evolve(policy: RetryPolicy, **changes: Any) -> RetryPolicy:
    import attrs

    return attrs.evolve(policy, **changes)


def test_default_policy_reports_a_dead_api_within_ten_seconds() -> None:
    """With the default RetryPolicy, the longest the connect retries of one call can sleep
    (every delay at its jittered maximum) stays under 10 s."""
    policy = RetryPolicy()
    delays = [
        min(policy.initial_delay * policy.factor**i, policy.max_delay) * (1 + policy.jitter)
        for i in range(policy.max_connect_retries)
    ]
    assert sum(delays) < 10, delays


async def test_unsent_creates_do_not_use_the_rate_limit_window() -> None:
    """Creates that never got a connection take no share of the rate limit: retries against
    a dead API do not queue behind it."""
    url = f"http://127.0.0.1:{_free_port()}"
    retry = RetryPolicy.zero_wait(max_retries=10)
    async with client(url, retry=retry, rate_limit=RateLimit(2, per=60)) as kie:
        requests = [ExtendRequest("src", i, "go") for i in range(4)]
        run = kie.extend_many(requests, concurrency=4, preflight=False)
        outcomes = await asyncio.wait_for(_collect(run), 10)
    assert all(isinstance(o.error, TransportError) for o in outcomes)


async def test_bulk_stops_submitting_when_kie_cannot_be_reached() -> None:
    """A bulk run whose creates fail to connect three times in a row sends no more: the rest
    is NOT_SUBMITTED, carrying the connection error."""
    session, started = _counting_session()
    async with session:
        url = f"http://127.0.0.1:{_free_port()}"
        async with client(url, retry=RetryPolicy.zero_wait(max_retries=5), session=session) as kie:
            requests = [ExtendRequest("src", i % 4, f"go {i}") for i in range(10)]
            outcomes = await _collect(kie.extend_many(requests, concurrency=1, preflight=False))
    kinds = [o.kind for o in outcomes]
    assert kinds.count(OutcomeKind.FAILED) == 3
    assert kinds.count(OutcomeKind.NOT_SUBMITTED) == 7
    assert all(isinstance(o.error, TransportError) for o in outcomes)
    assert len(started) == 3 * 4


async def test_bulk_stops_at_once_after_a_tls_failure() -> None:
    """One permanent failure (TLS) stops a bulk run's submissions: nothing can succeed."""
    async with RawServer(unread(_plain_http_answer)) as server:
        url = server.url.replace("http://", "https://")
        async with client(url) as kie:
            requests = [ExtendRequest("src", i % 4, f"go {i}") for i in range(5)]
            outcomes = await _collect(kie.extend_many(requests, concurrency=1, preflight=False))
    kinds = [o.kind for o in outcomes]
    assert kinds == [OutcomeKind.FAILED] + [OutcomeKind.NOT_SUBMITTED] * 4
    assert server.connections == 1


async def test_cli_against_a_dead_api_answers_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """kie-async credits and a 10-job bulk against a dead API end with exit status 1 and a
    'could not connect' message (scaled-down retry delays); the bulk run, at its account
    check, before any create."""
    monkeypatch.setenv("KIE_API_KEY", KEY)
    dead = f"http://127.0.0.1:{_free_port()}"
    options = {"retry": RetryPolicy(initial_delay=0.01, max_delay=0.02, jitter=0)}
    assert await run(["--base-url", dead, "credits"], client_options=options) == 1
    err = capsys.readouterr().err
    assert "could not connect" in err and "/api/v1/chat/credit" in err
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        "".join(json.dumps({"task_id": "src", "index": i % 4}) + "\n" for i in range(10))
    )
    status = await asyncio.wait_for(
        run(["--base-url", dead, "bulk", str(jobs)], client_options=options), 10
    )
    captured = capsys.readouterr()
    assert status == 1
    # The account check before the first create meets the dead API: one line, no job sent.
    assert captured.out == ""
    assert "could not connect" in captured.err and "nothing was submitted" in captured.err


# -- answers are checked --------------------------------------------------------------------


def _other_record(flag: int = 1) -> bytes:
    return envelope({"taskId": "someone-else", "successFlag": flag})


async def test_a_record_for_another_task_is_never_taken_for_this_one() -> None:
    """record-info answering about another task id is an UnexpectedResponseError for
    get_task, and a wait on the task never returns it (it times out)."""
    async with RawServer(answer(_other_record())) as server, client(server.url) as kie:
        with pytest.raises(UnexpectedResponseError, match="someone-else"):
            await kie.get_task("t1")
        with pytest.raises(TaskTimeoutError):
            await kie.task("t1").wait(timeout=0.3)


async def test_bulk_never_journals_a_record_for_another_task_as_done(tmp_path: Path) -> None:
    """A bulk run whose polls answer about another task never ends that request as done,
    neither in its outcome nor in its journal."""
    created = envelope({"taskId": "t1"})
    async with RawServer(answer(created), answer(_other_record())) as server:
        journal = tmp_path / "run.jsonl"
        async with client(server.url, poll=PollPolicy.zero_wait(timeout=0.3)) as kie:
            requests = [ExtendRequest("src", 0, "go")]
            run = kie.extend_many(requests, journal=journal, preflight=False)
            outcomes = await _collect(run)
    assert [o.kind for o in outcomes] == [OutcomeKind.FAILED]
    assert isinstance(outcomes[0].error, TaskTimeoutError)
    events = [json.loads(line)["event"] for line in journal.read_text().splitlines()[1:]]
    assert "done" not in events and "submitted" in events


HOSTILE_URLS = [
    "javascript:alert(1)",
    "file:///etc/passwd",
    "data:video/mp4;base64,AAAA",
    "/relative/t1.mp4",
    "//evil.example/t1.mp4",
    '"https://cdn.example.com/quoted.mp4"',
    '["https://cdn.example.com/listed.mp4"]',
    "http://cdn.example.com/plain-http.mp4",
    "https:///no-host.mp4",
    "https://cdn.example.com/a b.mp4",
    "https://cdn.example.com/\x1b[2J.mp4",
]


def test_only_absolute_https_result_urls_are_returned(caplog: pytest.LogCaptureFixture) -> None:
    """Result URLs that are not absolute https:// (or http:// to loopback) are left out with
    a warning, and stay in the record's raw data."""
    from kie_async._protocol.wire import parse_record

    good = ["https://cdn.example.com/t1.mp4", "http://127.0.0.1:8080/files/t1.mp4"]
    items = [{"resultUrl": url} for url in [*HOSTILE_URLS, *good]]
    data = {"taskId": "t1", "successFlag": 1, "resultInfoJson": {"resultUrls": items}}
    with caplog.at_level(logging.WARNING, logger="kie_async"):
        record = parse_record(data, task_id="t1")
    assert record.result_urls == tuple(good)
    assert record.data["resultInfoJson"]["resultUrls"] == items
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(HOSTILE_URLS)
    assert not any("\x1b" in line or "\n" in line for line in warnings)


@pytest.mark.parametrize("link", ["javascript:alert(1)", "file:///etc/passwd", "/t1.mp4"])
async def test_a_download_link_that_is_not_https_is_refused(link: str) -> None:
    """download_url refuses a link that is not an absolute https:// URL."""
    async with RawServer(answer(envelope({"url": link}))) as server, client(server.url) as kie:
        with pytest.raises(UnexpectedResponseError, match="not an absolute https"):
            await kie.download_url("https://cdn.example.com/t1.mp4")


async def test_a_create_answer_with_a_forged_task_id_is_uncertain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A create answered with a task id holding a newline (a forged log line) or an escape
    sequence is not a task id: the create is uncertain, and no log line carries it raw."""
    caplog.set_level(logging.DEBUG, logger="kie_async")
    for forged in ("t1\nkie_async ERROR forged line", "t1\x1b[2J"):
        async with (
            RawServer(answer(envelope({"taskId": forged}))) as server,
            client(server.url) as kie,
        ):
            with pytest.raises(SubmissionUncertainError, match="not a task id"):
                await kie.extend_video("src", 0, "go")
    for record in caplog.records:
        text = record.getMessage()
        assert "\n" not in text and "\x1b" not in text, text
