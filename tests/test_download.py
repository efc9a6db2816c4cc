"""Saving result files over loopback: atomic, resumable, checked, and never leaking the key."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kie_async import (
    DownloadError,
    KieClient,
    PollPolicy,
    RetryPolicy,
    TaskRecord,
    ValidationError,
)
from kie_async._cli import run
from kie_async._download.rules import file_name
from kie_async._protocol.wire import parse_record
from kie_async.testing import FakeKieServer, Faults, TaskScript, fast_client


async def finished(kie: KieClient, server: FakeKieServer, videos: int = 2) -> TaskRecord:
    """Create a task with ``videos`` results and wait for it."""
    server.script_next(TaskScript(videos=videos))
    handle = await kie.extend_video("src", prompt="go")
    return await handle.wait()


def names(directory: Path) -> list[str]:
    """Every file name in ``directory``, sorted."""
    return sorted(p.name for p in directory.iterdir())


def leftovers(directory: Path) -> list[str]:
    """Temporary files left in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


@pytest.fixture(name="no_retry")
async def _no_retry(server: FakeKieServer) -> AsyncIterator[KieClient]:
    """A zero-wait client that never retries, so one fault is final."""
    async with fast_client(server, retry=RetryPolicy.zero_wait(max_retries=0)) as client:
        yield client


def test_file_names_are_safe_and_keep_the_extension() -> None:
    """Names are <task>_<i><ext>, with unsafe characters replaced and .mp4 as the fallback."""
    assert file_name("abc123", 0, "https://cdn.x/r/v.MP4?sig=1") == "abc123_0.mp4"
    assert file_name("a:b/c", 2, "https://cdn.x/r/v.webm").startswith("a_b_c~")
    assert file_name("a:b/c", 2, "https://cdn.x/r/v.webm").endswith("_2.webm")
    assert file_name("..", 1, "https://cdn.x/r/noext").startswith("task~")
    assert file_name("t", 0, "https://cdn.x/r/v.tar.gz%2F..%2Fx") == "t_0.mp4"
    assert file_name("t", 3, "http://[bad") == "t_3.mp4"


@pytest.mark.parametrize(
    "ids",
    [
        ("a:b", "a_b"),
        ("a/b", "a_b", "a:b", "a b"),
        ("AB", "ab"),
        (".x", "x"),
        ("x" * 130, "x" * 120),
        ("x" * 130, "x" * 131),
    ],
)
def test_file_names_are_unique_per_task_id(ids: tuple[str, ...]) -> None:
    """Distinct task ids never share a file name (not even case-insensitively), and the same
    id always gets the same name, so reruns still find their complete files."""
    names = [file_name(task_id, 0, "https://cdn.x/v.mp4") for task_id in ids]
    assert len({name.lower() for name in names}) == len(ids)
    assert names == [file_name(task_id, 0, "https://cdn.x/v.mp4") for task_id in ids]
    assert all(len(name) < 160 and "/" not in name for name in names)


async def test_ids_that_sanitise_alike_get_separate_files(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """Two finished tasks "a:b" and "a_b" both get their own file with their own bytes, and a
    rerun skips both."""
    first = await finished(kie, server, videos=1)
    urls = {"a:b": first.result_urls[0]}
    second = await finished(kie, server, videos=1)
    urls["a_b"] = second.result_urls[0]
    records = [
        parse_record({"taskId": tid, "successFlag": 1, "resultInfoJson": [url]})
        for tid, url in urls.items()
    ]
    paths = await kie.download_many(records, tmp_path)
    assert len(set(paths)) == 2
    assert paths[0].read_bytes() == server.file_bytes(first.task_id, "0.mp4")
    assert paths[1].read_bytes() == server.file_bytes(second.task_id, "0.mp4")
    gets = server.counts["request:file"]
    assert await kie.download_many(records, tmp_path) == paths
    assert server.counts["request:file"] == gets


async def test_download_saves_every_result_file(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """Each result URL is saved as <task_id>_<i>.mp4 with the served bytes, no temp file left."""
    record = await finished(kie, server, videos=2)
    paths = await kie.download(record, tmp_path / "out")
    assert [p.name for p in paths] == [f"{record.task_id}_0.mp4", f"{record.task_id}_1.mp4"]
    for i, path in enumerate(paths):
        assert path.read_bytes() == server.file_bytes(record.task_id, f"{i}.mp4")
    assert leftovers(tmp_path / "out") == []


async def test_rerun_skips_complete_files(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A second download of the same record sends no GET: complete files are skipped."""
    record = await finished(kie, server, videos=2)
    first = await kie.download(record, tmp_path)
    gets = server.counts["request:file"]
    assert gets == 2
    second = await kie.download(record, tmp_path)
    assert second == first
    assert server.counts["request:file"] == gets


async def test_connection_dropped_mid_body_leaves_nothing_and_rerun_completes(
    server: FakeKieServer, no_retry: KieClient, tmp_path: Path
) -> None:
    """A body cut short (Content-Length larger than what came, then the connection closed) is a
    DownloadError with no final file and no temp file; a rerun then saves the whole file."""
    server.file_size = 300_000
    record = await finished(no_retry, server, videos=1)
    server.fail_next("file", "truncated")
    with pytest.raises(DownloadError) as caught:
        await no_retry.download(record, tmp_path)
    assert caught.value.task_id == record.task_id
    target = tmp_path / f"{record.task_id}_0.mp4"
    assert not target.exists()
    assert leftovers(tmp_path) == []
    [path] = await no_retry.download(record, tmp_path)
    assert path.read_bytes() == server.file_bytes(record.task_id, "0.mp4")


async def test_short_body_is_retried_by_the_retry_policy(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """With retries on, one truncated answer is retried from scratch and the file is whole."""
    server.file_size = 200_000
    record = await finished(kie, server, videos=1)
    server.fail_next("file", "truncated")
    server.fail_next("file", "html_502")
    [path] = await kie.download(record, tmp_path)
    assert path.read_bytes() == server.file_bytes(record.task_id, "0.mp4")
    assert server.counts["request:file"] == 3


async def test_cancelled_mid_stream_leaves_no_file(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A download cancelled while the body is streaming removes its temp file, leaves no final
    file and no task of its own running; the rerun completes it."""
    server.file_size = 1_000_000
    record = await finished(kie, server, videos=1)
    server.fail_next("file", "hang")
    part = tmp_path / f".{record.task_id}_0.mp4.part"
    before = asyncio.all_tasks()
    downloading = asyncio.ensure_future(kie.download(record, tmp_path))
    for _ in range(500):
        if part.exists() and part.stat().st_size > 0:
            break
        await asyncio.sleep(0.01)
    assert part.stat().st_size > 0
    downloading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await downloading
    assert names(tmp_path) == []
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert [t for t in left if "RequestHandler" not in repr(t.get_coro())] == []
    [path] = await kie.download(record, tmp_path)
    assert path.read_bytes() == server.file_bytes(record.task_id, "0.mp4")
    assert leftovers(tmp_path) == []


async def test_stale_temp_file_of_a_killed_run_is_replaced(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A temp file left by a killed process is overwritten, not trusted, and gone afterwards."""
    record = await finished(kie, server, videos=1)
    (tmp_path / f".{record.task_id}_0.mp4.part").write_bytes(b"half a video from a dead run")
    [path] = await kie.download(record, tmp_path)
    assert path.read_bytes() == server.file_bytes(record.task_id, "0.mp4")
    assert leftovers(tmp_path) == []


async def test_expired_url_is_refreshed_via_download_url(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A direct link answering 403 is replaced by a fresh download-url link, which works."""
    record = await finished(kie, server, videos=1)
    server.files_expired = True
    [path] = await kie.download(record, tmp_path)
    assert path.read_bytes() == server.file_bytes(record.task_id, "0.mp4")
    assert server.counts["file:403"] == 1
    assert server.counts["request:download_url"] == 1
    file_gets = [r for r in server.requests if r.path.startswith("/files/")]
    assert "token" in file_gets[-1].query


async def test_dead_link_without_fresh_one_is_a_download_error(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A 404 link that kie.ai cannot refresh (not its URL) raises DownloadError, saving nothing."""
    url = f"{server.url}/gone/video.mp4"
    record = parse_record({"taskId": "t-gone", "successFlag": 1, "resultInfoJson": [url]})
    with pytest.raises(DownloadError) as caught:
        await kie.download(record, tmp_path)
    assert caught.value.http_status == 404
    assert "fresh" in str(caught.value)
    assert names(tmp_path) == []


async def test_api_key_is_never_sent_to_the_file_host(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """File GETs carry the User-Agent but no Authorization header, even on the refreshed link."""
    record = await finished(kie, server, videos=2)
    server.files_expired = True
    await kie.download(record, tmp_path)
    file_gets = [r for r in server.requests if r.path.startswith("/files/")]
    assert len(file_gets) == 4
    for request in file_gets:
        assert "Authorization" not in request.headers
        assert server.api_key not in str(request.headers)
        assert request.headers["User-Agent"].startswith("kie-async/")
    api_calls = [r for r in server.requests if r.path.startswith("/api/")]
    assert all(r.headers["Authorization"] == f"Bearer {server.api_key}" for r in api_calls)


async def test_download_many_bounds_concurrency(server: FakeKieServer, tmp_path: Path) -> None:
    """download_many streams at most ``concurrency`` files at once, and returns every path."""
    async with fast_client(server) as kie:
        records = [await finished(kie, server, videos=2) for _ in range(3)]
        server.faults = Faults(slow=1.0, slow_seconds=0.1, endpoints=frozenset({"file"}))
        paths = await kie.download_many(records, tmp_path, concurrency=2)
    assert len(paths) == 6
    assert len({p.name for p in paths}) == 6
    assert server.peak_file_streams == 2


async def test_download_many_reports_failures_after_finishing_the_rest(
    server: FakeKieServer, no_retry: KieClient, tmp_path: Path
) -> None:
    """One failing file does not stop the others; the error is raised once they are saved."""
    good = await finished(no_retry, server, videos=2)
    bad = parse_record(
        {"taskId": "t-bad", "successFlag": 1, "resultInfoJson": [f"{server.url}/nope/x.mp4"]}
    )
    with pytest.raises(DownloadError):
        await no_retry.download_many([bad, good], tmp_path, concurrency=1)
    assert names(tmp_path) == [
        f"{good.task_id}_0.mp4",
        f"{good.task_id}_1.mp4",
    ]


async def test_record_without_results_is_refused_before_any_request(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A record with no result URLs raises DownloadError and nothing is fetched."""
    record = parse_record({"taskId": "t-run", "successFlag": 0})
    with pytest.raises(DownloadError, match="no result files"):
        await kie.download_many([record], tmp_path)
    with pytest.raises(ValidationError):
        await kie.download_many([record], tmp_path, concurrency=0)
    assert server.counts["request:file"] == 0


async def test_a_file_in_place_of_the_directory_is_named_as_such(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A destination that is a file raises DownloadError saying it is not a directory, with no
    empty URL in the message ("download of  to ..."), and no file is fetched; a record with no
    results reads as cleanly."""
    record = await finished(kie, server)
    in_the_way = tmp_path / "videos"
    in_the_way.write_text("not a directory")
    with pytest.raises(DownloadError) as caught:
        await kie.download(record, in_the_way)
    assert (
        str(caught.value) == f"download failed: cannot save files in {in_the_way}: not a directory"
    )
    assert caught.value.path == str(in_the_way)
    assert server.counts["request:file"] == 0
    empty = parse_record({"taskId": "t-run", "successFlag": 0})
    with pytest.raises(DownloadError) as caught:
        await kie.download(empty, tmp_path)
    assert (
        str(caught.value) == "download failed: task t-run has no result files (status generating)"
    )


async def test_memory_stays_flat_for_a_large_file(tmp_path: Path) -> None:
    """A 16 MiB file is saved with well under 4 MiB of peak Python memory (64 KiB chunks)."""
    size = 16 * 1024 * 1024
    async with FakeKieServer(file_size=size) as server, fast_client(server) as kie:
        record = await finished(kie, server, videos=1)
        tracemalloc.start()
        try:
            [path] = await kie.download(record, tmp_path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert path.stat().st_size == size
    assert peak < 4 * 1024 * 1024


def test_download_error_hides_the_links_token() -> None:
    """str(DownloadError) shows the URL without its query (a temporary token)."""
    error = DownloadError(url="https://cdn.x/v.mp4?token=secret", reason="HTTP 403", path="/d/v")
    assert "secret" not in str(error)
    assert "https://cdn.x/v.mp4" in str(error)


# -- the command line ---------------------------------------------------------------------------


FAST_CLI: dict[str, Any] = {"poll": PollPolicy.zero_wait(), "retry": RetryPolicy.zero_wait()}


@pytest.fixture(name="key_env")
def _key_env(monkeypatch: pytest.MonkeyPatch, server: FakeKieServer) -> None:
    """The fake server's key in KIE_API_KEY, as a user would set it."""
    monkeypatch.setenv("KIE_API_KEY", server.api_key)


@pytest.mark.usefixtures("key_env")
async def test_cli_download_saves_a_tasks_videos(
    server: FakeKieServer, kie: KieClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kie-async download TASK_ID DIR`` saves every video and prints each path."""
    record = await finished(kie, server, videos=2)
    out = tmp_path / "videos"
    argv = ["--base-url", server.url, "download", record.task_id, str(out)]
    assert await run(argv, client_options=FAST_CLI) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / f"{record.task_id}_{i}.mp4") for i in range(2)]
    assert (out / f"{record.task_id}_1.mp4").read_bytes() == server.file_bytes(
        record.task_id, "1.mp4"
    )


@pytest.mark.usefixtures("key_env")
async def test_cli_download_of_unfinished_task_exits_1(
    server: FakeKieServer, kie: KieClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Downloading a task that is still generating exits 1 with one error line, saving nothing."""
    server.script_next(TaskScript(seconds=60))
    handle = await kie.extend_video("src", prompt="go")
    argv = ["--base-url", server.url, "download", handle.task_id, str(tmp_path)]
    assert await run(argv, client_options=FAST_CLI) == 1
    assert "nothing to download" in capsys.readouterr().err
    assert names(tmp_path) == []


@pytest.mark.usefixtures("key_env")
async def test_cli_bulk_download_saves_succeeded_jobs_and_rerun_fetches_nothing(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``bulk --download DIR`` saves each succeeded job's videos; a rerun with the journal
    re-saves nothing (no file GET) and still exits 0."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        "\n".join(f'{{"task_id": "src", "index": {i}, "prompt": "shot {i}"}}' for i in range(3))
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "videos"
    argv = [
        "--base-url",
        server.url,
        "bulk",
        str(jobs),
        "--journal",
        str(tmp_path / "journal.jsonl"),
        "--download",
        str(out),
    ]
    assert await run(argv, client_options=FAST_CLI) == 0
    assert len(names(out)) == 3
    assert "downloads: 3 file(s)" in capsys.readouterr().err
    gets = server.counts["request:file"]
    assert gets == 3
    assert await run(argv, client_options=FAST_CLI) == 0
    assert server.counts["request:file"] == gets
    assert server.counts["create"] == 3


@pytest.mark.parametrize("dest_dir", [None, 5, b"videos"])
async def test_a_dest_dir_that_is_not_a_path_is_a_validation_error(
    server: FakeKieServer, kie: KieClient, dest_dir: object
) -> None:
    """download/download_many with a dest_dir that is not a str/PathLike raise a ValidationError
    naming ``dest_dir`` (not a raw TypeError from Path), and no file is fetched."""
    record = await finished(kie, server)
    with pytest.raises(ValidationError, match=r"^dest_dir: must be a path"):
        await kie.download(record, dest_dir)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"^dest_dir: must be a path"):
        await kie.download_many([record], dest_dir)  # type: ignore[arg-type]
    assert server.counts["request:file"] == 0


@pytest.mark.usefixtures("key_env")
@pytest.mark.parametrize("where", ["file", "under_a_file", "not_writable"])
async def test_cli_download_checks_dir_before_asking_for_the_record(
    server: FakeKieServer,
    kie: KieClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """``kie-async download TASK DIR`` with a DIR that cannot hold files (a file in its place
    or above it, not writable) exits 2 naming DIR, without asking kie.ai for the record."""
    record = await finished(kie, server)
    in_the_way = tmp_path / "videos"
    in_the_way.write_text("not a directory")
    target = {"file": in_the_way, "under_a_file": in_the_way / "sub"}.get(where, tmp_path / "new")
    if where == "not_writable":  # root may write anywhere: make the check see a read-only dir
        monkeypatch.setattr(os, "access", lambda path, mode: False)
    before = len(server.requests)
    argv = ["--base-url", server.url, "download", record.task_id, str(target)]
    assert await run(argv, client_options=FAST_CLI) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: DIR: cannot save files in {target}: "), err
    assert len(server.requests) == before


@pytest.mark.usefixtures("key_env")
@pytest.mark.parametrize("where", ["file", "not_writable"])
async def test_cli_bulk_download_checks_dir_before_any_create(
    server: FakeKieServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """``bulk --download DIR`` with a DIR that cannot hold files exits 2 naming the option
    before a single create is sent: no credits are spent on videos that could not be saved."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"task_id": "src", "index": 0, "prompt": "shot"}\n', encoding="utf-8")
    in_the_way = tmp_path / "videos"
    in_the_way.write_text("not a directory")
    target = in_the_way if where == "file" else tmp_path / "new"
    if where == "not_writable":  # root may write anywhere: make the check see a read-only dir
        monkeypatch.setattr(os, "access", lambda path, mode: False)
    argv = ["--base-url", server.url, "bulk", str(jobs), "--download", str(target)]
    assert await run(argv, client_options=FAST_CLI) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --download: cannot save files in {target}: "), err
    assert server.counts["request:create"] == 0
