"""The poll options of the commands that wait (``--first-poll``, ``--poll-interval``,
``--wait-timeout``), checked by :class:`PollPolicy`'s own validators."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError

if TYPE_CHECKING:
    from .._policies import PollPolicy


def poll_seconds(field: str) -> Callable[[str], float]:
    """An option type for the :class:`PollPolicy` setting ``field``, checked by the policy's
    own validator (a usage error, exit 2, before anything is sent)."""

    def parse(text: str) -> float:
        import attrs

        from .._policies import PollPolicy

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if math.isinf(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
        try:
            settings: dict[str, Any] = {field: value}
            attrs.evolve(PollPolicy(), **settings)
        except ConfigurationError as exc:
            raise argparse.ArgumentTypeError(exc.reason.replace(" or None", "")) from None
        return value

    return parse


def add_poll_options(parser: argparse.ArgumentParser, *, first: bool = True) -> None:
    """``--first-poll`` (unless ``first`` is false: a re-attached task is polled at once) and
    ``--poll-interval``; :func:`poll_policy` applies them."""
    if first:
        parser.add_argument(
            "--first-poll",
            type=poll_seconds("first_delay"),
            metavar="S",
            help="seconds from a create to its task's first poll (120; 0 for a fake server)",
        )
    parser.add_argument(
        "--poll-interval",
        type=poll_seconds("interval"),
        metavar="S",
        help="poll each task every S seconds (default: 19, growing to 30)",
    )


def poll_policy(args: argparse.Namespace, base: PollPolicy) -> PollPolicy:
    """``base`` with the poll options given on the command line (``--first-poll``,
    ``--poll-interval``, ``--wait-timeout``)."""
    import attrs

    changes: dict[str, Any] = {}
    if getattr(args, "first_poll", None) is not None:
        changes["first_delay"] = args.first_poll
    if getattr(args, "poll_interval", None) is not None:
        changes.update(interval=args.poll_interval, max_interval=args.poll_interval)
    if getattr(args, "wait_timeout", None) is not None:
        changes["timeout"] = args.wait_timeout
    return attrs.evolve(base, **changes) if changes else base
