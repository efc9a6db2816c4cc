"""The models: ExtendRequest's rules, TaskStatus's meaning, and lenient time parsing."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import attrs
import pytest

from kie_async import ExtendMode, ExtendRequest, TaskRecord, TaskStatus, ValidationError
from kie_async._kinds.common import MAX_PROMPT_LENGTH
from kie_async._protocol.records import parse_time


def test_prompt_makes_a_manual_request() -> None:
    """A request with a prompt is manual, one without is auto, unless the mode says otherwise."""
    assert ExtendRequest("src", 1, "go on").mode is ExtendMode.MANUAL
    assert ExtendRequest("src").mode is ExtendMode.AUTO
    assert ExtendRequest("src", prompt="go on", mode="manual").mode is ExtendMode.MANUAL
    assert ExtendRequest("src", mode=ExtendMode.AUTO).mode is ExtendMode.AUTO


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("manual", ExtendMode.MANUAL),
        (" AUTO ", ExtendMode.AUTO),
        ("mj_video_extend_manual", ExtendMode.MANUAL),
        ("mj_video_extend_auto", ExtendMode.AUTO),
    ],
)
def test_mode_accepts_short_and_wire_names(text: str, mode: ExtendMode) -> None:
    """ExtendMode reads the short names (any case) and kie's wire values."""
    assert ExtendMode(text) is mode


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_every_documented_index_is_accepted(index: int) -> None:
    """Indexes 0 to 3 address the videos of a 1-, 2- or 4-video record."""
    assert ExtendRequest("src", index).index == index


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"task_id": ""}, "task_id"),
        ({"task_id": "   "}, "task_id"),
        ({"task_id": "has space"}, "task_id"),
        ({"task_id": 123}, "task_id"),
        ({"index": "1"}, "index"),
        ({"index": 1.0}, "index"),
        ({"index": True}, "index"),
        ({"index": -1}, "index"),
        ({"index": 4}, "index"),
        ({"mode": "manual"}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * (MAX_PROMPT_LENGTH + 1)}, "prompt"),
        ({"prompt": "go on", "mode": "auto"}, "prompt"),
        ({"mode": "sideways"}, "mode"),
        ({"callback_url": "example.com/hook"}, "callback_url"),
        ({"callback_url": "/hook"}, "callback_url"),
        ({"callback_url": "ftp://example.com/hook"}, "callback_url"),
        ({"callback_url": "https://"}, "callback_url"),
        ({"callback_url": "https://example.com/a hook"}, "callback_url"),
        ({"watermark": "  "}, "watermark"),
        ({"key": ""}, "key"),
    ],
)
def test_invalid_fields_are_named(kwargs: dict[str, Any], field: str) -> None:
    """Each invalid field raises a ValidationError (also a ValueError) that names that field."""
    args: dict[str, Any] = {"task_id": "src", "index": 0}
    args.update(kwargs)
    with pytest.raises(ValidationError) as info:
        ExtendRequest(**args)
    assert isinstance(info.value, ValueError)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_longest_prompt_is_accepted() -> None:
    """A prompt of exactly 2000 characters is within kie's limit."""
    assert ExtendRequest("src", 0, "x" * MAX_PROMPT_LENGTH).prompt == "x" * MAX_PROMPT_LENGTH


def test_requests_are_frozen() -> None:
    """A request cannot be changed after it was validated."""
    request = ExtendRequest("src", 0, "go on")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        request.index = 9  # type: ignore[misc]


def test_fingerprint_follows_content_or_key() -> None:
    """Equal content gives equal fingerprints, other content another, and a key overrides both."""
    a = ExtendRequest("src", 1, "go on")
    assert a.fingerprint() == ExtendRequest("src", 1, "go on").fingerprint()
    assert a.fingerprint() != ExtendRequest("src", 2, "go on").fingerprint()
    assert ExtendRequest("src", 1, "go on", key="row-7").fingerprint() == "key:row-7"


def test_describe_is_short_and_readable() -> None:
    """describe() names the source, the index, the mode and the key."""
    assert ExtendRequest("src", 2, "go", key="k1").describe() == "extend src[2] (manual) key=k1"
    assert ExtendRequest("src").describe() == "extend src[0] (auto)"


@pytest.mark.parametrize(
    ("flag", "status"),
    [
        (0, TaskStatus.GENERATING),
        (1, TaskStatus.SUCCESS),
        (2, TaskStatus.FAILED),
        (3, TaskStatus.GENERATION_FAILED),
        (4, TaskStatus.UNKNOWN),
        (-7, TaskStatus.UNKNOWN),
        (None, TaskStatus.UNKNOWN),
    ],
)
def test_status_from_flag(flag: int | None, status: TaskStatus) -> None:
    """Each documented successFlag has its status; anything else is UNKNOWN."""
    assert TaskStatus.from_flag(flag) is status


def test_both_failure_flags_are_terminal_failures() -> None:
    """Flags 2 and 3 both end the task without success; 0 and UNKNOWN keep it running."""
    assert TaskStatus.SUCCESS.is_terminal and TaskStatus.SUCCESS.ok
    for failed in (TaskStatus.FAILED, TaskStatus.GENERATION_FAILED):
        assert failed.is_terminal and not failed.ok
    for running in (TaskStatus.GENERATING, TaskStatus.UNKNOWN):
        assert not running.is_terminal and not running.ok


def test_record_derives_status_and_times() -> None:
    """A TaskRecord computes its status and parsed times from the raw fields."""
    record = TaskRecord("t1", success_flag=1, created_at_raw="2024-03-20T10:30:00Z")
    assert record.status is TaskStatus.SUCCESS
    assert record.created_at == datetime(2024, 3, 20, 10, 30, tzinfo=timezone.utc)
    assert record.completed_at is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-03-20T10:30:00Z", datetime(2024, 3, 20, 10, 30, tzinfo=timezone.utc)),
        ("2024-03-20T10:30:00+00:00", datetime(2024, 3, 20, 10, 30, tzinfo=timezone.utc)),
        ("2026-01-06 08:17:04", datetime(2026, 1, 6, 0, 17, 4, tzinfo=timezone.utc)),
        ("2026/01/06 08:17:04", datetime(2026, 1, 6, 0, 17, 4, tzinfo=timezone.utc)),
        ("2026-01-06T08:17:04+08:00", datetime(2026, 1, 6, 0, 17, 4, tzinfo=timezone.utc)),
        ("1710930600", datetime(2024, 3, 20, 10, 30, tzinfo=timezone.utc)),
        ("1710930600000", datetime(2024, 3, 20, 10, 30, tzinfo=timezone.utc)),
    ],
)
def test_parse_time_reads_every_known_format(raw: str, expected: datetime) -> None:
    """ISO 8601, kie's zone-less format (UTC+8) and epoch numbers all parse, to UTC."""
    parsed = parse_time(raw)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is timezone.utc


@pytest.mark.parametrize(
    "raw",
    [None, "", "   ", "null", "yesterday", "2024-13-45 99:99:99", "0000-00-00 00:00:00", "1e400"],
)
def test_parse_time_never_fails(raw: str | None) -> None:
    """An empty, garbled or out-of-range time becomes None instead of an exception."""
    assert parse_time(raw) is None


def test_status_reads_as_a_word_on_every_python() -> None:
    """str() and f-strings of a status give its name, not IntEnum's bare number (3.11+)."""
    assert str(TaskStatus.SUCCESS) == "SUCCESS"
    assert f"{TaskStatus.GENERATION_FAILED}" == "GENERATION_FAILED"
    assert TaskStatus.SUCCESS == 1
