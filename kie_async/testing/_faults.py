"""Faults the fake server injects: their names, and the seeded random draw of :class:`Faults`.

Which answer a fault turns into is the server's business (``_edge`` for the API endpoints,
``_files`` for result files); this module only names them and decides when one happens.
"""

from __future__ import annotations

import random

import attrs

#: Every fault :class:`Faults` and :meth:`FakeKieServer.fail_next` know, by name.
FAULT_KINDS = (
    "rate_limited",  # 429 (nothing is created)
    "maintenance",  # 455 (nothing is created)
    "server_error",  # a JSON 500 envelope (nothing is created)
    "html_502",  # a Cloudflare-style HTML page with HTTP 502 (nothing is created)
    "drop_before",  # the connection is closed without an answer, before anything is done
    "drop_after",  # the request is carried out (a create is recorded), then the connection closes
    "truncated",  # the request is carried out, and the JSON answer is cut short
    "slow",  # the answer comes after Faults.slow_seconds (longer than a client's read timeout)
    "hang",  # the connection is accepted and never answered
)


@attrs.define
class Faults:
    """Probabilities (0 to 1) of injecting each fault into an answer; see :data:`FAULT_KINDS`.

    Only the endpoints named in ``endpoints`` are affected (``"create"`` (extend),
    ``"generate"``, ``"upscale"``, ``"vary"``, ``"record"``, ``"credit"``,
    ``"download_url"``). The draw is seeded, so a run repeats.

    Attributes:
        slow_seconds: how long a ``slow`` answer takes (make it longer than the client's
            ``timeout`` to provoke read timeouts).
        burst: how many answers in a row a drawn ``rate_limited`` fault refuses (a 429 burst,
            as when an account's window is full).
        retry_after: a ``Retry-After`` header for every 429 answer of the server: seconds
            (``2.5``) or an HTTP date (``"Wed, 21 Oct 2026 07:28:00 GMT"``); ``None`` sends none,
            as kie.ai documents none.

    Example::

        server.faults = Faults(rate_limited=0.05, burst=3, drop_after=0.01, html_502=0.02, seed=7)
    """

    rate_limited: float = 0.0
    maintenance: float = 0.0
    server_error: float = 0.0
    html_502: float = 0.0
    drop_before: float = 0.0
    drop_after: float = 0.0
    truncated: float = 0.0
    slow: float = 0.0
    hang: float = 0.0
    slow_seconds: float = 5.0
    endpoints: frozenset[str] = frozenset({"create", "record"})
    seed: int | None = 0
    burst: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    retry_after: float | str | None = None
    _rng: random.Random = attrs.field(init=False, repr=False, eq=False)
    _burst_left: dict[str, int] = attrs.field(init=False, repr=False, eq=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def draw(self, endpoint: str) -> str | None:
        """Pick a fault for one answer of ``endpoint``, or ``None``."""
        if endpoint not in self.endpoints:
            return None
        if self._burst_left.get(endpoint, 0) > 0:
            self._burst_left[endpoint] -= 1
            return "rate_limited"
        roll = self._rng.random()
        for kind in FAULT_KINDS:
            roll -= float(getattr(self, kind))
            if roll < 0:
                if kind == "rate_limited":
                    self._burst_left[endpoint] = self.burst - 1
                return kind
        return None
