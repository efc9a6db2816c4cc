"""A loopback HTTP server that misbehaves on purpose, scripted per connection.

aiohttp.web always speaks correct HTTP; this server speaks whatever a test writes to the
socket: a trickled answer, a malformed status line, a lying Content-Length, an endless body.
Each connection gets the next script of the list (the last one repeats), reads one request and
is closed when its script returns::

    async with RawServer(trickle(envelope({"credit": 5}), every=0.05)) as server:
        kie = KieClient("key", base_url=server.url, ...)

Everything is bounded: a script writes a finite number of bytes, and leaving the ``async with``
cancels every connection still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import zlib
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import attrs

__all__ = [
    "Connection",
    "RawServer",
    "Request",
    "answer",
    "endless",
    "envelope",
    "gzip_bomb",
    "head",
    "raw",
    "reflect",
    "silent",
    "trickle",
    "unread",
]


@attrs.define
class Request:
    """One request as it came in: the request line's parts, the headers (names lower-cased)
    and the body (read by its Content-Length)."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class Connection:
    """One accepted connection, handed to a script."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.sent = 0

    async def request(self) -> Request | None:
        """The request on this connection, or ``None`` if what came is not HTTP (a TLS
        ClientHello, say) or the client went away."""
        try:
            head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            return None
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            return None
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
        except ValueError:
            return None
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        body = await self.reader.readexactly(length) if length else b""
        return Request(method, target, headers, body)

    async def send(self, data: bytes) -> bool:
        """Write ``data``; ``False`` once the client has gone away."""
        if self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        self.sent += len(data)
        return True


Script = Callable[[Connection, Request | None], Awaitable[None]]


class RawServer:
    """The server: ``url`` once started; ``requests`` and ``connections`` count what came,
    ``bytes_sent`` what went out.

    Args:
        scripts: one script per connection, in order; the last one serves every later one.
        tls: serve TLS with this context (``https://`` URL).
    """

    def __init__(self, *scripts: Script, tls: ssl.SSLContext | None = None) -> None:
        if not scripts:
            raise ValueError("a RawServer needs at least one script")
        self._scripts = scripts
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.requests: list[Request] = []
        self.connections = 0
        #: Bytes written to clients (and accepted by the socket) over every connection.
        self.bytes_sent = 0
        self.port = 0
        self.url = ""

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self._tls)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        # Before Python 3.12, a connection accepted by the listening socket whose transport is
        # made only after Server.close() is dropped without closing its socket (the transport
        # cannot attach to a closed server): let accepted connections get their transport.
        for _ in range(3):
            await asyncio.sleep(0)
        self._server.close()
        self._closing = True
        # A connection accepted just before the close starts its task a few loop turns later
        # (before Python 3.12, wait_closed does not wait for it): let it start, and end it,
        # so no socket is left for the garbage collector to find (a ResourceWarning): a handful
        # of loop turns covers accepting, the transport, connection_made and the task.
        for _ in range(10):
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.sleep(0)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        if self._closing:  # accepted as the server closed: end it at once
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                await writer.wait_closed()
            return
        script = self._scripts[min(self.connections, len(self._scripts) - 1)]
        self.connections += 1
        connection = Connection(reader, writer)
        try:
            request = None
            if getattr(script, "reads_request", True):
                request = await connection.request()
                if request is not None:
                    self.requests.append(request)
            await script(connection, request)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only __aexit__ cancels a connection; ending quietly keeps asyncio from logging
            # the cancellation as an error of the connection callback.
            pass
        finally:
            self.bytes_sent += connection.sent
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                await writer.wait_closed()


# -- answers ----------------------------------------------------------------------------------


def envelope(data: object = None, *, code: int = 200, msg: str = "success") -> bytes:
    """kie's JSON envelope, as bytes."""
    return json.dumps({"code": code, "msg": msg, "data": data}).encode()


def head(
    status: str = "200 OK", headers: dict[str, str] | None = None, *, length: int | None = None
) -> bytes:
    """A status line and headers (``Connection: close`` always, ``Content-Length`` if given)."""
    lines = [f"HTTP/1.1 {status}", "Connection: close", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def answer(body: bytes, status: str = "200 OK", headers: dict[str, str] | None = None) -> Script:
    """A correct answer with a Content-Length."""

    async def script(conn: Connection, request: Request | None) -> None:
        await conn.send(head(status, headers, length=len(body)) + body)

    return script


def raw(data: bytes) -> Script:
    """Exactly ``data`` on the socket (anything at all), then close."""

    async def script(conn: Connection, request: Request | None) -> None:
        await conn.send(data)

    return script


def unread(script: Script) -> Script:
    """``script``, started at once without reading a request first (for clients that send
    something else than HTTP, such as a TLS ClientHello)."""
    script.reads_request = False  # type: ignore[attr-defined]
    return script


def trickle(data: bytes, *, every: float, start: int = 0) -> Script:
    """``data[:start]`` at once, then the rest one byte every ``every`` seconds."""

    async def script(conn: Connection, request: Request | None) -> None:
        if start and not await conn.send(data[:start]):
            return
        for i in range(start, len(data)):
            await asyncio.sleep(every)
            if not await conn.send(data[i : i + 1]):
                return

    return script


def silent(seconds: float) -> Script:
    """Read the request, then say nothing for ``seconds``."""

    async def script(conn: Connection, request: Request | None) -> None:
        await asyncio.sleep(seconds)

    return script


def endless(
    total: int, *, chunk: bytes = b"x" * 65536, chunked: bool = False, length: bool = False
) -> Script:
    """A 200 OK whose body is ``total`` bytes of ``chunk``, generated as it is sent: until the
    connection closes (the default), in chunked encoding, or announced by Content-Length."""

    async def script(conn: Connection, request: Request | None) -> None:
        headers = {"Transfer-Encoding": "chunked"} if chunked else {}
        if not await conn.send(head(headers=headers, length=total if length else None)):
            return
        sent = 0
        while sent < total:
            piece = chunk[: total - sent]
            data = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
            if not await conn.send(data):
                return
            sent += len(piece)
        if chunked:
            await conn.send(b"0\r\n\r\n")

    return script


def gzip_bomb(total: int) -> Script:
    """A 200 OK with ``Content-Encoding: gzip`` whose body inflates to ``total`` zero bytes,
    compressed as it is sent (a few hundred KB on the wire for 200 MB)."""

    async def script(conn: Connection, request: Request | None) -> None:
        if not await conn.send(head(headers={"Content-Encoding": "gzip"})):
            return
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = bytes(1 << 20)
        for start in range(0, total, len(block)):
            data = packer.compress(block[: total - start])
            if data and not await conn.send(data):
                return
        await conn.send(packer.flush())

    return script


def reflect(status: str = "200 OK", *, code: int = 401) -> Script:
    """An error envelope whose ``msg``, ``data`` and a header echo the request's Authorization
    header back (as a careless or hostile server would)."""

    async def script(conn: Connection, request: Request | None) -> None:
        auth = request.headers.get("authorization", "") if request is not None else ""
        body = envelope({"echo": auth, "nested": json.dumps({"a": auth})}, code=code, msg=auth)
        await conn.send(head(status, {"X-Echo": auth}, length=len(body)) + body)

    return script
