"""A bulk run's budget: no create is sent that could take the run's spend past ``max_credits``.

A create's price is reserved before it is sent (before the rate limiter, so a held-back create
costs no slot), kept when kie.ai answers with a task id or the answer is lost (uncertain: it
may be paid for), and given back only when the create is known not to have been accepted (kie
refused it, or it never went out). A rerun starts from what the journal records as paid.

A price marked ``"learn"`` is learned by the first create that needs it (``learning``, whose
``hold`` reserves every create of a budgeted run): no other create of the run is on the wire
meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

import attrs

from .._errors import BudgetExceededError, ConfigurationError, KieError
from .._kinds.registry import TaskRequest
from .chains import BulkItem, Chain, probe_requests
from .journal import Entry, paid_creates
from .prices import PriceTable, json_price_keys, missing_price, price_keys

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterable

__all__ = ["Budget", "Spend", "check_max_credits", "item_requests"]


@attrs.frozen
class Spend:
    """What a bulk run with ``max_credits`` has spent, priced by its price table
    (:attr:`BulkRun.spend`).

    Attributes:
        max_credits: the run's budget.
        journal: credits the journal records as spent by earlier runs (creates answered or
            uncertain; a chain's steps each count).
        run: credits spent by this run: creates answered with a task id, uncertain ones, and
            those on the wire now.
        learned: the prices this run learned (``prices={key: "learn"}``), by the most
            specific key of the create each came from (e.g. ``"mj_video_extend_auto"``):
            pass them as ``prices=`` next time.
    """

    max_credits: Decimal
    journal: Decimal
    run: Decimal
    learned: Mapping[str, Decimal] = attrs.field(factory=dict)

    @property
    def spent(self) -> Decimal:
        """Everything spent: the journal's and this run's."""
        return self.journal + self.run

    @property
    def left(self) -> Decimal:
        """What is left of the budget, unspent."""
        return self.max_credits - self.spent


def check_max_credits(value: object) -> Decimal:
    """``max_credits`` as a :class:`~decimal.Decimal`.

    Raises:
        ConfigurationError: not a number >= 0.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ConfigurationError("max_credits", f"must be a number, got {value!r}")
    try:
        credits = Decimal(str(value).strip())
    except ArithmeticError:
        raise ConfigurationError("max_credits", f"{value!r} is not a number") from None
    if not credits.is_finite() or credits < 0:
        raise ConfigurationError("max_credits", f"must be a number >= 0, got {value!r}")
    return credits


def item_requests(item: BulkItem) -> tuple[TaskRequest, ...]:
    """The requests ``item`` can create: itself, or every step of a chain (later steps with a
    placeholder source, which prices them just the same)."""
    return probe_requests(item) if isinstance(item, Chain) else (item,)


class BalanceSource(Protocol):
    """What learning a price needs of the client: the balance call."""

    async def credits(self) -> Decimal:
        """The account's balance."""
        ...


class Budget:
    """The spend of one budgeted run: reserved before each create, settled after it."""

    __slots__ = (
        "journal",
        "learning",
        "max_credits",
        "open",
        "quiet",
        "refused",
        "reserved",
        "run",
        "table",
    )

    def __init__(self, max_credits: Decimal, table: PriceTable) -> None:
        self.max_credits = max_credits
        self.table = table
        self.journal = Decimal(0)
        self.run = Decimal(0)
        self.reserved = Decimal(0)
        self.open = 0  # creates reserved and not yet settled
        # While a price is being learned (no other create goes out): set when it is over, and
        # set once no other create is reserved.
        self.learning: asyncio.Event | None = None
        self.quiet: asyncio.Event | None = None
        # Prices that could not be learned: the error every later create of the key ends with.
        self.refused: dict[str, KieError] = {}

    def check(self, items: Iterable[BulkItem]) -> None:
        """Raise :class:`ConfigurationError` naming the first missing price of ``items`` (a
        price to learn is not missing)."""
        for item in items:
            for request in item_requests(item):
                keys = price_keys(request)
                if self.table.find(keys) is None:
                    raise missing_price(keys)

    def count_journal(self, entries: Mapping[str, Entry]) -> None:
        """Start from what the journal records as paid: every create that may have cost.

        Raises:
            ConfigurationError: a paid create whose price is unknown.
        """
        total = Decimal(0)
        for key, entry in entries.items():
            paid = paid_creates(entry)
            if paid:
                total += paid * self.table.price(entry_price_keys(key, entry))
        self.journal = total

    @property
    def spend(self) -> Spend:
        """The spend so far (creates on the wire count as spent)."""
        return Spend(
            self.max_credits, self.journal, self.run + self.reserved, dict(self.table.learned)
        )

    def exceeds(self, price: Decimal, *, upper_bound: bool = False) -> BudgetExceededError | None:
        """Why a create of ``price`` cannot be sent (``upper_bound``: the most a create whose
        price is being learned can cost), or ``None`` when it fits in what is left."""
        spent = self.journal + self.run + self.reserved
        if spent + price <= self.max_credits:
            return None
        return BudgetExceededError(
            price=price, spent=spent, max_credits=self.max_credits, upper_bound=upper_bound
        )

    def reserve(self, price: Decimal) -> Hold | BudgetExceededError:
        """Reserve ``price`` if it fits in what is left."""
        return self.exceeds(price) or self.take(Hold(self, price))

    def take(self, hold: Hold) -> Hold:
        """Count ``hold``'s price as reserved until it is settled."""
        self.reserved += hold.price
        self.open += 1
        return hold


class Hold:
    """One create's reserved price, settled once when the create is over."""

    __slots__ = ("budget", "price")

    def __init__(self, budget: Budget, price: Decimal) -> None:
        self.budget = budget
        self.price = price

    def settle(self, paid: bool, answered: bool = False) -> None:
        """The create is over: ``paid`` (accepted, or maybe accepted), or given back;
        ``answered``: kie.ai answered it with a task id."""
        budget = self.budget
        budget.reserved -= self.price
        budget.open -= 1
        if paid:
            budget.run += self.price
        if budget.open == 0 and budget.quiet is not None:
            budget.quiet.set()


def entry_price_keys(key: str, entry: Entry) -> tuple[str, ...]:
    """The price keys of a journal entry: from its intent's request, else from its key."""
    if entry.request is not None:
        return json_price_keys(entry.request)
    kind, colon, _ = key.partition(":")
    return (kind,) if colon and kind in ("generate", "upscale", "vary") else ("extend",)
