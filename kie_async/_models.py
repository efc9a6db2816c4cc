"""The payloads: what a user sends (ExtendRequest) and what kie.ai reports (TaskRecord).

All models are frozen, slotted attrs classes, validated when constructed. Field names are
snake_case; the wire names (kie's camelCase and its oddities, ``waterMark``, ``callBackUrl``) live
in each field's ``metadata["wire"]`` and are applied by the converter in ``_wire``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import attrs

from ._errors import ValidationError

__all__ = ["ExtendMode", "ExtendRequest", "TaskRecord", "TaskStatus"]

#: The longest prompt kie.ai accepts for a manual extension.
MAX_PROMPT_LENGTH = 2000
#: Midjourney video records hold 1, 2 or 4 videos, so the 0-based index is at most 3.
MAX_VIDEO_INDEX = 3

_TASK_ID = re.compile(r"[A-Za-z0-9_\-.:]+")


class ExtendMode(str, enum.Enum):
    """How a video is extended: ``MANUAL`` follows your prompt, ``AUTO`` lets the model continue.

    The values are kie's wire values; ``ExtendMode("manual")`` and ``ExtendMode("auto")`` work too.
    """

    MANUAL = "mj_video_extend_manual"
    AUTO = "mj_video_extend_auto"

    @classmethod
    def _missing_(cls, value: object) -> ExtendMode | None:
        if isinstance(value, str):
            return {"manual": cls.MANUAL, "auto": cls.AUTO}.get(value.strip().lower())
        return None


class TaskStatus(enum.IntEnum):
    """A task's state, from kie's ``successFlag``.

    ``FAILED`` (2) and ``GENERATION_FAILED`` (3, the task was created but generation failed
    upstream) are both failures. ``UNKNOWN`` stands for a flag kie.ai has not documented; waiting
    treats it as still running.

    Example::

        if record.status.is_terminal and not record.status.ok:
            print("failed:", record.error_message)
    """

    GENERATING = 0
    SUCCESS = 1
    FAILED = 2
    GENERATION_FAILED = 3
    UNKNOWN = -1

    def __str__(self) -> str:
        # IntEnum prints its number from Python 3.11 on; a status should read as a word.
        return self.name

    @classmethod
    def from_flag(cls, flag: int | None) -> TaskStatus:
        """The status for a ``successFlag`` value; ``UNKNOWN`` for anything undocumented."""
        if flag is None:
            return cls.UNKNOWN
        try:
            return cls(flag)
        except ValueError:
            return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        """True once the task has ended, in success or failure."""
        return self in (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.GENERATION_FAILED)

    @property
    def ok(self) -> bool:
        """True only for ``SUCCESS``."""
        return self is TaskStatus.SUCCESS


def _invalid(field: str, reason: str) -> ValidationError:
    return ValidationError(field=field, reason=reason)


def check_task_id(value: object, field: str = "task_id") -> str:
    """Return ``value`` as a task id, or raise :class:`ValidationError` naming ``field``."""
    if not isinstance(value, str):
        raise _invalid(field, f"must be a string, not {type(value).__name__}")
    if not value.strip():
        raise _invalid(field, "must not be empty")
    if not _TASK_ID.fullmatch(value):
        raise _invalid(field, f"{value[:80]!r} is not a kie.ai task id (letters, digits, -_.:)")
    return value


def check_http_url(value: object, field: str) -> str:
    """Return ``value`` if it is an absolute http(s) URL with a host, else raise."""
    if not isinstance(value, str):
        raise _invalid(field, f"must be a string, not {type(value).__name__}")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError as exc:
        raise _invalid(field, f"{value[:200]!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise _invalid(field, f"{value[:200]!r} must be an absolute http:// or https:// URL")
    if any(c.isspace() for c in value):
        raise _invalid(field, "must not contain whitespace")
    return value


def _wire(name: str | None) -> dict[str, Any]:
    """Field metadata naming the key on the wire (``None``: never sent)."""
    return {"wire": name}


@attrs.frozen(init=False)
class ExtendRequest:
    """One video extension to submit: which video, and how to continue it.

    The mode is manual when a prompt is given and auto otherwise; pass ``mode`` to choose
    explicitly. Everything is checked here, before any request is sent.

    Args:
        task_id: the task id of the original Midjourney video record.
        index: which video of that record to extend, 0-based (records hold 1, 2 or 4 videos).
        prompt: what happens next (manual mode); at most 2000 characters.
        mode: ``"manual"``, ``"auto"`` or an :class:`ExtendMode`; by default inferred from
            ``prompt``.
        watermark: a watermark text for the result (sent as ``waterMark``).
        callback_url: an absolute http(s) URL kie.ai POSTs the result to when the task ends.
        key: your own identifier for this request, used by bulk journals instead of its content.

    Raises:
        ValidationError: a field is invalid; the error names the field and the reason.

    Example::

        >>> ExtendRequest("ee603959", index=1, prompt="The camera pulls back").mode
        <ExtendMode.MANUAL: 'mj_video_extend_manual'>
        >>> ExtendRequest("ee603959").mode
        <ExtendMode.AUTO: 'mj_video_extend_auto'>
    """

    task_id: str = attrs.field(metadata=_wire("taskId"))
    index: int = attrs.field(metadata=_wire("index"))
    prompt: str | None = attrs.field(metadata=_wire("prompt"))
    mode: ExtendMode = attrs.field(metadata=_wire("taskType"))
    watermark: str | None = attrs.field(metadata=_wire("waterMark"))
    callback_url: str | None = attrs.field(metadata=_wire("callBackUrl"))
    key: str | None = attrs.field(metadata=_wire(None))

    def __init__(
        self,
        task_id: str,
        index: int = 0,
        prompt: str | None = None,
        *,
        mode: ExtendMode | str | None = None,
        watermark: str | None = None,
        callback_url: str | None = None,
        key: str | None = None,
    ) -> None:
        self.__attrs_init__(
            task_id, index, prompt, _resolve_mode(mode, prompt), watermark, callback_url, key
        )

    def __attrs_post_init__(self) -> None:
        check_task_id(self.task_id)
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise _invalid("index", f"must be an int, not {type(self.index).__name__}")
        if not 0 <= self.index <= MAX_VIDEO_INDEX:
            raise _invalid(
                "index",
                f"{self.index} is out of range: records hold 1, 2 or 4 videos, "
                f"so index is 0..{MAX_VIDEO_INDEX}",
            )
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise _invalid("prompt", f"must be a string, not {type(self.prompt).__name__}")
        if self.mode is ExtendMode.MANUAL:
            if self.prompt is None or not self.prompt.strip():
                raise _invalid("prompt", "manual extension needs a non-blank prompt")
            if len(self.prompt) > MAX_PROMPT_LENGTH:
                raise _invalid(
                    "prompt",
                    f"is {len(self.prompt)} characters; kie.ai accepts at most {MAX_PROMPT_LENGTH}",
                )
        elif self.prompt is not None:
            raise _invalid("prompt", "auto extension takes no prompt; use mode='manual'")
        if self.watermark is not None and (
            not isinstance(self.watermark, str) or not self.watermark.strip()
        ):
            raise _invalid("watermark", "must be a non-blank string when given")
        if self.callback_url is not None:
            check_http_url(self.callback_url, "callback_url")
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise _invalid("key", "must be a non-empty string when given")

    def describe(self) -> str:
        """A short human description, e.g. ``"extend ee603959[0] (manual)"``."""
        kind = "manual" if self.mode is ExtendMode.MANUAL else "auto"
        label = f" key={self.key}" if self.key else ""
        return f"extend {self.task_id}[{self.index}] ({kind}){label}"

    def fingerprint(self) -> str:
        """A stable digest identifying this request: its ``key`` if given, else its content.

        Two requests with the same fields have the same fingerprint in every process, which is
        how a bulk journal recognises a request it has seen before.
        """
        if self.key is not None:
            return "key:" + self.key
        content = {
            "taskId": self.task_id,
            "index": self.index,
            "taskType": self.mode.value,
            "prompt": self.prompt,
            "waterMark": self.watermark,
            "callBackUrl": self.callback_url,
        }
        blob = json.dumps(content, sort_keys=True, ensure_ascii=False).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()[:32]


def _resolve_mode(mode: ExtendMode | str | None, prompt: object) -> ExtendMode:
    if mode is None:
        return ExtendMode.MANUAL if prompt is not None else ExtendMode.AUTO
    if isinstance(mode, ExtendMode):
        return mode
    try:
        return ExtendMode(mode)
    except ValueError:
        raise _invalid("mode", f"{mode!r} is not 'manual' or 'auto'") from None


_NAIVE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S")


def parse_time(raw: str | None) -> datetime | None:
    """Parse one of kie's time strings; ``None`` when it cannot be parsed. Never raises.

    kie.ai has sent ISO 8601 (``2024-03-20T10:30:00Z``), zone-less ``2026-01-06 08:17:04``
    (returned as a naive datetime, since the zone is not stated), and epoch numbers.
    """
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    try:
        if re.fullmatch(r"\d{9,14}(\.\d+)?", text):
            number = float(text)
            seconds = number / 1000 if number >= 1e11 else number
            return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds)
        iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
        try:
            return datetime.fromisoformat(iso)
        except ValueError:
            pass
        for fmt in _NAIVE_FORMATS:
            try:
                return datetime.strptime(text, fmt)
            except ValueError:
                continue
    except (ValueError, OverflowError):
        return None
    return None


@attrs.frozen
class TaskRecord:
    """What kie.ai knows about a task: one answer of ``GET /api/v1/mj/record-info``.

    Built leniently: kie's quirks (result URLs as objects or strings, ``"null"`` strings, changing
    time formats, ``paramJson`` as a JSON string) are normalised; the raw ``data`` dict is kept.

    Attributes:
        task_id: the task id.
        task_type: kie's ``taskType``, e.g. ``"mj_video_extend_manual"``.
        success_flag: kie's raw ``successFlag`` (``None`` if absent or unreadable).
        result_urls: the result video URLs, as plain strings.
        params: the parsed ``paramJson`` (the original request), or ``None``.
        created_at_raw / completed_at_raw: the time strings exactly as kie sent them.
        error_code / error_message: kie's error details (``"null"`` and ``""`` become ``None``).
        data: the raw ``data`` object of the answer.
        status: the :class:`TaskStatus` for ``success_flag``.
        created_at / completed_at: the parsed times, or ``None`` when unparseable.
    """

    task_id: str = attrs.field(metadata=_wire("taskId"))
    task_type: str | None = attrs.field(default=None, metadata=_wire("taskType"))
    success_flag: int | None = attrs.field(default=None, metadata=_wire("successFlag"))
    result_urls: tuple[str, ...] = attrs.field(default=(), metadata=_wire("resultInfoJson"))
    params: Mapping[str, Any] | None = attrs.field(
        default=None, eq=False, repr=False, metadata=_wire("paramJson")
    )
    created_at_raw: str | None = attrs.field(default=None, metadata=_wire("createTime"))
    completed_at_raw: str | None = attrs.field(default=None, metadata=_wire("completeTime"))
    error_code: str | None = attrs.field(default=None, metadata=_wire("errorCode"))
    error_message: str | None = attrs.field(default=None, metadata=_wire("errorMessage"))
    data: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False, metadata=_wire(None))
    status: TaskStatus = attrs.field(init=False)
    created_at: datetime | None = attrs.field(init=False, repr=False)
    completed_at: datetime | None = attrs.field(init=False, repr=False)

    @status.default
    def _status(self) -> TaskStatus:
        return TaskStatus.from_flag(self.success_flag)

    @created_at.default
    def _created_at(self) -> datetime | None:
        return parse_time(self.created_at_raw)

    @completed_at.default
    def _completed_at(self) -> datetime | None:
        return parse_time(self.completed_at_raw)
