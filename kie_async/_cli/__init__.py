"""The ``kie-async`` command: generate, upscale, vary or extend, check tasks, run a jobs file
in bulk, or a demo.

Each subcommand is one entry of ``parser.COMMANDS``: a function adding its arguments and an async
function running it, returning the exit status. :func:`run` is the whole command as a coroutine
(tests await it); :func:`main` runs it with ``asyncio.run`` and turns Ctrl-C into exit status 130.

Exit status: 0 success; 1 a request or task failed, or its fate is uncertain; 2 a usage, input
or configuration error (nothing was sent); 130 interrupted; 141 standard output closed before
everything was written (``output``: stdout and stderr can never raise nor block a stop).

``rich`` (the ``cli`` extra) draws the progress bar; it is imported only when a bar is drawn, so
the package and this command work without it.

The package holds one module per concern: ``context`` (what every command gets, the API key,
errors in command-line words), ``options`` and ``poll_options`` (option types and the shared
options), ``parser`` (``COMMANDS`` and the parser), ``commands`` (the one-task commands and
the demo), ``kinds`` (the request-kind commands), ``bulk`` (the bulk command and run), ``budget``
(its budget and dry-run options), ``results`` (the results command), ``jobs`` (jobs files,
results lines), ``progress`` (the progress display), ``output`` (failure-proof stdout and
stderr) and ``help`` (long help texts). This module runs the command: logging, signals, exit
statuses. A new command is one entry of ``COMMANDS``; its SDK imports stay inside its
functions, so ``kie-async --help`` imports no aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import Any

from .._errors import ConfigurationError, KieError, TaskNotFoundError, ValidationError
from .._text import StderrHandler, server_name
from . import bulk as _bulk
from .context import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Context,
    InputError,
    in_cli_words,
)
from .output import EXIT_OUTPUT_CLOSED, Outputs, installed, tell
from .parser import build_parser

# The rest of the SDK is imported where it is used: `kie-async --help` and a usage error answer
# without aiohttp (its import alone takes most of a second) or the bulk runner.
# tests/test_cli.py checks it.

__all__ = ["main", "run"]


# -- running ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """Warnings (or everything, with -v) of the ``kie_async`` logger to stderr, for this run."""
    logger = logging.getLogger("kie_async")
    level = logger.level
    handler: logging.Handler | None = None
    if not any(getattr(h, "_kie_log", False) for h in logger.handlers):
        handler = StderrHandler()
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


#: The options of a create command that only a wait uses: (argument name, flag).
_WAIT_OPTIONS = (
    ("timeout", "--timeout"),
    ("first_poll", "--first-poll"),
    ("poll_interval", "--poll-interval"),
)


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
    from .._tasks.errors import TaskTimeoutError  # with the records and requests: not for --help

    ctx = Context(sys.stdout, sys.stderr, args, client_options or {})
    unused = [flag for name, flag in _WAIT_OPTIONS if getattr(args, name, None) is not None]
    if getattr(args, "wait", None) is False and unused:
        # extend/generate/upscale/vary: a --timeout nothing would use (the create would be
        # sent all the same) is a usage error, before anything is sent.
        ctx.error(f"{unused[0]}: only with --wait (add --wait, or drop {unused[0]})")
        return EXIT_USAGE
    with _logging(args.verbose):
        try:
            result: int = await args.run(ctx, args)
        except (ConfigurationError, ValidationError) as exc:
            ctx.error(in_cli_words(exc, args))
            return EXIT_USAGE
        except InputError as exc:
            ctx.error(str(exc))
            return EXIT_USAGE
        except TaskNotFoundError as exc:
            task_id = getattr(args, "task_id", None)
            ctx.error(f"no such task: {server_name(exc.url)} knows no task with the id {task_id}")
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


_STOPPING_NOTE = (
    "interrupted: stopping; no new creates are sent, and creates already on the wire are let "
    "finish so their task ids are saved (Ctrl-C again to abort at once)"
)
_ABORTING_NOTE = "interrupted again: aborting at once"


def _stop_signals() -> tuple[signal.Signals, ...]:
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    return tuple(getattr(signal, name) for name in names if hasattr(signal, name))


async def _interruptible(work: Awaitable[int], outputs: Outputs | None = None) -> int:
    """Await ``work``; Ctrl-C, SIGTERM or SIGHUP cancels it cleanly (exit 130): a bulk run
    stops sending and finishes the creates on the wire. A second one cancels again, which
    aborts that wait at once; a third gets Python's default handling. A reader of ``outputs``
    that went away (``| head`` has read enough) stops it the same way, quietly (exit 141).

    The cancel comes first and the note after, and the note cannot raise: no closed pipe or
    full disk can stand between a signal and the stop."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    interrupts = 0
    reader_gone = False
    signals = _stop_signals()

    def on_reader_gone() -> None:
        nonlocal interrupts, reader_gone
        if interrupts == 0 and task is not None:
            interrupts = 1
            reader_gone = True
            task.cancel()

    def from_writer() -> None:  # the writer thread's call
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to stop
            loop.call_soon_threadsafe(on_reader_gone)

    def on_interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            for signum in signals:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(signum)
        if task is not None:
            task.cancel()
        if interrupts == 1:
            tell(_STOPPING_NOTE if _bulk.bulk_running else "interrupted")
        else:
            tell(_ABORTING_NOTE)

    installed_signals = []
    for signum in signals:
        try:
            loop.add_signal_handler(signum, on_interrupt)
        except (NotImplementedError, RuntimeError, ValueError):  # not on this platform/thread
            continue
        installed_signals.append(signum)
    if outputs is not None:
        outputs.on_reader_gone(from_writer)
    try:
        return await work
    except asyncio.CancelledError:
        if not interrupts:
            raise
        return EXIT_OUTPUT_CLOSED if reader_gone else EXIT_INTERRUPTED
    finally:
        if outputs is not None:
            outputs.on_reader_gone(None)
        for signum in installed_signals:
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``kie-async`` console script: :func:`run` in a fresh event loop; returns the exit
    status (0 ok, 1 failed or uncertain, 2 usage or input error, 130 interrupted, 141 standard
    output closed before everything was written).

    Standard output and error are written by a thread of their own (``_output``): a closed
    pipe, a full disk or a reader that stopped reading never raises, and never holds up the
    run or a signal's stop."""
    with installed() as outputs:
        try:
            status = asyncio.run(_interruptible(run(argv), outputs))
        except KeyboardInterrupt:
            tell("interrupted")
            status = EXIT_INTERRUPTED
        if outputs is None:
            return status
        try:
            return outputs.settle(status)
        except KeyboardInterrupt:  # Ctrl-C while waiting for a slow reader
            return EXIT_INTERRUPTED
