"""Messages that say where and what: jobs-file problems by line, capped; the host that was
actually called; public names shown as ``kie_async.Name``."""

from __future__ import annotations

import codecs
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import kie_async
from kie_async import (
    ExtendRequest,
    KieClient,
    NotFoundError,
    PollPolicy,
    RetryPolicy,
    TransportError,
    ValidationError,
)
from kie_async._cli import run
from kie_async._cli.jobs import parse_jobs
from kie_async.testing import FakeKieServer

KEY = "test-key"
FAST: dict[str, Any] = {"poll": PollPolicy.zero_wait(), "retry": RetryPolicy.zero_wait()}


@pytest.fixture(name="server")
async def _server() -> AsyncIterator[FakeKieServer]:
    """A fake kie.ai with the default key, which the command finds in KIE_API_KEY."""
    async with FakeKieServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake server's key in KIE_API_KEY, as a user would set it."""
    monkeypatch.setenv("KIE_API_KEY", KEY)


async def bulk(server: FakeKieServer, jobs: Path, *argv: str) -> int:
    """``kie-async bulk JOBS`` in this event loop against ``server``."""
    return await run(["--base-url", server.url, "bulk", str(jobs), *argv], client_options=FAST)


def job(index: int = 0) -> bytes:
    return json.dumps({"task_id": "src", "index": index % 4, "prompt": "p"}).encode()


# -- jobs files ---------------------------------------------------------------------------------


async def test_ten_thousand_bad_lines_print_twenty_errors_and_a_count(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A jobs file of 10,000 bad lines prints its first 20 problems, how many more there are,
    and the count of bad lines, sends nothing, and exits 2."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"task_id": "src", "index": 9}\n' * 10_000, encoding="utf-8")
    assert await bulk(server, jobs) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 22, lines[:3]
    assert lines[0].startswith(f"error: {jobs} line 1: index: 9 is out of range")
    assert lines[19].startswith(f"error: {jobs} line 20: index:")
    assert lines[20] == "error: ... and 9980 more problem(s) not shown"
    assert lines[21] == f"error: 10000 bad line(s) in {jobs}; nothing was submitted"
    assert server.requests == []


async def test_a_byte_order_mark_is_accepted(server: FakeKieServer, tmp_path: Path) -> None:
    """A jobs file saved with a UTF-8 byte-order mark (as some Windows editors do) runs."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(codecs.BOM_UTF8 + job(0) + b"\r\n" + job(1) + b"\r\n")
    assert await bulk(server, jobs) == 0
    assert server.counts["create"] == 2


async def test_invalid_utf8_is_named_by_line_and_column(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A byte that is not UTF-8 is reported by its line and column (not a byte offset in the
    file), alongside the file's other problems, and nothing is sent."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(job(0) + b"\n" + b'{"task_id": "\xe9t\xe9", "index": 0}\n' + b"{oops\n")
    assert await bulk(server, jobs) == 2
    err = capsys.readouterr().err
    assert f"{jobs} line 2: not valid UTF-8 (byte 0xe9 at column 14)" in err
    assert f"{jobs} line 3: not valid JSON" in err
    assert "position" not in err
    assert "2 bad line(s)" in err
    assert server.requests == []


def test_json_errors_say_at_once_and_count_columns_from_the_line_start() -> None:
    """json's "Invalid control character at" does not become "at at", and the column is the
    line's own, indentation included."""
    _, errors = parse_jobs('   {"task_id": "a\tb", "index": 0}\n')
    assert [str(e) for e in errors] == [
        "line 1: not valid JSON (Invalid control character at column 18)"
    ]


def test_lines_end_only_where_editors_end_them() -> None:
    """A U+2028 line separator inside a JSON string does not split the line in two."""
    jobs, errors = parse_jobs('{"task_id": "a", "index": 0, "prompt": "one\u2028two"}\n')
    assert errors == []
    assert [job.request.prompt for job in jobs] == ["one\u2028two"]


def test_an_empty_prompt_says_that_none_asks_for_automatic_extension() -> None:
    """ExtendRequest(..., prompt="") names prompt=None as the way to an automatic extension."""
    with pytest.raises(ValidationError) as caught:
        ExtendRequest("src", 0, prompt="")
    assert caught.value.field == "prompt"
    assert "prompt=None" in caught.value.reason
    assert "automatic extension" in caught.value.reason


# -- the host actually called -------------------------------------------------------------------


async def test_a_path_the_server_does_not_route_names_the_url_that_answered(
    server: FakeKieServer,
) -> None:
    """A wrong base path meets kie's 404 with a Spring Boot body (O11, served by the fake): the
    NotFoundError names the URL that answered and says what it means, without the key and
    without "kie.ai"."""
    async with KieClient(KEY, base_url=f"{server.url}/v2", retry=RetryPolicy.zero_wait()) as kie:
        with pytest.raises(NotFoundError) as caught:
            await kie.credits()
    error = caught.value
    text = str(error)
    assert error.url == f"{server.url}/v2/api/v1/chat/credit"
    assert error.endpoint == "/api/v1/chat/credit"
    assert text.startswith(f"API error 404 from {server.url}/v2/api/v1/chat/credit: ")
    assert "nothing is served at this URL (a wrong base_url, or an endpoint removed?)" in text
    assert '"error": "Not Found"' in text  # the server's own words follow
    for secret in (KEY, "kie.ai"):
        assert secret not in text and secret not in repr(error)


def test_a_base_url_with_a_password_is_refused_without_showing_it() -> None:
    """user:password@ in base_url (which aiohttp cannot send beside the key, and which every
    message naming the URL would show) is a ConfigurationError that does not repeat it."""
    for base in ("https://me:hunter2@proxy.example", "http://me:hunter2 x@127.0.0.1:1/v"):
        with pytest.raises(kie_async.ConfigurationError) as caught:
            KieClient(KEY, base_url=base)
        assert caught.value.setting == "base_url"
        assert "user name or password" in str(caught.value)
        assert "hunter2" not in str(caught.value) and "hunter2" not in repr(caught.value)


async def test_network_errors_and_their_warning_name_the_host_called(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A base URL where nothing listens: the TransportError names the URL called and the one
    WARNING names its host and port, not kie.ai."""
    async with FakeKieServer() as gone:
        url = gone.url  # closed now: nothing listens there
    retry = RetryPolicy(max_retries=1, initial_delay=0.01, factor=1, max_delay=0.01, jitter=0)
    async with KieClient(KEY, base_url=url, retry=retry, rate_limit=None) as kie:
        with pytest.raises(TransportError) as caught:
            await kie.get_task("abc123")
    assert caught.value.url == f"{url}/api/v1/mj/record-info"
    assert str(caught.value).startswith(f"network error calling {url}/api/v1/mj/record-info: ")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert warned[0].startswith(f"{url.removeprefix('http://')} unreachable, retry 1/1 ")
    assert "kie.ai" not in warned[0]


async def test_verbose_logs_and_cli_errors_name_the_server_called(
    server: FakeKieServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-v` logs each request with the URL called, and an unknown task is "unknown to" that
    host, not to "kie.ai"."""
    host = server.url.removeprefix("http://")
    assert await run(["--base-url", server.url, "-v", "status", "nope"], client_options=FAST) == 1
    err = capsys.readouterr().err
    assert f"-> GET {server.url}/api/v1/mj/record-info " in err
    assert f"error: no such task: {host} knows no task with the id nope" in err
    assert "kie.ai" not in err


def test_no_message_of_the_package_says_at_at() -> None:
    """No string in kie_async's source doubles "at" (json's "Invalid control character at"
    was followed by " at column")."""
    package = Path(kie_async.__file__).parent
    for path in package.rglob("*.py"):
        assert not re.search(r"\bat at\b", path.read_text(encoding="utf-8")), path
