"""Every task kind end to end over loopback: the client's generate/upscale/vary/submit against
the fake kie.ai, records of every kind, and the create rules shared with extend."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from kie_async import (
    ExtendRequest,
    GenerateRequest,
    InsufficientCreditsError,
    KieClient,
    PollPolicy,
    RateLimitError,
    ServerError,
    SubmissionUncertainError,
    TaskFailedError,
    TaskKind,
    TaskStatus,
    UnexpectedResponseError,
    UnprocessableError,
    UpscaleRequest,
    ValidationError,
    VaryRequest,
)
from kie_async._protocol.wire import parse_record
from kie_async.callbacks import CallbackReceiver
from kie_async.testing import FakeKieServer, Faults, TaskScript, fast_client

SAMPLES = Path(__file__).parent / "samples"
FRAME = "https://example.com/frame.png"


def sample(name: str) -> dict[str, Any]:
    """The ``data`` of a stored record-info answer."""
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text(encoding="utf-8"))["data"]
    return data


async def test_generate_a_video_then_extend_it_twice(kie: KieClient, server: FakeKieServer) -> None:
    """generate -> wait -> extend -> wait -> extend the extension: the issue's example, with
    records that say what they are and hold their results."""
    server.strict_sources = True
    request = GenerateRequest.video(
        "a lighthouse in a storm", image_url=FRAME, batch_size=2, motion="low"
    )
    source = await (await kie.generate(request)).wait()
    assert (source.kind, source.media, source.task_type) == (TaskKind.GENERATE, "video", "mj_video")
    assert len(source.result_urls) == 2
    assert all(url.endswith(".mp4") for url in source.result_urls)

    longer = await (
        await kie.extend_video(source.task_id, index=1, prompt="the wave breaks")
    ).wait()
    assert (longer.kind, longer.media) == (TaskKind.EXTEND, "video")
    assert longer.params is not None and longer.params["taskId"] == source.task_id

    again = await (await kie.extend_video(longer.task_id, index=0)).wait()
    assert again.kind is TaskKind.EXTEND and again.status is TaskStatus.SUCCESS
    assert server.counts["create:generate"] == 1
    assert server.counts["create:extend"] == 2
    assert server.counts["create"] == 3
    assert server.duplicate_creates() == 0


async def test_generate_images_then_upscale_and_vary(kie: KieClient, server: FakeKieServer) -> None:
    """An image generation holds 4 images; upscale makes one, vary makes four, each its kind."""
    server.strict_sources = True
    images = await (await kie.generate(GenerateRequest.image("a red fox", version=7))).wait()
    assert (images.kind, images.media, len(images.result_urls)) == (TaskKind.GENERATE, "image", 4)

    up = await (await kie.upscale(images.task_id, index=2)).wait()
    assert (up.kind, up.media, len(up.result_urls)) == (TaskKind.UPSCALE, "image", 1)

    varied = await (await kie.vary(images.task_id, 3, watermark="acme")).wait()
    assert (varied.kind, len(varied.result_urls)) == (TaskKind.VARY, 4)

    bodies = [r.json for r in server.requests if r.method == "POST"]
    assert bodies[1] == {"taskId": images.task_id, "imageIndex": 2}
    assert bodies[2] == {"taskId": images.task_id, "imageIndex": 3, "waterMark": "acme"}
    paths = [r.path for r in server.requests if r.method == "POST"]
    assert paths == ["/api/v1/mj/generate", "/api/v1/mj/generateUpscale", "/api/v1/mj/generateVary"]


@pytest.mark.parametrize(
    "request_",
    [
        GenerateRequest.style_reference("a harbour", [FRAME], speed="turbo"),
        GenerateRequest.omni_reference("my cat, on the moon", FRAME, ow=250),
        GenerateRequest.image("a street at night", image_urls=[FRAME, FRAME]),
        GenerateRequest.video("clouds", image_url=FRAME, hd=True, batch_size=4),
        UpscaleRequest("src-image", 1),
        VaryRequest("src-image", 0),
        ExtendRequest("src-video", 2, "into the nebula"),
    ],
    ids=lambda r: r.describe(),
)
async def test_submit_sends_any_kind_to_its_endpoint(
    kie: KieClient, server: FakeKieServer, request_: Any
) -> None:
    """submit() POSTs each kind's exact body to its endpoint and returns a handle that awaits its
    record, carrying the request."""
    handle = await kie.submit(request_)
    assert handle.request is request_
    sent = server.requests[-1]
    assert (sent.path, sent.json) == (request_.endpoint, request_.body())
    record = await handle
    assert record.kind is request_.kind
    assert record.status is TaskStatus.SUCCESS
    assert record.result_urls


async def test_upscale_takes_a_request_too(kie: KieClient, server: FakeKieServer) -> None:
    """upscale()/vary() accept a ready request; mixing one with fields is a TypeError."""
    handle = await kie.upscale(UpscaleRequest("src", 3, key="mine"))
    assert handle.request == UpscaleRequest("src", 3, key="mine")
    assert server.requests[-1].json == {"taskId": "src", "imageIndex": 3}
    await kie.vary(VaryRequest("src", 1))
    with pytest.raises(TypeError):
        await kie.vary(VaryRequest("src", 1), 2)
    assert server.counts["create"] == 2


async def test_bad_input_sends_nothing(kie: KieClient, server: FakeKieServer) -> None:
    """A missing or invalid index, or a wrong type, fails before any request is made."""
    with pytest.raises(ValidationError) as info:
        await kie.upscale("src")
    assert info.value.field == "index"
    with pytest.raises(ValidationError):
        await kie.vary("src", 4)
    with pytest.raises(TypeError):
        await kie.generate(ExtendRequest("src"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await kie.submit({"taskType": "mj_txt2img"})  # type: ignore[arg-type]
    assert server.requests == []


async def test_a_lost_generate_reply_is_uncertain_and_not_resent(server: FakeKieServer) -> None:
    """A generate whose reply is lost raises SubmissionUncertainError naming the request, and is
    never sent twice: as for extend, kie.ai has no idempotency key."""
    request = GenerateRequest.video("a storm", image_url=FRAME)
    server.fail_next("generate", "drop_after")
    async with fast_client(server) as kie:
        with pytest.raises(SubmissionUncertainError) as info:
            await kie.generate(request)
    assert info.value.request is request
    assert "generate mj_video" in str(info.value)
    assert server.counts["create"] == 1
    assert server.counts["request:generate"] == 1


@pytest.mark.parametrize("endpoint", ["generate", "upscale", "vary"])
async def test_refused_creates_are_retried_once_each(server: FakeKieServer, endpoint: str) -> None:
    """A 429 or 455 answer to any kind's create is retried (nothing was created), and the retry
    creates exactly one task."""
    server.fail_next(endpoint, "rate_limited")
    server.fail_next(endpoint, "maintenance")
    request: Any = {
        "generate": GenerateRequest.image("go"),
        "upscale": UpscaleRequest("src", 0),
        "vary": VaryRequest("src", 0),
    }[endpoint]
    async with fast_client(server) as kie:
        await kie.submit(request)
    assert server.counts[f"request:{endpoint}"] == 3
    assert server.counts["create"] == 1


async def test_kie_errors_reach_the_caller_for_every_kind(server: FakeKieServer) -> None:
    """kie's refusals (422 from the server's own validation, 402, 429 after retries) become the
    matching kie_async errors for the new kinds too."""
    server.strict_sources = True
    async with fast_client(server, max_retries=0) as kie:
        with pytest.raises(UnprocessableError, match="image task"):
            await kie.upscale("no-such-task", 0)
        server.answer_next("generate", 429, "Too many requests")
        with pytest.raises(RateLimitError):
            await kie.generate(GenerateRequest.image("go"))
        server.credits = server.task_cost - 1
        with pytest.raises(InsufficientCreditsError):
            await kie.vary(server.add_source_image(), 0)
    assert server.counts["create"] == 0


async def test_records_of_every_kind_read_the_same_way(
    kie: KieClient, server: FakeKieServer
) -> None:
    """Image and video records (from kie's docs example and hand-written samples) give their
    result URLs the same way, and say their kind."""
    expected = {
        "record_info_docs_example.json": (TaskKind.GENERATE, "image", 4),
        "record_info_video_generation.json": (TaskKind.GENERATE, "video", 2),
        "record_info_upscale.json": (TaskKind.UPSCALE, "image", 1),
        "record_info_extend_string_urls.json": (TaskKind.EXTEND, "video", 2),
    }
    for name, (kind, media, count) in expected.items():
        data = sample(name)
        server.set_record(data["taskId"], data)
        record = await kie.get_task(data["taskId"])
        assert (record.kind, record.media, len(record.result_urls)) == (kind, media, count), name
        assert all(
            url.startswith("https://tempfile.aiquickdraw.com/") for url in record.result_urls
        )


def test_an_undocumented_task_type_is_tolerated() -> None:
    """A record of a kind kie.ai never documented is read, with kind UNKNOWN."""
    data = dict(sample("record_info_docs_example.json"), taskType="mj_blend")
    record = parse_record(data)
    assert (record.kind, record.media) == (TaskKind.UNKNOWN, None)
    assert len(record.result_urls) == 4
    assert parse_record({"taskId": "t"}).kind is TaskKind.UNKNOWN


async def test_failed_generation_raises_with_its_record(
    kie: KieClient, server: FakeKieServer
) -> None:
    """A generation that fails upstream ends the wait with TaskFailedError, as an extension."""
    server.script_next(TaskScript.failed("banned prompt", flag=3))
    handle = await kie.generate(GenerateRequest.image("go"))
    with pytest.raises(TaskFailedError) as info:
        await handle
    assert info.value.record is not None and info.value.record.kind is TaskKind.GENERATE


async def test_a_generate_callback_ends_the_wait() -> None:
    """With a callback receiver attached, a generation's callback ends its wait with one
    confirming poll, as an extension's does; the callback carries the image URLs as strings."""
    safety = PollPolicy(interval=5.0, factor=1, max_interval=5.0, jitter=0, timeout=10.0)
    receiver = CallbackReceiver(key="hmac-key")
    await receiver.start()
    try:
        async with FakeKieServer(callback_key="hmac-key") as server:
            server.default_script = TaskScript(seconds=0.2)
            async with fast_client(
                server, callbacks=receiver, callback_url=receiver.url, safety_poll=safety
            ) as kie:
                handle = await kie.generate(GenerateRequest.image("go"))
                record = await handle.wait()
            assert record.status is TaskStatus.SUCCESS and len(record.result_urls) == 4
            assert server.polls_for(handle.task_id) == 1
            assert server.creates[-1]["callBackUrl"] == receiver.url
            assert server.counts["callback:delivered"] == 1
            urls = server.callback_payload(handle.task_id)["data"]["resultUrls"]
            assert all(isinstance(u, str) and u.endswith(".jpeg") for u in urls)
    finally:
        await receiver.close()


async def test_faults_can_target_the_new_endpoints() -> None:
    """Faults drawn for "upscale" hit only upscales; the other creates are untouched."""
    async with FakeKieServer() as server:
        server.faults = Faults(server_error=1.0, endpoints=frozenset({"upscale"}))
        async with fast_client(server, max_retries=0) as kie:
            await kie.vary("src", 0)
            with pytest.raises(ServerError):
                await kie.upscale("src", 0)
        assert server.counts["create"] == 1


@pytest.mark.parametrize(
    ("request_", "path"),
    [
        (GenerateRequest.image("go"), "/api/v1/mj/generate"),
        (UpscaleRequest("src", 0), "/api/v1/mj/generateUpscale"),
        (VaryRequest("src", 0), "/api/v1/mj/generateVary"),
    ],
    ids=["generate", "upscale", "vary"],
)
async def test_a_success_without_a_task_id_is_uncertain(request_: Any, path: str) -> None:
    """A create answered "success" without a taskId may have made a paid task: it raises
    SubmissionUncertainError (sent once, never retried), whose cause names the kind's endpoint."""
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n"))
        body = b'{"code": 200, "msg": "success", "data": {}}'
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        writer.write(head.encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with KieClient(
            "k", base_url=f"http://127.0.0.1:{port}", rate_limit=None, timeout=2.0
        ) as kie:
            with pytest.raises(SubmissionUncertainError) as info:
                await kie.submit(request_)
    finally:
        listener.close()
        await listener.wait_closed()
    cause = info.value.__cause__
    assert isinstance(cause, UnexpectedResponseError)
    assert cause.endpoint == path
    assert seen == [f"POST {path} HTTP/1.1\r\n".encode()]


def test_an_upscale_request_and_its_fields_is_refused_in_good_english() -> None:
    """Passing a request and its fields says "an UpscaleRequest" / "a VaryRequest"."""
    from kie_async import UpscaleRequest, VaryRequest
    from kie_async._kinds.image_actions import image_action

    with pytest.raises(TypeError, match=r"^pass either an UpscaleRequest or its fields"):
        image_action(UpscaleRequest, UpscaleRequest("img0", 1), 2, None, None)
    with pytest.raises(TypeError, match=r"^pass either a VaryRequest or its fields"):
        image_action(VaryRequest, VaryRequest("img0", 1), 2, None, None)
