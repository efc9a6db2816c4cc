"""The subcommands (:data:`COMMANDS`) and the argument parser built from them."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

import attrs

from .._version import __version__
from .bulk import add_bulk, run_bulk
from .commands import (
    add_demo,
    add_download,
    add_extend,
    add_nothing,
    add_task_id,
    add_wait,
    run_credits,
    run_demo,
    run_download,
    run_extend,
    run_status,
    run_wait,
    submitting,
)
from .context import Context
from .help import BULK_HELP
from .kinds import KIND_COMMANDS
from .options import EPILOG, add_global_options
from .results import add_results, run_results


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
        name: Command(kind.help, kind.configure, submitting(kind.build))
        for name, kind in KIND_COMMANDS.items()
    },
    "extend": Command("extend one video; print the new task id", add_extend, run_extend),
    "status": Command("show a task's current status (one query)", add_task_id, run_status),
    "wait": Command("wait for a task to finish and show its result", add_wait, run_wait),
    "credits": Command("show the account's remaining credits", add_nothing, run_credits),
    "bulk": Command(
        "run every job (any kind, or chains) of a JSON-lines file",
        add_bulk,
        run_bulk,
        description=BULK_HELP,
    ),
    "download": Command(
        "save a task's videos, or every result of a journal not saved yet",
        add_download,
        run_download,
    ),
    "results": Command(
        "what a journal's jobs produced, and what is not saved yet",
        add_results,
        run_results,
        talks_to_kie=False,
    ),
    "demo": Command(
        "a bulk run against a local fake kie.ai (no key)", add_demo, run_demo, talks_to_kie=False
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: global options, then one subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="kie-async",
        description="Generate, upscale, vary and extend Midjourney images and videos with "
        "kie.ai, one at a time or in bulk.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_options(parser)
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
        add_global_options(sub, talks_to_kie=command.talks_to_kie)
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser
