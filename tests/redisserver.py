"""A real redis-server of the tests' own, and a proxy in front of it that misbehaves on demand.

The shared rate limit is tested against a real ``redis-server`` (whatever protocol the installed
redis-py speaks to it: RESP2, or RESP3 after a ``HELLO``), never against a toy that answers what
its author expected. Where a Redis must misbehave, :class:`RedisProxy` stands between the client
and the real server and, once told to, stalls, trickles the server's answers, or answers
nonsense itself::

    async with RedisProxy(redis_url) as proxy:
        limit = RedisRateLimit(proxy.url, timeout=0.3)
        ...                          # everything passes through to the real server
        proxy.mode = "stall"         # from now on, nothing is answered

Everything is bounded: a connection's pumps end with its sockets, and leaving the
``async with`` closes every connection still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit

import pytest

__all__ = ["Mode", "RedisProxy", "free_port", "redis_server"]

#: What the proxy does with the bytes of every connection, from the moment it is set:
#: ``pass`` them both ways; ``stall`` (read what the client sends, forward and answer nothing);
#: ``trickle`` the server's answers one byte every :attr:`RedisProxy.every` seconds; answer
#: every chunk the client sends with :attr:`RedisProxy.nonsense` (``nonsense``).
Mode = Literal["pass", "stall", "trickle", "nonsense"]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (at the moment of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Start a real redis-server on a free loopback port and yield its URL (skipped without
    the binary, except under CI, where a missing redis-server fails the run)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (CI must install it: see .ci/run)")
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            if _ping(port):
                break
            if process.poll() is not None:
                pytest.fail(f"redis-server exited with {process.returncode}")
            time.sleep(0.01)
        else:
            pytest.fail("redis-server did not answer within 5 s")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


class RedisProxy:
    """A loopback proxy in front of the Redis at ``target`` (a ``redis://`` URL); its own URL,
    with the same database, is :attr:`url`. :attr:`mode` says what it does (:data:`Mode`)."""

    def __init__(self, target: str, *, every: float = 0.2, nonsense: bytes = b"+OK\r\n") -> None:
        parts = urlsplit(target)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._path = parts.path
        self.mode: Mode = "pass"
        self.every = every
        self.nonsense = nonsense
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self.url = ""

    async def __aenter__(self) -> RedisProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}{self._path}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        pumps = [
            asyncio.ensure_future(self._upstream(reader, up_writer, writer)),
            asyncio.ensure_future(self._downstream(up_reader, writer)),
        ]
        self._pumps.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._pumps.difference_update(pumps)
            for closing in (writer, up_writer):
                closing.close()

    async def _upstream(
        self,
        client: asyncio.StreamReader,
        server: asyncio.StreamWriter,
        answer: asyncio.StreamWriter,
    ) -> None:
        """The client's bytes: to the server, dropped (``stall``), or answered with nonsense."""
        while chunk := await client.read(65536):
            if self.mode == "stall":
                continue
            if self.mode == "nonsense":
                answer.write(self.nonsense)
                await answer.drain()
                continue
            server.write(chunk)
            await server.drain()

    async def _downstream(self, server: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        """The server's bytes: to the client, at once or a byte at a time (``trickle``)."""
        while chunk := await server.read(65536):
            if self.mode in ("stall", "nonsense"):
                continue
            if self.mode == "trickle":
                for byte in chunk:
                    client.write(bytes([byte]))
                    await client.drain()
                    await asyncio.sleep(self.every)
                continue
            client.write(chunk)
            await client.drain()


@contextlib.asynccontextmanager
async def nonsense_server(nonsense: bytes) -> AsyncIterator[str]:
    """A server on loopback that answers every command with ``nonsense``: its ``redis://``
    URL, for as long as the block runs."""

    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                writer.write(nonsense)
                await writer.drain()
        finally:
            writer.close()

    fake = await asyncio.start_server(liar, "127.0.0.1", 0)
    port = fake.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        fake.close()
        await fake.wait_closed()
