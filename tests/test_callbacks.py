"""Callbacks end to end over loopback: the fake kie.ai delivers, the receiver checks, waits end."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kie_async import (
    ConfigurationError,
    ExtendRequest,
    KieClient,
    PollPolicy,
    TaskFailedError,
    UnexpectedResponseError,
)
from kie_async.callbacks import (
    CallbackEvent,
    CallbackReceiver,
    parse_callback,
    sign,
    verify_signature,
)
from kie_async.testing import FakeKieServer, TaskScript, fast_client

KEY = "whsec-test-key"

#: A callback body as kie.ai documents it (written by hand, not produced by the SDK).
SAMPLE_SUCCESS = (
    b'{"code": 200, "msg": "success", "data": {"taskId": "ae53e0b8a3c1", '
    b'"promptJson": "{\\"taskType\\":\\"mj_video_extend_manual\\",\\"taskId\\":\\"ee603959\\",'
    b'\\"index\\":0,\\"prompt\\":\\"Into a nebula\\"}", '
    b'"resultUrls": ["https://cdn.example.com/r/ae53e0b8a3c1_0.mp4", '
    b'"https://cdn.example.com/r/ae53e0b8a3c1_1.mp4"]}}'
)
SAMPLE_FAILURE = (
    b'{"code": 500, "msg": "generation failed", "data": {"taskId": "bf11", '
    b'"promptJson": "null", "resultUrls": null}}'
)


def safety(interval: float, timeout: float = 10.0) -> PollPolicy:
    """A fixed-interval safety poll for tests."""
    return PollPolicy(
        interval=interval, factor=1, max_interval=interval, jitter=0, timeout=timeout, first_delay=0
    )


def fixed(interval: float, timeout: float = 10.0) -> PollPolicy:
    """A fixed-interval ordinary poll for tests."""
    return PollPolicy(
        interval=interval,
        factor=1,
        max_interval=interval,
        jitter=0,
        timeout=timeout,
        not_found_grace=0,
        first_delay=0,
    )


@pytest.fixture(name="receiver")
async def _receiver() -> AsyncIterator[CallbackReceiver]:
    """A signed receiver serving on loopback."""
    receiver = CallbackReceiver(key=KEY)
    await receiver.start(path="/kie/callback")
    yield receiver
    await receiver.close()


@pytest.fixture(name="signed_server")
async def _signed_server() -> AsyncIterator[FakeKieServer]:
    """A fake kie.ai that signs its callbacks with KEY."""
    async with FakeKieServer(callback_key=KEY) as server:
        yield server


async def post(
    url: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
) -> int:
    """POST a callback as kie.ai would; returns the HTTP status."""
    data = body if isinstance(body, bytes) else None
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, json=None if data else body, headers=headers) as answer,
    ):
        await answer.read()
        return answer.status


def signed_headers(task_id: str, *, key: str = KEY, at: float | None = None) -> dict[str, str]:
    """Valid (or, with another key or time, invalid) signature headers."""
    stamp = int(time.time() if at is None else at)
    return {
        "X-Webhook-Timestamp": str(stamp),
        "X-Webhook-Signature": sign(key, task_id, stamp),
    }


def callback(task_id: str, urls: list[str] | None = None) -> dict[str, Any]:
    """A success callback body for ``task_id``."""
    data = {"taskId": task_id, "promptJson": "{}", "resultUrls": urls or ["https://x/a.mp4"]}
    return {"code": 200, "msg": "success", "data": data}


# -- parsing and signatures ------------------------------------------------------------------------


def test_parse_callback_reads_documented_success_sample() -> None:
    """A documented success body becomes an ok event with string URLs and parsed promptJson."""
    event = parse_callback(SAMPLE_SUCCESS)
    assert event.task_id == "ae53e0b8a3c1"
    assert event.ok
    assert event.code == 200
    assert event.message == "success"
    assert event.result_urls == (
        "https://cdn.example.com/r/ae53e0b8a3c1_0.mp4",
        "https://cdn.example.com/r/ae53e0b8a3c1_1.mp4",
    )
    assert event.params is not None
    assert event.params["prompt"] == "Into a nebula"
    assert event.data["taskId"] == "ae53e0b8a3c1"
    assert not event.signature_valid


def test_parse_callback_reads_failure_with_null_quirks() -> None:
    """A failure body with "null" promptJson and null resultUrls parses leniently as not ok."""
    event = parse_callback(SAMPLE_FAILURE)
    assert (event.task_id, event.code, event.ok) == ("bf11", 500, False)
    assert event.result_urls == ()
    assert event.params is None
    assert event.message == "generation failed"


def test_parse_callback_accepts_url_objects_and_object_prompt() -> None:
    """Result URLs as {"resultUrl": ...} objects and promptJson as an object are accepted too."""
    event = parse_callback(
        {
            "code": "200",
            "msg": "ok",
            "data": {
                "taskId": "t9",
                "promptJson": {"prompt": "p"},
                "resultUrls": [{"resultUrl": "https://a/1.mp4"}, "null", ""],
            },
        }
    )
    assert event.ok
    assert event.result_urls == ("https://a/1.mp4",)
    assert event.params == {"prompt": "p"}


@pytest.mark.parametrize(
    "body",
    [b"<html>nope</html>", b"[1, 2]", b'{"code": 200}', b'{"code": 200, "data": {"taskId": ""}}'],
)
def test_parse_callback_rejects_unusable_bodies(body: bytes) -> None:
    """A body that is not JSON, not an object, or names no task is an UnexpectedResponseError."""
    with pytest.raises(UnexpectedResponseError):
        parse_callback(body)


def test_verify_signature_matches_the_fake_servers_signer() -> None:
    """verify_signature accepts kie's scheme as FakeKieServer.sign computes it, in the window."""
    now = 1_700_000_000
    good = FakeKieServer.sign(KEY, "t1", now)
    assert verify_signature(KEY, "t1", str(now), good, now=now + 10)
    assert verify_signature(KEY.encode(), "t1", now, good, now=now - 10)


@pytest.mark.parametrize(
    ("task_id", "timestamp", "signature", "now"),
    [
        ("t1", "1700000000", None, 1_700_000_000),  # unsigned
        ("t1", None, "sig", 1_700_000_000),  # no timestamp
        ("t2", "1700000000", FakeKieServer.sign(KEY, "t1", 1_700_000_000), 1_700_000_000),
        ("t1", "1700000000", FakeKieServer.sign("other", "t1", 1_700_000_000), 1_700_000_000),
        ("t1", "1700000000", FakeKieServer.sign(KEY, "t1", 1_700_000_000), 1_700_000_301),
        ("t1", "1700000000", FakeKieServer.sign(KEY, "t1", 1_700_000_000), 1_699_999_699),
        ("t1", "soon", FakeKieServer.sign(KEY, "t1", 1_700_000_000), 1_700_000_000),
        ("t1", "1700000000", "Ünïcode", 1_700_000_000),
    ],
)
def test_verify_signature_refuses_bad_missing_and_stale(
    task_id: str, timestamp: str | None, signature: str | None, now: int
) -> None:
    """Missing, forged, other-task, stale, future and malformed signatures are all refused."""
    assert not verify_signature(KEY, task_id, timestamp, signature, now=now)


def test_freshness_window_is_configurable() -> None:
    """A wider max_age accepts a callback that the default 300 s window refuses."""
    stamp = 1_700_000_000
    good = sign(KEY, "t1", stamp)
    assert not verify_signature(KEY, "t1", stamp, good, now=stamp + 600)
    assert verify_signature(KEY, "t1", stamp, good, now=stamp + 600, max_age=900)


def test_receiver_settings_are_checked() -> None:
    """Invalid receiver settings raise ConfigurationError at construction."""
    with pytest.raises(ConfigurationError):
        CallbackReceiver(key="")
    with pytest.raises(ConfigurationError):
        CallbackReceiver(max_age=0)
    with pytest.raises(ConfigurationError):
        CallbackReceiver(max_body=0)


# -- the receiver --------------------------------------------------------------------------------


async def test_forged_stale_and_unsigned_callbacks_get_401(receiver: CallbackReceiver) -> None:
    """With a key, unsigned, forged, stale and future callbacks are answered 401 and never passed
    on; a valid one is answered 200 and passed on."""
    seen: list[CallbackEvent] = []
    receiver._on_event = seen.append
    body = callback("t-1")
    assert await post(receiver.url, body) == 401
    assert await post(receiver.url, body, signed_headers("t-1", key="guess")) == 401
    assert await post(receiver.url, body, signed_headers("t-other")) == 401
    assert await post(receiver.url, body, signed_headers("t-1", at=time.time() - 400)) == 401
    assert await post(receiver.url, body, signed_headers("t-1", at=time.time() + 400)) == 401
    assert receiver.get("t-1") is None
    assert receiver.counts["rejected:401"] == 5
    assert await post(receiver.url, body, signed_headers("t-1")) == 200
    await asyncio.sleep(0)
    assert [e.task_id for e in seen] == ["t-1"]
    event = receiver.get("t-1")
    assert event is not None
    assert event.signature_valid


async def test_rejections_are_logged(
    receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A rejected callback leaves a warning naming the reason, and no signature or key."""
    caplog.set_level(logging.WARNING, logger="kie_async")
    headers = signed_headers("t-2", key="guess")
    assert await post(receiver.url, callback("t-2"), headers) == 401
    text = caplog.text
    assert "signature does not match" in text
    assert headers["X-Webhook-Signature"] not in text
    assert KEY not in text


async def test_body_size_is_limited() -> None:
    """Bodies over max_body are refused with 413, whether announced or streamed chunked."""
    async with CallbackReceiver(max_body=1024) as receiver:
        await receiver.start()
        big = callback("t-big", ["https://x/" + "a" * 4000 + ".mp4"])
        assert await post(receiver.url, big) == 413

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b" " * 512

        async with (
            aiohttp.ClientSession() as session,
            session.post(receiver.url, data=chunked()) as answer,
        ):
            assert answer.status == 413
        assert receiver.counts["rejected:413"] == 2
        assert receiver.get("t-big") is None


async def test_malformed_body_gets_400() -> None:
    """A body that is not a kie callback is answered 400."""
    async with CallbackReceiver() as receiver:
        await receiver.start()
        assert await post(receiver.url, b"not json") == 400
        assert await post(receiver.url, {"code": 200, "data": {}}) == 400
        assert receiver.counts["rejected:400"] == 2


async def test_answers_before_user_code_finishes() -> None:
    """The 200 goes out while a slow on_event is still running, so kie's 15 s limit is met."""
    release = asyncio.Event()
    finished: list[str] = []

    async def slow(event: CallbackEvent) -> None:
        await release.wait()
        finished.append(event.task_id)

    async with CallbackReceiver(on_event=slow) as receiver:
        await receiver.start()
        assert await asyncio.wait_for(post(receiver.url, callback("t-slow")), 2) == 200
        assert finished == []
        release.set()
        await asyncio.sleep(0.01)
    assert finished == ["t-slow"]


async def test_on_event_errors_are_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    """An exception in on_event is logged and the receiver keeps accepting callbacks."""

    def broken(event: CallbackEvent) -> None:
        raise RuntimeError("user bug")

    async with CallbackReceiver(on_event=broken) as receiver:
        await receiver.start()
        assert await post(receiver.url, callback("t-a")) == 200
        assert await post(receiver.url, callback("t-b")) == 200
        await asyncio.sleep(0.01)
    assert receiver.counts["accepted"] == 2
    assert "user bug" in caplog.text


async def test_iterator_yields_events_and_ends_on_close() -> None:
    """``async for event in receiver`` yields each new task once and ends when it closes."""
    receiver = CallbackReceiver()
    await receiver.start()
    got: list[str] = []

    async def consume() -> None:
        async for event in receiver:
            got.append(event.task_id)

    consumer = asyncio.ensure_future(consume())
    await asyncio.sleep(0)
    for task_id in ("a", "b", "a"):
        assert await post(receiver.url, callback(task_id)) == 200
    await receiver.close()
    await asyncio.wait_for(consumer, 2)
    assert got == ["a", "b"]


async def test_closed_receiver_answers_503() -> None:
    """A closed receiver answers 503 (so kie.ai retries) and passes nothing on."""
    receiver = CallbackReceiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/hook"
    try:
        assert await post(url, callback("t-own-app")) == 200
        await receiver.close()
        assert await post(url, callback("t-late")) == 503
        assert receiver.get("t-late") is None
    finally:
        await runner.cleanup()


# -- hybrid waiting, end to end --------------------------------------------------------------------


async def test_signed_callback_ends_wait_with_fewer_polls(
    signed_server: FakeKieServer, receiver: CallbackReceiver
) -> None:
    """A signed callback ends a wait with one confirming record-info call, where polling alone
    at a 50 ms interval needs many for the same 0.4 s task."""
    signed_server.default_script = TaskScript(seconds=0.4, videos=2)
    async with fast_client(signed_server, poll=fixed(0.05)) as plain:
        handle = await plain.extend_video("src", prompt="go")
        await handle.wait()
        polled = signed_server.polls_for(handle.task_id)
    async with fast_client(
        signed_server,
        callbacks=receiver,
        callback_url=receiver.url,
        safety_poll=safety(5.0),
    ) as kie:
        handle = await kie.extend_video("src", prompt="go")
        started = time.monotonic()
        record = await handle.wait()
        took = time.monotonic() - started
    assert record.status.ok
    assert len(record.result_urls) == 2
    assert signed_server.polls_for(handle.task_id) == 1
    assert polled >= 5
    assert took < 2.0  # ended by the callback, not by the 5 s safety poll
    assert signed_server.creates[-1]["callBackUrl"] == receiver.url
    assert receiver.counts["accepted"] == 1


async def test_requests_per_task_with_and_without_callbacks(receiver: CallbackReceiver) -> None:
    """Measured over 10 bulk tasks of 1.8 s with kie-like schedules scaled down 100 times:
    callbacks cut record-info calls per task from about five to about two."""
    results: dict[str, float] = {}
    scale = 0.01  # 3 minutes of kie time -> 1.8 s
    default = PollPolicy()
    scaled_poll = PollPolicy(
        interval=default.interval * scale,
        factor=default.factor,
        max_interval=default.max_interval * scale,
        jitter=0,
        timeout=60,
        first_delay=default.first_delay * scale,
        steady_polls=default.steady_polls,
    )
    kie_safety = KieClient(api_key="k").safety_poll
    scaled_safety = PollPolicy(
        interval=kie_safety.interval * scale,
        factor=kie_safety.factor,
        max_interval=kie_safety.max_interval * scale,
        jitter=0,
        timeout=60,
    )
    requests = [ExtendRequest("src", index=0, prompt=f"shot {i}") for i in range(10)]
    for mode in ("polling", "callbacks"):
        async with FakeKieServer(callback_key=KEY) as server:
            server.default_script = TaskScript(seconds=180 * scale)
            extra: dict[str, Any] = {"poll": scaled_poll}
            if mode == "callbacks":
                extra.update(
                    callbacks=receiver, callback_url=receiver.url, safety_poll=scaled_safety
                )
            async with fast_client(server, **extra) as kie:
                done = [o async for o in kie.extend_many(requests, concurrency=10)]
            assert all(o.ok for o in done)
            results[mode] = server.counts["request:record"] / len(done)
            sent = sum(n for k, n in server.counts.items() if k.startswith("request:"))
            results[mode + " (all)"] = sent / len(done)
    print(f"\nrequests per task: {results}")
    assert results["callbacks"] <= 2.5
    assert results["polling"] >= 4
    assert results["callbacks (all)"] < results["polling (all)"]


async def test_duplicate_deliveries_resolve_once() -> None:
    """Three deliveries of one task reach on_event, the iterator and the wait exactly once."""
    seen: list[str] = []
    async with (
        FakeKieServer(callback_key=KEY, callback_duplicates=2) as server,
        CallbackReceiver(key=KEY, on_event=lambda e: seen.append(e.task_id)) as receiver,
    ):
        await receiver.start()
        stream = receiver.events()
        server.default_script = TaskScript(seconds=0.05)
        async with fast_client(
            server, callbacks=receiver, callback_url=receiver.url, safety_poll=safety(5.0)
        ) as kie:
            handle = await kie.extend_video("src", prompt="go")
            await handle.wait()
            for _ in range(100):
                if server.counts["callback:delivered"] == 3:
                    break
                await asyncio.sleep(0.01)
        first = await asyncio.wait_for(anext(stream), 1)
        await receiver.close()
        rest = [e async for e in stream]
    assert server.counts["callback:delivered"] == 3
    assert receiver.counts["accepted"] == 1
    assert receiver.counts["duplicate"] == 2
    assert seen == [handle.task_id]
    assert first.task_id == handle.task_id
    assert rest == []
    assert server.polls_for(handle.task_id) == 1


async def test_lost_callback_still_ends_by_polling(receiver: CallbackReceiver) -> None:
    """When kie.ai never sends the callback, the safety poll still ends the wait."""
    async with FakeKieServer(callback_key=KEY, callback_drop_rate=1.0) as server:
        server.default_script = TaskScript(seconds=0.2)
        async with fast_client(
            server, callbacks=receiver, callback_url=receiver.url, safety_poll=safety(0.1)
        ) as kie:
            handle = await kie.extend_video("src", prompt="go")
            record = await handle.wait()
        # The poll may see the end a moment before the delivery task wakes to drop it.
        for _ in range(200):
            if server.counts["callback:dropped"]:
                break
            await asyncio.sleep(0.01)
    assert record.status.ok
    assert server.counts["callback:dropped"] == 1
    assert receiver.counts["accepted"] == 0
    assert server.polls_for(handle.task_id) >= 2


async def test_wrongly_signed_callbacks_are_refused_and_polling_ends_the_wait(
    receiver: CallbackReceiver,
) -> None:
    """Callbacks signed with another key are refused (401, retried by kie, never passed on),
    and the wait ends by its safety poll."""
    async with FakeKieServer(callback_key="not-the-key", callback_retry_delay=0.01) as server:
        server.default_script = TaskScript(seconds=0.1)
        async with fast_client(
            server, callbacks=receiver, callback_url=receiver.url, safety_poll=safety(0.3)
        ) as kie:
            handle = await kie.extend_video("src", prompt="go")
            record = await handle.wait()
            for _ in range(100):
                if server.counts["callback:failed"] == 4:
                    break
                await asyncio.sleep(0.01)
    assert record.status.ok
    assert receiver.counts["rejected:401"] == 4
    assert server.counts["callback:failed"] == 4
    assert receiver.get(handle.task_id) is None


async def test_unconfirmed_callback_resumes_polling() -> None:
    """An early (unsigned, untrue) callback does not end the wait: the confirming poll sees the
    task still generating, and polling goes on until the task really ends."""
    async with (
        FakeKieServer() as server,
        CallbackReceiver() as receiver,
    ):
        await receiver.start()
        server.default_script = TaskScript(seconds=0.5)
        async with fast_client(
            server, callbacks=receiver, callback_url=receiver.url, safety_poll=safety(0.1)
        ) as kie:
            handle = await kie.extend_video("src", prompt="go")
            assert await post(receiver.url, callback(handle.task_id)) == 200
            started = time.monotonic()
            record = await handle.wait()
            took = time.monotonic() - started
    assert record.status.ok
    assert took >= 0.3
    assert server.polls_for(handle.task_id) >= 3


async def test_failure_callback_raises_task_failed(
    signed_server: FakeKieServer, receiver: CallbackReceiver
) -> None:
    """A failure callback, once confirmed, ends the wait with TaskFailedError."""
    signed_server.default_script = TaskScript(flag=2, seconds=0.05, error_message="nsfw")
    async with fast_client(
        signed_server, callbacks=receiver, callback_url=receiver.url, safety_poll=safety(5.0)
    ) as kie:
        handle = await kie.extend_video("src", prompt="go")
        with pytest.raises(TaskFailedError, match="nsfw"):
            await handle.wait()
    event = receiver.get(handle.task_id)
    assert event is not None
    assert not event.ok
    assert signed_server.polls_for(handle.task_id) == 1


async def test_callback_before_wait_still_counts(
    signed_server: FakeKieServer, receiver: CallbackReceiver
) -> None:
    """A callback that arrived before the wait began ends it with a single confirming poll."""
    signed_server.default_script = TaskScript(seconds=0.0)
    async with fast_client(
        signed_server, callbacks=receiver, callback_url=receiver.url, safety_poll=safety(5.0)
    ) as kie:
        handle = await kie.extend_video("src", prompt="go")
        for _ in range(200):
            if receiver.get(handle.task_id) is not None:
                break
            await asyncio.sleep(0.01)
        record = await kie.task(handle.task_id).wait()
    assert record.status.ok
    assert signed_server.polls_for(handle.task_id) == 1


async def test_request_callback_url_wins_over_client_default(
    signed_server: FakeKieServer, receiver: CallbackReceiver
) -> None:
    """A request's own callback_url is sent as is; others get the client's callback_url."""
    async with fast_client(
        signed_server, callbacks=receiver, callback_url=receiver.url, safety_poll=safety(5.0)
    ) as kie:
        await kie.extend_video("src", prompt="a", callback_url="https://mine.example/hook")
        await kie.extend_video("src", prompt="b")
    assert signed_server.creates[0]["callBackUrl"] == "https://mine.example/hook"
    assert signed_server.creates[1]["callBackUrl"] == receiver.url


async def test_client_callback_settings_are_checked(signed_server: FakeKieServer) -> None:
    """A receiver without a URL, a non-http URL, or a wrong type is a ConfigurationError;
    attach_callbacks(None, None) detaches."""
    receiver = CallbackReceiver()
    with pytest.raises(ConfigurationError, match="callback_url"):
        KieClient(api_key="k", callbacks=receiver)
    with pytest.raises(ConfigurationError, match="callback_url"):
        KieClient(api_key="k", callback_url="ftp://x")
    with pytest.raises(ConfigurationError, match="callbacks"):
        KieClient(api_key="k", callbacks="nope", callback_url="https://x")  # type: ignore[arg-type]
    kie = KieClient(api_key="k", callback_url="https://hooks.example/kie")
    assert (kie.callbacks, kie.callback_url) == (None, "https://hooks.example/kie")
    kie.attach_callbacks(receiver, "https://hooks.example/kie")
    assert (kie.callbacks, kie.callback_url) == (receiver, "https://hooks.example/kie")
    kie.attach_callbacks(None, None)
    assert (kie.callbacks, kie.callback_url) == (None, None)
    await kie.aclose()


def _ours(task: asyncio.Task[Any]) -> bool:
    """Whether a task is one of the SDK's own (not aiohttp's per-connection handlers)."""
    name = getattr(task.get_coro(), "__qualname__", "")
    return "RequestHandler" not in name and "_deliver_callback" not in name


async def test_cancelled_wait_leaves_no_background_task(
    signed_server: FakeKieServer, receiver: CallbackReceiver
) -> None:
    """Cancelling a hybrid wait cancels its poll loop and listener: no task is left behind, and
    closing the server and receiver leaves none either."""
    signed_server.default_script = TaskScript(seconds=30)
    before = asyncio.all_tasks()
    async with fast_client(
        signed_server, callbacks=receiver, callback_url=receiver.url, safety_poll=safety(0.05)
    ) as kie:
        handle = await kie.extend_video("src", prompt="go")
        waiting = asyncio.ensure_future(handle.wait())
        await asyncio.sleep(0.2)
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    leftover = {t for t in asyncio.all_tasks() - before if _ours(t) and not t.done()}
    assert leftover == set()
    assert receiver._watchers == {}
    assert len(signed_server._deliveries) == 1
    await signed_server.close()
    await receiver.close()
    assert signed_server._deliveries == set()
    current = asyncio.current_task()
    assert {t for t in asyncio.all_tasks() if t is not current and not t.done()} == set()


async def test_lone_surrogate_task_id_is_refused_not_a_crash(receiver: CallbackReceiver) -> None:
    """A taskId with a lone surrogate (a JSON \\ud800 escape) is judged unsigned: 401, no 500."""
    event = parse_callback(b'{"code": 200, "data": {"taskId": "t\\ud800"}}')
    assert not verify_signature(KEY, event.task_id, 1_700_000_000, "c2ln", now=1_700_000_000)
    body = b'{"code": 200, "msg": "ok", "data": {"taskId": "t\\ud800"}}'
    headers = {"X-Webhook-Timestamp": str(int(time.time())), "X-Webhook-Signature": "c2ln"}
    assert await post(receiver.url, body, headers) == 401
