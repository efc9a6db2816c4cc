"""The kie-async command: every command against the fake kie.ai, exit statuses, and the key kept."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import bulk_argv, child_env

from kie_async import PollPolicy, Progress, RetryPolicy
from kie_async._cli import Context, build_parser, main, run
from kie_async._cli.jobs import parse_jobs
from kie_async._cli.progress import INSTALL_HINT, first_estimate, progress_line
from kie_async.testing import FakeKieServer, TaskScript

KEY = "kie-sk-7f3c9a1e-DISTINCTIVE-0042"
FAST: dict[str, Any] = {"poll": PollPolicy.zero_wait(), "retry": RetryPolicy.zero_wait()}
PLAIN_LINE = re.compile(
    r"^\[\d+\.\ds\] done \d+/\d+ · submitted \d+ · running \d+ · failed \d+ · uncertain \d+ · "
    r"\S+ · ETA \S+$"
)


@pytest.fixture(name="server")
async def _server() -> AsyncIterator[FakeKieServer]:
    """A fake kie.ai that accepts only the distinctive key."""
    async with FakeKieServer(api_key=KEY) as server:
        yield server


@pytest.fixture(name="key_env")
def _key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The distinctive key in KIE_API_KEY, as a user would set it."""
    monkeypatch.setenv("KIE_API_KEY", KEY)


async def cli(server: FakeKieServer, *argv: str, **options: Any) -> int:
    """Run the command in this event loop against ``server`` with zero-wait polling."""
    return await run(["--base-url", server.url, *argv], client_options={**FAST, **options})


def write_jobs(path: Path, lines: list[Any]) -> Path:
    """A jobs file: dicts become JSON lines, strings are written as they are."""
    text = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


def good_jobs(count: int, prompt: str = "scene") -> list[dict[str, Any]]:
    return [
        {"task_id": f"src{i // 4}", "index": i % 4, "prompt": f"{prompt} {i}"} for i in range(count)
    ]


def read_results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class TerminalBuffer(io.StringIO):
    """A text buffer that says it is a terminal."""

    def isatty(self) -> bool:
        return True


# -- bulk ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("key_env")
async def test_bulk_reports_every_bad_line_and_sends_nothing(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad lines (JSON, missing task_id, bool index, long prompt, unknown key) are all named by
    line and field, the exit status is 2, and the server receives no request at all."""
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [
            {"task_id": "src", "index": 0, "prompt": "fine"},
            '{"task_id": "src", "index": 1, "prompt": ',
            {"index": 0, "prompt": "no source"},
            {"task_id": "src", "index": True, "prompt": "bool index"},
            "  # a comment",
            "",
            {"task_id": "src", "index": 2, "prompt": "x" * 2001},
            {"task_id": "src", "index": 3, "prompt": "fine", "colour": "red"},
            {"task_id": "src", "index": 3, "prompt": "also fine"},
        ],
    )
    assert await cli(server, "bulk", str(jobs)) == 2
    err = capsys.readouterr().err
    assert "line 2: not valid JSON" in err
    assert "line 3: task_id: is required" in err
    assert "line 4: index: must be an int, not bool" in err
    assert "line 7: prompt: is 2001 characters" in err
    assert "line 8: colour: unknown field" in err
    assert not re.search(r"line (1|5|6|9)\b", err)
    assert "5 bad line(s)" in err
    assert "nothing was submitted" in err
    assert server.requests == []


@pytest.mark.usefixtures("key_env")
async def test_bulk_writes_one_result_per_job(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A good jobs file exits 0 and --out holds one result per job with its task and URLs."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", ["# header", *good_jobs(6)])
    out = tmp_path / "results.jsonl"
    assert await cli(server, "bulk", str(jobs), "--out", str(out)) == 0
    results = read_results(out)
    assert sorted(r["line"] for r in results) == [2, 3, 4, 5, 6, 7]
    for result in results:
        assert result["kind"] == "succeeded"
        assert result["status"] == "success"
        assert result["task_id"] in server.tasks
        assert result["result_urls"]
        assert result["error"] is None
        assert result["request"]["prompt"] == f"scene {result['line'] - 2}"
    assert server.counts["create"] == 6
    stdout = capsys.readouterr().out
    assert re.search(r"^succeeded\s+6$", stdout, re.MULTILINE)
    assert re.search(r"^failed\s+0$", stdout, re.MULTILINE)


@pytest.mark.usefixtures("key_env")
async def test_bulk_with_failed_tasks_exits_1(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tasks that kie.ai reports failed make the exit status 1 and are named in the summary and
    in the results file with their error."""

    def script(body: Any) -> TaskScript | None:
        return TaskScript.failed("content policy") if "doomed" in body["prompt"] else None

    server.script_for = script
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [*good_jobs(3), {"task_id": "src9", "index": 0, "prompt": "doomed"}],
    )
    out = tmp_path / "results.jsonl"
    assert await cli(server, "bulk", str(jobs), "--out", str(out)) == 1
    failed = [r for r in read_results(out) if r["kind"] == "failed"]
    assert len(failed) == 1
    assert failed[0]["line"] == 4
    assert failed[0]["status"] == "failed"
    assert failed[0]["error"]["type"] == "TaskFailedError"
    assert "content policy" in failed[0]["error"]["message"]
    stdout = capsys.readouterr().out
    assert re.search(r"^failed\s+1$", stdout, re.MULTILINE)
    assert "line 4: failed: task " in stdout


@pytest.mark.usefixtures("key_env")
async def test_bulk_lost_reply_is_uncertain_and_exits_1(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A create whose reply was lost is reported uncertain (exit 1) with advice, not retried."""
    server.fail_next("create", "drop_after")
    jobs = write_jobs(tmp_path / "jobs.jsonl", good_jobs(1))
    assert await cli(server, "bulk", str(jobs)) == 1
    captured = capsys.readouterr()
    assert re.search(r"^uncertain\s+1$", captured.out, re.MULTILINE)
    assert "--resubmit-uncertain" in captured.err
    assert server.counts["create"] == 1


@pytest.mark.usefixtures("key_env")
async def test_bulk_rerun_with_journal_skips_finished_jobs(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rerun with the same journal sends no create and reports every job from the journal."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", good_jobs(5))
    journal = tmp_path / "run.journal"
    out = tmp_path / "results.jsonl"
    assert await cli(server, "bulk", str(jobs), "--journal", str(journal)) == 0
    assert server.counts["create"] == 5
    first = capsys.readouterr().out
    assert "journal" not in first
    args = ("bulk", str(jobs), "--journal", str(journal), "--out", str(out))
    assert await cli(server, *args) == 0
    assert server.counts["create"] == 5
    results = read_results(out)
    assert len(results) == 5
    assert all(r["from_journal"] and r["kind"] == "succeeded" for r in results)
    assert "5 already finished in the journal" in capsys.readouterr().out


@pytest.mark.usefixtures("key_env")
async def test_bulk_progress_is_plain_lines_without_a_terminal(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With stderr not a terminal, progress comes as periodic plain lines without escape codes,
    ending with a line where every job is done."""
    server.script_next(*(TaskScript(seconds=s) for s in (0.1, 0.2, 0.3, 0.4)))
    jobs = write_jobs(tmp_path / "jobs.jsonl", good_jobs(4))
    # Polls every 20 ms, so that the run lasts long enough for several progress lines.
    poll = PollPolicy(
        interval=0.02, factor=1, max_interval=0.02, jitter=0, not_found_grace=0, first_delay=0
    )
    status = await cli(server, "bulk", str(jobs), "--progress-interval", "0.05", poll=poll)
    assert status == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[")]
    assert len(lines) >= 3
    assert all(PLAIN_LINE.match(line) for line in lines), lines
    assert " done 4/4 " in lines[-1]
    assert "\x1b" not in err


@pytest.mark.usefixtures("key_env")
async def test_bulk_draws_a_bar_on_a_terminal(
    server: FakeKieServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal (with rich installed) progress is a bar, not plain lines."""
    terminal = TerminalBuffer()
    monkeypatch.setattr(sys, "stderr", terminal)
    jobs = write_jobs(tmp_path / "jobs.jsonl", good_jobs(3))
    assert await cli(server, "bulk", str(jobs)) == 0
    drawn = terminal.getvalue()
    assert "━" in drawn
    assert "3/3" in drawn
    assert not any(PLAIN_LINE.match(line) for line in drawn.splitlines())


@pytest.mark.usefixtures("key_env")
async def test_bulk_without_rich_falls_back_to_lines_and_says_how_to_get_the_bar(
    server: FakeKieServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without rich, a terminal gets plain progress lines and the install hint."""
    for name in [m for m in sys.modules if m == "rich" or m.startswith("rich.")] + ["rich"]:
        monkeypatch.setitem(sys.modules, name, None)
    terminal = TerminalBuffer()
    monkeypatch.setattr(sys, "stderr", terminal)
    jobs = write_jobs(tmp_path / "jobs.jsonl", good_jobs(2))
    assert await cli(server, "bulk", str(jobs)) == 0
    drawn = terminal.getvalue()
    assert INSTALL_HINT in drawn
    assert any(PLAIN_LINE.match(line) for line in drawn.splitlines())


@pytest.mark.usefixtures("key_env")
async def test_bulk_refuses_unusable_files_before_sending(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing jobs file, an empty one, an unwritable --out or a file that is not a journal
    exit 2 and send nothing."""
    assert await cli(server, "bulk", str(tmp_path / "missing.jsonl")) == 2
    assert "cannot read the jobs file" in capsys.readouterr().err
    empty = write_jobs(tmp_path / "empty.jsonl", ["# nothing yet"])
    assert await cli(server, "bulk", str(empty)) == 2
    assert "holds no jobs" in capsys.readouterr().err
    jobs = write_jobs(tmp_path / "jobs.jsonl", good_jobs(1))
    out = tmp_path / "no-such-dir" / "results.jsonl"
    assert await cli(server, "bulk", str(jobs), "--out", str(out)) == 2
    assert "cannot write" in capsys.readouterr().err
    not_a_journal = write_jobs(tmp_path / "notes.txt", ["shopping list", "milk"])
    assert await cli(server, "bulk", str(jobs), "--journal", str(not_a_journal)) == 2
    assert "is not JSON; is it a kie-async journal?" in capsys.readouterr().err
    assert server.requests == []


def test_parse_jobs_skips_comments_and_blank_lines() -> None:
    """Indented comments and whitespace-only lines are skipped; line numbers stay the file's."""
    text = '\n   \n  # note\n{"task_id": "a", "index": 1}\n'
    jobs, errors = parse_jobs(text)
    assert errors == []
    assert [(job.number, job.request.index, job.request.prompt) for job in jobs] == [(4, 1, None)]


# -- single tasks ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("key_env")
async def test_extend_prints_the_task_id_and_with_wait_the_result(
    server: FakeKieServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """extend prints only the new task id; with --wait it then prints status and result URLs."""
    assert await cli(server, "extend", "src", "--index", "1", "--prompt", "Into a nebula") == 0
    task_id = capsys.readouterr().out.strip()
    assert task_id in server.tasks
    assert server.creates[0]["index"] == 1
    assert server.creates[0]["taskType"] == "mj_video_extend_manual"
    args = ("extend", "src", "--index", "0", "--mode", "auto", "--watermark", "mine", "--wait")
    assert await cli(server, *args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] in server.tasks
    assert "status:    success" in out
    assert any(line.startswith("result:    http://") for line in out)
    assert server.creates[1]["waterMark"] == "mine"


@pytest.mark.usefixtures("key_env")
async def test_extend_rejects_bad_input_with_exit_2(
    server: FakeKieServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid request is refused before sending, as one error line naming the field."""
    assert await cli(server, "extend", "src", "--index", "7", "--prompt", "x") == 2
    assert await cli(server, "extend", "src", "--index", "0", "--mode", "manual") == 2
    err = capsys.readouterr().err
    assert "error: --index: 7 is out of range" in err
    assert "error: --prompt: manual extension needs a non-blank prompt" in err
    assert server.requests == []


@pytest.mark.usefixtures("key_env")
async def test_status_wait_and_credits(
    server: FakeKieServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """status shows a record, wait exits 1 for a failed task with its error, credits the balance."""
    server.script_next(TaskScript(polls=5), TaskScript.failed("nsfw"))
    assert await cli(server, "extend", "src", "--index", "0") == 0
    assert await cli(server, "extend", "src", "--index", "1") == 0
    running, failing = capsys.readouterr().out.split()
    assert await cli(server, "status", running) == 0
    out = capsys.readouterr().out
    assert f"task:      {running}" in out
    assert "status:    generating" in out
    assert await cli(server, "wait", failing) == 1
    captured = capsys.readouterr()
    assert "status:    failed" in captured.out
    assert "error:     400: nsfw" in captured.out
    assert f"error: task {failing} failed (400: nsfw)" in captured.err
    assert await cli(server, "credits") == 0
    assert capsys.readouterr().out.strip() == "99998"


@pytest.mark.usefixtures("key_env")
async def test_wait_timeout_exits_1_with_a_hint(
    server: FakeKieServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """wait --timeout gives up with exit 1 and says how to wait again."""
    server.script_next(TaskScript(polls=10**6))
    assert await cli(server, "extend", "src", "--index", "0") == 0
    task_id = capsys.readouterr().out.strip()
    status = await run(["--base-url", server.url, "wait", task_id, "--timeout", "0.2"])
    assert status == 1
    err = capsys.readouterr().err
    assert f"error: task {task_id} not finished after 0.2s" in err
    assert f"kie-async wait {task_id}" in err


@pytest.mark.usefixtures("key_env")
async def test_sdk_errors_are_one_line_without_traceback(
    server: FakeKieServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown task is one 'error:' line (exit 1) saying there is no such task, no
    traceback and no raw kie.ai code."""
    assert await cli(server, "status", "no-such-task") == 1
    err = capsys.readouterr().err
    host = server.url.removeprefix("http://")
    assert err.startswith(f"error: no such task: {host} knows no task with the id no-such-task")
    assert "422" not in err and "recordInfo" not in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


# -- configuration and the key --------------------------------------------------------------------


async def test_missing_key_or_key_file_exits_2(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a key, or with an unreadable key file, the command exits 2 and says what to do."""
    assert await cli(server, "credits") == 2
    assert "set KIE_API_KEY or pass --api-key-file" in capsys.readouterr().err
    assert await cli(server, "--api-key-file", str(tmp_path / "nope"), "credits") == 2
    assert "cannot read the key file" in capsys.readouterr().err
    assert server.requests == []


async def test_a_key_with_whitespace_is_named_in_the_message(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key file holding two lines exits 2 with a message that says the API key is at fault
    (the CLI drops the setting's name, so the reason must name it), and nothing is sent."""
    key_file = tmp_path / "key"
    key_file.write_text("first-line\nsecond-line\n")
    assert await cli(server, "--api-key-file", str(key_file), "credits") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the API key contains whitespace or control characters"), err
    assert "first-line" not in err and "second-line" not in err
    assert server.requests == []


async def test_key_file_works_before_or_after_the_command(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--api-key-file is read (trailing newline ignored) wherever it stands on the line."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    assert await cli(server, "--api-key-file", str(key_file), "credits") == 0
    assert await cli(server, "credits", "--api-key-file", str(key_file)) == 0
    assert capsys.readouterr().out.split() == ["100000", "100000"]


async def test_the_key_never_appears_in_output(
    server: FakeKieServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With -v logging, errors and a refused key, neither the right nor a wrong key is printed."""
    monkeypatch.setenv("KIE_API_KEY", KEY)
    jobs = write_jobs(tmp_path / "jobs.jsonl", good_jobs(3))
    assert await cli(server, "-v", "extend", "src", "--index", "0", "--prompt", "go", "--wait") == 0
    assert await cli(server, "-v", "status", "missing") == 1
    assert await cli(server, "-v", "bulk", str(jobs), "--out", str(tmp_path / "r.jsonl")) == 0
    wrong = "kie-sk-WRONG-9d8e7f-DISTINCTIVE"
    monkeypatch.setenv("KIE_API_KEY", wrong)
    assert await cli(server, "-v", "bulk", str(jobs), "--concurrency", "1") == 1
    assert await cli(server, "credits") == 1
    captured = capsys.readouterr()
    everything = captured.out + captured.err + (tmp_path / "r.jsonl").read_text()
    assert "Bearer ***" in captured.err  # -v did log the requests
    # The wrong key is refused by the account check, before any create.
    assert "(the account check before the first create; nothing was submitted)" in captured.err
    assert "error: API error 401 from http://127.0.0.1:" in captured.err
    assert KEY not in everything
    assert wrong not in everything
    assert "DISTINCTIVE" not in everything


# -- usage ----------------------------------------------------------------------------------------


async def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """No command, a bad option value, or an unknown command exit 2; --version exits 0."""
    assert await run([]) == 2
    assert await run(["bulk", "jobs.jsonl", "--rate-limit", "fast"]) == 2
    assert await run(["bulk", "jobs.jsonl", "--concurrency", "0"]) == 2
    assert await run(["download"]) == 2
    assert await run(["--version"]) == 0
    captured = capsys.readouterr()
    assert "is not N/SECONDS" in captured.err
    assert captured.out.startswith("kie-async ")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0/10", "argument --rate-limit: '0/10': N must be at least 1"),
        ("5/0", "argument --rate-limit: '5/0': SECONDS must be a number > 0"),
        ("5/inf", "argument --rate-limit: '5/inf': SECONDS must be a number > 0"),
        ("fast", "argument --rate-limit: 'fast' is not N/SECONDS"),
    ],
)
async def test_rate_limit_errors_say_what_is_wrong(
    capsys: pytest.CaptureFixture[str], value: str, says: str
) -> None:
    """A well-formed --rate-limit with N < 1 or SECONDS <= 0 says which part is wrong (exit 2),
    instead of claiming it is not N/SECONDS."""
    assert await run(["bulk", "jobs.jsonl", "--rate-limit", value]) == 2
    assert says in capsys.readouterr().err


def test_main_returns_the_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """main() runs its own event loop and returns the status instead of exiting."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", ['{"task_id": 5, "index": 0}'])
    assert main(["bulk", str(jobs)]) == 2
    assert "line 1: task_id: must be a string, not int" in capsys.readouterr().err


# -- real processes -------------------------------------------------------------------------------


def test_demo_runs_in_a_process_without_a_key() -> None:
    """python -m kie_async demo needs no key, exits 0, prints the summary and says it was fake."""
    done = subprocess.run(
        [sys.executable, "-m", "kie_async", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^succeeded\s+33$", done.stdout, re.MULTILINE)
    assert re.search(r"^failed\s+3$", done.stdout, re.MULTILINE)
    assert "fake kie.ai" in done.stdout.splitlines()[-1]
    assert any(PLAIN_LINE.match(line) for line in done.stderr.splitlines())


def test_package_and_command_work_without_rich() -> None:
    """Importing the package and the command loads no rich, and a demo runs with rich absent."""
    code = (
        "import sys\n"
        "import kie_async, kie_async._cli\n"
        "assert 'rich' not in sys.modules, 'rich imported eagerly'\n"
        "sys.modules['rich'] = None\n"
        "raise SystemExit(kie_async._cli.main(['demo', '--videos', '4']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^succeeded\s+4$", done.stdout, re.MULTILINE)


async def test_ctrl_c_stops_bulk_and_the_journal_lets_a_rerun_finish(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C mid-run exits 130 and points at the journal; the rerun re-attaches without
    creating anything again."""
    server.default_script = TaskScript(polls=10**6)
    jobs = write_jobs(tmp_path / "jobs.jsonl", good_jobs(4))
    journal = tmp_path / "run.journal"
    process = await asyncio.create_subprocess_exec(
        *bulk_argv(server.url, jobs, journal),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(KIE_API_KEY=KEY),
    )

    # Wait until every task id is in the journal (the child then waits for its first polls).
    for _ in range(1000):
        text = journal.read_text(encoding="utf-8") if journal.exists() else ""
        if len(server.tasks) == 4 and text.count('"submitted"') == 4:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the child never submitted every job")
    process.send_signal(signal.SIGINT)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 130, stderr.decode()
    err = stderr.decode()
    assert f"the journal {journal} records every submitted task" in err
    assert "Traceback" not in err
    assert KEY not in err + stdout.decode()
    assert re.search(r"^no outcome yet\s+4$", stdout.decode(), re.MULTILINE)

    for task_id in list(server.tasks):
        server.complete(task_id)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KIE_API_KEY", KEY)
        assert await cli(server, "bulk", str(jobs), "--journal", str(journal)) == 0
    assert server.counts["create"] == 4
    assert re.search(r"^succeeded\s+4$", capsys.readouterr().out, re.MULTILINE)


# -- a newcomer's first steps -------------------------------------------------------------------


async def test_missing_key_message_says_it_once(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a key the command prints one line that says so once and names what to set."""
    assert await run(["status", "abc123"]) == 2
    err = capsys.readouterr().err
    assert err == "error: no API key: set KIE_API_KEY or pass --api-key-file PATH\n"


@pytest.mark.usefixtures("key_env")
async def test_messages_name_flags_not_python_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A refused http:// base URL is explained with the command's flags (--base-url,
    --allow-insecure-http), not with Python arguments, and --allow-insecure-http works."""
    assert await run(["--base-url", "http://example.com", "status", "abc123"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --base-url: 'http://example.com' would send your API key")
    assert "--allow-insecure-http" in err
    assert "allow_insecure_http" not in err and "base_url" not in err
    args = build_parser().parse_args(
        ["--base-url", "http://example.com", "--allow-insecure-http", "status", "abc123"]
    )
    client = Context(io.StringIO(), io.StringIO(), args, {}).client()  # sends nothing
    assert client.base_url == "http://example.com"
    await client.aclose()


@pytest.mark.usefixtures("key_env")
async def test_extend_index_defaults_to_zero(
    server: FakeKieServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """extend without --index extends video 0, as the library's extend_video does."""
    assert await cli(server, "extend", "src", "--prompt", "Into a nebula") == 0
    [created] = [r for r in server.requests if r.method == "POST"]
    assert created.json is not None and created.json["index"] == 0
    assert "which video of the record, 0 to 3 (0)" in _help_text(capsys, ["extend"])


def _help_text(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return capsys.readouterr().out


def test_demo_help_shows_only_what_the_demo_uses(capsys: pytest.CaptureFixture[str]) -> None:
    """demo --help lists its own options and -v, not the key or URL options it never uses."""
    text = _help_text(capsys, ["demo"])
    assert "--videos" in text and "--concurrency" in text and "--verbose" in text
    for unused in ("--api-key-file", "--base-url", "--allow-insecure-http"):
        assert unused not in text


def test_bulk_help_describes_the_jobs_file_with_an_example_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """bulk --help describes the jobs file and shows an example line the parser accepts."""
    text = _help_text(capsys, ["bulk"])
    examples = [line.strip() for line in text.splitlines() if line.strip().startswith("{")]
    assert examples, text
    jobs, errors = parse_jobs("\n".join(examples))
    assert errors == [] and len(jobs) == len(examples)
    for field in ("task_id", "index", "prompt", "mode", "key"):
        assert field in text


def test_fake_server_help_is_plain_text_with_help_for_every_option() -> None:
    """python -m kie_async.testing --help has no reST markup, and every option has a help."""
    from kie_async.testing._main import _parser

    parser = _parser()
    assert all(action.help for action in parser._actions)
    done = subprocess.run(
        [sys.executable, "-m", "kie_async.testing", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "``" not in done.stdout and ":class:" not in done.stdout
    assert "--rate-limit N/SECONDS" in done.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rate-limit", "abc"], "argument --rate-limit: 'abc' is not N/SECONDS"),
        (["--rate-limit", "0/10"], "argument --rate-limit: '0/10': N must be at least 1"),
        (["--rate-limit", "5/0"], "argument --rate-limit: '5/0': SECONDS must be a number > 0"),
        (["--port", "99999"], "argument --port: must be 0 to 65535, got 99999"),
        (["--polls", "-1"], "argument --polls: must be 0 or more, got -1"),
        (["--seconds", "nan"], "argument --seconds: must be a number of seconds >= 0"),
        (["--max-extensions", "-1"], "argument --max-extensions: must be 0 or more"),
    ],
)
def test_fake_server_refuses_bad_options_without_a_traceback(args: list[str], says: str) -> None:
    """python -m kie_async.testing with a malformed option exits 2 with one usage error, never
    a traceback from inside the server (a bad --rate-limit or --port used to raise there)."""
    done = subprocess.run(
        [sys.executable, "-m", "kie_async.testing", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""


def test_fake_server_on_a_taken_port_says_so() -> None:
    """python -m kie_async.testing on a port already in use exits 2 with one 'error:' line
    naming the address, not a traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "kie_async.testing", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done
    assert done.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: "), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_progress_shows_an_estimate_before_the_first_task_ends() -> None:
    """Before any task has finished, the ETA is the earliest end from the rate limit and the
    poll schedule (36 creates at 2/s plus a 5 s poll: at least 0:23), not '?'."""
    estimate = first_estimate(2.0, 5.0)
    line = progress_line(Progress(queued=36), 36, 0.5, estimate)
    assert line.endswith("ETA >=0:23"), line
    half_sent = progress_line(Progress(queued=18, submitted=18, running=18), 36, 9.0, estimate)
    assert half_sent.endswith("ETA >=0:14"), half_sent
    assert progress_line(Progress(queued=36), 36, 0.5, first_estimate(None, 5.0)).endswith(
        "ETA >=0:05"
    )


@pytest.mark.usefixtures("key_env")
async def test_bulk_progress_lines_carry_the_estimate(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bulk run's progress lines show an estimate while no task has finished yet."""
    server.default_script = TaskScript(seconds=0.6)
    jobs = write_jobs(tmp_path / "jobs.jsonl", good_jobs(4))
    assert await cli(server, "bulk", str(jobs), "--progress-interval", "0.1") == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if PLAIN_LINE.match(line)]
    early = [line for line in lines if " done 0/4 " in line]
    assert early and all("ETA >=" in line for line in early), lines


_IMPORTS_OF_A_RUN = """
import json, runpy, sys
sys.argv = ["kie-async", *json.loads(sys.argv[1])]
try:
    runpy.run_module("kie_async", run_name="__main__")
except SystemExit as exc:
    status = exc.code
heavy = ("aiohttp", "cattrs", "kie_async._client", "kie_async._bulk.run")
heavy += ("kie_async._protocol.wire",)
heavy += ("kie_async._kinds.registry", "kie_async._kinds.generate", "kie_async._protocol.records")
heavy += ("kie_async._tasks.errors",)
loaded = [m for m in sys.modules if m in heavy or m.split(".")[0] in heavy]
print(json.dumps({"status": status, "loaded": sorted(loaded)}), file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["--help"], 0),
        (["bulk", "--help"], 0),
        (["--version"], 0),
        (["bulk"], 2),
        (["extend", "src", "--index", "nine"], 2),
        (["no-such-command"], 2),
    ],
)
def test_help_and_usage_errors_import_no_aiohttp(argv: list[str], status: int) -> None:
    """--help, --version and usage errors answer without importing aiohttp, cattrs, the bulk
    runner, the records or the request classes (aiohttp's import alone took most of a second)."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTS_OF_A_RUN, json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report == {"status": status, "loaded": []}, done.stderr
