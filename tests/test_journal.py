"""The bulk journal: one run at a time, healed after a crash, small, and cheap to keep."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import socket
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from helpers import child_env, write_jobs

from kie_async import ConfigurationError, ExtendOutcome, ExtendRequest, KieClient, OutcomeKind
from kie_async.testing import FakeKieServer, TaskScript, fast_client

KEY = "test-key"


def make_requests(count: int, prefix: str = "src") -> list[ExtendRequest]:
    return [ExtendRequest(f"{prefix}{i // 4}", i % 4, f"scene {i}") for i in range(count)]


async def collect(kie: KieClient, requests: object, **kwargs: Any) -> list[ExtendOutcome]:
    return [o async for o in kie.extend_many(requests, **kwargs)]  # type: ignore[arg-type]


# -- one run per journal --------------------------------------------------------------------------


@pytest.mark.slow
async def test_two_cli_runs_on_one_journal_pay_once(server: FakeKieServer, tmp_path: Path) -> None:
    """Two `bulk` processes started together on one journal: one runs, the other stops at once
    naming the holder, and the server creates each job exactly once."""
    # Each task takes 2 s, so the first run still holds the journal when the second starts
    # (the children poll without waiting: KIE_POLL_ZERO_WAIT below).
    server.default_script = TaskScript(seconds=2.0)
    jobs = write_jobs(tmp_path / "jobs.jsonl", 8)
    journal = tmp_path / "run.journal"
    argv = ["-m", "kie_async", "--base-url", server.url, "bulk", str(jobs), "--journal"]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            *argv,
            str(journal),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(KIE_API_KEY=KEY, KIE_POLL_ZERO_WAIT="1"),
        )
        for _ in range(2)
    ]
    results = [await asyncio.wait_for(p.communicate(), 60) for p in processes]
    codes = sorted(p.returncode or 0 for p in processes)
    assert codes == [0, 2], [err.decode() for _, err in results]
    loser = next(
        err.decode() for p, (_, err) in zip(processes, results, strict=True) if p.returncode == 2
    )
    holder = next(p.pid for p in processes if p.returncode == 0)
    assert f"is in use by another run: pid {holder} on {socket.gethostname()}, started " in loser
    assert "Traceback" not in loser
    assert server.counts["create"] == 8
    assert server.duplicate_creates() == 0


async def test_a_second_run_in_the_same_process_fails_at_once(
    kie: KieClient, server: FakeKieServer, tmp_path: Path
) -> None:
    """While one run holds a journal, another in the same process fails before sending anything,
    and the journal is free again once the first run ends."""
    journal = tmp_path / "run.jsonl"
    server.default_script = TaskScript(polls=3)
    async with kie.extend_many(make_requests(4), journal=journal) as first:
        await anext(first)
        with pytest.raises(ConfigurationError, match=r"pid \d+ \(this process\) on "):
            await collect(kie, make_requests(4, prefix="other"), journal=journal)
        assert server.counts["request:create"] == 4
        rest = [o async for o in first]
    assert len(rest) == 3
    again = await collect(kie, make_requests(4), journal=journal)
    assert all(o.from_journal for o in again)
    assert server.counts["create"] == 4


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _run_line(pid: int) -> str:
    host = socket.gethostname()
    line = {"event": "run", "pid": pid, "host": host, "started": "2026-01-01T00:00:00Z"}
    return json.dumps(line, separators=(",", ":"))  # as the journal writes it


def test_a_run_that_has_locked_but_not_yet_written_its_line_is_waited_for(
    tmp_path: Path,
) -> None:
    """The holder takes the lock a moment before its ``run`` line is written: the last line may
    still name an earlier run whose process is gone. The loser reads again until the holder's
    line appears and names that one, not the finished run."""
    import fcntl
    import threading

    from kie_async._bulk.journal import Journal

    path = tmp_path / "run.jsonl"
    path.write_text('{"journal":"kie-async","version":1}\n' + _run_line(_dead_pid()) + "\n")
    with path.open("a") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:

            def write_late() -> None:
                holder.write(_run_line(live.pid) + "\n")
                holder.flush()

            timer = threading.Timer(0.2, write_late)
            timer.start()
            with pytest.raises(ConfigurationError) as caught:
                Journal(path).open()
            timer.join()
        finally:
            live.kill()
            live.wait()
    assert f"in use by another run: pid {live.pid} on {socket.gethostname()}, started " in str(
        caught.value
    )


def test_a_holder_that_never_says_who_it_is_is_not_misnamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock held by a run that writes no line within HOLDER_WAIT: the error says the journal
    is in use without naming the earlier, finished run of the last line."""
    import fcntl

    from kie_async._bulk.journal import Journal

    monkeypatch.setattr("kie_async._bulk.journal_lock.HOLDER_WAIT", 0.1)
    path = tmp_path / "run.jsonl"
    dead = _dead_pid()
    path.write_text('{"journal":"kie-async","version":1}\n' + _run_line(dead) + "\n")
    with path.open("a") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigurationError, match="one that has not yet written down who"):
            Journal(path).open()
    assert path.read_text().count('"event":"run"') == 1  # the loser wrote nothing


def test_a_stale_lock_file_still_names_the_run_that_left_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without flock, a lock file left by a run that died names that run (its process is gone)
    and the file to delete."""
    from kie_async._bulk.journal import Journal

    monkeypatch.setattr("kie_async._bulk.journal_lock._HAS_FLOCK", False)
    monkeypatch.setattr("kie_async._bulk.journal_lock.HOLDER_WAIT", 0.1)
    path = tmp_path / "run.jsonl"
    dead = _dead_pid()
    (tmp_path / "run.jsonl.lock").write_text(_run_line(dead))
    with pytest.raises(ConfigurationError, match=rf"pid {dead} on .*delete .*run\.jsonl\.lock"):
        Journal(path).open()


# -- a journal that heals -------------------------------------------------------------------------


async def test_three_reruns_after_a_truncated_last_line_all_succeed(
    kie: KieClient, server: FakeKieServer, tmp_path: Path
) -> None:
    """A last line cut by a crash is cut off: the rerun and every later rerun read the journal,
    and none creates anything again."""
    journal = tmp_path / "run.jsonl"
    requests = make_requests(10)
    await collect(kie, requests, journal=journal)
    data = journal.read_bytes()
    journal.write_bytes(data[: len(data) - 25])  # the last "done" line, cut mid-way
    for _ in range(3):
        outcomes = await collect(kie, requests, journal=journal)
        assert len(outcomes) == 10 and all(o.ok for o in outcomes)
        for line in journal.read_text(encoding="utf-8").splitlines():
            json.loads(line)
    # The cut task was re-attached (polled), never created again.
    assert server.counts["create"] == 10
    assert sum(o.from_journal for o in outcomes) == 10


async def test_a_fragment_left_mid_file_by_an_older_version_is_skipped(
    kie: KieClient, server: FakeKieServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A journal kie-async 0.1 wrote after a crash (a cut line, then more lines) still reads."""
    journal = tmp_path / "run.jsonl"
    requests = make_requests(4)
    await collect(kie, requests, journal=journal)
    lines = journal.read_text(encoding="utf-8").splitlines()
    lines.insert(3, '{"event":"done","key":"abc","task_')
    journal.write_text("\n".join(lines) + "\n", encoding="utf-8")
    outcomes = await collect(kie, requests, journal=journal)
    assert all(o.from_journal for o in outcomes)
    assert "cut short by a crash" in caplog.text


class _BigAnswers(FakeKieServer):
    """A fake kie.ai whose record-info answers carry about 1 MB each."""

    def _record_data(self, task: dict[str, Any]) -> dict[str, Any]:
        data = super()._record_data(task)
        data["paramJson"] = json.dumps({"prompt": "x" * 1_000_000})
        return data


async def test_big_answers_do_not_make_a_big_journal(tmp_path: Path) -> None:
    """50 tasks whose answers are 1 MB each leave a journal of a few KiB per task, and the
    rerun still reports every result from it."""
    journal = tmp_path / "run.jsonl"
    requests = make_requests(50)
    async with _BigAnswers() as server, fast_client(server) as kie:
        first = await collect(kie, requests, journal=journal, concurrency=10)
        again = await collect(kie, requests, journal=journal)
    assert all(o.ok for o in first)
    assert journal.stat().st_size < 50 * 1024
    by_key = {o.request.fingerprint(): o for o in first}
    for outcome in again:
        assert outcome.from_journal and outcome.record is not None
        original = by_key[outcome.request.fingerprint()].record
        assert original is not None
        assert outcome.record.result_urls == original.result_urls
        assert outcome.record.created_at_raw == original.created_at_raw
        assert outcome.record.task_type == original.task_type


async def test_a_journaled_run_does_not_keep_finished_tasks_in_memory(tmp_path: Path) -> None:
    """Memory held at the end of a journaled run grows by far less per finished task than a
    record (0.1 kept about 2.5 KiB for each); the server runs in another process."""
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kie_async.testing",
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    try:
        assert server.stdout is not None
        url = (await asyncio.wait_for(server.stdout.readline(), 30)).decode().strip()

        async def held_at_end(count: int, journal: Path) -> int:
            async with fast_client(FakeKieServer(), base_url=url) as kie:
                tracemalloc.start()
                try:
                    gc.collect()  # live objects only: garbage not yet collected is not held
                    base = tracemalloc.get_traced_memory()[0]
                    held = seen = 0
                    requests = (
                        ExtendRequest(f"{journal.stem}{i // 4}", i % 4, f"scene {i}")
                        for i in range(count)
                    )  # a generator: the input itself is not held
                    async for _ in kie.extend_many(requests, concurrency=10, journal=journal):
                        seen += 1
                        if seen == count:
                            # Measured once the journal's last lines are written and the
                            # garbage collected: neither is held per task.
                            await asyncio.sleep(0.05)
                            gc.collect()
                            held = tracemalloc.get_traced_memory()[0] - base
                    return held
                finally:
                    tracemalloc.stop()

        await held_at_end(50, tmp_path / "warm.jsonl")
        small = await held_at_end(200, tmp_path / "small.jsonl")
        large = await held_at_end(1000, tmp_path / "large.jsonl")
    finally:
        server.terminate()
        await server.communicate()
    per_task = (large - small) / 800
    # What is left is the journal key of every request seen (about 110 bytes), which tells a
    # repeated request from the first one.
    assert per_task < 300, f"{per_task:.0f} bytes held per finished task"


# -- what a journal line holds --------------------------------------------------------------------


async def test_done_lines_hold_only_what_a_rerun_needs(
    kie: KieClient, server: FakeKieServer, tmp_path: Path
) -> None:
    """A done line names the task, its type, status, result URLs, kie's times and the error:
    no raw answer."""
    journal = tmp_path / "run.jsonl"
    server.script_next(TaskScript.failed("nope"))
    outcomes = await collect(kie, make_requests(2), journal=journal, concurrency=1)
    done = [
        json.loads(line)
        for line in journal.read_text(encoding="utf-8").splitlines()
        if '"event":"done"' in line
    ]
    assert len(done) == 2
    for line in done:
        assert set(line) <= {
            "event",
            "key",
            "at",
            "task_id",
            "status",
            "task_type",
            "flag",
            "result_urls",
            "created",
            "completed",
            "error",
        }
    failed = next(line for line in done if line["status"] == "failed")
    assert failed["error"]["error_message"] == "nope"
    assert [o.kind for o in outcomes].count(OutcomeKind.FAILED) == 1
    run_lines = [line for line in journal.read_text().splitlines() if '"event":"run"' in line]
    assert re.search(r'"pid":\d+,"host":"[^"]+","started":"\d{4}-', run_lines[0])


async def test_without_flock_a_lock_file_stands_in(
    kie: KieClient, server: FakeKieServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where there is no flock, a lock file keeps a second run out the same way, naming the
    holder and the file to delete if it is gone, and is removed when the run ends."""
    monkeypatch.setattr("kie_async._bulk.journal_lock._HAS_FLOCK", False)
    journal = tmp_path / "run.jsonl"
    lock_file = tmp_path / "run.jsonl.lock"
    server.default_script = TaskScript(polls=3)
    async with kie.extend_many(make_requests(2), journal=journal) as first:
        await anext(first)
        assert lock_file.exists()
        with pytest.raises(
            ConfigurationError, match=r"\(this process\).*delete .*run\.jsonl\.lock"
        ):
            await collect(kie, make_requests(2), journal=journal)
        assert len([o async for o in first]) == 1
    assert not lock_file.exists()
    assert server.counts["create"] == 2


async def test_a_file_system_without_locks_is_a_clear_error(
    kie: KieClient, server: FakeKieServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal that cannot be locked (a file system without locks) stops the run before
    anything is sent, saying why."""
    import errno
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(ConfigurationError, match=r"cannot lock .*No locks available"):
        await collect(kie, make_requests(2), journal=tmp_path / "run.jsonl")
    assert server.counts["request:create"] == 0
