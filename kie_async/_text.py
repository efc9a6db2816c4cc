"""Text from a server, made safe to show: control characters escaped, the API key redacted.

A server (or anything between it and us) decides what its ``msg``, task ids and URLs contain.
Printed raw, an ``ESC [`` sequence recolours or rewrites the user's terminal, and a newline in
a task id forges a log line. Everything the SDK shows of a server's text goes through
:func:`printable` first: in exception messages, log lines and the command-line tool.
"""

from __future__ import annotations

import functools
import json
import re
from urllib.parse import urlsplit

__all__ = ["printable", "redact", "redact_bytes", "server_name"]

#: C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the bidirectional
#: overrides and isolates (which reorder what a terminal shows: "Trojan Source").
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` (``str()`` of it when not a string) with every control character escaped.

    Newlines become ``\\n``, an escape character ``\\x1b``, a right-to-left override ``\\u202e``:
    the result is one line that a terminal shows as it is.

    Example::

        >>> from kie_async._text import printable
        >>> printable("task 1\\nERROR forged \\x1b[31mred")
        'task 1\\\\nERROR forged \\\\x1b[31mred'
    """
    value = text if isinstance(text, str) else str(text)
    if _UNSAFE.search(value) is None:
        return value
    return _UNSAFE.sub(_escape, value)


@functools.lru_cache(maxsize=8)
def _forms(secret: str) -> tuple[tuple[str, bytes], ...]:
    """The ways a JSON answer can spell ``secret`` (as it is, and JSON-escaped), longest first,
    as text and as UTF-8 bytes. Cached: an answer is checked on every call."""
    escaped = json.dumps(secret)[1:-1]
    forms = sorted({secret, escaped, escaped.replace("/", "\\/")}, key=len, reverse=True)
    return tuple((form, form.encode("utf-8")) for form in forms)


@functools.lru_cache(maxsize=8)
def _escapes(secret: str) -> tuple[bytes, ...]:
    """The ``\\u`` escapes of the secret's characters (lower-case hex): only a body holding
    one of them can spell the secret that way (other ``\\u`` escapes, of non-ASCII text, do
    not cost a decoding)."""
    return tuple(sorted({f"\\u{ord(char):04x}".encode() for char in secret}))


def _spells(lowered: bytes, secret: str) -> bool:
    return any(escape in lowered for escape in _escapes(secret))


MASK = "***"
_MASK_BYTES = MASK.encode("ascii")


def redact(text: str, secret: str) -> str:
    """``text`` with every spelling of ``secret`` replaced by ``***``."""
    if not secret:
        return text
    for form, _ in _forms(secret):
        if form in text:
            text = text.replace(form, MASK)
    return text


def redact_bytes(data: bytes, secret: str) -> bytes:
    """:func:`redact` for raw bytes (an answer's body, before it is read as JSON).

    A JSON body may also spell the secret with ``\\u`` escapes, which only decoding shows:
    a body with an escape of one of the secret's characters (rare: kie writes ASCII as it is)
    is decoded, and if it holds the secret it is re-encoded with the secret masked.
    """
    if not secret:
        return data
    for _, raw in _forms(secret):
        if raw in data:
            data = data.replace(raw, _MASK_BYTES)
    if b"\\u" in data and _spells(data.lower(), secret):
        try:
            text = json.dumps(json.loads(data), ensure_ascii=False)
        except (ValueError, RecursionError):
            return data
        if secret in text:
            data = text.replace(secret, MASK).encode("utf-8")
    return data


def server_name(url: str) -> str:
    """The host (and port) of ``url`` for a message, e.g. ``api.kie.ai`` or ``127.0.0.1:8080``;
    ``"the server"`` when there is none. Messages say which server, never "kie.ai" for a proxy
    or a fake server."""
    try:
        host = urlsplit(url).netloc.rpartition("@")[2]
    except ValueError:
        host = ""
    return printable(host) if host else "the server"
