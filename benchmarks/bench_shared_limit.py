"""Several processes on one kie.ai account: a rate limit shared through Redis against one each.

Run ``python benchmarks/bench_shared_limit.py`` (needs ``redis-server`` on the PATH and the
``redis`` extra; ``--quick`` for a smoke run). It starts a private ``redis-server`` on a free
loopback port and a fake kie.ai (``python -m kie_async.testing --rate-limit 20/10``), which
*rejects* creates beyond 20 per 10 s for the account as kie.ai does. Then ``--processes`` client
processes (3) each run ``extend_many`` over ``--creates`` instant tasks (60), all starting at
the same moment, with:

* ``redis``: ``RedisRateLimit(url, 20, per=10)``, one window for all of them (the default);
* ``own`` (with ``--variants redis,own``): each its own ``RateLimit(20, per=10)``, as before;
* ``split`` (``--variants split``): each ``RateLimit(20 // processes, per=10)``, the way to
  share a limit without Redis.

Printed per variant: the wall time from the common start to the last process's end, the ideal
time (the last window's start: ``(total / 20 - 1) * 10`` s), their ratio, the creates the server
accepted and refused with 429, and how many jobs did not succeed. Targets for ``redis``: no 429,
and within 1.15x of the ideal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

LIMIT, PER = 20, 10.0
TARGET = 1.15


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A private redis-server on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on the PATH (Debian: apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    break
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def fake_server() -> Iterator[dict[str, Any]]:
    """A fresh fake kie.ai enforcing 20 creates per 10 s; yields ``{"url"}``, which gets the
    server's ``counts`` when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kie_async.testing", "--rate-limit", f"{LIMIT}/{PER:g}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    info: dict[str, Any] = {}
    try:
        assert process.stdout is not None
        info["url"] = process.stdout.readline().strip()
        yield info
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        info["counts"] = json.loads(rest.strip().splitlines()[-1])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def child(config: dict[str, Any]) -> dict[str, Any]:
    """One client process: wait for the common start, run its creates, report."""
    from kie_async import ExtendRequest, KieClient, PollPolicy, RateLimit, RedisRateLimit

    variant = config["variant"]
    limit: RateLimit | RedisRateLimit
    if variant == "redis":
        limit = RedisRateLimit(config["redis"], LIMIT, per=PER)
    elif variant == "split":
        limit = RateLimit(LIMIT // config["processes"], per=PER)
    else:
        limit = RateLimit(LIMIT, per=PER)
    n = config["number"]
    requests = [ExtendRequest(f"p{n}-src{i}", 0, f"scene {i}") for i in range(config["creates"])]
    async with KieClient(
        "test-key",
        base_url=config["url"],
        rate_limit=limit,
        poll=PollPolicy(interval=0.5, factor=1, max_interval=0.5, jitter=0, timeout=600),
    ) as kie:
        await asyncio.sleep(max(0.0, config["start"] - time.time()))
        ok = 0
        async for outcome in kie.extend_many(requests, concurrency=config["creates"]):
            ok += outcome.ok
    return {"end": time.time(), "ok": ok}


def run_variant(variant: str, processes: int, creates: int, redis_url: str) -> dict[str, Any]:
    with fake_server() as server:
        start = time.time() + 3.0  # every process imported and connected by then
        children = []
        for number in range(processes):
            config = {
                "variant": variant,
                "url": server["url"],
                "redis": redis_url,
                "processes": processes,
                "creates": creates,
                "number": number,
                "start": start,
            }
            children.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--child", json.dumps(config)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        results = []
        for process in children:
            out, _ = process.communicate(timeout=900)
            if process.returncode != 0:
                raise RuntimeError(f"a client process failed (exit {process.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
    counts = server.get("counts", {})
    total = processes * creates
    return {
        "variant": variant,
        "wall": max(r["end"] for r in results) - start,
        "ideal": (math.ceil(total / LIMIT) - 1) * PER,
        "accepted": counts.get("create", 0),
        "refused_429": counts.get("rejected:429", 0),
        "not_ok": total - sum(r["ok"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--creates", type=int, default=60, help="creates per process")
    parser.add_argument("--variants", default="redis", help="comma-separated: redis,own,split")
    parser.add_argument("--quick", action="store_true", help="3 x 10 creates")
    args = parser.parse_args()
    if args.quick:
        args.creates = 10
    print(
        f"bench_shared_limit: {args.processes} processes x {args.creates} creates, the server "
        f"refusing beyond {LIMIT} per {PER:g} s for the account; {os.cpu_count()} CPUs (the "
        "machine may be shared with other work)"
    )
    with redis_server() as url:
        for variant in args.variants.split(","):
            r = run_variant(variant, args.processes, args.creates, url)
            ratio = r["wall"] / r["ideal"] if r["ideal"] else float("nan")
            verdict = ""
            if variant == "redis":
                met = r["refused_429"] == 0 and ratio <= TARGET
                verdict = f" (target: no 429 and <= {TARGET}x: {'met' if met else 'MISSED'})"
            print(
                f"{variant:>5}: {r['wall']:.1f} s wall, ideal {r['ideal']:.0f} s, {ratio:.3f}x; "
                f"{r['accepted']} creates accepted, {r['refused_429']} refused with 429, "
                f"{r['not_ok']} jobs not succeeded{verdict}",
                flush=True,
            )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(asyncio.run(child(json.loads(sys.argv[2])))))
    else:
        main()
