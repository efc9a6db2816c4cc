"""The public API as a strictly typed user sees it. Only mypy reads this file; it never runs.

Every annotation below is a claim about a public signature: if a return type widens to ``Any``
or a parameter's type changes, ``mypy --strict`` fails here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp

import kie_async
from kie_async import (
    APIError,
    BulkRun,
    Chain,
    ExtendMode,
    ExtendOutcome,
    ExtendRequest,
    ExtendStep,
    GenerateRequest,
    KieClient,
    KieError,
    PollPolicy,
    RateLimit,
    RedisRateLimit,
    RetryPolicy,
    SubmissionUncertainError,
    TaskFailedError,
    TaskHandle,
    TaskKind,
    TaskRecord,
    TaskStatus,
    TaskTimeoutError,
    Timeout,
    TransportError,
    UnexpectedResponseError,
    UpscaleRequest,
    UpscaleStep,
    ValidationError,
    VaryRequest,
)
from kie_async.testing import FakeKieServer, Faults, RecordedRequest, TaskScript, fast_client


def build_requests() -> list[ExtendRequest]:
    manual = ExtendRequest("ee603959", 1, "The camera pulls back", watermark="acme")
    auto = ExtendRequest("ee603959", index=2, mode=ExtendMode.AUTO, key="row-2")
    by_name = ExtendRequest("ee603959", mode="manual", prompt="go", callback_url="https://h/cb")
    mode: ExtendMode = manual.mode
    prompt: str | None = auto.prompt
    fingerprint: str = by_name.fingerprint()
    described: str = manual.describe()
    assert mode and (prompt is None) and fingerprint and described
    return [manual, auto, by_name]


def read_record(record: TaskRecord) -> list[str]:
    status: TaskStatus = record.status
    terminal: bool = status.is_terminal and status.ok
    urls: tuple[str, ...] = record.result_urls
    flag: int | None = record.success_flag
    params: Mapping[str, Any] | None = record.params
    created: datetime | None = record.created_at
    raw_time: str | None = record.completed_at_raw
    error: str | None = record.error_message or record.error_code
    data: Mapping[str, Any] = record.data
    assert terminal or flag or params or created or raw_time or error or data
    return list(urls)


def describe_error(exc: KieError) -> str:
    if isinstance(exc, ValidationError):
        field: str = exc.field
        return field
    if isinstance(exc, APIError):
        code: int = exc.code
        status: int = exc.http_status
        retry_after: float | None = exc.retry_after
        return f"{code} {status} {exc.message} {exc.endpoint} {retry_after}"
    if isinstance(exc, TaskFailedError):
        last: TaskRecord | None = exc.record
        return f"{exc.task_id} {exc.error_code} {exc.error_message} {last}"
    if isinstance(exc, TaskTimeoutError):
        as_builtin: TimeoutError = exc
        seconds: float = exc.timeout
        return f"{as_builtin} {seconds}"
    if isinstance(exc, SubmissionUncertainError):
        request: ExtendRequest | GenerateRequest | UpscaleRequest | VaryRequest = exc.request
        return request.describe()
    if isinstance(exc, TransportError):
        sent: bool = exc.sent
        permanent: bool = exc.permanent
        return f"{exc.message} {sent} {permanent}"
    if isinstance(exc, UnexpectedResponseError):
        return exc.body_excerpt
    return str(exc)


async def use_client(session: aiohttp.ClientSession) -> list[str]:
    policy = PollPolicy(interval=10, max_interval=60, timeout=45 * 60)
    fast: PollPolicy = PollPolicy.zero_wait(timeout=None)
    testing: PollPolicy = PollPolicy.testing(timeout=None)
    retry = RetryPolicy(max_retries=8, max_delay=60, max_connect_retries=2)
    budget = Timeout(total=30, connect=5, read=10, pool=None)
    total: float | None = budget.total
    legacy = KieClient("key", timeout=30.0, connect_timeout=5.0, max_answer_size=1 << 20)
    timeouts: Timeout = legacy.timeouts
    cap: int = legacy.max_answer_size
    assert total and timeouts.read and cap
    kie = KieClient(
        "key",
        base_url="https://api.kie.ai",
        session=session,
        poll=policy,
        retry=retry,
        rate_limit=RateLimit(50, per=10),
        timeout=budget,
    )
    urls: list[str] = []
    async with kie as client:
        same: KieClient = client
        handle: TaskHandle = await same.extend_video("ee603959", 0, "Into a nebula")
        task_id: str = handle.task_id
        record: TaskRecord = await handle
        urls += read_record(record)
        record = await handle.wait(timeout=None, poll=fast)
        record = await handle.wait(poll=testing)
        record = await handle.refresh()
        last: TaskRecord | None = handle.last_record
        again: TaskHandle = client.task(task_id)
        submitted: TaskHandle = await client.submit(build_requests()[0])
        fetched: TaskRecord = await client.get_task(submitted.task_id)
        balance: Decimal = await client.credits()
        link: str = await client.download_url(fetched.result_urls[0])
        expires: datetime | None = fetched.expires_at
        saved: kie_async.JournalDownload = await client.download_journal("run.jsonl", "videos")
        failures: tuple[tuple[kie_async.ResultFile, kie_async.DownloadError], ...] = saved.failed
        results: kie_async.JournalResults = kie_async.read_results("run.jsonl")
        missing: tuple[kie_async.ResultFile, ...] = results.missing
        assert saved.ok or failures or missing or expires
        base: str = client.base_url
        limit: RateLimit | RedisRateLimit | None = client.rate_limit
        stream: AsyncIterator[ExtendOutcome] = client.extend_many(build_requests(), concurrency=5)
        async for outcome in stream:
            ok: bool = outcome.ok
            request: ExtendRequest = outcome.request
            if outcome.ok:
                succeeded: TaskRecord = outcome.result
                assert succeeded.result_urls
            assert ok or request
        run: BulkRun
        async with client.extend_many(build_requests(), journal="run.jsonl") as run:
            async for outcome in run:
                assert outcome.ok
        chain = Chain(GenerateRequest.image("a cat"), UpscaleStep(2), key="c")
        clip = Chain(GenerateRequest.video("w", image_url="https://e.com/f.png"), ExtendStep(0))
        async with client.run_many([chain, clip, UpscaleRequest("t", 1)]) as mixed:
            async for any_outcome in mixed:
                described: str = any_outcome.request.describe()
                kind_of_item: Chain | TaskKind = (
                    any_outcome.request
                    if isinstance(any_outcome.request, Chain)
                    else any_outcome.request.kind
                )
                for step in any_outcome.steps:
                    step_kind: TaskKind = step.request.kind
                    step_id: str | None = step.task_id
                    assert step_kind and step_id
                assert described and kind_of_item and any_outcome.ok
        assert last or again or balance or link or base or limit
    await kie.aclose()
    return urls


async def use_fake_server() -> int:
    async with FakeKieServer(api_key="k", rate_limit=(20, 10.0)) as server:
        server.script_next(TaskScript(polls=2), TaskScript.failed("nope", flag=3))
        server.faults = Faults(rate_limited=0.05, seed=7)
        server.fail_next("record", "html_502", times=2)
        server.answer_next("credit", 402, "Credits insufficient")
        server.set_record("t1", {"taskId": "t1", "successFlag": 1})
        url: str = server.url
        async with fast_client(server, max_retries=0) as kie:
            try:
                await (await kie.extend_video("src", prompt="go"))
            except kie_async.KieError as exc:
                describe_error(exc)
        requests: list[RecordedRequest] = server.requests
        return len(requests) + server.counts["create"] + server.polls_for("t1") + len(url)


async def use_kinds(kie: KieClient) -> list[str]:
    images: GenerateRequest = GenerateRequest.image("a fox", version=7, speed="fast")
    video = GenerateRequest.video("waves", image_url="https://x/f.png", batch_size=2, hd=True)
    styled = GenerateRequest.style_reference("a harbour", ["https://x/s.png"], stylization=100)
    omni = GenerateRequest.omni_reference("a cat", "https://x/c.png", ow=250)
    full = GenerateRequest("mj_img2img", "go", file_urls=["https://x/a.png"], variety=5)
    body: dict[str, Any] = full.body()
    batch: int | None = video.video_batch_size
    urls: tuple[str, ...] = styled.file_urls
    handle: TaskHandle = await kie.generate(images)
    record: TaskRecord = await handle
    kind: TaskKind = record.kind
    media: str | None = record.media
    up: TaskHandle = await kie.upscale(record.task_id, index=2, watermark="w")
    up = await kie.upscale(UpscaleRequest(record.task_id, 2))
    varied: TaskHandle = await kie.vary(VaryRequest(record.task_id, 0, key="k"))
    varied = await kie.vary(record.task_id, 1)
    any_kind: TaskHandle = await kie.submit(omni)
    described: str = UpscaleRequest("t", 0).describe() + VaryRequest("t", 0).fingerprint()
    assert body and batch and urls and kind and media and up and varied and any_kind
    return [described, TaskKind.GENERATE.value]


class MyClient(KieClient):
    """A subclass keeps its type through ``async with`` (``__aenter__`` returns Self)."""


async def subclass_keeps_its_type(server: FakeKieServer) -> None:
    async with MyClient(server.api_key, base_url=server.url) as mine:
        kept: MyClient = mine
        assert kept
    async with FakeKieServer() as fake:
        same: FakeKieServer = fake
        assert same
