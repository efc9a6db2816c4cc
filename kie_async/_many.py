"""``run_many``: a bulk run of any mix of request kinds and chains (the runner is ``_bulk``'s)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable
from pathlib import Path

from ._bulk import BulkRun, Progress, Submitter, _outcomes
from ._chains import BulkItem, Chain
from ._polling import PollPolicy
from ._requests import REQUEST_TYPES

__all__ = ["run_many"]


def run_many(
    client: Submitter,
    requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
    *,
    concurrency: int = 50,
    journal: Path | None = None,
    poll: PollPolicy | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    resubmit_uncertain: bool = False,
) -> BulkRun[BulkItem]:
    """The :class:`BulkRun` of :meth:`KieClient.run_many` (documented there)."""
    return BulkRun(
        _outcomes(
            client,
            requests,
            concurrency=concurrency,
            journal=journal,
            poll=poll,
            on_progress=on_progress,
            resubmit_uncertain=resubmit_uncertain,
            accept=(*REQUEST_TYPES, Chain),
            caller="run_many",
        )
    )
