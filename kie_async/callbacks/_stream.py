"""One ``async for event in receiver`` subscriber: a bounded queue of events.

A stream registers itself in its receiver's set of streams when it is created (so it misses
nothing from then on) and leaves it when it ends; ``None`` offered to it means the receiver
closed.
"""

from __future__ import annotations

import asyncio
import logging

from ._events import CallbackEvent

log = logging.getLogger("kie_async")


class EventStream:
    """One subscriber's queue of events, registered in ``streams`` from the moment it is
    created."""

    def __init__(self, streams: set[EventStream], size: int, *, closed: bool) -> None:
        self._streams = streams
        self._queue: asyncio.Queue[CallbackEvent | None] = asyncio.Queue(size)
        self._done = closed
        streams.add(self)

    def offer(self, event: CallbackEvent | None) -> None:
        """Queue ``event`` (``None``: the receiver closed), or warn that this subscriber is
        too far behind to take it."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            if event is None:
                self._done = True
            else:
                log.warning(
                    "callback for task %s not queued: the event iterator is %d events behind",
                    event.task_id,
                    self._queue.maxsize,
                )

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> CallbackEvent:
        if self._done and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            self._done = True
            self._streams.discard(self)
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """End this subscription."""
        self._done = True
        self._streams.discard(self)
