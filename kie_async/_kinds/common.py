"""What every request kind shares: the kind enum, the checks, the wire body, the protocol.

Pure: no I/O happens here. The kinds themselves live in ``generate`` (GenerateRequest) and
``registry`` (the others, and the registry of kinds).
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import urlsplit

import attrs

from .._errors import ValidationError

__all__ = [
    "MAX_IMAGE_INDEX",
    "MAX_PROMPT_LENGTH",
    "MAX_VIDEO_INDEX",
    "RequestProtocol",
    "TaskKind",
    "check_http_url",
    "check_task_id",
]

#: The longest prompt kie.ai accepts (generation and manual extension alike).
MAX_PROMPT_LENGTH = 2000
#: Midjourney video records hold 1, 2 or 4 videos, so the 0-based index is at most 3.
MAX_VIDEO_INDEX = 3
#: An image generation holds 4 images, so ``imageIndex`` is 0..3.
MAX_IMAGE_INDEX = 3

_TASK_ID = re.compile(r"[A-Za-z0-9_\-.:]+")


class TaskKind(str, enum.Enum):
    """Which kind of Midjourney task a request creates or a record describes.

    ``UNKNOWN`` stands for a ``taskType`` kie.ai has not documented (records are read anyway).

    Example::

        >>> TaskKind("extend")
        <TaskKind.EXTEND: 'extend'>
    """

    GENERATE = "generate"
    UPSCALE = "upscale"
    VARY = "vary"
    EXTEND = "extend"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


# -- shared checks --------------------------------------------------------------------------------


def invalid(field: str, reason: str) -> ValidationError:
    """The ValidationError for ``field``, saying ``reason``."""
    return ValidationError(field=field, reason=reason)


def check_task_id(value: object, field: str = "task_id") -> str:
    """Return ``value`` as a task id, or raise :class:`ValidationError` naming ``field``."""
    if not isinstance(value, str):
        raise invalid(field, f"must be a string, not {type(value).__name__}")
    if not value.strip():
        raise invalid(field, "must not be empty")
    if not _TASK_ID.fullmatch(value):
        raise invalid(field, f"{value[:80]!r} is not a kie.ai task id (letters, digits, -_.:)")
    return value


def check_http_url(value: object, field: str) -> str:
    """Return ``value`` if it is an absolute http(s) URL with a host, else raise."""
    if not isinstance(value, str):
        raise invalid(field, f"must be a string, not {type(value).__name__}")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError as exc:
        raise invalid(field, f"{value[:200]!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise invalid(field, f"{value[:200]!r} must be an absolute http:// or https:// URL")
    if any(c.isspace() for c in value):
        raise invalid(field, "must not contain whitespace")
    return value


def check_int(field: str, value: object, low: int, high: int, step: int = 1) -> None:
    """Raise unless ``value`` is an int in ``low..high`` on a multiple of ``step``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, f"must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise invalid(field, f"{value} is out of range {low}..{high}")
    if value % step:
        raise invalid(field, f"{value} is not a multiple of {step} ({low}..{high} in steps)")


def check_choice(field: str, value: object, choices: Iterable[str]) -> None:
    """Raise unless ``value`` is one of ``choices`` (the error lists them)."""
    options = tuple(choices)
    if value not in options:
        listed = ", ".join(repr(o) for o in options)
        raise invalid(field, f"{value!r:.60} is not one of {listed}")


def check_prompt(value: object, field: str = "prompt") -> None:
    """Raise unless ``value`` is a non-blank prompt within kie's length limit."""
    if not isinstance(value, str):
        raise invalid(field, f"must be a string, not {type(value).__name__}")
    if not value.strip():
        raise invalid(field, "must not be blank")
    if len(value) > MAX_PROMPT_LENGTH:
        raise invalid(
            field, f"is {len(value)} characters; kie.ai accepts at most {MAX_PROMPT_LENGTH}"
        )


def check_common(request: Any) -> None:
    """The fields every kind has: watermark, callback URL and the journal key."""
    if request.watermark is not None and (
        not isinstance(request.watermark, str) or not request.watermark.strip()
    ):
        raise invalid("watermark", "must be a non-blank string when given")
    if request.callback_url is not None:
        check_http_url(request.callback_url, "callback_url")
    if request.key is not None and (not isinstance(request.key, str) or not request.key):
        raise invalid("key", "must be a non-empty string when given")


def wire(name: str | None) -> dict[str, Any]:
    """Field metadata naming the key on the wire (``None``: never sent)."""
    return {"wire": name}


def wire_body(request: attrs.AttrsInstance) -> dict[str, Any]:
    """kie's JSON body for ``request``: each field under its wire name, absent ones left out."""
    body: dict[str, Any] = {}
    for field in attrs.fields(type(request)):
        name = field.metadata.get("wire", field.name)
        value = getattr(request, field.name)
        if name is None or value is None or value == ():
            continue
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        body[name] = value
    return body


def digest(content: Mapping[str, Any]) -> str:
    """A short, stable sha256 of ``content`` as canonical JSON."""
    blob = json.dumps(content, sort_keys=True, ensure_ascii=False).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:32]


def fingerprint_of(request: Any) -> str:
    """A key-or-content digest; the kind is part of the content, so kinds never collide."""
    if request.key is not None:
        return "key:" + str(request.key)
    return digest({"kind": request.kind.value, **request.body()})


def short(text: str, width: int = 40) -> str:
    """``text`` quoted and cut to ``width`` characters, for descriptions."""
    return repr(text if len(text) <= width else text[: width - 1] + "…")


@runtime_checkable
class RequestProtocol(Protocol):
    """What every request kind offers, and all a submitter needs of one."""

    kind: ClassVar[TaskKind]
    endpoint: ClassVar[str]

    @property
    def key(self) -> str | None:
        """The caller's own identifier for the request (bulk journals), if any."""

    @property
    def callback_url(self) -> str | None:
        """The ``callBackUrl`` the request names itself, if any."""

    def body(self) -> dict[str, Any]:
        """kie's JSON body for the create."""

    def describe(self) -> str:
        """A short human description for logs and errors."""

    def fingerprint(self) -> str:
        """A stable digest identifying the request across processes."""
