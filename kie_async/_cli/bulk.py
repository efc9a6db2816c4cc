"""The ``bulk`` command, and the bulk run it shares with ``demo``: reading the jobs file, the
progress display, the summary, and the sinks (results file, downloads) of each outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from .._errors import ConfigurationError, DownloadError, KieError, ValidationError
from .._text import server_name
from .budget import add_budget_options, budget_settings, dry_run
from .context import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Context, InputError
from .options import (
    add_concurrency,
    check_directory,
    positive_float,
    rate_limit_setting,
)
from .poll_options import add_poll_options, poll_seconds

log = logging.getLogger("kie_async")

#: What the first Ctrl-C says while a bulk run is going on (set by :func:`execute_bulk`).
bulk_running = False

if TYPE_CHECKING:
    from .._bulk.budget import Spend
    from .._bulk.outcomes import OutcomeKind, Progress
    from .._bulk.run import BulkRun
    from .._client import KieClient
    from .jobs import Job, Outcome, Sink

# -- jobs files ---------------------------------------------------------------------------------


def _read_jobs(ctx: Context, path: str) -> list[Job] | None:
    """The jobs of ``path``; ``None`` after reporting every bad line (or an unreadable file)."""
    from .jobs import parse_jobs

    try:
        data = Path(path).read_bytes()  # decoded line by line: a bad byte is named by its line
    except OSError as exc:
        raise InputError(f"cannot read the jobs file {path}: {exc.strerror or exc}") from None
    jobs, errors = parse_jobs(data)
    if errors:
        for problem in errors[:_MAX_PROBLEMS_SHOWN]:
            ctx.error(f"{path} {problem}")
        if len(errors) > _MAX_PROBLEMS_SHOWN:
            ctx.error(f"... and {len(errors) - _MAX_PROBLEMS_SHOWN} more problem(s) not shown")
        bad = len({problem.line for problem in errors})
        ctx.error(f"{bad} bad line(s) in {path}; nothing was submitted")
        return None
    if not jobs:
        raise InputError(f"{path} holds no jobs; nothing was submitted")
    return jobs


# -- the bulk run, shared by `bulk` and `demo` ---------------------------------------------------


@attrs.define
class Tally:
    """What a bulk run came to: outcomes by kind, and the jobs that did not succeed."""

    total: int
    kinds: collections.Counter[OutcomeKind] = attrs.Factory(collections.Counter)
    from_journal: int = 0
    problems: list[tuple[Job, Outcome]] = attrs.Factory(list)
    elapsed: float = 0.0
    # The run's spend, read when the summary is printed (a Spend is a snapshot).
    spend: Callable[[], Spend | None] = lambda: None

    @property
    def finished(self) -> int:
        """Jobs with an outcome."""
        return sum(self.kinds.values())

    @property
    def all_succeeded(self) -> bool:
        """True when every job succeeded."""
        from .._bulk.outcomes import OutcomeKind

        return self.kinds[OutcomeKind.SUCCEEDED] == self.total

    def add(self, job: Job, outcome: Outcome) -> None:
        """Count one outcome."""
        self.kinds[outcome.kind] += 1
        self.from_journal += outcome.from_journal
        if not outcome.ok:
            self.problems.append((job, outcome))


async def execute_bulk(
    ctx: Context,
    client: KieClient,
    jobs: Sequence[Job],
    *,
    concurrency: int,
    journal: str | None = None,
    resubmit_uncertain: bool = False,
    interval: float = 10.0,
    sinks: Sequence[Sink] = (),
    preflight: bool = True,
    **money: Any,
) -> Tally | None:
    """Run ``jobs`` through :meth:`KieClient.run_many` with a progress display, hand each
    outcome to ``sinks``, and print the summary. On cancellation (Ctrl-C) it prints what was
    finished and how to continue, then re-raises.

    With ``preflight`` the run checks the key and the host first (the balance, printed);
    ``None`` after one ``error:`` line when that check failed: nothing was sent.
    """
    global bulk_running
    from .jobs import Job
    from .progress import first_estimate, open_display

    by_request = {id(job.request): job for job in jobs}
    tally = Tally(total=len(jobs))
    limit = client.rate_limit
    policy = client.poll_policy
    estimate = first_estimate(
        limit.requests / limit.per if limit is not None else None,
        policy.first_wait(age=0.0, deadline=policy.timeout),
    )
    display = open_display(ctx.err, len(jobs), interval, estimate)
    started = time.monotonic()
    checked = False

    def on_progress(progress: Progress) -> None:
        # The first count comes after the run's account check, before its first create.
        nonlocal checked
        if not checked:
            checked = True
            if run.balance is not None:
                ctx.note(f"balance: {run.balance} credits")
        display.update(progress)

    run = client.run_many(
        (job.request for job in jobs),
        concurrency=concurrency,
        journal=journal,
        on_progress=on_progress,
        resubmit_uncertain=resubmit_uncertain,
        preflight=preflight,
        **money,  # max_credits and prices (see _budget.budget_settings)
    )
    bulk_running = True
    try:
        async with display, run as outcomes:
            tally.spend = lambda: outcomes.spend  # read when the summary is printed
            for sink in sinks:
                if isinstance(sink, _Downloader):
                    sink.run = outcomes  # saves through the run: recorded in its journal
            async for outcome in outcomes:
                job = by_request.get(id(outcome.request)) or Job(
                    0, outcome.request, outcome.request.describe()
                )
                tally.add(job, outcome)
                for sink in sinks:
                    await sink(job, outcome)
    except (ConfigurationError, ValidationError):
        raise
    except KieError as exc:
        if checked:
            raise
        ctx.error(f"{exc} (the account check before the first create; nothing was submitted)")
        return None
    except asyncio.CancelledError:
        tally.elapsed = time.monotonic() - started
        print_summary(ctx, tally)
        running = display.latest.running
        if journal is not None:
            ctx.note(
                f"interrupted: the journal {journal} records every submitted task; run the same "
                "command again to continue: finished jobs are skipped, running tasks re-attached, "
                "and a create cut off in flight is reported uncertain instead of sent twice"
            )
        else:
            ctx.note(
                f"interrupted: {running} submitted task(s) were still running at "
                f"{server_name(client.base_url)} and are "
                "not tracked; pass --journal FILE so that a rerun can continue where it stopped"
            )
        raise
    finally:
        bulk_running = False
    tally.elapsed = time.monotonic() - started
    print_summary(ctx, tally)
    return tally


_KIND_LABELS = {
    # Keyed by OutcomeKind's values, which equal its members (a str enum).
    "succeeded": "succeeded",
    "failed": "failed",
    "uncertain": "uncertain",
    "not_submitted": "not submitted",
}
_MAX_PROBLEMS_SHOWN = 20


def _problem_text(job: Job, outcome: Outcome) -> str:
    reason = str(outcome.error) if outcome.error is not None else "no result"
    if outcome.task_id and outcome.task_id not in reason:
        reason = f"task {outcome.task_id}: {reason}"
    return f"{job.label}: {_KIND_LABELS[outcome.kind]}: {reason}"


def print_summary(ctx: Context, tally: Tally) -> None:
    """The summary table (outcomes by kind) and the jobs that did not succeed, on stdout."""
    from .._bulk.outcomes import OutcomeKind
    from .progress import is_terminal

    rows = [(_KIND_LABELS[kind], tally.kinds[kind]) for kind in OutcomeKind]
    rows.append(("total", tally.finished))
    if tally.finished < tally.total:
        rows.append(("no outcome yet", tally.total - tally.finished))
    if not (is_terminal(ctx.out) and _rich_table(ctx.out, rows)):
        width = max(len(label) for label, _ in rows)
        ctx.say(f"{'outcome':<{width}}  {'jobs':>6}")
        for label, count in rows:
            ctx.say(f"{label:<{width}}  {count:>6}")
    rate = f" ({tally.finished / tally.elapsed:.1f}/s)" if tally.elapsed > 0 else ""
    journal = (
        f"; {tally.from_journal} already finished in the journal" if tally.from_journal else ""
    )
    ctx.say(f"{tally.finished} of {tally.total} jobs in {tally.elapsed:.1f}s{rate}{journal}")
    spend = tally.spend()
    if spend is not None:
        from .budget import spend_lines

        for line in spend_lines(spend):
            ctx.say(line)
    problems = sorted(tally.problems, key=lambda problem: problem[0].number)
    for job, outcome in problems[:_MAX_PROBLEMS_SHOWN]:
        ctx.say(_problem_text(job, outcome))
    hidden = len(tally.problems) - _MAX_PROBLEMS_SHOWN
    if hidden > 0:
        ctx.say(f"... and {hidden} more (the results file, --out, lists every job)")


def _rich_table(stream: TextIO, rows: list[tuple[str, int]]) -> bool:
    """Print ``rows`` as a rich table; False when rich is not installed."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        return False
    table = Table(title="summary", title_justify="left")
    table.add_column("outcome")
    table.add_column("jobs", justify="right")
    for label, count in rows:
        table.add_row(label, str(count))
    Console(file=stream).print(table)
    return True


def add_bulk(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("jobs", metavar="JOBS.jsonl", help="one JSON job per line")
    add_concurrency(parser, 50, "jobs in flight")
    parser.add_argument("--journal", metavar="FILE", help="record progress so a rerun continues")
    parser.add_argument("--out", metavar="RESULTS.jsonl", help="write one JSON result per job")
    parser.add_argument(
        "--resubmit-uncertain",
        action="store_true",
        help="resubmit jobs the journal marks uncertain (may pay twice)",
    )
    parser.add_argument(
        "--rate-limit",
        type=rate_limit_setting,
        metavar="N/SECONDS",
        help="at most N creates per SECONDS (kie.ai's default: 20/10)",
    )
    parser.add_argument(
        "--rate-limit-redis",
        metavar="URL",
        help="share the rate limit with every process of the account through the Redis at URL "
        "(default: KIE_RATE_LIMIT_REDIS; needs the redis extra)",
    )
    add_poll_options(parser)
    parser.add_argument(
        "--wait-timeout",
        type=poll_seconds("timeout"),
        metavar="S",
        help="give up waiting for a task after S seconds (2700; a rerun re-attaches to it)",
    )
    parser.add_argument(
        "--progress-interval",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="seconds between plain progress lines when stderr is not a terminal (10)",
    )
    parser.add_argument(
        "--download",
        metavar="DIR",
        help="save each succeeded job's videos in DIR as <task_id>_<i>.mp4 (a rerun skips "
        "files already saved)",
    )
    add_budget_options(parser)


async def run_bulk(ctx: Context, args: argparse.Namespace) -> int:
    from .._bulk.outcomes import OutcomeKind
    from .._policies import RateLimit, RedisRateLimit

    if args.download is not None:
        check_directory("--download", args.download)  # before a create is paid for
    if args.json and not args.dry_run:
        raise InputError("--json: only with --dry-run")
    jobs = _read_jobs(ctx, args.jobs)
    if jobs is None:
        return EXIT_USAGE
    money = budget_settings(args, jobs)  # a job without a price refuses a budgeted run here
    settings: dict[str, Any] = {}
    shared = args.rate_limit_redis or os.environ.get("KIE_RATE_LIMIT_REDIS", "").strip()
    if shared:
        numbers = args.rate_limit or RateLimit()
        settings["rate_limit"] = RedisRateLimit(shared, requests=numbers.requests, per=numbers.per)
    elif args.rate_limit is not None:
        settings["rate_limit"] = args.rate_limit
    async with ctx.client(**settings) as kie:
        if args.dry_run:
            return await dry_run(ctx, kie, jobs, args, money)
        with contextlib.ExitStack() as resources:
            sinks = _bulk_sinks(args, kie, resources)
            tally = await execute_bulk(
                ctx,
                kie,
                jobs,
                concurrency=args.concurrency,
                journal=args.journal,
                resubmit_uncertain=args.resubmit_uncertain,
                interval=args.progress_interval,
                sinks=sinks,
                **money,
            )
            if tally is None:
                return EXIT_FAILED
    downloads = [sink for sink in sinks if isinstance(sink, _Downloader)]
    for downloader in downloads:
        downloader.report(ctx)
    if tally.kinds[OutcomeKind.UNCERTAIN]:
        ctx.note(
            "uncertain: a create's reply was lost, so a task may exist (and be paid for); check "
            "your kie.ai dashboard, or rerun with the journal and --resubmit-uncertain to send "
            "those jobs again"
        )
    if any(downloader.failed for downloader in downloads):
        return EXIT_FAILED
    return EXIT_OK if tally.all_succeeded else EXIT_FAILED


def _bulk_sinks(
    args: argparse.Namespace, kie: KieClient, resources: contextlib.ExitStack
) -> list[Sink]:
    """What to do with each outcome of a bulk run, one sink per option that asks for one.
    Files and other resources are entered on ``resources``; ``kie`` is for sinks that call
    kie.ai themselves (fetching download links, say)."""
    from .jobs import ResultsWriter

    sinks: list[Sink] = []
    if args.out is not None:
        sinks.append(ResultsWriter(resources.enter_context(_open_output(args.out))))
    if args.download is not None:
        sinks.append(_Downloader(kie, Path(args.download)))
    return sinks


class _Downloader:
    """A :data:`Sink` saving each succeeded job's files (a chain's: every step's) through
    the run (:meth:`BulkRun.download`), so the run's journal records each; a failed download
    is logged and counted (the run goes on), and a rerun fetches only the files still
    missing."""

    def __init__(self, kie: KieClient, directory: Path) -> None:
        self._kie = kie
        self._directory = directory
        #: The run whose outcomes this saves (set by :func:`execute_bulk`).
        self.run: BulkRun[Any] | None = None
        self.saved = 0
        self.failed = 0

    async def __call__(self, job: Job, outcome: Outcome) -> None:
        records = [step.record for step in outcome.steps] or [outcome.record]
        if not outcome.ok or not any(r is not None and r.result_urls for r in records):
            return
        try:
            if self.run is not None:
                paths = await self.run.download(outcome, self._directory)
            else:
                assert outcome.record is not None
                paths = await self._kie.download(outcome.record, self._directory)
        except DownloadError as exc:
            self.failed += 1
            log.warning("%s: %s", job.label, exc)
            return
        self.saved += len(paths)

    def report(self, ctx: Context) -> None:
        """One line on standard error: what was saved, what failed."""
        failed = f"; {self.failed} job(s) failed (rerun to retry)" if self.failed else ""
        ctx.note(f"downloads: {self.saved} file(s) in {self._directory}{failed}")


@contextlib.contextmanager
def _open_output(path: str) -> Iterator[TextIO]:
    try:
        file = Path(path).open("w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    with file:
        yield file
