"""A dry run: what a bulk run would do, cost and take, with no create sent.

:func:`plan` reads every item, the journal (without locking or writing it) and the balance
(one call), and returns a :class:`RunPlan`. Only the balance call talks to kie.ai.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import attrs

from .._errors import ValidationError
from .._kinds.registry import REQUEST_TYPES, TaskRequest
from .budget import check_max_credits, entry_price_keys, item_requests
from .chains import BulkItem, Chain
from .journal import Entry, journal_key, paid_creates, read_entries, step_key
from .prices import PRICE_SOURCES, Learn, PriceTable, price_keys

__all__ = ["RunPlan", "plan"]

#: The task lengths of the estimate's two ends, in seconds, with the time the default poll
#: schedule takes to notice a task's end: "most finish within about 5.5 minutes" and "a busy
#: queue stretches some to 20 minutes" (docs/waiting.md, "The assumption behind it").
TASK_SECONDS = (330.0 + 10.0, 1200.0 + 15.0)

RATE_LIMIT = "rate limit"
IN_FLIGHT = "tasks in flight"


class PlanSource(Protocol):
    """What a dry run needs of its client: the rate limit of creates and the balance call."""

    @property
    def rate_limit(self) -> Any: ...

    async def credits(self) -> Decimal:
        """The account's balance."""
        ...


@attrs.frozen
class RunPlan:
    """What a bulk run would do, from :meth:`KieClient.plan` (a dry run: no create is sent).

    Attributes:
        jobs: the items read.
        kinds: items by kind (``"extend"``, ``"generate"``, ``"upscale"``, ``"vary"``,
            ``"chain"``).
        chains, chain_steps: how many chains, and their steps in all.
        done, running, uncertain, resumed, new: items by what the journal says of them:
            finished (skipped), a task running (re-attached), a create whose answer was lost
            (reported, not resent unless ``resubmit_uncertain``), a chain resumed at a later
            step, nothing yet. Without a journal every item is new.
        creates: the creates the run would send, by kind (a chain's steps each count; a
            chain is counted whole, though a failed step would end it early).
        cost_by_kind: what those creates cost, by kind, for the kinds with a price.
        cost: what they cost in all; ``None`` when a price is missing.
        missing_prices: the price keys with no price (a budgeted run would refuse to start).
        learn_prices: the prices a budgeted run would learn at run time from its first create
            of each (``prices={key: "learn"}``), by the create's most specific key, with the
            most that create may cost (the ceiling of ``"learn:CEILING"``; ``None``: the
            balance). They leave ``cost`` unknown.
        prices: each price used, by key.
        default_prices: the keys priced by a default (see :data:`~kie_async.DEFAULT_PRICES`),
            not by ``prices``.
        journal_spent: what the journal records as spent by earlier runs (``None`` without a
            journal, or when a price is missing).
        max_credits: the budget asked for, if any.
        within_budget: whether the journal's spend and the cost fit in ``max_credits``.
        balance: the account's balance (one call), if asked for.
        covers: whether the balance covers the cost.
        seconds: the time to finish, as a range: tasks of about 5.5 minutes (most do) and of
            20 minutes (a busy queue), after the rate limit and the concurrency.
        bound_by: what limits the low end: ``"rate limit"`` or ``"tasks in flight"``.
    """

    jobs: int
    kinds: Mapping[str, int]
    chains: int
    chain_steps: int
    done: int
    running: int
    uncertain: int
    resumed: int
    new: int
    creates: Mapping[str, int]
    cost_by_kind: Mapping[str, Decimal]
    cost: Decimal | None
    missing_prices: tuple[str, ...]
    prices: Mapping[str, Decimal]
    default_prices: tuple[str, ...]
    journal_spent: Decimal | None
    max_credits: Decimal | None
    within_budget: bool | None
    balance: Decimal | None
    covers: bool | None
    seconds: tuple[float, float]
    bound_by: str
    learn_prices: Mapping[str, Decimal | None] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-ready data (credits as numbers, as kie's balance is)."""

        def number(value: Decimal | None) -> int | float | None:
            if value is None:
                return None
            return int(value) if value == value.to_integral_value() else float(value)

        data = attrs.asdict(self, recurse=False)
        for name in ("cost", "journal_spent", "max_credits", "balance"):
            data[name] = number(data[name])
        data["cost_by_kind"] = {k: number(v) for k, v in self.cost_by_kind.items()}
        data["prices"] = {k: number(v) for k, v in self.prices.items()}
        data["price_sources"] = {key: PRICE_SOURCES[key] for key in self.default_prices}
        for name in ("kinds", "creates"):
            data[name] = dict(data[name])
        data["learn_prices"] = {k: number(v) for k, v in self.learn_prices.items()}
        for name in ("missing_prices", "default_prices", "seconds"):
            data[name] = list(data[name])
        return data


@attrs.define
class _Tally:
    table: PriceTable
    states: collections.Counter[str] = attrs.Factory(collections.Counter)
    creates: collections.Counter[str] = attrs.Factory(collections.Counter)
    cost: dict[str, Decimal] = attrs.Factory(dict)
    missing: dict[str, None] = attrs.Factory(dict)
    learn: dict[str, Decimal | None] = attrs.Factory(dict)
    used: dict[str, tuple[Decimal, str]] = attrs.Factory(dict)
    work: list[int] = attrs.Factory(list)

    def price(self, keys: tuple[str, ...]) -> Decimal | None:
        found = self.table.find(keys)
        if found is None:
            self.missing[keys[0]] = None
            return None
        credits, key, source = found
        if isinstance(credits, Learn):
            self.learn[keys[0]] = credits.ceiling
            return None
        self.used[key] = (credits, source)
        return credits

    def create(self, request: TaskRequest) -> None:
        kind = request.kind.value
        self.creates[kind] += 1
        credits = self.price(price_keys(request))
        if credits is not None:
            self.cost[kind] = self.cost.get(kind, Decimal(0)) + credits


def _walk(
    item: BulkItem, key: str, entries: Mapping[str, Entry], tally: _Tally, resend: bool
) -> None:
    """Count what the journal says of ``item``, and the creates a run would send for it."""
    requests = item_requests(item)
    chained = isinstance(item, Chain)
    state = "new"
    slots = 0
    for number, request in enumerate(requests):
        entry = entries.get(step_key(key, number) if chained else key) if key else None
        if entry is not None and entry.state == "done":
            if entry.status == "succeeded" and number + 1 < len(requests):
                state = "resumed"
                continue
            state = "done"
            break
        if entry is not None and entry.state == "submitted" and entry.task_id:
            state = "running"
            slots += 1  # re-attached: it runs at most one task length more
        elif entry is not None and entry.state in ("intent", "uncertain"):
            state = "uncertain"
            if not resend:
                break
            tally.create(request)
            slots += 1
        else:
            tally.create(request)
            slots += 1
        for later in requests[number + 1 :]:
            tally.create(later)
            slots += 1
        break
    tally.states[state] += 1
    if slots:
        tally.work.append(slots)


def _seconds(
    work: list[int], creates: int, rate: float | None, concurrency: int
) -> tuple[tuple[float, float], str]:
    """The time to finish at each end of :data:`TASK_SECONDS`, and what binds the low end."""
    if not work:
        return (0.0, 0.0), IN_FLIGHT
    ends: list[float] = []
    bound = IN_FLIGHT
    for number, task in enumerate(TASK_SECONDS):
        in_flight = max(sum(work) * task / concurrency, max(work) * task)
        limited = creates / rate + task if rate else 0.0
        if number == 0 and limited > in_flight:
            bound = RATE_LIMIT
        ends.append(max(in_flight, limited))
    return (ends[0], ends[1]), bound


async def plan(
    client: PlanSource,
    requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
    *,
    journal: Path | None = None,
    concurrency: int = 50,
    resubmit_uncertain: bool = False,
    max_credits: int | Decimal | None = None,
    prices: Mapping[str, int | Decimal | str] | None = None,
    balance: bool = True,
) -> RunPlan:
    """The :class:`RunPlan` of :meth:`KieClient.plan` (documented there)."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency", f"must be an int >= 1, got {concurrency!r}")
    table = PriceTable(prices)
    budget = check_max_credits(max_credits) if max_credits is not None else None
    entries = read_entries(journal) if journal is not None else {}
    tally = _Tally(table)
    kinds: collections.Counter[str] = collections.Counter()
    seen: collections.Counter[str] = collections.Counter()
    chains = steps = 0
    items = _items(requests) if isinstance(requests, AsyncIterable) else _sync(requests)
    async for position, item in items:
        if not isinstance(item, (*REQUEST_TYPES, Chain)):
            raise TypeError(
                f"plan() takes requests and Chain items; item {position} is {type(item).__name__}"
            )
        kinds["chain" if isinstance(item, Chain) else item.kind.value] += 1
        if isinstance(item, Chain):
            chains += 1
            steps += len(item.steps) + 1
        key = ""
        if journal is not None:
            fingerprint = journal_key(item)
            seen[fingerprint] += 1
            key = fingerprint if seen[fingerprint] == 1 else f"{fingerprint}#{seen[fingerprint]}"
        _walk(item, key, entries, tally, resubmit_uncertain)
    spent: Decimal | None = None
    if journal is not None:
        spent = Decimal(0)
        for key, entry in entries.items():
            paid = paid_creates(entry)
            credits = tally.price(entry_price_keys(key, entry)) if paid else Decimal(0)
            spent = None if credits is None or spent is None else spent + paid * credits
    cost = None if tally.missing or tally.learn else sum(tally.cost.values(), Decimal(0))
    money = await client.credits() if balance else None
    limit = client.rate_limit
    rate = limit.requests / limit.per if limit is not None else None
    seconds, bound = _seconds(tally.work, sum(tally.creates.values()), rate, concurrency)
    fits = None
    if budget is not None and cost is not None and (spent is not None or journal is None):
        fits = (spent or Decimal(0)) + cost <= budget
    return RunPlan(
        jobs=sum(kinds.values()),
        kinds=dict(kinds),
        chains=chains,
        chain_steps=steps,
        done=tally.states["done"],
        running=tally.states["running"],
        uncertain=tally.states["uncertain"],
        resumed=tally.states["resumed"],
        new=tally.states["new"],
        creates=dict(tally.creates),
        cost_by_kind=dict(tally.cost),
        cost=cost,
        missing_prices=tuple(tally.missing),
        prices={key: credits for key, (credits, _) in sorted(tally.used.items())},
        default_prices=tuple(sorted(k for k, (_, src) in tally.used.items() if src == "default")),
        journal_spent=spent,
        max_credits=budget,
        within_budget=fits,
        balance=money,
        covers=None if money is None or cost is None else money >= cost,
        seconds=seconds,
        bound_by=bound,
        learn_prices=dict(tally.learn),
    )


async def _sync(requests: Iterable[BulkItem]) -> AsyncIterator[tuple[int, BulkItem]]:
    for position, item in enumerate(requests):
        yield position, item


async def _items(requests: AsyncIterable[BulkItem]) -> AsyncIterator[tuple[int, BulkItem]]:
    position = 0
    async for item in requests:
        yield position, item
        position += 1
