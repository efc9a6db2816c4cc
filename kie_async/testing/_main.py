"""``python -m kie_async.testing``: a fake kie.ai on this machine until interrupted.

Benchmarks and manual tries run it in its own process; it prints its URL first and, on
SIGTERM, its counts last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

from ._scripts import DEFAULT_API_KEY, TaskScript
from ._server import FakeKieServer


def _parse_rate(text: str) -> tuple[int, float]:
    count, _, per = text.partition("/")
    return int(count), float(per or 10)


async def _serve_forever(args: argparse.Namespace) -> None:
    server = FakeKieServer(
        api_key=args.api_key,
        rate_limit=_parse_rate(args.rate_limit) if args.rate_limit else None,
        record_requests=False,
        host=args.host,
        port=args.port,
        extend_extensions=not args.refuse_reextend,
        max_extensions=args.max_extensions,
    )
    server.default_script = TaskScript(polls=args.polls, seconds=args.seconds)
    stop = asyncio.Event()
    # SIGTERM ends the run cleanly, so the counts below reach a parent process (benchmarks
    # read how many creates were accepted or rejected with 429 from them).
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows loops
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        print(server.url, flush=True)  # noqa: T201 - the parent process reads the URL here
        await stop.wait()
    print(json.dumps(dict(server.counts), sort_keys=True), flush=True)  # noqa: T201


_MAIN_HELP = """\
Run a fake kie.ai on this machine until interrupted, for trying a client without a key:

  python -m kie_async.testing --port 8765

The first line on standard output is the server's URL (pass it as the client's base URL).
On SIGTERM it stops and prints its counts ("create", "poll", "rejected:429", ...) as one
JSON object on a last line; Ctrl-C just stops it."""


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
        "--port", type=int, default=0, help="the port to listen on (0: a free one, printed)"
    )
    parser.add_argument(
        "--api-key",
        default=DEFAULT_API_KEY,
        metavar="KEY",
        help=f"the key clients must send as 'Authorization: Bearer KEY' ({DEFAULT_API_KEY})",
    )
    parser.add_argument(
        "--rate-limit",
        metavar="N/SECONDS",
        help="refuse creates beyond N per SECONDS with 429, as kie.ai does, e.g. 20/10 "
        "(default: no limit)",
    )
    parser.add_argument(
        "--polls",
        type=int,
        default=0,
        metavar="N",
        help="polls that answer 'generating' before each task ends (0)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
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
        "--max-extensions",
        type=int,
        metavar="N",
        help="refuse (422) an extension making a chain of more than N (default: no limit)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run a fake kie.ai until interrupted: ``python -m kie_async.testing --port 8765``.

    The first line on stdout is the server's URL. On SIGTERM it stops and prints its counts
    (``"create"``, ``"poll"``, ``"rejected:429"``, ...) as one JSON object on a last line.
    """
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args))
