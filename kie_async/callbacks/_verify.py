"""verify_callback: one call from a callback's raw body and headers to a verified event.

Pure: no I/O, the clock only when ``now`` is not given. Every framework adapter (and the aiohttp
receiver) goes through it; the replay check that follows it is :mod:`._replays`.
"""

from __future__ import annotations

import hmac
import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .._errors import ConfigurationError, UnexpectedResponseError
from .._protocol.wire import nullable_str
from ._errors import (
    CallbackBodyError,
    CallbackHeaderMissingError,
    CallbackSignatureError,
    CallbackTaskIdMismatchError,
    CallbackTimestampError,
    CallbackVerificationError,
)
from ._events import CallbackEvent, parse_callback
from ._signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

__all__ = ["Headers", "check_settings", "verify_callback"]

#: A request's headers: any mapping (aiohttp's, Starlette's and Django's are case-insensitive),
#: or pairs (werkzeug's ``Headers`` in Flask).
Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def check_settings(key: str | bytes | None, allow_unsigned: bool, tolerance: float) -> None:
    """Refuse settings that cannot verify anything, before any callback arrives.

    Raises:
        ConfigurationError: no key without ``allow_unsigned``, both, an empty key, or a
            tolerance that is not a finite number > 0.
    """
    if key is None:
        if allow_unsigned is not True:
            raise ConfigurationError(
                "key",
                "no webhook HMAC key: pass the account's key, or allow_unsigned=True to accept "
                "unsigned callbacks (only safe on a private network)",
            )
    elif not isinstance(key, str | bytes) or not key:
        raise ConfigurationError("key", "must be a non-empty str or bytes, or None")
    elif allow_unsigned:
        raise ConfigurationError("allow_unsigned", "cannot be combined with a key")
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, int | float)
        or not 0 < tolerance < math.inf
    ):
        raise ConfigurationError("tolerance", f"must be a finite number > 0, got {tolerance!r}")


def verify_callback(
    body: bytes,
    headers: Headers,
    *,
    key: str | bytes | None,
    tolerance: float = 300.0,
    now: float | None = None,
    allow_unsigned: bool = False,
) -> CallbackEvent:
    """Verify one callback of kie.ai, from its raw body and headers, and read it.

    With a ``key`` it checks, in this order: both signature headers are there
    (``X-Webhook-Timestamp``, ``X-Webhook-Signature``; looked up case-insensitively); the
    timestamp is within ``tolerance`` seconds of ``now`` **in either direction**; the body is
    a callback; it names one task id only; and the signature is
    ``base64(HMAC-SHA256(key, taskId + "." + timestamp))`` (compared in constant time).

    The returned event keeps apart what the signature authenticates (``task_id``,
    ``timestamp``; ``signature_valid`` is true) from what the body only claims (``code``,
    ``result_urls``, ``message``...): confirm those with ``record-info``
    (:meth:`KieClient.confirm <kie_async.KieClient.confirm>`). An acknowledgment (no result,
    no outcome) comes back with ``event.terminal`` false. Replays of the same delivery within
    the window are for a :class:`ReplayStore` to catch (``event.replay_key``).

    Args:
        body: the request body, as received.
        headers: the request headers: any mapping (names are matched case-insensitively),
            or ``(name, value)`` pairs such as Flask's ``request.headers``.
        key: the account's webhook HMAC key, or ``None`` with ``allow_unsigned=True``.
        tolerance: the freshness window in seconds, both directions (default 300).
        now: the current unix time (default ``time.time()``).
        allow_unsigned: accept callbacks without checking any signature (``key=None``): for
            an account without a webhook key, on a private network only.

    Returns:
        The :class:`CallbackEvent`.

    Raises:
        CallbackHeaderMissingError: a signature header is missing (HTTP 401).
        CallbackTimestampError: the timestamp is not a number, stale or in the future (401).
        CallbackBodyError: the body is not a callback (400).
        CallbackTaskIdMismatchError: the body names two different task ids (401).
        CallbackSignatureError: the signature does not match (401).
        ConfigurationError: no key and no ``allow_unsigned``, or a bad ``tolerance``.

    Example::

        try:
            event = verify_callback(await request.body(), request.headers, key=webhook_key)
        except CallbackVerificationError as exc:
            return Response(status_code=exc.status)
    """
    check_settings(key, allow_unsigned, tolerance)
    if key is None:
        return _read(body, None)
    stamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    try:
        if stamp is None:
            raise CallbackHeaderMissingError(TIMESTAMP_HEADER)
        if signature is None:
            raise CallbackHeaderMissingError(SIGNATURE_HEADER)
        sent = _timestamp(stamp, tolerance, time.time() if now is None else now)
    except CallbackVerificationError as exc:
        exc.task_id = _claimed_task_id(body)  # for the log line: which task it claims to be
        raise
    event = _read(body, key)
    expected = sign(key, event.task_id, stamp).encode("ascii")
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        raise CallbackSignatureError(
            f"task {event.task_id}: the signature does not match", task_id=event.task_id
        )
    return attrs.evolve(event, signature_valid=True, timestamp=sent)


def _header(headers: Headers, name: str) -> str | None:
    getter = getattr(headers, "get", None)
    value: object = getter(name) if callable(getter) else None
    if value is None:
        wanted = name.lower()
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        value = next((v for k, v in pairs if str(k).lower() == wanted), None)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


def _timestamp(stamp: str, tolerance: float, now: float) -> float:
    try:
        sent = float(stamp)
    except ValueError:
        sent = math.nan
    if not math.isfinite(sent):
        raise CallbackTimestampError(
            f"the {TIMESTAMP_HEADER} header is not a unix time in seconds",
            age=None,
            tolerance=tolerance,
        )
    age = now - sent
    if age > tolerance:
        where = f"{age:.0f}s old"
    elif age < -tolerance:
        where = f"{-age:.0f}s in the future"
    else:
        return sent
    raise CallbackTimestampError(
        f"the timestamp is {where}, outside the {tolerance:g}s window (a replay, or a clock off)",
        age=age,
        tolerance=tolerance,
    )


def _read(body: bytes, key: str | bytes | None) -> CallbackEvent:
    """The event of ``body``, once it names exactly one task id."""
    reason = ""
    try:
        event = parse_callback(body)
    except UnexpectedResponseError as exc:
        reason = exc.message
    if reason:  # raised outside the except block: no __context__ holding the body
        raw: object = body  # a str from a careless caller is read too
        text = raw if isinstance(raw, str) else bytes(body).decode("utf-8", "replace")
        raise CallbackBodyError(reason, _redact(text, key)[:300])
    envelope: Any = json.loads(body)
    data = envelope["data"]
    named = {
        nullable_str(where.get(name))
        for where in (data, envelope)
        for name in ("taskId", "task_id")
        if where.get(name) is not None
    }
    if named != {event.task_id}:
        shown = ", ".join(sorted(repr(n) for n in named if n))
        raise CallbackTaskIdMismatchError(
            f"the body names more than one task id ({shown})", task_id=event.task_id
        )
    return event


def _claimed_task_id(body: bytes) -> str | None:
    try:
        return parse_callback(body).task_id
    except UnexpectedResponseError:
        return None


def _redact(text: str, key: str | bytes | None) -> str:
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    return text.replace(key, "***") if key else text
