"""What a receiver remembers of the callbacks it accepted: the distinct bodies per task, so a
repeated delivery is dropped, and the one body a final ``record-info`` answer confirmed.

Pure bookkeeping (no I/O, no logging of its own): the receiver decides what to say about it.
"""

from __future__ import annotations

import collections
import enum

import attrs

from .._protocol.records import TaskRecord
from ._events import CallbackEvent, agrees, digest

#: The most different bodies passed on for one task (a replayed signature cannot flood).
MAX_BODIES = 8


class Verdict(enum.Enum):
    """What :meth:`Deliveries.add` made of a callback."""

    NEW = "new"  # the first body for its task
    CONFLICTING = "conflicting"  # another body than earlier ones for its task: passed on too
    DUPLICATE = "duplicate"  # a body already seen for its task: dropped
    FLOOD = "flood"  # MAX_BODIES different bodies came already for its task: dropped


@attrs.define
class _Seen:
    """The distinct bodies received for one task, and the one its record confirmed."""

    bodies: dict[str, CallbackEvent] = attrs.Factory(dict)
    latest: CallbackEvent | None = None
    confirmed: CallbackEvent | None = None


class Deliveries:
    """The callbacks of the ``remember`` most recently heard-of tasks."""

    def __init__(self, remember: int) -> None:
        self._remember = remember
        self._seen: collections.OrderedDict[str, _Seen] = collections.OrderedDict()

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._seen

    def ended(self, task_id: str) -> bool:
        """Whether a body remembered for ``task_id`` says it ended (not an acknowledgment)."""
        seen = self._seen.get(task_id)
        return seen is not None and any(e.terminal for e in seen.bodies.values())

    def add(self, event: CallbackEvent) -> Verdict:
        """Remember ``event`` unless its body is known for its task (or too many came)."""
        key = digest(event)
        seen = self._seen.get(event.task_id)
        verdict = Verdict.NEW
        if seen is not None:
            self._seen.move_to_end(event.task_id)
            if key in seen.bodies:
                return Verdict.DUPLICATE
            if len(seen.bodies) >= MAX_BODIES:
                return Verdict.FLOOD
            verdict = Verdict.CONFLICTING
        else:
            seen = self._seen[event.task_id] = _Seen()
            while len(self._seen) > self._remember:
                self._seen.popitem(last=False)
        seen.bodies[key] = event
        seen.latest = event
        return verdict

    def confirm(self, record: TaskRecord) -> bool | None:
        """Keep ``record`` (a final ``record-info`` answer) on the task's event: the body that
        agrees with it (``True``), or else the latest one (``False``: record-info wins).
        ``None`` when no callback for the task is remembered."""
        seen = self._seen.get(record.task_id)
        if seen is None or seen.latest is None:
            return None
        for key, event in seen.bodies.items():
            if agrees(event, record):
                seen.confirmed = seen.bodies[key] = attrs.evolve(event, record=record)
                return True
        seen.confirmed = attrs.evolve(seen.latest, record=record)
        return False

    def get(self, task_id: str) -> CallbackEvent | None:
        """The confirmed event of ``task_id`` if any, else the latest one received."""
        seen = self._seen.get(task_id)
        if seen is None:
            return None
        return seen.confirmed or seen.latest
