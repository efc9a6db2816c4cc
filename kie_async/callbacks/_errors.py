"""Why a callback was refused: :class:`CallbackVerificationError` and one subclass per reason.

None of them holds the webhook key: not in its message, its ``repr()`` or its chain (they are
raised ``from None``, and a body excerpt has the key redacted).
"""

from __future__ import annotations

from .._errors import KieError
from .._text import printable

__all__ = [
    "CallbackBodyError",
    "CallbackHeaderMissingError",
    "CallbackSignatureError",
    "CallbackTaskIdMismatchError",
    "CallbackTimestampError",
    "CallbackVerificationError",
]


class CallbackVerificationError(KieError, ValueError):
    """A callback failed :func:`~kie_async.callbacks.verify_callback`; answer it with
    :attr:`status` (401, or 400 for an unreadable body) and pass it to nobody.

    Attributes:
        reason: what is wrong, safe to log (control characters escaped, no key).
        task_id: the task id the body names, when it could be read.
        status: the HTTP status a receiver answers (401 or 400).

    Example::

        try:
            event = verify_callback(body, headers, key=webhook_key)
        except CallbackVerificationError as exc:
            return Response(status_code=exc.status)
    """

    status = 401

    def __init__(self, reason: str, *, task_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = printable(reason)
        self.task_id = task_id

    def __str__(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class CallbackHeaderMissingError(CallbackVerificationError):
    """``X-Webhook-Timestamp`` or ``X-Webhook-Signature`` is missing or empty: an unsigned
    callback, refused when a key is given.

    Attributes:
        header: the name of the missing header.
    """

    def __init__(self, header: str) -> None:
        super().__init__(f"the {header} header is missing (an unsigned callback)")
        self.header = header


class CallbackTimestampError(CallbackVerificationError):
    """``X-Webhook-Timestamp`` is not a number, or is more than the tolerance away from now,
    in the past (a stale or replayed callback) or in the future (a forged one, or a clock off).

    Attributes:
        age: seconds from the timestamp to now (negative: in the future); ``None`` when the
            header is not a number.
        tolerance: the window, in seconds either way.
    """

    def __init__(self, reason: str, *, age: float | None, tolerance: float) -> None:
        super().__init__(reason)
        self.age = age
        self.tolerance = tolerance

    @property
    def future(self) -> bool:
        """Whether the timestamp is ahead of now (rather than stale)."""
        return self.age is not None and self.age < 0


class CallbackSignatureError(CallbackVerificationError):
    """``X-Webhook-Signature`` is not the HMAC of the task id and the timestamp under the key:
    forged, or signed with another key."""


class CallbackTaskIdMismatchError(CallbackVerificationError):
    """The body names more than one task id (``data.taskId``, ``data.task_id``, a top-level
    ``taskId``), so which task the signature covers is not what the body says."""


class CallbackBodyError(CallbackVerificationError):
    """The body is not a callback: not JSON, not an object, no ``data`` object, or no task id
    (HTTP 400).

    Attributes:
        body_excerpt: the start of the body (at most 300 characters, key redacted).
    """

    status = 400

    def __init__(self, reason: str, body_excerpt: str) -> None:
        super().__init__(reason)
        self.body_excerpt = body_excerpt
