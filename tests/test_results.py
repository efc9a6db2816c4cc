"""Every paid result saved before it expires: TaskRecord.expires_at, read_results,
KieClient.download_journal and the ``results`` / ``download JOURNAL DIR`` commands, against the
fake kie.ai on loopback (stale links included), with server-side counts of file fetches."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from asyncio.subprocess import PIPE
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from helpers import child_env

from kie_async import (
    ConfigurationError,
    ExtendRequest,
    KieClient,
    PollPolicy,
    RetryPolicy,
    TaskRecord,
    read_results,
)
from kie_async._bulk.journal import Journal
from kie_async._cli import run
from kie_async.testing import FakeKieServer

FAST: dict[str, Any] = {"poll": PollPolicy.zero_wait(), "retry": RetryPolicy.zero_wait()}


def requests(count: int, start: int = 0) -> list[ExtendRequest]:
    return [ExtendRequest(f"src{i}", 0, f"scene {i}") for i in range(start, start + count)]


async def bulk(kie: KieClient, items: list[ExtendRequest], journal: Path) -> dict[str, str]:
    """Run ``items`` with ``journal``; the task id of each by its prompt."""
    async with kie.run_many(items, journal=journal) as run_:
        outcomes = [o async for o in run_]
    assert all(o.ok for o in outcomes)
    return {str(o.request.prompt): str(o.task_id) for o in outcomes}


def fetches(server: FakeKieServer) -> tuple[int, int]:
    """The file requests and download-url requests the server has had."""
    return server.counts["request:file"], server.counts["request:download_url"]


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# -- expires_at ---------------------------------------------------------------------------------


def test_expires_at_is_fourteen_days_after_completion_in_utc() -> None:
    """expires_at is the completion time plus 14 days, aware UTC; a zone-less time is read as
    kie's UTC+8; no completion time (or an unreadable one) gives None."""
    iso = TaskRecord("t", completed_at_raw="2026-01-06T08:17:04Z").expires_at
    assert iso == datetime(2026, 1, 20, 8, 17, 4, tzinfo=timezone.utc)
    assert iso is not None and iso.utcoffset() == timedelta(0)
    naive = TaskRecord("t", completed_at_raw="2026-01-06 08:17:04").expires_at
    assert naive == datetime(2026, 1, 20, 0, 17, 4, tzinfo=timezone.utc)
    epoch = TaskRecord("t", completed_at_raw="1767687424000").expires_at
    assert epoch == datetime(2026, 1, 20, 8, 17, 4, tzinfo=timezone.utc)
    assert TaskRecord("t").expires_at is None
    assert TaskRecord("t", completed_at_raw="soon").expires_at is None
    assert TaskRecord("t", completed_at_raw="9999-12-31T23:00:00Z").expires_at is None


# -- the Python API -----------------------------------------------------------------------------


async def test_saved_missing_and_stale_results_are_reported_and_saved_once(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A journal with saved, missing and stale-link results: read_results lists the missing
    first, download_journal fetches only those (a stale link through download-url) and
    records them, a second call fetches nothing, and a rerun of the bulk run on the journal
    with its saved lines still sends no create."""
    journal, dest = tmp_path / "run.jsonl", tmp_path / "videos"
    first = await bulk(kie, requests(2), journal)
    done = await kie.download_journal(journal, dest)
    assert len(done.fetched) == 2 and done.ok and not done.found
    more = await bulk(kie, requests(3), journal)  # a rerun adding one job: its results missing
    assert server.counts["create"] == 3
    stale = more["scene 2"]
    server.expire_links(stale)
    results = read_results(journal)
    assert [f.task_id for f in results.missing] == [stale]
    assert {f.task_id for f in results.saved} == set(first.values())
    assert all(f.path is not None and f.path.parent == dest.absolute() for f in results.saved)
    [missing] = results.missing
    assert missing.expires_at is not None and missing.expires_at.tzinfo is not None

    files, links = fetches(server)
    done = await kie.download_journal(journal, dest)
    assert [f.task_id for f in done.fetched] == [stale] and done.ok
    assert fetches(server) == (files + 2, links + 1)  # 403, then the fresh link
    assert server.counts["file:403"] == 1
    saved = done.fetched[0].path
    assert saved is not None and saved.read_bytes() == server.file_bytes(stale, "0.mp4")

    before = fetches(server)
    again = await kie.download_journal(journal, dest)
    assert fetches(server) == before  # nothing fetched, not even a HEAD or a fresh link
    assert not again.fetched and not again.found and again.ok
    assert len(again.results.saved) == 3

    async with kie.run_many(requests(3), journal=journal) as run_:
        rerun = [o async for o in run_]
    assert all(o.from_journal and o.ok for o in rerun)
    assert server.counts["create"] == 3


async def test_a_deleted_file_is_fetched_again_and_a_file_on_disk_is_recorded_unfetched(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A saved file deleted since is missing again and fetched again; a file already in the
    directory (a bulk --download) is recorded without a request."""
    journal, dest = tmp_path / "run.jsonl", tmp_path / "videos"
    ids = await bulk(kie, requests(2), journal)
    await kie.download_many([await kie.get_task(ids["scene 0"])], dest)
    files = server.counts["request:file"]
    done = await kie.download_journal(journal, dest)
    assert [f.task_id for f in done.found] == [ids["scene 0"]]
    assert [f.task_id for f in done.fetched] == [ids["scene 1"]]
    assert server.counts["request:file"] == files + 1
    gone = done.fetched[0].path
    assert gone is not None
    gone.unlink()
    results = read_results(journal)
    assert [(f.task_id, f.saved, f.path) for f in results.missing] == [
        (ids["scene 1"], False, gone)
    ]
    again = await kie.download_journal(journal, dest)
    assert [f.task_id for f in again.fetched] == [ids["scene 1"]] and gone.is_file()


async def test_downloads_stay_inside_dest_whatever_the_journal_says(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """Task ids, URLs and saved paths in a journal cannot make a download write outside DIR:
    a hostile id is made a safe name, and a recorded path is only read, never written."""
    record = await (await kie.extend_video("src", prompt="go"))
    url = record.result_urls[0]
    outside = tmp_path / "outside.mp4"
    lines = [
        {"journal": "kie-async", "version": 1},
        {
            "event": "done",
            "key": "k1",
            "task_id": "../../escape/../x",
            "status": "succeeded",
            "result_urls": [url + "?/../../../../evil"],
            "completed": "2026-01-06T08:17:04Z",
        },
        {
            "event": "saved",
            "key": "k1",
            "task_id": "../../escape/../x",
            "index": 0,
            "path": str(outside),
            "size": 4096,
        },
    ]
    work = tmp_path / "work"
    work.mkdir()
    journal = work / "hostile.jsonl"
    journal.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    dest = work / "dest"
    done = await kie.download_journal(journal, dest)
    [file] = done.fetched
    assert done.ok and file.path is not None and file.path.parent == dest.absolute()
    assert file.path.name.startswith("_.._escape_.._x~") and not outside.exists()
    assert files_under(tmp_path) == {"work/hostile.jsonl", f"work/dest/{file.path.name}"}
    assert file.path.read_bytes() == server.file_bytes(record.task_id, "0.mp4")


async def test_a_journal_written_by_0_1_0_is_read_and_saved(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A 0.1.0 journal (no run lines, each done line holding kie's whole record) lists its
    results and downloads them."""
    record = await (await kie.extend_video("src", prompt="go"))
    done_line = {
        "event": "done",
        "key": "sha256:d0eb7b985afc4c98bebdb1c2151d2e4f",
        "task_id": record.task_id,
        "status": "succeeded",
        "at": 1767687424.0,
        "record": {
            "taskId": record.task_id,
            "successFlag": 1,
            "taskType": "mj_video_extend_manual",
            "completeTime": "2026-01-06 08:17:04",
            "resultInfoJson": {"resultUrls": [{"resultUrl": u} for u in record.result_urls]},
        },
    }
    journal = tmp_path / "old.jsonl"
    header = {"journal": "kie-async", "version": 1}
    journal.write_text("".join(json.dumps(x) + "\n" for x in (header, done_line)), "utf-8")
    [file] = read_results(journal).files
    assert (file.task_id, file.saved, file.task_type) == (
        record.task_id,
        False,
        "mj_video_extend_manual",
    )
    assert file.expires_at == datetime(2026, 1, 20, 0, 17, 4, tzinfo=timezone.utc)
    done = await kie.download_journal(journal, tmp_path / "videos")
    assert done.ok and len(done.fetched) == 1


async def test_a_journal_in_use_is_refused_before_anything_is_fetched(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """download_journal takes the journal's lock: while a run (or another download) holds it,
    the call fails at once naming the holder, and fetches nothing; read_results still reads."""
    journal = tmp_path / "run.jsonl"
    await bulk(kie, requests(1), journal)
    holder = Journal(journal)
    holder.open()
    try:
        with pytest.raises(ConfigurationError, match=rf"in use by another run: pid {os.getpid()}"):
            await kie.download_journal(journal, tmp_path / "videos")
        assert len(read_results(journal).missing) == 1
    finally:
        await holder.aclose()
    assert server.counts["request:file"] == 0
    assert not (tmp_path / "videos").exists()


async def test_no_journal_is_a_clear_error_and_creates_nothing(
    kie: KieClient, tmp_path: Path
) -> None:
    """A journal path that is not there is a ConfigurationError; no empty journal appears."""
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ConfigurationError, match="no journal at"):
        await kie.download_journal(missing, tmp_path / "videos")
    with pytest.raises(ConfigurationError, match="cannot read"):
        read_results(missing)
    assert not missing.exists()


async def test_a_cut_last_line_is_left_out_and_the_journal_left_as_it_was(
    kie: KieClient, tmp_path: Path
) -> None:
    """read_results takes no lock and repairs nothing: a line being written is left out."""
    journal = tmp_path / "run.jsonl"
    await bulk(kie, requests(2), journal)
    data = journal.read_bytes() + b'{"event":"done","key":"x","task_'
    journal.write_bytes(data)
    assert len(read_results(journal).files) == 2
    assert journal.read_bytes() == data


# -- the command --------------------------------------------------------------------------------


async def cli(server: FakeKieServer, *argv: str) -> int:
    return await run(["--base-url", server.url, *argv], client_options=FAST)


async def test_results_and_download_commands(
    server: FakeKieServer,
    kie: KieClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`results` lists what is missing, soonest first (and as JSON); `download JOURNAL DIR`
    saves it through a fresh link where one is stale and prints the paths; the second
    `download` fetches nothing; `download TASK_ID DIR` still saves one task."""
    monkeypatch.setenv("KIE_API_KEY", server.api_key)
    journal, dest = tmp_path / "run.jsonl", tmp_path / "videos"
    ids = await bulk(kie, requests(2), journal)
    server.expire_links(ids["scene 1"])
    capsys.readouterr()
    assert await run(["results", str(journal)]) == 0
    out = capsys.readouterr()
    assert out.out.count("missing") == 2
    assert "2 files: 0 saved, 2 not saved; the first expires" in out.out
    assert f"kie-async download {journal} DIR" in out.err
    assert await run(["results", str(journal), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["saved"], report["missing"]) == (0, 2)
    assert {f["task_id"] for f in report["files"]} == set(ids.values())
    assert all(f["expires_at"].endswith("+00:00") for f in report["files"])

    assert await cli(server, "download", str(journal), str(dest)) == 0
    out = capsys.readouterr()
    assert sorted(Path(line).name for line in out.out.split()) == sorted(
        f"{task}_0.mp4" for task in ids.values()
    )
    assert "2 fetched, 0 already in" in out.err
    assert server.counts["file:403"] == 1 and server.counts["request:download_url"] == 1
    before = server.counts["request:file"]
    assert await cli(server, "download", str(journal), str(dest)) == 0
    out = capsys.readouterr()
    assert out.out == "" and "nothing to fetch: the journal's 2 file(s) are all saved" in out.err
    assert server.counts["request:file"] == before
    assert await run(["results", str(journal)]) == 0
    assert "2 saved, 0 not saved" in capsys.readouterr().out

    one = tmp_path / "one"
    assert await cli(server, "download", ids["scene 0"], str(one)) == 0
    assert capsys.readouterr().out.strip() == str(one / f"{ids['scene 0']}_0.mp4")


async def test_download_tells_a_journal_from_a_task_id(
    server: FakeKieServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A first argument that looks like a path but is not a file is a usage error (exit 2),
    never sent to kie.ai as a task id; `results` on a file that is not a journal is exit 2."""
    monkeypatch.setenv("KIE_API_KEY", server.api_key)
    assert await cli(server, "download", str(tmp_path / "typo.jsonl"), str(tmp_path)) == 2
    assert "JOURNAL: no such file" in capsys.readouterr().err
    assert await cli(server, "download", str(tmp_path), str(tmp_path / "d")) == 2
    assert "is not a file" in capsys.readouterr().err
    assert server.counts["poll"] == 0
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n", encoding="utf-8")
    assert await run(["results", str(bad)]) == 2
    assert "not JSON; is it a kie-async journal?" in capsys.readouterr().err
    assert await cli(server, "download", str(bad), str(tmp_path / "d")) == 2
    assert server.counts["request:file"] == 0


async def test_two_download_processes_on_one_journal_fetch_each_file_once(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """Two `kie-async download JOURNAL DIR` processes started together: one holds the
    journal's lock, the other is refused (exit 2) or finds everything saved; each file is
    fetched once (a server count), and the journal stays whole, one saved line per file."""
    journal, dest = tmp_path / "run.jsonl", tmp_path / "videos"
    await bulk(kie, requests(6), journal)
    env = child_env(KIE_API_KEY=server.api_key)
    argv = [sys.executable, "-m", "kie_async", "--base-url", server.url, "download"]
    children = [
        await asyncio.create_subprocess_exec(
            *argv, str(journal), str(dest), env=env, stdout=PIPE, stderr=PIPE
        )
        for _ in range(2)
    ]
    ended = await asyncio.wait_for(asyncio.gather(*(child.communicate() for child in children)), 60)
    statuses = sorted(child.returncode or 0 for child in children)
    assert statuses in ([0, 0], [0, 2]), ended
    if statuses == [0, 2]:
        assert any(b"in use by another run" in err for _, err in ended)
    assert server.counts["file"] == 6
    lines = [json.loads(line) for line in journal.read_text("utf-8").splitlines()]
    assert sum(line.get("event") == "saved" for line in lines) == 6
    assert len(read_results(journal).saved) == 6


async def test_a_file_that_cannot_be_fetched_is_reported_and_the_others_saved(
    server: FakeKieServer,
    kie: KieClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A result kie.ai no longer serves (404, and 404 again through a fresh link) is returned
    in ``failed`` with its DownloadError, the other files are saved, and the command exits 1
    naming it; the journal lists it as still missing."""
    journal, dest = tmp_path / "run.jsonl", tmp_path / "videos"
    await bulk(kie, requests(1), journal)
    gone = {
        "event": "done",
        "key": "k-gone",
        "task_id": "deleted-task",
        "status": "succeeded",
        "result_urls": [f"{server.url}/files/deleted-task/0.mp4"],
    }
    with journal.open("a", encoding="utf-8") as out:
        out.write(json.dumps(gone) + "\n")
    done = await kie.download_journal(journal, dest)
    [(file, error)] = done.failed
    assert file.task_id == "deleted-task" and error.http_status == 404 and not done.ok
    assert len(done.fetched) == 1
    assert [f.task_id for f in done.results.missing] == ["deleted-task"]
    monkeypatch.setenv("KIE_API_KEY", server.api_key)
    capsys.readouterr()
    assert await cli(server, "download", str(journal), str(dest)) == 1
    err = capsys.readouterr().err
    assert "error: " in err and "deleted-task" in err and "0 fetched" in err and "1 failed" in err
