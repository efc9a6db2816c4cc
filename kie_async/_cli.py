"""The ``kie-async`` command: generate, upscale, vary or extend, check tasks, run a jobs file
in bulk, or a demo.

Each subcommand is one entry of :data:`COMMANDS`: a function adding its arguments and an async
function running it, returning the exit status. :func:`run` is the whole command as a coroutine
(tests await it); :func:`main` runs it with ``asyncio.run`` and turns Ctrl-C into exit status 130.

Exit status: 0 success; 1 a request or task failed, or its fate is uncertain; 2 a usage, input
or configuration error (nothing was sent); 130 interrupted.

``rich`` (the ``cli`` extra) draws the progress bar; it is imported only when a bar is drawn, so
the package and this command work without it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import math
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from ._cli_help import BULK_HELP
from ._cli_kinds import KIND_COMMANDS, KIND_FLAGS
from ._errors import (
    ConfigurationError,
    DownloadError,
    KieError,
    TaskNotFoundError,
    ValidationError,
)
from ._requests import TaskRequest
from ._task_errors import TaskFailedError, TaskTimeoutError
from ._text import printable
from ._version import __version__

# The rest of the SDK is imported where it is used: `kie-async --help` and a usage error answer
# without aiohttp (its import alone takes most of a second) or the bulk runner.
# tests/test_cli.py checks it.
if TYPE_CHECKING:
    from ._bulk import OutcomeKind
    from ._cli_jobs import Job, Outcome, Sink
    from ._client import KieClient
    from ._handle import TaskHandle
    from ._models import TaskRecord
    from ._polling import PollPolicy
    from ._ratelimit import RateLimit
    from .testing import TaskScript

__all__ = ["COMMANDS", "main", "run"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


log = logging.getLogger("kie_async")


# -- the context every command gets --------------------------------------------------------------


@attrs.define
class Context:
    """Where a command writes, and the client settings it was started with."""

    out: TextIO
    err: TextIO
    args: argparse.Namespace
    client_options: Mapping[str, Any]

    def say(self, text: str = "") -> None:
        """A line on standard output (the command's result), control characters escaped: it
        may quote a server's text, which must not reach the terminal as escape sequences."""
        print(printable(text), file=self.out, flush=True)

    def note(self, text: str) -> None:
        """A line on standard error (progress, hints), escaped as :meth:`say`."""
        print(printable(text), file=self.err, flush=True)

    def error(self, text: str) -> None:
        """One ``error: ...`` line on standard error."""
        self.note(f"error: {text}")

    def client(self, **settings: Any) -> KieClient:
        """A :class:`KieClient` from the global options; ``settings`` override.

        Raises:
            ConfigurationError: no API key, an unreadable key file, or a bad base URL.
        """
        # Imported here, not at the top: aiohttp's import costs most of a second, and --help or
        # a usage error must not pay it.
        from ._client import KieClient, _Secret

        options: dict[str, Any] = {
            # Wrapped, so that no local of these frames shows the key in a traceback.
            "api_key": _Secret(_api_key(self.args.api_key_file)),
            "base_url": self.args.base_url,
        }
        if self.args.allow_insecure_http:
            options["allow_insecure_http"] = True
        options.update(self.client_options)
        options.update(settings)
        return KieClient(**options)

    def reading_client(self) -> KieClient:
        """:meth:`client` for a command that creates nothing (``status``, ``wait``,
        ``credits``, ``download``): without the rate limit of creates, so a shared limit's
        Redis (``KIE_RATE_LIMIT_REDIS``) that cannot be reached does not stop it."""
        return self.client(rate_limit=None)


def _api_key(path: str | None) -> str:
    if path is None:
        key = os.environ.get("KIE_API_KEY", "")
        if not key.strip():
            raise ConfigurationError(
                "api_key", "no API key: set KIE_API_KEY or pass --api-key-file PATH"
            )
        return key
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigurationError("api_key", f"cannot read the key file {path}: {reason}") from None
    if not key:
        raise ConfigurationError("api_key", f"the key file {path} is empty")
    return key


class _InputError(Exception):
    """Bad input to a command (a file that cannot be read or written): exit status 2."""


#: How the library's settings and arguments are spelled on the command line.
_FLAGS = {
    "base_url": "--base-url",
    "task_id": "TASK_ID",
    "index": "--index",
    "prompt": "--prompt",
    "mode": "--mode",
    "watermark": "--watermark",
    "callback_url": "--callback-url",
    "rate_limit": "--rate-limit",
    "concurrency": "--concurrency",
    "timeout": "--timeout",
    **KIND_FLAGS,
}

#: Python spellings in the library's messages, and what a command-line user types instead.
_PYTHON_WORDS = {
    "allow_insecure_http=True": "--allow-insecure-http",
    "KieClient(api_key=...)": "--api-key-file PATH",
    "KieClient(base_url=...)": "--base-url URL",
}


def _redis_source(args: argparse.Namespace) -> str | None:
    """Where the shared rate limit's Redis URL came from: the option or the variable."""
    if getattr(args, "rate_limit_redis", None):
        return "--rate-limit-redis"
    if os.environ.get("KIE_RATE_LIMIT_REDIS", "").strip():
        return "KIE_RATE_LIMIT_REDIS"
    return None


def _in_cli_words(
    exc: ConfigurationError | ValidationError, args: argparse.Namespace | None = None
) -> str:
    """A configuration or input error as a command-line user reads it: flags, not Python
    arguments, and the setting named once (``--base-url: ...``; nothing for the API key, whose
    message says what to do). A shared rate limit's error names where its Redis URL came
    from (``--rate-limit-redis`` or ``KIE_RATE_LIMIT_REDIS``), not ``--rate-limit``."""
    name, reason = (
        (exc.setting, exc.reason)
        if isinstance(exc, ConfigurationError)
        else (
            exc.field,
            exc.reason,
        )
    )
    for python, flag in _PYTHON_WORDS.items():
        reason = reason.replace(python, flag)
    if name == "api_key":
        return reason
    source = _redis_source(args) if args is not None and name == "rate_limit" else None
    return f"{source or _FLAGS.get(name, name)}: {reason}"


# -- jobs files ---------------------------------------------------------------------------------


def _read_jobs(ctx: Context, path: str) -> list[Job] | None:
    """The jobs of ``path``; ``None`` after reporting every bad line (or an unreadable file)."""
    from ._cli_jobs import parse_jobs

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _InputError(f"cannot read the jobs file {path}: {reason}") from None
    jobs, errors = parse_jobs(text)
    if errors:
        for problem in errors:
            ctx.error(f"{path} {problem}")
        bad = len({problem.line for problem in errors})
        ctx.error(f"{bad} bad line(s) in {path}; nothing was submitted")
        return None
    if not jobs:
        raise _InputError(f"{path} holds no jobs; nothing was submitted")
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

    @property
    def finished(self) -> int:
        """Jobs with an outcome."""
        return sum(self.kinds.values())

    @property
    def all_succeeded(self) -> bool:
        """True when every job succeeded."""
        from ._bulk import OutcomeKind

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
) -> Tally:
    """Run ``jobs`` through :meth:`KieClient.run_many` with a progress display, hand each
    outcome to ``sinks``, and print the summary. On cancellation (Ctrl-C) it prints what was
    finished and how to continue, then re-raises.
    """
    global _bulk_running
    from ._cli_jobs import Job
    from ._cli_progress import _open_display, first_estimate

    by_request = {id(job.request): job for job in jobs}
    tally = Tally(total=len(jobs))
    limit = client.rate_limit
    estimate = first_estimate(
        limit.requests / limit.per if limit is not None else None, client.poll_policy.interval
    )
    display = _open_display(ctx.err, len(jobs), interval, estimate)
    started = time.monotonic()
    _bulk_running = True
    try:
        async with (
            display,
            client.run_many(
                (job.request for job in jobs),
                concurrency=concurrency,
                journal=journal,
                on_progress=display.update,
                resubmit_uncertain=resubmit_uncertain,
            ) as outcomes,
        ):
            async for outcome in outcomes:
                job = by_request.get(id(outcome.request)) or Job(
                    0, outcome.request, outcome.request.describe()
                )
                tally.add(job, outcome)
                for sink in sinks:
                    await sink(job, outcome)
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
                f"interrupted: {running} submitted task(s) were still running at kie.ai and are "
                "not tracked; pass --journal FILE so that a rerun can continue where it stopped"
            )
        raise
    finally:
        _bulk_running = False
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
    from ._bulk import OutcomeKind
    from ._cli_progress import _is_terminal

    rows = [(_KIND_LABELS[kind], tally.kinds[kind]) for kind in OutcomeKind]
    rows.append(("total", tally.finished))
    if tally.finished < tally.total:
        rows.append(("no outcome yet", tally.total - tally.finished))
    if not (_is_terminal(ctx.out) and _rich_table(ctx.out, rows)):
        width = max(len(label) for label, _ in rows)
        ctx.say(f"{'outcome':<{width}}  {'jobs':>6}")
        for label, count in rows:
            ctx.say(f"{label:<{width}}  {count:>6}")
    rate = f" ({tally.finished / tally.elapsed:.1f}/s)" if tally.elapsed > 0 else ""
    journal = (
        f"; {tally.from_journal} already finished in the journal" if tally.from_journal else ""
    )
    ctx.say(f"{tally.finished} of {tally.total} jobs in {tally.elapsed:.1f}s{rate}{journal}")
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


# -- commands -----------------------------------------------------------------------------------


def _show_record(ctx: Context, record: TaskRecord) -> None:
    from ._cli_jobs import _status_name

    rows: list[tuple[str, str | None]] = [
        ("task", record.task_id),
        ("status", _status_name(record)),
        ("type", record.task_type),
        ("created", record.created_at_raw),
        ("completed", record.completed_at_raw),
    ]
    if record.error_code or record.error_message:
        detail = ": ".join(x for x in (record.error_code, record.error_message) if x)
        rows.append(("error", detail))
    rows.extend(("result", url) for url in record.result_urls)
    for label, value in rows:
        if value:
            ctx.say(f"{label + ':':<11}{value}")


async def _await_task(
    ctx: Context, handle: TaskHandle, timeout: float | None, poll: PollPolicy | None = None
) -> int:
    ctx.note(f"waiting for task {handle.task_id} ...")
    try:
        record = await (
            handle.wait(poll=poll) if timeout is None else handle.wait(timeout=timeout, poll=poll)
        )
    except TaskFailedError as exc:
        if exc.record is not None:
            _show_record(ctx, exc.record)
        ctx.error(str(exc))
        return EXIT_FAILED
    _show_record(ctx, record)
    return EXIT_OK


def _add_extend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task_id", metavar="TASK_ID", help="the original video record's task id")
    parser.add_argument(
        "--index", type=int, default=0, help="which video of the record, 0 to 3 (0)"
    )
    parser.add_argument("--prompt", help="what happens next (manual mode); at most 2000 chars")
    parser.add_argument(
        "--mode",
        choices=("manual", "auto"),
        help="manual follows --prompt, auto lets the model continue (default: from --prompt)",
    )
    parser.add_argument("--watermark", help="a watermark text for the result")
    parser.add_argument("--callback-url", metavar="URL", help="kie.ai POSTs the result here")
    parser.add_argument("--wait", action="store_true", help="wait for the result and print it")
    parser.add_argument(
        "--timeout", type=_positive_float, metavar="S", help="with --wait: give up after S seconds"
    )


async def _extend(ctx: Context, args: argparse.Namespace) -> int:
    from ._requests import ExtendRequest

    request = ExtendRequest(
        args.task_id,
        args.index,
        args.prompt,
        mode=args.mode,
        watermark=args.watermark,
        callback_url=args.callback_url,
    )
    async with ctx.client() as kie:
        handle = await kie.submit(request)
        ctx.say(handle.task_id)
        if not args.wait:
            return EXIT_OK
        return await _await_task(ctx, handle, args.timeout)


def _submitting(
    build: Callable[[argparse.Namespace], TaskRequest],
) -> Callable[[Context, argparse.Namespace], Awaitable[int]]:
    """The run of a command submitting the request ``build`` makes of its arguments (see
    ``_cli_kinds``), as :func:`_extend` does: the request is checked before anything is sent."""

    async def submit(ctx: Context, args: argparse.Namespace) -> int:
        request = build(args)
        async with ctx.client() as kie:
            handle = await kie.submit(request)
            ctx.say(handle.task_id)
            if not args.wait:
                return EXIT_OK
            return await _await_task(ctx, handle, args.timeout)

    return submit


def _add_task_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task_id", metavar="TASK_ID", help="a kie.ai task id")


async def _status(ctx: Context, args: argparse.Namespace) -> int:
    async with ctx.reading_client() as kie:
        record = await kie.get_task(args.task_id)
    _show_record(ctx, record)
    return EXIT_OK


def _add_wait(parser: argparse.ArgumentParser) -> None:
    _add_task_id(parser)
    parser.add_argument(
        "--timeout", type=_positive_float, metavar="S", help="give up after S seconds (45 min)"
    )


async def _wait(ctx: Context, args: argparse.Namespace) -> int:
    async with ctx.reading_client() as kie:
        return await _await_task(ctx, kie.task(args.task_id), args.timeout)


def _add_download(parser: argparse.ArgumentParser) -> None:
    _add_task_id(parser)
    parser.add_argument("directory", metavar="DIR", help="where to save the videos")
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help="files fetched at once (4)",
    )


def _check_directory(name: str, directory: str) -> None:
    """Raise :class:`_InputError` unless files can be saved in ``directory`` (it may not exist
    yet: then its nearest existing parent must be a writable directory)."""
    path = Path(directory)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        what = "is" if existing == path else f"is under {existing}, which is"
        raise _InputError(f"{name}: cannot save files in {directory}: it {what} not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _InputError(f"{name}: cannot save files in {directory}: {existing} is not writable")


async def _download(ctx: Context, args: argparse.Namespace) -> int:
    from ._cli_jobs import _status_name

    _check_directory("DIR", args.directory)  # before the task's record is asked for
    async with ctx.reading_client() as kie:
        record = await kie.get_task(args.task_id)
        if not record.status.ok:
            ctx.error(f"task {record.task_id} is {_status_name(record)}: nothing to download")
            return EXIT_FAILED
        paths = await kie.download(record, args.directory, concurrency=args.concurrency)
    for path in paths:
        ctx.say(str(path))
    return EXIT_OK


def _add_nothing(parser: argparse.ArgumentParser) -> None:
    """A command without arguments of its own."""


async def _credits(ctx: Context, args: argparse.Namespace) -> int:
    async with ctx.reading_client() as kie:
        balance = await kie.credits()
    ctx.say(str(balance))
    return EXIT_OK


def _add_bulk(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("jobs", metavar="JOBS.jsonl", help="one JSON job per line")
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=50,
        metavar="N",
        help="jobs in flight at once (50)",
    )
    parser.add_argument("--journal", metavar="FILE", help="record progress so a rerun continues")
    parser.add_argument("--out", metavar="RESULTS.jsonl", help="write one JSON result per job")
    parser.add_argument(
        "--resubmit-uncertain",
        action="store_true",
        help="resubmit jobs the journal marks uncertain (may pay twice)",
    )
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
        metavar="N/SECONDS",
        help="at most N creates per SECONDS (kie.ai's default: 20/10)",
    )
    parser.add_argument(
        "--rate-limit-redis",
        metavar="URL",
        help="share the rate limit with every process of the account through the Redis at URL "
        "(default: KIE_RATE_LIMIT_REDIS; needs the redis extra)",
    )
    parser.add_argument(
        "--progress-interval",
        type=_positive_float,
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


async def _bulk(ctx: Context, args: argparse.Namespace) -> int:
    from ._bulk import OutcomeKind
    from ._ratelimit import RateLimit
    from ._redis_limit import RedisRateLimit

    jobs = _read_jobs(ctx, args.jobs)
    if jobs is None:
        return EXIT_USAGE
    settings: dict[str, Any] = {}
    shared = args.rate_limit_redis or os.environ.get("KIE_RATE_LIMIT_REDIS", "").strip()
    if shared:
        numbers = args.rate_limit or RateLimit()
        settings["rate_limit"] = RedisRateLimit(shared, requests=numbers.requests, per=numbers.per)
    elif args.rate_limit is not None:
        settings["rate_limit"] = args.rate_limit
    async with ctx.client(**settings) as kie:
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
            )
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
    from ._cli_jobs import _ResultsWriter

    sinks: list[Sink] = []
    if args.out is not None:
        sinks.append(_ResultsWriter(resources.enter_context(_open_output(args.out))))
    if args.download is not None:
        sinks.append(_Downloader(kie, Path(args.download)))
    return sinks


class _Downloader:
    """A :data:`Sink` saving each succeeded job's videos; a failed download is logged and
    counted (the run goes on), and a rerun fetches only the files still missing."""

    def __init__(self, kie: KieClient, directory: Path) -> None:
        self._kie = kie
        self._directory = directory
        self.saved = 0
        self.failed = 0

    async def __call__(self, job: Job, outcome: Outcome) -> None:
        if not outcome.ok or outcome.record is None or not outcome.record.result_urls:
            return
        try:
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
        raise _InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    with file:
        yield file


_DEMO_PROMPTS = (
    "The camera pulls back to reveal a city of glass",
    "A flock of paper birds takes off into the sunset",
    "Rain begins to fall and the colours run like ink",
    "The scene dissolves into a slowly turning nebula",
)


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--videos",
        type=_positive_int,
        default=36,
        metavar="N",
        help="how many videos to extend (36)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=50,
        metavar="N",
        help="jobs in flight at once (50)",
    )


async def _demo(ctx: Context, args: argparse.Namespace) -> int:
    from ._bulk import OutcomeKind
    from ._cli_jobs import Job
    from ._client import KieClient
    from ._polling import PollPolicy
    from ._ratelimit import RateLimit
    from ._requests import ExtendRequest
    from .testing import FakeKieServer, TaskScript

    count: int = args.videos
    rng = random.Random(2024)
    # The fake's limit is raised like an account whose limit support has raised; the client
    # keeps to the same limit, so no create is refused.
    server = FakeKieServer(rate_limit=(50, 1.0), strict_sources=True, record_requests=False)
    async with server:
        sources = [server.add_source_video(videos=4) for _ in range(math.ceil(count / 4))]
        scripts: dict[tuple[object, object], TaskScript] = {}
        jobs: list[Job] = []
        for i in range(count):
            source, index = sources[i // 4], i % 4
            seconds = rng.uniform(0.2, 1.5)
            if i % 12 == 7:
                failed = TaskScript.failed("content policy violation (a scripted failure)")
                script = attrs.evolve(failed, seconds=seconds)
            else:
                script = TaskScript(seconds=seconds, videos=1)
            scripts[(source, index)] = script
            request = ExtendRequest(source, index, _DEMO_PROMPTS[i % len(_DEMO_PROMPTS)])
            jobs.append(Job(i + 1, request, f"job {i + 1}"))
        server.script_for = lambda body: scripts.get((body.get("taskId"), body.get("index")))
        planned_failures = sum(1 for s in scripts.values() if s.flag != 1)
        ctx.note(
            f"demo: extending {count} videos of {len(sources)} source records on a local fake "
            f"kie.ai; {planned_failures} are scripted to fail"
        )
        poll = PollPolicy(
            interval=0.2, factor=1, max_interval=0.2, jitter=0.1, timeout=60, first_delay=0.2
        )
        async with KieClient(
            api_key=server.api_key,
            base_url=server.url,
            poll=poll,
            rate_limit=RateLimit(50, per=1.0),
        ) as kie:
            tally = await execute_bulk(ctx, kie, jobs, concurrency=args.concurrency, interval=0.5)
        as_planned = (
            tally.kinds[OutcomeKind.SUCCEEDED] == count - planned_failures
            and tally.kinds[OutcomeKind.FAILED] == planned_failures
        )
        ctx.say(
            f"This demo ran against a local fake kie.ai ({server.url}, "
            "kie_async.testing.FakeKieServer): no API key was used and no credits were spent. "
            f"It accepted {server.counts['create']} creates, answered {server.counts['poll']} "
            f"polls and refused {server.counts['rejected:429']} creates for its rate limit."
        )
    if not as_planned:
        ctx.error("the demo did not end as scripted")
        return EXIT_FAILED
    return EXIT_OK


@attrs.frozen
class Command:
    """One subcommand: its help line, how it adds its arguments, and the coroutine running it."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Context, argparse.Namespace], Awaitable[int]]
    #: The longer text of ``COMMAND --help`` (default: ``help``).
    description: str | None = None
    #: False for a command that never calls kie.ai: its help shows no key or URL options.
    talks_to_kie: bool = True


#: The subcommands, in the order ``--help`` lists them.
COMMANDS: dict[str, Command] = {
    **{
        name: Command(kind.help, kind.configure, _submitting(kind.build))
        for name, kind in KIND_COMMANDS.items()
    },
    "extend": Command("extend one video; print the new task id", _add_extend, _extend),
    "status": Command("show a task's current status (one query)", _add_task_id, _status),
    "wait": Command("wait for a task to finish and show its result", _add_wait, _wait),
    "credits": Command("show the account's remaining credits", _add_nothing, _credits),
    "bulk": Command(
        "run every job (any kind, or chains) of a JSON-lines file",
        _add_bulk,
        _bulk,
        description=BULK_HELP,
    ),
    "download": Command("save a finished task's videos in a directory", _add_download, _download),
    "demo": Command(
        "a bulk run against a local fake kie.ai (no key)", _add_demo, _demo, talks_to_kie=False
    ),
}


# -- argument parsing ---------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _rate_limit(text: str) -> RateLimit:
    from ._ratelimit import RateLimit

    count, slash, per = text.partition("/")
    try:
        if not slash:
            raise ValueError
        requests, seconds = int(count), float(per)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not N/SECONDS (e.g. 20/10: 20 creates per 10 seconds)"
        ) from None
    if requests < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: N must be at least 1 (creates per SECONDS)")
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: SECONDS must be a number > 0")
    return RateLimit(requests, per=seconds)


_EPILOG = """\
exit status: 0 success; 1 a request or task failed or is uncertain; 2 usage, input or
configuration error (nothing was sent); 130 interrupted.
The API key comes from --api-key-file or the KIE_API_KEY environment variable."""


def _add_global_options(parser: argparse.ArgumentParser, *, talks_to_kie: bool = True) -> None:
    # Accepted before and after the subcommand. SUPPRESS keeps a subparser from overwriting a
    # value given before it; each parser gets its own actions, as argparse shares defaults
    # between a parent parser's actions and its children. A command that never calls kie.ai
    # (the demo) shows only -v.
    if talks_to_kie:
        _add_connection_options(parser)
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log every request (DEBUG) to stderr",
    )


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-key-file",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="read the API key from PATH (default: the KIE_API_KEY environment variable)",
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="the API root (default: KIE_BASE_URL or https://api.kie.ai)",
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        default=argparse.SUPPRESS,
        help="accept a plain http:// --base-url that is not loopback (sends the key in clear)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: global options, then one subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="kie-async",
        description="Generate, upscale, vary and extend Midjourney images and videos with "
        "kie.ai, one at a time or in bulk.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global_options(parser)
    parser.add_argument("--version", action="version", version=f"kie-async {__version__}")
    parser.set_defaults(api_key_file=None, base_url=None, allow_insecure_http=False, verbose=False)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    commands.required = True
    for name, command in COMMANDS.items():
        sub = commands.add_parser(
            name,
            help=command.help,
            description=command.description or command.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_global_options(sub, talks_to_kie=command.talks_to_kie)
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


# -- running ------------------------------------------------------------------------------------


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (a progress bar may redirect it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)


@contextlib.contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """Warnings (or everything, with -v) of the ``kie_async`` logger to stderr, for this run."""
    logger = logging.getLogger("kie_async")
    level = logger.level
    handler: logging.Handler | None = None
    if not any(getattr(h, "_kie_log", False) for h in logger.handlers):
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
    if verbose:
        logger.setLevel(logging.DEBUG)
    elif level == logging.NOTSET or level > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        if handler is not None:
            logger.removeHandler(handler)
        logger.setLevel(level)


async def run(
    argv: Sequence[str] | None = None, *, client_options: Mapping[str, Any] | None = None
) -> int:
    """Run the ``kie-async`` command with ``argv`` (default ``sys.argv[1:]``); return its exit
    status. Errors are printed as one ``error: ...`` line, never as a traceback.

    Args:
        argv: the arguments, e.g. ``["bulk", "jobs.jsonl", "--out", "results.jsonl"]``.
        client_options: extra :class:`KieClient` keyword arguments, e.g. zero-wait policies in
            tests; command-line options take precedence.

    Example::

        status = await run(["--base-url", server.url, "credits"])
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error or the help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE if exc.code else EXIT_OK
    ctx = Context(sys.stdout, sys.stderr, args, client_options or {})
    if getattr(args, "wait", None) is False and getattr(args, "timeout", None) is not None:
        # extend/generate/upscale/vary: a --timeout nothing would use (the create would be
        # sent all the same) is a usage error, before anything is sent.
        ctx.error("--timeout: only with --wait (add --wait, or drop --timeout)")
        return EXIT_USAGE
    with _logging(args.verbose):
        try:
            result: int = await args.run(ctx, args)
        except (ConfigurationError, ValidationError) as exc:
            ctx.error(_in_cli_words(exc, args))
            return EXIT_USAGE
        except _InputError as exc:
            ctx.error(str(exc))
            return EXIT_USAGE
        except TaskNotFoundError:
            task_id = getattr(args, "task_id", None)
            ctx.error(f"no such task: kie.ai knows no task with the id {task_id}")
            return EXIT_FAILED
        except TaskTimeoutError as exc:
            ctx.error(str(exc))
            ctx.note(f"the task may still finish: kie-async wait {exc.task_id}")
            return EXIT_FAILED
        except KieError as exc:
            ctx.error(str(exc))
            return EXIT_FAILED
        except OSError as exc:  # e.g. the journal cannot be written
            ctx.error(f"{type(exc).__name__}: {exc}")
            return EXIT_FAILED
    return result


#: What the first Ctrl-C says while a bulk run is going on (set by :func:`execute_bulk`).
_bulk_running = False

_STOPPING_NOTE = (
    "interrupted: stopping; no new creates are sent, and creates already on the wire are let "
    "finish so their task ids are saved (Ctrl-C again to abort at once)"
)
_ABORTING_NOTE = "interrupted again: aborting at once"


async def _interruptible(work: Awaitable[int]) -> int:
    """Await ``work``; Ctrl-C or SIGTERM cancels it cleanly (exit 130): a bulk run stops
    sending and finishes the creates on the wire. A second one cancels again, which aborts
    that wait at once; a third gets Python's default handling."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    interrupts = 0
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            print(_STOPPING_NOTE if _bulk_running else "interrupted", file=sys.stderr, flush=True)
        else:
            print(_ABORTING_NOTE, file=sys.stderr, flush=True)
            for signum in signals:
                loop.remove_signal_handler(signum)
        if task is not None:
            task.cancel()

    installed = []
    for signum in signals:
        try:
            loop.add_signal_handler(signum, on_interrupt)
        except (NotImplementedError, RuntimeError, ValueError):  # not on this platform/thread
            continue
        installed.append(signum)
    try:
        return await work
    except asyncio.CancelledError:
        if not interrupts:
            raise
        return EXIT_INTERRUPTED
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``kie-async`` console script: :func:`run` in a fresh event loop; returns the exit
    status (0 ok, 1 failed or uncertain, 2 usage or input error, 130 interrupted)."""
    try:
        return asyncio.run(_interruptible(run(argv)))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
