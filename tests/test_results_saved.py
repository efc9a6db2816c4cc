"""Nothing paid for is left silently unsaved: a bulk run that downloads records each file in its
journal (BulkRun.download, ``bulk --download``), ``download JOURNAL DIR`` needs no key when
nothing is left, and it looks up the tasks the journal holds no end for (never creating one),
against the fake kie.ai on loopback with server-side counts."""

from __future__ import annotations

import asyncio
import json
import sys
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import pytest
from helpers import child_env

from kie_async import (
    Chain,
    ExtendRequest,
    GenerateRequest,
    KieClient,
    OutcomeKind,
    PollPolicy,
    TaskNotFoundError,
    UpscaleStep,
    ValidationError,
    read_results,
)
from kie_async._cli import run
from kie_async.testing import FakeKieServer, TaskScript

FAST: dict[str, Any] = {"poll": PollPolicy.zero_wait()}


def requests(count: int) -> list[ExtendRequest]:
    return [ExtendRequest(f"src{i}", 0, f"scene {i}") for i in range(count)]


def lines(journal: Path, event: str) -> list[dict[str, Any]]:
    """The journal's lines of ``event``, in order."""
    read = (json.loads(line) for line in journal.read_text("utf-8").splitlines())
    return [line for line in read if line.get("event") == event]


async def cli(server: FakeKieServer, *argv: str) -> int:
    return await run(["--base-url", server.url, *argv], client_options=FAST)


# -- a bulk run that downloads records what it saved ----------------------------------------------


async def test_run_download_records_each_file_so_download_journal_fetches_nothing(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """BulkRun.download saves a succeeded outcome's files (a chain's: every step's) and
    writes a saved line for each under the job's own key, so read_results lists all saved and
    download_journal, even into another directory, fetches nothing (server counts)."""
    journal, dest = tmp_path / "run.jsonl", tmp_path / "videos"
    chain = Chain(GenerateRequest("mj_txt2img", "a cat"), UpscaleStep(2))
    saved: list[Path] = []
    async with kie.run_many([*requests(2), chain], journal=journal) as bulk:
        async for outcome in bulk:
            assert outcome.ok
            saved += await bulk.download(outcome, dest)
    assert len(saved) == 2 + 4 + 1  # two videos, the grid's four images, the upscale
    assert server.counts["file"] == 7 and all(path.is_file() for path in saved)
    done_keys = {line["task_id"]: line["key"] for line in lines(journal, "done")}
    saved_lines = lines(journal, "saved")
    assert len(saved_lines) == 7
    assert all(line["key"] == done_keys[line["task_id"]] for line in saved_lines)
    results = read_results(journal)
    assert len(results.saved) == 7 and not results.missing
    assert {file.path for file in results.saved} == {path.absolute() for path in saved}

    files = server.counts["request:file"], server.counts["request:download_url"]
    again = await kie.download_journal(journal, tmp_path / "elsewhere")
    assert not again.fetched and not again.found and again.ok
    assert (server.counts["request:file"], server.counts["request:download_url"]) == files
    assert not (tmp_path / "elsewhere").exists()


async def test_run_download_refuses_what_it_cannot_save_before_any_request(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A failed outcome is a ValidationError, and a run that is over (its journal closed) a
    RuntimeError naming download_journal; neither fetches anything. Without a journal it
    saves as KieClient.download does."""
    journal = tmp_path / "run.jsonl"
    server.script_next(TaskScript.failed())
    async with kie.run_many(requests(1), journal=journal) as bulk:
        [failed] = [outcome async for outcome in bulk]
        assert failed.kind is OutcomeKind.FAILED
        with pytest.raises(ValidationError, match="only a succeeded outcome"):
            await bulk.download(failed, tmp_path / "videos")
    later = kie.run_many(requests(2)[1:], journal=journal)
    [outcome] = [o async for o in later]
    with pytest.raises(RuntimeError, match="download_journal"):
        await later.download(outcome, tmp_path / "videos")
    assert server.counts["request:file"] == 0 and not (tmp_path / "videos").exists()
    async with kie.run_many(requests(3)[2:]) as unjournaled:
        [third] = [o async for o in unjournaled]
        [path] = await unjournaled.download(third, tmp_path / "videos")
    assert path.read_bytes() == server.file_bytes(str(third.task_id), "0.mp4")


async def test_bulk_download_records_files_and_download_needs_no_key_after_it(
    server: FakeKieServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`bulk --journal J --download DIR` (a chain among the jobs) records every file it saved:
    `results J` right after shows all saved, and `download J DIR2` without any API key exits 0
    saying nothing is left, and sends no request at all."""
    jobs = tmp_path / "jobs.jsonl"
    chain = {
        "kind": "chain",
        "steps": [
            {"kind": "generate", "task_type": "mj_txt2img", "prompt": "a cat"},
            {"kind": "upscale", "index": 2},
        ],
    }
    items = [{"task_id": "v1", "index": 0}, {"task_id": "v1", "index": 1}, chain]
    jobs.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    journal, dest = tmp_path / "run.jsonl", tmp_path / "videos"
    monkeypatch.setenv("KIE_API_KEY", server.api_key)
    argv = ["bulk", str(jobs), "--journal", str(journal), "--download", str(dest)]
    assert await cli(server, *argv) == 0
    assert "downloads: 7 file(s)" in capsys.readouterr().err
    assert server.counts["file"] == 7
    assert await run(["results", str(journal)]) == 0
    assert "7 files: 7 saved, 0 not saved" in capsys.readouterr().out

    monkeypatch.delenv("KIE_API_KEY")
    sent = len(server.requests)
    assert await cli(server, "download", str(journal), str(tmp_path / "again")) == 0
    out = capsys.readouterr()
    assert out.out == "" and "nothing to fetch: the journal's 7 file(s) are all saved" in out.err
    assert len(server.requests) == sent and not (tmp_path / "again").exists()

    monkeypatch.setenv("KIE_API_KEY", server.api_key)
    assert await cli(server, *argv) == 0  # a rerun: every job from the journal, nothing fetched
    assert server.counts["file"] == 7 and server.counts["create"] == 4


# -- tasks the journal holds no end for -----------------------------------------------------------


async def stopped_run(server: FakeKieServer, kie: KieClient, journal: Path) -> dict[str, str]:
    """A run of four jobs stopped after the first outcome, the three others still running at
    kie.ai ("scene 3" scripted to fail): their task ids by prompt."""

    def script(body: dict[str, Any]) -> TaskScript:
        if body.get("prompt") == "scene 0":
            return TaskScript()
        flag = 2 if body.get("prompt") == "scene 3" else 1
        return TaskScript(flag=flag, polls=10**9, error_code="400", error_message="refused")

    server.script_for = script
    async with kie.run_many(requests(4), journal=journal) as bulk:
        async for outcome in bulk:
            assert outcome.request.prompt == "scene 0"
            break
    return {
        str(json.loads(task["param_json"])["prompt"]): task_id
        for task_id, task in server.tasks.items()
        if "param_json" in task
    }


async def test_download_looks_up_unfinished_tasks_records_their_end_and_creates_nothing(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """download_journal looks up each task the journal holds no end for (one record-info
    each, no create), records the end of those that ended in the run's own done-line format
    and saves a success's files; a rerun of the bulk run neither polls nor creates them
    again, and the task still running is the only one looked up next time."""
    journal, dest = tmp_path / "run.jsonl", tmp_path / "videos"
    ids = await stopped_run(server, kie, journal)
    assert set(read_results(journal).unfinished) == {ids[f"scene {i}"] for i in (1, 2, 3)}
    server.complete(ids["scene 1"])
    server.complete(ids["scene 3"])
    creates, polls = server.counts["create"], server.counts["poll"]
    done = await kie.download_journal(journal, dest)
    assert server.counts["create"] == creates == 4
    assert server.counts["poll"] == polls + 3  # one record-info per unfinished task
    assert set(done.ended) == {ids["scene 1"], ids["scene 3"]} and not done.unchecked
    assert {f.task_id for f in done.fetched} == {ids["scene 0"], ids["scene 1"]}
    assert done.results.unfinished == (ids["scene 2"],) and done.ok
    ends = {line["task_id"]: line for line in lines(journal, "done")}
    assert ends[ids["scene 1"]]["status"] == "succeeded"
    assert ends[ids["scene 3"]]["status"] == "failed"
    assert ends[ids["scene 3"]]["error"]["type"] == "TaskFailedError"
    submitted = {line["task_id"]: line["key"] for line in lines(journal, "submitted")}
    assert all(ends[task]["key"] == submitted[task] for task in done.ended)

    polls = server.counts["poll"]
    again = await kie.download_journal(journal, dest)
    assert server.counts["poll"] == polls + 1 and not again.fetched and not again.ended

    server.complete(ids["scene 2"])
    polls = server.counts["poll"]
    async with kie.run_many(requests(4), journal=journal) as bulk:
        rerun = {str(o.request.prompt): o async for o in bulk}
    assert server.counts["create"] == 4
    assert server.counts["poll"] == polls + 1  # only the task that had no end yet
    assert rerun["scene 1"].from_journal and rerun["scene 1"].ok
    assert rerun["scene 3"].from_journal and rerun["scene 3"].kind is OutcomeKind.FAILED
    assert not rerun["scene 2"].from_journal and rerun["scene 2"].ok


async def test_an_unfinished_task_that_cannot_be_looked_up_is_reported(
    server: FakeKieServer,
    kie: KieClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task kie.ai does not know is returned in ``unchecked`` with its TaskNotFoundError
    and stays unfinished; the command names it and exits 1, and needs a key to look it up."""
    journal, dest = tmp_path / "run.jsonl", tmp_path / "videos"
    async with kie.run_many(requests(1), journal=journal) as bulk:
        [_ async for _ in bulk]
    lost = {"event": "submitted", "key": "k-lost", "task_id": "lost-task"}
    with journal.open("a", encoding="utf-8") as out:
        out.write(json.dumps(lost) + "\n")
    done = await kie.download_journal(journal, dest)
    [(task_id, error)] = done.unchecked
    assert task_id == "lost-task" and isinstance(error, TaskNotFoundError)
    assert done.results.unfinished == ("lost-task",) and not done.ok
    assert len(done.fetched) == 1 and server.counts["create"] == 1

    capsys.readouterr()
    assert await cli(server, "download", str(journal), str(dest)) == 2  # no key: it must ask
    assert "no API key" in capsys.readouterr().err
    monkeypatch.setenv("KIE_API_KEY", server.api_key)
    assert await cli(server, "download", str(journal), str(dest)) == 1
    err = capsys.readouterr().err
    assert "lost-task" in err and "could not be looked up" in err and "1 task(s) still" in err


async def test_download_in_a_subprocess_saves_a_stopped_runs_finished_tasks(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """`kie-async download JOURNAL DIR` as a user runs it: after a stopped run it saves the
    files of the tasks that finished since, creates nothing, and a second process, without a
    key, finds nothing left."""
    journal, dest = tmp_path / "run.jsonl", tmp_path / "videos"
    ids = await stopped_run(server, kie, journal)
    for prompt in ("scene 1", "scene 2", "scene 3"):
        server.complete(ids[prompt])
    argv = [sys.executable, "-m", "kie_async", "--base-url", server.url, "download"]
    child = await asyncio.create_subprocess_exec(
        *argv,
        str(journal),
        str(dest),
        env=child_env(KIE_API_KEY=server.api_key),
        stdout=PIPE,
        stderr=PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err
    assert len(out.split()) == 3 and b"2 task(s) found ended since" not in err
    assert b"3 task(s) found ended since" in err
    assert server.counts["create"] == 4 and server.counts["file"] == 3
    child = await asyncio.create_subprocess_exec(
        *argv, str(journal), str(dest), env=child_env(), stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0 and out == b"" and b"nothing to fetch" in err, err
    assert server.counts["file"] == 3
