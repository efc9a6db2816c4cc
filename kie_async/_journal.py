"""The bulk journal: an append-only JSON-lines file that lets a killed run finish, paying once.

Lines, one JSON object each::

    {"journal": "kie-async", "version": 1}                      header, first line
    {"event": "intent", "key": K, "request": {...}}             about to send the create
    {"event": "submitted", "key": K, "task_id": T}              kie.ai answered with a task id
    {"event": "refused", "key": K, "error": {...}}              kie.ai certainly created nothing
    {"event": "uncertain", "key": K, "reason": "..."}           the create's reply was lost
    {"event": "done", "key": K, "task_id": T, "status": S, ...} final (S: succeeded or failed)

``intent`` and ``submitted`` are flushed and fsynced before the run goes on, so a task id kie.ai
gave is on disk before anything waits for it. A line cut short by a kill is ignored on reading.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import attrs

from ._errors import ConfigurationError

log = logging.getLogger("kie_async")

HEADER = {"journal": "kie-async", "version": 1}


@attrs.define
class Entry:
    """What the journal knows of one request (by key), folded from its lines in order."""

    state: str  # "intent" | "submitted" | "refused" | "uncertain" | "done"
    task_id: str | None = None
    status: str | None = None
    record: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    reason: str | None = None


def _fold(entries: dict[str, Entry], line: Mapping[str, Any]) -> None:
    key = line.get("key")
    event = line.get("event")
    if not isinstance(key, str) or not isinstance(event, str):
        return
    entry = entries.get(key)
    if event == "intent":
        if entry is None or entry.state in ("refused", "uncertain"):
            entries[key] = Entry("intent")
    elif event == "submitted":
        entries[key] = Entry("submitted", task_id=line.get("task_id"))
    elif event == "refused":
        entries[key] = Entry("refused", error=line.get("error"))
    elif event == "uncertain":
        entries[key] = Entry("uncertain", reason=line.get("reason"))
    elif event == "done":
        entries[key] = Entry(
            "done",
            task_id=line.get("task_id") or (entry.task_id if entry else None),
            status=line.get("status"),
            record=line.get("record"),
            error=line.get("error"),
        )


class Journal:
    """An open journal: what earlier runs recorded, and an append handle for this run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Entry] = {}
        self._file: IO[str] | None = None
        self._read()

    def _read(self) -> None:
        if not self.path.exists():
            return
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError("journal", f"cannot read {self.path}: {exc}") from exc
        lines = text.splitlines()
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                if number == len(lines):
                    log.warning("journal %s: ignoring a last line cut short", self.path)
                    continue
                raise ConfigurationError(
                    "journal", f"{self.path} line {number} is not JSON; is it a kie-async journal?"
                ) from None
            if not isinstance(line, dict):
                raise ConfigurationError("journal", f"{self.path} line {number} is not an object")
            if number == 1 and "event" not in line:
                if line.get("journal") != "kie-async":
                    raise ConfigurationError("journal", f"{self.path} is not a kie-async journal")
                continue
            _fold(self.entries, line)

    def open(self) -> None:
        """Open for appending; write the header to a new file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        # kie's JSON may carry "\ud800"-style escapes, which decode to lone surrogates UTF-8
        # cannot encode; written back as the same escape, every line stays JSON and lossless.
        self._file = self.path.open("a", encoding="utf-8", errors="backslashreplace")
        if not new:
            # A run killed mid-line left no newline: start on a fresh line.
            with self.path.open("rb") as existing:
                existing.seek(-1, os.SEEK_END)
                if existing.read(1) != b"\n":
                    self._file.write("\n")
        if new:
            self._write(HEADER, durable=True)

    def close(self) -> None:
        """Flush and close the file."""
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def _write(self, line: Mapping[str, Any], *, durable: bool) -> None:
        assert self._file is not None, "journal is not open"
        self._file.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())

    def record(self, event: str, key: str, *, durable: bool = False, **fields: Any) -> None:
        """Append one event for ``key`` (fsynced when ``durable``) and fold it into entries."""
        line = {"event": event, "key": key, "at": round(time.time(), 3), **fields}
        self._write(line, durable=durable)
        _fold(self.entries, line)
