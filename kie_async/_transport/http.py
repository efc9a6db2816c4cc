"""The aiohttp helpers of the transport: an answer's body read within a size cap (and inflated
safely), a pool slot taken within a time, an aiohttp failure in words without its headers, and
the answer to a result-file GET read in bounded chunks.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp

from .._errors import TransportError
from .._policies import Timeout

#: How much of a large answer is read at a time: the memory a refused answer costs.
_CHUNK = 1 << 16

FILE_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def _give_back(slots: asyncio.Semaphore) -> Callable[[asyncio.Future[Any]], None]:
    def done(acquiring: asyncio.Future[Any]) -> None:
        if not acquiring.cancelled() and acquiring.exception() is None:
            slots.release()

    return done


async def acquire_within(slots: asyncio.Semaphore, seconds: float) -> bool:
    """Take one of ``slots`` within ``seconds``; ``False`` if none came free in time.

    A slot taken at the very moment the time runs out, or the caller is cancelled, is given
    back (``asyncio.wait_for`` before Python 3.12 can lose it)."""
    acquiring = asyncio.ensure_future(slots.acquire())
    try:
        await asyncio.wait({acquiring}, timeout=seconds)
    except BaseException:
        acquiring.cancel()
        acquiring.add_done_callback(_give_back(slots))
        raise
    if acquiring.done() and not acquiring.cancelled() and acquiring.exception() is None:
        return True
    acquiring.cancel()
    acquiring.add_done_callback(_give_back(slots))
    return False


def describe(exc: BaseException) -> str:
    """An aiohttp failure in words, without its request headers (a ``ClientResponseError``'s
    repr shows them all, Authorization included)."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.message or f"HTTP {exc.status}"
    return str(exc) or type(exc).__name__


def api_transport_error(
    exc: BaseException, path: str, what: str, budget: Timeout, url: str = ""
) -> TransportError:
    """The :class:`TransportError` for the failure ``exc`` of an API call to ``path`` (at
    ``url``), with ``what`` its description in words (already redacted)."""

    def error(message: str, *, sent: bool = True, permanent: bool = False) -> TransportError:
        return TransportError(message, path, sent=sent, permanent=permanent, url=url)

    if isinstance(exc, aiohttp.ClientSSLError):
        return error(f"TLS failure (not retried): {what}", sent=False, permanent=True)
    if isinstance(exc, aiohttp.InvalidURL | UnicodeError):
        return error(f"invalid URL (not retried): {what}", sent=False, permanent=True)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return error(f"could not connect: {what}", sent=False)
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return error(f"no data for {budget.read:g}s (Timeout.read)")
    if isinstance(exc, asyncio.TimeoutError):
        return error(f"no complete answer within {budget.total or 0:g}s (Timeout.total)")
    if isinstance(exc, aiohttp.ClientResponseError):
        return error(f"malformed HTTP answer: {what}")
    return error(f"{type(exc).__name__}: {what}")


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes | str:
    """The whole body (inflated, if it came compressed), or why it was refused: larger than
    ``cap`` bytes (known as soon as that much has arrived or been announced), compressed in
    an unknown way, or corrupt. Never more than ``cap`` plus one chunk is held. aiohttp's own
    inflating is off (``auto_decompress=False``): older aiohttp versions inflate each network
    chunk whole, so a small gzip bomb could fill memory before a byte was read here."""
    too_large = f"the answer is larger than {cap} bytes (max_answer_size); it was not read"
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    length = response.content_length
    if encoding == "identity":
        if length is not None:
            if length > cap:
                return too_large
            # aiohttp reads exactly Content-Length bytes (a short body is an error), so the
            # body is already bounded: read it in one go, the common case.
            return await response.read()
        inflater = None
    elif encoding in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(47)  # a gzip or zlib header, told apart by zlib
    else:
        return f"the answer is compressed with {encoding[:40]!r}, which was not asked for"
    body = bytearray()
    stream = response.content
    try:
        while chunk := await stream.read(_CHUNK):
            if inflater is None:
                body += chunk
            else:
                # Inflate at most one byte past the cap: a bomb stops here.
                body += inflater.decompress(chunk, cap + 1 - len(body))
                while inflater.unconsumed_tail and len(body) <= cap:
                    body += inflater.decompress(inflater.unconsumed_tail, cap + 1 - len(body))
            if len(body) > cap:
                return too_large
        if inflater is not None:
            body += inflater.flush()
    except zlib.error as exc:
        return f"the answer's {encoding} body is corrupt ({exc})"
    if len(body) > cap:
        return too_large
    return bytes(body)


def file_transport_error(
    exc: BaseException, where: str, read_timeout: float | None
) -> TransportError:
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return TransportError(message=f"could not connect: {exc}", endpoint=where, sent=False)
    if isinstance(exc, asyncio.TimeoutError):
        return TransportError(message=f"no data within {read_timeout or 0:g}s", endpoint=where)
    return TransportError(message=f"{type(exc).__name__}: {exc}", endpoint=where)


class FileAnswer:
    """The answer to a result-file GET: status, headers, and the body in bounded chunks."""

    __slots__ = ("_read_timeout", "_response", "_where", "headers", "status")

    def __init__(
        self, response: aiohttp.ClientResponse, where: str, read_timeout: float | None
    ) -> None:
        self._response = response
        self._where = where
        self._read_timeout = read_timeout
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    @property
    def content_length(self) -> int | None:
        """The announced body size, when it is the size of the bytes we will get."""
        if self.headers.get("Content-Encoding", "identity").lower() != "identity":
            return None
        return self._response.content_length

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        """The body, at most ``size`` bytes at a time, as it arrives."""
        stream = self._response.content
        while True:
            try:
                chunk = await stream.read(size)
            except FILE_ERRORS as exc:
                raise file_transport_error(exc, self._where, self._read_timeout) from exc
            if not chunk:
                return
            yield chunk
