"""The one-task commands (``extend``, the request kinds, ``status``, ``wait``, ``download``,
``credits``) and the ``demo``.
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs

from .bulk import execute_bulk
from .context import EXIT_FAILED, EXIT_OK, Context
from .kinds import add_common
from .options import (
    add_concurrency,
    check_directory,
    positive_int,
)
from .poll_options import add_poll_options, poll_seconds

if TYPE_CHECKING:
    from .._kinds.registry import TaskRequest
    from .._policies import PollPolicy
    from .._protocol.records import TaskRecord
    from .._tasks.handle import TaskHandle
    from ..testing import TaskScript
    from .jobs import Job

# -- commands -----------------------------------------------------------------------------------


def _show_record(ctx: Context, record: TaskRecord) -> None:
    from .jobs import iso, status_name

    rows: list[tuple[str, str | None]] = [
        ("task", record.task_id),
        ("status", status_name(record)),
        ("type", record.task_type),
        ("created", iso(record.created_at) or record.created_at_raw),
        ("completed", iso(record.completed_at) or record.completed_at_raw),
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
    from .._tasks.errors import TaskFailedError

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


def add_extend(parser: argparse.ArgumentParser) -> None:
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
    add_common(parser)


async def run_extend(ctx: Context, args: argparse.Namespace) -> int:
    from .._kinds.extend import ExtendRequest

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


def submitting(
    build: Callable[[argparse.Namespace], TaskRequest],
) -> Callable[[Context, argparse.Namespace], Awaitable[int]]:
    """The run of a command submitting the request ``build`` makes of its arguments (see
    ``_kinds``), as :func:`run_extend` does: the request is checked before anything is sent."""

    async def submit(ctx: Context, args: argparse.Namespace) -> int:
        request = build(args)
        async with ctx.client() as kie:
            handle = await kie.submit(request)
            ctx.say(handle.task_id)
            if not args.wait:
                return EXIT_OK
            return await _await_task(ctx, handle, args.timeout)

    return submit


def add_task_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task_id", metavar="TASK_ID", help="a kie.ai task id")


async def run_status(ctx: Context, args: argparse.Namespace) -> int:
    async with ctx.reading_client() as kie:
        record = await kie.get_task(args.task_id)
    _show_record(ctx, record)
    return EXIT_OK


def add_wait(parser: argparse.ArgumentParser) -> None:
    add_task_id(parser)
    parser.add_argument(
        "--timeout",
        "--wait-timeout",
        type=poll_seconds("timeout"),
        metavar="S",
        help="give up after S seconds (45 min)",
    )
    add_poll_options(parser, first=False)


async def run_wait(ctx: Context, args: argparse.Namespace) -> int:
    async with ctx.reading_client() as kie:
        return await _await_task(ctx, kie.task(args.task_id), args.timeout)


def add_download(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "task_id",
        metavar="TASK_ID|JOURNAL",
        help="a task id, or a bulk run's journal (an existing file): every result not saved yet",
    )
    parser.add_argument("directory", metavar="DIR", help="where to save the videos")
    add_concurrency(parser, 4, "files fetched")


async def run_download(ctx: Context, args: argparse.Namespace) -> int:
    from .jobs import status_name
    from .results import download_journal, journal_argument

    journal = journal_argument(args.task_id)
    if journal is not None:
        return await download_journal(ctx, args, journal)
    check_directory("DIR", args.directory)  # before the task's record is asked for
    async with ctx.reading_client() as kie:
        record = await kie.get_task(args.task_id)
        if not record.status.ok:
            ctx.error(f"task {record.task_id} is {status_name(record)}: nothing to download")
            return EXIT_FAILED
        paths = await kie.download(record, args.directory, concurrency=args.concurrency)
    for path in paths:
        ctx.say(str(path))
    return EXIT_OK


def add_nothing(parser: argparse.ArgumentParser) -> None:
    """A command without arguments of its own."""


async def run_credits(ctx: Context, args: argparse.Namespace) -> int:
    async with ctx.reading_client() as kie:
        balance = await kie.credits()
    ctx.say(str(balance))
    return EXIT_OK


_DEMO_PROMPTS = (
    "The camera pulls back to reveal a city of glass",
    "A flock of paper birds takes off into the sunset",
    "Rain begins to fall and the colours run like ink",
    "The scene dissolves into a slowly turning nebula",
)


def add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--videos",
        type=positive_int,
        default=36,
        metavar="N",
        help="how many videos to extend (36)",
    )
    add_concurrency(parser, 50, "jobs in flight")


async def run_demo(ctx: Context, args: argparse.Namespace) -> int:
    from .._bulk.outcomes import OutcomeKind
    from .._client import KieClient
    from .._kinds.extend import ExtendRequest
    from .._policies import PollPolicy, RateLimit
    from ..testing import FakeKieServer, TaskScript
    from .jobs import Job

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
            # No account check: the fake server is the demo's own.
            tally = await execute_bulk(
                ctx, kie, jobs, concurrency=args.concurrency, interval=0.5, preflight=False
            )
        if tally is None:  # pragma: no cover - no check, no failed check
            return EXIT_FAILED
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
