"""Signed callbacks for users' tests: :func:`sign_callback` builds kie's signature headers for
a body, and :func:`send_callback` POSTs one (what ``python -m kie_async.testing --send`` does).

Its own code, from raw dicts: nothing here uses kie_async's verification, so a bug there cannot
hide itself in a test that signs with this.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

__all__ = ["callback_body", "send_callback", "sign_callback"]


def sign_callback(
    body: bytes | str | Mapping[str, Any],
    key: str,
    *,
    timestamp: int | None = None,
    task_id: str | None = None,
) -> dict[str, str]:
    """kie's webhook headers for a callback ``body``, signed with ``key``:
    ``X-Webhook-Timestamp`` (``timestamp``, default now) and ``X-Webhook-Signature``
    (``base64(HMAC-SHA256(key, taskId + "." + timestamp))``).

    The task id is the body's ``data.taskId`` unless ``task_id`` is given (to sign another
    one, as a forger would).

    Raises:
        ValueError: the body is not JSON or names no ``data.taskId``, and no ``task_id``.

    Example::

        body = json.dumps({"code": 200, "msg": "success", "data": {"taskId": "t1",
                           "resultUrls": ["https://cdn.example/t1.mp4"]}}).encode()
        headers = sign_callback(body, "whsec-test")
        answer = await client.post("/kie/callback", content=body, headers=headers)
    """
    if task_id is None:
        decoded = body if isinstance(body, Mapping) else json.loads(body)
        data = decoded.get("data") if isinstance(decoded, Mapping) else None
        named = data.get("taskId") if isinstance(data, Mapping) else None
        if not isinstance(named, str) or not named:
            raise ValueError("the body names no data.taskId: pass task_id")
        task_id = named
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    message = f"{task_id}.{stamp}".encode()
    digest = hmac.new(key.encode(), message, hashlib.sha256).digest()
    return {
        "X-Webhook-Timestamp": str(stamp),
        "X-Webhook-Signature": base64.b64encode(digest).decode(),
    }


def callback_body(task_id: str, *, failed: bool = False) -> dict[str, Any]:
    """A callback body as kie.ai documents it: success with one result URL, or failure."""
    if failed:
        return {
            "code": 500,
            "msg": "generation failed",
            "data": {"taskId": task_id, "promptJson": "{}", "resultUrls": []},
        }
    return {
        "code": 200,
        "msg": "success",
        "data": {
            "taskId": task_id,
            "promptJson": "{}",
            "resultUrls": [f"https://tempfile.example/{task_id}_0.mp4"],
        },
    }


async def send_callback(
    url: str, body: bytes | Mapping[str, Any], *, key: str | None = None, timeout: float = 15.0
) -> int:
    """POST one callback ``body`` to ``url`` as kie.ai would (signed when ``key`` is given);
    returns the HTTP status of the answer.

    Raises:
        aiohttp.ClientError, TimeoutError: the receiver could not be reached in time.
    """
    raw = body if isinstance(body, bytes) else json.dumps(dict(body)).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "kie-callback/1.0"}
    if key is not None:
        headers.update(sign_callback(raw, key))
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.post(url, data=raw, headers=headers) as answer,
    ):
        await answer.read()
        return answer.status
