"""Bulk runs spend only what the consumer takes: backpressure, and every way of stopping a run."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import bulk_argv, child_env, write_jobs

from kie_async import (
    BulkRun,
    ExtendOutcome,
    ExtendRequest,
    KieClient,
    OutcomeKind,
    RateLimit,
    RetryPolicy,
)
from kie_async.testing import FakeKieServer, Faults, TaskScript, fast_client


def make_requests(count: int, prefix: str = "src") -> list[ExtendRequest]:
    return [ExtendRequest(f"{prefix}{i // 4}", i % 4, f"scene {i}") for i in range(count)]


async def settle(seconds: float = 0.5) -> None:
    """Give a run that should be idle the time to misbehave (zero-wait polling is quick)."""
    await asyncio.sleep(seconds)


async def test_a_slow_consumer_never_has_more_than_concurrency_unconsumed(
    kie: KieClient, server: FakeKieServer
) -> None:
    """However slowly outcomes are taken, creates stay within consumed + concurrency."""
    consumed = 0
    async with kie.extend_many(make_requests(40), concurrency=4) as run:
        async for _ in run:
            consumed += 1
            await asyncio.sleep(0.02)
            # The outcome in hand is not consumed until the next one is asked for.
            assert server.counts["create"] <= consumed - 1 + 4
    assert consumed == 40
    assert server.counts["create"] == 40


async def test_break_while_holding_the_run_sends_no_further_creates(
    kie: KieClient, server: FakeKieServer
) -> None:
    """A break with the run still referenced: the server's create count stays at the break's."""
    run = kie.extend_many(make_requests(100), concurrency=5)
    taken = 0
    async for _ in run:
        taken += 1
        if taken == 3:
            await settle()  # the run has every chance to go on creating meanwhile
            at_break = server.counts["create"]
            break
    await settle(1.0)
    assert server.counts["create"] == at_break
    # Two outcomes consumed, five places (the one in hand included): seven creates at most.
    assert at_break <= 2 + 5
    await run.aclose()
    assert server.counts["create"] == at_break


async def test_break_dropping_the_run_sends_no_further_creates(
    kie: KieClient, server: FakeKieServer
) -> None:
    """A break that drops the only reference to the run: nothing more is created after it."""
    async for _ in kie.extend_many(make_requests(100), concurrency=5):
        await settle()
        at_break = server.counts["create"]
        break
    gc.collect()
    await settle(1.0)
    assert server.counts["create"] == at_break <= 5


async def test_break_inside_aclosing_or_async_with_sends_no_further_creates(
    kie: KieClient, server: FakeKieServer
) -> None:
    """Both explicit forms end the run at the break: no create after it."""
    async with contextlib.aclosing(kie.extend_many(make_requests(100), concurrency=5)) as run:
        async for _ in run:
            await settle()
            first = server.counts["create"]
            break
    async with kie.extend_many(make_requests(100, prefix="other"), concurrency=5) as run2:
        assert isinstance(run2, BulkRun)
        async for _ in run2:
            await settle()
            second = server.counts["create"]
            break
    await settle(1.0)
    assert server.counts["create"] == second
    assert first <= 5 and second - first <= 5


async def test_a_run_never_iterated_sends_nothing(kie: KieClient, server: FakeKieServer) -> None:
    """Creating a run and leaving its block without asking for an outcome sends no request."""
    async with kie.extend_many(make_requests(10)):
        await settle(0.1)
    assert server.counts["request:create"] == 0


# -- cancelling a run ----------------------------------------------------------------------------


def journal_events(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines[1:] if line.get("event") != "run"]


async def consume(run: BulkRun, into: list[ExtendOutcome]) -> None:
    async for outcome in run:
        into.append(outcome)


async def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail("the condition never came true")


@pytest.mark.parametrize("waiting_for", ["rate limit", "connection"])
async def test_cancelled_while_waiting_to_send_is_not_uncertain(
    server: FakeKieServer, tmp_path: Path, waiting_for: str
) -> None:
    """Requests cancelled while waiting for the limiter or for a connection were never sent:
    no intent of theirs is left in the journal, and the rerun submits them (not uncertain),
    each created once."""
    journal = tmp_path / "run.jsonl"
    if waiting_for == "rate limit":
        settings: dict[str, Any] = {"rate_limit": RateLimit(2, per=60)}
    else:
        settings = {"max_connections": 2}
        server.faults = Faults(slow=1.0, slow_seconds=0.5, endpoints=frozenset({"create"}))
    got: list[ExtendOutcome] = []
    async with fast_client(server, **settings) as kie:
        run = kie.extend_many(make_requests(5), journal=journal, concurrency=5)
        task = asyncio.ensure_future(consume(run, got))
        await wait_until(lambda: server.counts["create"] == 2)
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    events = [e["event"] for e in journal_events(journal)]
    assert events.count("intent") == events.count("submitted") == 2
    server.faults = Faults()
    async with fast_client(server) as kie:
        again = [o async for o in kie.extend_many(make_requests(5), journal=journal)]
    assert all(o.ok for o in again)  # none uncertain
    assert server.counts["create"] == 5 and server.duplicate_creates() == 0


async def test_cancelled_between_retries_records_not_sent(
    server: FakeKieServer, tmp_path: Path
) -> None:
    """A create refused with 429 and cancelled while waiting to retry is marked not sent: the
    rerun sends it, not reports it uncertain."""
    journal = tmp_path / "run.jsonl"
    server.fail_next("create", "rate_limited")
    retry = RetryPolicy(initial_delay=5, factor=1, max_delay=5, jitter=0)
    got: list[ExtendOutcome] = []
    async with fast_client(server, retry=retry) as kie:
        task = asyncio.ensure_future(
            consume(kie.extend_many(make_requests(1), journal=journal), got)
        )
        await wait_until(lambda: server.counts["request:create"] == 1)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 2)
    assert [e["event"] for e in journal_events(journal)] == ["intent", "not_sent"]
    async with fast_client(server) as kie:
        again = [o async for o in kie.extend_many(make_requests(1), journal=journal)]
    assert again[0].ok and not again[0].from_journal
    assert server.counts["create"] == 1


async def test_cancelled_after_sending_waits_for_the_answer_and_saves_the_task_id(
    server: FakeKieServer, tmp_path: Path
) -> None:
    """A cancellation while creates are on the wire lets them finish: their task ids are in
    the journal, and the rerun re-attaches to them instead of reporting them uncertain."""
    journal = tmp_path / "run.jsonl"
    server.faults = Faults(slow=1.0, slow_seconds=0.5, endpoints=frozenset({"create"}))
    got: list[ExtendOutcome] = []
    async with fast_client(server) as kie:
        run = kie.extend_many(make_requests(6), journal=journal, concurrency=3)
        task = asyncio.ensure_future(consume(run, got))
        await wait_until(lambda: server.counts["create"] == 3)
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert 0.2 < time.monotonic() - started < 3
    submitted = {e["task_id"] for e in journal_events(journal) if e["event"] == "submitted"}
    assert submitted == set(server.tasks)
    server.faults = Faults()
    async with fast_client(server) as kie:
        again = [o async for o in kie.extend_many(make_requests(6), journal=journal)]
    assert all(o.ok for o in again)
    assert server.counts["create"] == 6 and server.duplicate_creates() == 0


async def test_a_second_cancellation_aborts_at_once(server: FakeKieServer, tmp_path: Path) -> None:
    """Cancelled again while waiting for creates on the wire, the run stops at once; those
    creates stay uncertain (their answer never came), and nothing is sent twice."""
    journal = tmp_path / "run.jsonl"
    server.faults = Faults(slow=1.0, slow_seconds=4.0, endpoints=frozenset({"create"}))
    got: list[ExtendOutcome] = []
    async with fast_client(server) as kie:
        task = asyncio.ensure_future(
            consume(kie.extend_many(make_requests(2), journal=journal, concurrency=2), got)
        )
        await wait_until(lambda: server.counts["create"] == 2)
        task.cancel()
        await asyncio.sleep(0.2)
        assert not task.done()  # still waiting for the answers
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 1.0
    server.faults = Faults()
    async with fast_client(server) as kie:
        again = [o async for o in kie.extend_many(make_requests(2), journal=journal)]
    assert [o.kind for o in again] == [OutcomeKind.UNCERTAIN] * 2
    assert server.counts["create"] == 2


# -- Ctrl-C and SIGTERM in the command -----------------------------------------------------------


async def start_bulk(
    server: FakeKieServer, jobs: Path, journal: Path
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *bulk_argv(server.url, jobs, journal, "--concurrency", "4"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # The fake's tasks end at once: no two-minute wait before their first polls.
        env=child_env(KIE_API_KEY=server.api_key, KIE_POLL_ZERO_WAIT="1"),
    )


def unresolved_intents(journal: Path) -> set[str]:
    """Keys whose last word in the journal is an intent: what a rerun reports uncertain."""
    last: dict[str, str] = {}
    for event in journal_events(journal):
        last[event["key"]] = event["event"]
    return {key for key, event in last.items() if event == "intent"}


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_interrupting_bulk_saves_every_task_it_paid_for(
    server: FakeKieServer, tmp_path: Path, signum: int
) -> None:
    """Ctrl-C (or SIGTERM) with creates on the wire: the command says it finishes them, their
    task ids reach the journal (none left uncertain), and the rerun pays for nothing twice."""
    server.faults = Faults(slow=1.0, slow_seconds=1.0, endpoints=frozenset({"create"}))
    jobs = write_jobs(tmp_path / "jobs.jsonl", 12)
    journal = tmp_path / "run.journal"
    process = await start_bulk(server, jobs, journal)
    await wait_until(lambda: server.counts["create"] == 4, seconds=30)
    process.send_signal(signum)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    err = stderr.decode()
    assert process.returncode == 130, err
    assert "creates already on the wire are let finish" in err
    assert "waiting for 4 create(s) already sent" in err
    assert "Traceback" not in err
    # The journal against the server's create log: every task paid for is saved.
    submitted = {e["task_id"] for e in journal_events(journal) if e["event"] == "submitted"}
    assert submitted == set(server.tasks) and len(submitted) == 4
    assert unresolved_intents(journal) == set()

    server.faults = Faults()
    rerun = await start_bulk(server, jobs, journal)
    _, stderr = await asyncio.wait_for(rerun.communicate(), 60)
    assert rerun.returncode == 0, stderr.decode()
    assert server.counts["create"] == 12
    assert server.duplicate_creates() == 0


@pytest.mark.slow
async def test_a_second_ctrl_c_aborts_at_once(server: FakeKieServer, tmp_path: Path) -> None:
    """A second Ctrl-C does not wait for the creates on the wire: the command ends at once, and
    those creates are reported uncertain by the rerun instead of being sent again."""
    server.faults = Faults(slow=1.0, slow_seconds=20.0, endpoints=frozenset({"create"}))
    jobs = write_jobs(tmp_path / "jobs.jsonl", 8)
    journal = tmp_path / "run.journal"
    process = await start_bulk(server, jobs, journal)
    await wait_until(lambda: server.counts["create"] == 4, seconds=30)
    process.send_signal(signal.SIGINT)
    await asyncio.sleep(0.5)
    assert process.returncode is None  # waiting for the creates on the wire
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert time.monotonic() - started < 5
    assert process.returncode == 130
    assert "aborting at once" in stderr.decode()
    assert len(unresolved_intents(journal)) == 4

    server.faults = Faults()
    rerun = await start_bulk(server, jobs, journal)
    stdout, _ = await asyncio.wait_for(rerun.communicate(), 60)
    assert rerun.returncode == 1
    assert re.search(r"^uncertain\s+4$", stdout.decode(), re.MULTILINE)
    assert server.counts["create"] == 8 and server.duplicate_creates() == 0


async def test_a_stop_with_callbacks_leaves_no_wait_behind(tmp_path: Path) -> None:
    """With a callback receiver, creates answered while the run stops are saved in the journal,
    and no wait of theirs outlives the run."""
    from kie_async.callbacks import CallbackReceiver

    journal = tmp_path / "run.jsonl"
    async with FakeKieServer(callback_key="hook-key") as server:
        receiver = CallbackReceiver(key="hook-key")
        await receiver.start()
        try:
            server.default_script = TaskScript(seconds=30)
            server.faults = Faults(slow=1.0, slow_seconds=0.3, endpoints=frozenset({"create"}))
            got: list[ExtendOutcome] = []
            async with fast_client(server, callbacks=receiver, callback_url=receiver.url) as kie:
                run = kie.extend_many(make_requests(3), journal=journal, concurrency=3)
                task = asyncio.ensure_future(consume(run, got))
                await wait_until(lambda: server.counts["create"] == 3)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                left = [
                    t
                    for t in asyncio.all_tasks()
                    if "_Run._wait" in repr(t.get_coro()) and not t.done()
                ]
                assert left == []
        finally:
            await receiver.close()
    submitted = {e["task_id"] for e in journal_events(journal) if e["event"] == "submitted"}
    assert submitted == set(server.tasks) and len(submitted) == 3
