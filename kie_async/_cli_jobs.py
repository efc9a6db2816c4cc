"""Jobs and results files of the ``kie-async bulk`` command: parsing, checking, writing."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import attrs

from ._bulk import ExtendOutcome
from ._errors import ValidationError, _exception_fields
from ._models import ExtendRequest, TaskRecord
from ._wire import request_to_json

#: The keys a jobs-file line may hold; ``task_id`` and ``index`` are required.
JOB_FIELDS = ("task_id", "index", "prompt", "mode", "watermark", "callback_url", "key")
_REQUIRED_FIELDS = ("task_id", "index")


@attrs.frozen
class Job:
    """One request of a bulk run and where it came from (``label`` is e.g. ``"line 3"``)."""

    number: int
    request: ExtendRequest
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


def parse_jobs(text: str) -> tuple[list[Job], list[LineError]]:
    """Every job of a jobs file (one JSON object per line) and every bad line, by line number.

    Blank lines and lines starting with ``#`` are skipped. A line is bad when it is not JSON, not
    an object, has a key outside :data:`JOB_FIELDS`, lacks ``task_id`` or ``index``, or is
    refused by :class:`ExtendRequest` (the error names the field).
    """
    jobs: list[Job] = []
    errors: list[LineError] = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            data = json.loads(stripped)
        except ValueError as exc:
            reason = getattr(exc, "msg", None) or str(exc)
            column = getattr(exc, "colno", None)
            where = f" at column {column}" if column else ""
            errors.append(LineError(number, None, f"not valid JSON ({reason}{where})"))
            continue
        if not isinstance(data, dict):
            kind = type(data).__name__
            errors.append(LineError(number, None, f"must be a JSON object, not {kind}"))
            continue
        unknown = sorted(set(data) - set(JOB_FIELDS))
        if unknown:
            known = ", ".join(JOB_FIELDS)
            for name in unknown:
                errors.append(LineError(number, name, f"unknown field (known: {known})"))
            continue
        missing = [name for name in _REQUIRED_FIELDS if data.get(name) is None]
        if missing:
            errors.extend(LineError(number, name, "is required") for name in missing)
            continue
        fields = {name: value for name, value in data.items() if value is not None}
        try:
            request = ExtendRequest(**fields)
        except ValidationError as exc:
            errors.append(LineError(number, exc.field, exc.reason))
            continue
        except (TypeError, ValueError) as exc:  # a JSON type the model did not foresee
            errors.append(LineError(number, None, str(exc)))
            continue
        jobs.append(Job(number, request, f"line {number}"))
    return jobs, errors


def result_line(job: Job, outcome: ExtendOutcome) -> dict[str, Any]:
    """One line of a results file: the request, how it ended, its task and result URLs."""
    record = outcome.record
    return {
        "line": job.number,
        "request": request_to_json(outcome.request),
        "kind": outcome.kind.value,
        "task_id": outcome.task_id,
        "status": _status_name(record) if record is not None else None,
        "result_urls": list(record.result_urls) if record is not None else [],
        "created_at": record.created_at_raw if record is not None else None,
        "completed_at": record.completed_at_raw if record is not None else None,
        "from_journal": outcome.from_journal,
        "error": _exception_fields(outcome.error) if outcome.error is not None else None,
    }


def _status_name(record: TaskRecord) -> str:
    return record.status.name.lower().replace("_", " ")


#: Something done with each outcome of a bulk run as it arrives (writing results, ...).
Sink = Callable[[Job, ExtendOutcome], Awaitable[None]]


class _ResultsWriter:
    """A :data:`Sink` writing :func:`result_line` JSON lines, flushed one by one."""

    def __init__(self, file: TextIO) -> None:
        self._file = file

    async def __call__(self, job: Job, outcome: ExtendOutcome) -> None:
        line = json.dumps(result_line(job, outcome), ensure_ascii=False)
        self._file.write(line + "\n")
        self._file.flush()
