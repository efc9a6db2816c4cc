"""Property-based tests: random and mutated payloads never crash the parsers.

Whatever kie.ai (or a proxy, or a stranger posting to a callback URL) sends, the outcome is a
value or a kie_async error: never a KeyError, TypeError, AttributeError, JSONDecodeError or a
cattrs exception.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kie_async import ExtendMode, ExtendRequest, KieError, TaskRecord, TaskStatus, ValidationError
from kie_async._protocol.envelope import RECORD_PATH, decipher, parse_retry_after
from kie_async._protocol.wire import parse_record
from kie_async._retry import Schedule, next_delay

settings.register_profile(
    "kie-properties",
    database=None,  # nothing is written into the repository
    deadline=None,  # loopback-free pure code, but CI machines stall now and then
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("kie-properties")

# -- strategies ----------------------------------------------------------------------------

#: Text as JSON can carry it: ``"\\ud800"`` escapes decode to lone surrogates.
wild_text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=20)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | wild_text
    | st.sampled_from(["null", "", "None", " 1 ", "200", "1", "3", "NaN", "{", "[", "[]", "{}"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=16,
)


def _as_json_text(value: Any) -> str:
    return json.dumps(value)


json_text = json_values.map(_as_json_text)

url_item = st.one_of(
    st.just("https://cdn.example/v.mp4"),
    st.text(max_size=30),
    st.fixed_dictionaries({"resultUrl": json_values}),
    st.fixed_dictionaries({"url": json_values}),
    json_values,
)
result_info = st.one_of(
    st.fixed_dictionaries({"resultUrls": st.lists(url_item, max_size=4) | json_values}),
    st.lists(url_item, max_size=4),
    st.fixed_dictionaries({"resultUrls": st.lists(url_item, max_size=4)}).map(json.dumps),
    st.text(max_size=40),
    json_values,
)
times = st.one_of(
    st.sampled_from(
        [
            "2024-03-20T10:30:00Z",
            "2026-01-06 08:17:04",
            "1700000000",
            "1700000000000",
            "99999999999999",
            "0000-00-00 00:00:00",
            "2024-13-45T99:99:99",
            "null",
        ]
    ),
    st.text(max_size=30),
    json_values,
)
flags = st.one_of(st.sampled_from([0, 1, 2, 3, 4, -1, "1", "2", " 3 ", "x", 1.0, 1.5]), json_values)

#: A record-info ``data`` object: every documented field, each present or not, each either a
#: plausible value or anything at all, plus stray keys.
records = st.fixed_dictionaries(
    {},
    optional={
        "taskId": st.one_of(st.sampled_from(["task-1", "t\ud800"]), wild_text, json_values),
        "taskType": st.one_of(st.sampled_from([m.value for m in ExtendMode]), json_values),
        "paramJson": st.one_of(json_text, json_values),
        "createTime": times,
        "completeTime": times,
        "successFlag": flags,
        "resultInfoJson": result_info,
        "errorCode": st.one_of(st.sampled_from(["null", "", "400"]), json_values),
        "errorMessage": st.one_of(st.sampled_from(["null", "", "boom"]), json_values),
        "extra": json_values,
    },
)

codes = st.one_of(
    st.sampled_from([200, 400, 401, 402, 404, 422, 429, 455, 500, 501, 502, 505, 999, -1]),
    st.sampled_from(["200", "429", " 500 ", "abc", "", "null"]),
    json_values,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "code": codes,
        "msg": st.one_of(
            st.text(max_size=30), json_values, st.sampled_from(["recordInfo is null"])
        ),
        "data": st.one_of(records, json_values, st.fixed_dictionaries({"taskId": json_values})),
    },
)
statuses = st.one_of(
    st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 422, 429, 455, 500, 502, 503, 504]),
    st.integers(min_value=100, max_value=599),
)
retry_after_values = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.sampled_from(
        ["0", "2", "2.5", "-3", "1e400", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"]
    ),
    st.integers(min_value=-(10**6), max_value=10**12).map(str),
    st.datetimes(timezones=st.just(timezone.utc)).map(lambda d: format_datetime(d, usegmt=True)),
)


@st.composite
def mutated_bytes(draw: st.DrawFn, source: st.SearchStrategy[Any]) -> bytes:
    """JSON bytes of a drawn value, then maybe cut short, corrupted, or re-encoded."""
    raw = json.dumps(draw(source)).encode()
    how = draw(st.sampled_from(["intact", "cut", "flip", "insert", "utf16", "html", "empty"]))
    if how == "cut" and raw:
        raw = raw[: draw(st.integers(min_value=0, max_value=len(raw) - 1))]
    elif how == "flip" and raw:
        at = draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    elif how == "insert":
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=8)) + raw[at:]
    elif how == "utf16":
        raw = raw.decode().encode("utf-16")
    elif how == "html":
        raw = b"<html><body>502 Bad Gateway</body></html>"
    elif how == "empty":
        raw = b""
    return raw


# -- decipher ------------------------------------------------------------------------------


@PROFILE
@given(
    status=statuses,
    body=mutated_bytes(envelopes),
    retry_after=retry_after_values,
    endpoint=st.sampled_from(["", RECORD_PATH, "/api/v1/mj/generateVideoExtend"]),
)
def test_decipher_returns_data_or_raises_a_kie_error(
    status: int, body: bytes, retry_after: str | None, endpoint: str
) -> None:
    """Any status, body and Retry-After give the envelope's data or a KieError, nothing else."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    try:
        decipher(status, headers, body, endpoint=endpoint)
    except KieError as exc:
        str(exc), repr(exc)  # every error renders
        seconds = getattr(exc, "retry_after", None)
        assert seconds is None or (math.isfinite(seconds) and seconds >= 0)
    else:
        assert 200 <= status < 300, "only a 2xx answer may count as success"


@PROFILE
@given(body=st.binary(max_size=200), status=statuses)
def test_decipher_survives_arbitrary_bytes(body: bytes, status: int) -> None:
    """Random bytes (not even JSON) never escape decipher as a foreign exception."""
    with contextlib.suppress(KieError):
        decipher(status, {}, body)


def test_decipher_survives_deep_nesting() -> None:
    """JSON nested deeper than Python's recursion limit is an unexpected answer, not a crash."""
    for body in (b"[" * 100_000, b'{"code": 200, "data": ' + b"[" * 100_000):
        try:
            decipher(200, {}, body)
        except KieError:
            continue
        raise AssertionError("a bottomless body was accepted")


# -- parse_record --------------------------------------------------------------------------


def _check_record(record: TaskRecord) -> None:
    assert isinstance(record.task_id, str) and record.task_id
    assert isinstance(record.status, TaskStatus)
    assert all(isinstance(url, str) and url for url in record.result_urls)
    assert record.error_code is None or isinstance(record.error_code, str)
    assert record.error_message is None or isinstance(record.error_message, str)
    repr(record)


@PROFILE
@given(data=records, asked=st.sampled_from(["", "asked-id"]))
def test_parse_record_of_mutated_records(data: dict[str, Any], asked: str) -> None:
    """A record-info data object with any field missing or malformed gives a sane TaskRecord
    or an UnexpectedResponseError (a KieError)."""
    try:
        record = parse_record(data, task_id=asked, endpoint=RECORD_PATH)
    except KieError:
        # Leniency: every field but the task id has a fallback, so a record whose id is
        # missing or nullish parses whenever the id that was asked about is known.
        assert not (asked and data.get("taskId") in (None, "", "null")), data
        return
    _check_record(record)


@PROFILE
@given(data=json_values)
def test_parse_record_of_anything(data: Any) -> None:
    """Any JSON value at all as record data gives a TaskRecord or a KieError."""
    try:
        record = parse_record(data, task_id="t", endpoint=RECORD_PATH)
    except KieError:
        return
    _check_record(record)


def test_parse_record_survives_deep_json_strings() -> None:
    """paramJson and resultInfoJson holding bottomless JSON text give a KieError at worst."""
    deep = "[" * 100_000
    try:
        record = parse_record(
            {"taskId": "t", "paramJson": deep, "resultInfoJson": deep, "successFlag": 1}
        )
    except KieError:
        return
    assert record.params is None


# -- callbacks -----------------------------------------------------------------------------

NOW = 1_700_000_000

callback_payloads = st.fixed_dictionaries(
    {},
    optional={
        "code": codes,
        "msg": json_values,
        "data": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "taskId": st.one_of(
                        st.sampled_from(["t1", "t\ud800", "\udfff"]), wild_text, json_values
                    ),
                    "promptJson": st.one_of(json_text, json_values),
                    "resultUrls": st.one_of(st.lists(url_item, max_size=3), json_values),
                    "resultInfoJson": result_info,
                },
            ),
            json_values,
        ),
    },
)


@PROFILE
@given(
    payload=st.one_of(
        mutated_bytes(callback_payloads),
        callback_payloads,
        mutated_bytes(callback_payloads).map(lambda b: b.decode("utf-8", "replace")),
        json_values,
    ),
    key=st.one_of(st.text(min_size=1, max_size=12), st.binary(min_size=1, max_size=12)),
    timestamp=st.one_of(
        st.none(),
        st.integers(NOW - 600, NOW + 600),
        st.integers(NOW - 600, NOW + 600).map(str),
        st.integers(),
        wild_text,
        st.sampled_from(["1e999", "nan", " 1700000000 "]),
    ),
    signature=st.one_of(
        st.none(), wild_text, st.just("c/ttoTFH+mM/kCJ2sdGtg/eq3IKiIHqrXJ6h19vH51s=")
    ),
)
def test_callback_parser_and_signature_check(
    payload: Any, key: str | bytes, timestamp: int | str | None, signature: str | None
) -> None:
    """A callback body of any shape parses to an event or raises a KieError, and checking its
    signature with any headers answers True or False without raising."""
    from kie_async.callbacks import CallbackEvent, parse_callback, verify_signature

    try:
        event = parse_callback(payload)
    except KieError:
        return
    assert isinstance(event, CallbackEvent)
    assert isinstance(event.task_id, str) and event.task_id.strip()
    assert all(isinstance(url, str) for url in event.result_urls)
    repr(event)
    assert verify_signature(key, event.task_id, timestamp, signature, now=NOW) in (True, False)


def test_signature_check_of_a_lone_surrogate_task_id() -> None:
    """A callback whose taskId carries a lone surrogate (a JSON \\ud800 escape) is judged
    unsigned, not a crash."""
    from kie_async.callbacks import parse_callback, verify_signature

    event = parse_callback(b'{"code": 200, "data": {"taskId": "t\\ud800"}}')
    assert event.task_id == "t\ud800"
    assert verify_signature("key", event.task_id, NOW, "c2ln", now=NOW) is False


# -- requests ------------------------------------------------------------------------------

REQUEST_FIELDS = {"task_id", "index", "prompt", "mode", "watermark", "callback_url", "key"}


@PROFILE
@given(
    task_id=st.one_of(st.just("ee603959"), st.text(max_size=12), json_values),
    index=st.one_of(st.integers(-2, 6), json_values),
    prompt=st.one_of(st.none(), st.just("Into a nebula"), st.text(max_size=30), json_values),
    mode=st.one_of(st.none(), st.sampled_from(["manual", "auto", "MANUAL", "x"]), json_values),
    watermark=st.one_of(st.none(), st.text(max_size=8), json_values),
    callback_url=st.one_of(
        st.none(), st.just("https://example.com/cb"), st.text(max_size=30), json_values
    ),
    key=st.one_of(st.none(), st.text(max_size=8), json_values),
)
def test_extend_request_accepts_or_names_the_field(**fields: Any) -> None:
    """Any arguments build a valid ExtendRequest or raise a ValidationError naming one of its
    fields, never a TypeError or AttributeError."""
    task_id = fields.pop("task_id")
    try:
        request = ExtendRequest(task_id, **fields)
    except ValidationError as exc:
        rejected = exc
    else:
        assert request.fingerprint()
        request.describe()
        return
    assert rejected.field in REQUEST_FIELDS
    assert rejected.field in str(rejected)


# -- waiting -------------------------------------------------------------------------------


@PROFILE
@given(value=retry_after_values)
def test_retry_after_parses_to_a_finite_delay_or_none(value: str | None) -> None:
    """A Retry-After header of any text is a finite number of seconds >= 0, or None."""
    seconds = parse_retry_after(value, now=datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp())
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


finite = st.floats(min_value=0, max_value=1000, allow_nan=False)


@PROFILE
@given(
    initial=finite,
    factor=st.floats(min_value=1, max_value=100),
    cap=finite,
    jitter=st.floats(min_value=0, max_value=0.5),
    retry_after_cap=finite,
    retry_after=st.one_of(st.none(), finite, st.just(float("inf")), st.just(-1.0)),
    seed=st.integers(0, 2**32),
    steps=st.integers(1, 40),
)
def test_backoff_delays_are_capped_and_honour_retry_after(
    initial: float,
    factor: float,
    cap: float,
    jitter: float,
    retry_after_cap: float,
    retry_after: float | None,
    seed: int,
    steps: int,
) -> None:
    """Every delay is within [0, max(cap, retry-after cap)], and never shorter than the
    server's Retry-After (capped) whatever the jitter."""
    schedule = Schedule(initial, factor, cap, jitter, retry_after_cap)
    rng = random.Random(seed)

    class Failure:
        pass

    failure = Failure()
    failure.retry_after = retry_after  # type: ignore[attr-defined]
    base = initial
    for _ in range(steps):
        delay = next_delay(schedule, base, failure, rng)
        assert 0 <= delay <= max(cap, retry_after_cap)
        if retry_after is not None and retry_after > 0 and retry_after_cap > 0:
            assert delay >= min(retry_after, retry_after_cap)
        base = min(base * factor, cap * factor + 1)
