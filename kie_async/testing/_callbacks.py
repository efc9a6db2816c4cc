"""The fake server's callbacks: kie's POST to a create's ``callBackUrl`` once its task ends.

Each delivery runs in the background from the server's own HTTP session: it waits for the
task's script to end it, ends it for ``record-info`` too, then POSTs (signed when the server
has a ``callback_key``), retrying an answer other than HTTP 200 three times, as kie.ai does.
Duplicates and drops are knobs, because kie.ai may deliver twice or give up.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import time
from datetime import datetime, timezone
from typing import Any

import aiohttp

from . import _records as records
from ._edge import Edge
from ._store import TaskStore


class CallbackDelivery(Edge, TaskStore):
    """The callbacks of :class:`~kie_async.testing.FakeKieServer` (a base class)."""

    callback_key: str | None
    callback_url: str | None
    callback_duplicates: int
    callback_drop_rate: float
    callback_retry_delay: float
    callback_lead: float
    _rng: random.Random
    _deliveries: set[asyncio.Task[None]]
    _callback_session: aiohttp.ClientSession | None

    def _setup_callbacks(
        self,
        *,
        key: str | None,
        duplicates: int,
        drop_rate: float,
        retry_delay: float,
        lead: float,
        seed: int,
        url: str | None = None,
    ) -> None:
        self.callback_key = key
        self.callback_url = url
        self.callback_duplicates = duplicates
        self.callback_drop_rate = drop_rate
        self.callback_retry_delay = retry_delay
        self.callback_lead = lead
        self._rng = random.Random(seed)
        self._deliveries = set()
        self._callback_session = None

    def callback_payload(self, task_id: str) -> dict[str, Any]:
        """The body kie.ai POSTs to ``callBackUrl`` when ``task_id`` ends, as it would be sent
        now: ``{"code": 200|500, "msg": ..., "data": {"taskId", "promptJson", "resultUrls"}}``
        with the result URLs as plain strings (``null`` on failure)."""
        return records.callback_body(self.tasks[task_id], self.url)

    def _schedule_callback(self, task_id: str, url: str) -> None:
        if self._closing is None or self._closing.is_set():
            return
        delivery = asyncio.ensure_future(self._deliver_callback(task_id, url))
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)

    async def _deliver_callback(self, task_id: str, url: str) -> None:
        task = self.tasks[task_id]
        delay = task["ends_at"] - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task["polls_left"] = 0
        if self.callback_lead > 0:
            task["ends_at"] = time.monotonic() + self.callback_lead
        if task["completed_wall"] is None:
            task["completed_wall"] = datetime.now(timezone.utc)
        if self._rng.random() < self.callback_drop_rate:
            self.counts["callback:dropped"] += 1
            return
        body = json.dumps(self.callback_payload(task_id)).encode()
        for _ in range(1 + self.callback_duplicates):
            await self._post_callback(url, task_id, body)

    async def _post_callback(self, url: str, task_id: str, body: bytes) -> None:
        if self._callback_session is None:
            self._callback_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        for attempt in range(4):  # kie.ai retries a failed delivery 3 times, then gives up
            if attempt:
                await asyncio.sleep(self.callback_retry_delay)
            headers = {"Content-Type": "application/json", "User-Agent": "kie-callback/1.0"}
            if self.callback_key is not None:
                stamp = int(time.time())
                headers["X-Webhook-Timestamp"] = str(stamp)
                headers["X-Webhook-Signature"] = self.sign(self.callback_key, task_id, stamp)
            try:
                async with self._callback_session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    status = answer.status
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                status = 0
            if status == 200:
                self.counts["callback:delivered"] += 1
                return
            self.counts["callback:failed"] += 1

    @staticmethod
    def sign(key: str, task_id: str, timestamp: int) -> str:
        """kie's webhook signature: ``base64(HMAC-SHA256(key, taskId + "." + timestamp))``."""
        digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256)
        return base64.b64encode(digest.digest()).decode()

    async def _close_callbacks(self) -> None:
        """Cancel every delivery still pending, and close the callback session."""
        deliveries = list(self._deliveries)
        for delivery in deliveries:
            delivery.cancel()
        await asyncio.gather(*deliveries, return_exceptions=True)
        if self._callback_session is not None:
            session, self._callback_session = self._callback_session, None
            await session.close()
