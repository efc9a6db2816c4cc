"""The test mode: the docs' fake-server recipes end in seconds, polling each task a bounded
number of times, and the command's poll options are checked before anything is sent."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import child_env, write_jobs

from kie_async import ExtendRequest, PollPolicy, Progress, RetryPolicy
from kie_async._cli import run
from kie_async._cli.progress import first_estimate, progress_line
from kie_async.testing import FakeKieServer, TaskScript, fast_client

DOCS = Path(__file__).resolve().parent.parent / "docs"
#: What one task of the recipes (the fake server ends it after at most 3 s) may cost.
MOST_POLLS_PER_TASK = 25


def console_commands(page: str) -> list[str]:
    """The ``$ `` lines of the console blocks of ``docs/<page>``, in order."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```console\n(.*?)```", text, flags=re.DOTALL)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def command(page: str, start: str) -> str:
    """The first command of ``docs/<page>`` that starts with ``start``."""
    found = [line for line in console_commands(page) if line.startswith(start)]
    assert found, f"no command starting with {start!r} in docs/{page}"
    return found[0]


def python_block(page: str, first_line: str) -> str:
    """The python block of ``docs/<page>`` whose first line is ``first_line``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    found = [block for block in blocks if block.startswith(first_line + "\n")]
    assert found, f"no python block starting with {first_line!r} in docs/{page}"
    return found[0]


def argv_of(line: str, url: str) -> list[str]:
    """A documented command as this test runs it: this interpreter for ``python`` and
    ``kie-async``, the fake server's real URL and a free port for the documented ones."""
    words = [word.replace("http://127.0.0.1:8765", url) for word in shlex.split(line)]
    previous = ["", *words[:-1]]
    words = [
        "0" if before == "--port" else word for before, word in zip(previous, words, strict=True)
    ]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    assert words[0] == "kie-async", line
    return [sys.executable, "-m", "kie_async", *words[1:]]


def exported(line: str, url: str) -> dict[str, str]:
    """The variables of a documented ``export A=b C=d`` line, with the fake server's URL."""
    words = shlex.split(line)
    assert words[0] == "export", line
    pairs = (word.split("=", 1) for word in words[1:])
    return {name: value.replace("http://127.0.0.1:8765", url) for name, value in pairs}


async def recipe(
    page: str, client: str, tmp_path: Path, files: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, int], float]:
    """Run ``docs/<page>``'s fake server, its ``export`` line and its command starting with
    ``client`` in ``tmp_path`` (holding ``files``); return the client's result, the server's
    counts (printed on SIGTERM) and the client's run time."""
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    serve = argv_of(command(page, "python -m kie_async.testing"), "")
    server = await asyncio.create_subprocess_exec(*serve, stdout=subprocess.PIPE, env=child_env())
    try:
        assert server.stdout is not None
        url = (await asyncio.wait_for(server.stdout.readline(), 30)).decode().strip()
        env = child_env(**exported(command(page, "export KIE_API_KEY=test-key "), url))
        started = time.monotonic()
        client_process = await asyncio.create_subprocess_exec(
            *argv_of(command(page, client), url),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(client_process.communicate(), 60)
        elapsed = time.monotonic() - started
        assert client_process.returncode is not None
        done = subprocess.CompletedProcess(
            [], client_process.returncode, out.decode(), err.decode()
        )
        server.send_signal(signal.SIGTERM)
        last = (await asyncio.wait_for(server.stdout.read(), 30)).decode().splitlines()[-1]
        return done, json.loads(last), elapsed
    finally:
        if server.returncode is None:
            server.kill()
        await server.wait()


async def test_the_documented_fake_server_recipes_end_in_seconds(tmp_path: Path) -> None:
    """The quickstart's try-it script, the testing page's recipe and the command's bulk recipe
    end in seconds against the fake server, each task polled at most about 25 times (counted
    by the server)."""
    script = python_block("quickstart.md", "# extend.py")
    for name in ("quick", "page", "bulk"):
        (tmp_path / name).mkdir()
    write_jobs(tmp_path / "bulk" / "jobs.jsonl", 20)  # 20: within kie's burst of creates
    quick, page, bulk = await asyncio.gather(
        recipe("quickstart.md", "python extend.py", tmp_path / "quick", {"extend.py": script}),
        recipe("testing.md", "python my_script.py", tmp_path / "page", {"my_script.py": script}),
        recipe("cli.md", "kie-async bulk", tmp_path / "bulk", {}),
    )
    for (done, counts, elapsed), tasks in ((quick, 1), (page, 1), (bulk, 20)):
        assert done.returncode == 0, done.stderr
        assert counts["create"] == tasks, counts
        assert tasks <= counts["poll"] <= MOST_POLLS_PER_TASK * tasks, counts
        assert elapsed < 30, elapsed  # seconds, not the 2 minutes of the default schedule
    assert quick[0].stdout == "SUCCESS 1\n"
    assert page[0].stdout == "SUCCESS 1\n"
    assert "20 of 20 jobs" in bulk[0].stdout


async def test_the_test_mode_polls_a_task_at_most_ten_times_a_second() -> None:
    """PollPolicy.testing() leaves at least 0.1 s between two polls of a task (server-side
    times), in a wait and in a bulk run, and a 1-second task costs at most 10 polls."""
    async with FakeKieServer() as server, fast_client(server, poll=PollPolicy.testing()) as kie:
        server.default_script = TaskScript(seconds=1.0)
        handle = await kie.extend_video("src", 0, "go")
        requests = [ExtendRequest("src", i, f"scene {i}") for i in range(1, 4)]
        outcomes, _ = await asyncio.gather(
            asyncio.wait_for(_all(kie.extend_many(requests)), 30),
            asyncio.wait_for(handle.wait(), 30),
        )
        assert all(outcome.ok for outcome in outcomes)
        for task_id in server.tasks:
            times = [
                r.at
                for r in server.requests
                if r.path.endswith("record-info") and r.query.get("taskId") == task_id
            ]
            assert 2 <= len(times) <= 10, times
            assert min(b - a for a, b in itertools.pairwise(times)) >= 0.1 - 0.01, times


async def _all(outcomes: Any) -> list[Any]:
    return [outcome async for outcome in outcomes]


# -- the command's poll options -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bulk", "jobs.jsonl", "--first-poll", "-1"], "--first-poll: must be a number >= 0"),
        (["bulk", "jobs.jsonl", "--poll-interval", "nan"], "--poll-interval: must be a number"),
        (["bulk", "jobs.jsonl", "--wait-timeout", "0"], "--wait-timeout: must be a number > 0"),
        (["bulk", "jobs.jsonl", "--first-poll", "inf"], "--first-poll: must be finite"),
        (["wait", "t1", "--wait-timeout", "soon"], "--wait-timeout: 'soon' is not a number"),
        (["extend", "src", "--wait", "--first-poll", "-2"], "--first-poll: must be a number"),
        (["vary", "src", "--index", "0", "--wait", "--poll-interval", "-1"], "--poll-interval"),
    ],
)
async def test_bad_poll_options_are_usage_errors_before_anything_is_sent(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A bad --first-poll, --poll-interval or --wait-timeout exits 2 naming the option, with
    PollPolicy's own words, and sends nothing."""
    write_jobs(tmp_path / "jobs.jsonl", 2)
    async with FakeKieServer() as server:
        argv = [str(tmp_path / a) if a == "jobs.jsonl" else a for a in argv]
        assert await run(["--base-url", server.url, *argv]) == 2
        assert message in capsys.readouterr().err
        assert server.requests == []


async def test_poll_options_without_wait_are_usage_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """extend --poll-interval without --wait is refused (exit 2) before the create is sent."""
    monkeypatch.setenv("KIE_API_KEY", "test-key")
    async with FakeKieServer() as server:
        assert await run(["--base-url", server.url, "extend", "src", "--poll-interval", "1"]) == 2
        err = capsys.readouterr().err
        assert "--poll-interval: only with --wait" in err
        assert server.requests == []


async def test_bulk_polls_on_the_schedule_its_options_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bulk --first-poll 0.3 --poll-interval 0.1: each task's first poll comes 0.3 s after
    its create, the next ones 0.1 s apart (server-side times)."""
    monkeypatch.setenv("KIE_API_KEY", "test-key")
    jobs = write_jobs(tmp_path / "jobs.jsonl", 3)
    options = ["--first-poll", "0.3", "--poll-interval", "0.1", "--wait-timeout", "20"]
    async with FakeKieServer() as server:
        server.default_script = TaskScript(seconds=0.6)
        retry = {"retry": RetryPolicy.zero_wait()}
        argv = ["--base-url", server.url, "bulk", str(jobs), *options]
        assert await run(argv, client_options=retry) == 0
        creates = [r.at for r in server.requests if r.path.endswith("generateVideoExtend")]
        assert len(creates) == len(server.tasks) == 3
        # The tasks are kept in the order of their creates.
        for task_id, created in zip(server.tasks, creates, strict=True):
            polls = [
                r.at
                for r in server.requests
                if r.path.endswith("record-info") and r.query.get("taskId") == task_id
            ]
            assert polls[0] - created >= 0.3 - 0.01
            assert 2 <= len(polls) <= 8
            assert all(0.1 - 0.01 <= b - a < 1 for a, b in itertools.pairwise(polls))


def test_the_estimate_counts_down_to_the_first_poll() -> None:
    """Before a task ends, the ETA counts from the first poll's delay and goes down once
    every create is sent; it never stays stuck."""
    estimate = first_estimate(2.0, 120.0)
    line = progress_line(Progress(queued=4), 4, 0.5, estimate)
    assert line.endswith("ETA >=2:02"), line
    sent = Progress(submitted=4, running=4)
    assert progress_line(sent, 4, 2.5, estimate).endswith("ETA >=1:58")
    assert progress_line(sent, 4, 62.5, estimate).endswith("ETA >=0:58")
    assert progress_line(sent, 4, 500.0, estimate).endswith("ETA >=0:00")
