"""The wire format: request bodies exactly as kie documents them, and records read leniently.

The payloads in ``tests/samples/`` are independent of our code. ``record_info_docs_example.json``
is the response example of kie.ai's "Get Midjourney Task Details" page
(https://docs.kie.ai/mj-api/get-mj-task-details), copied as published. The others are written by
hand from the documented field list and the quirks seen in real answers (result URLs as plain
strings or as a JSON string, zone-less times, ``"null"`` strings, undocumented flags).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from kie_async import (
    ExtendRequest,
    KieClient,
    TaskRecord,
    TaskStatus,
    UnexpectedResponseError,
)
from kie_async._protocol.wire import (
    json_object,
    lenient_int,
    nullable_str,
    parse_record,
    result_urls,
)
from kie_async.testing import FakeKieServer

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> dict[str, Any]:
    """The ``data`` object of a stored record-info answer."""
    envelope = json.loads((SAMPLES / name).read_text(encoding="utf-8"))
    assert envelope["code"] == 200
    data: dict[str, Any] = envelope["data"]
    return data


async def served(server: FakeKieServer, kie: KieClient, data: Mapping[str, Any]) -> TaskRecord:
    """Serve ``data`` verbatim over HTTP and read it back through the client."""
    task_id = str(data["taskId"])
    server.set_record(task_id, data)
    return await kie.get_task(task_id)


# -- requests on the wire -------------------------------------------------------------------------


async def test_manual_request_reaches_the_wire_as_documented(
    kie: KieClient, server: FakeKieServer
) -> None:
    """A manual extension is POSTed with exactly kie's keys and casing, and the bearer key."""
    await kie.extend_video(
        "src-1",
        index=2,
        prompt="The camera pulls back",
        watermark="acme",
        callback_url="https://example.com/hook",
    )
    sent = server.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/api/v1/mj/generateVideoExtend")
    assert sent.json == {
        "taskType": "mj_video_extend_manual",
        "taskId": "src-1",
        "index": 2,
        "prompt": "The camera pulls back",
        "waterMark": "acme",
        "callBackUrl": "https://example.com/hook",
    }
    assert sent.headers["Authorization"] == f"Bearer {server.api_key}"
    assert sent.headers["Content-Type"].startswith("application/json")


async def test_auto_request_omits_absent_fields(kie: KieClient, server: FakeKieServer) -> None:
    """An auto extension sends only taskType, taskId and index: unset fields are left out."""
    await kie.extend_video("src-1")
    sent = server.requests[-1]
    assert sent.json == {"taskType": "mj_video_extend_auto", "taskId": "src-1", "index": 0}
    assert sent.headers["Authorization"] == f"Bearer {server.api_key}"


async def test_submit_sends_the_request_body(kie: KieClient, server: FakeKieServer) -> None:
    """submit() sends an ExtendRequest's wire body and never its private key."""
    await kie.submit(ExtendRequest("src-2", 3, mode="auto", key="row-1"))
    assert server.requests[-1].json == {
        "taskType": "mj_video_extend_auto",
        "taskId": "src-2",
        "index": 3,
    }


def test_request_body_is_camel_case_and_sparse() -> None:
    """body() renames to kie's keys (waterMark, callBackUrl) and drops None values."""
    full = ExtendRequest("s", 1, "p", watermark="w", callback_url="http://h/cb", key="k")
    assert full.body() == {
        "taskId": "s",
        "index": 1,
        "prompt": "p",
        "taskType": "mj_video_extend_manual",
        "waterMark": "w",
        "callBackUrl": "http://h/cb",
    }
    assert ExtendRequest("s").body() == {
        "taskId": "s",
        "index": 0,
        "taskType": "mj_video_extend_auto",
    }


# -- lenient readers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("null", None), ("NULL", None), (" ", None), ("x", "x"), (7, "7")],
)
def test_nullable_str(value: object, expected: str | None) -> None:
    """kie's three spellings of "no value" become None; numbers become text."""
    assert nullable_str(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1), ("3", 3), (" 2 ", 2), (2.0, 2), (True, None), ("x", None), (None, None)],
)
def test_lenient_int(value: object, expected: int | None) -> None:
    """successFlag may come as an int or a numeric string; anything else is None."""
    assert lenient_int(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"resultUrls": [{"resultUrl": "https://a/0.mp4"}, {"resultUrl": "https://a/1.mp4"}]},
        {"resultUrls": ["https://a/0.mp4", "https://a/1.mp4"]},
        '{"resultUrls": [{"resultUrl": "https://a/0.mp4"}, "https://a/1.mp4"]}',
        '["https://a/0.mp4", "https://a/1.mp4"]',
        ["https://a/0.mp4", None, "null", {"resultUrl": ""}, "https://a/1.mp4"],
    ],
)
def test_result_urls_in_every_shape(value: object) -> None:
    """Result URLs come out as plain strings, in order, whatever shape kie used."""
    assert result_urls(value) == ("https://a/0.mp4", "https://a/1.mp4")


@pytest.mark.parametrize("value", [None, "", "null", 5, {}, {"resultUrls": None}, "{broken"])
def test_result_urls_empty(value: object) -> None:
    """Missing or unreadable result URLs are an empty tuple, never an exception."""
    assert result_urls(value) == ()


def test_json_object_accepts_object_or_string() -> None:
    """paramJson is read from an object or a JSON string; anything else is None."""
    assert json_object({"a": 1}) == {"a": 1}
    assert json_object('{"a": 1}') == {"a": 1}
    assert json_object("{nope") is None
    assert json_object("[1, 2]") is None


def test_parse_record_rejects_a_non_object() -> None:
    """A record whose data is not an object raises our UnexpectedResponseError."""
    with pytest.raises(UnexpectedResponseError):
        parse_record(["not", "a", "record"])


def test_parse_record_without_task_id_uses_the_asked_id() -> None:
    """A record without taskId takes the id that was asked about; with neither, it is refused."""
    assert parse_record({"successFlag": 0}, task_id="asked").task_id == "asked"
    with pytest.raises(UnexpectedResponseError):
        parse_record({"successFlag": 0})


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        (None, "taskId is missing"),
        ("", "taskId is empty"),
        ("null", "taskId is empty"),
        (["sk-secret"], "taskId is a list, not a string"),
        (True, "taskId is a bool, not a string"),
        (1.5, "taskId is a float, not a string"),
    ],
)
def test_parse_record_names_what_is_wrong_with_the_task_id(given: object, reason: str) -> None:
    """An unusable taskId, with no id asked about, is refused naming the field, not its value."""
    with pytest.raises(UnexpectedResponseError) as caught:
        parse_record({"taskId": given, "successFlag": 1})
    assert caught.value.message == f"record data cannot be read: {reason}"


# -- records from independent samples, over HTTP --------------------------------------------------


async def test_docs_example_parses(kie: KieClient, server: FakeKieServer) -> None:
    """kie's published record-info example parses: object URLs, ISO times, null errors."""
    data = sample("record_info_docs_example.json")
    record = await served(server, kie, data)
    assert record.task_id == "4edb3c5XXXXX75e3f0aa5cc"
    assert record.task_type == "mj_txt2img"
    assert record.status is TaskStatus.SUCCESS
    assert record.result_urls == tuple(
        f"https://tempfile.aiquickdraw.com/v/42ea4a4250571eb18361bd2e309c8e8a_0_{i}.jpeg"
        for i in range(4)
    )
    assert record.created_at == datetime(2024, 3, 20, 10, 30, tzinfo=timezone.utc)
    assert record.completed_at == record.created_at
    assert record.created_at_raw == "2024-03-20T10:30:00Z"
    assert record.error_code is None
    assert record.error_message is None
    assert record.params is not None
    assert record.params["aspectRatio"] == "16:9"
    assert record.params["stylization"] == 1
    assert record.data == data


async def test_string_urls_and_zoneless_times_parse(kie: KieClient, server: FakeKieServer) -> None:
    """Plain-string URLs, zone-less times and "null"/"" error fields are read correctly."""
    record = await served(server, kie, sample("record_info_extend_string_urls.json"))
    assert record.result_urls == (
        "https://tempfile.aiquickdraw.com/v/9c0f6a2b7d31e4f58a6b0c1d2e3f4a5b_0.mp4",
        "https://tempfile.aiquickdraw.com/v/9c0f6a2b7d31e4f58a6b0c1d2e3f4a5b_1.mp4",
    )
    # zone-less times are kie's UTC+8 wall clock (real-samples O16), returned in UTC
    assert record.created_at == datetime(2026, 1, 6, 0, 17, 4, tzinfo=timezone.utc)
    assert record.completed_at == datetime(2026, 1, 6, 0, 21, 37, tzinfo=timezone.utc)
    assert record.created_at_raw == "2026-01-06 08:17:04"
    assert record.error_code is None
    assert record.error_message is None
    assert record.params is not None
    assert record.params["index"] == 1
    assert record.params["prompt"] == "The camera pulls back to reveal a nebula"


async def test_result_info_as_json_string_parses(kie: KieClient, server: FakeKieServer) -> None:
    """A resultInfoJson sent as a JSON string yields the same URLs as an object would."""
    record = await served(server, kie, sample("record_info_extend_json_string_result.json"))
    assert record.result_urls == tuple(
        f"https://tempfile.aiquickdraw.com/v/1f2e3d4c_{i}.mp4" for i in range(4)
    )
    assert record.task_type == "mj_video_extend_auto"
    assert record.error_message is None
    assert record.params == {
        "taskType": "mj_video_extend_auto",
        "taskId": "ee603959debb48d0a7b3c1f2e4d5a6b7",
        "index": 0,
    }


async def test_generation_failed_record_parses(kie: KieClient, server: FakeKieServer) -> None:
    """successFlag 3 reads as GENERATION_FAILED with kie's error code and message."""
    record = await served(server, kie, sample("record_info_generation_failed.json"))
    assert record.status is TaskStatus.GENERATION_FAILED
    assert record.result_urls == ()
    assert record.error_code == "400"
    assert record.error_message == "Your prompt was flagged by the content moderation system"


async def test_odd_record_parses_without_failing(kie: KieClient, server: FakeKieServer) -> None:
    """A garbage time, unreadable paramJson and an unknown flag give None/UNKNOWN, not errors."""
    record = await served(server, kie, sample("record_info_odd.json"))
    assert record.status is TaskStatus.UNKNOWN
    assert record.success_flag == 7
    assert record.created_at is None
    assert record.created_at_raw == "yesterday, around noon"
    assert record.completed_at is None
    assert record.params is None
    assert record.result_urls == ()
    assert record.error_code is None
    assert record.error_message is None


async def test_numeric_string_flag_parses(kie: KieClient, server: FakeKieServer) -> None:
    """A successFlag sent as the string "1" still means success."""
    record = await served(server, kie, {"taskId": "t-str", "successFlag": "1"})
    assert record.status is TaskStatus.SUCCESS


@pytest.mark.parametrize(
    "name",
    [
        "record_info_docs_example.json",
        "record_info_extend_string_urls.json",
        "record_info_extend_json_string_result.json",
        "record_info_generation_failed.json",
        "record_info_odd.json",
    ],
)
def test_pure_parse_matches_samples(name: str) -> None:
    """parse_record() reads every sample's data without a network round trip."""
    data = sample(name)
    record = parse_record(data)
    assert record.task_id == data["taskId"]
    assert record.success_flag == lenient_int(data["successFlag"])


def test_record_with_garbled_task_id_takes_the_id_asked_about() -> None:
    """A taskId that is a list or an object is replaced by the id the poll asked about."""
    for garbled in ([], {}, True, ["x"]):
        record = parse_record({"taskId": garbled, "successFlag": 1}, task_id="asked")
        assert record.task_id == "asked"


def test_absurdly_nested_json_strings_do_not_sink_the_record() -> None:
    """paramJson and resultInfoJson nested past the recursion limit are ignored, not fatal."""
    deep = "[" * 100_000 + "]" * 100_000
    record = parse_record(
        {"taskId": "t", "successFlag": 1, "paramJson": deep, "resultInfoJson": deep}
    )
    assert record.params is None
    assert record.result_urls == ()
    assert record.status is TaskStatus.SUCCESS
