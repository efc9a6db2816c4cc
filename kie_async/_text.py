"""Text from a server, made safe to show: control characters escaped, the API key redacted.

A server (or anything between it and us) decides what its ``msg``, task ids and URLs contain.
Printed raw, an ``ESC [`` sequence recolours or rewrites the user's terminal, and a newline in
a task id forges a log line. Everything the SDK shows of a server's text goes through
:func:`printable` first: in exception messages, log lines and the command-line tool. The
library's own log lines get it by a filter on its logger; the library installs no handlers,
unless the user asks with ``KIE_LOG`` (:func:`configure_from_env`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "configure_from_env",
    "printable",
    "redact",
    "redact_bytes",
    "redacted",
    "server_name",
]

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


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and reprs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


LOGGER_NAME = "kie_async"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class _Printable(logging.Filter):
    """Escapes control characters in every string argument of the library's log records.

    Task ids, URLs and messages in log lines often come from a server (or from an unsigned
    callback): a newline in one must not forge a log line, nor an escape sequence recolour a
    terminal. One filter on the logger covers every call, so no call site can forget; it runs
    only for records that are emitted (the level check comes first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(printable(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, Mapping):
            record.args = {k: printable(v) if isinstance(v, str) else v for k, v in args.items()}
        return True


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (a progress bar, or the command's
    failure-proof stream, may have replaced it), and is silent when that write fails: a
    closed or full stderr must not answer every log line with a traceback of its own (which
    logging would try to print to the same stderr)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        # Not setStream: it flushes the stream replaced, outside emit's error handling.
        self.stream = sys.stderr
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if not isinstance(sys.exc_info()[1], OSError | ValueError):
            super().handleError(record)


def _install_filter(logger: logging.Logger) -> None:
    if not any(isinstance(f, _Printable) for f in logger.filters):
        logger.addFilter(_Printable())


_install_filter(logging.getLogger(LOGGER_NAME))


def configure_from_env() -> None:
    """Attach a readable stderr handler when ``KIE_LOG`` is ``debug``, ``info`` or ``warning``.

    Without ``KIE_LOG`` only a ``NullHandler`` is attached, so applications stay in charge of
    their logging. The API key never reaches a log line at any level.
    """
    logger = logging.getLogger(LOGGER_NAME)
    _install_filter(logger)
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    level = _LEVELS.get(os.environ.get("KIE_LOG", "").strip().lower())
    if level is None or any(getattr(h, "_kie_log", False) for h in logger.handlers):
        return
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler._kie_log = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
