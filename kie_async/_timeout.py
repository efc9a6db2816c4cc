"""The time budget of one API request: :class:`Timeout`."""

from __future__ import annotations

import math
from typing import Any

import attrs

from ._errors import ConfigurationError

__all__ = ["Timeout"]


def _seconds(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None and attribute.name in ("total", "pool"):
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(
            f"timeout.{attribute.name}", f"must be a number > 0, got {value!r}"
        )
    if math.isinf(value):
        # aiohttp cannot schedule an infinite timer; None is how to say "no limit" where allowed.
        raise ConfigurationError(f"timeout.{attribute.name}", "must be finite")


@attrs.frozen
class Timeout:
    """How long one API request may take, phase by phase and as a whole (as httpx's
    ``Timeout``, plus an overall deadline).

    Every API call (a create, ``record-info``, the balance, ``download-url``) is bounded by all
    four; each retry of a call starts a fresh budget.

    Attributes:
        total: seconds for the whole request once it has a connection slot: connecting,
            sending, and receiving the status line, the headers and the whole body. A server
            that trickles its answer a byte at a time never trips ``read``; it trips this.
            ``None`` switches the overall deadline off (not recommended).
        connect: seconds to establish a connection (DNS, TCP and TLS), capped at ``total``. A
            request that times out here was certainly not sent, so even a create is retried.
        read: seconds of silence allowed between two reads of the answer.
        pool: seconds to wait for a free connection when ``max_connections`` requests are
            already in flight; ``None`` (the default) waits as long as it takes, so a bulk run
            can queue any number of requests.

    There is no separate write timeout: a request's body is a few hundred bytes, written
    into the socket's buffer at once; ``total`` bounds it all the same.

    When ``total`` runs out on a create after the connection was made, the request may have
    reached kie.ai: the create raises :class:`SubmissionUncertainError` and is not retried.

    Raises:
        ConfigurationError: a value is not a finite number > 0 (or ``None`` where allowed).

    Example::

        KieClient(timeout=Timeout(total=30, connect=5, read=10))
    """

    total: float | None = attrs.field(default=120.0, validator=_seconds)
    connect: float = attrs.field(default=15.0, validator=_seconds)
    read: float = attrs.field(default=60.0, validator=_seconds)
    pool: float | None = attrs.field(default=None, validator=_seconds)

    @property
    def connect_budget(self) -> float:
        """The connect timeout actually applied: ``connect``, but never more than ``total``."""
        return self.connect if self.total is None else min(self.connect, self.total)
