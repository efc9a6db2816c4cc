"""The context every command gets (where it writes, the client it makes), the API key, input
errors, and how the library's messages are put in command-line words.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from .._errors import (
    ConfigurationError,
    ValidationError,
)
from .._text import printable
from .kinds import KIND_FLAGS

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

if TYPE_CHECKING:
    from .._client import KieClient

# -- the context every command gets --------------------------------------------------------------


@attrs.define
class Context:
    """Where a command writes, and the client settings it was started with."""

    out: TextIO
    err: TextIO
    args: argparse.Namespace
    client_options: Mapping[str, Any]

    def say(self, text: str = "") -> None:
        """A line on standard output (the command's result), control characters escaped: it
        may quote a server's text, which must not reach the terminal as escape sequences."""
        print(printable(text), file=self.out, flush=True)

    def note(self, text: str) -> None:
        """A line on standard error (progress, hints), escaped as :meth:`say`."""
        print(printable(text), file=self.err, flush=True)

    def error(self, text: str) -> None:
        """One ``error: ...`` line on standard error."""
        self.note(f"error: {text}")

    def client(self, **settings: Any) -> KieClient:
        """A :class:`KieClient` from the global options; ``settings`` override.

        Raises:
            ConfigurationError: no API key, an unreadable key file, or a bad base URL.
        """
        # Imported here, not at the top: aiohttp's import costs most of a second, and --help or
        # a usage error must not pay it.
        from .._client import KieClient
        from .._transport.config import Secret

        options: dict[str, Any] = {
            # Wrapped, so that no local of these frames shows the key in a traceback.
            "api_key": Secret(_api_key(self.args.api_key_file)),
            "base_url": self.args.base_url,
        }
        if self.args.allow_insecure_http:
            options["allow_insecure_http"] = True
        options.update(self.client_options)
        options.update(settings)
        from .._policies import default_poll
        from .poll_options import poll_policy

        base = options.get("poll") or default_poll()
        if (poll := poll_policy(self.args, base)) is not base:
            options["poll"] = poll
        return KieClient(**options)

    def reading_client(self) -> KieClient:
        """:meth:`client` for a command that creates nothing (``status``, ``wait``,
        ``credits``, ``download``): without the rate limit of creates, so a shared limit's
        Redis (``KIE_RATE_LIMIT_REDIS``) that cannot be reached does not stop it."""
        return self.client(rate_limit=None)


def _api_key(path: str | None) -> str:
    if path is None:
        key = os.environ.get("KIE_API_KEY", "")
        if not key.strip():
            raise ConfigurationError(
                "api_key", "no API key: set KIE_API_KEY or pass --api-key-file PATH"
            )
        return key
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigurationError("api_key", f"cannot read the key file {path}: {reason}") from None
    if not key:
        raise ConfigurationError("api_key", f"the key file {path} is empty")
    return key


class InputError(Exception):
    """Bad input to a command (a file that cannot be read or written): exit status 2."""


#: How the library's settings and arguments are spelled on the command line.
_FLAGS = {
    "base_url": "--base-url",
    "task_id": "TASK_ID",
    "index": "--index",
    "prompt": "--prompt",
    "mode": "--mode",
    "watermark": "--watermark",
    "callback_url": "--callback-url",
    "rate_limit": "--rate-limit",
    "concurrency": "--concurrency",
    "timeout": "--timeout",
    "prices": "--price",
    "max_credits": "--max-credits",
    "first_delay": "--first-poll",
    "interval": "--poll-interval",
    **KIND_FLAGS,
}

#: Python spellings in the library's messages, and what a command-line user types instead.
_PYTHON_WORDS = {
    "allow_insecure_http=True": "--allow-insecure-http",
    "KieClient(api_key=...)": "--api-key-file PATH",
    "KieClient(base_url=...)": "--base-url URL",
}


def _redis_source(args: argparse.Namespace) -> str | None:
    """Where the shared rate limit's Redis URL came from: the option or the variable."""
    if getattr(args, "rate_limit_redis", None):
        return "--rate-limit-redis"
    if os.environ.get("KIE_RATE_LIMIT_REDIS", "").strip():
        return "KIE_RATE_LIMIT_REDIS"
    return None


def in_cli_words(
    exc: ConfigurationError | ValidationError, args: argparse.Namespace | None = None
) -> str:
    """A configuration or input error as a command-line user reads it: flags, not Python
    arguments, and the setting named once (``--base-url: ...``; nothing for the API key, whose
    message says what to do). A shared rate limit's error names where its Redis URL came
    from (``--rate-limit-redis`` or ``KIE_RATE_LIMIT_REDIS``), not ``--rate-limit``."""
    name, reason = (
        (exc.setting, exc.reason)
        if isinstance(exc, ConfigurationError)
        else (
            exc.field,
            exc.reason,
        )
    )
    for python, flag in _PYTHON_WORDS.items():
        reason = reason.replace(python, flag)
    if name == "api_key":
        return reason
    source = _redis_source(args) if args is not None and name == "rate_limit" else None
    return f"{source or _FLAGS.get(name, name)}: {reason}"
