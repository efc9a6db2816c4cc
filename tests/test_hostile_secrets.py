"""Hostile servers and the API key: no error, chained cause, traceback local, log line or
journal ever holds it, whatever a server answers; and a server's text is shown escaped."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rawserver import (
    Connection,
    RawServer,
    Request,
    answer,
    endless,
    envelope,
    head,
    raw,
    reflect,
    trickle,
    unread,
)
from test_hostile import CALLS, _free_port, _plain_http_answer, client

import kie_async
from kie_async import (
    AuthenticationError,
    ExtendRequest,
    KieClient,
    KieError,
    OutcomeKind,
    PollPolicy,
    RetryPolicy,
    TaskFailedError,
    Timeout,
    UnexpectedResponseError,
)
from kie_async._cli import run
from kie_async._errors import exception_fields
from kie_async._text import printable

KEY = "sk-hostile-3Jd9SECRETq7"


def _texts(exc: BaseException, *, test_frames: bool = True) -> Iterator[str]:
    """Every way an error and its whole chain can be shown: repr, str, args, the journal's
    fields, and a traceback with every frame's locals (as error reporters capture them; only
    kie_async's frames when the test's own frames hold the key)."""
    if test_frames:
        te = traceback.TracebackException.from_exception(exc, capture_locals=True)
        yield "".join(te.format())
    else:
        yield "".join(traceback.format_exception(exc))
        yield from _our_frames_locals(exc)
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield repr(current)
        yield str(current)
        yield repr(current.args)
        if isinstance(current, KieError):
            yield repr(exception_fields(current))
        todo += [current.__cause__, current.__context__]


# The package's own directory, not any path naming "kie_async" (an unpacked sdist's tests live
# in kie_async-<version>/tests, and their frames hold the key on purpose).
_PACKAGE_DIR = os.path.dirname(kie_async.__file__) + os.sep


def _our_frames_locals(exc: BaseException) -> Iterator[str]:
    """The captured locals of the frames in kie_async's own code, along the whole chain."""
    te: traceback.TracebackException | None
    todo = [traceback.TracebackException.from_exception(exc, capture_locals=True)]
    while todo:
        te = todo.pop()
        for frame in te.stack:
            if frame.filename.startswith(_PACKAGE_DIR) and frame.locals:
                yield from (f"{name}={value}" for name, value in frame.locals.items())
        todo += [t for t in (te.__cause__, te.__context__) if t is not None]


async def _echo_in_status_line(conn: Connection, request: Request | None) -> None:
    """A 'status line' made of the request's Authorization header."""
    auth = request.headers.get("authorization", "") if request is not None else ""
    await conn.send(auth.encode() + b"\r\n\r\n")


def _echo_in_html(status: str) -> Any:
    async def script(conn: Connection, request: Request | None) -> None:
        auth = request.headers.get("authorization", "") if request is not None else ""
        body = f"<html><body>bad gateway for {auth}</body></html>".encode()
        await conn.send(head(status, length=len(body)) + body)

    return script


HOSTILE: dict[str, Any] = {
    "malformed status line": raw(b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}"),
    "header without colon": raw(b"HTTP/1.1 200 OK\r\nContent-Length 2\r\nBogus\r\n\r\n{}"),
    "oversized header line": raw(
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 20000 + b"\r\nContent-Length: 2\r\n\r\n{}"
    ),
    "key as status line": _echo_in_status_line,
    "lying Content-Length": raw(head(length=100) + b'{"code": 200'),
    "oversized answer": endless(3 << 20),
    "reflected key, 401": reflect(),
    "reflected key, 500": reflect(code=500),
    "reflected key, HTML 502": _echo_in_html("502 Bad Gateway"),
    "trickle": trickle(head(length=40) + b"x" * 40, every=0.02),
    "TLS to plain http": unread(_plain_http_answer),
    "refused": None,
}


@pytest.mark.parametrize("call", ["credits", "get_task", "extend_video"])
@pytest.mark.parametrize("hostile", sorted(HOSTILE))
async def test_no_hostile_answer_puts_the_key_in_an_error(
    hostile: str, call: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the server answers, the error raised, its whole __cause__/__context__ chain
    and the locals of every frame of its traceback never contain the key, nor does any log
    line at DEBUG."""
    caplog.set_level(logging.DEBUG)
    script = HOSTILE[hostile]
    timeout = Timeout(total=0.3, connect=0.5, read=0.2)
    retry = RetryPolicy.zero_wait(max_retries=1)
    if script is None:
        url = f"http://127.0.0.1:{_free_port()}"
        async with client(url, retry=retry, timeout=timeout) as kie:
            with pytest.raises(KieError) as caught:
                await asyncio.wait_for(CALLS[call](kie), 10)
    else:
        async with RawServer(script) as server:
            url = server.url
            if hostile.startswith("TLS"):
                url = url.replace("http://", "https://")
            async with client(url, retry=retry, timeout=timeout) as kie:
                with pytest.raises(KieError) as caught:
                    await asyncio.wait_for(CALLS[call](kie), 10)
    for text in _texts(caught.value):
        assert KEY not in text, text
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    assert not [line for r in caplog.records if KEY in (line := formatter.format(r))]


@pytest.mark.parametrize("key", [KEY, "sk/with/slashes-SECRET9"])
async def test_a_reflected_key_is_redacted(key: str, caplog: pytest.LogCaptureFixture) -> None:
    """A key the server echoes into msg, data or an HTML body (raw, JSON-escaped as ``\\/``,
    or spelled in ``\\u`` escapes) shows as *** in the error's message and body excerpt, and
    in no log line."""
    caplog.set_level(logging.DEBUG)

    async def escaped(conn: Connection, request: Request | None) -> None:
        auth = request.headers.get("authorization", "") if request is not None else ""
        body = envelope(code=401, msg=auth).replace(b"/", b"\\/")
        await conn.send(head(length=len(body)) + body)

    async def spelled(conn: Connection, request: Request | None) -> None:
        auth = request.headers.get("authorization", "") if request is not None else ""
        msg = "".join(f"\\u{ord(c):04x}" for c in auth)
        body = b'{"code": 401, "msg": "' + msg.encode() + b'", "data": null}'
        await conn.send(head(length=len(body)) + body)

    async with (
        RawServer(reflect(), escaped, spelled, _echo_in_html("502 Bad Gateway")) as server,
        client(server.url, api_key=key) as kie,
    ):
        errors: list[KieError] = []
        for _ in range(4):
            with pytest.raises(KieError) as caught:
                await kie.credits()
            errors.append(caught.value)
    *refused, page = errors
    for error in refused:
        assert isinstance(error, AuthenticationError) and error.message == "Bearer ***"
    assert isinstance(page, UnexpectedResponseError) and "Bearer ***" in page.body_excerpt
    for error in errors:
        for text in _texts(error, test_frames=False):
            assert key not in text, text
    assert not [r for r in caplog.records if key in r.getMessage()]


async def test_a_reflected_key_never_reaches_the_journal(tmp_path: Path) -> None:
    """A task record echoing the key (in errorMessage and in its raw data) is journaled with
    the key redacted."""

    async def failed_record(conn: Connection, request: Request | None) -> None:
        auth = request.headers.get("authorization", "") if request is not None else ""
        data = {"taskId": "t1", "successFlag": 2, "errorMessage": f"denied {auth}", "x": auth}
        body = envelope(data)
        await conn.send(head(length=len(body)) + body)

    journal = tmp_path / "run.jsonl"
    async with (
        RawServer(answer(envelope({"taskId": "t1"})), failed_record) as server,
        client(server.url) as kie,
    ):
        requests = [ExtendRequest("src", 0, "go")]
        run = kie.extend_many(requests, journal=journal, preflight=False)  # no balance here
        outcomes = [o async for o in run]
    assert [o.kind for o in outcomes] == [OutcomeKind.FAILED]
    assert isinstance(outcomes[0].error, TaskFailedError)
    text = journal.read_text(encoding="utf-8")
    assert KEY not in text
    assert "denied Bearer ***" in text


def test_repr_of_a_half_initialised_client_never_raises() -> None:
    """KieClient's repr works on a client whose __init__ never ran or failed half-way."""
    assert repr(object.__new__(KieClient)) == "KieClient(base_url=<unset>, api_key='***')"


@pytest.mark.parametrize(
    "settings",
    [{"timeout": -1}, {"base_url": "ftp://x"}, {"max_answer_size": 0}, {"retry": "x"}],
)
def test_a_failed_construction_keeps_the_key_out_of_its_traceback(settings: Any) -> None:
    """A ConfigurationError from KieClient(...) shows the key in no local of kie_async's
    frames (the api_key parameter included) when its traceback captures locals."""
    with pytest.raises(KieError) as caught:
        KieClient(KEY, **settings)
    assert not [item for item in _our_frames_locals(caught.value) if KEY in item]


def test_a_malformed_key_is_kept_out_of_its_traceback() -> None:
    """A key refused for whitespace is not in the locals of kie_async's frames either."""
    with pytest.raises(KieError) as caught:
        KieClient(KEY + " trailing")
    assert not [item for item in _our_frames_locals(caught.value) if KEY in item]


def test_the_cli_keeps_the_key_out_of_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command-line tool's client factory holds the key only masked: a failed
    construction shows it in no local of kie_async's frames."""
    from kie_async._cli import Context, build_parser

    monkeypatch.setenv("KIE_API_KEY", KEY)
    args = build_parser().parse_args(["--base-url", "ftp://example.com", "credits"])
    ctx = Context(io.StringIO(), io.StringIO(), args, {})
    with pytest.raises(KieError) as caught:
        ctx.client()
    assert not [item for item in _our_frames_locals(caught.value) if KEY in item]


# -- a server's text is shown escaped --------------------------------------------------------

HOSTILE_TEXT = "\x1b]0;pwned\x07\x1b[2J\rline\nkie_async ERROR forged \u202egnp.exe"


def test_printable_escapes_every_control_character() -> None:
    """printable turns C0/C1 controls, DEL and bidi overrides into visible escapes, leaving
    ordinary text (accents included) alone."""
    assert printable("caf\u00e9 ok") == "caf\u00e9 ok"
    shown = printable(HOSTILE_TEXT)
    assert shown == ("\\x1b]0;pwned\\x07\\x1b[2J\\rline\\nkie_async ERROR forged \\u202egnp.exe")
    assert shown.isprintable()
    assert printable("\x7f\x85\t") == "\\x7f\\x85\\t"


async def test_cli_shows_a_servers_text_escaped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """kie-async status and an error line show a server's msg and record fields with their
    escape sequences and newlines escaped: nothing reaches the terminal raw."""
    monkeypatch.setenv("KIE_API_KEY", KEY)
    record = {
        "taskId": "t1",
        "successFlag": 2,
        "taskType": HOSTILE_TEXT,
        "errorMessage": HOSTILE_TEXT,
        "createTime": HOSTILE_TEXT,
    }
    scripts = (answer(envelope(record)), answer(envelope(code=401, msg=HOSTILE_TEXT)))
    async with RawServer(*scripts) as server:
        options = {"retry": RetryPolicy.zero_wait(max_retries=0)}
        await run(["--base-url", server.url, "status", "t1"], client_options=options)
        assert await run(["--base-url", server.url, "credits"], client_options=options) == 1
    captured = capsys.readouterr()
    for stream in (captured.out, captured.err):
        assert not any(c in stream for c in "\x1b\x07\r\u202e"), stream
        assert not [line for line in stream.splitlines() if line.startswith("kie_async ERROR")]
    assert "\\x1b[2J" in captured.out and "\\x1b[2J" in captured.err


async def test_log_lines_never_carry_a_servers_newline(caplog: pytest.LogCaptureFixture) -> None:
    """A server msg with a newline is escaped in the retry log line: no forged log line."""
    caplog.set_level(logging.DEBUG, logger="kie_async")
    body = envelope(code=500, msg="boom\nkie_async ERROR forged")
    async with RawServer(answer(body)) as server:
        retry = RetryPolicy.zero_wait(max_retries=2)
        async with client(server.url, retry=retry, poll=PollPolicy.zero_wait(timeout=1)) as kie:
            with pytest.raises(KieError):
                await kie.credits()
    lines = [r.getMessage() for r in caplog.records]
    assert any("boom\\nkie_async ERROR forged" in line for line in lines)
    assert not [line for line in lines if "\n" in line]


async def test_a_forged_callback_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """A callback refused for its signature, naming a task id with a newline and an escape
    sequence, is logged on one line with both escaped."""
    import aiohttp

    from kie_async.callbacks import CallbackReceiver

    caplog.set_level(logging.WARNING, logger="kie_async")
    body = {"code": 200, "msg": "ok", "data": {"taskId": "t1\nkie_async ERROR forged\x1b[2J"}}
    async with CallbackReceiver(key="webhook-key") as receiver:
        url = await receiver.start()
        async with aiohttp.ClientSession() as session, session.post(url, json=body) as answer:
            assert answer.status == 401
    lines = [r.getMessage() for r in caplog.records if "rejected a callback" in r.getMessage()]
    assert lines and all("\n" not in line and "\x1b" not in line for line in lines)
    assert any("t1\\nkie_async ERROR forged\\x1b[2J" in line for line in lines)


def test_errors_show_server_text_escaped() -> None:
    """The str() of errors built from a server's text (msg, error message) is one printable
    line; the raw text stays in the fields."""
    error = AuthenticationError(code=401, message=HOSTILE_TEXT, http_status=200)
    assert str(error).isprintable() and error.message == HOSTILE_TEXT
    failed = TaskFailedError(task_id="t1", error_code="x\n", error_message=HOSTILE_TEXT)
    assert str(failed).isprintable()
    assert json.dumps(exception_fields(failed))
