"""Fail fast, and once: a bulk run checks the key and the host with one balance call before its
first create, so a bad key or a dead API ends a run of any size in seconds with nothing sent."""

from __future__ import annotations

import json
import socket
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import write_jobs

from kie_async import (
    AuthenticationError,
    BulkRun,
    ExtendRequest,
    KieClient,
    OutcomeKind,
    PollPolicy,
    RateLimit,
    RetryPolicy,
    ServerError,
    TransportError,
    ValidationError,
)
from kie_async._cli import run
from kie_async.testing import FakeKieServer, fast_client

MANY = 10_000


def requests(count: int) -> list[ExtendRequest]:
    return [ExtendRequest(f"src{i // 4}", i % 4, f"scene {i}") for i in range(count)]


def dead_port() -> int:
    """A loopback port where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def drain(run: BulkRun[Any]) -> int:
    """Take every outcome of ``run``; how many there were."""
    async with run:
        return len([outcome async for outcome in run])


def intents(journal: Path) -> list[str]:
    if not journal.exists():
        return []
    lines = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines()]
    return [line["key"] for line in lines if line.get("event") == "intent"]


async def test_a_bad_key_ends_a_big_run_at_once_with_no_create(
    server: FakeKieServer, tmp_path: Path
) -> None:
    """10,000 requests with a wrong key (and kie's rate limit): AuthenticationError from the
    first iteration within seconds; the server saw one balance call and no create."""
    journal = tmp_path / "run.jsonl"
    started = time.monotonic()
    async with fast_client(server, api_key="wrong-key", rate_limit=RateLimit()) as kie:
        with pytest.raises(AuthenticationError):
            await drain(kie.extend_many(requests(MANY), journal=journal))
    assert time.monotonic() - started < 3
    assert server.counts["request:create"] == 0
    assert server.counts["request:credit"] == 1
    assert intents(journal) == []


async def test_a_dead_host_ends_a_big_run_once_with_no_create(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listening at the base URL: one TransportError after the retry policy's connect
    retries, one warning, and no create intended (the journal holds no intent)."""
    journal = tmp_path / "run.jsonl"
    retry = RetryPolicy(initial_delay=0.01, max_delay=0.05, jitter=0)
    started = time.monotonic()
    async with KieClient("key", base_url=f"http://127.0.0.1:{dead_port()}", retry=retry) as kie:
        with pytest.raises(TransportError, match="could not connect"):
            await drain(kie.run_many(requests(MANY), journal=journal))
    assert time.monotonic() - started < 3
    assert intents(journal) == []
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


async def test_the_balance_is_checked_once_and_kept_on_the_run(
    server: FakeKieServer, kie: KieClient
) -> None:
    """A run asks for the balance once, before its first create, and shows it as
    ``BulkRun.balance``."""
    bulk = kie.extend_many(requests(8), concurrency=4)
    assert bulk.balance is None  # nothing is sent before the first outcome is asked for
    outcomes = [outcome async for outcome in bulk]
    assert all(outcome.ok for outcome in outcomes)
    assert bulk.balance == Decimal(100000)
    assert server.counts["request:credit"] == 1
    first_create = next(i for i, r in enumerate(server.requests) if r.method == "POST")
    assert server.requests[first_create - 1].path == "/api/v1/chat/credit"


async def test_preflight_false_skips_the_balance(server: FakeKieServer, kie: KieClient) -> None:
    """``preflight=False`` sends no balance call; anything but a bool is refused unsent."""
    async with kie.run_many(requests(4), preflight=False) as bulk:
        assert all([outcome.ok async for outcome in bulk])
    assert bulk.balance is None
    assert server.counts["request:credit"] == 0
    with pytest.raises(ValidationError, match="preflight"):
        await drain(kie.run_many(requests(4), preflight="no"))  # type: ignore[arg-type]
    assert server.counts["request:create"] == 4


async def test_a_transient_balance_failure_is_retried(
    server: FakeKieServer, kie: KieClient
) -> None:
    """A 500 from the balance call is retried by the retry policy; the run goes on."""
    server.answer_next("credit", 500, "busy", times=2)
    outcomes = [outcome async for outcome in kie.extend_many(requests(4))]
    assert all(outcome.ok for outcome in outcomes)
    assert server.counts["request:credit"] == 3


async def test_a_lasting_balance_failure_ends_the_run_unsent(
    server: FakeKieServer, kie: KieClient
) -> None:
    """An API that answers its balance with 500 after every retry is not sent creates."""
    server.answer_next("credit", 500, "down", times=100)
    with pytest.raises(ServerError):
        await drain(kie.extend_many(requests(4)))
    assert server.counts["request:credit"] == 6  # the first try and five retries
    assert server.counts["request:create"] == 0


async def test_a_host_without_a_balance_endpoint_is_not_stopped(
    server: FakeKieServer, kie: KieClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A host answering the balance 404 (one that keeps it elsewhere) runs anyway, with a
    warning; the first create checks the key."""
    server.answer_next("credit", 404, "Not Found")
    outcomes = [outcome async for outcome in kie.extend_many(requests(4))]
    assert all(outcome.ok for outcome in outcomes)
    assert any("no balance at" in r.getMessage() for r in caplog.records)


async def test_a_401_later_in_a_run_stops_its_creates(server: FakeKieServer) -> None:
    """A key refused after the check (revoked mid-run): no create after the first 401 beyond
    those already in flight; the rest come out not submitted."""
    server.answer_next("create", 401, "You do not have access permissions", times=MANY)
    async with fast_client(server) as kie:
        outcomes = [outcome async for outcome in kie.extend_many(requests(MANY), concurrency=8)]
    kinds = {outcome.kind for outcome in outcomes}
    assert kinds == {OutcomeKind.FAILED, OutcomeKind.NOT_SUBMITTED}
    assert len(outcomes) == MANY
    assert server.counts["request:create"] <= 8


# -- the command ---------------------------------------------------------------------------------


async def test_bulk_command_with_a_bad_key_is_one_line_and_no_create(
    server: FakeKieServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``kie-async bulk`` of 10,000 jobs with a wrong key: one error line, exit 1, within
    seconds, and the server saw no create."""
    monkeypatch.setenv("KIE_API_KEY", "wrong-key")
    jobs = write_jobs(tmp_path / "jobs.jsonl", MANY)
    started = time.monotonic()
    status = await run(["--base-url", server.url, "bulk", str(jobs)])
    assert time.monotonic() - started < 5
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"error: API error 401 from {server.url}/api/v1/chat/credit: You do not have access "
        "permissions "
        "(HTTP 200) (the account check before the first create; nothing was submitted)"
    ]
    assert server.counts["request:create"] == 0


async def test_bulk_command_against_a_dead_host_is_one_warning_and_one_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listening: the retry's one warning and one error line, not a warning per job;
    no create was even intended (the journal holds no intent)."""
    monkeypatch.setenv("KIE_API_KEY", "key")
    jobs = write_jobs(tmp_path / "jobs.jsonl", MANY)
    journal = tmp_path / "run.jsonl"
    retry = RetryPolicy(initial_delay=0.01, max_delay=0.05, jitter=0)
    url = f"http://127.0.0.1:{dead_port()}"
    args = ["--base-url", url, "bulk", str(jobs), "--journal", str(journal)]
    status = await run(args, client_options={"retry": retry})
    err = capsys.readouterr().err.splitlines()
    assert status == 1
    assert len(err) == 2, err
    host = url.removeprefix("http://")
    assert err[0].startswith(f"WARNING {host} unreachable, retry 1/3")
    assert err[1].startswith(f"error: network error calling {url}/api/v1/chat/credit: could not")
    assert err[1].endswith("nothing was submitted)")
    assert intents(journal) == []


async def test_bulk_command_prints_the_balance(
    server: FakeKieServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run that passes the check says the balance on stderr before its progress."""
    monkeypatch.setenv("KIE_API_KEY", server.api_key)
    jobs = write_jobs(tmp_path / "jobs.jsonl", 2)
    options = {"poll": PollPolicy.zero_wait()}
    status = await run(["--base-url", server.url, "bulk", str(jobs)], client_options=options)
    assert status == 0
    assert capsys.readouterr().err.splitlines()[0] == "balance: 100000 credits"
