"""Bulk extension: many requests submitted and awaited concurrently, every one accounted for.

The runner: workers read the requests (``_Source``) and hand each to the run
(``tracker.Run``), which submits it, journals it and has it awaited (``poller``); the
outcomes (``outcome_stream``) come out of :class:`BulkRun`.
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import attrs

from .._download.fetch import FileSource
from .._kinds.extend import ExtendRequest
from .._policies import PollPolicy
from .budget import Budget, Spend, check_max_credits
from .chains import BulkItem
from .journal import Journal, journal_key
from .outcomes import Counts, ExtendOutcome, Outcome, Progress, R
from .preflight import check_account
from .prices import PriceTable
from .tracker import Run, Submitter

__all__ = ["BulkClient", "BulkRun", "RunOptions", "extend_many"]


class BulkClient(Submitter, FileSource, Protocol):
    """What a bulk run needs of its client: to run (:class:`Submitter`), and to save its
    outcomes' files (:meth:`BulkRun.download`)."""


class _Source:
    """Hands out requests one at a time to many workers, from a sync or async iterable,
    each with its journal key (fingerprint, plus the occurrence number for repeats), or ``""``
    when not ``keyed``."""

    def __init__(
        self,
        requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
        *,
        keyed: bool = True,
        accept: tuple[type, ...] = (ExtendRequest,),
        caller: str = "extend_many",
    ) -> None:
        self._sync: Iterator[BulkItem] | None = None
        self._async: AsyncIterator[BulkItem] | None = None
        self._accept = accept
        self._caller = caller
        if isinstance(requests, Sequence):
            # A list or tuple is checked whole before the first create: a bad item at its end
            # must not cost the creates before it. An iterator is checked as it is read.
            for position, request in enumerate(requests):
                self._check(position, request)
        if isinstance(requests, AsyncIterable):
            self._async = aiter(requests)
        else:
            self._sync = iter(requests)
        self._lock = asyncio.Lock()
        self._seen: collections.Counter[str] = collections.Counter()
        self._position = 0
        # Keys cost a JSON dump and a hash per request, and counting repeats keeps every
        # fingerprint for the whole run: only a run with a journal uses them.
        self._keyed = keyed

    def _check(self, position: int, request: object) -> None:
        if not isinstance(request, self._accept):
            names = " or ".join(kind.__name__ for kind in self._accept)
            raise TypeError(
                f"{self._caller}() takes {names} items; item {position} is {type(request).__name__}"
            )

    async def next(self) -> tuple[int, str, BulkItem] | None:
        if self._async is not None:
            # Workers take turns: an async iterator must not be entered twice at once.
            async with self._lock:
                try:
                    request = await anext(self._async)
                except StopAsyncIteration:
                    return None
                position = self._position
                self._position += 1
        else:
            # A sync iterator runs to its next item without yielding to the loop: no other
            # worker can come in between, so no lock is needed.
            assert self._sync is not None
            try:
                request = next(self._sync)
            except StopIteration:
                return None
            position = self._position
            self._position += 1
        self._check(position, request)
        if not self._keyed:
            return position, "", request
        fingerprint = journal_key(request)
        self._seen[fingerprint] += 1
        occurrence = self._seen[fingerprint]
        key = fingerprint if occurrence == 1 else f"{fingerprint}#{occurrence}"
        return position, key, request


@attrs.define
class RunInfo:
    """What a run learns about itself that its :class:`BulkRun` shows."""

    balance: Decimal | None = None


class BulkRun(AsyncIterator[ExtendOutcome[R]]):
    """A bulk run from :meth:`KieClient.extend_many`: an async iterator of
    :class:`ExtendOutcome`, and an async context manager that ends the run when its block ends.

    Nothing is sent before the first outcome is asked for. Then, before the first create, one
    call checks the key and the host: the account's balance (see ``preflight`` in
    :meth:`KieClient.extend_many`). At most ``concurrency`` requests are
    submitted and not yet consumed: while you hold an outcome (or stop asking for more), the run
    sends no new create. Leaving the block (or :meth:`aclose`) stops the run: no new create is
    sent, creates already on the wire are let finish (within their timeout) so their task ids
    reach the journal, and the waits are cancelled (the tasks go on at kie.ai; a rerun with the
    journal re-attaches to them).

    Example::

        async with kie.extend_many(requests, journal="run.jsonl") as run:
            async for outcome in run:
                if not outcome.ok:
                    break              # no further create is sent

    A plain ``async for outcome in kie.extend_many(...)`` works too; breaking out of it stops
    the run when the run is garbage-collected, and sends nothing more meanwhile.
    """

    __slots__ = ("_budget", "_files", "_info", "_journal", "outcome_stream")

    def __init__(
        self,
        outcomes: AsyncGenerator[ExtendOutcome[R], None],
        info: RunInfo | None = None,
        budget: Budget | None = None,
        *,
        files: FileSource | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.outcome_stream = outcomes
        self._info = info or RunInfo()
        self._budget = budget
        self._files = files
        self._journal = journal

    @property
    def spend(self) -> Spend | None:
        """With ``max_credits``: what the run has spent and what is left (a :class:`Spend`,
        priced by the run's price table; creates on the wire count as spent); else ``None``.

        Example::

            async with kie.run_many(requests, journal="run.jsonl", max_credits=600) as run:
                async for outcome in run:
                    ...
                print(f"spent {run.spend.spent}, {run.spend.left} left")
        """
        return self._budget.spend if self._budget is not None else None

    @property
    def balance(self) -> Decimal | None:
        """The account's credit balance as checked before the first create; ``None`` until
        the first outcome is asked for, with ``preflight=False``, or when the host has no
        balance endpoint."""
        return self._info.balance

    async def download(
        self,
        outcome: ExtendOutcome[Any],
        dest_dir: str | os.PathLike[str],
        *,
        concurrency: int = 4,
    ) -> list[Path]:
        """Save the result files of ``outcome``, an outcome of this run that succeeded, in
        ``dest_dir``, and record each in the run's journal; returns their paths in order.

        Files are saved as :meth:`KieClient.download` saves them (``<task_id>_<i>.<ext>``,
        atomic; a file already complete there is not fetched again); for a :class:`Chain`,
        every step's files (each step was paid for). With a journal, each saved file gets a
        ``saved`` line in it, written while the run holds it, so :func:`read_results` lists
        it as saved and :meth:`KieClient.download_journal` does not fetch it again. Call it
        while the run is going (inside its block).

        Raises:
            ValidationError: ``outcome`` did not succeed, or ``concurrency`` is not an
                int >= 1 (nothing is fetched).
            RuntimeError: the run is over and has closed its journal: use
                :meth:`KieClient.download_journal` then.
            DownloadError: a file could not be saved (the others are saved and recorded),
                the outcome has no result files, or ``dest_dir`` cannot hold files.
            OSError: the journal cannot be written.

        Example::

            async with kie.run_many(requests, journal="run.jsonl") as run:
                async for outcome in run:
                    if outcome.ok:
                        paths = await run.download(outcome, "videos/")
        """
        from .results_download import dest_path, save_outcome

        if self._files is None:
            raise RuntimeError("this run was not made by a KieClient: it cannot download")
        return await save_outcome(
            self._files,
            self._journal,
            outcome,
            dest_path(dest_dir),
            concurrency=concurrency,
        )

    def __aiter__(self) -> BulkRun[R]:
        return self

    async def __anext__(self) -> ExtendOutcome[R]:
        return await self.outcome_stream.__anext__()

    async def aclose(self) -> None:
        """Stop the run (see above) and wait until it has stopped. Safe to call twice."""
        await self.outcome_stream.aclose()

    async def __aenter__(self) -> BulkRun[R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def extend_many(
    client: BulkClient,
    requests: Iterable[ExtendRequest] | AsyncIterable[ExtendRequest],
    options: RunOptions,
) -> BulkRun:
    """The :class:`BulkRun` of :meth:`KieClient.extend_many` (documented there)."""
    info = RunInfo()
    book = Journal(options.journal) if options.journal is not None else None
    return BulkRun(
        outcome_stream(  # type: ignore[arg-type]  # only ExtendRequest items are accepted
            client, requests, options, journal=book, info=info
        ),
        info,
        options.budget,
        files=client,
        journal=book,
    )


@attrs.frozen
class RunOptions:
    """The options of one bulk run, as :meth:`KieClient.extend_many` and
    :meth:`KieClient.run_many` take them: one value through the layers, not seven keywords
    through four signatures. The call builds it (its budget checked then); :meth:`check` runs
    as the run starts, so the other mistakes are raised from the iteration, as documented."""

    concurrency: int = 50
    journal: Path | None = None
    poll: PollPolicy | None = None
    on_progress: Callable[[Progress], None] | None = None
    resubmit_uncertain: bool = False
    budget: Budget | None = None
    preflight: bool = True

    def check(self) -> None:
        """Raises ValidationError naming the first option that is not what it must be."""
        from .._errors import ValidationError

        concurrency, poll, on_progress = self.concurrency, self.poll, self.on_progress
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValidationError("concurrency", f"must be an int >= 1, got {concurrency!r}")
        if poll is not None and not isinstance(poll, PollPolicy):
            raise ValidationError(
                "poll", f"must be a PollPolicy or None, got {type(poll).__name__}"
            )
        if on_progress is not None and not callable(on_progress):
            raise ValidationError(
                "on_progress", f"must be a callable or None, got {type(on_progress).__name__}"
            )
        if not isinstance(self.preflight, bool):
            raise ValidationError("preflight", f"must be True or False, got {self.preflight!r}")


def make_budget(
    max_credits: int | Decimal | None, prices: Mapping[str, int | Decimal | str] | None
) -> Budget | None:
    """The budget of a run with ``max_credits`` (``prices`` checked either way).

    Raises:
        ConfigurationError: ``max_credits`` is not a number >= 0, or ``prices`` is invalid.
    """
    table = PriceTable(prices)
    if max_credits is None:
        return None
    return Budget(check_max_credits(max_credits), table)


async def outcome_stream(
    client: Submitter,
    requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
    options: RunOptions,
    *,
    journal: Journal | None,
    info: RunInfo | None = None,
    accept: tuple[type, ...] = (ExtendRequest,),
    caller: str = "extend_many",
    run_type: type[Run] = Run,
) -> AsyncGenerator[Outcome, None]:
    """The run itself, as an async generator; see :meth:`KieClient.extend_many`."""
    options.check()
    concurrency, budget, preflight = options.concurrency, options.budget, options.preflight
    book = journal
    counts = Counts(callback=options.on_progress)
    run = run_type(client, book, options.poll, counts, options.resubmit_uncertain, concurrency)
    run.budget = budget
    source = _Source(requests, keyed=book is not None, accept=accept, caller=caller)
    if budget is not None and isinstance(requests, Sequence):
        budget.check(requests)  # a missing price refuses the run before anything is sent
    outcomes = run.outcomes
    done_reading = object()

    async def worker() -> None:
        # Workers only read and submit; waiting happens in the poller, so a few of them keep
        # any number of tasks in flight.
        try:
            while not run.closing:
                await run.in_flight.acquire()
                item = await source.next()
                if item is None:
                    run.in_flight.release()
                    break
                _, key, request = item
                if budget is not None:
                    budget.check((request,))  # an iterator's item, as it is read
                counts.change(queued=1)
                try:
                    outcome = await run.process(key, request)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # nothing may lose the request: report it
                    counts.change(queued=-1)
                    run.fail(request, exc)
                    continue
                if outcome is not None:
                    run.emit(outcome)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            outcomes.put_nowait(exc)

    if book is not None:
        book.open()  # locks it for this run, or raises naming the run that holds it
        if budget is not None:
            try:
                budget.count_journal(book.entries)
            except BaseException:
                await book.aclose()
                raise
    if preflight:
        # The key and the host, checked once before the first create: a bad key or a dead
        # API ends the run here, with nothing sent, instead of failing every request.
        try:
            balance = await check_account(client)
        except BaseException:
            if book is not None:
                await book.aclose()
            raise
        if info is not None:
            info.balance = balance
    # Submitting is bounded by the connection pool (and the rate limit) long before it is by
    # the number of workers: more than the pool's size would only queue.
    submitters = min(concurrency, client.max_connections)
    workers = [asyncio.ensure_future(worker()) for _ in range(submitters)]
    dispatcher = asyncio.ensure_future(run.poller.dispatch())

    async def all_read() -> None:
        # asyncio.wait, not gather: cancelling this must not cancel the workers (a stopping
        # run lets the ones sending a create finish).
        await asyncio.wait(workers)
        # Every place back means every outcome is out.
        for _ in range(concurrency):
            await run.in_flight.acquire()
        outcomes.put_nowait(done_reading)  # type: ignore[arg-type]

    closer = asyncio.ensure_future(all_read())
    try:
        while True:
            got = await outcomes.get()
            if got is done_reading:
                break
            if isinstance(got, BaseException):
                raise got
            yield got
            # Back here means the consumer asked for the next one: this outcome is consumed.
            run.in_flight.release()
    finally:
        run.closing = True
        pending = [dispatcher, closer, *run.waits]
        for task in pending:
            task.cancel()
        try:
            await run.stop(workers)
        finally:
            try:
                pending += [wait for wait in run.waits if wait not in pending]
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                await run.poller.aclose()
            finally:
                if book is not None:
                    await book.aclose()
