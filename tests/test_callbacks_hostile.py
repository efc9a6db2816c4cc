"""Callbacks from hostile or unlucky senders: an unsigned body is never taken for verified, a
replayed signature cannot shut out the real delivery, a lagging record-info does not cost a
safety poll, and slow or vanishing clients cost one line of log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from kie_async import ConfigurationError, PollPolicy
from kie_async.callbacks import CallbackEvent, CallbackReceiver, sign
from kie_async.testing import FakeKieServer, TaskScript, fast_client

KEY = "whsec-test-key"


def safety(interval: float, timeout: float = 10.0) -> PollPolicy:
    """A fixed-interval safety poll for tests."""
    return PollPolicy(interval=interval, factor=1, max_interval=interval, jitter=0, timeout=timeout)


def signed_headers(task_id: str, ago: int = 0) -> dict[str, str]:
    """Valid signature headers for ``task_id``, ``ago`` seconds old: what a replay of a captured
    one carries."""
    stamp = int(time.time()) - ago
    return {"X-Webhook-Timestamp": str(stamp), "X-Webhook-Signature": sign(KEY, task_id, stamp)}


def body_for(task_id: str, urls: list[str]) -> dict[str, Any]:
    """A success callback body naming ``urls``."""
    data = {"taskId": task_id, "promptJson": "{}", "resultUrls": urls}
    return {"code": 200, "msg": "success", "data": data}


async def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> int:
    """POST a callback; returns the HTTP status."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as answer,
    ):
        await answer.read()
        return answer.status


async def until(condition: Any, seconds: float = 3.0) -> None:
    """Wait (bounded) until ``condition()`` is true."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.fixture(name="receiver")
async def _receiver() -> AsyncIterator[CallbackReceiver]:
    """A signed receiver on loopback."""
    async with CallbackReceiver(key=KEY) as receiver:
        await receiver.start(path="/kie")
        yield receiver


def test_a_signed_event_does_not_claim_a_verified_body() -> None:
    """An event says whether its signature was good and, separately, whether record-info
    confirmed it; a parsed or signed event is not confirmed."""
    event = CallbackEvent(task_id="t1", code=200, result_urls=("https://x/a.mp4",))
    signed = CallbackEvent(task_id="t1", code=200, signature_valid=True)
    assert (event.signature_valid, event.record, event.confirmed) == (False, None, False)
    assert (signed.signature_valid, signed.confirmed) == (True, False)


def test_verified_still_works_with_a_deprecation_warning_pointing_at_the_caller() -> None:
    """``CallbackEvent.verified`` (renamed ``signature_valid``) returns the same value and warns
    DeprecationWarning, attributed to the line that read it."""
    for valid in (True, False):
        event = CallbackEvent(task_id="t1", code=200, signature_valid=valid)
        with pytest.warns(DeprecationWarning, match="use CallbackEvent.signature_valid") as got:
            assert event.verified is valid
        assert got[0].filename == __file__


async def test_replayed_signature_with_altered_body_does_not_win(
    receiver: CallbackReceiver,
) -> None:
    """A validly signed callback with forged result URLs arriving first does not shut out the
    genuine delivery: both are passed on, the wait returns record-info's record, and the
    receiver's event for the task is the genuine one, confirmed, even after later forgeries.
    (The forgeries carry headers captured from earlier deliveries: with the genuine one's own,
    the first to arrive wins the replay check, and record-info still decides.)"""
    seen: list[CallbackEvent] = []
    receiver._on_event = seen.append
    forged = ["https://evil.example/x.mp4"]
    async with FakeKieServer(callback_key=KEY) as server:
        server.default_script = TaskScript(seconds=0.3)
        async with fast_client(
            server, callbacks=receiver, callback_url=receiver.url, safety_poll=safety(5.0)
        ) as kie:
            handle = await kie.extend_video("src", prompt="go")
            task_id = handle.task_id
            assert (
                await post(receiver.url, body_for(task_id, forged), signed_headers(task_id, 10))
                == 200
            )
            started = time.monotonic()
            record = await handle.wait(timeout=4)
            took = time.monotonic() - started
            await until(lambda: server.counts["callback:delivered"] == 1)
        assert record.result_urls == tuple(server.callback_payload(task_id)["data"]["resultUrls"])
        later = ["https://evil.example/y.mp4"]
        assert (
            await post(receiver.url, body_for(task_id, later), signed_headers(task_id, 20)) == 200
        )
    assert took < 2.0
    assert receiver.counts["accepted"] == 3
    assert receiver.counts["conflicting"] == 2
    assert receiver.counts["duplicate"] == 0
    event = receiver.get(task_id)
    assert event is not None
    assert event.result_urls == record.result_urls
    assert event.confirmed and event.record == record and event.signature_valid
    assert [e.result_urls for e in seen] == [tuple(forged), record.result_urls, tuple(later)]
    assert all(e.signature_valid and not e.confirmed for e in seen)


async def test_record_info_lagging_the_callback_ends_the_wait_within_seconds(
    receiver: CallbackReceiver,
) -> None:
    """When record-info reports the end 0.5 s after the callback came, the wait re-checks
    within about a second instead of waiting for the 60 s safety poll."""
    async with FakeKieServer(callback_key=KEY, callback_lead=0.5) as server:
        server.default_script = TaskScript(seconds=0.2, videos=2)
        async with fast_client(
            server, callbacks=receiver, callback_url=receiver.url, safety_poll=safety(60.0)
        ) as kie:
            handle = await kie.extend_video("src", prompt="go")
            started = time.monotonic()
            record = await handle.wait(timeout=5)
            took = time.monotonic() - started
    assert record.status.ok and len(record.result_urls) == 2
    assert took < 3.0
    assert 2 <= server.polls_for(handle.task_id) <= 4
    event = receiver.get(handle.task_id)
    assert event is not None and event.confirmed


async def test_callback_record_info_never_confirms_backs_off(receiver: CallbackReceiver) -> None:
    """A callback that record-info never confirms (the task runs on) is re-checked with
    growing delays, not in a tight loop, and the wait ends at its deadline."""
    async with FakeKieServer() as server:
        server.default_script = TaskScript(seconds=60)
        async with fast_client(
            server, callbacks=receiver, callback_url=receiver.url, safety_poll=safety(60.0)
        ) as kie:
            handle = await kie.extend_video("src", prompt="go")
            task_id = handle.task_id
            body = body_for(task_id, ["https://x/a.mp4"])
            assert await post(receiver.url, body, signed_headers(task_id)) == 200
            with pytest.raises(TimeoutError):
                await handle.wait(timeout=2.5)
    # checks at about 0 and 1 s (the next would be at 3): a few, not hundreds
    assert 2 <= server.polls_for(task_id) <= 3


def test_body_timeout_is_validated() -> None:
    """body_timeout must be a finite number > 0."""
    for bad in (0, -1, float("inf"), True, "5"):
        with pytest.raises(ConfigurationError, match="body_timeout"):
            CallbackReceiver(body_timeout=bad)  # type: ignore[arg-type]
    assert CallbackReceiver(body_timeout=2).body_timeout == 2.0


def port_of(receiver: CallbackReceiver) -> int:
    """The port the receiver serves on."""
    return int(receiver.url.rsplit(":", 1)[1].split("/", 1)[0])


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Every byte the server sends until it closes the connection. A reset after the answer
    also ends it: the server closed with the client's trickled bytes still unread, so its
    kernel answered them with a reset (``reader.read()`` would drop what it had read)."""
    answer = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while chunk := await reader.read(65536):
            answer += chunk
    return bytes(answer)


async def test_a_client_sending_its_body_too_slowly_is_cut() -> None:
    """A client trickling its body a byte every 0.1 s gets HTTP 408 and a closed connection
    after body_timeout, instead of holding the receiver for the whole body."""
    async with CallbackReceiver(body_timeout=0.3) as receiver:
        await receiver.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(receiver))
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n")

        async def trickle() -> None:
            for _ in range(200):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.1)

        trickling = asyncio.ensure_future(trickle())
        started = time.monotonic()
        try:
            answer = await asyncio.wait_for(read_until_closed(reader), 3)
        finally:
            trickling.cancel()
            await asyncio.gather(trickling, return_exceptions=True)
            writer.close()
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert took < 1.5
    assert receiver.counts["rejected:408"] == 1


async def test_clients_leaving_mid_body_cost_one_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three clients that disconnect mid-body are logged as one warning line each, without a
    traceback, and nothing is passed on."""
    caplog.set_level(logging.DEBUG)
    async with CallbackReceiver() as receiver:
        await receiver.start()
        for _ in range(3):
            _, writer = await asyncio.open_connection("127.0.0.1", port_of(receiver))
            writer.write(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"code":')
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.close()
            await writer.wait_closed()
        await until(lambda: receiver.counts["disconnected"] == 3)
    lines = [r for r in caplog.records if "mid-body" in r.getMessage()]
    assert len(lines) == 3
    assert all(r.levelno == logging.WARNING and "\n" not in r.getMessage() for r in lines)
    assert [r for r in caplog.records if r.exc_info] == []
    assert receiver.counts["accepted"] == 0


async def test_a_task_id_with_a_newline_forges_no_log_line(
    receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A callback (signed or not, its body is the sender's) whose task id holds a newline and a
    terminal escape is logged on one line with both escaped, at every level the receiver logs."""
    caplog.set_level(logging.DEBUG, logger="kie_async")
    task_id = "t1\nERROR forged line \x1b[31m"
    body = body_for(task_id, ["https://files.example/a.mp4"])
    assert await post(receiver.url, body, signed_headers(task_id)) == 200
    assert await post(receiver.url, body, signed_headers(task_id)) == 200  # the repeat's line
    lines = [r.getMessage() for r in caplog.records if "t1" in r.getMessage()]
    assert len(lines) >= 2, lines
    for line in lines:
        assert "\n" not in line and "\x1b" not in line, line
        assert "t1\\nERROR forged line \\x1b[31m" in line, line
