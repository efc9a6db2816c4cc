"""Security and hygiene: the key never shows, inputs are checked, logging is the user's, and
cancelling leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import established as _established

from kie_async import (
    ClientClosedError,
    ConfigurationError,
    ExtendRequest,
    KieClient,
    KieError,
    OutcomeKind,
    PollPolicy,
    RateLimit,
    RetryPolicy,
    TaskFailedError,
    TaskTimeoutError,
    ValidationError,
)
from kie_async._errors import exception_fields
from kie_async.testing import FAULT_KINDS, FakeKieServer, Faults, TaskScript, fast_client

SECRET = "sk-live-7Hq2SECRETkey9Zx"
REPO = Path(__file__).resolve().parent.parent


def _exception_texts(exc: BaseException) -> Iterator[str]:
    """Every way an exception and its whole chain can be shown to a person or a log."""
    yield "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
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


# -- the key never shows ---------------------------------------------------------------------


async def test_api_key_never_shows_through_every_fault(caplog: pytest.LogCaptureFixture) -> None:
    """Through every fault on creates and polls, failed tasks, timeouts and a wrong key, the key
    appears in no repr or str, no exception chain or traceback, and no log line of any logger at
    DEBUG; the request log shows the header masked."""
    caplog.set_level(logging.DEBUG)
    shown: list[object] = []
    errors: list[BaseException] = []
    async with FakeKieServer(api_key=SECRET) as server:
        server.faults = Faults(slow_seconds=2.0)
        async with fast_client(server, timeout=0.3, max_retries=1) as kie:
            shown += [kie, kie.retry_policy, kie.poll_policy, kie.rate_limit]
            for fault in FAULT_KINDS:
                server.fail_next("create", fault)
                try:
                    handle = await kie.extend_video("src", 0, f"after {fault}")
                except KieError as exc:
                    errors.append(exc)
                    continue
                server.fail_next("record", fault)
                shown += [handle, await handle.wait(timeout=3)]
            server.script_next(TaskScript.failed("nope"), TaskScript(polls=10**6))
            for timeout in (3.0, 0.2):
                handle = await kie.extend_video("src", 1, "fails or never ends")
                with pytest.raises((TaskFailedError, TaskTimeoutError)) as ended:
                    await handle.wait(timeout=timeout)
                errors.append(ended.value)
            requests = [ExtendRequest("src", i, f"bulk {i}") for i in range(4)]
            server.fail_next("create", "drop_after")
            server.fail_next("create", "server_error")
            async for outcome in kie.extend_many(requests):
                shown.append(outcome)
                if outcome.error is not None:
                    errors.append(outcome.error)
        async with fast_client(server, api_key=SECRET[::-1], max_retries=0) as wrong:
            with pytest.raises(KieError) as refused:
                await wrong.credits()
            errors.append(refused.value)
    for candidate in ("a b", SECRET + "\n\x00", 42):
        with pytest.raises(ConfigurationError) as bad_key:
            KieClient(candidate)  # type: ignore[arg-type]
        errors.append(bad_key.value)
    with pytest.raises(ConfigurationError) as plain_http:
        KieClient(SECRET, base_url="http://api.example.com")
    errors.append(plain_http.value)

    assert {type(e).__name__ for e in errors} >= {
        "SubmissionUncertainError",
        "ServerError",
        "TaskFailedError",
        "TaskTimeoutError",
        "AuthenticationError",
        "ConfigurationError",
    }
    for thing in shown:
        assert SECRET not in repr(thing) and SECRET not in str(thing), thing
    for error in errors:
        for text in _exception_texts(error):
            assert SECRET not in text, text
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    lines = [formatter.format(record) for record in caplog.records]
    assert not [line for line in lines if SECRET in line]
    assert any("Authorization: Bearer ***" in line for line in lines)
    assert any("retrying" in line for line in lines)


def test_key_is_not_echoed_by_configuration_errors() -> None:
    """A malformed key is refused without quoting it back."""
    for candidate in (SECRET + " trailing", SECRET + "\t\x00", "\x01" + SECRET):
        with pytest.raises(ConfigurationError) as caught:
            KieClient(candidate)
        assert caught.value.setting == "api_key"
        assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


async def test_result_files_are_fetched_without_the_key(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """Downloading results sends no Authorization header to the file host, even when it is the
    API's own host."""
    record = await (await kie.extend_video("src", 0, "go"))
    paths = await kie.download_many([record], tmp_path)
    assert paths
    fetched = [r for r in server.requests if r.path.startswith("/files/")]
    assert fetched
    assert all("Authorization" not in r.headers for r in fetched)


# -- plain http ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://127.8.9.10",
        "http://localhost:1234/",
        "http://[::1]:8080",
        "https://api.kie.ai",
        "https://kie.example.com/proxy",
    ],
)
def test_secure_or_loopback_base_urls_are_accepted(url: str) -> None:
    """https anywhere, and plain http on loopback (the fake server), are accepted."""
    assert KieClient("k", base_url=url).base_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://api.kie.ai",
        "http://10.0.0.5:8000",
        "http://127.0.0.1.example.com",
        "http://localhost.example.com",
        "http://0.0.0.0:8000",
    ],
)
def test_plain_http_is_refused_unless_loopback_or_opted_in(url: str) -> None:
    """A non-loopback http:// base URL would send the key in clear text: refused, unless
    allow_insecure_http=True."""
    with pytest.raises(ConfigurationError) as caught:
        KieClient("k", base_url=url)
    assert caught.value.setting == "base_url"
    assert "allow_insecure_http" in str(caught.value)
    assert KieClient("k", base_url=url, allow_insecure_http=True).base_url == url


def test_plain_http_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """KIE_BASE_URL is held to the same rule as the argument."""
    monkeypatch.setenv("KIE_BASE_URL", "http://api.kie.ai")
    with pytest.raises(ConfigurationError):
        KieClient("k")


# -- every user-facing input names its field -------------------------------------------------

NAN = float("nan")
INF = float("inf")

BAD_CLIENT_ARGUMENTS: list[tuple[dict[str, Any], str]] = [
    ({"timeout": 0}, "timeout"),
    ({"timeout": -1}, "timeout"),
    ({"timeout": "5"}, "timeout"),
    ({"timeout": True}, "timeout"),
    ({"timeout": None}, "timeout"),
    ({"timeout": NAN}, "timeout"),
    ({"timeout": INF}, "timeout"),
    ({"connect_timeout": 0}, "connect_timeout"),
    ({"connect_timeout": "15"}, "connect_timeout"),
    ({"connect_timeout": INF}, "connect_timeout"),
    ({"max_connections": 0}, "max_connections"),
    ({"max_connections": 2.5}, "max_connections"),
    ({"max_connections": True}, "max_connections"),
    ({"max_connections": "10"}, "max_connections"),
    ({"rate_limit": "20/10"}, "rate_limit"),
    ({"rate_limit": 20}, "rate_limit"),
    ({"poll": {"interval": 1}}, "poll"),
    ({"poll": 5}, "poll"),
    ({"retry": 3}, "retry"),
    ({"retry": "often"}, "retry"),
    ({"max_retries": -1}, "max_retries"),
    ({"max_retries": 1.5}, "max_retries"),
    ({"max_retries": True}, "max_retries"),
    ({"max_retries": "3"}, "max_retries"),
    ({"api_key": ""}, "api_key"),
    ({"api_key": "   "}, "api_key"),
    ({"api_key": 123}, "api_key"),
    ({"base_url": "ftp://api.kie.ai"}, "base_url"),
    ({"base_url": "api.kie.ai"}, "base_url"),
    ({"base_url": "https://api.kie.ai/?x=1"}, "base_url"),
    ({"base_url": "https://[::1"}, "base_url"),
    ({"session": object()}, "session"),
]


@pytest.mark.parametrize(
    ("arguments", "field"),
    BAD_CLIENT_ARGUMENTS,
    ids=[f"{field}={next(iter(a.values()))!r}" for a, field in BAD_CLIENT_ARGUMENTS],
)
def test_client_arguments_are_validated_naming_the_field(
    arguments: dict[str, Any], field: str
) -> None:
    """Each bad KieClient argument raises ConfigurationError (a ValueError) naming it."""
    arguments = {"api_key": "k", **arguments}
    with pytest.raises(ConfigurationError) as caught:
        KieClient(**arguments)
    assert isinstance(caught.value, ValueError)
    assert caught.value.setting == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: RateLimit(0), "rate_limit"),
        (lambda: RateLimit(20, per=0), "rate_limit"),
        (lambda: PollPolicy(interval=-1), "interval"),
        (lambda: PollPolicy(jitter=0.9), "jitter"),
        (lambda: PollPolicy(timeout=0), "timeout"),
        (lambda: RetryPolicy(max_retries=-1), "max_retries"),
        (lambda: RetryPolicy(max_delay=INF), "max_delay"),
        (lambda: RetryPolicy(factor=0.5), "factor"),
    ],
)
def test_policies_are_validated_naming_the_field(build: Any, field: str) -> None:
    """The settings objects passed to KieClient name the offending field too."""
    with pytest.raises(ConfigurationError) as caught:
        build()
    assert caught.value.setting == field


@pytest.mark.parametrize("timeout", [0, -5, "10", True, NAN])
async def test_wait_timeout_is_validated(kie: KieClient, timeout: Any) -> None:
    """wait(timeout=...) rejects a bad deadline with a ValidationError naming timeout, before
    any poll is sent."""
    with pytest.raises(ValidationError) as caught:
        await kie.task("t-1").wait(timeout=timeout)
    assert caught.value.field == "timeout"


@pytest.mark.parametrize("concurrency", [0, -1, 2.5, "5", True])
async def test_bulk_concurrency_is_validated(kie: KieClient, concurrency: Any) -> None:
    """extend_many(concurrency=...) rejects bad values with a ValidationError naming it."""
    with pytest.raises(ValidationError) as caught:
        async for _ in kie.extend_many([], concurrency=concurrency):
            pass
    assert caught.value.field == "concurrency"


# -- logging belongs to the application ------------------------------------------------------

_LOGGING_SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, sys
    import kie_async
    from kie_async.testing import FakeKieServer, fast_client

    async def main():
        async with FakeKieServer(api_key=sys.argv[1]) as server:
            server.fail_next("create", "rate_limited")
            server.set_record("odd", {"taskId": "odd", "successFlag": 7})
            async with fast_client(server) as kie:
                await (await kie.extend_video("src", 0, "go"))
                try:
                    await kie.task("odd").wait(timeout=0.05)
                except kie_async.TaskTimeoutError:
                    pass
        names = [type(h).__name__ for h in logging.getLogger("kie_async").handlers]
        print(names, logging.getLogger().handlers)

    asyncio.run(main())
    """
)


def _run_logging_script(kie_log: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    if kie_log is not None:
        env["KIE_LOG"] = kie_log
    return subprocess.run(
        [sys.executable, "-c", _LOGGING_SCRIPT, SECRET],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )


def test_library_installs_no_log_handlers() -> None:
    """Without KIE_LOG the kie_async logger has only a NullHandler: a run with retries and a
    warning prints nothing, and the root logger is left alone."""
    done = _run_logging_script(None)
    assert done.stdout.strip() == "['NullHandler'] []"
    assert done.stderr == ""


def test_kie_log_debug_turns_on_readable_logging_without_the_key() -> None:
    """KIE_LOG=debug prints timestamped DEBUG lines to stderr: requests with the header masked,
    retries with their reason, warnings; never the key."""
    done = _run_logging_script("debug")
    err = done.stderr
    # the URL actually called, the fake server's: not "kie.ai"
    assert re.search(r"DEBUG -> POST http://127\.0\.0\.1:\d+/api/v1/mj/generateVideoExtend ", err)
    assert "Authorization: Bearer ***" in err
    assert "retrying create" in err and "429" in err
    assert "kie_async WARNING task odd reports undocumented successFlag 7" in err
    assert SECRET not in err and SECRET not in done.stdout
    first = err.splitlines()[0]
    assert first[:4].isdigit() and first[4] == "-", "each line starts with a timestamp"


# -- the command-line tool -------------------------------------------------------------------


async def _cli(
    *args: str, server: FakeKieServer, key: str = SECRET, cwd: Path | None = None
) -> tuple[int, str]:
    """Run the CLI in a subprocess against ``server``; its exit status and all its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    env.update(KIE_API_KEY=key, KIE_BASE_URL=server.url, KIE_LOG="debug", COLUMNS="200")
    env.update(KIE_POLL_ZERO_WAIT="1")  # the fake's tasks end at once: no need to wait for them
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kie_async",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8", "replace")


def _write_jobs(path: Path, count: int) -> Path:
    lines = (json.dumps({"task_id": "src", "index": i, "prompt": f"job {i}"}) for i in range(count))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _read_all(folder: Path) -> list[str]:
    return [p.read_text(encoding="utf-8") for p in folder.iterdir() if p.is_file()]


@pytest.mark.skipif(
    not (REPO / "kie_async" / "_cli").is_dir(), reason="the command-line tool is not there"
)
async def test_cli_never_prints_the_key(server: FakeKieServer, tmp_path: Path) -> None:
    """The CLI, verbose and with KIE_LOG=debug, prints no key in any command's output or file,
    through retries, a lost create reply, a failed task, a bulk run and a wrong key."""
    server.api_key = SECRET
    outputs: list[str] = []
    server.fail_next("create", "rate_limited")
    server.fail_next("record", "html_502")
    status, out = await _cli(
        "-v", "extend", "src", "--index", "0", "--prompt", "go", "--wait", server=server
    )
    assert status == 0, out
    outputs.append(out)
    task_id = next(iter(server.tasks))
    status, out = await _cli("-v", "status", task_id, server=server)
    assert status == 0, out
    outputs.append(out)
    server.fail_next("create", "drop_after")
    status, out = await _cli("-v", "extend", "src", "--index", "1", "--prompt", "x", server=server)
    assert status == 1, out
    outputs.append(out)
    jobs = _write_jobs(tmp_path / "jobs.jsonl", 4)
    server.script_next(TaskScript.failed("nope"))
    server.fail_next("create", "truncated")
    status, out = await _cli(
        "-v",
        "bulk",
        str(jobs),
        "--journal",
        "run.journal",
        "--out",
        "results.jsonl",
        server=server,
        cwd=tmp_path,
    )
    assert status == 1, out
    outputs.append(out)
    outputs += _read_all(tmp_path)
    status, out = await _cli("-v", "credits", server=server, key=SECRET + "x")
    assert status != 0, out
    outputs.append(out)
    everything = "\n".join(outputs)
    assert "Bearer ***" in everything
    assert SECRET not in everything


# -- cancelling leaves nothing behind --------------------------------------------------------


@contextlib.contextmanager
def _server_in_thread(**kwargs: Any) -> Iterator[FakeKieServer]:
    """A fake kie.ai on its own event loop in a thread, so the test's loop holds only the
    client's tasks."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-kie", daemon=True)
    thread.start()
    server = FakeKieServer(**kwargs)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(name="far_server")
def _far_server() -> Iterator[FakeKieServer]:
    """A fake kie.ai served from another thread's event loop."""
    with _server_in_thread() as server:
        yield server


def _open_files(path: Path) -> int:
    """How many file descriptors of this process point to ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return count


def _port(server: FakeKieServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _journal_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a journal (none if it was never created); each must be a JSON object."""
    if not path.exists():
        return []
    lines = [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


needs_proc = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")


async def _cancel_after(awaitable: Any, delay: float) -> float:
    """Cancel ``awaitable`` after ``delay`` seconds; it must stop at once. Returns the wall
    clock time of the cancel."""
    task = asyncio.ensure_future(awaitable)
    await asyncio.sleep(delay)
    task.cancel()
    cancelled, wall = time.monotonic(), time.time()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled < 1.0, "cancelling must not wait for the work to end"
    return wall


@needs_proc
async def test_cancelling_a_hung_poll_closes_its_connection(far_server: FakeKieServer) -> None:
    """Cancelling wait() while its poll hangs leaves no task, closes that poll's connection
    (nothing else is open), and the one-connection pool still serves the next call."""
    far_server.set_record("t-1", {"taskId": "t-1", "successFlag": 0})
    far_server.fail_next("record", "hang")
    before = asyncio.all_tasks()
    async with fast_client(far_server, timeout=30, max_connections=1) as kie:
        waiting = asyncio.ensure_future(kie.task("t-1").wait(timeout=30))
        for _ in range(500):
            if far_server.counts["fault:hang"]:
                break
            await asyncio.sleep(0.005)
        assert _established(_port(far_server)) == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await _settle()
        assert asyncio.all_tasks() <= before
        assert _established(_port(far_server)) == 0
        assert await asyncio.wait_for(kie.credits(), 2) > 0


async def test_cancelling_wait_is_never_lost(kie: KieClient) -> None:
    """A wait cancelled at the very moment its last poll completes is cancelled, not returned:
    asyncio.wait_for before Python 3.12 drops such a cancellation, and a bulk worker then went
    on sending creates."""
    handle = await kie.extend_video("src", 0, "go")
    lost = 0
    for attempt in range(300):
        waiting = asyncio.ensure_future(handle.wait())
        for _ in range(attempt % 60):  # sweep the moment of cancelling across the poll
            await asyncio.sleep(0)
        if not waiting.cancel():
            await waiting  # it had finished before the cancel: fine
            continue
        try:
            await waiting
        except asyncio.CancelledError:
            continue
        lost += 1
    assert lost == 0


@needs_proc
@pytest.mark.parametrize("delay", [0, 0.001, 0.003, 0.01, 0.03, 0.08])
async def test_cancelling_wait_at_any_point_leaves_nothing(
    far_server: FakeKieServer, delay: float
) -> None:
    """wait() cancelled at any moment (connecting, reading, between polls, in a retry's sleep)
    leaves no task and no checked-out connection; the client goes on working."""
    far_server.faults = Faults(
        endpoints=frozenset({"record"}),
        rate_limited=0.2,
        html_502=0.1,
        drop_after=0.1,
        slow=0.1,
        hang=0.05,
        slow_seconds=5,
        retry_after=0.01,
        seed=int(delay * 1000),
    )
    far_server.script_next(TaskScript(polls=10**6))
    before = asyncio.all_tasks()
    poll = PollPolicy(
        interval=0.002,
        factor=2,
        max_interval=0.02,
        jitter=0.5,
        timeout=5,
        first_delay=0,
        steady_polls=0,
    )
    async with fast_client(far_server, timeout=0.05, max_connections=2, poll=poll) as kie:
        handle = await kie.submit(ExtendRequest("src", 0, "go"))
        await _cancel_after(handle.wait(), delay)
        await _settle()
        assert asyncio.all_tasks() <= before
        far_server.faults = Faults()
        for _ in range(3):
            assert await asyncio.wait_for(kie.credits(), 2) > 0
    await _settle()
    assert _established(_port(far_server)) == 0


@needs_proc
@pytest.mark.parametrize("delay", [0, 0.002, 0.01, 0.03, 0.1, 0.25])
async def test_cancelling_extend_many_at_any_point_leaves_nothing(
    far_server: FakeKieServer, tmp_path: Path, delay: float
) -> None:
    """extend_many cancelled at any moment leaves no task, no open journal, no half-written
    journal line and no checked-out connection; a rerun with the journal then accounts for
    every request without creating any twice."""
    far_server.faults = Faults(
        rate_limited=0.05,
        server_error=0.03,
        drop_after=0.03,
        truncated=0.03,
        slow=0.03,
        hang=0.01,
        slow_seconds=5,
        seed=int(delay * 1000),
    )
    far_server.default_script = TaskScript(polls=3)
    journal = tmp_path / "run.jsonl"
    requests = [ExtendRequest("src", i % 4, f"clip {i}") for i in range(40)]
    before = asyncio.all_tasks()
    poll = PollPolicy(
        interval=0.002,
        factor=2,
        max_interval=0.02,
        jitter=0.5,
        timeout=2,
        first_delay=0,
        steady_polls=0,
    )
    async with fast_client(far_server, timeout=0.1, max_connections=3, poll=poll) as kie:

        async def consume() -> None:
            async for _ in kie.extend_many(requests, concurrency=10, journal=journal):
                pass

        cancelled = await _cancel_after(consume(), delay)
        await _settle()
        assert asyncio.all_tasks() <= before
        assert _open_files(journal) == 0
        for line in _journal_lines(journal):
            # Workers already scheduled may finish the step they are in when the cancel lands,
            # then nothing more is recorded (so no create is sent): no worker goes on.
            assert line.get("at", 0) <= cancelled + 0.5, line
        far_server.faults = Faults()
        assert await asyncio.wait_for(kie.credits(), 2) > 0
        outcomes = [o async for o in kie.extend_many(requests, concurrency=10, journal=journal)]
    await _settle()
    assert _established(_port(far_server)) == 0
    assert len(outcomes) == len(requests)
    assert all(o.kind is not OutcomeKind.NOT_SUBMITTED for o in outcomes)
    assert far_server.duplicate_creates() == 0


@needs_proc
async def test_closing_the_bulk_iterator_early_leaves_nothing(
    far_server: FakeKieServer, tmp_path: Path
) -> None:
    """Leaving extend_many's loop inside contextlib.aclosing stops every worker at once."""
    far_server.default_script = TaskScript(polls=10**6)
    journal = tmp_path / "run.jsonl"
    requests = [ExtendRequest("src", 0, f"clip {i}") for i in range(20)]
    far_server.script_next(TaskScript())
    before = asyncio.all_tasks()
    async with fast_client(far_server, poll=PollPolicy.zero_wait(timeout=30)) as kie:
        async with contextlib.aclosing(kie.extend_many(requests, journal=journal)) as outcomes:
            async for _ in outcomes:
                break
            left = time.monotonic()
        assert time.monotonic() - left < 0.5, "closing must not wait for the work to end"
        await _settle()
        assert asyncio.all_tasks() <= before
        assert _open_files(journal) == 0
        polls = far_server.counts["poll"]
        await asyncio.sleep(0.05)
        assert far_server.counts["poll"] == polls, "nothing polls after the loop was left"
    assert _established(_port(far_server)) == 0


async def test_a_closed_borrowed_session_is_a_kie_error(server: FakeKieServer) -> None:
    """Using a client whose borrowed session its owner closed raises ClientClosedError (a
    KieError), not aiohttp's bare RuntimeError."""
    import aiohttp

    session = aiohttp.ClientSession()
    await session.close()
    kie = fast_client(server, session=session)
    with pytest.raises(ClientClosedError):
        await kie.credits()
    with pytest.raises(ClientClosedError):
        async with kie:
            pass
    await kie.aclose()


async def test_borrowed_session_is_left_open(server: FakeKieServer) -> None:
    """A session passed in is the caller's: the client uses it and never closes it."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with fast_client(server, session=session) as kie:
            assert await kie.credits() > 0
        assert not session.closed


def test_no_attribute_of_the_client_holds_the_key_in_clear() -> None:
    """vars(client), as an error reporter would dump it, never shows the key, nor do the vars
    of its transport (the one object that sends it)."""
    key = "attr-secret-5b1d9e"
    client = KieClient(key, base_url="http://127.0.0.1:9")
    assert key not in repr(vars(client))
    assert key not in str(vars(client))
    assert key not in repr(vars(client._transport)) + repr(client._transport)
    assert key not in str(vars(client._transport))
