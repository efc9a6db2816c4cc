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
from .._protocol.records import TaskRecord
from .._protocol.wire import json_object, lenient_int, nullable_str, result_urls

_ENDPOINT = "callback"


@attrs.frozen
class CallbackEvent:
    """One callback from kie.ai: a task changed, or so the body says.

    kie signs only the task id and the time, never the body. So an event holds two kinds of
    facts, kept apart:

    * **authenticated** (when :attr:`signature_valid`): ``task_id`` and ``timestamp``: kie.ai
      sent a callback for this task at this time;
    * **claimed** (the body, which anyone who captured one signed callback could alter within
      the window): ``code``, ``message``, ``result_urls``, ``success_flag``, ``error_code``,
      ``error_message``, ``params`` and ``data``. Confirm them with ``record-info``
      (:meth:`KieClient.confirm <kie_async.KieClient.confirm>`); ``record`` holds the answer
      once a waiting client did.

    Not every callback means the task ended: one with no result and no outcome marker (only
    ``taskId`` and ``promptJson``, reported for the same API) is an *acknowledgment*:
    :attr:`terminal` is false, and :attr:`ok` is never true for it.

    Attributes:
        task_id: the task (authenticated when ``signature_valid``).
        code: kie's ``code`` (200 success, 500 failure), ``None`` if unreadable. Claimed.
        message: kie's ``msg``, if any. Claimed.
        result_urls: the result video URLs the body names, as plain strings (empty on failure).
            Claimed.
        params: the parsed ``promptJson`` (the original request), or ``None`` if absent or
            unreadable. Claimed.
        signature_valid: whether the signature headers were checked and valid: kie.ai sent a
            callback for ``task_id`` at ``timestamp``, within the freshness window. It says
            nothing about the body (``False`` for unsigned callbacks).
        data: the raw ``data`` object of the callback. Claimed.
        record: the :class:`~kie_async.TaskRecord` that ``record-info`` answered when a waiting
            client confirmed this callback (see :meth:`CallbackReceiver.get`); ``None`` until
            then. Trust it over the body.
        timestamp: the ``X-Webhook-Timestamp`` (unix seconds) of a signed callback
            (authenticated when ``signature_valid``), else ``None``.
        success_flag: a record-shaped body's ``successFlag`` (0 generating, 1 success, 2 or 3
            failed), if any. Claimed.
        error_code: a record-shaped body's ``errorCode`` (an int or a string such as
            ``"VIDEO_EXTEND_FAILED"``, as text), if any. Claimed.
        error_message: a record-shaped body's ``errorMessage``, if any. Claimed.

    Example::

        async for event in receiver:
            print(event.task_id, event.terminal, event.ok, event.result_urls)
    """

    task_id: str
    code: int | None
    message: str | None = None
    result_urls: tuple[str, ...] = ()
    params: Mapping[str, Any] | None = attrs.field(default=None, eq=False, repr=False)
    signature_valid: bool = False
    data: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    record: TaskRecord | None = attrs.field(default=None, eq=False, repr=False)
    timestamp: float | None = attrs.field(default=None, eq=False)
    success_flag: int | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def terminal(self) -> bool:
        """Whether the body says the task ended: a ``successFlag`` other than 0, an error
        (``code`` other than 200, or an ``errorCode``), or result URLs. An acknowledgment
        (none of these) is not terminal. Claimed, like the body."""
        if self.success_flag is not None:
            return self.success_flag != 0
        if self._error_coded or (self.code is not None and self.code != 200):
            return True
        return bool(self.result_urls)

    @property
    def ok(self) -> bool:
        """True when the body reports success: a terminal event with ``code`` 200 (or none),
        no ``errorCode``, and ``successFlag`` 1 or, without one, result URLs. Never true for
        an acknowledgment. Claimed, like the body."""
        if not self.terminal or self.code not in (200, None) or self._error_coded:
            return False
        return self.success_flag == 1 if self.success_flag is not None else bool(self.result_urls)

    @property
    def _error_coded(self) -> bool:
        return self.error_code is not None and self.error_code.strip() not in ("0", "200")

    @property
    def replay_key(self) -> str:
        """What identifies this delivery for replay checks: a digest of the task id, the
        signed timestamp and the outcome the body claims (acknowledgment, success or
        failure), so an acknowledgment and the final callback sent in the same second are
        both taken, and a captured signature can carry at most three bodies. (Of the task id
        and the body for an unsigned callback.) The same key within the freshness window is a
        replay (see :class:`ReplayStore`)."""
        if self.timestamp is not None:
            outcome = ("ok" if self.ok else "failed") if self.terminal else "ack"
            basis = f"{self.task_id}.{self.timestamp!r}.{outcome}"
        else:
            basis = f"{self.task_id}#{digest(self)}"
        return hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()

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
    if not record.status.is_terminal or not event.terminal or event.ok != record.status.ok:
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
    objects, ``promptJson`` may be an object or a JSON string, ``"null"`` means no value, and a
    record-shaped body (``resultInfoJson``, ``successFlag``, ``errorCode``) is read like the
    documented one. The event's ``signature_valid`` is ``False``: to check the signature as
    well, use :func:`verify_callback` instead.

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
    task_id = nullable_str(data.get("taskId", data.get("task_id")))
    if task_id is None or not task_id.strip():
        raise _unreadable("the callback names no taskId", payload)
    urls = data.get("resultUrls")
    return CallbackEvent(
        task_id=task_id,
        code=lenient_int(envelope.get("code")),
        message=nullable_str(envelope.get("msg")),
        result_urls=result_urls(data.get("resultInfoJson") if urls is None else urls),
        params=json_object(data.get("promptJson", data.get("paramJson"))),
        data=data,
        success_flag=lenient_int(data.get("successFlag")),
        error_code=nullable_str(data.get("errorCode")),
        error_message=nullable_str(data.get("errorMessage")),
    )


def _unreadable(reason: str, payload: object) -> UnexpectedResponseError:
    if isinstance(payload, bytes):
        excerpt = payload[:300].decode("utf-8", "replace")
    else:
        excerpt = str(payload)[:300]
    return UnexpectedResponseError(message=reason, endpoint=_ENDPOINT, body_excerpt=excerpt)
