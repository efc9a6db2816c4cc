"""The option types (positive numbers, ``N/SECONDS``) and the options every command shares."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .context import InputError

if TYPE_CHECKING:
    from .._policies import RateLimit


def check_directory(name: str, directory: str) -> None:
    """Raise :class:`InputError` unless files can be saved in ``directory`` (it may not exist
    yet: then its nearest existing parent must be a writable directory)."""
    path = Path(directory)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        what = "is" if existing == path else f"is under {existing}, which is"
        raise InputError(f"{name}: cannot save files in {directory}: it {what} not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{name}: cannot save files in {directory}: {existing} is not writable")


# -- argument parsing ---------------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def rate_limit_setting(text: str) -> RateLimit:
    from .._policies import RateLimit

    count, slash, per = text.partition("/")
    try:
        if not slash:
            raise ValueError
        requests, seconds = int(count), float(per)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not N/SECONDS (e.g. 20/10: 20 creates per 10 seconds)"
        ) from None
    if requests < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: N must be at least 1 (creates per SECONDS)")
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: SECONDS must be a number > 0")
    return RateLimit(requests, per=seconds)


EPILOG = """\
exit status: 0 success; 1 a request or task failed or is uncertain; 2 usage, input or
configuration error (nothing was sent); 130 interrupted (Ctrl-C, SIGTERM, SIGHUP); 141 stdout
closed before everything was written (| head).
The API key comes from --api-key-file or the KIE_API_KEY environment variable."""


def add_global_options(parser: argparse.ArgumentParser, *, talks_to_kie: bool = True) -> None:
    # Accepted before and after the subcommand. SUPPRESS keeps a subparser from overwriting a
    # value given before it; each parser gets its own actions, as argparse shares defaults
    # between a parent parser's actions and its children. A command that never calls kie.ai
    # (the demo) shows only -v.
    if talks_to_kie:
        _add_connection_options(parser)
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log every request (DEBUG) to stderr",
    )


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-key-file",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="read the API key from PATH (default: the KIE_API_KEY environment variable)",
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="the API root (default: KIE_BASE_URL or https://api.kie.ai)",
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        default=argparse.SUPPRESS,
        help="accept a plain http:// --base-url that is not loopback (sends the key in clear)",
    )


def add_concurrency(parser: argparse.ArgumentParser, default: int, what: str) -> None:
    """The ``--concurrency N`` option: how many ``what`` at once, ``default`` unless given."""
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=default,
        metavar="N",
        help=f"{what} at once ({default})",
    )
