"""``kie-async results JOURNAL`` (what a journal's jobs produced, and what is not saved yet) and
``kie-async download JOURNAL DIR`` (save it all, recorded in the journal).
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .context import EXIT_FAILED, EXIT_OK, Context, InputError
from .options import check_directory

if TYPE_CHECKING:
    from .._bulk.results import JournalResults, ResultFile

#: Endings that make a first argument of ``download`` a journal's path, even one that is not
#: there (it is then an error, not a task id).
_JOURNAL_SUFFIXES = (".jsonl", ".json", ".journal", ".log", ".txt")


def journal_argument(text: str) -> Path | None:
    """The journal ``download``'s first argument names, or ``None`` for a task id: an
    existing file is a journal; a name that looks like a path but is not there is an error."""
    path = Path(text)
    if path.is_file():
        return path
    if path.exists():
        raise InputError(f"TASK_ID|JOURNAL: {text} is not a file (a journal is a file)")
    if "/" in text or os.sep in text or path.suffix.lower() in _JOURNAL_SUFFIXES:
        raise InputError(f"JOURNAL: no such file: {text}")
    return None


def add_results(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("journal", metavar="JOURNAL", help="a bulk run's journal (--journal)")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object (for scripts) instead"
    )


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "unknown"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def _where(file: ResultFile, now: datetime) -> tuple[str, str]:
    if file.saved:
        return "saved", str(file.path)
    url = file.url.split("?", 1)[0]  # a query may hold a token, and says nothing to a reader
    if file.path is not None:
        return "deleted", f"{url} (was {file.path})"
    past = file.expires_at is not None and file.expires_at <= now
    return ("expired?" if past else "missing"), url


def _in_days(moment: datetime, now: datetime) -> str:
    days = (moment - now).total_seconds() / 86400
    if days < 0:
        return "already past: kie.ai may have deleted it"
    return f"in {days:.1f} days"


def show_results(ctx: Context, results: JournalResults) -> None:
    """The report of ``kie-async results``: one line per file, not saved first."""
    now = datetime.now(timezone.utc)
    if results.files:
        ctx.say(f"{'expires (UTC)':<18}{'state':<10}{'task':<34}{'#':<3}where")
    for file in results.files:
        state, where = _where(file, now)
        expires = _when(file.expires_at)
        ctx.say(f"{expires:<18}{state:<10}{file.task_id:<33} {file.index:<3}{where}")
    missing = results.missing
    summary = f"{len(results.files)} files: {len(results.saved)} saved"
    summary += f", {len(missing)} not saved"
    first = missing[0].expires_at if missing else None
    if first is not None:
        summary += f"; the first expires {_when(first)} UTC ({_in_days(first, now)})"
    ctx.say(summary)
    if missing:
        ctx.note(f"save them: kie-async download {results.journal} DIR")
    if results.unfinished:
        ctx.note(
            f"{len(results.unfinished)} task(s) had not finished when the journal last saw them "
            f"(not listed): kie-async download {results.journal} DIR looks them up and saves "
            "what they made"
        )


async def run_results(ctx: Context, args: argparse.Namespace) -> int:
    from .._bulk.results import read_results

    results = read_results(args.journal)
    if args.json:
        ctx.say(json.dumps(results.as_json()))
    else:
        show_results(ctx, results)
    return EXIT_OK


async def download_journal(ctx: Context, args: argparse.Namespace, journal: Path) -> int:
    """``kie-async download JOURNAL DIR``: fetch every result the journal has not saved, and
    look up the tasks it holds no end for. With nothing to fetch or look up it sends nothing
    and needs no API key."""
    from .._bulk.results import read_results

    check_directory("DIR", args.directory)
    results = read_results(journal)
    if not results.missing and not results.unfinished:
        ctx.note(
            f"nothing to fetch: the journal's {len(results.files)} file(s) are all saved "
            "(nothing was sent)"
        )
        return EXIT_OK
    async with ctx.reading_client() as kie:
        done = await kie.download_journal(journal, args.directory, concurrency=args.concurrency)
    for file in (*done.fetched, *done.found):
        ctx.say(str(file.path))
    for _, error in done.failed:
        ctx.error(str(error))
    for task_id, problem in done.unchecked:
        ctx.error(f"task {task_id} (not finished in the journal) could not be looked up: {problem}")
    earlier = len(done.results.saved) - len(done.fetched) - len(done.found)
    ended = f", {len(done.ended)} task(s) found ended since" if done.ended else ""
    ctx.note(
        f"{len(done.fetched)} fetched, {len(done.found)} already in {args.directory}, "
        f"{earlier} saved earlier, {len(done.failed)} failed{ended}"
    )
    if done.results.unfinished:
        ctx.note(
            f"{len(done.results.unfinished)} task(s) still running at kie.ai (or not looked "
            "up): run this again later, or rerun the bulk command with this journal"
        )
    return EXIT_OK if done.ok else EXIT_FAILED
