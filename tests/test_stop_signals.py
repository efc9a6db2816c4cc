"""A stop signal always stops the command, whatever became of its output: closed pipes, a full
disk, a reader that stopped reading; and a closed stdout ends any command quietly."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import bulk_argv, child_env, write_jobs

from kie_async.testing import FakeKieServer, Faults

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and pipes")

JOBS = 40
CONCURRENCY = 4


def journal_events(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines[1:] if line.get("event") != "run"]


def unresolved_intents(journal: Path) -> set[str]:
    last: dict[str, str] = {}
    for event in journal_events(journal):
        last[event["key"]] = event["event"]
    return {key for key, event in last.items() if event == "intent"}


async def wait_until(condition: Any, seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail("the condition never came true")


@contextlib.contextmanager
def child_output(kind: str) -> Iterator[tuple[int, int | None]]:
    """The descriptor the child writes stdout and stderr to, and the read end we hold (if
    any): ``closed`` (a pipe whose reader goes away), ``full`` (/dev/full), ``stalled`` (a
    pipe filled to the brim that nobody reads)."""
    if kind == "full":
        fd = os.open("/dev/full", os.O_WRONLY)
        try:
            yield fd, None
        finally:
            os.close(fd)
        return
    read_end, write_end = os.pipe()
    if kind == "stalled":
        os.set_blocking(write_end, False)
        with contextlib.suppress(BlockingIOError):
            for _ in range(10_000):
                os.write(write_end, b"x" * 4096)
        os.set_blocking(write_end, True)
    try:
        yield write_end, read_end
    finally:
        os.close(write_end)
        with contextlib.suppress(OSError):
            os.close(read_end)


def bulk_args(server: FakeKieServer, jobs: Path, journal: Path, *extra: str) -> list[str]:
    return bulk_argv(server.url, jobs, journal, "--concurrency", str(CONCURRENCY), *extra)


def env(server: FakeKieServer) -> dict[str, str]:
    return child_env(KIE_API_KEY=server.api_key, KIE_POLL_ZERO_WAIT="1")


async def rerun_creates_nothing_twice(server: FakeKieServer, jobs: Path, journal: Path) -> None:
    rerun = await asyncio.create_subprocess_exec(
        *bulk_args(server, jobs, journal, "--rate-limit", "1000/1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env(server),
    )
    _, stderr = await asyncio.wait_for(rerun.communicate(), 60)
    assert rerun.returncode in (0, 1), stderr.decode()
    assert server.duplicate_creates() == 0
    assert server.counts["create"] <= JOBS


@pytest.mark.slow
@pytest.mark.parametrize(
    ("output", "signals"),
    [
        ("closed", [signal.SIGTERM]),
        ("closed", [signal.SIGINT]),
        ("closed", [signal.SIGINT, signal.SIGINT]),
        ("closed", [signal.SIGHUP]),
        ("full", [signal.SIGTERM]),
        ("full", [signal.SIGINT, signal.SIGINT]),
        ("stalled", [signal.SIGTERM]),
        ("stalled", [signal.SIGHUP]),
    ],
)
async def test_a_signal_stops_bulk_whatever_became_of_its_output(
    server: FakeKieServer, tmp_path: Path, output: str, signals: list[int]
) -> None:
    """With stdout and stderr on a closed pipe, /dev/full or a full pipe nobody reads, a
    signal (or two) ends the run within seconds: no create after the signal beyond those on
    the wire (server-side count), every task paid for in the journal, and a rerun on the same
    journal pays for nothing twice."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", JOBS)
    journal = tmp_path / "run.journal"
    if len(signals) == 2:
        # Creates on the wire for seconds: the first signal waits for them, the second
        # cuts them off at once.
        server.faults = Faults(slow=1.0, slow_seconds=5.0, endpoints=frozenset({"create"}))
    # Ten creates a second: a run that does not stop goes on creating, visibly. With its pipe
    # closed, the run writes nothing more before the signal (a write would stop it, as SIGPIPE
    # would: test_a_closed_pipe_stops_bulk_as_sigpipe_would), so the signal's own note is the
    # first write to meet the closed pipe.
    interval = "30" if output == "closed" else "0.05"
    args = bulk_args(server, jobs, journal, "--rate-limit", "10/1", "--progress-interval", interval)
    with child_output(output) as (write_end, read_end):
        process = await asyncio.create_subprocess_exec(
            *args, stdout=write_end, stderr=write_end, env=env(server)
        )
        try:
            await wait_until(lambda: server.counts["create"] >= 3)
            if read_end is not None and output == "closed":
                os.read(read_end, 100)  # the reader saw the balance line, then went away
                os.close(read_end)
            at_signal = server.counts["create"]
            started = time.monotonic()
            for signum in signals:
                process.send_signal(signum)
                await asyncio.sleep(0.2)
            returncode = await asyncio.wait_for(process.wait(), 10)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert time.monotonic() - started < 5
    assert returncode == 130
    assert server.counts["create"] <= at_signal + CONCURRENCY
    assert server.counts["create"] < JOBS
    submitted = {e["task_id"] for e in journal_events(journal) if e["event"] == "submitted"}
    if len(signals) == 1:  # the second signal cuts the creates on the wire off: uncertain
        assert submitted == set(server.tasks)
        assert unresolved_intents(journal) == set()
    server.faults = Faults()
    await rerun_creates_nothing_twice(server, jobs, journal)


@pytest.mark.slow
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
async def test_a_closed_pipe_stops_bulk_as_sigpipe_would(
    server: FakeKieServer, tmp_path: Path, stream: str
) -> None:
    """The reader of stdout or stderr goes away (``2>&1 | head``): the next write stops the
    run, cleanly: exit 141, no create beyond those on the wire, the journal saved, and a rerun
    pays for nothing twice."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", JOBS)
    journal = tmp_path / "run.journal"
    # Three creates a second: the close is met at the next progress line (within 0.05 s, later
    # on a loaded machine); meanwhile the run may go on creating, at most a window's worth.
    # stdout is written at the summary only: that run goes to its end, unhurried.
    rate = "3/1" if stream == "stderr" else "1000/1"
    args = bulk_args(server, jobs, journal, "--rate-limit", rate, "--progress-interval", "0.05")
    read_end, write_end = os.pipe()
    streams: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    streams[stream] = write_end
    try:
        process = await asyncio.create_subprocess_exec(*args, **streams, env=env(server))
        os.close(write_end)
        try:
            await wait_until(lambda: server.counts["create"] >= 3)
            os.close(read_end)
            at_close = server.counts["create"]
            started = time.monotonic()
            returncode = await asyncio.wait_for(process.wait(), 10)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    finally:
        with contextlib.suppress(OSError):
            os.close(read_end)
    assert time.monotonic() - started < 5
    assert returncode == 141
    # Progress lines go to stderr only; a closed stdout is met at the summary, after the run.
    if stream == "stderr":
        assert server.counts["create"] <= at_close + 3 + CONCURRENCY
        assert server.counts["create"] < JOBS
    submitted = {e["task_id"] for e in journal_events(journal) if e["event"] == "submitted"}
    assert submitted == set(server.tasks)
    assert unresolved_intents(journal) == set()
    await rerun_creates_nothing_twice(server, jobs, journal)


def run_cli(*args: str, stdout: int, stderr: int | None = subprocess.PIPE) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "kie_async", *args],
        stdout=stdout,
        stderr=stderr,
        env=child_env(KIE_API_KEY="test-key"),
        timeout=30,
        check=False,
    )


def closed_pipe() -> int:
    """The write end of a pipe whose reader is gone (the caller closes it)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["bulk", "--help"],
        ["demo", "--videos", "4"],
    ],
)
def test_a_closed_stdout_ends_a_command_quietly(args: list[str]) -> None:
    """Any command whose stdout is a closed pipe ends without a traceback, with exit
    status 141 (a shell's status for a tool that SIGPIPE ends)."""
    write_end = closed_pipe()
    try:
        done = run_cli(*args, stdout=write_end)
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr.decode()
    assert b"Traceback" not in done.stderr
    assert b"Exception ignored" not in done.stderr


async def test_a_closed_stdout_ends_credits_and_status_quietly(server: FakeKieServer) -> None:
    """``credits`` and ``status`` against the fake, stdout closed: exit 141, nothing on
    stderr."""
    task_id = server.add_source_video()
    for args in (["credits"], ["status", task_id]):
        write_end = closed_pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "kie_async",
                "--base-url",
                server.url,
                *args,
                stdout=write_end,
                stderr=subprocess.PIPE,
                env=env(server),
            )
        finally:
            os.close(write_end)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 141, stderr.decode()
        assert stderr == b""


def test_a_full_disk_on_stdout_is_one_error_line() -> None:
    """stdout on /dev/full: one ``error:`` line on stderr naming the cause, exit status 1."""
    with open("/dev/full", "w", encoding="utf-8") as full:
        done = run_cli("--version", stdout=full.fileno())
    assert done.returncode == 1
    assert done.stderr.decode().splitlines() == [
        f"error: cannot write standard output: {os.strerror(errno.ENOSPC)}"
    ]


def test_stdout_and_stderr_both_gone_is_still_quiet() -> None:
    """Both streams on one closed pipe (``2>&1 | head``) and a usage error: no hang, no
    crash; the usage error's status."""
    write_end = closed_pipe()
    try:
        done = run_cli("bulk", stdout=write_end, stderr=write_end)
    finally:
        os.close(write_end)
    assert done.returncode == 2
