"""The outcomes of a bulk run: how each request ended (:class:`ExtendOutcome`), and the counts
passed to ``on_progress`` (:class:`Progress`)."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic

import attrs

from .._kinds.extend import ExtendRequest
from .._kinds.registry import TaskRequest
from .._protocol.records import TaskRecord
from .chains import BulkItem

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    #: The request type of an outcome: an extension unless said otherwise (``extend_many``).
    R = TypeVar("R", covariant=True, bound=BulkItem, default=ExtendRequest)
else:
    from typing import TypeVar

    R = TypeVar("R", covariant=True)

__all__ = ["ExtendOutcome", "OutcomeKind", "Progress"]

log = logging.getLogger("kie_async")


class OutcomeKind(str, enum.Enum):
    """How one request of a bulk run ended."""

    #: The task finished successfully; ``record`` holds the result.
    SUCCEEDED = "succeeded"
    #: The create was refused, or the task failed or timed out; ``error`` says why.
    FAILED = "failed"
    #: The create's reply was lost: a task may exist. Not resubmitted unless you ask.
    UNCERTAIN = "uncertain"
    #: Never sent, because an earlier error doomed every submission (401, 402, 505, or kie.ai
    #: could not be reached by several creates in a row), or because its price could take the
    #: run past its ``max_credits`` (``error`` is then a :class:`BudgetExceededError`).
    NOT_SUBMITTED = "not_submitted"


@attrs.frozen
class ExtendOutcome(Generic[R]):
    """The outcome of one request in :meth:`KieClient.extend_many` or
    :meth:`KieClient.run_many`.

    Attributes:
        request: the :class:`ExtendRequest` (``extend_many``); for ``run_many``, the request of
            any kind or the :class:`Chain`.
        kind: how it ended (:class:`OutcomeKind`).
        task_id: the kie.ai task id, if a task was created (keep it: you can re-attach).
        record: the final :class:`TaskRecord`, if known (``None`` for a create that failed;
            a failed or timed-out task's last record otherwise). Use :attr:`result` for the
            record of a success, typed without ``None``.
        error: why it did not succeed.
        from_journal: ``True`` when the journal already held this final outcome and nothing
            was sent this run (for a chain: every step's).
        steps: for a :class:`Chain`, the outcome of each step that ran, in order (the request
            of each is the step's full request, with its source's task id); the chain's own
            ``kind``, ``task_id``, ``record`` and ``error`` are its last step's. Empty
            otherwise.
    """

    request: R
    kind: OutcomeKind
    task_id: str | None = None
    record: TaskRecord | None = None
    error: Exception | None = attrs.field(default=None, eq=False)
    from_journal: bool = False
    steps: tuple[ExtendOutcome[TaskRequest], ...] = ()

    @property
    def ok(self) -> bool:
        """True when the task succeeded (then :attr:`result` is its record)."""
        return self.kind is OutcomeKind.SUCCEEDED

    @property
    def result(self) -> TaskRecord:
        """The final :class:`TaskRecord` of a request that succeeded; typed, unlike
        :attr:`record`, without ``None``.

        Raises:
            KieError: the outcome's :attr:`error`, as ``concurrent.futures.Future.result()``
                does, when the request did not succeed.
            LookupError: no record is known (a success read back from a journal whose record
                was unreadable).

        Example::

            if outcome.ok:
                print(outcome.task_id, outcome.result.result_urls)
        """
        if self.ok and self.record is not None:
            return self.record
        if self.error is not None:
            raise self.error
        raise LookupError(f"no task record for {self.request.describe()} ({self.kind.value})")


#: The outcomes a run handles inside: of any request kind, or of a chain.
Outcome = ExtendOutcome[BulkItem]


@attrs.frozen
class Progress:
    """Counts of a bulk run, passed to ``on_progress`` whenever one changes.

    Attributes:
        queued: requests taken from the input and not yet submitted.
        submitted: creates kie.ai accepted in this run, plus tasks re-attached from a journal.
        running: submitted tasks not finished yet.
        succeeded, failed, uncertain: finished requests by outcome (``failed`` includes
            requests not submitted because of a fatal error).
    """

    queued: int = 0
    submitted: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    uncertain: int = 0

    @property
    def done(self) -> int:
        """Requests with a final outcome."""
        return self.succeeded + self.failed + self.uncertain


@attrs.define
class Counts:
    queued: int = 0
    submitted: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    uncertain: int = 0
    callback: Callable[[Progress], None] | None = None

    def change(
        self,
        *,
        queued: int = 0,
        submitted: int = 0,
        running: int = 0,
        succeeded: int = 0,
        failed: int = 0,
        uncertain: int = 0,
    ) -> None:
        # Named, not **deltas: a run changes its counts a few times per task.
        self.queued += queued
        self.submitted += submitted
        self.running += running
        self.succeeded += succeeded
        self.failed += failed
        self.uncertain += uncertain
        if self.callback is not None:
            snapshot = Progress(
                self.queued,
                self.submitted,
                self.running,
                self.succeeded,
                self.failed,
                self.uncertain,
            )
            try:
                self.callback(snapshot)
            except Exception:
                log.exception("on_progress callback raised; the run goes on")
