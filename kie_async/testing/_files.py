"""The fake server's result files: ``GET /files/{task_id}/{name}``, streamed, deterministic,
and faultable.

Files need no API key (kie's result links do not), are streamed in 64 KiB chunks so a large
one never sits in memory, answer 403 without a ``download-url`` token while
``files_expired`` is set (or for the tasks of :meth:`expire_links`), and take the file faults
of ``fail_next("file", ...)``: cut short, hung, slow, dropped, 429 or an HTML 502.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from aiohttp import web

from ._edge import Edge
from ._store import TaskStore


class FileServing(Edge, TaskStore):
    """The result files of :class:`~kie_async.testing.FakeKieServer` (a base class)."""

    file_size: int
    files_expired: bool
    expired_links: set[str]
    peak_file_streams: int
    _file_streams: int

    def _setup_files(self, *, file_size: int) -> None:
        self.file_size = file_size
        self.files_expired = False
        self.expired_links = set()
        self.peak_file_streams = 0
        self._file_streams = 0

    def expire_links(self, *task_ids: str) -> None:
        """Make the result links of ``task_ids`` stale, as kie's links go stale: their URLs
        answer 403 from now on, and only a fresh link from ``download-url`` fetches the file
        (``counts["file:403"]`` counts the refusals)."""
        self.expired_links.update(task_ids)

    def file_bytes(self, task_id: str, name: str) -> bytes:
        """The deterministic content of a served result file."""
        seed = hashlib.sha256(f"{task_id}/{name}".encode()).digest()
        whole, rest = divmod(self.file_size, len(seed))
        return seed * whole + seed[:rest]

    def _file_chunks(self, task_id: str, name: str, size: int) -> Iterator[bytes]:
        # The content of file_bytes, made 64 KiB at a time: a large file never sits in memory.
        block = hashlib.sha256(f"{task_id}/{name}".encode()).digest() * 2048
        sent = 0
        while sent < size:
            chunk = block[: min(len(block), size - sent)]
            sent += len(chunk)
            yield chunk

    async def _file(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        name = request.match_info["name"]
        self._remember(request, None)
        self.counts["request:file"] += 1
        if task_id not in self.tasks:
            return web.Response(status=404, text="Not Found")
        stale = self.files_expired or task_id in self.expired_links
        if stale and "token" not in request.query:
            self.counts["file:403"] += 1
            return web.Response(status=403, text="AccessDenied: Request has expired")
        fault = self._draw("file")
        if fault is not None:
            self.counts[f"fault:{fault}"] += 1
        if fault == "drop_before":
            return self._drop(request)
        if fault == "rate_limited":
            return web.Response(status=429, text="Too Many Requests")
        if fault in ("html_502", "server_error", "maintenance"):
            return web.Response(status=502, text="<html>502 Bad Gateway</html>")
        cut = fault in ("truncated", "drop_after", "hang")
        self.counts["file"] += 1
        self._file_streams += 1
        self.peak_file_streams = max(self.peak_file_streams, self._file_streams)
        try:
            if fault == "slow":
                await self._pause(self.faults.slow_seconds)
            kind = "image/jpeg" if name.endswith(".jpeg") else "video/mp4"
            response = web.StreamResponse(headers={"Content-Type": kind})
            response.content_length = self.file_size
            await response.prepare(request)
            size = self.file_size // 2 if cut else self.file_size
            for chunk in self._file_chunks(task_id, name, size):
                await response.write(chunk)
            if fault == "hang":
                assert self._closing is not None
                await self._closing.wait()
            if cut:
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
            return response
        finally:
            self._file_streams -= 1
