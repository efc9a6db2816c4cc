"""Bulk extension: every request accounted for, the rate limit kept, nothing paid twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from kie_async import (
    ExtendOutcome,
    ExtendRequest,
    InsufficientCreditsError,
    KieClient,
    OutcomeKind,
    PollPolicy,
    Progress,
    RateLimit,
    RetryPolicy,
    SubmissionUncertainError,
    TaskFailedError,
    ValidationError,
)
from kie_async.testing import FakeKieServer, TaskScript, fast_client


def make_requests(count: int, prefix: str = "src") -> list[ExtendRequest]:
    return [ExtendRequest(f"{prefix}{i // 4}", i % 4, f"scene {i}") for i in range(count)]


async def collect(kie: KieClient, requests: object, **kwargs: object) -> list[ExtendOutcome]:
    return [o async for o in kie.extend_many(requests, **kwargs)]  # type: ignore[arg-type]


def journal_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_every_request_gets_one_outcome(kie: KieClient, server: FakeKieServer) -> None:
    """Each request yields exactly one outcome, carrying its request, task id and record."""
    requests = make_requests(40)
    outcomes = await collect(kie, requests, concurrency=7)
    assert sorted(o.request.prompt or "" for o in outcomes) == sorted(
        r.prompt or "" for r in requests
    )
    assert all(o.ok and o.task_id and o.record and o.record.result_urls for o in outcomes)
    assert server.counts["create"] == 40
    assert server.duplicate_creates() == 0


async def test_rate_limited_run_provokes_no_429(server: FakeKieServer) -> None:
    """Hundreds of requests against a server enforcing a tight limit: zero 429s, zero duplicates."""
    server.rate_limit = (20, 0.2)
    server.default_script = TaskScript(polls=1)
    async with fast_client(server, rate_limit=RateLimit(20, per=0.2)) as kie:
        started = time.monotonic()
        outcomes = await collect(kie, make_requests(300), concurrency=60)
        elapsed = time.monotonic() - started
    assert len(outcomes) == 300
    assert all(o.ok for o in outcomes)
    assert server.counts["rejected:429"] == 0
    assert server.duplicate_creates() == 0
    # 300 creates at 20 per 0.2 s cannot take less than 14 full windows.
    assert elapsed >= 14 * 0.2


async def test_server_429_pauses_every_submission(server: FakeKieServer) -> None:
    """After kie.ai refuses a create with 429, no create of the client goes out during the pause."""
    server.fail_next("create", "rate_limited")
    retry = RetryPolicy(initial_delay=0.3, factor=1, max_delay=0.3, jitter=0)
    async with fast_client(server, retry=retry) as kie:
        outcomes = await collect(kie, make_requests(6), concurrency=6)
    assert all(o.ok for o in outcomes)
    creates = [r for r in server.requests if r.path.endswith("generateVideoExtend")]
    refused_at = creates[0].at
    later = [r.at - refused_at for r in creates[1:]]
    # Requests already on the wire when the 429 came back may arrive within a few ms; every
    # create sent after it waits out the pause.
    assert sum(1 for gap in later if gap >= 0.25) >= len(later) - 5
    assert server.counts["create"] == 6


async def test_mix_of_good_and_bad_requests_yields_one_outcome_each() -> None:
    """Refused creates, failed tasks and successes each come back once, and the run goes on."""
    async with FakeKieServer(strict_sources=True) as server:
        good = [server.add_source_video(videos=4) for _ in range(3)]
        requests = [ExtendRequest(src, i, f"ok {src} {i}") for src in good for i in range(4)]
        requests += [ExtendRequest("no-such-video", 0, "refused")]
        requests += [ExtendRequest(good[0], 0, "fails")]

        def script(body: object) -> TaskScript | None:
            prompt = body.get("prompt") if isinstance(body, dict) else None
            return TaskScript.failed(flag=3) if prompt == "fails" else None

        server.script_for = script
        async with fast_client(server) as kie:
            outcomes = await collect(kie, requests, concurrency=4)
    assert len(outcomes) == len(requests)
    by_prompt = {o.request.prompt: o for o in outcomes}
    assert by_prompt["refused"].kind is OutcomeKind.FAILED
    assert by_prompt["refused"].task_id is None
    assert isinstance(by_prompt["fails"].error, TaskFailedError)
    assert by_prompt["fails"].task_id is not None
    assert sum(o.ok for o in outcomes) == 12


async def test_402_mid_run_stops_submissions_and_reports_the_rest(server: FakeKieServer) -> None:
    """Out of credits: no new create is sent, submitted tasks finish, the rest are not submitted."""
    server.credits = server.task_cost * 10
    server.default_script = TaskScript(polls=3)
    async with fast_client(server) as kie:
        outcomes = await collect(kie, make_requests(30), concurrency=3)
    assert len(outcomes) == 30
    kinds = [o.kind for o in outcomes]
    assert kinds.count(OutcomeKind.SUCCEEDED) == 10
    refused = [o for o in outcomes if not o.ok]
    assert all(isinstance(o.error, InsufficientCreditsError) for o in refused)
    refused_by_kie = server.counts["rejected:402"]
    # Only creates already on their way when the first 402 came back can be refused too.
    assert 1 <= refused_by_kie <= 3
    assert kinds.count(OutcomeKind.FAILED) == refused_by_kie
    assert kinds.count(OutcomeKind.NOT_SUBMITTED) == 20 - refused_by_kie
    assert server.counts["request:create"] == 10 + refused_by_kie


async def test_async_iterable_input_and_progress(kie: KieClient, server: FakeKieServer) -> None:
    """An async generator of requests works, and progress ends with every request counted."""

    async def requests() -> AsyncIterator[ExtendRequest]:
        for request in make_requests(12):
            await asyncio.sleep(0)
            yield request

    seen: list[Progress] = []
    outcomes = await collect(kie, requests(), concurrency=4, on_progress=seen.append)
    assert len(outcomes) == 12
    last = seen[-1]
    assert (last.succeeded, last.failed, last.running, last.queued) == (12, 0, 0, 0)
    assert last.submitted == 12 and last.done == 12
    assert max(p.running for p in seen) <= 4


async def test_a_failing_progress_callback_does_not_lose_requests(kie: KieClient) -> None:
    """A bug in the user's on_progress callback is logged, and every outcome still arrives."""

    def broken(_: Progress) -> None:
        raise RuntimeError("boom")

    outcomes = await collect(kie, make_requests(5), on_progress=broken)
    assert len(outcomes) == 5 and all(o.ok for o in outcomes)


async def test_bad_arguments_are_refused_before_anything_is_sent(
    kie: KieClient, server: FakeKieServer
) -> None:
    """A bad concurrency or a non-request item is a clear error, and no request is sent."""
    with pytest.raises(ValidationError, match="concurrency"):
        await collect(kie, make_requests(2), concurrency=0)
    with pytest.raises(TypeError, match="item 1"):
        await collect(kie, [make_requests(1)[0], "not a request"], concurrency=1)
    assert server.counts["create"] <= 1


async def test_journal_rerun_skips_finished_requests(
    kie: KieClient, server: FakeKieServer, tmp_path: Path
) -> None:
    """A second run with the same journal sends nothing and reports the same outcomes."""
    journal = tmp_path / "run.jsonl"
    requests = make_requests(10)
    first = await collect(kie, requests, journal=journal)
    creates = server.counts["create"]
    second = await collect(kie, list(reversed(requests)), journal=journal)
    assert server.counts["create"] == creates == 10
    assert all(o.from_journal and o.ok for o in second)
    assert {o.task_id for o in first} == {o.task_id for o in second}
    assert {o.record.result_urls for o in second if o.record} == {
        o.record.result_urls for o in first if o.record
    }


async def test_identical_requests_are_each_submitted_once(
    kie: KieClient, server: FakeKieServer, tmp_path: Path
) -> None:
    """Two identical requests are two videos: both are made, and a rerun makes neither again."""
    journal = tmp_path / "run.jsonl"
    same = [ExtendRequest("src", 0, "twice"), ExtendRequest("src", 0, "twice")]
    await collect(kie, same, journal=journal)
    await collect(kie, same, journal=journal)
    assert server.counts["create"] == 2


async def test_uncertain_create_is_not_resubmitted_unless_asked(
    kie: KieClient, server: FakeKieServer, tmp_path: Path
) -> None:
    """A create whose reply was lost is reported uncertain, and stays so on rerun unless asked."""
    journal = tmp_path / "run.jsonl"
    server.fail_next("create", "drop_after")
    requests = make_requests(3)
    first = await collect(kie, requests, journal=journal, concurrency=1)
    uncertain = [o for o in first if o.kind is OutcomeKind.UNCERTAIN]
    assert len(uncertain) == 1
    assert isinstance(uncertain[0].error, SubmissionUncertainError)
    assert server.counts["create"] == 3  # the lost reply's task was created all the same

    again = await collect(kie, requests, journal=journal)
    assert server.counts["create"] == 3
    assert [o.kind for o in again].count(OutcomeKind.UNCERTAIN) == 1

    forced = await collect(kie, requests, journal=journal, resubmit_uncertain=True)
    assert server.counts["create"] == 4
    assert all(o.ok for o in forced)


async def test_unfinished_task_is_reattached_not_resubmitted(
    server: FakeKieServer, tmp_path: Path
) -> None:
    """A task that timed out in one run is awaited by id in the next, not created again."""
    journal = tmp_path / "run.jsonl"
    server.default_script = TaskScript(polls=10**6)
    async with fast_client(server, poll=PollPolicy.zero_wait(timeout=0.2)) as kie:
        first = await collect(kie, make_requests(2), journal=journal)
    assert all(o.kind is OutcomeKind.FAILED and o.task_id for o in first)
    for task_id in list(server.tasks):
        server.complete(task_id)
    async with fast_client(server) as kie:
        second = await collect(kie, make_requests(2), journal=journal)
    assert server.counts["create"] == 2
    assert {o.task_id for o in second} == {o.task_id for o in first}
    assert all(o.ok and not o.from_journal for o in second)


async def test_journal_is_written_before_polling(
    kie: KieClient, server: FakeKieServer, tmp_path: Path
) -> None:
    """The task id is in the journal before the first poll of that task is sent."""
    journal = tmp_path / "run.jsonl"
    seen_on_first_poll: list[bool] = []
    original = kie.fetch_record_data

    async def checking_fetch(task_id: str):  # type: ignore[no-untyped-def]
        lines = journal_lines(journal)
        seen_on_first_poll.append(
            any(line.get("task_id") == task_id and line["event"] == "submitted" for line in lines)
        )
        return await original(task_id)

    kie.fetch_record_data = checking_fetch  # type: ignore[method-assign]
    await collect(kie, make_requests(3), journal=journal)
    assert seen_on_first_poll and all(seen_on_first_poll)
    events = [line.get("event") for line in journal_lines(journal)[1:]]
    assert events.count("intent") == events.count("submitted") == events.count("done") == 3


_KILLED_RUN = textwrap.dedent(
    """
    import asyncio, sys
    from kie_async import ExtendRequest, KieClient, PollPolicy, RetryPolicy

    async def main(url, journal, count):
        requests = [ExtendRequest(f"src{i // 4}", i % 4, f"scene {i}") for i in range(count)]
        policy = PollPolicy(interval=0.02, factor=1, max_interval=0.02, jitter=0, timeout=60,
                            first_delay=0)
        async with KieClient("test-key", base_url=url, poll=policy, rate_limit=None,
                             retry=RetryPolicy.zero_wait()) as kie:
            async for _ in kie.extend_many(requests, concurrency=16, journal=journal):
                pass

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


@pytest.mark.slow
async def test_run_killed_with_sigkill_finishes_on_rerun_without_duplicates(
    server: FakeKieServer, tmp_path: Path
) -> None:
    """SIGKILL mid-run loses nothing: the rerun creates no duplicate and accounts for everything."""
    journal = tmp_path / "run.jsonl"
    count = 120
    server.default_script = TaskScript(seconds=0.15)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILLED_RUN,
        server.url,
        str(journal),
        str(count),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        if journal.exists() and journal.read_text().count('"event":"done"') >= 30:
            break
    os.kill(process.pid, signal.SIGKILL)
    await process.wait()
    assert process.returncode == -signal.SIGKILL
    assert process.stderr is not None
    await process.stderr.read()
    killed_creates = server.counts["create"]
    assert 30 <= killed_creates < count, "the kill should land mid-run"

    requests = make_requests(count)
    async with fast_client(server) as kie:
        outcomes = await collect(kie, requests, journal=journal, concurrency=16)
    assert len(outcomes) == count
    assert server.duplicate_creates() == 0
    uncertain = [o for o in outcomes if o.kind is OutcomeKind.UNCERTAIN]
    assert all(o.ok for o in outcomes if o.kind is not OutcomeKind.UNCERTAIN)
    # Only creates in flight at the moment of the kill can be uncertain.
    assert len(uncertain) <= 16
    assert sum(o.from_journal for o in outcomes) >= 30

    # Asking explicitly finishes those too; a duplicate can only come from a create that had
    # really reached the server before the kill.
    reached = {(b["taskId"], b["index"], b["prompt"]) for b in server.creates[:killed_creates]}
    async with fast_client(server) as kie:
        final = await collect(kie, requests, journal=journal, resubmit_uncertain=True)
    assert all(o.ok for o in final)
    resent = {(o.request.task_id, o.request.index, o.request.prompt) for o in uncertain}
    assert server.duplicate_creates() == len(resent & reached)
    for line in journal.read_text().splitlines()[:-1]:
        json.loads(line)


async def test_large_concurrency_on_a_small_pool_never_times_out(server: FakeKieServer) -> None:
    """Far more tasks in flight than connections: requests queue for the pool without timing out."""
    server.default_script = TaskScript(polls=2)
    async with fast_client(server, max_connections=4, timeout=1.0, connect_timeout=0.2) as kie:
        outcomes = await collect(kie, make_requests(400), concurrency=400)
    assert len(outcomes) == 400
    assert all(o.ok for o in outcomes), {type(o.error).__name__ for o in outcomes}


async def test_credits_are_an_exact_decimal(kie: KieClient, server: FakeKieServer) -> None:
    """The balance keeps its fractional digits exactly (60.62 stays 60.62)."""
    server.credits = Decimal("60.62")
    assert await kie.credits() == Decimal("60.62")


async def test_outcome_result_is_the_record_or_raises_the_error(
    kie: KieClient, server: FakeKieServer
) -> None:
    """outcome.result is the record of a success, and raises the outcome's error otherwise."""
    server.answer_next("create", 400, "bad prompt")
    outcomes = await collect(kie, make_requests(2), concurrency=1)
    good = next(o for o in outcomes if o.ok)
    bad = next(o for o in outcomes if not o.ok)
    assert good.result is good.record and good.result.task_id == good.task_id
    assert bad.error is not None
    with pytest.raises(type(bad.error)) as caught:
        bad.result  # noqa: B018
    assert caught.value is bad.error


@pytest.mark.parametrize("call", ["extend_many", "run_many"])
async def test_bulk_run_rejects_a_poll_that_is_not_a_policy(
    kie: KieClient, server: FakeKieServer, call: str
) -> None:
    """A ``poll`` that is not a PollPolicy is a ValidationError naming it, and no create is sent."""
    with pytest.raises(ValidationError, match=r"^poll: must be a PollPolicy"):
        async for _ in getattr(kie, call)(make_requests(3), poll="x"):
            pass
    assert server.counts["create"] == 0
    assert server.requests == []


@pytest.mark.parametrize("call", ["extend_many", "run_many"])
async def test_bulk_run_rejects_an_on_progress_that_is_not_callable(
    kie: KieClient, server: FakeKieServer, call: str
) -> None:
    """An ``on_progress`` that is not callable is a ValidationError naming it, before any create."""
    with pytest.raises(ValidationError, match=r"^on_progress: must be a callable"):
        async for _ in getattr(kie, call)(make_requests(3), on_progress=5):
            pass
    assert server.counts["create"] == 0
    assert server.requests == []


@pytest.mark.parametrize("call", ["extend_many", "run_many"])
async def test_bulk_run_rejects_a_journal_that_is_not_a_path(
    kie: KieClient, server: FakeKieServer, call: str
) -> None:
    """A ``journal`` that is not a str/PathLike is a ValidationError naming it (not a raw
    TypeError from Path), and no create is sent."""
    with pytest.raises(ValidationError, match=r"^journal: must be a path"):
        getattr(kie, call)(make_requests(3), journal=5)
    assert server.counts["create"] == 0
    assert server.requests == []


@pytest.mark.parametrize("call", ["extend_many", "run_many"])
@pytest.mark.parametrize("container", [list, tuple])
async def test_a_bad_item_at_the_end_of_a_sequence_costs_no_create(
    kie: KieClient, server: FakeKieServer, call: str, container: type
) -> None:
    """A list or tuple is checked whole first: nine good requests and a bad tenth send no create."""
    requests = container([ExtendRequest("src", 0, "go")] * 9 + ["bad"])
    with pytest.raises(TypeError, match=r"item 9 is str"):
        async for _ in getattr(kie, call)(requests, concurrency=20):
            pass
    assert server.counts["create"] == 0
