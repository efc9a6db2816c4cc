"""The fake kie.ai's generate, upscale and vary endpoints, spoken to in raw JSON (not through the
SDK, so bodies the SDK would refuse can be sent): kie's validation answers, records of the right
type and size, and the knobs for extending extensions."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from kie_async import GenerateRequest, KieClient, PollPolicy, UnprocessableError
from kie_async.testing import DEFAULT_API_KEY, FakeKieServer

FRAME = "https://example.com/frame.png"


class Raw:
    """Raw JSON calls to the fake server with kie's headers, bypassing the SDK."""

    def __init__(self, server: FakeKieServer, session: aiohttp.ClientSession) -> None:
        self.base = f"{server.url}/api/v1/mj/"
        self.session = session

    async def __call__(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        """POST ``body`` to ``/api/v1/mj/<path>``: (HTTP status, decoded envelope)."""
        async with self.session.post(self.base + path, json=body) as answer:
            return answer.status, await answer.json()

    async def record(self, task_id: str) -> dict[str, Any]:
        """The record-info ``data`` of ``task_id``."""
        async with self.session.get(self.base + "record-info", params={"taskId": task_id}) as a:
            data: dict[str, Any] = (await a.json())["data"]
            return data


@pytest.fixture(name="post")
async def _post(server: FakeKieServer) -> AsyncIterator[Raw]:
    """Raw calls to the test's fake server."""
    headers = {"Authorization": f"Bearer {server.api_key}", "User-Agent": "test/1"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield Raw(server, session)


GENERATE_REFUSED: list[tuple[dict[str, Any], int, str]] = [
    ({"prompt": "go"}, 500, "taskType: This field is required"),
    ({"taskType": "mj_txt2img"}, 500, "prompt: This field is required"),
    ({"taskType": "mj_blend", "prompt": "go"}, 422, "taskType"),
    ({"taskType": "mj_txt2img", "prompt": "x" * 2001}, 422, "2000"),
    ({"taskType": "mj_img2img", "prompt": "go"}, 500, "fileUrls: This field is required"),
    ({"taskType": "mj_omni_reference", "prompt": "go", "fileUrls": []}, 500, "fileUrls"),
    ({"taskType": "mj_video", "prompt": "go"}, 422, "exactly one"),
    ({"taskType": "mj_video_hd", "prompt": "go", "fileUrls": [FRAME, FRAME]}, 422, "exactly one"),
    ({"taskType": "mj_img2img", "prompt": "go", "fileUrls": ["not a url"]}, 422, "fileUrls"),
    ({"taskType": "mj_txt2img", "prompt": "go", "speed": "slow"}, 422, "speed"),
    (
        {"taskType": "mj_video", "prompt": "go", "fileUrls": [FRAME], "speed": "fast"},
        422,
        "speed",
    ),
    (
        {"taskType": "mj_omni_reference", "prompt": "go", "fileUrls": [FRAME], "speed": "fast"},
        422,
        "speed",
    ),
    ({"taskType": "mj_txt2img", "prompt": "go", "aspectRatio": "7:3"}, 422, "aspectRatio"),
    ({"taskType": "mj_txt2img", "prompt": "go", "version": "8"}, 422, "version"),
    ({"taskType": "mj_txt2img", "prompt": "go", "variety": 7}, 422, "variety"),
    ({"taskType": "mj_txt2img", "prompt": "go", "variety": 105}, 422, "variety"),
    ({"taskType": "mj_txt2img", "prompt": "go", "stylization": 1001}, 422, "stylization"),
    ({"taskType": "mj_txt2img", "prompt": "go", "weirdness": -1}, 422, "weirdness"),
    ({"taskType": "mj_txt2img", "prompt": "go", "ow": 10}, 422, "ow"),
    (
        {"taskType": "mj_omni_reference", "prompt": "go", "fileUrls": [FRAME], "ow": 0},
        422,
        "ow",
    ),
    ({"taskType": "mj_txt2img", "prompt": "go", "videoBatchSize": 2}, 422, "video"),
    (
        {"taskType": "mj_video", "prompt": "go", "fileUrls": [FRAME], "videoBatchSize": 3},
        422,
        "videoBatchSize",
    ),
    ({"taskType": "mj_txt2img", "prompt": "go", "motion": "low"}, 422, "video"),
    (
        {"taskType": "mj_video", "prompt": "go", "fileUrls": [FRAME], "motion": "wild"},
        422,
        "motion",
    ),
    ({"taskType": "mj_txt2img", "prompt": "go", "enableTranslation": "yes"}, 422, "boolean"),
    ({"taskType": "mj_txt2img", "prompt": "go", "callBackUrl": "nope"}, 422, "callBackUrl"),
    ([1, 2], 400, "JSON"),
]


@pytest.mark.parametrize(("body", "code", "words"), GENERATE_REFUSED)
async def test_generate_validation_answers_like_kie(
    server: FakeKieServer, post: Raw, body: Any, code: int, words: str
) -> None:
    """Each documented /mj/generate rule is enforced with kie's envelope inside HTTP 200, and a
    refused request creates nothing and costs nothing."""
    credits = server.credits
    status, envelope = await post("generate", body)
    assert status == 200
    assert envelope["code"] == code and words in envelope["msg"]
    assert envelope["data"] is None
    assert server.counts["create"] == 0 and server.credits == credits


@pytest.mark.parametrize(
    ("body", "task_type", "results", "suffix"),
    [
        ({"taskType": "mj_txt2img", "prompt": "go"}, "mj_txt2img", 4, ".jpeg"),
        (
            {"taskType": "mj_img2img", "prompt": "go", "fileUrl": FRAME},  # the legacy field
            "mj_img2img",
            4,
            ".jpeg",
        ),
        ({"taskType": "mj_video", "prompt": "go", "fileUrls": [FRAME]}, "mj_video", 1, ".mp4"),
        (
            {"taskType": "mj_video_hd", "prompt": "go", "fileUrls": [FRAME], "videoBatchSize": 4},
            "mj_video_hd",
            4,
            ".mp4",
        ),
    ],
)
async def test_generate_makes_records_of_its_kind(
    server: FakeKieServer,
    post: Raw,
    body: dict[str, Any],
    task_type: str,
    results: int,
    suffix: str,
) -> None:
    """Accepted generations get records with their taskType and result count (4 images, or
    videoBatchSize videos), and paramJson holding the request as sent."""
    _, envelope = await post("generate", body)
    assert envelope["code"] == 200
    data = await post.record(envelope["data"]["taskId"])
    assert data["taskType"] == task_type
    urls = [item["resultUrl"] for item in data["resultInfoJson"]["resultUrls"]]
    assert len(urls) == results and all(u.endswith(suffix) for u in urls)
    assert isinstance(data["paramJson"], str) and '"prompt": "go"' in data["paramJson"]
    assert server.counts["create:generate"] == 1


@pytest.mark.parametrize("path", ["generateUpscale", "generateVary"])
@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"imageIndex": 0}, 500, "taskId: This field is required"),
        ({"taskId": "t1"}, 500, "imageIndex: This field is required"),
        ({"taskId": "t1", "imageIndex": 4}, 422, "0 to 3"),
        ({"taskId": "t1", "imageIndex": -1}, 422, "0 to 3"),
        ({"taskId": "t1", "imageIndex": "1"}, 422, "0 to 3"),
        ({"taskId": "t1", "imageIndex": 0, "callBackUrl": "nope"}, 422, "callBackUrl"),
    ],
)
async def test_upscale_and_vary_validation(
    server: FakeKieServer, post: Raw, path: str, body: dict[str, Any], code: int, words: str
) -> None:
    """taskId and imageIndex (0-3) are required by /generateUpscale and /generateVary."""
    _, envelope = await post(path, body)
    assert envelope["code"] == code and words in envelope["msg"]
    assert server.counts["create"] == 0


async def test_strict_sources_for_upscale_and_vary(server: FakeKieServer, post: Raw) -> None:
    """With strict_sources, only known image tasks can be upscaled or varied, within their
    images; an upscale's one image can be varied but not upscaled again."""
    server.strict_sources = True
    image = server.add_source_image()
    video = server.add_source_video(videos=4)
    for path in ("generateUpscale", "generateVary"):
        assert (await post(path, {"taskId": "unknown", "imageIndex": 0}))[1]["code"] == 422
        assert (await post(path, {"taskId": video, "imageIndex": 0}))[1]["code"] == 422
    _, up = await post("generateUpscale", {"taskId": image, "imageIndex": 3})
    assert up["code"] == 200
    upscaled = up["data"]["taskId"]
    assert (await post.record(upscaled))["taskType"] == "mj_upscale"
    assert (await post("generateUpscale", {"taskId": upscaled, "imageIndex": 0}))[1]["code"] == 422
    assert (await post("generateVary", {"taskId": upscaled, "imageIndex": 1}))[1]["code"] == 422
    _, varied = await post("generateVary", {"taskId": upscaled, "imageIndex": 0})
    assert varied["code"] == 200
    data = await post.record(varied["data"]["taskId"])
    assert (data["taskType"], len(data["resultInfoJson"]["resultUrls"])) == ("mj_vary", 4)
    assert server.counts["create:upscale"] == 1 and server.counts["create:vary"] == 1


def _extend(task_id: str) -> dict[str, Any]:
    return {"taskType": "mj_video_extend_auto", "taskId": task_id, "index": 0}


async def test_extensions_can_be_extended_by_default(server: FakeKieServer, post: Raw) -> None:
    """By default an extension's result is itself extendable, chains of any length (kie.ai does
    not say, so the fake allows it), also under strict_sources."""
    server.strict_sources = True
    task_id = server.add_source_video(videos=1)
    for _ in range(6):
        _, envelope = await post("generateVideoExtend", _extend(task_id))
        assert envelope["code"] == 200, envelope
        task_id = envelope["data"]["taskId"]
    assert server.counts["create:extend"] == 6


async def test_re_extending_can_be_refused() -> None:
    """extend_extensions=False refuses an extension of an extension (422) but not of a video."""
    async with FakeKieServer(extend_extensions=False) as server:
        headers = {"Authorization": f"Bearer {server.api_key}", "User-Agent": "test/1"}
        url = f"{server.url}/api/v1/mj/generateVideoExtend"
        async with aiohttp.ClientSession(headers=headers) as session:
            source = server.add_source_video()
            async with session.post(url, json=_extend(source)) as answer:
                first = await answer.json()
            async with session.post(url, json=_extend(first["data"]["taskId"])) as answer:
                second = await answer.json()
    assert first["code"] == 200
    assert second["code"] == 422 and "cannot be extended again" in second["msg"]
    assert server.counts["create"] == 1


async def test_extension_limit_is_an_option() -> None:
    """max_extensions=4 accepts four extensions in a chain and refuses the fifth."""
    async with FakeKieServer(max_extensions=4) as server:
        headers = {"Authorization": f"Bearer {server.api_key}", "User-Agent": "test/1"}
        url = f"{server.url}/api/v1/mj/generateVideoExtend"
        codes = []
        async with aiohttp.ClientSession(headers=headers) as session:
            task_id = server.add_source_video()
            for _ in range(5):
                async with session.post(url, json=_extend(task_id)) as answer:
                    envelope = await answer.json()
                codes.append(envelope["code"])
                if envelope["code"] == 200:
                    task_id = envelope["data"]["taskId"]
    assert codes == [200, 200, 200, 200, 422]
    assert server.counts["create"] == 4


async def test_duplicates_are_counted_per_kind(server: FakeKieServer, post: Raw) -> None:
    """duplicate_creates() counts a repeated create of one kind, never an upscale and a
    variation of the same image."""
    await post("generateUpscale", {"taskId": "t1", "imageIndex": 1})
    await post("generateVary", {"taskId": "t1", "imageIndex": 1})
    assert server.duplicate_creates() == 0
    await post("generateVary", {"taskId": "t1", "imageIndex": 1, "callBackUrl": "https://h/c"})
    assert server.duplicate_creates() == 1
    await post("generate", {"taskType": "mj_txt2img", "prompt": "go"})
    await post("generate", {"taskType": "mj_txt2img", "prompt": "go", "aspectRatio": "1:1"})
    assert server.duplicate_creates() == 1


async def test_the_standalone_server_serves_every_kind() -> None:
    """`python -m kie_async.testing --max-extensions 1` serves generate and extend, refuses a
    second extension in a chain, and prints its counts on SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kie_async.testing",
        "--max-extensions",
        "1",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        url = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
        async with KieClient(
            DEFAULT_API_KEY, base_url=url, rate_limit=None, poll=PollPolicy.zero_wait()
        ) as kie:
            video = GenerateRequest.video("waves", image_url=FRAME, batch_size=2)
            source = await (await kie.generate(video)).wait()
            assert len(source.result_urls) == 2
            once = await (await kie.extend_video(source.task_id, index=1)).wait()
            with pytest.raises(UnprocessableError, match="at most 1"):
                await kie.extend_video(once.task_id)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    counts = json.loads(out.decode().strip().splitlines()[-1])
    assert counts["create:generate"] == 1 and counts["create:extend"] == 1
    assert proc.returncode == 0
