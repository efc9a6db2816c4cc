"""Jobs and results files of the ``kie-async bulk`` command: parsing, checking, writing."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TextIO

import attrs

from .._bulk.chains import BulkItem, Chain, ExtendStep, UpscaleStep, VaryStep, step_json
from .._bulk.journal import request_json
from .._bulk.outcomes import ExtendOutcome
from .._errors import ValidationError, exception_fields
from .._kinds.extend import ExtendRequest
from .._kinds.generate import GenerateRequest
from .._kinds.image_actions import UpscaleRequest, VaryRequest
from .._protocol.records import TaskRecord

#: A bulk run's outcome as the command handles it: of any kind, or of a chain.
Outcome = ExtendOutcome[BulkItem]

#: The keys an extension line may hold; ``task_id`` and ``index`` are required.
JOB_FIELDS = ("task_id", "index", "prompt", "mode", "watermark", "callback_url", "key")
#: The keys of a generation line; ``task_type`` and ``prompt`` are required.
GENERATE_FIELDS = (
    "task_type",
    "prompt",
    "file_urls",
    "aspect_ratio",
    "version",
    "speed",
    "variety",
    "stylization",
    "weirdness",
    "ow",
    "video_batch_size",
    "motion",
    "watermark",
    "enable_translation",
    "callback_url",
    "key",
)
#: The keys of an upscale or variation line; ``task_id`` and ``index`` are required.
IMAGE_FIELDS = ("task_id", "index", "watermark", "callback_url", "key")

#: Each line kind: the class it builds, the keys it may hold, the keys it needs.
_KINDS: dict[str, tuple[Callable[..., Any], tuple[str, ...], tuple[str, ...]]] = {
    "extend": (ExtendRequest, JOB_FIELDS, ("task_id", "index")),
    "generate": (GenerateRequest, GENERATE_FIELDS, ("task_type", "prompt")),
    "upscale": (UpscaleRequest, IMAGE_FIELDS, ("task_id", "index")),
    "vary": (VaryRequest, IMAGE_FIELDS, ("task_id", "index")),
}
#: The kinds of a chain's later steps: no task id (it is the step before's), no key.
_STEPS: dict[str, tuple[Callable[..., Any], tuple[str, ...], tuple[str, ...]]] = {
    "extend": (ExtendStep, ("index", "prompt", "mode", "watermark", "callback_url"), ()),
    "upscale": (UpscaleStep, ("index", "watermark", "callback_url"), ("index",)),
    "vary": (VaryStep, ("index", "watermark", "callback_url"), ("index",)),
}
_CHAIN_FIELDS = ("steps", "key")
_FRAME = "https://example.com/f.png"


@attrs.frozen
class Job:
    """One item of a bulk run (a request of any kind, or a chain) and where it came from
    (``label`` is e.g. ``"line 3"``)."""

    number: int
    request: BulkItem
    label: str


@attrs.frozen
class LineError:
    """Why one line of a jobs file was refused."""

    line: int
    field: str | None
    reason: str

    def __str__(self) -> str:
        field = f"{self.field}: " if self.field else ""
        return f"line {self.line}: {field}{self.reason}"


class _RefusedError(Exception):
    """The problems of one line: ``(field, reason)`` pairs."""

    def __init__(self, *problems: tuple[str | None, str]) -> None:
        super().__init__(problems)
        self.problems = problems


def _build(
    data: dict[str, Any],
    table: dict[str, tuple[Callable[..., Any], tuple[str, ...], tuple[str, ...]]],
    prefix: str = "",
) -> Any:
    """The object ``data`` describes, by its ``kind`` (``extend`` when absent) in ``table``."""
    kind = data.get("kind", "extend")
    if kind not in table:
        known = ", ".join(repr(name) for name in table)
        raise _RefusedError((f"{prefix}kind", f"{kind!r:.40} is not one of {known}"))
    build, allowed, required = table[kind]
    if prefix and "task_id" in data and "task_id" not in allowed:
        raise _RefusedError((f"{prefix}task_id", "a later step takes the task of the step before"))
    unknown = sorted(set(data) - set(allowed) - {"kind"})
    if unknown:
        known = ", ".join(allowed)
        raise _RefusedError(
            *((f"{prefix}{name}", f"unknown field (known: {known})") for name in unknown)
        )
    missing = [name for name in required if data.get(name) is None]
    if missing:
        raise _RefusedError(*((f"{prefix}{name}", "is required") for name in missing))
    fields = {name: value for name, value in data.items() if value is not None and name != "kind"}
    try:
        return build(**fields)
    except ValidationError as exc:
        raise _RefusedError((f"{prefix}{exc.field}", exc.reason)) from None
    except (TypeError, ValueError) as exc:  # a JSON type the model did not foresee
        raise _RefusedError((prefix.rstrip(".") or None, str(exc))) from None


def _chain(data: dict[str, Any]) -> Chain:
    unknown = sorted(set(data) - {*_CHAIN_FIELDS, "kind"})
    if unknown:
        known = ", ".join(_CHAIN_FIELDS)
        raise _RefusedError(*((name, f"unknown field (known: {known})") for name in unknown))
    steps = data.get("steps")
    if not isinstance(steps, list) or len(steps) < 2:
        raise _RefusedError(("steps", "must be a list of at least 2 steps (a request, then steps)"))
    problems: list[tuple[str | None, str]] = []
    built: list[Any] = []
    for number, step in enumerate(steps):
        where = f"steps[{number}]"
        if not isinstance(step, dict):
            problems.append((where, f"must be a JSON object, not {type(step).__name__}"))
            continue
        try:
            built.append(_build(step, _STEPS if number else _KINDS, f"{where}."))
        except _RefusedError as exc:
            problems.extend(exc.problems)
    if problems:
        raise _RefusedError(*problems)
    try:
        return Chain(built[0], *built[1:], key=data.get("key"))
    except ValidationError as exc:
        raise _RefusedError((exc.field, exc.reason)) from None


def parse_jobs(text: str | bytes) -> tuple[list[Job], list[LineError]]:
    """Every job of a jobs file (one JSON object per line) and every bad line, by line number.

    ``text`` is the file's text, or its bytes as read (UTF-8, with or without a byte-order
    mark; a line that is not UTF-8 is a bad line, named by its number). Lines end at ``\n``,
    ``\r\n`` or ``\r`` only, as editors count them. Blank lines and lines starting with
    ``#`` are skipped. A line's ``kind`` says what it is:
    ``"extend"`` (the default, so files without kinds keep working), ``"generate"``,
    ``"upscale"``, ``"vary"``, or ``"chain"`` (``steps``: a request line, then steps naming
    the ``index`` of the step before's output they take). A line is bad when it is not a JSON
    object, has a key its kind does not know, lacks a required key, or is refused by its
    request class (the error names the field, e.g. ``steps[1].index``).
    """
    jobs: list[Job] = []
    errors: list[LineError] = []
    data_bytes = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    for number, line in enumerate(data_bytes.removeprefix(codecs.BOM_UTF8).splitlines(), 1):
        try:
            raw = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = len(line[: exc.start].decode("utf-8", "replace"))
            reason = f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {before + 1})"
            errors.append(LineError(number, None, reason))
            continue
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            data = json.loads(raw)
        except ValueError as exc:
            # json's own words, without a trailing "at" ("Invalid control character at").
            reason = re.sub(r"\s+at$", "", getattr(exc, "msg", None) or str(exc))
            column = getattr(exc, "colno", None)
            where = f" at column {column}" if column else ""
            errors.append(LineError(number, None, f"not valid JSON ({reason}{where})"))
            continue
        if not isinstance(data, dict):
            kind = type(data).__name__
            errors.append(LineError(number, None, f"must be a JSON object, not {kind}"))
            continue
        try:
            item = _chain(data) if data.get("kind") == "chain" else _build(data, _KINDS)
        except _RefusedError as exc:
            errors.extend(LineError(number, field, reason) for field, reason in exc.problems)
            continue
        jobs.append(Job(number, item, f"line {number}"))
    return jobs, errors


def chain_json(chain: Chain) -> dict[str, Any]:
    """``chain`` as a results file shows it: a jobs-file line that makes the same chain."""
    data: dict[str, Any] = {
        "kind": "chain",
        "steps": [request_json(chain.first), *(step_json(step) for step in chain.steps)],
    }
    if chain.key is not None:
        data["key"] = chain.key
    return data


def result_line(job: Job, outcome: Outcome) -> dict[str, Any]:
    """One line of a results file: the request, how it ended, its task and result URLs (a
    chain's: its last step's, and each step's task under ``steps``)."""
    record = outcome.record
    item = outcome.request
    line = {
        "line": job.number,
        "request": chain_json(item) if isinstance(item, Chain) else request_json(item),
        "kind": outcome.kind.value,
        "task_id": outcome.task_id,
        "status": status_name(record) if record is not None else None,
        "result_urls": list(record.result_urls) if record is not None else [],
        "created_at": iso(record.created_at) if record is not None else None,
        "completed_at": iso(record.completed_at) if record is not None else None,
        "from_journal": outcome.from_journal,
        "error": exception_fields(outcome.error) if outcome.error is not None else None,
    }
    if isinstance(item, Chain):
        line["steps"] = [
            {"kind": step.kind.value, "task_id": step.task_id, "from_journal": step.from_journal}
            for step in outcome.steps
        ]
    return line


def iso(when: datetime | None) -> str | None:
    """A record's parsed time for a results line or the terminal: ISO 8601 in UTC, with its
    offset (``2026-01-06T00:17:04+00:00``), so every line reads and compares alike."""
    return None if when is None else when.isoformat()


def status_name(record: TaskRecord) -> str:
    return record.status.name.lower().replace("_", " ")


#: Something done with each outcome of a bulk run as it arrives (writing results, ...).
Sink = Callable[[Job, Outcome], Awaitable[None]]


class ResultsWriter:
    """A :data:`Sink` writing :func:`result_line` JSON lines, flushed one by one."""

    def __init__(self, file: TextIO) -> None:
        self._file = file

    async def __call__(self, job: Job, outcome: Outcome) -> None:
        line = json.dumps(result_line(job, outcome), ensure_ascii=False)
        self._file.write(line + "\n")
        self._file.flush()
