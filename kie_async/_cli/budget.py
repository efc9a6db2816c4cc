"""The money options of ``kie-async bulk``: ``--dry-run`` (and ``--json``), ``--max-credits``
and ``--price``, the plan's report, and the spend line of the summary."""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .context import EXIT_OK, Context

if TYPE_CHECKING:
    from .._bulk.budget import Spend
    from .._bulk.plan import RunPlan
    from .._client import KieClient
    from .jobs import Job


def _price(text: str) -> tuple[str, str]:
    key, equals, credits = text.partition("=")
    if not equals or not key.strip() or not credits.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not KEY=CREDITS (e.g. extend=60, mj_video_hd:2=90)"
        )
    return key.strip(), credits.strip()


def add_budget_options(parser: argparse.ArgumentParser) -> None:
    """``--dry-run``, ``--json``, ``--max-credits`` and ``--price``."""
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="send no create: check every line and report the jobs, what the journal holds, "
        "the creates and their cost, the balance (one call) and the time to finish",
    )
    parser.add_argument(
        "--json", action="store_true", help="with --dry-run: print the report as one JSON object"
    )
    parser.add_argument(
        "--max-credits",
        metavar="N",
        help="a budget: send no create that could take the run's spend (with what the journal "
        "records as spent) past N credits; jobs held back end 'not submitted' (budget)",
    )
    parser.add_argument(
        "--price",
        type=_price,
        action="append",
        default=[],
        metavar="KEY=N",
        help="credits per create of a kind, taskType or taskType:batch (e.g. extend=60, "
        "mj_video_hd:2=90), before the defaults; repeat for more. With --max-credits, "
        "KEY=learn:CEILING learns a price from the balance before and after the run's first "
        "create of it, which may cost at most CEILING (KEY=learn: at most the balance); "
        "see docs: bulk",
    )


def budget_settings(args: argparse.Namespace, jobs: Sequence[Job]) -> dict[str, Any]:
    """``max_credits`` and ``prices`` for the run, checked; with a budget, every job's price is
    looked up first, so a missing one refuses the run before anything is sent.

    Raises:
        ConfigurationError: an invalid budget or price, or a job with no price.
    """
    from .._bulk.run import make_budget

    prices = dict(args.price)
    budget = make_budget(args.max_credits, prices)
    if budget is not None and not args.dry_run:
        budget.check(job.request for job in jobs)
    return {"max_credits": args.max_credits, "prices": prices}


async def dry_run(
    ctx: Context,
    kie: KieClient,
    jobs: Sequence[Job],
    args: argparse.Namespace,
    money: dict[str, Any],
) -> int:
    """Print the plan of a run of ``jobs`` (JSON with ``--json``); nothing is created."""
    plan = await kie.plan(
        [job.request for job in jobs],
        journal=args.journal,
        concurrency=args.concurrency,
        resubmit_uncertain=args.resubmit_uncertain,
        **money,
    )
    if args.json:
        ctx.say(json.dumps(plan.to_json(), sort_keys=True))
    else:
        for line in plan_lines(plan, args.concurrency, journal=args.journal is not None):
            ctx.say(line)
    return EXIT_OK


def _counts(counts: dict[str, int] | Any) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))


def _minutes(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def plan_lines(plan: RunPlan, concurrency: int, *, journal: bool) -> list[str]:
    """The plan as the command prints it."""
    chains = f"; {plan.chains} chain(s) of {plan.chain_steps} steps" if plan.chains else ""
    lines = ["dry run: no create was sent", f"jobs: {plan.jobs} ({_counts(plan.kinds)}{chains})"]
    if journal:
        lines.append(
            f"journal: {plan.done} done, {plan.running} running (re-attached), "
            f"{plan.uncertain} uncertain, {plan.resumed} resumed (chains), {plan.new} new"
        )
    lines.append(f"creates: {sum(plan.creates.values())} ({_counts(plan.creates) or 'none'})")
    if plan.cost is None and plan.missing_prices:
        missing = ", ".join(plan.missing_prices)
        lines.append(f"cost: unknown: no price for {missing} (pass --price KEY=N)")
    elif plan.cost is None:
        learn = ", ".join(plan.learn_prices)
        lines.append(f"cost: unknown until the run learns the price of {learn}")
    else:
        lines.append(f"cost: {plan.cost} credits ({_counts(plan.cost_by_kind) or 'none'})")
    for key, ceiling in plan.learn_prices.items():
        most = f"up to {ceiling} credits" if ceiling is not None else "up to the balance"
        text = (
            f"learn: {key} from the balance before and after the run's first create of it, "
            f"sent alone; it may cost {most} (reserved until the price is known)"
        )
        lines += textwrap.wrap(text, 88, subsequent_indent="  ")
    if plan.prices:
        shown = ", ".join(
            f"{key}={credits}{'*' if key in plan.default_prices else ''}"
            for key, credits in plan.prices.items()
        )
        lines += textwrap.wrap(f"prices: {shown}", 88, subsequent_indent="  ")
        if plan.default_prices:
            lines.append("  * a default from a third-party price list, unverified: check it")
    if plan.journal_spent is not None:
        lines.append(f"spent by earlier runs (journal): {plan.journal_spent} credits")
    if plan.max_credits is not None:
        verdict = {True: "fits", False: "does NOT fit", None: "unknown"}[plan.within_budget]
        lines.append(f"budget: {plan.max_credits} credits: {verdict}")
    if plan.balance is not None:
        covers = {True: "covers the cost", False: "does NOT cover the cost", None: ""}
        lines.append(f"balance: {plan.balance} credits {covers[plan.covers]}".rstrip())
    low, high = plan.seconds
    binding = "the rate limit" if plan.bound_by == "rate limit" else f"--concurrency {concurrency}"
    lines.append(
        f"time: about {_minutes(low)} to {_minutes(high)} (tasks of 5.5 to 20 minutes; "
        f"bound by {binding})"
    )
    return lines


def spend_lines(spend: Spend) -> list[str]:
    """The summary's lines on a budgeted run's spend, and the prices it learned."""
    earlier = f" ({spend.journal} by earlier runs)" if spend.journal else ""
    lines = [
        f"spent {spend.spent} of {spend.max_credits} credits{earlier}; {spend.left} left unspent"
    ]
    if spend.learned:
        learned = " ".join(f"--price {key}={credits}" for key, credits in spend.learned.items())
        lines.append(f"prices learned (approximate; pass them next time): {learned}")
    return lines
