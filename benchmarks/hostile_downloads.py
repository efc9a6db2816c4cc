"""Downloads against hostile and heavy file hosts: ``python benchmarks/hostile_downloads.py``.

Prints one line per measurement (about 40 s in all with the defaults):

* ``trickle``: a raw loopback socket server announces a 1 MB body and sends it at 1 byte per
  second; the time until ``KieClient.download`` gives up, with the default
  :class:`~kie_async.DownloadPolicy` and no retries (each retry of the client's
  :class:`~kie_async.RetryPolicy` costs the same again).
* ``big``: a ``--size`` MiB file from the fake kie.ai on loopback saved to a temporary directory
  on disk (under ``--dir``), ``--runs`` times, with a probe sleeping 10 ms in a loop on the same
  event loop: the wall time, the process's CPU time (the fake server runs in the same process),
  and the probe's worst and 99th-percentile lag (how long the event loop was unavailable to
  anything else, such as polls); then the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from pathlib import Path

from kie_async import DownloadError, RetryPolicy
from kie_async._protocol.wire import parse_record
from kie_async.testing import FakeKieServer, TaskScript, fast_client


def cpu() -> float:
    """This process's user + system CPU seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def trickle() -> None:
    """Time to give up on a host sending 1 byte per second, default policy, no retries."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            for _ in range(600):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(1.0)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    record = parse_record(
        {"taskId": "t", "successFlag": 1, "resultInfoJson": [f"http://127.0.0.1:{port}/v.mp4"]}
    )
    async with FakeKieServer() as fake:
        kie = fast_client(fake, retry=RetryPolicy(max_retries=0), timeout=60.0)
        async with kie:
            with tempfile.TemporaryDirectory() as folder:
                started = time.monotonic()
                try:
                    await kie.download(record, folder)
                except DownloadError as exc:
                    took = time.monotonic() - started
                    print(f"trickle: gave up after {took:.1f}s: {exc.reason}")
    server.close()


async def big(size_mib: int, folder: Path) -> tuple[float, float, float]:
    """Save a large file while probing the event loop's lag; (wall, CPU, worst lag) seconds."""
    async with FakeKieServer(file_size=size_mib * 1024 * 1024) as fake, fast_client(fake) as kie:
        fake.script_next(TaskScript(videos=1))
        record = await (await kie.extend_video("src", prompt="go")).wait()
        lags: list[float] = []
        stop = asyncio.Event()

        async def probe() -> None:
            while not stop.is_set():
                before = time.monotonic()
                await asyncio.sleep(0.01)
                lags.append(time.monotonic() - before - 0.01)

        probing = asyncio.ensure_future(probe())
        cpu_before, started = cpu(), time.monotonic()
        [path] = await kie.download(record, folder)
        took, used = time.monotonic() - started, cpu() - cpu_before
        stop.set()
        await probing
    assert path.stat().st_size == size_mib * 1024 * 1024
    p99 = statistics.quantiles(lags, n=100)[98] if len(lags) >= 100 else max(lags)
    print(
        f"big: {size_mib} MiB in {took:.2f}s ({size_mib / took:.0f} MiB/s), CPU {used:.2f}s, "
        f"loop lag max {max(lags) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms over {len(lags)} probes"
    )
    return took, used, max(lags)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="MiB of the big file (256)")
    parser.add_argument("--dir", default=None, help="where to save it (a temporary directory)")
    parser.add_argument("--runs", type=int, default=3, help="runs of the big file (3)")
    parser.add_argument("--skip-trickle", action="store_true", help="only the big file")
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(dir=args.dir) as folder:
            results.append(await big(args.size, Path(folder)))
    walls, cpus, worst = zip(*results, strict=True)
    print(
        f"big, median of {args.runs}: {statistics.median(walls):.2f}s, CPU "
        f"{statistics.median(cpus):.2f}s, worst loop lag {statistics.median(worst) * 1000:.1f} ms"
    )
    if not args.skip_trickle:
        await trickle()


if __name__ == "__main__":
    asyncio.run(main())
