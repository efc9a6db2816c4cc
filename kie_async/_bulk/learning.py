"""Learning a price at run time (``prices={key: "learn"}``): a budgeted run's first create of
a kind whose price is marked ``"learn"`` goes out alone, between two reads of the balance, and
what the balance fell by is its price. :func:`hold` reserves every create of a budgeted run.

Alone: no other create of the run is reserved while a price is being learned, and those already
on their way are let finish first, so the balance moves only with this one create (and with
whatever else uses the account at the same time: the figure is approximate then). Until the
balance is read again the create's cost is unknown, so the budget reserves the most it can
cost: the balance before it (kie.ai refuses with 402 a create the balance cannot pay), or the
user's ceiling (``"learn:CEILING"``) when that is lower. A balance that went up, did not move,
or fell by more than that bound, or a create whose answer was lost, teaches nothing: every
later create of the key ends ``NOT_SUBMITTED`` with the reason, and the run goes on with the
other kinds.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

from .._errors import ConfigurationError, KieError
from .._kinds.registry import TaskRequest
from .budget import BalanceSource, Budget, Hold
from .prices import Learn, missing_price, price_keys

__all__ = ["Learner", "hold", "learn"]

log = logging.getLogger("kie_async")


class Learner(Hold):
    """The learning create of one price key: its reserved bound, and the gate that holds every
    other create of the run back until its price is known (or known not to be learnable)."""

    __slots__ = ("before", "key", "over", "quiet", "rule")

    def __init__(self, budget: Budget, key: str, rule: Learn) -> None:
        super().__init__(budget, Decimal(0))
        self.key = key
        self.rule = rule
        self.before = Decimal(0)
        self.over = asyncio.Event()  # the learning is over: learned, or refused
        self.quiet = asyncio.Event()  # no other create of the run is reserved
        budget.learning, budget.quiet = self.over, self.quiet

    def end(self) -> None:
        """Open the gate: the creates held back go on."""
        if self.budget.learning is self.over:
            self.budget.learning = self.budget.quiet = None
        self.over.set()

    def refuse(self, reason: str) -> ConfigurationError:
        """The price cannot be learned: every later create of the key ends with this error."""
        error = ConfigurationError(
            "prices",
            f"the price of {self.key} could not be learned: {reason}; pass it (prices="
            f"{{{self.key!r}: N}}, --price {self.key}=N); not sent",
        )
        self.budget.refused[self.key] = error
        self.end()
        log.error("%s", error)
        return error

    def settle(self, paid: bool, answered: bool = False) -> None:
        """The learning create is over. Not paid: the next create of the key learns. Paid but
        not answered (lost, or cut off): its cost is unknown, it counts as the bound. Answered:
        :meth:`measure` follows."""
        super().settle(paid, answered)
        if not paid:
            self.end()
        elif not answered:
            self.refuse(
                "the answer to its create was lost, so whether and what it was charged is "
                f"unknown (it counts as spending up to {self.price})"
            )

    async def measure(self, source: BalanceSource) -> None:
        """Read the balance after the answered create and learn the price from it, or refuse
        the key; raises nothing but a cancellation (which refuses the key too)."""
        budget = self.budget
        try:
            try:
                after = await source.credits()
            except KieError as exc:
                self.refuse(
                    f"the balance could not be read after its create ({exc}; it counts as "
                    f"spending up to {self.price})"
                )
                return
            fell = self.before - after
            if fell < 0:
                self.refuse(
                    f"the balance went up by {-fell} during its create ({self.before} -> "
                    f"{after}): is the account topped up or used elsewhere at the same time?"
                )
            elif fell == 0:
                self.refuse(
                    f"the balance did not change during its create ({after}): kie.ai may "
                    "charge for it later, or not at all"
                )
            elif fell > self.price:
                budget.run += fell - self.price  # the balance fell that much: count it spent
                self.refuse(
                    f"the balance fell by {fell} during its create ({self.before} -> {after}), "
                    f"more than the {self.price} it could cost: is the account used elsewhere "
                    "at the same time, or is the ceiling too low?"
                )
            else:
                budget.run += fell - self.price
                budget.table.learned[self.key] = fell
                self.end()
                log.info(
                    "learned the price of %s: %s credits (balance %s -> %s)",
                    self.key,
                    fell,
                    self.before,
                    after,
                )
        finally:
            if not self.over.is_set():
                self.refuse("the run stopped before the balance after its create was read")


async def hold(budget: Budget, request: TaskRequest, source: BalanceSource) -> Hold | KieError:
    """Reserve ``request``'s price before its create is sent, or say why it cannot be (a
    :class:`BudgetExceededError`, or the error of a price that could not be learned). Waits
    while a price is being learned; learns ``request``'s when it is marked ``"learn"`` and not
    known yet, reading the balance from ``source``.

    Raises:
        ConfigurationError: no price is known for it.
    """
    keys = price_keys(request)
    while budget.learning is not None:
        await budget.learning.wait()
    found = budget.table.find(keys)
    if found is None:
        raise missing_price(keys)
    if isinstance(found[0], Learn):
        return await learn(budget, keys[0], found[0], source)
    return budget.reserve(found[0])


async def learn(budget: Budget, key: str, rule: Learn, source: BalanceSource) -> Hold | KieError:
    """Become the learning create of ``key``: wait until no other create of the run is
    reserved, read the balance, and reserve the most the create can cost; or the error that
    ends it (``key`` refused earlier, a balance that cannot be read, a bound the budget cannot
    take)."""
    refused = budget.refused.get(key)
    if refused is not None:
        return refused
    learner = Learner(budget, key, rule)  # closes the gate
    try:
        if budget.open:
            await learner.quiet.wait()
        try:
            before = await source.credits()
        except KieError as exc:
            return learner.refuse(f"the balance could not be read before its create ({exc})")
        bound = max(before, Decimal(0))
        if rule.ceiling is not None:
            bound = min(bound, rule.ceiling)
        refusal = budget.exceeds(bound, upper_bound=True)
        if refusal is not None:
            budget.refused[key] = refusal
            learner.end()
            log.error("the price of %s cannot be learned within the budget: %s", key, refusal)
            return refusal
        learner.before = before
        learner.price = bound
        return budget.take(learner)
    except BaseException:
        learner.end()
        raise
