"""CallbackEvent and parse_callback: a callback body read leniently into a frozen event.

Pure: no I/O. The event's body is not signed, so an event only says what a body claims;
:func:`agrees` tells whether a final ``record-info`` answer bears it out.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from typing import Any

import attrs

from .._errors import UnexpectedResponseError
from .._models import TaskRecord
from .._wire import json_object, lenient_int, nullable_str, result_urls

_ENDPOINT = "callback"


@attrs.frozen
class CallbackEvent:
    """One callback from kie.ai: a task ended, or so the body says.

    The body is not signed (the signature covers only the task id and the time), so none of
    ``code``, ``result_urls`` or ``params`` is verified by anything here: ``record`` is, once a
    client confirmed the callback with ``record-info``.

    Attributes:
        task_id: the task that ended (covered by the signature).
        code: kie's ``code`` (200 success, 500 failure), ``None`` if unreadable.
        message: kie's ``msg``, if any.
        result_urls: the result video URLs the body names, as plain strings (empty on failure).
        params: the parsed ``promptJson`` (the original request), or ``None`` if absent or
            unreadable.
        signature_valid: whether the signature headers were checked and valid: kie.ai sent a
            callback for ``task_id`` within the freshness window. It says nothing about the
            body (``False`` when the receiver has no key).
        data: the raw ``data`` object of the callback.
        record: the :class:`~kie_async.TaskRecord` that ``record-info`` answered when a waiting
            client confirmed this callback (see :meth:`CallbackReceiver.get`); ``None`` until
            then. Trust it over the body.

    Example::

        async for event in receiver:
            print(event.task_id, event.ok, event.result_urls, event.signature_valid)
    """

    task_id: str
    code: int | None
    message: str | None = None
    result_urls: tuple[str, ...] = ()
    params: Mapping[str, Any] | None = attrs.field(default=None, eq=False, repr=False)
    signature_valid: bool = False
    data: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    record: TaskRecord | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def ok(self) -> bool:
        """True when the body reports success (``code`` 200)."""
        return self.code == 200

    @property
    def verified(self) -> bool:
        """Deprecated: use :attr:`signature_valid` (this is its name in 0.1; the body is never
        verified). Returns the same value, with a :class:`DeprecationWarning`."""
        warnings.warn(
            "CallbackEvent.verified is deprecated: use CallbackEvent.signature_valid",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.signature_valid

    @property
    def confirmed(self) -> bool:
        """Whether ``record-info`` confirmed this body: :attr:`record` is final and agrees with
        it (the same outcome and, on success, the same result URLs)."""
        return self.record is not None and agrees(self, self.record)


def agrees(event: CallbackEvent, record: TaskRecord) -> bool:
    """Whether ``record`` is final and bears ``event`` out: the same outcome and, on success,
    the same result URLs."""
    if not record.status.is_terminal or event.ok != record.status.ok:
        return False
    return not event.ok or event.result_urls == record.result_urls


def digest(event: CallbackEvent) -> str:
    """What identifies a body: deliveries with the same one are duplicates."""
    canonical = json.dumps(
        [event.code, event.message, event.data], sort_keys=True, default=str, ensure_ascii=True
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def parse_callback(payload: bytes | str | Mapping[str, Any]) -> CallbackEvent:
    """A :class:`CallbackEvent` from a callback body (raw bytes, text, or decoded JSON).

    Lenient like the rest of the SDK: result URLs may be strings or ``{"resultUrl": ...}``
    objects, ``promptJson`` may be an object or a JSON string, ``"null"`` means no value. The
    event's ``signature_valid`` is ``False``: check the signature with :func:`verify_signature`.

    Raises:
        UnexpectedResponseError: the body is not JSON, not an object, or names no task.

    Example::

        >>> parse_callback(b'{"code": 200, "msg": "success", "data": {"taskId": "t1", '
        ...                b'"resultUrls": ["https://cdn.example/t1.mp4"]}}').result_urls
        ('https://cdn.example/t1.mp4',)
    """
    envelope: object = payload
    if isinstance(payload, bytes | str):
        try:
            envelope = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise _unreadable("the body is not JSON", payload) from None
    if not isinstance(envelope, Mapping):
        raise _unreadable("the body is not a JSON object", payload)
    data = envelope.get("data")
    if not isinstance(data, Mapping):
        raise _unreadable("the body has no data object", payload)
    task_id = nullable_str(data.get("taskId"))
    if task_id is None or not task_id.strip():
        raise _unreadable("the callback names no taskId", payload)
    return CallbackEvent(
        task_id=task_id,
        code=lenient_int(envelope.get("code")),
        message=nullable_str(envelope.get("msg")),
        result_urls=result_urls(data.get("resultUrls", data.get("resultInfoJson"))),
        params=json_object(data.get("promptJson", data.get("paramJson"))),
        data=data,
    )


def _unreadable(reason: str, payload: object) -> UnexpectedResponseError:
    if isinstance(payload, bytes):
        excerpt = payload[:300].decode("utf-8", "replace")
    else:
        excerpt = str(payload)[:300]
    return UnexpectedResponseError(message=reason, endpoint=_ENDPOINT, body_excerpt=excerpt)
