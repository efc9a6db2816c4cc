"""A task's two calls below the facade: create it (the request's body, the client's
``callBackUrl``, an uncertain create told apart) and read its record (checked to be its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import KieError, UnexpectedResponseError
from .._kinds.registry import REQUEST_TYPES, TaskRequest
from .._protocol import envelope as proto
from .._protocol.records import TaskRecord
from .._protocol.wire import parse_record
from .._retry import CreateFailure, create_failure
from .errors import SubmissionUncertainError

if TYPE_CHECKING:
    from .._transport.exchange import SendWatch

__all__ = ["Creates", "create_task", "record_of"]


class Creates(Protocol):
    """What a create needs of the transport
    (a :class:`~kie_async._transport.exchange.Transport` is one)."""

    async def create(
        self, path: str, body: Mapping[str, Any], watch: SendWatch | None, what: object
    ) -> str: ...


async def create_task(
    transport: Creates,
    request: TaskRequest,
    callback_url: str | None,
    watch: SendWatch | None = None,
) -> str:
    """Create the task of ``request`` (with ``callBackUrl=callback_url`` unless the request
    names its own) and return its id; ``watch`` hears of each attempt.

    Raises:
        TypeError: ``request`` is not one of the request kinds.
        SubmissionUncertainError: the reply was lost after the request may have been sent.
        KieError: any other failure of the create, as the transport raised it.
    """
    if not isinstance(request, REQUEST_TYPES):
        kinds = ", ".join(kind.__name__ for kind in REQUEST_TYPES)
        raise TypeError(f"submit() takes one of {kinds}, not {type(request).__name__}")
    path = request.endpoint
    body = request.body()
    if callback_url is not None and "callBackUrl" not in body:
        body["callBackUrl"] = callback_url
    try:
        task_id = await transport.create(path, body, watch, _CreateFor(request))
    except KieError as exc:
        if create_failure(exc) is CreateFailure.UNCERTAIN:
            raise SubmissionUncertainError(request=request, reason=str(exc)) from exc
        raise
    return task_id


class _CreateFor:
    """``"create for <the request>"``, for the retry log lines only: described when shown."""

    __slots__ = ("request",)

    def __init__(self, request: TaskRequest) -> None:
        self.request = request

    def __str__(self) -> str:
        return f"create for {self.request.describe()}"


def record_of(data: object, task_id: str) -> TaskRecord:
    """The :class:`TaskRecord` in a record-info answer for ``task_id``.

    Raises:
        UnexpectedResponseError: the answer is about another task (a confused cache or proxy,
            or a hostile server): it must never be taken for this task's state.
    """
    record = parse_record(data, task_id=task_id, endpoint=proto.RECORD_PATH)
    if record.task_id != task_id:
        raise UnexpectedResponseError(
            message=f"record-info answered for task {record.task_id[:80]!r}, not {task_id!r}",
            http_status=200,
            endpoint=proto.RECORD_PATH,
            body_excerpt=repr(data)[:300],
        )
    return record
