"""Hostile servers: how long kie-async takes to give up, and what a huge answer costs.

Run from the repository root::

    python benchmarks/hostile.py              # everything (about 40 s)
    python benchmarks/hostile.py --quick      # without the dead-API command runs

Against raw loopback socket servers (``tests/rawserver.py``) it measures:

* a server trickling its answer at 1 byte per second, headers or body: the time until the
  request's ``Timeout.total`` ends it (the per-read timeout never trips at that pace);
* 200 MB answers (announced by Content-Length, until the connection closes, chunked, and a gzip
  bomb that inflates to 200 MB): the time to refuse them, the peak of Python memory while doing
  so (``tracemalloc``), and how much the server got to send;
* a dead API (a loopback port nobody listens on), with the default settings, through the
  command-line tool in a subprocess: ``kie-async credits`` and a 10-job ``kie-async bulk``,
  wall time and the last line they print.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from rawserver import RawServer, endless, envelope, gzip_bomb, head, trickle  # noqa: E402

from kie_async import KieClient, KieError, RetryPolicy, Timeout  # noqa: E402

MB = 1 << 20


def _client(url: str, timeout: Timeout) -> KieClient:
    return KieClient(
        "bench-key",
        base_url=url,
        retry=RetryPolicy(max_retries=0),
        rate_limit=None,
        timeout=timeout,
    )


async def trickling(part: str, total: float) -> tuple[float, str]:
    """Seconds until a call against a 1 byte/s server ends, and how it ended."""
    body = envelope(5)
    whole = head(length=len(body)) + body
    start = 0 if part == "headers" else len(whole) - len(body)
    async with (
        RawServer(trickle(whole, every=1.0, start=start)) as server,
        _client(server.url, Timeout(total=total, read=60)) as kie,
    ):
        began = time.monotonic()
        try:
            await kie.credits()
            outcome = "answered (!)"
        except KieError as exc:
            outcome = str(exc)
        return time.monotonic() - began, outcome


async def huge(kind: str) -> tuple[float, float, int, str]:
    """Seconds to refuse a 200 MB answer, peak traced memory (MiB), bytes the server sent."""
    scripts = {
        "announced": endless(200 * MB, length=True),
        "until close": endless(200 * MB),
        "chunked": endless(200 * MB, chunked=True),
        "gzip bomb": gzip_bomb(200 * MB),
    }
    async with (
        RawServer(scripts[kind]) as server,
        _client(server.url, Timeout(total=60)) as kie,
    ):
        tracemalloc.start()
        began = time.monotonic()
        try:
            await kie.credits()
            outcome = "accepted (!)"
        except KieError as exc:
            outcome = type(exc).__name__
        elapsed = time.monotonic() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return elapsed, peak / MB, server.bytes_sent, outcome


def dead_api(*command: str) -> tuple[float, int, str]:
    """Wall seconds, exit status and the first line saying what failed (its error, not the
    retry warning), of the CLI against a dead API."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    env.update(KIE_API_KEY="bench-key", KIE_BASE_URL=f"http://127.0.0.1:{port}")
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "kie_async", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    elapsed = time.monotonic() - began
    lines = (done.stdout + done.stderr).strip().splitlines()
    told = [line for line in lines if "could not connect" in line and "WARNING" not in line]
    return elapsed, done.returncode, (told or lines or [""])[0]


def _said(text: str) -> None:
    """A message, wrapped to the docs' code width, indented under its figure."""
    print(textwrap.fill(text, width=88, initial_indent="  ", subsequent_indent="    "))


async def main(quick: bool) -> None:
    print("machine: 2 cores, shared with other work while this ran")
    for part in ("headers", "body"):
        for total in (2.0, 5.0):
            elapsed, outcome = await trickling(part, total)
            print(
                f"trickled {part:7} at 1 B/s, Timeout(total={total:g}): gave up in {elapsed:.2f} s"
            )
    _said(outcome)
    for kind in ("announced", "until close", "chunked", "gzip bomb"):
        elapsed, peak, sent, outcome = await huge(kind)
        print(
            f"200 MB, {kind:11}: {outcome} in {elapsed:.3f} s, "
            f"peak {peak:.2f} MiB, sent {sent / MB:.1f} MiB"
        )
    if quick:
        return
    elapsed, status, said = dead_api("credits")
    print(f"dead API, kie-async credits: exit {status} after {elapsed:.1f} s")
    _said(said)
    with tempfile.TemporaryDirectory() as folder:
        jobs = Path(folder) / "jobs.jsonl"
        lines = [
            json.dumps({"task_id": "src", "index": i % 4, "prompt": f"job {i}"}) for i in range(10)
        ]
        jobs.write_text("\n".join(lines) + "\n", encoding="utf-8")
        elapsed, status, said = dead_api("bulk", str(jobs))
    print(f"dead API, kie-async bulk (10 jobs): exit {status} after {elapsed:.1f} s")
    _said(said)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the dead-API command runs")
    asyncio.run(main(parser.parse_args().quick))
