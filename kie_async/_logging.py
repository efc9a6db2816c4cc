"""Logging: the library installs no handlers, unless the user asks with ``KIE_LOG``."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from ._text import printable

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
