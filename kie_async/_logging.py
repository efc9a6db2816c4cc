"""Logging: the library installs no handlers, unless the user asks with ``KIE_LOG``."""

from __future__ import annotations

import logging
import os

LOGGER_NAME = "kie_async"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def configure_from_env() -> None:
    """Attach a readable stderr handler when ``KIE_LOG`` is ``debug``, ``info`` or ``warning``.

    Without ``KIE_LOG`` only a ``NullHandler`` is attached, so applications stay in charge of
    their logging. The API key never reaches a log line at any level.
    """
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    level = _LEVELS.get(os.environ.get("KIE_LOG", "").strip().lower())
    if level is None or any(getattr(h, "_kie_log", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler._kie_log = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
