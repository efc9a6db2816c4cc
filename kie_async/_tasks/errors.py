"""The errors that carry a task's record or request: a create whose fate is unknown, and a task
that ended badly.

They sit apart from :mod:`kie_async._errors` (the rest of the tree, drawn whole there) because
they name :class:`~kie_async.TaskRecord` and the request classes, which themselves raise
:class:`~kie_async.ValidationError`: keeping them here lets ``_errors`` import no model, so the
modules do not import each other in a circle.
"""

from __future__ import annotations

import attrs

from .._errors import KieError
from .._kinds.registry import TaskRequest
from .._protocol.records import TaskRecord
from .._text import printable

__all__ = [
    "SubmissionUncertainError",
    "TaskError",
    "TaskFailedError",
    "TaskTimeoutError",
]


@attrs.define(eq=False, str=False)
class SubmissionUncertainError(KieError):
    """A create request may have reached kie.ai, but its reply was lost.

    kie.ai has no idempotency key, so the SDK never retries such a request by itself: doing so
    could pay twice for one video. The task may or may not exist; check your kie.ai dashboard, or
    resubmit explicitly if you accept the risk.

    Attributes:
        request: the request (any kind, e.g. :class:`~kie_async.ExtendRequest`) whose fate is
            unknown.
        reason: what was lost (e.g. the connection dropped after the request was sent).
    """

    request: TaskRequest
    reason: str

    def __str__(self) -> str:
        return (
            f"submission of {self.request.describe()} may or may not have created a task "
            f"({printable(self.reason)}); it was not retried, to avoid paying twice"
        )


@attrs.define(eq=False, str=False, slots=False)
class TaskError(KieError):
    """A task did not end in success.

    Attributes:
        task_id: the kie.ai task id.
        record: the last :class:`~kie_async.TaskRecord` seen, if any poll succeeded.
    """

    task_id: str
    record: TaskRecord | None = attrs.field(default=None, repr=False)

    def __str__(self) -> str:
        return f"task {printable(self.task_id)} did not succeed"


@attrs.define(eq=False, str=False, slots=False)
class TaskFailedError(TaskError):
    """kie.ai reports the task failed (``successFlag`` 2, failed, or 3, generation failed).

    Attributes:
        error_code: kie's ``errorCode`` for the task, if any.
        error_message: kie's ``errorMessage`` for the task, if any.
    """

    error_code: str | None = None
    error_message: str | None = None

    def __str__(self) -> str:
        status = self.record.status.name.lower() if self.record is not None else "failed"
        detail = ": ".join(x for x in (self.error_code, self.error_message) if x)
        text = f"task {self.task_id} {status}" + (f" ({detail})" if detail else "")
        return printable(text)


@attrs.define(eq=False, str=False, slots=False)
class TaskTimeoutError(TaskError, TimeoutError):
    """The wait's deadline passed before the task finished. The task may still finish later:
    re-attach with ``client.task(task_id)``.

    Attributes:
        timeout: the deadline that passed, in seconds.
    """

    timeout: float = 0.0

    def __str__(self) -> str:
        last = f"; last status {self.record.status.name.lower()}" if self.record else ""
        return f"task {printable(self.task_id)} not finished after {self.timeout:g}s{last}"
