"""run_many and chains: any mix of kinds in one bulk run, chains run step by step, each step
journaled, resumed after a kill without paying twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kie_async import (
    Chain,
    ExtendOutcome,
    ExtendRequest,
    ExtendStep,
    GenerateRequest,
    KieClient,
    OutcomeKind,
    Progress,
    TaskKind,
    UpscaleRequest,
    UpscaleStep,
    ValidationError,
    VaryRequest,
    VaryStep,
)
from kie_async.testing import FakeKieServer, Faults, TaskScript, fast_client

FRAME = "https://example.com/frame.png"


def video_chain(*prompts: str, key: str | None = None) -> Chain:
    return Chain(
        GenerateRequest.video("a lighthouse", image_url=FRAME, batch_size=2),
        *(ExtendStep(0, prompt) for prompt in prompts),
        key=key,
    )


async def collect(kie: KieClient, items: list[Any], **kwargs: Any) -> list[ExtendOutcome[Any]]:
    return [o async for o in kie.run_many(items, **kwargs)]


def journal_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- building chains ------------------------------------------------------------------------------


def test_chain_refuses_a_step_that_cannot_take_the_output_before_it() -> None:
    """An extension of images or an upscale of a video is refused when the chain is built."""
    with pytest.raises(ValidationError, match=r"steps\[1\].*takes a video.*makes images"):
        Chain(GenerateRequest.image("a cat"), ExtendStep(0, "go"))
    with pytest.raises(ValidationError, match=r"steps\[2\].*takes an image.*makes videos"):
        Chain(GenerateRequest.video("w", image_url=FRAME), ExtendStep(0), UpscaleStep(1))
    with pytest.raises(ValidationError, match="at least one step"):
        Chain(GenerateRequest.image("a cat"))
    with pytest.raises(ValidationError, match="must be an ExtendStep"):
        Chain(GenerateRequest.image("a cat"), UpscaleRequest("t1", 0))  # type: ignore[arg-type]


def test_steps_validate_their_fields_when_built() -> None:
    """A step's bad index or a blank manual prompt is refused before anything runs."""
    with pytest.raises(ValidationError, match="index"):
        ExtendStep(9, "go")
    with pytest.raises(ValidationError, match="prompt"):
        ExtendStep(0, "  ", mode="manual")
    with pytest.raises(ValidationError, match="index"):
        VaryStep(4)


def test_chain_fingerprint_depends_on_every_step_or_on_its_key() -> None:
    """Two chains differing only in a later step have different keys; a key= chain keeps its."""
    assert video_chain("a").fingerprint() != video_chain("b").fingerprint()
    assert video_chain("a").fingerprint() == video_chain("a").fingerprint()
    assert video_chain("a", key="k").fingerprint() == video_chain("b", key="k").fingerprint()


# -- run_many: every kind -------------------------------------------------------------------------


async def test_mixed_run_creates_each_kind_once(server: FakeKieServer, tmp_path: Path) -> None:
    """A run of all four kinds creates exactly one task per request, counted per kind on the
    server, and each outcome carries its request, task id and result."""
    source = "img0"  # an image task (the fake accepts any source by default)
    items: list[Any] = [
        GenerateRequest.image("a cat"),
        GenerateRequest.video("waves", image_url=FRAME),
        UpscaleRequest(source, 2),
        VaryRequest(source, 1),
        ExtendRequest("vid0", 0, "on"),
        ExtendRequest("vid1", 1),
    ]
    journal = tmp_path / "run.jsonl"
    async with fast_client(server) as kie:
        outcomes = await collect(kie, items, journal=journal)
    assert sorted(o.request.describe() for o in outcomes) == sorted(i.describe() for i in items)
    assert all(o.ok and o.task_id == o.result.task_id and o.result.result_urls for o in outcomes)
    kinds = {o.request.kind: o.result.kind for o in outcomes}
    assert kinds[TaskKind.UPSCALE] is TaskKind.UPSCALE and kinds[TaskKind.VARY] is TaskKind.VARY
    assert server.counts["create:generate"] == 2
    assert server.counts["create:upscale"] == 1
    assert server.counts["create:vary"] == 1
    assert server.counts["create:extend"] == 2
    keys = {line["key"] for line in journal_lines(journal) if line.get("event") == "intent"}
    assert {key.split(":")[0] for key in keys} == {"generate", "upscale", "vary", "sha256"}
    # A rerun sends nothing: every request is found in the journal, whatever its kind.
    async with fast_client(server) as kie:
        again = await collect(kie, items, journal=journal)
    assert all(o.ok and o.from_journal for o in again) and server.counts["create"] == 6


async def test_extend_keys_match_an_extend_many_journal(
    server: FakeKieServer, tmp_path: Path
) -> None:
    """run_many reads an extend_many journal (0.1.0 keys): its extensions are not sent again."""
    journal = tmp_path / "run.jsonl"
    requests = [ExtendRequest("src", i, f"scene {i}") for i in range(3)]
    async with fast_client(server) as kie:
        [o async for o in kie.extend_many(requests, journal=journal)]
        again = await collect(kie, list(requests), journal=journal)
    assert server.counts["create"] == 3
    assert all(o.from_journal for o in again)


async def test_run_many_reads_a_journal_written_by_0_1_0(
    server: FakeKieServer, tmp_path: Path
) -> None:
    """A journal line keyed as kie-async 0.1.0 keyed an extension (the pinned digest of its
    fields) is found by run_many: the extension is reported from it, not created again."""
    journal = tmp_path / "old.jsonl"
    done = {
        "event": "done",
        "key": "sha256:d0eb7b985afc4c98bebdb1c2151d2e4f",  # ExtendRequest("src0", 0, "scene 0")
        "task_id": "old-task",
        "status": "succeeded",
        "record": {
            "taskId": "old-task",
            "successFlag": 1,
            "taskType": "mj_video_extend_manual",
            "resultInfoJson": {"resultUrls": ["https://example.com/0.mp4"]},
        },
    }
    header = {"journal": "kie-async", "version": 1}
    journal.write_text("".join(json.dumps(line) + "\n" for line in (header, done)))
    async with fast_client(server) as kie:
        [outcome] = await collect(kie, [ExtendRequest("src0", 0, "scene 0")], journal=journal)
    assert outcome.from_journal and outcome.task_id == "old-task"
    assert outcome.result.result_urls == ("https://example.com/0.mp4",)
    assert server.counts["create"] == 0


async def test_extend_many_still_refuses_other_kinds(kie: KieClient) -> None:
    """extend_many stays what it was: an item of another kind is a TypeError naming it."""
    with pytest.raises(TypeError, match=r"extend_many\(\) takes ExtendRequest.*GenerateRequest"):
        [o async for o in kie.extend_many([GenerateRequest.image("x")])]  # type: ignore[list-item]


async def test_run_many_refuses_what_is_not_a_request(kie: KieClient) -> None:
    """run_many names the item that is neither a request nor a chain."""
    with pytest.raises(TypeError, match=r"run_many\(\) takes .*Chain items; item 0 is str"):
        await collect(kie, ["nope"])


# -- chains ---------------------------------------------------------------------------------------


async def test_chain_runs_its_steps_in_order(server: FakeKieServer, tmp_path: Path) -> None:
    """generate -> extend -> extend: each step's source is the task before it, one outcome for
    the chain with every step's, and progress counts the chain once."""
    journal = tmp_path / "run.jsonl"
    seen: list[Progress] = []
    chain = video_chain("the wave breaks", "the light goes out")
    async with fast_client(server) as kie:
        outcomes = await collect(kie, [chain], journal=journal, on_progress=seen.append)
    [outcome] = outcomes
    assert outcome.ok and outcome.request is chain and len(outcome.steps) == 3
    ids = [step.task_id for step in outcome.steps]
    assert outcome.task_id == ids[2] and outcome.result.task_id == ids[2]
    assert [server.creates[1]["taskId"], server.creates[2]["taskId"]] == ids[:2]
    assert [b.get("prompt") for b in server.creates[1:]] == [
        "the wave breaks",
        "the light goes out",
    ]
    assert server.counts["create:generate"] == 1 and server.counts["create:extend"] == 2
    assert seen[-1].succeeded == 1 and seen[-1].done == 1 and seen[-1].submitted == 3
    assert min(p.succeeded for p in seen) >= 0 and max(p.succeeded for p in seen) == 1
    events = [(line["event"], line["key"]) for line in journal_lines(journal) if "key" in line]
    keys = sorted({key for _, key in events})
    assert [key.rsplit("/", 1)[1] for key in keys] == ["0", "1", "2"]
    assert all(key.startswith("chain:") for key in keys)
    for key in keys:
        assert [e for e, k in events if k == key] == ["intent", "submitted", "done"]


async def test_the_same_chain_twice_runs_twice(server: FakeKieServer, tmp_path: Path) -> None:
    """One Chain object given twice is two chains (as a repeated request is two requests),
    each with its own steps and journal keys, and a rerun finds both finished."""
    chain = video_chain("one")
    journal = tmp_path / "run.jsonl"
    async with fast_client(server) as kie:
        outcomes = await asyncio.wait_for(collect(kie, [chain, chain], journal=journal), 10)
        assert [o.ok for o in outcomes] == [True, True]
        assert len({o.task_id for o in outcomes}) == 2
        again = await collect(kie, [chain, chain], journal=journal)
    assert all(o.from_journal for o in again)
    assert server.counts["create:generate"] == 2 and server.counts["create:extend"] == 2


async def test_image_chain_upscales_the_named_image(server: FakeKieServer) -> None:
    """generate images -> upscale image 2: the upscale names the generation and image 2."""
    chain = Chain(GenerateRequest.image("a cat"), UpscaleStep(2))
    async with fast_client(server) as kie:
        [outcome] = await collect(kie, [chain])
    assert outcome.ok and outcome.result.kind is TaskKind.UPSCALE
    generated = outcome.steps[0].task_id
    assert server.creates[1] == {"taskId": generated, "imageIndex": 2}


async def test_refused_re_extension_ends_the_chain_failed() -> None:
    """A server that refuses to extend an extension fails the chain at that step, clearly,
    without sending the steps after it; the other items of the run still succeed."""
    async with FakeKieServer(extend_extensions=False) as server, fast_client(server) as kie:
        chain = video_chain("one", "two", "three")
        outcomes = await collect(kie, [chain, GenerateRequest.image("other")])
    by_request = {type(o.request): o for o in outcomes}
    failed = by_request[Chain]
    assert failed.kind is OutcomeKind.FAILED and len(failed.steps) == 3
    assert [s.ok for s in failed.steps] == [True, True, False]
    assert "cannot be extended again" in str(failed.error)
    assert failed.task_id is None
    with pytest.raises(type(failed.error)):  # type: ignore[arg-type]
        failed.result  # noqa: B018
    assert server.counts["create:extend"] == 1 and by_request[GenerateRequest].ok


async def test_re_extension_limit_is_reported_at_the_step_past_it() -> None:
    """With max_extensions=2 a chain of three extensions fails at the third, named by the server."""
    async with FakeKieServer(max_extensions=2) as server, fast_client(server) as kie:
        [outcome] = await collect(kie, [video_chain("one", "two", "three")])
    assert [s.ok for s in outcome.steps] == [True, True, True, False]
    assert outcome.kind is OutcomeKind.FAILED and "at most 2" in str(outcome.error)
    assert server.counts["create:extend"] == 2


async def test_a_failed_first_step_ends_the_chain(server: FakeKieServer) -> None:
    """A generation that fails ends its chain with that failure; no extension is sent."""
    server.script_next(TaskScript.failed("moderation", flag=3))
    async with fast_client(server) as kie:
        [outcome] = await collect(kie, [video_chain("one")])
    assert outcome.kind is OutcomeKind.FAILED and len(outcome.steps) == 1
    assert server.counts["create:extend"] == 0


async def test_chain_rerun_resumes_at_the_step_it_reached(
    server: FakeKieServer, tmp_path: Path
) -> None:
    """A chain stopped after its first steps resumes there on a rerun: the finished steps come
    from the journal, the one running is re-attached, nothing is created twice."""
    journal = tmp_path / "run.jsonl"
    chain = video_chain("one", "two", "three")
    server.script_next(TaskScript(), TaskScript(), TaskScript(seconds=60))
    async with fast_client(server) as kie, kie.run_many([chain], journal=journal) as run:
        first = asyncio.ensure_future(anext(run))  # asking for an outcome starts the run
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            if server.counts["create"] >= 3:
                break
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    assert server.counts["create"] == 3
    for task_id in list(server.tasks):
        server.complete(task_id)
    async with fast_client(server) as kie:
        [outcome] = await collect(kie, [chain], journal=journal)
    assert outcome.ok and [s.from_journal for s in outcome.steps] == [True, True, False, False]
    assert server.counts["create"] == 4 and server.duplicate_creates() == 0


async def test_a_stop_lets_a_chain_step_on_the_wire_finish(
    server: FakeKieServer, tmp_path: Path
) -> None:
    """Stopping a run while a chain's extension create is on the wire waits for its answer:
    the step's task id reaches the journal, and the rerun re-attaches instead of reporting the
    chain uncertain or paying again."""
    journal = tmp_path / "run.jsonl"
    server.faults = Faults(slow=1.0, slow_seconds=0.5, endpoints=frozenset({"create"}))
    chain = video_chain("one")
    async with fast_client(server) as kie, kie.run_many([chain], journal=journal) as run:
        first = asyncio.ensure_future(anext(run))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            if server.counts["request:create"] >= 1:  # the extension's create arrived
                break
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    submitted = [line for line in journal_lines(journal) if line.get("event") == "submitted"]
    assert {line["task_id"] for line in submitted} == set(server.tasks)
    assert len(submitted) == 2
    server.faults = Faults()
    async with fast_client(server) as kie:
        [outcome] = await collect(kie, [chain], journal=journal)
    assert outcome.ok and [s.from_journal for s in outcome.steps] == [True, False]
    assert server.counts["create:extend"] == 1 and server.counts["create:generate"] == 1


# The CLI's bulk command as `kie-async` runs it, with a quick poll instead of the default one.
_KILLED_CLI = """
import asyncio, sys
from kie_async import PollPolicy
from kie_async._cli import run
poll = PollPolicy(interval=0.05, factor=1, max_interval=0.05, jitter=0, timeout=60, first_delay=0)
sys.exit(asyncio.run(run(sys.argv[1:], client_options={"poll": poll})))
"""


@pytest.mark.slow
async def test_chain_killed_mid_run_by_sigkill_resumes_without_paying_twice(
    tmp_path: Path,
) -> None:
    """A CLI bulk run of chains killed with SIGKILL mid-chain finishes on a rerun with the same
    journal: every chain completes and no step is created twice (counted per kind on the server)."""
    journal = tmp_path / "run.jsonl"
    jobs = tmp_path / "jobs.jsonl"
    chains = 6
    lines = [
        {
            "kind": "chain",
            "steps": [
                {
                    "kind": "generate",
                    "task_type": "mj_video",
                    "prompt": f"shot {i}",
                    "file_urls": [FRAME],
                },
                {"kind": "extend", "index": 0, "prompt": "one"},
                {"kind": "extend", "index": 0, "prompt": "two"},
            ],
        }
        for i in range(chains)
    ]
    jobs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    async with FakeKieServer() as server:
        # Tasks take 1 s: the chains move in step, so once every chain's first extension is in
        # the journal no create is on the wire for half a second, and the kill lands there.
        server.default_script = TaskScript(seconds=0.6)
        env = {**os.environ, "KIE_API_KEY": server.api_key, "KIE_BASE_URL": server.url}
        args = ["bulk", str(jobs), "--journal", str(journal), "--rate-limit", "1000/1"]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _KILLED_CLI,
            *args,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            if journal.exists() and journal.read_text().count('"event":"submitted"') >= 2 * chains:
                break
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
        assert process.stderr is not None
        await process.stderr.read()
        assert server.counts["create:generate"] == chains, "every chain's first step was sent"
        assert server.counts["create:extend"] == chains, "killed after the first extensions"

        server.default_script = TaskScript()
        rerun = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _KILLED_CLI,
            *args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(rerun.communicate(), 60)
        assert rerun.returncode == 0, err.decode()
        assert server.counts["create:generate"] == chains
        assert server.counts["create:extend"] == 2 * chains
        assert server.duplicate_creates() == 0
