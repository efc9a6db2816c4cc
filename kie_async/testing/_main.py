"""``python -m kie_async.testing``: a fake kie.ai on this machine until interrupted.

Benchmarks and manual tries run it in its own process; it prints its URL first and, on
SIGTERM, its counts last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys

import aiohttp

from ._scripts import DEFAULT_API_KEY, TaskScript
from ._server import FakeKieServer
from ._signing import callback_body, send_callback


def _parse_rate(text: str) -> tuple[int, float]:
    """``N/SECONDS`` (``N`` alone: per 10 s), checked here so that a typo is a usage error
    rather than a traceback when the server starts."""
    count, _, per = text.partition("/")
    try:
        limit = int(count), float(per or 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not N/SECONDS (e.g. 20/10)") from None
    if limit[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: N must be at least 1 (requests per SECONDS)")
    if not 0 < limit[1] < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r}: SECONDS must be a number > 0")
    return limit


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, got {port}")
    return port


def _count(text: str) -> int:
    count = int(text)
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {count}")
    return count


def _seconds(text: str) -> float:
    seconds = float(text)
    if not 0 <= seconds < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text}")
    return seconds


async def _serve_forever(args: argparse.Namespace) -> None:
    server = FakeKieServer(
        api_key=args.api_key,
        rate_limit=args.rate_limit,
        record_requests=False,
        host=args.host,
        port=args.port,
        extend_extensions=not args.refuse_reextend,
        max_extensions=args.max_extensions,
        unknown_task=args.unknown_task,
        callback_key=args.callback_key,
        callback_url=args.callback_url,
    )
    server.default_script = TaskScript(polls=args.polls, seconds=args.seconds)
    stop = asyncio.Event()
    # SIGTERM ends the run cleanly, so the counts below reach a parent process (benchmarks
    # read how many creates were accepted or rejected with 429 from them).
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows loops
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        try:
            await server.start()
        except OSError as exc:  # the port is taken, or the address is not this machine's
            where = f"{args.host}:{args.port}"
            print(f"error: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)  # noqa: T201
            raise SystemExit(2) from None
        print(server.url, flush=True)  # noqa: T201 - the parent process reads the URL here
        await stop.wait()
    finally:
        await server.close()
    with contextlib.suppress(BrokenPipeError):  # a parent that stopped reading
        print(json.dumps(dict(server.counts), sort_keys=True), flush=True)  # noqa: T201


_MAIN_HELP = """\
Run a fake kie.ai on this machine until interrupted, for trying a client without a key:

  python -m kie_async.testing --port 8765

The first line on standard output is the server's URL (pass it as the client's base URL).
On SIGTERM it stops and prints its counts ("create", "poll", "rejected:429", ...) as one
JSON object on a last line; Ctrl-C just stops it.

With --callback-url, tasks whose create names no callBackUrl are reported there, signed with
--callback-key if given. With --send TASK_ID, no server runs: one callback is POSTed to
--callback-url (signed with --callback-key), its HTTP status is printed, and the exit status
is 0 for an answer 200, 1 otherwise:

  python -m kie_async.testing --callback-url http://127.0.0.1:8000/kie \\
      --callback-key whsec-test --send t1"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kie_async.testing",
        description=_MAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (127.0.0.1: loopback)"
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="the port to listen on (0: a free one, printed)"
    )
    parser.add_argument(
        "--api-key",
        default=DEFAULT_API_KEY,
        metavar="KEY",
        help=f"the key clients must send as 'Authorization: Bearer KEY' ({DEFAULT_API_KEY})",
    )
    parser.add_argument(
        "--rate-limit",
        type=_parse_rate,
        metavar="N/SECONDS",
        help="refuse creates beyond N per SECONDS with 429, as kie.ai does, e.g. 20/10 "
        "(default: no limit)",
    )
    parser.add_argument(
        "--polls",
        type=_count,
        default=0,
        metavar="N",
        help="polls that answer 'generating' before each task ends (0)",
    )
    parser.add_argument(
        "--seconds",
        type=_seconds,
        default=0.0,
        metavar="S",
        help="seconds after its creation before each task ends (0)",
    )
    parser.add_argument(
        "--refuse-reextend",
        action="store_true",
        help="refuse (422) to extend a video that is itself an extension's result",
    )
    parser.add_argument(
        "--callback-url",
        metavar="URL",
        help="deliver callbacks of creates that name no callBackUrl here; with --send, "
        "where the callback goes",
    )
    parser.add_argument(
        "--callback-key",
        metavar="KEY",
        help="sign callbacks with this webhook HMAC key (X-Webhook-Timestamp/-Signature)",
    )
    parser.add_argument(
        "--send",
        metavar="TASK_ID",
        help="send one callback for TASK_ID to --callback-url and exit (no server)",
    )
    parser.add_argument(
        "--failed",
        action="store_true",
        help="with --send: a failure callback (code 500) rather than a success",
    )
    parser.add_argument(
        "--max-extensions",
        type=_count,
        metavar="N",
        help="refuse (422) an extension making a chain of more than N (default: no limit)",
    )
    parser.add_argument(
        "--unknown-task",
        choices=("422", "null"),
        default="422",
        help="how record-info answers an unknown task id: code 422 'recordInfo is null' (422), "
        "or success with data: null (null)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run a fake kie.ai until interrupted: ``python -m kie_async.testing --port 8765``.

    The first line on stdout is the server's URL. On SIGTERM it stops and prints its counts
    (``"create"``, ``"poll"``, ``"rejected:429"``, ...) as one JSON object on a last line.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.send is not None:
        if args.callback_url is None:
            parser.error("--send needs --callback-url")
        raise SystemExit(_send(args))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args))


def _send(args: argparse.Namespace) -> int:
    """``--send``: POST one callback; print the answer's status (0: it was 200)."""
    body = callback_body(args.send, failed=args.failed)
    try:
        status = asyncio.run(send_callback(args.callback_url, body, key=args.callback_key))
    except (OSError, asyncio.TimeoutError, aiohttp.ClientError) as exc:
        with contextlib.suppress(OSError):
            print(f"error: cannot deliver to {args.callback_url}: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    with contextlib.suppress(OSError):
        print(status, flush=True)  # noqa: T201
    return 0 if status == 200 else 1
