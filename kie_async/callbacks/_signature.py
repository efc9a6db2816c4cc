"""kie's webhook signature: ``base64(HMAC-SHA256(key, taskId + "." + timestamp))``, checked
in constant time within a freshness window.

Pure: the caller passes the header values and, if it wants, the clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time

#: The header carrying the unix time (seconds) a signed callback was sent.
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
#: The header carrying ``base64(HMAC-SHA256(key, taskId + "." + timestamp))``.
SIGNATURE_HEADER = "X-Webhook-Signature"


def sign(key: str | bytes, task_id: str, timestamp: str | int) -> str:
    """kie's webhook signature: ``base64(HMAC-SHA256(key, taskId + "." + timestamp))``.

    Example::

        >>> sign("secret", "t1", 1700000000)
        'c/ttoTFH+mM/kCJ2sdGtg/eq3IKiIHqrXJ6h19vH51s='
    """
    secret = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else key
    # A JSON "\ud800" escape decodes to a lone surrogate: encode it rather than crash on it.
    message = f"{task_id}.{timestamp}".encode("utf-8", "surrogatepass")
    return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode("ascii")


def signature_problem(
    key: str | bytes,
    task_id: str,
    timestamp: str | int | None,
    signature: str | None,
    *,
    max_age: float,
    now: float | None,
) -> str | None:
    """Why a signature is not acceptable, or ``None`` when it is."""
    if timestamp is None or signature is None:
        return "unsigned (no timestamp or signature header)"
    stamp = str(timestamp).strip()
    try:
        sent = float(stamp)
    except ValueError:
        return "the timestamp is not a number"
    if not math.isfinite(sent):
        return "the timestamp is not a number"
    age = (time.time() if now is None else now) - sent
    if abs(age) > max_age:
        return f"the timestamp is {age:+.0f}s from now, outside the {max_age:g}s window"
    expected = sign(key, task_id, stamp).encode("ascii")
    if not hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace")):
        return "the signature does not match"
    return None


def verify_signature(
    key: str | bytes,
    task_id: str,
    timestamp: str | int | None,
    signature: str | None,
    *,
    max_age: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether a callback's signature headers are valid, for receivers on other frameworks.

    Checks that ``signature`` (the ``X-Webhook-Signature`` header) equals
    ``base64(HMAC-SHA256(key, task_id + "." + timestamp))`` in constant time, and that
    ``timestamp`` (the ``X-Webhook-Timestamp`` header, unix seconds) is within ``max_age``
    seconds of ``now`` in either direction, so a captured callback cannot be replayed later.
    The signature does not cover the body: confirm the result with a ``record-info`` call
    (:meth:`KieClient.get_task`) before acting on it.

    Args:
        key: the account's webhook HMAC key (kie.ai settings).
        task_id: the ``taskId`` from the callback's body.
        timestamp, signature: the header values (``None`` when missing: never valid).
        max_age: the freshness window in seconds.
        now: the current unix time (default ``time.time()``).

    Example::

        event = parse_callback(await request.body())
        if not verify_signature(key, event.task_id, request.headers.get("X-Webhook-Timestamp"),
                                request.headers.get("X-Webhook-Signature")):
            return Response(status_code=401)
    """
    problem = signature_problem(key, task_id, timestamp, signature, max_age=max_age, now=now)
    return problem is None
