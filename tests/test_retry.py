"""Retries: which failures are retried for creates and for polls, how long between, how many."""

from __future__ import annotations

import ast
import asyncio
import logging
import random
import socket
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest

import kie_async
from kie_async import (
    AuthenticationError,
    ExtendRequest,
    FeatureDisabledError,
    KieClient,
    KieError,
    PollPolicy,
    RateLimitError,
    RetryPolicy,
    ServerError,
    SubmissionUncertainError,
    TaskStatus,
    TransportError,
    UnexpectedResponseError,
)
from kie_async._protocol.envelope import EXTEND_PATH, RECORD_PATH, decipher
from kie_async._retry import (
    CreateFailure,
    Schedule,
    create_failure,
    delays,
    next_delay,
    poll_is_transient,
    within,
)
from kie_async.testing import FAULT_KINDS, FakeKieServer, Faults, fast_client

# -- the table: one pure place decides -------------------------------------------------------


def _raised(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> KieError:
    """The error decipher raises for one answer (the way the client sees it)."""
    with pytest.raises(KieError) as caught:
        decipher(status, headers or {}, body, endpoint=EXTEND_PATH)
    return caught.value


def _envelope(code: int, msg: str = "x") -> bytes:
    return f'{{"code": {code}, "msg": "{msg}", "data": null}}'.encode()


HTML = b"<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"

#: (answer or failure, what a failed create does, whether a failed poll is retried)
TABLE: list[tuple[str, KieError, CreateFailure, bool]] = [
    ("429 in the body", _raised(200, _envelope(429)), CreateFailure.RETRY, True),
    ("429 as HTTP status", _raised(429, _envelope(429)), CreateFailure.RETRY, True),
    ("429 Cloudflare page", _raised(429, b"<html>slow down</html>"), CreateFailure.RETRY, True),
    ("455 maintenance", _raised(200, _envelope(455)), CreateFailure.RETRY, True),
    ("455 page", _raised(455, b"maintenance"), CreateFailure.RETRY, True),
    ("500 JSON envelope", _raised(200, _envelope(500)), CreateFailure.RAISE, True),
    ("500 JSON as HTTP 500", _raised(500, _envelope(500)), CreateFailure.RAISE, True),
    ("502 JSON envelope", _raised(502, _envelope(502)), CreateFailure.RAISE, True),
    ("501 generation failed", _raised(200, _envelope(501)), CreateFailure.RAISE, False),
    ("505 feature disabled", _raised(200, _envelope(505)), CreateFailure.RAISE, False),
    ("HTML 502 page", _raised(502, HTML), CreateFailure.UNCERTAIN, True),
    ("empty 503", _raised(503, b""), CreateFailure.UNCERTAIN, True),
    ("truncated JSON", _raised(200, _envelope(200)[:20]), CreateFailure.UNCERTAIN, True),
    ("JSON without envelope", _raised(200, b'{"ok": true}'), CreateFailure.UNCERTAIN, True),
    (
        "connection refused",
        TransportError(message="refused", sent=False),
        CreateFailure.RETRY,
        True,
    ),
    (
        "connection dropped",
        TransportError(message="reset", sent=True),
        CreateFailure.UNCERTAIN,
        True,
    ),
    ("read timeout", TransportError(message="no answer", sent=True), CreateFailure.UNCERTAIN, True),
    ("400 bad request", _raised(200, _envelope(400)), CreateFailure.RAISE, False),
    ("401 bad key", _raised(200, _envelope(401)), CreateFailure.RAISE, False),
    ("402 no credits", _raised(200, _envelope(402)), CreateFailure.RAISE, False),
    ("403 firewall page", _raised(403, b"error code: 1010"), CreateFailure.RAISE, False),
    ("422 validation", _raised(200, _envelope(422)), CreateFailure.RAISE, False),
]


@pytest.mark.parametrize(
    ("failure", "create", "poll"), [row[1:] for row in TABLE], ids=[row[0] for row in TABLE]
)
def test_retry_table(failure: KieError, create: CreateFailure, poll: bool) -> None:
    """Each row of the documented retry table is what create_failure and poll_is_transient say."""
    assert create_failure(failure) is create
    assert poll_is_transient(failure) is poll


def test_retry_table_is_documented() -> None:
    """Every row of the table above is named in docs/reliability.md, so docs and code agree."""
    docs = Path(__file__).parent.parent / "docs" / "reliability.md"
    text = docs.read_text(encoding="utf-8").lower()
    for phrase in ("429", "455", "json 500", "html 502", "truncated", "501", "505", "uncertain"):
        assert phrase in text, phrase


# -- creates against the fake server -----------------------------------------------------------

#: What one injected fault does to a create: the error raised (None: success after a retry),
#: how many creates the server carried out, how many attempts the client made.
CREATE_FAULTS: dict[str, tuple[type[KieError] | None, int, int]] = {
    "rate_limited": (None, 1, 2),
    "maintenance": (None, 1, 2),
    "server_error": (ServerError, 0, 1),
    "html_502": (SubmissionUncertainError, 0, 1),
    "drop_before": (SubmissionUncertainError, 0, 1),
    "drop_after": (SubmissionUncertainError, 1, 1),
    "truncated": (SubmissionUncertainError, 1, 1),
    "slow": (SubmissionUncertainError, 1, 1),
    "hang": (SubmissionUncertainError, 0, 1),
}


def test_every_fault_kind_has_a_create_expectation() -> None:
    """The create table below covers every fault the fake server can inject."""
    assert set(CREATE_FAULTS) == set(FAULT_KINDS)


@pytest.mark.parametrize("fault", sorted(CREATE_FAULTS))
async def test_create_retries_only_what_created_nothing(
    server: FakeKieServer, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A create is retried after 429/455 only; a lost reply raises SubmissionUncertainError
    carrying the request, a JSON 500 raises ServerError, and nothing is ever created twice."""
    caplog.set_level(logging.DEBUG, logger="kie_async")
    error, creates, attempts = CREATE_FAULTS[fault]
    server.faults = Faults(slow_seconds=3.0)
    server.fail_next("create", fault)
    request = ExtendRequest("src", 1, "Into the nebula")
    async with fast_client(server, timeout=0.3) as kie:
        started = time.monotonic()
        if error is None:
            handle = await kie.submit(request)
            assert handle.request is request
        else:
            with pytest.raises(error) as caught:
                await kie.submit(request)
            if error is SubmissionUncertainError:
                assert isinstance(caught.value, SubmissionUncertainError)
                assert caught.value.request is request
        assert time.monotonic() - started < 2.0, "a slow or hung answer outlived the timeout"
    assert server.counts["create"] == creates
    assert server.counts["request:create"] == attempts
    assert server.duplicate_creates() == 0
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == attempts - 1
    for record in retries:
        assert record.levelno == logging.DEBUG
        assert "after: API error 4" in record.getMessage()  # the reason: 429 or 455


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_create_retries_a_refused_connection_then_gives_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With nobody listening, a create is retried max_retries times and then raises
    TransportError with sent=False: certainly nothing was created, so it is not uncertain."""
    caplog.set_level(logging.DEBUG, logger="kie_async")
    port = _free_port()
    async with KieClient(
        "k", base_url=f"http://127.0.0.1:{port}", retry=RetryPolicy.zero_wait(3), rate_limit=None
    ) as kie:
        with pytest.raises(TransportError) as caught:
            await kie.extend_video("src", 0, "go")
    assert caught.value.sent is False
    assert not isinstance(caught.value, SubmissionUncertainError)
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 3
    assert all("could not connect" in m for m in retries)


async def test_create_waits_for_a_server_that_comes_up() -> None:
    """A create refused at connect time is retried with backoff and succeeds once the server
    listens, creating exactly one task."""
    port = _free_port()
    retry = RetryPolicy(max_retries=10, initial_delay=0.05, factor=2, max_delay=0.2, jitter=0)
    async with KieClient(
        "test-key", base_url=f"http://127.0.0.1:{port}", retry=retry, rate_limit=None
    ) as kie:
        submitting = asyncio.ensure_future(kie.extend_video("src", 0, "go"))
        await asyncio.sleep(0.2)
        assert not submitting.done()
        async with FakeKieServer(port=port) as server:
            handle = await asyncio.wait_for(submitting, 5)
            assert handle.task_id in server.tasks
            assert server.counts["create"] == 1


# -- polls against the fake server -------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULT_KINDS)
async def test_wait_retries_every_transient_poll_failure(
    server: FakeKieServer, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every injected fault on record-info is retried by wait(), each retry logged at DEBUG
    with its reason, and the task's result still arrives."""
    caplog.set_level(logging.DEBUG, logger="kie_async")
    server.faults = Faults(slow_seconds=3.0)
    async with fast_client(server, timeout=0.3) as kie:
        handle = await kie.extend_video("src", 0, "go")
        server.fail_next("record", fault, times=2)
        record = await handle.wait(timeout=5)
    assert record.status is TaskStatus.SUCCESS
    assert server.counts[f"fault:{fault}"] == 2
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying poll")]
    assert retries, "a retried poll must be logged"
    assert all(r.levelno == logging.DEBUG and " after: " in r.getMessage() for r in retries)


@pytest.mark.parametrize("fault", FAULT_KINDS)
async def test_get_task_retries_every_transient_failure(server: FakeKieServer, fault: str) -> None:
    """A single read (get_task) retries every injected fault within max_retries."""
    server.faults = Faults(slow_seconds=3.0)
    async with fast_client(server, timeout=0.3, max_retries=3) as kie:
        handle = await kie.extend_video("src", 0, "go")
        server.fail_next("record", fault, times=2)
        record = await kie.get_task(handle.task_id)
    assert record.task_id == handle.task_id


@pytest.mark.parametrize(
    ("code", "error"), [(401, AuthenticationError), (505, FeatureDisabledError)]
)
async def test_wait_raises_kies_verdicts_at_once(
    server: FakeKieServer, kie: KieClient, code: int, error: type[KieError]
) -> None:
    """A poll answered with a non-transient code ends the wait with that error after one poll."""
    handle = await kie.extend_video("src", 0, "go")
    server.answer_next("record", code, times=5)
    with pytest.raises(error):
        await handle.wait(timeout=5)
    assert server.counts["poll"] == 0
    assert server.counts["request:record"] == 1


async def test_wait_retries_json_500(server: FakeKieServer, kie: KieClient) -> None:
    """A JSON 500 from record-info is retried (unlike a create's), and the wait succeeds."""
    handle = await kie.extend_video("src", 0, "go")
    server.answer_next("record", 500, "Internal server error", times=3)
    record = await handle.wait(timeout=5)
    assert record.status is TaskStatus.SUCCESS
    assert server.counts["request:record"] == 4


# -- max_retries -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_retries", "faults", "succeeds"), [(0, 1, False), (2, 2, True), (2, 3, False)]
)
async def test_max_retries_bounds_create_attempts(
    server: FakeKieServer, max_retries: int, faults: int, succeeds: bool
) -> None:
    """KieClient(max_retries=n) makes at most n + 1 attempts; 0 disables retries."""
    server.fail_next("create", "rate_limited", times=faults)
    async with fast_client(server, max_retries=max_retries) as kie:
        assert kie.retry_policy.max_retries == max_retries
        if succeeds:
            await kie.extend_video("src", 0, "go")
        else:
            with pytest.raises(RateLimitError):
                await kie.extend_video("src", 0, "go")
    assert server.counts["request:create"] == min(faults + 1, max_retries + 1)


async def test_max_retries_zero_disables_read_retries(server: FakeKieServer) -> None:
    """With max_retries=0 a single failed read raises at once."""
    server.fail_next("credit", "html_502")
    async with fast_client(server, max_retries=0) as kie:
        with pytest.raises(UnexpectedResponseError):
            await kie.credits()
    assert server.counts["request:credit"] == 1


def test_max_retries_keeps_the_rest_of_the_policy() -> None:
    """max_retries overrides only the count of a given RetryPolicy."""
    policy = RetryPolicy(initial_delay=2, max_delay=7, jitter=0.1, max_retry_after=9)
    kie = KieClient("k", retry=policy, max_retries=3)
    assert kie.retry_policy == RetryPolicy(
        max_retries=3, initial_delay=2, max_delay=7, jitter=0.1, max_retry_after=9
    )


# -- the schedule -----------------------------------------------------------------------------


class _Failure:
    def __init__(self, retry_after: float | None = None) -> None:
        self.retry_after = retry_after


def _series(schedule: Schedule, count: int, failure: object = None, seed: int = 1) -> list[float]:
    generator = delays(schedule, random.Random(seed))
    generator.send(None)  # primed as backoff primes it
    return [generator.send(failure) for _ in range(count)]


def test_backoff_is_exponential_and_capped() -> None:
    """Without jitter, delays double from the initial delay and stop at the cap."""
    assert _series(Schedule(1, 2, 8, 0, 0), 6) == [1, 2, 4, 8, 8, 8]


def test_a_long_wait_never_overflows() -> None:
    """Thousands of delays (a wait of days) with a huge cap stay finite: backoff's expo is not
    asked for powers past the cap (or a day), which would overflow a float."""
    for schedule in (Schedule(0.5, 1.5, 1e300, 0.1, 0), Schedule(1.0, 2, 30, 0.1, 0)):
        series = _series(schedule, 5000)
        assert all(0 <= delay <= min(schedule.cap, 86_400 * 1.1) for delay in series)
    assert _series(Schedule(1.0, 2, 30, 0, 0), 5000)[-1] == 30


def test_jitter_spreads_delays_but_never_passes_the_cap() -> None:
    """Jitter varies each delay by up to its fraction, and the cap is a hard ceiling."""
    schedule = Schedule(1, 2, 8, 0.25, 0)
    samples = [_series(schedule, 6, seed=seed) for seed in range(200)]
    for series in samples:
        for delay, nominal in zip(series, [1, 2, 4, 8, 8, 8], strict=True):
            assert nominal * 0.75 <= delay <= min(nominal * 1.25, 8)
    assert len({series[0] for series in samples}) > 100, "jitter must actually vary delays"


def test_retry_after_is_honoured_and_jitter_never_shortens_it() -> None:
    """A server's Retry-After sets the minimum delay; jitter only lengthens it."""
    schedule = Schedule(0.1, 2, 1, 0.25, 120)
    for seed in range(200):
        delay = next_delay(schedule, 0.1, _Failure(5), random.Random(seed))
        assert 5 <= delay <= 5 * 1.25


def test_retry_after_is_capped() -> None:
    """A Retry-After beyond the cap waits exactly the cap, jitter included."""
    schedule = Schedule(0.1, 2, 1, 0.25, 120)
    for seed in range(50):
        assert next_delay(schedule, 0.1, _Failure(3600), random.Random(seed)) == 120


def test_zero_wait_ignores_retry_after() -> None:
    """The zero-wait policies used in tests never sleep, whatever the server asks."""
    policy = RetryPolicy.zero_wait()
    schedule = Schedule(
        policy.initial_delay, policy.factor, policy.max_delay, policy.jitter, policy.max_retry_after
    )
    assert _series(schedule, 5, _Failure(30)) == [0, 0, 0, 0, 0]


def test_retry_after_http_date_is_read() -> None:
    """A Retry-After given as an HTTP date becomes the seconds until then."""
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    error = _raised(429, _envelope(429), {"Retry-After": format_datetime(when, usegmt=True)})
    assert isinstance(error, RateLimitError)
    assert error.retry_after is not None
    assert 27 <= error.retry_after <= 31


async def _create_gap(server: FakeKieServer, retry: RetryPolicy) -> float:
    """Seconds between a create refused with 429 and its retry, as the server saw them."""
    server.fail_next("create", "rate_limited")
    async with fast_client(server, retry=retry) as kie:
        await kie.extend_video("src", 0, "go")
    first, second = (r.at for r in server.requests if r.path == EXTEND_PATH)
    return second - first


async def test_create_honours_retry_after_seconds(server: FakeKieServer) -> None:
    """A 429 carrying Retry-After: 0.3 delays the create's retry by at least 0.3 s."""
    server.faults = Faults(retry_after=0.3)
    retry = RetryPolicy(initial_delay=0, factor=1, max_delay=0, jitter=0.25, max_retry_after=5)
    gap = await _create_gap(server, retry)
    assert 0.3 <= gap < 0.3 * 1.25 + 0.2


async def test_create_caps_a_far_retry_after_date(server: FakeKieServer) -> None:
    """A Retry-After HTTP date an hour away is capped by max_retry_after."""
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    server.faults = Faults(retry_after=format_datetime(later, usegmt=True))
    retry = RetryPolicy(initial_delay=0, factor=1, max_delay=0, jitter=0.25, max_retry_after=0.3)
    gap = await _create_gap(server, retry)
    assert 0.3 <= gap < 0.3 + 0.2


async def test_poll_honours_retry_after_within_its_interval_cap(server: FakeKieServer) -> None:
    """A poll refused with 429 and Retry-After waits that long (up to max_interval) before the
    next poll."""
    server.faults = Faults(retry_after=0.25)
    poll = PollPolicy(interval=0, factor=1, max_interval=0.5, jitter=0, timeout=5, first_delay=0)
    async with fast_client(server, poll=poll) as kie:
        handle = await kie.extend_video("src", 0, "go")
        server.fail_next("record", "rate_limited")
        await handle.wait()
    first, second = (r.at for r in server.requests if r.path == RECORD_PATH)
    assert 0.25 <= second - first < 0.25 + 0.2


async def test_a_429_pauses_every_submission(server: FakeKieServer) -> None:
    """After a create is refused with 429, other creates of the same client also hold back for
    the server's Retry-After instead of provoking more refusals."""
    server.faults = Faults(retry_after=0.4)
    server.fail_next("create", "rate_limited")
    retry = RetryPolicy(initial_delay=0, factor=1, max_delay=0, jitter=0, max_retry_after=5)
    async with fast_client(server, retry=retry) as kie:
        first = asyncio.ensure_future(kie.extend_video("src", 0, "first"))
        for _ in range(1000):
            if server.counts["fault:rate_limited"]:
                break
            await asyncio.sleep(0.005)
        refused_at = next(r.at for r in server.requests if r.path == EXTEND_PATH)
        await asyncio.sleep(0.05)  # the client has read the 429 by now
        await kie.extend_video("src", 0, "second")
        await first
    later = [r.at for r in server.requests if r.path == EXTEND_PATH][1:]
    assert len(later) == 2
    assert min(later) - refused_at >= 0.4


# -- deadlines never swallow a cancellation ------------------------------------------------


async def test_within_returns_the_value_or_none_at_the_deadline() -> None:
    """within() gives the awaitable's value, its exception, or None once the deadline passed
    (the awaitable then cancelled)."""
    assert await within(asyncio.sleep(0, "value"), 1) == "value"
    assert await within(asyncio.sleep(0, "value"), None) == "value"
    slow = asyncio.ensure_future(asyncio.sleep(5, "late"))
    assert await within(slow, 0.02) is None
    assert slow.cancelled()

    async def refused() -> int:
        raise _raised(429, _envelope(429))

    with pytest.raises(RateLimitError):
        await within(refused(), 1)


async def test_within_never_loses_a_cancellation() -> None:
    """Cancelled in the same instant its awaitable finishes, within() raises CancelledError
    (asyncio.wait_for before Python 3.12 returns the value instead)."""
    loop = asyncio.get_running_loop()
    for _ in range(50):
        inner: asyncio.Future[int] = loop.create_future()
        waiting = asyncio.ensure_future(within(inner, 10))
        await asyncio.sleep(0)
        inner.set_result(1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting


# -- backoff stays behind one module ---------------------------------------------------------


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_retry_module_imports_backoff() -> None:
    """backoff is unmaintained: no module of the package but _retry imports it."""
    package = Path(kie_async.__file__).parent
    importers = sorted(p.name for p in package.rglob("*.py") if "backoff" in _imported_roots(p))
    assert importers == ["_retry.py"]


async def test_backoff_logs_nothing_itself(
    server: FakeKieServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Retries are logged by kie_async only; backoff's own loggers stay silent."""
    caplog.set_level(logging.DEBUG)
    server.fail_next("create", "rate_limited", times=2)
    async with fast_client(server) as kie:
        await kie.extend_video("src", 0, "go")
    assert not [r for r in caplog.records if r.name.startswith("backoff")]
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 2
