"""Instructions per task of plain aiohttp requests, with the SDK's request settings added one at a
time: what each costs on the real network (counted by callgrind, as ``instructions.py`` does).

Run ``python benchmarks/exchange_timers.py`` (needs ``valgrind``; about a minute per setting).
Each task is one create and one poll to a fresh fake kie.ai, by 64 workers over 100 connections;
the figure is the instruction count of ``--big`` tasks minus that of ``--small``, per task.

* ``plain``: the key and User-Agent as session headers, aiohttp's default timeout;
* ``headers``: the SDK's four headers passed with each request instead;
* ``both timers``: and a ``ClientTimeout`` with ``total`` and ``sock_read`` (the SDK's budgets
  if ``Timeout.total`` were aiohttp's; ``kie_async/_transport/deadlines.py`` keeps it instead);
* ``total only`` / ``read only``: one of the two timers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_bulk import cpus_for_pinning, fake_server
from instructions import callgrind_count

PROMPT = "The camera pulls back to reveal a city of glass at dusk"
KEY = "test-key"
HEADERS = {
    "Authorization": f"Bearer {KEY}",
    "User-Agent": "bench/1.0",
    "Accept": "application/json",
    "Accept-Encoding": "gzip",
}
SETTINGS = ["plain", "headers", "both timers", "total only", "read only"]


def request_options(setting: str) -> dict[str, Any]:
    """The keyword arguments each request of ``setting`` passes to aiohttp."""
    import aiohttp

    if setting == "plain":
        return {}
    options: dict[str, Any] = {"headers": HEADERS}
    total = None if setting == "read only" else 120.0
    read = None if setting == "total only" else 60.0
    if setting != "headers":
        options["timeout"] = aiohttp.ClientTimeout(
            total=total, connect=15, sock_connect=15, sock_read=read, ceil_threshold=math.inf
        )
    return options


async def work(url: str, tasks: int, setting: str) -> None:
    """``tasks`` creates, each followed by one poll, by 64 workers."""
    import aiohttp

    defaults = {"Authorization": f"Bearer {KEY}", "User-Agent": "bench/1.0"}
    options = request_options(setting)
    connector = aiohttp.TCPConnector(limit=100)
    headers = defaults if setting == "plain" else None
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        numbers = iter(range(tasks))

        async def worker() -> None:
            for n in numbers:
                body = {"taskId": f"src-{n:06d}", "index": 0, "prompt": PROMPT}
                body["taskType"] = "mj_video_extend_manual"
                create = url + "/api/v1/mj/generateVideoExtend"
                async with session.post(create, json=body, **options) as response:
                    envelope = json.loads(await response.read())
                if envelope["code"] != 200:
                    raise RuntimeError(f"create refused: {envelope}")
                params = {"taskId": envelope["data"]["taskId"]}
                record = url + "/api/v1/mj/record-info"
                async with session.get(record, params=params, **options) as response:
                    envelope = json.loads(await response.read())
                if envelope["code"] != 200:
                    raise RuntimeError(f"poll refused: {envelope}")

        await asyncio.gather(*(worker() for _ in range(64)))


def count(setting: str, tasks: int) -> int:
    server_cpu, client_cpu = cpus_for_pinning()
    with fake_server(polls=0, seconds=0.0, cpu=server_cpu) as server:
        command = [sys.executable, __file__, "--run", setting, server["url"], str(tasks)]
        if client_cpu is not None:
            command += ["--cpu", str(client_cpu)]
        return callgrind_count(command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big", type=int, default=600)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument(
        "--run", nargs=3, metavar=("SETTING", "URL", "TASKS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        if args.cpu is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {args.cpu})
        setting, url, tasks = args.run
        asyncio.run(work(url, int(tasks), setting))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    for setting in SETTINGS:
        per_task = (count(setting, args.big) - count(setting, args.small)) / (args.big - args.small)
        print(f"{setting:12s} {per_task / 1000:,.0f}k instructions per task", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
