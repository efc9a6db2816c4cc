"""What a journal costs a bulk run: the same run with and without ``journal=``, paired.

Run ``python benchmarks/bench_journal.py`` (``--quick`` for a smoke run). Each run gets a fresh
fake kie.ai (``python -m kie_async.testing``) in a process of its own and a fresh client process
running ``extend_many`` over ``--tasks`` instant tasks; the pair's order alternates from round
to round, so a drift of the machine hits both sides alike. With two or more CPUs the server is
pinned to the first and the client to the second.

Printed: the client's wall time and CPU time (user + system) for each side, min / median / max
over the rounds, and the journaled run's ratio to the plain one, paired round by round. The
target: a journaled run within 1.10x of a plain one at 3,000 tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TARGET = 1.10


def pin(pid: int, cpu: int | None) -> None:
    """Keep process ``pid`` on one CPU, where the platform allows it."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    with contextlib.suppress(OSError):
        os.sched_setaffinity(pid, {cpu})


@contextlib.contextmanager
def fake_server(cpu: int | None) -> Iterator[str]:
    """A fresh ``python -m kie_async.testing`` in its own process; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kie_async.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    pin(process.pid, cpu)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the fake server did not start: {url!r}")
        yield url
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def child(url: str, tasks: int, concurrency: int, journal: str | None) -> dict[str, Any]:
    """The client side: one ``extend_many`` run; its wall and CPU seconds."""
    from kie_async import ExtendRequest, KieClient, PollPolicy, RetryPolicy

    requests = (ExtendRequest(f"src{i // 4}", i % 4, f"scene {i}") for i in range(tasks))
    async with KieClient(
        "test-key",
        base_url=url,
        poll=PollPolicy.zero_wait(timeout=120),
        retry=RetryPolicy.zero_wait(),
        rate_limit=None,
    ) as kie:
        cpu, wall = time.process_time(), time.perf_counter()
        ok = 0
        async for outcome in kie.extend_many(requests, concurrency=concurrency, journal=journal):
            ok += outcome.ok
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall": wall, "cpu": cpu, "ok": ok}


def run_once(tasks: int, concurrency: int, journal: bool, pin_cpus: bool) -> dict[str, Any]:
    server_cpu, client_cpu = (0, 1) if pin_cpus else (None, None)
    with fake_server(server_cpu) as url, tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "run.jsonl") if journal else ""
        command = [sys.executable, __file__, "--child", url, str(tasks), str(concurrency), path]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        pin(process.pid, client_cpu)
        out, _ = process.communicate(timeout=600)
        if process.returncode != 0:
            raise RuntimeError(f"the client failed (exit {process.returncode})")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        if result["ok"] != tasks:
            raise RuntimeError(f"only {result['ok']} of {tasks} tasks succeeded")
        if journal:
            result["journal_bytes"] = Path(path).stat().st_size
        return result


def spread(values: list[float], unit: str = "s") -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}" + (
        f" {unit}" if unit else ""
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="300 tasks, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.rounds = 300, 2
    pin_cpus = (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
    print(
        f"bench_journal: {args.tasks} instant tasks, concurrency {args.concurrency}, "
        f"{args.rounds} paired rounds, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs{' (server and client pinned apart)' if pin_cpus else ''}"
    )
    plain: list[dict[str, Any]] = []
    journaled: list[dict[str, Any]] = []
    for number in range(args.rounds):
        order = (False, True) if number % 2 == 0 else (True, False)
        for journal in order:
            result = run_once(args.tasks, args.concurrency, journal, pin_cpus)
            (journaled if journal else plain).append(result)
        print(
            f"round {number + 1}: plain {plain[-1]['wall']:.3f} s wall, {plain[-1]['cpu']:.3f} s "
            f"CPU; journal {journaled[-1]['wall']:.3f} s wall, {journaled[-1]['cpu']:.3f} s CPU, "
            f"{journaled[-1]['journal_bytes'] / 1024:.0f} KiB",
            flush=True,
        )
    for name in ("wall", "cpu"):
        ratios = [j[name] / p[name] for j, p in zip(journaled, plain, strict=True)]
        verdict = "met" if statistics.median(ratios) <= TARGET else "MISSED"
        print(
            f"{name:>4}: plain {spread([p[name] for p in plain])}; journal "
            f"{spread([j[name] for j in journaled])}; ratio (paired) {spread(ratios, '')} "
            f"(target: median <= {TARGET:.2f}, {verdict})"
        )
    print("min / median / max; the machine may be shared with other work: compare ratios")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, tasks, concurrency, journal = sys.argv[2:6]
        outcome = asyncio.run(child(url, int(tasks), int(concurrency), journal or None))
        print(json.dumps(outcome))
    else:
        main()
