"""``run_many``: a bulk run of any mix of request kinds and chains.

The runner is ``run``'s; :class:`_ChainRun` adds chains to it. A chain runs in a task of its
own (stopped like a worker, so a step's create on the wire is let finish), its steps one after
another through the run's own ``process`` (so each is journaled, rate limited and awaited as a
request of its own), and a step's outcome goes to its chain instead of to the consumer.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterable, Iterable, Sequence
from typing import Any

import attrs

from .._kinds.registry import REQUEST_TYPES, TaskRequest
from .chains import BulkItem, Chain
from .journal import Journal, step_key
from .outcomes import Outcome
from .run import BulkClient, BulkRun, RunInfo, RunOptions, outcome_stream
from .tracker import Run

__all__ = ["run_many"]


class _ChainRun(Run):
    """A bulk run that also takes :class:`Chain` items (one outcome each, the last step's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Chains running, one task each; the steps they await, by their request's identity.
        self.chains: set[asyncio.Future[None]] = set()
        self.routes: dict[int, asyncio.Future[Outcome]] = {}

    def emit(self, outcome: Outcome) -> None:
        """A chain step's outcome to its chain; any other to the consumer."""
        route = self.routes.pop(id(outcome.request), None) if self.routes else None
        if route is None:
            super().emit(outcome)
        elif not route.done():
            route.set_result(outcome)

    async def process(self, key: str, request: BulkItem) -> Outcome | None:
        """Start a chain in a task of its own, or ``request`` as the bulk run does."""
        if not isinstance(request, Chain):
            return await super().process(key, request)
        chain = asyncio.ensure_future(self._run_chain(key, request))
        self.chains.add(chain)
        chain.add_done_callback(self.chains.discard)
        return None

    async def stop(self, workers: Sequence[asyncio.Future[None]]) -> None:
        """Stop as the bulk run does, treating each running chain as a worker."""
        await super().stop([*workers, *self.chains])

    async def _run_chain(self, key: str, chain: Chain) -> None:
        try:
            steps: list[Any] = await self._steps(key, chain)
            journaled = all(step.from_journal for step in steps)
            self.emit(
                attrs.evolve(steps[-1], request=chain, steps=(*steps,), from_journal=journaled)
            )
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # as a worker does: nothing may lose the chain
            self.counts.change(queued=-1)
            self.fail(chain, exc)

    async def _steps(self, key: str, chain: Chain) -> list[Outcome]:
        """Run ``chain``'s steps in order, until one does not succeed; the outcome of every
        step that ran (a step resumed from the journal costs nothing)."""
        outcomes: list[Outcome] = []
        request: TaskRequest = chain.first
        last = len(chain.steps)
        for number in range(last + 1):
            outcome = await self.step(step_key(key, number), request, last=number == last)
            outcomes.append(outcome)
            if not outcome.ok or number == last:
                break
            task_id = outcome.task_id or (outcome.record.task_id if outcome.record else None)
            assert task_id, "a succeeded step has a task id"
            request = chain.steps[number].request(task_id)
        return outcomes

    async def step(self, key: str, request: TaskRequest, *, last: bool) -> Outcome:
        """One step of a chain, journaled under ``key`` like a request of its own."""
        # A copy of its own: its outcome is routed by the request's identity, and a chain
        # given twice shares its first request.
        request = copy.copy(request)
        route: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.routes[id(request)] = route
        try:
            outcome = await super().process(key, request)
            if outcome is None:
                outcome = await route
        finally:
            self.routes.pop(id(request), None)
        if outcome.ok and not last:
            self.counts.change(succeeded=-1, queued=1)  # the chain goes on: counted once
        return outcome


def run_many(
    client: BulkClient,
    requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
    options: RunOptions,
) -> BulkRun[BulkItem]:
    """The :class:`BulkRun` of :meth:`KieClient.run_many` (documented there)."""
    info = RunInfo()
    book = Journal(options.journal) if options.journal is not None else None
    return BulkRun(
        outcome_stream(
            client,
            requests,
            options,
            journal=book,
            info=info,
            accept=(*REQUEST_TYPES, Chain),
            caller="run_many",
            run_type=_ChainRun,
        ),
        info,
        options.budget,
        files=client,
        journal=book,
    )
