"""The default poll schedule: its documented costs are what the code computes, a fresh task's
first poll waits, a re-attached one does not, and the steady phase precedes growth."""

from __future__ import annotations

import asyncio
import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

from kie_async import ConfigurationError, ExtendRequest, KieClient, PollPolicy
from kie_async._retry import Schedule, delays, poll_schedule
from kie_async.testing import FakeKieServer, TaskScript, fast_client

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(name="script", scope="module")
def _script() -> ModuleType:
    """benchmarks/poll_schedule.py, imported as a module."""
    path = ROOT / "benchmarks" / "poll_schedule.py"
    spec = importlib.util.spec_from_file_location("poll_schedule", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["poll_schedule"] = module
    spec.loader.exec_module(module)
    return module


def first_delays(schedule: Schedule, count: int) -> list[float]:
    waits = delays(schedule, random.Random(0))
    next(waits)
    return [waits.send(None) for _ in range(count)]


def test_the_table_in_the_docs_is_what_the_script_computes(script: ModuleType) -> None:
    """docs/waiting.md shows exactly the table benchmarks/poll_schedule.py prints for the
    default policy (rerun it with --write after changing the schedule)."""
    doc = (ROOT / "docs" / "waiting.md").read_text(encoding="utf-8")
    assert script.generated_block(doc) == script.render(PollPolicy(), list(script.TARGETS))


def test_the_default_schedule_meets_every_target(script: ModuleType) -> None:
    """For tasks of 2, 5, 10 and 20 minutes the default policy stays within the call and delay
    budgets, and no 20-minute task times out."""
    for minutes, (most_calls, most_delay) in script.TARGETS.items():
        row = script.evaluate(PollPolicy(), minutes, samples=300)
        assert row.mean_calls <= most_calls, row
        assert row.mean_delay <= most_delay, row
        assert row.timeouts == 0, row


def test_the_script_sees_a_deadline_cut_a_task_off(script: ModuleType) -> None:
    """The simulation reports a time-out when the deadline comes before the task's end."""
    row = script.evaluate(PollPolicy(timeout=15 * 60), 20, samples=50)
    assert row.timeouts == 50


def test_steady_delays_come_before_growth() -> None:
    """The first steady_polls delays stay at interval; then each grows by factor up to the cap."""
    policy = PollPolicy(interval=2, factor=2, max_interval=10, jitter=0, steady_polls=3)
    assert first_delays(poll_schedule(policy), 7) == [2, 2, 2, 4, 8, 10, 10]
    growing = PollPolicy(interval=2, factor=2, max_interval=10, jitter=0, steady_polls=0)
    assert first_delays(poll_schedule(growing), 4) == [2, 4, 8, 10]


def test_first_wait_counts_from_the_create_and_never_passes_half_the_deadline() -> None:
    """A fresh task waits what is left of first_delay (at most half the deadline); a
    re-attached one not at all."""
    policy = PollPolicy(first_delay=120)
    assert policy.first_wait(age=None, deadline=2700) == 0
    assert policy.first_wait(age=0.0, deadline=2700) == 120
    assert policy.first_wait(age=100.0, deadline=2700) == pytest.approx(20)
    assert policy.first_wait(age=500.0, deadline=None) == 0
    assert policy.first_wait(age=0.0, deadline=60) == 30
    assert PollPolicy.zero_wait().first_wait(age=0.0, deadline=30) == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_steady_polls_must_be_a_count(bad: object) -> None:
    """steady_polls is an int >= 0; anything else is refused when the policy is made."""
    with pytest.raises(ConfigurationError, match="steady_polls"):
        PollPolicy(steady_polls=bad)  # type: ignore[arg-type]


def quick(first_delay: float) -> PollPolicy:
    return PollPolicy(
        interval=0, factor=1, max_interval=0, jitter=0, timeout=10, first_delay=first_delay
    )


async def test_a_fresh_task_is_first_polled_after_first_delay(server: FakeKieServer) -> None:
    """TaskHandle.wait on a task just created makes no poll before first_delay: a task that
    ends 0.1 s after its create is polled once, not in a tight loop."""
    server.default_script = TaskScript(seconds=0.1)
    async with fast_client(server, poll=quick(0.4)) as kie:
        handle = await kie.extend_video("src", 0, "go")
        await handle
    assert server.polls_for(handle.task_id) == 1


async def test_a_bulk_run_first_polls_each_task_after_first_delay(server: FakeKieServer) -> None:
    """extend_many's poller, too, first polls a task it created after first_delay."""
    server.default_script = TaskScript(seconds=0.1)
    requests = [ExtendRequest("src", i % 4, f"clip {i}") for i in range(8)]
    async with fast_client(server, poll=quick(0.4)) as kie:
        outcomes = [o async for o in kie.extend_many(requests, concurrency=8)]
    assert all(o.ok for o in outcomes)
    assert server.counts["request:record"] == 8


async def test_a_reattached_task_is_polled_at_once(server: FakeKieServer) -> None:
    """A task re-attached by id may be finished already: its wait polls at once, whatever
    first_delay says."""
    async with fast_client(server) as kie:
        task_id = (await kie.extend_video("src", 0, "go")).task_id
    async with fast_client(server, poll=quick(600)) as kie:
        record = await asyncio.wait_for(kie.task(task_id).wait(), 5)
    assert record.status.ok


def test_test_mode_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """KIE_POLL_ZERO_WAIT=1 makes a client's default policy the test mode (for a script or the
    command-line tool against a fake server); any value but 0 or 1 is a configuration error."""
    monkeypatch.setenv("KIE_POLL_ZERO_WAIT", "1")
    assert KieClient(api_key="k").poll_policy == PollPolicy.testing()
    monkeypatch.setenv("KIE_POLL_ZERO_WAIT", "0")
    assert KieClient(api_key="k").poll_policy == PollPolicy()
    monkeypatch.setenv("KIE_POLL_ZERO_WAIT", "yes")
    with pytest.raises(ConfigurationError, match="KIE_POLL_ZERO_WAIT"):
        KieClient(api_key="k")
