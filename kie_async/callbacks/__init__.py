"""Receiving kie.ai's result callbacks: an aiohttp handler, signature checks, and events.

When a create carries ``callBackUrl``, kie.ai POSTs the task's outcome there once it ends::

    {"code": 200, "msg": "success",
     "data": {"taskId": "...", "promptJson": "<JSON string>", "resultUrls": ["https://..."]}}

A :class:`CallbackReceiver` turns each POST into a :class:`CallbackEvent` and hands it to your
code (a function, an async iterator, or a :class:`~kie_async.KieClient` waiting on the task). It
answers at once, ignores repeated deliveries of the same body, caps the body size and the time
to send it and, given the account's webhook HMAC key, rejects unsigned, forged and stale
callbacks with HTTP 401.

The signature covers only ``taskId`` and the timestamp, not the body, so never trust a callback's
result URLs on their own: ``event.signature_valid`` says only who sent it and when. A client
wired to a receiver confirms each callback with ``record-info`` before it reports the task
finished, and the receiver then keeps that record on the event (``event.record``).

Example::

    from kie_async import KieClient
    from kie_async.callbacks import CallbackReceiver

    receiver = CallbackReceiver(key=os.environ["KIE_WEBHOOK_KEY"])
    await receiver.start(host="127.0.0.1", port=8080)  # behind https://public.example/kie
    async with KieClient(callbacks=receiver, callback_url="https://public.example/kie") as kie:
        record = await (await kie.extend_video("ee603959", prompt="Into a nebula"))
    await receiver.close()
"""

from __future__ import annotations

from .._public import publish as _publish

# The package: ``_events`` (CallbackEvent, parse_callback), ``_signature`` (sign,
# verify_signature), ``_errors`` and ``_verify`` (verify_callback), ``_replays`` (the replay
# stores), ``_verifier`` (the core every receiver shares), ``_dedupe`` (what a receiver
# remembers), ``_stream`` (one iterator's queue), ``_receiver`` (CallbackReceiver, aiohttp) and
# ``starlette`` (CallbackEndpoint, imported only by who uses it).
from ._errors import (
    CallbackBodyError,
    CallbackHeaderMissingError,
    CallbackSignatureError,
    CallbackTaskIdMismatchError,
    CallbackTimestampError,
    CallbackVerificationError,
)
from ._events import CallbackEvent, parse_callback
from ._receiver import CallbackReceiver
from ._replays import MemoryReplayStore, RedisReplayStore, ReplayStore
from ._signature import SIGNATURE_HEADER as SIGNATURE_HEADER
from ._signature import TIMESTAMP_HEADER as TIMESTAMP_HEADER
from ._signature import sign, verify_signature
from ._verifier import CallbackAnswer, CallbackVerifier
from ._verify import verify_callback

__all__ = [
    "CallbackAnswer",
    "CallbackBodyError",
    "CallbackEvent",
    "CallbackHeaderMissingError",
    "CallbackReceiver",
    "CallbackSignatureError",
    "CallbackTaskIdMismatchError",
    "CallbackTimestampError",
    "CallbackVerificationError",
    "CallbackVerifier",
    "MemoryReplayStore",
    "RedisReplayStore",
    "ReplayStore",
    "parse_callback",
    "sign",
    "verify_callback",
    "verify_signature",
]

# Each public name shows as kie_async.<this package>.Name in tracebacks, reprs and pickles.
for _name in __all__:
    _publish(globals()[_name], __name__)
