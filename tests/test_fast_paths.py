"""The fast lanes that change the shape of the work give what the full reading gives: a poll
that says "still generating" is skipped only when the full parser would read it as GENERATING,
and the lanes of result URLs and of the envelope change no answer. Every quirk of kie's record
payloads goes through the one parser: read, or refused with a kie_async error."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from helpers import tasks_created
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import records

from kie_async import (
    ExtendRequest,
    KieClient,
    KieError,
    PollPolicy,
    TaskRecord,
    TaskStatus,
    TaskTimeoutError,
    UnexpectedResponseError,
)
from kie_async._protocol.envelope import decipher
from kie_async._protocol.records import parse_time
from kie_async._protocol.wire import (
    _PLAIN_HTTPS,
    _parsed_is_web_url,
    is_web_url,
    lenient_int,
    parse_record,
    still_generating,
)
from kie_async._tasks.submit import record_of
from kie_async.testing import FakeKieServer, TaskScript, fast_client


def assert_read_or_refused(data: object, task_id: str = "t1") -> TaskRecord | None:
    """A record-info ``data`` (``task_id`` asked about) is read into a record, every field of
    it readable, or refused with :class:`UnexpectedResponseError`; the data is left unchanged."""
    before = copy.deepcopy(data)
    try:
        record = parse_record(data, task_id=task_id, endpoint="/x")
    except UnexpectedResponseError:
        record = None
    else:
        assert record.task_id
        assert record.data is data
        repr(record)
        for name in ("status", "params", "result_urls", "created_at", "completed_at"):
            getattr(record, name)
    assert data == before  # the parser changes nothing it was given
    return record


QUIRKS: list[dict[str, Any]] = [
    {"taskId": "t1", "successFlag": 0},
    {"taskId": "t1", "successFlag": "0"},
    {"taskId": "t1", "successFlag": " 1 "},
    {"taskId": "t1", "successFlag": True},
    {"taskId": "t1", "successFlag": 1.0},
    {"taskId": "t1", "successFlag": 7},
    {"taskId": "t1"},
    {"taskId": 12345, "successFlag": 1},
    {"taskId": "", "successFlag": 1},
    {"taskId": "null", "successFlag": 1},
    {"taskId": ["x"], "successFlag": 1},
    {"successFlag": 1},
    {"taskId": "t1", "successFlag": 1, "errorCode": "null", "errorMessage": "NULL "},
    {"taskId": "t1", "successFlag": 2, "errorCode": 400, "errorMessage": ""},
    {"taskId": "t1", "successFlag": 2, "errorCode": {"a": 1}, "errorMessage": ["x"]},
    {"taskId": "t1", "successFlag": 1, "resultInfoJson": {"resultUrls": [{"resultUrl": "u"}]}},
    {"taskId": "t1", "successFlag": 1, "resultInfoJson": {"resultUrls": ["u1", "u2"]}},
    {"taskId": "t1", "successFlag": 1, "resultInfoJson": '{"resultUrls": [{"resultUrl": "u"}]}'},
    {"taskId": "t1", "successFlag": 1, "resultInfoJson": {"resultUrls": [{"url": "u"}]}},
    {"taskId": "t1", "successFlag": 1, "resultInfoJson": {"resultUrls": [{"resultUrl": ""}]}},
    {
        "taskId": "t1",
        "successFlag": 1,
        "resultInfoJson": {"resultUrls": [{"resultUrl": "u", "extra": 1}]},
    },
    {"taskId": "t1", "successFlag": 1, "resultInfoJson": {"result_urls": ["u"]}},
    {"taskId": "t1", "successFlag": 1, "resultInfoJson": "https://cdn.example/v.mp4"},
    {"taskId": "t1", "successFlag": 1, "resultInfoJson": '{"resultUrls": [{"resu'},
    {"taskId": "t1", "successFlag": 1, "resultInfoJson": None},
    {"taskId": "t1", "successFlag": 1, "resultInfoJson": {"resultUrls": None}},
    {"taskId": "t1", "successFlag": 1, "paramJson": '{"taskId": "src", "index": 0}'},
    {"taskId": "t1", "successFlag": 1, "paramJson": {"taskId": "src"}},
    {"taskId": "t1", "successFlag": 1, "paramJson": "not json"},
    {"taskId": "t1", "successFlag": 1, "paramJson": "[1, 2]"},
    {"taskId": "t1", "successFlag": 1, "paramJson": None},
    {"taskId": "t1", "successFlag": 1, "createTime": "2024-03-20T10:30:00Z"},
    {"taskId": "t1", "successFlag": 1, "createTime": "2026-01-06 08:17:04"},
    {"taskId": "t1", "successFlag": 1, "createTime": "1767687424000"},
    {"taskId": "t1", "successFlag": 1, "createTime": "yesterday", "completeTime": ""},
    {"taskId": "t1", "successFlag": 1, "createTime": 1767687424, "completeTime": 1.5},
    {"taskId": "t1", "successFlag": 1, "taskType": "mj_video_extend_auto", "extra": [1]},
    {"taskId": "t1", "successFlag": 1, "taskType": False},
]


@pytest.mark.parametrize("data", QUIRKS, ids=lambda d: json.dumps(d)[:60])
def test_every_quirk_is_read_or_refused(data: dict[str, Any]) -> None:
    """Each quirk of kie's payloads gives a record of the task asked about, or a kie_async
    error (never a KeyError, TypeError or a record of another task)."""
    assert_read_or_refused(data)
    assert_read_or_refused(data, task_id="")


def test_the_usual_shapes_are_read_field_by_field() -> None:
    """kie's usual finished record (strings, an int flag, result URLs as objects,
    ``paramJson`` as a JSON string) is read into every field."""
    data = {
        "taskId": "t1",
        "taskType": "mj_video_extend_manual",
        "successFlag": 1,
        "resultInfoJson": {"resultUrls": [{"resultUrl": "https://cdn.example/v.mp4"}]},
        "paramJson": '{"taskId": "src", "index": 0}',
        "createTime": "2026-01-06 08:17:04",
        "completeTime": "null",
        "errorCode": None,
        "errorMessage": "",
    }
    assert_read_or_refused(data)
    record = record_of(data, "t1")
    assert record.status is TaskStatus.SUCCESS
    assert record.result_urls == ("https://cdn.example/v.mp4",)
    assert record.params == {"taskId": "src", "index": 0}
    assert record.task_type == "mj_video_extend_manual"
    assert record.created_at is not None and record.completed_at is None
    assert record.error_code is None and record.error_message is None


@pytest.mark.parametrize("data", [None, [], "text", 3, (("taskId", "t"), ("successFlag", 0))])
def test_a_record_that_is_not_an_object_is_refused(data: object) -> None:
    """data that is not an object is refused with a kie_async error."""
    assert assert_read_or_refused(data) is None
    assert assert_read_or_refused(data, task_id="") is None


def test_a_record_of_another_task_is_refused() -> None:
    """An answer about another task is never taken for the asked task's state."""
    with pytest.raises(UnexpectedResponseError, match="not 'asked'"):
        record_of({"taskId": "other", "successFlag": 1}, "asked")


def test_a_still_generating_poll_is_recognised_from_its_flag_alone() -> None:
    """successFlag 0 (or "0") says still generating; anything else, or no object, does not."""
    assert still_generating({"taskId": "t", "successFlag": 0})
    assert still_generating({"successFlag": " 0 "})
    for data in (
        {"successFlag": 1},
        {"successFlag": False},
        {"successFlag": None},
        {},
        {"successFlag": 0.5},
        None,
        [0],
        "0",
    ):
        assert not still_generating(data), data


usual_text = st.one_of(st.none(), st.sampled_from(["", "null", " Null ", "x", "400"]), st.text())
usual_records = st.fixed_dictionaries(
    {"taskId": st.text(min_size=1)},
    optional={
        "taskType": usual_text,
        "paramJson": st.one_of(
            st.none(),
            st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(json.dumps),
            st.text(max_size=10),
        ),
        "createTime": st.one_of(usual_text, st.sampled_from(["2026-01-06 08:17:04"])),
        "completeTime": st.one_of(usual_text, st.sampled_from(["2024-03-20T10:30:00Z"])),
        "successFlag": st.one_of(st.none(), st.integers(min_value=-2, max_value=5)),
        "resultInfoJson": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {"resultUrls": st.lists(st.fixed_dictionaries({"resultUrl": usual_text}))}
            ),
        ),
        "errorCode": usual_text,
        "errorMessage": usual_text,
    },
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(records, usual_records), asked=st.sampled_from(["", "asked-id"]))
def test_generated_payloads_are_read_or_refused(data: dict[str, Any], asked: str) -> None:
    """On any record-info data, usual or mangled, a poll gives a record of the task asked
    about or a kie_async error."""
    assert_read_or_refused(data, task_id=asked)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(records, usual_records))
def test_data_taken_for_still_generating_always_parses_as_generating(data: dict[str, Any]) -> None:
    """Whenever the fast path skips a poll's record, the full parser would have built a
    GENERATING record from it without error: skipping it changes nothing."""
    if still_generating(data):
        record = parse_record(data, task_id="asked")
        assert record.status is TaskStatus.GENERATING


@given(text=st.text(max_size=30))
def test_cached_time_parsing_is_the_same_as_parsing(text: str) -> None:
    """parse_time gives the same answer for a string the first time and every time after."""
    first = parse_time(text)
    assert parse_time(text) == first
    assert parse_time(" " + text) == first


def quick() -> PollPolicy:
    return PollPolicy.zero_wait(timeout=0.3)


async def test_last_record_of_a_still_generating_task_is_the_full_record(
    kie: KieClient, server: FakeKieServer
) -> None:
    """After polls that said "still generating", last_record and the time-out's record are the
    record get_task() builds with the full parser."""
    server.default_script = TaskScript(polls=10**6)
    handle = await kie.extend_video("src", 0, "go")
    with pytest.raises(TaskTimeoutError) as timed_out:
        await handle.wait(poll=quick())
    assert timed_out.value.record is not None
    assert timed_out.value.record.status is TaskStatus.GENERATING
    fetched = await kie.get_task(handle.task_id)
    assert timed_out.value.record == fetched
    assert timed_out.value.record.params == fetched.params
    assert handle.last_record is timed_out.value.record
    assert repr(handle) == f"<TaskHandle {handle.task_id} GENERATING>"


async def test_finished_poll_after_generating_ones_gives_the_full_record(
    server: FakeKieServer,
) -> None:
    """A wait over still-generating polls ends with the record the full parser builds, in a
    single wait and in a bulk run."""
    server.default_script = TaskScript(polls=3, videos=2)
    async with fast_client(server) as kie:
        handle = await kie.extend_video("src", 0, "go")
        record = await handle
        again = await kie.get_task(handle.task_id)
        assert record == again
        assert record.params == again.params
        assert len(record.result_urls) == 2
        outcomes = [o async for o in kie.extend_many([ExtendRequest("src", 1, "more")])]
        assert outcomes[0].record == await kie.get_task(outcomes[0].task_id or "")


async def test_a_bulk_run_makes_no_asyncio_task_per_poll(server: FakeKieServer) -> None:
    """The bulk poller polls from a fixed set of pollers: 300 tasks x 3 polls create a few
    dozen asyncio tasks in kie_async's bulk modules, not one per poll."""
    server.default_script = TaskScript(polls=2)
    requests = [ExtendRequest("src", i % 4, f"clip {i}") for i in range(300)]
    with tasks_created() as created:
        async with fast_client(server, max_connections=8) as kie:
            outcomes = [o async for o in kie.extend_many(requests, concurrency=50)]
    assert all(o.ok for o in outcomes) and len(outcomes) == 300
    assert server.counts["request:record"] == 900
    bulk_modules = ("_bulk.py", "_bulk_run.py", "_bulk_poller.py")
    in_bulk = sum(1 for name in created if name.endswith(bulk_modules))
    assert in_bulk <= 2 * 8 + 5, in_bulk


# -- the fast lane of result URLs and of the envelope -----------------------------------------

_URL_CHARS = "abcXYZ019.-_~:/?#[]@!$&'()*+,;=%\\\"<>{}|^`"
plain_urls = st.builds(
    lambda host, tail: f"https://{host}{tail}",
    st.text("abcdefXYZ0129.-", min_size=1, max_size=20),
    st.one_of(st.just(""), st.text(_URL_CHARS, max_size=30).map(lambda t: "/" + t)),
)
any_urls = st.one_of(
    plain_urls,
    st.text(_URL_CHARS, max_size=40).map(lambda t: "https://" + t),
    st.text(_URL_CHARS + "HTPShtps", max_size=40),
)


@settings(max_examples=500)
@given(value=any_urls)
def test_the_plain_https_lane_agrees_with_urlsplit(value: str) -> None:
    """A URL is_web_url takes by its fast lane (``https://`` and a plain host) is one the full
    reading by ``urlsplit`` takes too; every other URL gets the full reading."""
    if not value.isprintable() or " " in value:
        assert not is_web_url(value)
    elif _PLAIN_HTTPS.match(value):
        assert _parsed_is_web_url(value)
        assert is_web_url(value)
    else:
        assert is_web_url(value) is _parsed_is_web_url(value)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://cdn.example.com/a.mp4", True),
        ("https://cdn.example.com", True),
        ("https://cdn.example.com?x=1", True),
        ("https://cdn.example.com:443/a.mp4", True),  # a port: the full reading
        ("https://cdn.example.com:99999/a.mp4", False),
        ("https://user@cdn.example.com/a.mp4", True),
        ("https:///a.mp4", False),
        ("https://", False),
        ("javascript:alert(1)//https://x.example/", False),
        ("HTTPS://cdn.example.com/a.mp4", True),
        ("http://cdn.example.com/a.mp4", False),
        ("http://127.0.0.1:8765/a.mp4", True),
    ],
)
def test_result_urls_are_judged_as_before(url: str, ok: bool) -> None:
    """The usual and the unusual URLs, with the fast lane in place."""
    assert is_web_url(url) is ok


_CODES = [200, "200", " 200 ", 200.0, True, 1, 201, 0, None, "null", "x", 429, 500, 455]


@settings(max_examples=400)
@given(
    code=st.sampled_from([*_CODES, "absent"]),
    status=st.sampled_from([200, 201, 204, 299, 300, 302, 400, 404, 429, 500, 502]),
    data=st.one_of(st.none(), st.just({"taskId": "t1"}), st.just([1, 2]), st.just("text")),
)
def test_the_envelope_fast_lane_changes_no_answer(code: object, status: int, data: object) -> None:
    """decipher gives the data exactly when the envelope's code reads as 200 (an int, a
    numeric string, a whole float) in a 2xx answer, and raises a kie_async error otherwise:
    the fast lane for an int 200 gives what the full reading gives."""
    envelope: dict[str, object] = {"msg": "m", "data": data}
    if code != "absent":
        envelope["code"] = code
    body = json.dumps(envelope).encode()
    readable = code != "absent" and lenient_int(code) == 200
    try:
        got = decipher(status, {}, body, endpoint="/x")
    except KieError:
        assert not (readable and 200 <= status < 300)
    else:
        assert readable and 200 <= status < 300
        assert got == data
