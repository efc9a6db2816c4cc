"""A single wait runs in its caller's own task: it makes no asyncio Task, its deadline still
cuts a hung poll off on time, it leaves no deadline behind when it ends, and a cancellation that
comes with its deadline stays a cancellation. Its delays are the policy's schedule."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import sys
import time

import pytest
from helpers import tasks_created
from test_handle import NEVER_ENDS, pending_tasks_of_ours, spaced, wait_for_polls

from kie_async import (
    AuthenticationError,
    KieClient,
    PollPolicy,
    TaskFailedError,
    TaskStatus,
    TaskTimeoutError,
)
from kie_async._retry import delays, poll_schedule
from kie_async.testing import FakeKieServer, TaskScript, fast_client

#: The modules a single wait runs in.
WAIT_MODULES = ("_handle.py", "_callback_wait.py", "_retry.py")


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="3.10 cannot tell a deadline's cancellation apart"
)
@pytest.mark.parametrize("timeout", [30.0, None], ids=["deadline", "no-deadline"])
async def test_a_wait_makes_no_asyncio_task(server: FakeKieServer, timeout: float | None) -> None:
    """A wait over five polls, with a deadline or without, creates no asyncio Task running
    kie_async's waiting code: the poll loop and its deadline live in the caller's task."""
    server.script_next(TaskScript(polls=4))
    async with fast_client(server) as kie:
        handle = await kie.extend_video("src", 0, "go")
        with tasks_created() as created:
            record = await handle.wait(timeout=timeout)
    assert record.status is TaskStatus.SUCCESS
    assert server.polls_for(handle.task_id) == 5
    in_wait = [name for name in created if name.endswith(WAIT_MODULES)]
    assert in_wait == []


async def test_the_deadline_cuts_a_hung_poll_off(server: FakeKieServer) -> None:
    """A poll that never answers (the client's own timeout is 30 s) ends the wait at its
    0.3 s deadline with TaskTimeoutError, and nothing of the wait is left running."""
    async with fast_client(server, timeout=30) as kie:
        handle = await kie.extend_video("src", 0, "go")
        server.fail_next("record", "hang")
        started = time.monotonic()
        with pytest.raises(TaskTimeoutError) as info:
            await handle.wait(timeout=0.3)
        assert 0.3 - 1e-3 <= time.monotonic() - started < 1.5
        assert info.value.timeout == 0.3
        assert info.value.__cause__ is None and info.value.__context__ is None
        await asyncio.sleep(0)
        assert pending_tasks_of_ours() == []
        assert await kie.credits() > 0  # the client is still usable


async def _ends_in(kie: KieClient, server: FakeKieServer, end: str) -> None:
    """Run a wait with a 0.2 s deadline that ends at once, in the way ``end`` names."""
    if end == "success":
        server.script_next(TaskScript(polls=1))
    elif end == "failure":
        server.script_next(TaskScript.failed())
    handle = await kie.extend_video("src", 0, "go")
    if end == "error":
        server.answer_next("record", 401)
    expected = {"success": None, "failure": TaskFailedError, "error": AuthenticationError}[end]
    if expected is None:
        await handle.wait(timeout=0.2)
    else:
        with pytest.raises(expected):
            await handle.wait(timeout=0.2)


@pytest.mark.parametrize("end", ["success", "failure", "error"])
async def test_an_ended_wait_leaves_no_deadline_behind(server: FakeKieServer, end: str) -> None:
    """After a wait with a 0.2 s deadline ends (a record, a failed task, a 401), the task that
    awaited it lives on past that deadline: nothing cancels it later."""
    async with fast_client(server) as kie:
        await _ends_in(kie, server, end)
        await asyncio.sleep(0.4)  # a deadline left armed would cancel this sleep
        assert await kie.credits() > 0


@pytest.mark.parametrize("cancel_after", [0.01, 0.35], ids=["cancel-first", "deadline-first"])
async def test_a_cancel_with_the_deadline_is_a_cancellation(
    server: FakeKieServer, cancel_after: float
) -> None:
    """A caller's cancel that lands in the same loop turn as the wait's 0.2 s deadline, before
    it or after it, raises CancelledError in the caller, never TaskTimeoutError."""
    server.script_next(NEVER_ENDS)
    async with fast_client(server, poll=spaced(10)) as kie:
        handle = await kie.extend_video("src", 0, "go")
        waiting = asyncio.ensure_future(handle.wait(timeout=0.2))
        await wait_for_polls(server, handle.task_id, 1)  # the wait now sleeps 10 s
        asyncio.get_running_loop().call_later(cancel_after, waiting.cancel)
        time.sleep(0.5)  # noqa: ASYNC251 (the loop stands still: both come due in one turn)
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert waiting.cancelled()
        await asyncio.sleep(0)
        assert pending_tasks_of_ours() == []


async def test_a_wait_sleeps_the_policy_schedule(
    server: FakeKieServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Polled through transient 500s, a wait sleeps the policy's delays as ``_retry.delays``
    computes them (the docs' table): steady ones first, then growing up to the cap."""
    caplog.set_level(logging.DEBUG, logger="kie_async")
    policy = PollPolicy(
        interval=0.01, factor=2, max_interval=0.04, jitter=0, first_delay=0, steady_polls=2
    )
    async with fast_client(server, poll=policy, max_retries=0) as kie:
        handle = kie.task("t-1")
        server.set_record("t-1", {"taskId": "t-1", "successFlag": 1})
        server.answer_next("record", 500, times=5)
        record = await handle.wait(timeout=5)
    assert record.status is TaskStatus.SUCCESS
    slept = [
        float(match.group(1))
        for r in caplog.records
        if (match := re.match(r"retrying poll of task t-1 in ([\d.]+)s", r.getMessage()))
    ]
    schedule = delays(poll_schedule(policy), random.Random(0))
    schedule.send(None)
    expected = [round(schedule.send(None), 2) for _ in range(5)]
    assert expected == [0.01, 0.01, 0.02, 0.04, 0.04]
    assert slept == expected
