"""The fault suite: bulk runs through a fake kie.ai that misbehaves on purpose.

The big run sends 1,000 extensions through a mix of 429 bursts, 455s, JSON 500s, HTML 502 pages,
connections closed before and after a create is recorded, truncated JSON, answers slower than
the client's read timeout and answers that never come, and checks that every request is
accounted for, nothing is paid twice, no wait outlives its deadline, nothing is left open, and
the journal agrees with the server. ``benchmarks/fault_run.py`` runs the same mix and prints
its figures.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from helpers import established as _established

from kie_async import (
    ExtendOutcome,
    ExtendRequest,
    KieClient,
    KieError,
    OutcomeKind,
    PollPolicy,
    RetryPolicy,
    SubmissionUncertainError,
    TaskFailedError,
    TaskStatus,
    TaskTimeoutError,
    TransportError,
)
from kie_async._protocol.envelope import RECORD_PATH
from kie_async.testing import FakeKieServer, Faults, TaskScript, fast_client

# The mix (the same as benchmarks/fault_run.py).
MIX: dict[str, float] = {
    "rate_limited": 0.04,
    "maintenance": 0.02,
    "server_error": 0.01,
    "html_502": 0.01,
    "drop_before": 0.01,
    "drop_after": 0.01,
    "truncated": 0.01,
    "slow": 0.004,
    "hang": 0.002,
}
CLIENT_TIMEOUT = 0.5
SLOW_SECONDS = 2.0
DEADLINE = 2.0
#: Faults after which a create's reply is lost, so the client cannot know what happened.
REPLY_LOST = frozenset({"html_502", "drop_before", "drop_after", "truncated", "slow", "hang"})
#: Of those, the ones after which the fake server had created the task.
CREATED_THEN_LOST = frozenset({"drop_after", "truncated", "slow"})


def _script_for(body: Mapping[str, Any]) -> TaskScript:
    """1% of tasks never end, 4% fail, the rest succeed after 0-3 polls (by prompt)."""
    rng = random.Random(str(body.get("prompt")))
    roll = rng.random()
    if roll < 0.01:
        return TaskScript(polls=10**9)
    if roll < 0.05:
        return TaskScript.failed("content policy violation", flag=rng.choice((2, 3)))
    return TaskScript(polls=rng.randint(0, 3))


def _port(server: FakeKieServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _journal_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a journal, each of which must be a JSON object."""
    lines = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parsed = json.loads(raw)  # a half-written line fails here
        assert isinstance(parsed, dict), f"line {number} is not an object"
        lines.append(parsed)
    return lines


def _fold(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each key's state after the journal's lines, read independently of kie_async._bulk.journal."""
    state: dict[str, dict[str, Any]] = {}
    for line in lines[1:]:
        if line["event"] == "run":  # which process opened the journal: no request's line
            continue
        key, event = line["key"], line["event"]
        entry = state.setdefault(key, {})
        entry["state"] = event
        if line.get("task_id"):
            entry["task_id"] = line["task_id"]
    return state


@pytest.fixture(name="mixed_server")
async def _mixed_server() -> AsyncIterator[FakeKieServer]:
    """A fake kie.ai injecting the whole fault mix into creates and polls."""
    async with FakeKieServer(seed=11) as server:
        server.faults = Faults(
            **MIX,
            burst=3,
            retry_after=0.02,
            slow_seconds=SLOW_SECONDS,
            endpoints=frozenset({"create", "record"}),
            seed=11,
        )
        server.script_for = _script_for
        yield server


@pytest.mark.slow
async def test_thousand_requests_through_the_fault_mix(
    mixed_server: FakeKieServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """1,000 requests through every fault: each accounted for, none paid twice, no wait past
    its deadline, nothing left open, and the journal consistent with the server."""
    server = mixed_server
    caplog.set_level(logging.DEBUG, logger="kie_async")
    journal = tmp_path / "run.jsonl"
    requests = [
        ExtendRequest(f"src-{i % 50}", index=i % 4, prompt=f"Clip {i}: the camera pulls back")
        for i in range(1000)
    ]
    retry = RetryPolicy(
        max_retries=6, initial_delay=0.005, max_delay=0.05, jitter=0.25, max_retry_after=0.05
    )
    outcomes: list[ExtendOutcome] = []
    started = time.monotonic()
    async with fast_client(
        server, timeout=CLIENT_TIMEOUT, retry=retry, poll=PollPolicy.zero_wait(timeout=DEADLINE)
    ) as kie:
        async for outcome in kie.extend_many(requests, concurrency=50, journal=journal):
            outcomes.append(outcome)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.05)
    gc.collect()  # an unclosed session or response would warn now, and warnings are errors
    assert _established(_port(server)) == 0, "a connection outlived its client"

    # Every fault kind was injected, into creates and polls.
    for kind in MIX:
        assert server.counts[f"fault:{kind}"] > 0, kind
    assert any(r.getMessage().startswith("retrying create") for r in caplog.records)
    assert any(r.getMessage().startswith("retrying poll") for r in caplog.records)

    # Every request accounted for, exactly once, with a reason when it did not succeed.
    assert sorted(o.request.prompt or "" for o in outcomes) == sorted(
        r.prompt or "" for r in requests
    )
    kinds = collections.Counter(o.kind for o in outcomes)
    assert kinds[OutcomeKind.NOT_SUBMITTED] == 0
    for outcome in outcomes:
        if outcome.kind is OutcomeKind.SUCCEEDED:
            assert outcome.record is not None and outcome.record.status is TaskStatus.SUCCESS
            assert outcome.task_id == outcome.record.task_id
        else:
            assert isinstance(outcome.error, KieError), (outcome.kind, repr(outcome.error))
        if outcome.kind is OutcomeKind.UNCERTAIN:
            assert isinstance(outcome.error, SubmissionUncertainError)
            assert outcome.error.request is outcome.request
            assert outcome.task_id is None

    # Zero duplicate creates: no request was created twice.
    assert server.duplicate_creates() == 0
    created: dict[str, list[str]] = collections.defaultdict(list)
    for task_id, task in server.tasks.items():
        created[json.loads(task["param_json"])["prompt"]].append(task_id)
    assert all(len(ids) == 1 for ids in created.values())

    # Uncertain exactly where the create's reply was lost.
    lost = {
        f[2]["prompt"]: f[1] for f in server.injected if f[0] == "create" and f[1] in REPLY_LOST
    }
    uncertain = {o.request.prompt for o in outcomes if o.kind is OutcomeKind.UNCERTAIN}
    assert uncertain == set(lost)
    for prompt, fault in lost.items():
        assert (prompt in created) == (fault in CREATED_THEN_LOST), (prompt, fault)

    # No wait outlived its deadline: the server saw no poll of a task after it.
    polls: dict[str, list[float]] = collections.defaultdict(list)
    for seen in server.requests:
        if seen.path == RECORD_PATH:
            polls[seen.query["taskId"]].append(seen.at)
    assert max(max(at) - min(at) for at in polls.values()) <= DEADLINE + 0.3
    timed_out = [o for o in outcomes if isinstance(o.error, TaskTimeoutError)]
    assert timed_out, "the mix holds tasks that never end"
    assert all(
        o.error.timeout == DEADLINE for o in timed_out if isinstance(o.error, TaskTimeoutError)
    )
    assert elapsed < 40

    # The journal agrees with the server.
    lines = _journal_lines(journal)
    assert lines[0] == {"journal": "kie-async", "version": 1}
    state = _fold(lines)
    by_prompt = {r.prompt: r.fingerprint() for r in requests}
    for outcome in outcomes:
        prompt = outcome.request.prompt or ""
        entry = state[by_prompt[prompt]]
        if entry["state"] in ("submitted", "done"):
            assert created[prompt] == [entry["task_id"]], prompt
            assert entry["task_id"] == outcome.task_id
        expected = {
            OutcomeKind.SUCCEEDED: "done",
            OutcomeKind.UNCERTAIN: "uncertain",
        }.get(outcome.kind)
        if isinstance(outcome.error, TaskFailedError):
            expected = "done"
        elif isinstance(outcome.error, TaskTimeoutError):
            expected = "submitted"  # a rerun re-attaches to it
        elif outcome.kind is OutcomeKind.FAILED:
            expected = "refused"
            assert prompt not in created
        assert entry["state"] == expected, (prompt, entry, outcome)
    submitted = [e["task_id"] for e in state.values() if e["state"] == "submitted"]
    assert all(task_id in server.tasks for task_id in submitted)
    assert {k for k, e in state.items() if e["state"] == "uncertain"} == {
        by_prompt[p] for p in lost
    }


# -- a server that never answers -------------------------------------------------------------


async def test_hung_polls_cannot_outlast_the_wait_deadline(server: FakeKieServer) -> None:
    """When every poll is accepted and never answered, wait() still ends at its deadline, even
    with a read timeout far longer than the deadline."""
    async with fast_client(server, timeout=30) as kie:
        handle = await kie.extend_video("src", 0, "go")
        server.fail_next("record", "hang", times=100)
        started = time.monotonic()
        with pytest.raises(TaskTimeoutError) as caught:
            await handle.wait(timeout=0.5)
        assert time.monotonic() - started < 0.5 + 0.3
    assert caught.value.timeout == 0.5
    assert caught.value.task_id == handle.task_id


async def test_hung_server_cannot_outlast_extend_many(server: FakeKieServer) -> None:
    """A bulk run against a server whose polls all hang ends at the wait deadline, every
    request failed with TaskTimeoutError; one whose creates all hang ends at the read timeout,
    every request uncertain."""
    requests = [ExtendRequest("src", i % 4, f"clip {i}") for i in range(20)]
    server.faults = Faults(hang=1.0, endpoints=frozenset({"record"}))
    async with fast_client(server, timeout=30, poll=PollPolicy.zero_wait(timeout=0.5)) as kie:
        started = time.monotonic()
        outcomes = [o async for o in kie.extend_many(requests, concurrency=20)]
        assert time.monotonic() - started < 0.5 + 0.5
    assert len(outcomes) == 20
    assert all(isinstance(o.error, TaskTimeoutError) for o in outcomes)

    server.faults = Faults(hang=1.0, endpoints=frozenset({"create"}))
    async with fast_client(server, timeout=0.3) as kie:
        started = time.monotonic()
        outcomes = [o async for o in kie.extend_many(requests, concurrency=20)]
        assert time.monotonic() - started < 0.3 + 0.5
    assert [o.kind for o in outcomes] == [OutcomeKind.UNCERTAIN] * 20


async def test_silent_tcp_server_cannot_hang_a_call() -> None:
    """A socket that accepts connections and never sends a byte ends a create as uncertain and
    a read as a TransportError, each within the read timeout."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with fast_client(
            FakeKieServer(), base_url=f"http://127.0.0.1:{port}", timeout=0.3, max_retries=1
        ) as kie:
            started = time.monotonic()
            with pytest.raises(SubmissionUncertainError):
                await kie.extend_video("src", 0, "go")
            with pytest.raises(TransportError):
                await kie.credits()
            assert time.monotonic() - started < 3 * 0.3 + 0.5
    finally:
        for writer in accepted:
            writer.close()
        listener.close()
        await listener.wait_closed()
    assert len(accepted) == 3  # one create, a read and its one retry


# -- the journal under odd answers -------------------------------------------------------------


async def test_journal_keeps_lone_surrogates_from_kie(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A task whose error message carries a JSON \\ud800 escape (a lone surrogate once decoded)
    still ends as TaskFailedError, and its journal line is written as valid JSON."""
    server.script_next(TaskScript.failed("bad \ud800 news"))
    journal = tmp_path / "run.jsonl"
    request = ExtendRequest("src", 0, "go")
    outcomes = [o async for o in kie.extend_many([request], journal=journal)]
    assert isinstance(outcomes[0].error, TaskFailedError)
    done = _journal_lines(journal)[-1]
    assert done["event"] == "done"
    assert done["error"]["error_message"] == "bad \ud800 news"


async def test_a_host_dying_under_a_run_is_one_warning_not_one_per_create(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The host goes away with creates in flight: one WARNING that it is unreachable (the rest
    at DEBUG), not one per create; the run still ends with every request accounted for."""
    caplog.set_level(logging.DEBUG, logger="kie_async")
    server = FakeKieServer()
    await server.start()
    requests = [ExtendRequest(f"src-{n}", 0, "go") for n in range(120)]
    async with fast_client(server, poll=PollPolicy.zero_wait(timeout=1.0)) as kie:
        outcomes = 0
        async for _ in kie.extend_many(requests, concurrency=40):
            outcomes += 1
            if outcomes == 5:
                await server.close()
    assert outcomes == 120
    unreachable = [r for r in caplog.records if " unreachable, " in r.getMessage()]
    warned = [r for r in unreachable if r.levelno == logging.WARNING]
    assert len(unreachable) > 1, "the test needs several requests in flight when the host died"
    assert len(warned) == 1, [r.getMessage() for r in warned]
