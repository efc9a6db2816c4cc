"""A burst of signed callback deliveries, all opened at once, and a receiver in a process of its
own to take them (used by tests/test_callback_burst.py and benchmarks/callback_burst.py)."""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import textwrap
import time
from urllib.parse import urlsplit

from helpers import child_env

from kie_async.testing import sign_callback

KEY = "whsec-burst"

RECEIVER = textwrap.dedent(
    """
    import asyncio, json, sys
    from kie_async.callbacks import CallbackReceiver

    async def main(backlog):
        kwargs = {} if backlog == 0 else {"backlog": backlog}
        async with CallbackReceiver(key=sys.argv[2], **kwargs) as receiver:
            print(await receiver.start(path="/kie"), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            print(json.dumps(dict(receiver.counts)), flush=True)

    asyncio.run(main(int(sys.argv[1])))
    """
)


async def start_receiver(backlog: int = 0) -> tuple[asyncio.subprocess.Process, str]:
    """A CallbackReceiver in a subprocess (``backlog`` 0: its default); returns it and its URL.
    Close its stdin to stop it: it then prints its counts as JSON."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RECEIVER, str(backlog), KEY, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, env=child_env(),
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    return process, line.decode().strip()


async def stop_receiver(process: asyncio.subprocess.Process) -> dict[str, int]:
    """Stop a receiver of :func:`start_receiver`; its counts."""
    assert process.stdin is not None
    process.stdin.close()
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    counts: dict[str, int] = json.loads(out.decode().strip().splitlines()[-1])
    return counts


async def deliver(host: str, port: int, path: str, task_id: str, timeout: float) -> str:
    """One delivery on a connection of its own: ``"200"`` (or another status), or the name of
    the error that ended it (``"ConnectionRefusedError"``, ``"TimeoutError"``...)."""
    body = json.dumps(
        {"code": 200, "msg": "success", "data": {"taskId": task_id, "resultUrls": []}}
    ).encode()
    headers = "".join(f"{k}: {v}\r\n" for k, v in sign_callback(body, KEY).items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}Connection: close\r\n\r\n"
    ).encode() + body
    writer = None
    try:
        async with asyncio.timeout(timeout) if sys.version_info >= (3, 11) else _Never():
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            await writer.drain()
            line = await reader.readline()
        parts = line.split()
        return parts[1].decode() if len(parts) > 1 else "no answer"
    except (OSError, asyncio.TimeoutError) as exc:
        return type(exc).__name__
    finally:
        if writer is not None:
            writer.close()


class _Never:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


async def burst(url: str, count: int, timeout: float = 60.0) -> tuple[dict[str, int], float]:
    """``count`` deliveries opened at once to ``url``; how each ended, and the wall time. An
    answer that came after kie.ai's 15 s budget is counted as ``"<status> late"``."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    started = time.monotonic()

    async def timed(i: int) -> str:
        outcome = await deliver(host, port, path, f"burst-{i}", timeout)
        return outcome + (" late" if time.monotonic() - started > 15.0 else "")

    outcomes = await asyncio.gather(*(timed(i) for i in range(count)))
    return dict(collections.Counter(outcomes)), time.monotonic() - started
