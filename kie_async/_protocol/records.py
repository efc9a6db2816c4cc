"""What kie.ai reports: the task record (TaskRecord) and its status (TaskStatus).

The requests a user sends live with the request kinds (one class per kind). Field names are
snake_case; the wire names live in each field's
``metadata["wire"]`` and are applied by the converter in ``wire``.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import attrs

from .._kinds.common import TaskKind
from .._kinds.registry import kind_of, media_of

__all__ = [
    "TaskRecord",
    "TaskStatus",
]


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


def _wire(name: str | None) -> dict[str, Any]:
    """Field metadata naming the key on the wire (``None``: never sent)."""
    return {"wire": name}


_NAIVE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S")

#: The zone of kie's zone-less times. The one real successFlag-family record on file
#: (``/work/shared/real-samples``, O16) says ``"completeTime": "2026-01-06 08:17:04"`` for a
#: result file named after epoch ms 1767658623526, which is 2026-01-06T00:17:03.5Z: kie's
#: wall clock runs at UTC+8 (China Standard Time) and says no zone.
UTC_PLUS_8 = timezone(timedelta(hours=8), "UTC+08:00")

_EPOCH = re.compile(r"[0-9]{9,14}(\.[0-9]+)?")
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: How long kie.ai keeps a task's result files after the task ends, by its global docs (its
#: Midjourney pages say 15 days): kie's statement, not a guarantee.
RESULT_LIFETIME = timedelta(days=14)

#: The zone of kie's zone-less times (a real answer's ``2026-01-06 08:17:04`` was UTC+8).
_KIE_ZONE = timezone(timedelta(hours=8))


def expiry(completed: datetime | None) -> datetime | None:
    """When the result files of a task that ended at ``completed`` are expected to go
    (:data:`RESULT_LIFETIME` later), in UTC; a zone-less time is read as kie's UTC+8, which
    errs early. ``None`` when ``completed`` is."""
    if completed is None:
        return None
    if completed.tzinfo is None:
        completed = completed.replace(tzinfo=_KIE_ZONE)
    try:
        return (completed + RESULT_LIFETIME).astimezone(timezone.utc)
    except OverflowError:
        return None


def parse_time(raw: str | None) -> datetime | None:
    """One of kie's times as an aware datetime in UTC; ``None`` when it cannot be read.
    Never raises.

    kie.ai has sent ISO 8601 (``2024-03-20T10:30:00Z``), zone-less ``2026-01-06 08:17:04``
    (read as UTC+8, kie's own clock: see :data:`UTC_PLUS_8`), and epoch numbers of 9 to 14
    digits, as UTC (milliseconds from 10**11 on, which is March 1973 in ms and the year 5138
    in seconds; seconds below). Whatever the form, the result is in UTC, so any two compare.
    """
    if raw is None:
        return None
    if type(raw) is str:
        # Every poll of a task carries the same createTime, and tasks created together share
        # theirs: each string is parsed once (datetimes are immutable, so sharing is safe).
        return _parse_time_cached(raw)
    return _parse_time(raw)


@functools.lru_cache(maxsize=4096)
def _parse_time_cached(raw: str) -> datetime | None:
    return _parse_time(raw)


def _parse_time(raw: str) -> datetime | None:
    text = raw.strip()
    if not text:
        return None
    try:
        if _EPOCH.fullmatch(text):
            number = int(text) if text.isdigit() else float(text)  # ints: exact to the ms
            if number >= 10**11:
                return _UNIX_EPOCH + timedelta(milliseconds=number)
            return _UNIX_EPOCH + timedelta(seconds=number)
        when = _read_clock(text)
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC_PLUS_8)
        return when.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # e.g. 0001-01-01 at UTC+8 is before year 1 in UTC
        return None


def _read_clock(text: str) -> datetime | None:
    """``text`` as written (ISO 8601 or one of :data:`_NAIVE_FORMATS`), zone or none."""
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
    return None


@attrs.frozen
class TaskRecord:
    """What kie.ai knows about a task: one answer of ``GET /api/v1/mj/record-info``.

    Built leniently: kie's quirks (result URLs as objects or strings, ``"null"`` strings, changing
    time formats, ``paramJson`` as a JSON string) are normalised; the raw ``data`` dict is kept.

    Attributes:
        task_id: the task id.
        task_type: kie's ``taskType``, e.g. ``"mj_video_extend_manual"`` (see :attr:`kind`).
        success_flag: kie's raw ``successFlag`` (``None`` if absent or unreadable).
        result_urls: the result URLs, images or videos (see :attr:`media`), as plain strings,
            in kie's order: the same shape for every kind of task.
        params: the parsed ``paramJson`` (the original request), or ``None``.
        created_at_raw / completed_at_raw: the time strings exactly as kie sent them.
        error_code / error_message: kie's error details (``"null"`` and ``""`` become ``None``).
        data: the raw ``data`` object of the answer.
        status: the :class:`TaskStatus` for ``success_flag``.
        created_at / completed_at: the parsed times, timezone-aware and in UTC (a zone-less
            kie time is read as UTC+8, kie's clock: :func:`parse_time`), or ``None`` when
            unreadable.
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

    @property
    def kind(self) -> TaskKind:
        """Which kind of task this is (generate, upscale, vary, extend), from ``taskType``;
        :attr:`TaskKind.UNKNOWN` for a type kie.ai has not documented."""
        return kind_of(self.task_type)

    @property
    def media(self) -> Literal["image", "video"] | None:
        """Whether :attr:`result_urls` are images or videos (``None`` for an unknown type)."""
        return media_of(self.task_type)

    @property
    def expires_at(self) -> datetime | None:
        """When kie.ai is expected to delete this task's result files: 14 days after
        :attr:`completed_at`, as kie's docs state it (its Midjourney pages say 15), a
        timezone-aware UTC datetime; ``None`` while the completion time is unknown (a task
        still running, or a time kie sent in a form that cannot be read).

        A statement of kie's, not a guarantee: save what you keep well before (see
        :meth:`KieClient.download_journal`). A zone-less completion time is read as UTC+8,
        the zone kie.ai was seen to use, so the estimate errs early rather than late.

        Example::

            >>> from kie_async import TaskRecord
            >>> TaskRecord("t1", completed_at_raw="2026-01-06T08:17:04Z").expires_at
            datetime.datetime(2026, 1, 20, 8, 17, 4, tzinfo=datetime.timezone.utc)
        """
        return expiry(self.completed_at)

    @status.default
    def _status(self) -> TaskStatus:
        return TaskStatus.from_flag(self.success_flag)

    @created_at.default
    def _created_at(self) -> datetime | None:
        return parse_time(self.created_at_raw)

    @completed_at.default
    def _completed_at(self) -> datetime | None:
        return parse_time(self.completed_at_raw)
