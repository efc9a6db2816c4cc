"""Python 3.14 readiness: nothing of kie_async reaches the deprecated asyncio.iscoroutinefunction.

Python 3.14 deprecates ``asyncio.iscoroutinefunction`` (removal in 3.16). backoff's decorators
call it, so under warnings-as-errors every retry and every wait failed there. These tests bring
3.14's warning to any Python: the function is wrapped to warn for every caller outside the
standard library, and the retry, wait and bulk paths run with warnings as errors (pytest's
``filterwarnings = error``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import sysconfig
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kie_async import (
    ExtendRequest,
    KieClient,
    PollPolicy,
    RetryPolicy,
    TaskStatus,
    TaskTimeoutError,
    TransportError,
)
from kie_async.testing import FakeKieServer, fast_client

_STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def _is_stdlib(filename: str) -> bool:
    path = Path(filename).resolve()
    return path.is_relative_to(_STDLIB) and "site-packages" not in path.parts


@pytest.fixture(name="py314_warning", autouse=True)
def _py314_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncio.iscoroutinefunction warns as on Python 3.14 for callers outside the stdlib."""
    original: Callable[[Any], bool] = asyncio.iscoroutinefunction

    def iscoroutinefunction(func: Any) -> bool:
        if not _is_stdlib(sys._getframe(1).f_code.co_filename):
            warnings.warn(
                "'asyncio.iscoroutinefunction' is deprecated and slated for removal in Python "
                "3.16; use inspect.iscoroutinefunction() instead",
                DeprecationWarning,
                stacklevel=2,
            )
        with warnings.catch_warnings():  # on 3.14 itself the original warns too
            warnings.simplefilter("ignore", DeprecationWarning)
            return original(func)

    monkeypatch.setattr(asyncio, "iscoroutinefunction", iscoroutinefunction)


def test_the_simulation_warns_for_a_caller_outside_the_stdlib() -> None:
    """The wrapped function does warn (so the tests below cannot pass by accident)."""

    async def job() -> None:
        pass

    with pytest.raises(DeprecationWarning):
        asyncio.iscoroutinefunction(job)


async def test_retried_create_under_the_314_warning(server: FakeKieServer) -> None:
    """A create refused twice with 429 is retried and succeeds, without the deprecated call."""
    server.fail_next("create", "rate_limited", times=2)
    async with fast_client(server) as kie:
        handle = await kie.extend_video("src", 0, "go")
    assert handle.task_id in server.tasks
    assert server.counts["create"] == 1


async def test_retried_read_and_wait_under_the_314_warning(server: FakeKieServer) -> None:
    """get_task retries a 5xx and wait() polls through failed polls to the result, without the
    deprecated call."""
    async with fast_client(server) as kie:
        handle = await kie.extend_video("src", 0, "go")
        server.fail_next("record", "server_error", times=2)
        await kie.get_task(handle.task_id)
        server.fail_next("record", "server_error", times=2)
        record = await handle.wait(timeout=5)
    assert record.status is TaskStatus.SUCCESS


async def test_bulk_run_under_the_314_warning(server: FakeKieServer) -> None:
    """A bulk run with refused creates and failed polls finishes every request, without the
    deprecated call."""
    server.fail_next("create", "rate_limited", times=3)
    server.fail_next("record", "server_error", times=3)
    requests = [ExtendRequest(f"src{i}", 0, f"scene {i}") for i in range(12)]
    async with fast_client(server) as kie:
        outcomes = [o async for o in kie.extend_many(requests, concurrency=4)]
    assert len(outcomes) == 12 and all(o.ok for o in outcomes)


async def test_first_connection_retry_warns_what_failed_and_when(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first retry of a refused connection logs one WARNING naming the host called as
    unreachable, the retry count and the delay before the next try; later retries at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="kie_async")
    async with FakeKieServer() as server:
        url = server.url
    retry = RetryPolicy(max_retries=3, initial_delay=0.01, factor=1, max_delay=0.01, jitter=0)
    async with KieClient("test-key", base_url=url, rate_limit=None, retry=retry) as kie:
        with pytest.raises(TransportError):
            await kie.get_task("abc123")
    warnings_logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings_logged) == 1, warnings_logged
    host = url.removeprefix("http://")
    assert warnings_logged[0].startswith(f"{host} unreachable, retry 1/3 in 0.01 s (GET ")
    assert "could not connect" in warnings_logged[0]


async def test_wait_on_a_dead_network_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """A wait whose polls cannot connect logs one WARNING saying the host called is unreachable
    and when it polls again, then times out as usual."""
    caplog.set_level(logging.DEBUG, logger="kie_async")
    async with FakeKieServer() as server:
        url = server.url
    poll = PollPolicy(interval=0.01, factor=1, max_interval=0.01, jitter=0, timeout=0.3)
    async with KieClient("test-key", base_url=url, rate_limit=None, poll=poll) as kie:
        with pytest.raises(TaskTimeoutError):
            await kie.task("abc123").wait()
    warnings_logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings_logged) == 1, warnings_logged
    host = url.removeprefix("http://")
    assert warnings_logged[0].startswith(f"{host} unreachable, polling again in 0.01 s (poll: ")
