"""The CLI's generate, upscale and vary commands, and jobs files of every kind and of chains."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kie_async import (
    Chain,
    ExtendRequest,
    ExtendStep,
    GenerateRequest,
    PollPolicy,
    RetryPolicy,
    UpscaleRequest,
    UpscaleStep,
    VaryRequest,
)
from kie_async._cli import run
from kie_async._cli.jobs import parse_jobs
from kie_async.testing import FakeKieServer

KEY = "kie-sk-kinds-DISTINCTIVE-0042"
FAST: dict[str, Any] = {"poll": PollPolicy.zero_wait(), "retry": RetryPolicy.zero_wait()}
FRAME = "https://example.com/f.png"


@pytest.fixture(name="server")
async def _server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeKieServer]:
    """A fake kie.ai, its key in KIE_API_KEY as a user would set it."""
    monkeypatch.setenv("KIE_API_KEY", KEY)
    async with FakeKieServer(api_key=KEY) as server:
        yield server


async def cli(server: FakeKieServer, *argv: str) -> int:
    return await run(["--base-url", server.url, *argv], client_options=FAST)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- the commands ---------------------------------------------------------------------------------


async def test_generate_prints_the_task_id_and_sends_the_documented_body(
    server: FakeKieServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """generate sends the flags as kie's camelCase body and prints only the new task id."""
    args = ("--type", "mj_video", "--file-url", FRAME, "--batch-size", "2", "--motion", "low")
    assert await cli(server, "generate", "waves", *args, "--watermark", "acme") == 0
    [task_id] = lines(capsys.readouterr().out)
    assert task_id in server.tasks
    assert server.creates == [
        {
            "taskType": "mj_video",
            "prompt": "waves",
            "fileUrls": [FRAME],
            "videoBatchSize": 2,
            "motion": "low",
            "waterMark": "acme",
        }
    ]
    assert server.counts["create:generate"] == 1


async def test_generate_with_wait_prints_the_result(
    server: FakeKieServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """generate --wait prints the task id, then its status and result URLs."""
    assert await cli(server, "generate", "a cat", "--aspect-ratio", "16:9", "--wait") == 0
    out = capsys.readouterr().out
    assert "status:" in out and "result:" in out
    assert server.creates[0]["aspectRatio"] == "16:9"


@pytest.mark.parametrize(("command", "kind"), [("upscale", "upscale"), ("vary", "vary")])
async def test_image_actions_send_the_task_and_image_index(
    server: FakeKieServer, capsys: pytest.CaptureFixture[str], command: str, kind: str
) -> None:
    """upscale and vary send taskId and imageIndex, print the task id, and wait with --wait."""
    assert await cli(server, command, "img0", "--index", "2") == 0
    [task_id] = lines(capsys.readouterr().out)
    assert task_id in server.tasks
    assert server.creates == [{"taskId": "img0", "imageIndex": 2}]
    assert await cli(server, command, "img0", "--index", "1", "--wait") == 0
    assert "result:" in capsys.readouterr().out
    assert server.counts[f"create:{kind}"] == 2


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("generate", "a cat", "--type", "mj_video"), "--file-url: mj_video needs exactly one"),
        (("generate", "a cat", "--speed", "warp"), "--speed"),
        (("generate", "a cat", "--variety", "7"), "--variety"),
        (("generate", "a cat", "--batch-size", "2"), "--batch-size: is for video only"),
        (("generate", "   "), "prompt"),
        (("upscale", "img0", "--index", "4"), "--index"),
        (("vary", "not a task id!", "--index", "0"), "TASK_ID"),
    ],
)
async def test_bad_input_exits_2_and_sends_nothing(
    server: FakeKieServer, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], says: str
) -> None:
    """A request the SDK refuses is one error line naming the field, exit 2, and no request."""
    assert await cli(server, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and "Traceback" not in err
    assert sum(count for name, count in server.counts.items() if name.startswith("request:")) == 0


async def test_image_actions_require_an_index(
    server: FakeKieServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """upscale without --index is a usage error (exit 2): which image is not guessed."""
    assert await cli(server, "upscale", "img0") == 2
    assert "--index" in capsys.readouterr().err
    assert server.counts["create"] == 0


# -- jobs files -----------------------------------------------------------------------------------


def test_jobs_file_lines_of_every_kind_become_their_requests() -> None:
    """A line without a kind is an extension (as before), and each kind builds its class."""
    text = "\n".join(
        json.dumps(line)
        for line in [
            {"task_id": "v1", "index": 1, "prompt": "on"},
            {"kind": "extend", "task_id": "v1", "index": 0},
            {"kind": "generate", "task_type": "mj_txt2img", "prompt": "a cat", "version": "7"},
            {"kind": "upscale", "task_id": "i1", "index": 2, "key": "u"},
            {"kind": "vary", "task_id": "i1", "index": 0},
        ]
    )
    jobs, errors = parse_jobs(text)
    assert errors == []
    assert [job.request for job in jobs] == [
        ExtendRequest("v1", 1, "on"),
        ExtendRequest("v1", 0),
        GenerateRequest("mj_txt2img", "a cat", version="7"),
        UpscaleRequest("i1", 2, key="u"),
        VaryRequest("i1", 0),
    ]


def test_jobs_file_chain_line_becomes_a_chain() -> None:
    """A chain line's first step is a request, its later steps take the step before's output."""
    line = {
        "kind": "chain",
        "key": "c1",
        "steps": [
            {"kind": "generate", "task_type": "mj_txt2img", "prompt": "a cat"},
            {"kind": "upscale", "index": 2},
        ],
    }
    video = {
        "kind": "chain",
        "steps": [
            {"kind": "generate", "task_type": "mj_video", "prompt": "w", "file_urls": [FRAME]},
            {"index": 0, "prompt": "one"},
            {"kind": "extend", "index": 1},
        ],
    }
    jobs, errors = parse_jobs(json.dumps(line) + "\n" + json.dumps(video))
    assert errors == []
    assert jobs[0].request == Chain(
        GenerateRequest("mj_txt2img", "a cat"), UpscaleStep(2), key="c1"
    )
    assert jobs[1].request == Chain(
        GenerateRequest("mj_video", "w", file_urls=[FRAME]), ExtendStep(0, "one"), ExtendStep(1)
    )


def test_jobs_file_refuses_bad_lines_of_every_kind_with_line_numbers() -> None:
    """Every bad line is refused with its number and field, whatever its kind; good lines of
    the same file are not reported."""
    bad = [
        {"kind": "paint", "task_id": "x", "index": 0},
        {"kind": "generate", "prompt": "no type"},
        {"kind": "generate", "task_type": "mj_txt2img", "prompt": "x", "ow": 5},
        {"kind": "upscale", "task_id": "i1", "index": 9},
        {"kind": "vary", "task_id": "i1", "index": 0, "prompt": "no prompts here"},
        {
            "kind": "chain",
            "steps": [{"kind": "generate", "task_type": "mj_txt2img", "prompt": "a"}],
        },
        {
            "kind": "chain",
            "steps": [
                {"kind": "generate", "task_type": "mj_txt2img", "prompt": "a"},
                {"kind": "extend", "index": 0},
            ],
        },
        {
            "kind": "chain",
            "steps": [
                {"kind": "upscale", "task_id": "i1", "index": 0},
                {"kind": "vary", "task_id": "i2", "index": 0},
                {"kind": "vary", "index": 7},
            ],
        },
        {"kind": "chain", "steps": "generate then extend"},
        {"kind": "chain", "steps": [{"kind": "chain", "steps": []}, {"index": 0}]},
    ]
    text = "\n".join([json.dumps({"task_id": "ok", "index": 0}), *map(json.dumps, bad)])
    jobs, errors = parse_jobs(text)
    assert len(jobs) == 1
    found = {(e.line, e.field) for e in errors}
    assert (2, "kind") in found
    assert (3, "task_type") in found
    assert (4, "ow") in found
    assert (5, "index") in found
    assert (6, "prompt") in found
    assert (7, "steps") in found
    assert (8, "steps[1]") in found
    assert (9, "steps[1].task_id") in found and (9, "steps[2].index") in found
    assert (10, "steps") in found
    assert (11, "steps[0].kind") in found
    assert {e.line for e in errors} == set(range(2, 12))
    assert all(str(e).startswith(f"line {e.line}: ") for e in errors)


async def test_bulk_runs_a_mixed_jobs_file_and_writes_each_kind(
    server: FakeKieServer, tmp_path: Path
) -> None:
    """bulk runs every kind and a chain from one file; the results name each request's kind
    and a chain's step tasks."""
    jobs = tmp_path / "jobs.jsonl"
    chain = {
        "kind": "chain",
        "steps": [
            {"kind": "generate", "task_type": "mj_video", "prompt": "w", "file_urls": [FRAME]},
            {"index": 0, "prompt": "one"},
        ],
    }
    items = [
        {"task_id": "v1", "index": 0},
        {"kind": "generate", "task_type": "mj_txt2img", "prompt": "a cat"},
        {"kind": "upscale", "task_id": "i1", "index": 2},
        {"kind": "vary", "task_id": "i1", "index": 1},
        chain,
    ]
    jobs.write_text("\n".join(map(json.dumps, items)) + "\n")
    out = tmp_path / "results.jsonl"
    assert await cli(server, "bulk", str(jobs), "--out", str(out)) == 0
    results = sorted(
        (json.loads(line) for line in out.read_text().splitlines()), key=lambda r: r["line"]
    )
    assert [r["kind"] for r in results] == ["succeeded"] * 5
    assert results[0]["request"]["task_id"] == "v1"  # an extension's, as before
    assert [r["request"].get("kind") for r in results[1:4]] == ["generate", "upscale", "vary"]
    # Each result's request is a jobs-file line making the same job again.
    again, errors = parse_jobs("\n".join(json.dumps(r["request"]) for r in results))
    assert errors == []
    assert [job.request for job in again] == [
        job.request for job in parse_jobs(jobs.read_text())[0]
    ]
    steps = results[4]["steps"]
    assert [s["kind"] for s in steps] == ["succeeded", "succeeded"]
    assert results[4]["task_id"] == steps[1]["task_id"]
    assert server.counts["create:generate"] == 2 and server.counts["create:extend"] == 2
    assert server.counts["create:upscale"] == 1 and server.counts["create:vary"] == 1


async def test_bulk_with_a_bad_chain_line_sends_nothing(
    server: FakeKieServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One bad step anywhere in the file: every problem printed with its line, exit 2, no create."""
    jobs = tmp_path / "jobs.jsonl"
    bad_chain = {"kind": "chain", "steps": [{"task_id": "v1", "index": 0}, {"index": 5}]}
    jobs.write_text(json.dumps({"task_id": "v1", "index": 0}) + "\n" + json.dumps(bad_chain))
    assert await cli(server, "bulk", str(jobs)) == 2
    err = capsys.readouterr().err
    assert "line 2: steps[1].index" in err and "nothing was submitted" in err
    assert server.counts["create"] == 0


async def test_bulk_reports_a_refused_re_extension_as_a_failed_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server refusing to extend an extension fails that chain's line with kie's reason,
    exit status 1; the steps before it are in the results file with their task ids."""
    monkeypatch.setenv("KIE_API_KEY", KEY)
    jobs = tmp_path / "jobs.jsonl"
    chain = {
        "kind": "chain",
        "steps": [
            {"kind": "generate", "task_type": "mj_video", "prompt": "w", "file_urls": [FRAME]},
            {"index": 0, "prompt": "one"},
            {"index": 0, "prompt": "two"},
        ],
    }
    jobs.write_text(json.dumps(chain) + "\n")
    out = tmp_path / "results.jsonl"
    async with FakeKieServer(api_key=KEY, extend_extensions=False) as server:
        assert await cli(server, "bulk", str(jobs), "--out", str(out)) == 1
    printed = capsys.readouterr().out
    assert "line 1: failed:" in printed and "cannot be extended again" in printed
    [result] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [s["kind"] for s in result["steps"]] == ["succeeded", "succeeded", "failed"]
    assert all(s["task_id"] for s in result["steps"][:2]) and result["steps"][2]["task_id"] is None
    assert server.counts["create:extend"] == 1


@pytest.mark.parametrize(
    "argv",
    [
        ("extend", "src", "--prompt", "go"),
        ("generate", "a cat"),
        ("upscale", "img0", "--index", "1"),
        ("vary", "img0", "--index", "1"),
    ],
)
async def test_timeout_without_wait_is_a_usage_error_before_any_create(
    server: FakeKieServer, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    """``--timeout`` without ``--wait`` exits 2 naming both flags, and no create is sent."""
    assert await cli(server, *argv, "--timeout", "5") == 2
    assert "error: --timeout: only with --wait" in capsys.readouterr().err
    assert server.requests == []
    assert await cli(server, *argv, "--timeout", "5", "--wait") == 0
