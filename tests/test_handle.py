"""TaskHandle: waiting ends on success, failure or deadline, survives transient trouble,
and can be cancelled cleanly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kie_async import (
    AuthenticationError,
    BadRequestError,
    KieClient,
    PollPolicy,
    TaskFailedError,
    TaskNotFoundError,
    TaskRecord,
    TaskStatus,
    TaskTimeoutError,
    ValidationError,
)
from kie_async.testing import FakeKieServer, TaskScript, fast_client

NEVER_ENDS = TaskScript(polls=10**9)


def spaced(interval: float, **kwargs: Any) -> PollPolicy:
    """A policy polling every ``interval`` seconds exactly (no growth, no jitter)."""
    return PollPolicy(
        interval=interval, factor=1, max_interval=interval, jitter=0, first_delay=0, **kwargs
    )


def pending_tasks_of_ours() -> list[asyncio.Task[Any]]:
    """Unfinished asyncio tasks running kie_async client code (or backoff, which it wraps)."""
    found = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task() or task.done():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        fake = "kie_async/testing/" in filename.replace("\\", "/")  # the fake server's own
        if ("kie_async" in filename and not fake) or ("backoff" in filename):
            found.append(task)
    return found


async def wait_for_polls(server: FakeKieServer, task_id: str, count: int) -> None:
    """Yield to the loop until ``task_id`` has been polled ``count`` times (at most 5 s)."""
    give_up = time.monotonic() + 5
    while server.polls_for(task_id) < count:
        assert time.monotonic() < give_up, "the task was never polled"
        await asyncio.sleep(0.005)


@pytest.fixture(name="once")
async def _once(server: FakeKieServer) -> AsyncIterator[KieClient]:
    """A zero-wait client that never retries single requests."""
    async with fast_client(server, max_retries=0) as client:
        yield client


# -- how a wait ends ------------------------------------------------------------------------------


async def test_await_handle_returns_the_record(kie: KieClient, server: FakeKieServer) -> None:
    """Awaiting a handle polls until success and returns the final record."""
    server.script_next(TaskScript(polls=3, videos=2))
    handle = await kie.extend_video("src", 0, "Into the nebula")
    record = await handle
    assert isinstance(record, TaskRecord)
    assert record.status is TaskStatus.SUCCESS
    assert record.task_id == handle.task_id
    assert len(record.result_urls) == 2
    assert handle.last_record == record
    assert server.polls_for(handle.task_id) == 4


async def test_wait_returns_the_record(kie: KieClient, server: FakeKieServer) -> None:
    """handle.wait() returns the same kind of record as awaiting the handle."""
    server.script_next(TaskScript(polls=1))
    handle = await kie.extend_video("src")
    record = await handle.wait()
    assert record.status is TaskStatus.SUCCESS
    assert record.params is not None
    assert record.params["taskType"] == "mj_video_extend_auto"


@pytest.mark.parametrize(
    ("flag", "status"), [(2, TaskStatus.FAILED), (3, TaskStatus.GENERATION_FAILED)]
)
async def test_failed_flags_raise_task_failed(
    kie: KieClient, server: FakeKieServer, flag: int, status: TaskStatus
) -> None:
    """successFlag 2 and 3 both raise TaskFailedError with the id, kie's error and the record."""
    server.script_next(TaskScript.failed("content policy violation", flag=flag))
    handle = await kie.extend_video("src", 1, "something forbidden")
    with pytest.raises(TaskFailedError) as info:
        await handle
    exc = info.value
    assert exc.task_id == handle.task_id
    assert exc.error_code == "400"
    assert exc.error_message == "content policy violation"
    assert exc.record is not None
    assert exc.record.status is status
    assert handle.task_id in str(exc)
    assert "content policy violation" in str(exc)


async def test_deadline_raises_task_timeout(kie: KieClient, server: FakeKieServer) -> None:
    """A task still generating at the deadline raises TaskTimeoutError, a TimeoutError too."""
    server.script_next(NEVER_ENDS)
    handle = await kie.extend_video("src", 0, "slow")
    started = time.monotonic()
    with pytest.raises(TaskTimeoutError) as info:
        await handle.wait(timeout=0.2, poll=spaced(0.01))
    assert 0.19 <= time.monotonic() - started < 2.0
    exc = info.value
    assert isinstance(exc, TimeoutError)
    assert exc.task_id == handle.task_id
    assert exc.timeout == 0.2
    assert exc.record is not None
    assert exc.record.status is TaskStatus.GENERATING
    assert exc.record == handle.last_record


async def test_policy_timeout_is_the_default_deadline(server: FakeKieServer) -> None:
    """Without a timeout argument, the client's PollPolicy deadline applies."""
    server.script_next(NEVER_ENDS)
    async with fast_client(server, poll=spaced(0.01, timeout=0.2)) as kie:
        handle = await kie.extend_video("src")
        with pytest.raises(TaskTimeoutError) as info:
            await handle
    assert info.value.timeout == 0.2


# -- transient trouble does not end a wait --------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["rate_limited", "maintenance", "server_error", "html_502", "drop_before", "truncated"]
)
async def test_transient_faults_do_not_end_the_wait(
    kie: KieClient, server: FakeKieServer, kind: str
) -> None:
    """429, 455, JSON 500, HTML 502, dropped connections and cut JSON are polled through."""
    server.script_next(TaskScript(polls=1))
    handle = await kie.extend_video("src", 0, "go")
    server.fail_next("record", kind, times=3)
    record = await handle
    assert record.status is TaskStatus.SUCCESS
    assert server.counts[f"fault:{kind}"] == 3


@pytest.mark.parametrize("as_status", [False, True], ids=["in-body", "as-http-status"])
@pytest.mark.parametrize("code", [429, 455, 500])
async def test_transient_codes_do_not_end_the_wait(
    kie: KieClient, server: FakeKieServer, code: int, as_status: bool
) -> None:
    """Codes 429, 455 and 500, in the body or as the HTTP status, are polled through."""
    server.http_errors = as_status
    handle = await kie.extend_video("src", 0, "go")
    server.answer_next("record", code, times=3)
    record = await handle
    assert record.status is TaskStatus.SUCCESS
    assert server.counts[f"answered:{code}"] == 3
    assert server.polls_for(handle.task_id) == 4


async def test_read_timeouts_do_not_end_the_wait(server: FakeKieServer) -> None:
    """A poll whose answer is slower than the client's timeout is retried, not fatal."""
    server.faults.slow_seconds = 5.0
    async with fast_client(server, timeout=0.2) as kie:
        handle = await kie.extend_video("src", 0, "go")
        server.fail_next("record", "slow", times=2)
        record = await handle
    assert record.status is TaskStatus.SUCCESS
    assert server.counts["fault:slow"] == 2


@pytest.mark.parametrize(("code", "error"), [(401, AuthenticationError), (400, BadRequestError)])
async def test_non_transient_error_ends_the_wait(
    kie: KieClient, server: FakeKieServer, code: int, error: type[Exception]
) -> None:
    """A 401 (or 400) while polling ends the wait at once with that error."""
    server.script_next(NEVER_ENDS)
    handle = await kie.extend_video("src", 0, "go")
    server.answer_next("record", code, times=5)
    with pytest.raises(error):
        await handle.wait(timeout=5)
    assert server.polls_for(handle.task_id) == 1


# -- undocumented flags ---------------------------------------------------------------------------


async def test_unknown_flag_keeps_polling_and_logs_once(
    kie: KieClient, server: FakeKieServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An undocumented successFlag is waited through, warned about once, then success ends it."""
    caplog.set_level(logging.WARNING, logger="kie_async")
    server.set_record("odd-1", {"taskId": "odd-1", "successFlag": 9})
    waiting = asyncio.ensure_future(kie.task("odd-1").wait(timeout=5))
    await wait_for_polls(server, "odd-1", 5)
    assert not waiting.done()
    server.set_record("odd-1", {"taskId": "odd-1", "successFlag": 1})
    record = await waiting
    assert record.status is TaskStatus.SUCCESS
    warnings = [r for r in caplog.records if "successFlag" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "odd-1" in warnings[0].getMessage()
    assert "9" in warnings[0].getMessage()


async def test_unknown_flag_times_out_with_unknown_record(
    kie: KieClient, server: FakeKieServer
) -> None:
    """A flag that stays undocumented ends in TaskTimeoutError carrying the UNKNOWN record."""
    server.set_record("odd-2", {"taskId": "odd-2", "successFlag": -3})
    with pytest.raises(TaskTimeoutError) as info:
        await kie.task("odd-2").wait(timeout=0.15)
    assert info.value.record is not None
    assert info.value.record.status is TaskStatus.UNKNOWN


async def test_unknown_flag_is_not_a_tight_loop(server: FakeKieServer) -> None:
    """With a 50 ms interval, an undocumented flag is polled at that pace, not flat out."""
    server.set_record("odd-3", {"taskId": "odd-3", "successFlag": 42})
    async with fast_client(server, poll=spaced(0.05)) as kie:
        with pytest.raises(TaskTimeoutError):
            await kie.task("odd-3").wait(timeout=0.3)
    assert 2 <= server.polls_for("odd-3") <= 8


# -- cancellation ---------------------------------------------------------------------------------


async def test_cancel_stops_the_wait_cleanly(server: FakeKieServer) -> None:
    """Cancelling the awaiting task raises CancelledError there and leaves nothing running."""
    server.script_next(NEVER_ENDS)
    async with fast_client(server, poll=spaced(0.01)) as kie:
        handle = await kie.extend_video("src", 0, "go")
        waiting = asyncio.ensure_future(handle.wait(timeout=30))
        await wait_for_polls(server, handle.task_id, 3)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert waiting.cancelled()
        await asyncio.sleep(0.05)
        assert pending_tasks_of_ours() == []
        polls = server.polls_for(handle.task_id)
        await asyncio.sleep(0.05)
        assert server.polls_for(handle.task_id) == polls
        assert await kie.credits() > 0  # the client is still usable


async def test_cancel_during_a_hung_poll(server: FakeKieServer) -> None:
    """A wait stuck on a poll that never answers is still cancelled promptly."""
    async with fast_client(server, timeout=30) as kie:
        handle = await kie.extend_video("src", 0, "go")
        server.fail_next("record", "hang")
        waiting = asyncio.ensure_future(handle.wait(timeout=30))
        await wait_for_polls(server, handle.task_id, 1)
        started = time.monotonic()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert time.monotonic() - started < 1.0
        await asyncio.sleep(0)
        assert pending_tasks_of_ours() == []


# -- handles without waiting ----------------------------------------------------------------------


async def test_task_makes_no_request(kie: KieClient, server: FakeKieServer) -> None:
    """kie.task(id) only builds a handle; nothing is sent."""
    handle = kie.task("abc123")
    assert handle.task_id == "abc123"
    assert handle.request is None
    assert handle.last_record is None
    assert server.requests == []


async def test_refresh_polls_once(kie: KieClient, server: FakeKieServer) -> None:
    """refresh() sends exactly one record-info request and remembers its record."""
    server.script_next(TaskScript(polls=5))
    handle = await kie.extend_video("src", 0, "go")
    record = await handle.refresh()
    assert record.status is TaskStatus.GENERATING
    assert handle.last_record is record
    assert server.polls_for(handle.task_id) == 1
    assert handle.task_id in repr(handle) and "GENERATING" in repr(handle)


async def test_reattached_handle_waits_too(kie: KieClient, server: FakeKieServer) -> None:
    """A handle re-attached by id waits for the task like the original one."""
    server.script_next(TaskScript(polls=2))
    original = await kie.extend_video("src", 0, "go")
    record = await kie.task(original.task_id)
    assert record.status is TaskStatus.SUCCESS


# -- tasks record-info does not know (yet) --------------------------------------------------------


async def test_fresh_task_is_given_grace(server: FakeKieServer) -> None:
    """A just-submitted task that record-info does not know yet is polled until it appears."""
    policy = PollPolicy(
        interval=0, factor=1, max_interval=0, jitter=0, not_found_grace=5, first_delay=0
    )
    async with fast_client(server, poll=policy) as kie:
        handle = await kie.extend_video("src", 0, "go")
        server.answer_next("record", 422, "recordInfo is null", times=3)
        record = await handle
    assert record.status is TaskStatus.SUCCESS
    assert server.polls_for(handle.task_id) == 4


async def test_grace_runs_out(server: FakeKieServer) -> None:
    """A fresh task still unknown after not_found_grace raises TaskNotFoundError."""
    policy = spaced(0.01, not_found_grace=0.1)
    async with fast_client(server, poll=policy) as kie:
        # The grace counts from the moment the create was answered, so time from before it.
        started = time.monotonic()
        handle = await kie.extend_video("src", 0, "go")
        server.answer_next("record", 422, "recordInfo is null", times=10_000)
        with pytest.raises(TaskNotFoundError):
            await handle.wait(timeout=5)
    assert 0.1 - 1e-3 <= time.monotonic() - started < 2.0
    assert server.polls_for(handle.task_id) >= 2


async def test_zero_wait_gives_no_grace(kie: KieClient, server: FakeKieServer) -> None:
    """With the zero-wait policy (no grace), "recordInfo is null" ends even a fresh wait."""
    handle = await kie.extend_video("src", 0, "go")
    server.answer_next("record", 422, "recordInfo is null")
    with pytest.raises(TaskNotFoundError):
        await handle
    assert server.polls_for(handle.task_id) == 1


async def test_unknown_reattached_task_fails_at_once(server: FakeKieServer) -> None:
    """kie.task("unknown").wait() raises TaskNotFoundError after one poll, grace or not."""
    policy = PollPolicy(interval=0, factor=1, max_interval=0, jitter=0, not_found_grace=30)
    async with fast_client(server, poll=policy) as kie:
        with pytest.raises(TaskNotFoundError) as info:
            await kie.task("unknown").wait()
    assert info.value.message == "recordInfo is null"
    assert server.polls_for("unknown") == 1


async def test_wait_rejects_a_poll_that_is_not_a_policy(
    kie: KieClient, server: FakeKieServer
) -> None:
    """handle.wait(poll="x") is a ValidationError naming ``poll``, before any poll is sent."""
    handle = kie.task("task-1")
    with pytest.raises(ValidationError, match=r"^poll: must be a PollPolicy"):
        await handle.wait(poll="x")  # type: ignore[arg-type]
    assert server.requests == []
