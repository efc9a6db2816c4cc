"""verify_callback: each reason a callback is refused, by type and without the key anywhere;
the window in both directions; acknowledgments and record-shaped bodies; the test signer and
``python -m kie_async.testing --send``; KieClient.confirm."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
from helpers import child_env

from kie_async import ConfigurationError, KieError, TaskFailedError
from kie_async.callbacks import (
    CallbackBodyError,
    CallbackEvent,
    CallbackHeaderMissingError,
    CallbackReceiver,
    CallbackSignatureError,
    CallbackTaskIdMismatchError,
    CallbackTimestampError,
    CallbackVerificationError,
    verify_callback,
)
from kie_async.testing import FakeKieServer, TaskScript, fast_client, sign_callback

KEY = "whsec-Sup3rS3cretKey-do-not-leak"
NOW = 1_700_000_000
SAMPLES = Path("/work/shared/real-samples")


def body_of(data: dict[str, Any], code: int = 200, msg: str = "success") -> bytes:
    return json.dumps({"code": code, "msg": msg, "data": data}).encode()


SUCCESS = body_of({"taskId": "t1", "promptJson": "{}", "resultUrls": ["https://c.example/1.mp4"]})


def signed(body: bytes, stamp: int = NOW, **extra: Any) -> dict[str, str]:
    return sign_callback(body, KEY, timestamp=stamp, **extra)


def chain_text(exc: BaseException) -> str:
    """Everything an exception shows: str, repr, args, fields and its whole chain, formatted."""
    parts = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen), repr(seen.args), repr(vars(seen))]
        seen = seen.__cause__ or seen.__context__
    parts.append("".join(traceback.format_exception(exc)))
    return "\n".join(parts)


def test_a_signed_callback_verifies_and_keeps_authenticated_apart_from_claimed() -> None:
    """A callback signed by the test signer verifies: task id and timestamp authenticated, the
    body's claims read as documented."""
    event = verify_callback(SUCCESS, signed(SUCCESS), key=KEY, now=NOW + 5)
    assert (event.task_id, event.timestamp, event.signature_valid) == ("t1", NOW, True)
    assert event.terminal and event.ok
    assert event.result_urls == ("https://c.example/1.mp4",)
    lower = {k.lower(): v for k, v in signed(SUCCESS).items()}  # a plain dict, lower-case
    assert verify_callback(SUCCESS, lower, key=KEY, now=NOW).signature_valid


def drop(name: str) -> Any:
    return lambda headers: headers.pop(name)


def put(name: str, value: str) -> Any:
    return lambda headers: headers.update({name: value})


def keep(headers: dict[str, str]) -> None:
    return None


TS, SIG = "X-Webhook-Timestamp", "X-Webhook-Signature"
OTHER_KEY_SIG = sign_callback(SUCCESS, "k2", timestamp=NOW)[SIG]
TOP = json.dumps({"taskId": "t9", "data": {"taskId": "t1"}}).encode()
REFUSALS = [
    ("no timestamp", SUCCESS, drop(TS), CallbackHeaderMissingError),
    ("no signature", SUCCESS, drop(SIG), CallbackHeaderMissingError),
    ("blank sig", SUCCESS, put(SIG, " "), CallbackHeaderMissingError),
    ("nan stamp", SUCCESS, put(TS, "nan"), CallbackTimestampError),
    ("text stamp", SUCCESS, put(TS, "soon"), CallbackTimestampError),
    ("forged", SUCCESS, put(SIG, "AAAA"), CallbackSignatureError),
    ("other key", SUCCESS, put(SIG, OTHER_KEY_SIG), CallbackSignatureError),
    ("not JSON", b"{not json", keep, CallbackBodyError),
    ("no data", b'{"code": 200}', keep, CallbackBodyError),
    ("no task", body_of({"resultUrls": []}), keep, CallbackBodyError),
    ("two ids", body_of({"taskId": "t1", "task_id": "t2"}), keep, CallbackTaskIdMismatchError),
    ("top id", TOP, keep, CallbackTaskIdMismatchError),
]


@pytest.mark.parametrize(
    ("body", "change", "error"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_each_refusal_has_its_own_type_and_never_shows_the_key(
    body: bytes, change: Any, error: type[CallbackVerificationError]
) -> None:
    """Each reason raises its own CallbackVerificationError subclass (a KieError and a
    ValueError) with the right HTTP status, and the key is in no message, repr, field or chain,
    even when the body quotes it."""
    headers = signed(body, task_id="t1")
    change(headers)
    with pytest.raises(error) as caught:
        verify_callback(body, headers, key=KEY, now=NOW)
    exc = caught.value
    assert isinstance(exc, CallbackVerificationError)
    assert isinstance(exc, KieError)
    assert isinstance(exc, ValueError)
    assert exc.status == (400 if error is CallbackBodyError else 401)
    assert KEY not in chain_text(exc)
    quoting = b'{"key": "' + KEY.encode() + b'", ' + body[1:]
    headers = signed(quoting, task_id="t1")
    change(headers)
    with pytest.raises(error) as again:
        verify_callback(quoting, headers, key=KEY, now=NOW)
    assert KEY not in chain_text(again.value)


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(0, True), (300, True), (-300, True), (301, False), (-301, False), (86400, False)],
)
def test_the_window_holds_in_both_directions(offset: int, accepted: bool) -> None:
    """A timestamp up to ``tolerance`` seconds old or ahead is accepted; one step beyond, in
    either direction, is a CallbackTimestampError saying which way."""
    if accepted:
        assert verify_callback(SUCCESS, signed(SUCCESS), key=KEY, now=NOW + offset).ok
        return
    with pytest.raises(CallbackTimestampError) as caught:
        verify_callback(SUCCESS, signed(SUCCESS), key=KEY, now=NOW + offset)
    assert caught.value.future is (offset < 0)
    assert ("in the future" if offset < 0 else "old") in str(caught.value)
    wide = verify_callback(SUCCESS, signed(SUCCESS), key=KEY, now=NOW + offset, tolerance=1e6)
    assert wide.signature_valid


def test_unsigned_callbacks_need_an_explicit_opt_in() -> None:
    """Without a key nothing is accepted unless allow_unsigned=True, and then the event says it
    is not authenticated; a key with allow_unsigned, or a bad tolerance, is a setup error."""
    with pytest.raises(ConfigurationError, match="allow_unsigned"):
        verify_callback(SUCCESS, {}, key=None)
    event = verify_callback(SUCCESS, {}, key=None, allow_unsigned=True)
    assert not event.signature_valid and event.timestamp is None
    with pytest.raises(ConfigurationError):
        verify_callback(SUCCESS, signed(SUCCESS), key=KEY, allow_unsigned=True)
    for tolerance in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ConfigurationError):
            verify_callback(SUCCESS, signed(SUCCESS), key=KEY, tolerance=tolerance)


def test_an_acknowledgment_is_not_terminal_and_never_ok() -> None:
    """A callback with only taskId and promptJson (C02), even with code 200, is not terminal
    and not ok; a successFlag of 0 neither."""
    for data in (
        {"taskId": "t1", "promptJson": "{}"},
        {"taskId": "t1", "promptJson": "{}", "resultUrls": []},
        {"taskId": "t1", "successFlag": 0, "resultInfoJson": {"resultUrls": []}},
    ):
        body = body_of(data)
        event = verify_callback(body, signed(body), key=KEY, now=NOW)
        assert not event.terminal
        assert not event.ok


def test_documented_and_record_shaped_callbacks_read_alike() -> None:
    """kie's documented success and failure (X01, X02) and the record-shaped ones (C01:
    resultInfoJson objects, successFlag, a string errorCode) give the same outcomes."""
    success_record = body_of(
        {
            "taskId": "t1",
            "taskType": "mj_video_extend_manual",
            "resultInfoJson": {"resultUrls": [{"resultUrl": "https://c.example/1.mp4"}]},
            "successFlag": 1,
        }
    )
    failure_record = body_of(
        {
            "taskId": "t1",
            "successFlag": 3,
            "errorCode": "VIDEO_EXTEND_FAILED",
            "errorMessage": "Failed to extend video due to processing error",
        },
        500,
        "Video extension failed",
    )
    failure_doc = body_of({"taskId": "t1", "promptJson": "{}", "resultUrls": []}, 500, "failed")
    ok = [verify_callback(b, signed(b), key=KEY, now=NOW) for b in (SUCCESS, success_record)]
    assert all(e.terminal and e.ok for e in ok)
    assert ok[0].result_urls == ok[1].result_urls
    bad = [verify_callback(b, signed(b), key=KEY, now=NOW) for b in (failure_doc, failure_record)]
    assert all(e.terminal and not e.ok for e in bad)
    assert bad[1].error_code == "VIDEO_EXTEND_FAILED" and bad[1].success_flag == 3
    for name in (
        "X01-DOC-EXAMPLE-mj-callback-success.json",
        "X02-DOC-EXAMPLE-mj-callback-failure.json",
    ):
        if not (SAMPLES / name).exists():
            continue  # the samples live outside the repository
        raw = (SAMPLES / name).read_bytes()
        event = verify_callback(raw, sign_callback(raw, KEY, timestamp=NOW), key=KEY, now=NOW)
        assert event.terminal and event.ok is name.startswith("X01")


def test_sign_callback_signs_the_body_task_or_another() -> None:
    """The test signer signs the body's data.taskId by default; signing another task id (as a
    forger would) is refused by verify_callback; a body without a task id needs task_id."""
    assert signed(SUCCESS)["X-Webhook-Timestamp"] == str(NOW)
    with pytest.raises(CallbackSignatureError):
        verify_callback(SUCCESS, signed(SUCCESS, task_id="t2"), key=KEY, now=NOW)
    with pytest.raises(ValueError, match="taskId"):
        sign_callback(b'{"data": {}}', KEY)
    assert "X-Webhook-Signature" in sign_callback({"data": {"taskId": "t3"}}, KEY)


async def test_the_command_line_sends_signed_callbacks_a_receiver_accepts() -> None:
    """``python -m kie_async.testing --send`` POSTs a signed success or failure callback that a
    receiver with the key accepts (exit 0), and one with another key refuses (exit 1)."""
    events: list[CallbackEvent] = []
    async with CallbackReceiver(key=KEY, on_event=events.append) as good:
        url = await good.start()
        async with CallbackReceiver(key="another-key") as bad:
            other = await bad.start()
            runs = [
                (url, ["--send", "t1"], 0),
                (url, ["--send", "t2", "--failed"], 0),
                (other, ["--send", "t3"], 1),
            ]
            for target, extra, status in runs:
                process = await _run_cli(["--callback-url", target, "--callback-key", KEY, *extra])
                assert process == status
    assert [(e.task_id, e.ok, e.signature_valid) for e in events] == [
        ("t1", True, True),
        ("t2", False, True),
    ]


async def _run_cli(args: list[str]) -> int:
    import asyncio

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kie_async.testing", *args, env=child_env(),
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return await asyncio.wait_for(process.wait(), 30)


async def test_confirm_lets_record_info_decide() -> None:
    """KieClient.confirm reads record-info for the event's task: a forged success claim for a
    failed task comes back as the failed record."""
    async with FakeKieServer() as server, fast_client(server) as kie:
        server.script_next(TaskScript(flag=3, error_message="boom"))
        handle = await kie.extend_video("src", prompt="go")
        with pytest.raises(TaskFailedError):
            await handle.wait(timeout=5)  # it ended, failed
        body = body_of({"taskId": handle.task_id, "resultUrls": ["https://evil.example/x.mp4"]})
        event = verify_callback(body, sign_callback(body, KEY), key=KEY)
        assert event.ok  # the body claims success
        record = await kie.confirm(event)
    assert record.task_id == handle.task_id
    assert record.status.is_terminal and not record.status.ok
    assert "https://evil.example/x.mp4" not in record.result_urls


async def test_an_acknowledgment_does_not_wake_a_waiting_client() -> None:
    """A signed acknowledgment arriving while a client waits on its task costs no record-info
    call and does not end the wait; the final callback does, confirmed by one call."""
    import aiohttp

    from kie_async import PollPolicy

    async with (
        FakeKieServer(callback_key=KEY) as server,
        CallbackReceiver(key=KEY) as receiver,
    ):
        url = await receiver.start()
        server.default_script = TaskScript(seconds=0.6)
        safety = PollPolicy(interval=30, factor=1, max_interval=30, jitter=0, timeout=10)
        async with fast_client(
            server, callbacks=receiver, callback_url=url, safety_poll=safety
        ) as kie:
            handle = await kie.extend_video("src", prompt="go")
            ack = body_of({"taskId": handle.task_id, "promptJson": "{}"})
            headers = sign_callback(ack, KEY)
            async with (
                aiohttp.ClientSession() as session,
                session.post(url, data=ack, headers=headers) as answer,
            ):
                assert answer.status == 200
            record = await handle.wait(timeout=5)
    assert record.status.ok
    assert server.polls_for(handle.task_id) == 1
    assert receiver.counts["accepted"] == 2


async def test_the_fake_server_delivers_to_its_own_callback_url() -> None:
    """FakeKieServer(callback_url=...) (``--callback-url``) reports tasks whose create names no
    callBackUrl there, signed with its callback_key."""
    events: list[CallbackEvent] = []
    async with CallbackReceiver(key=KEY, on_event=events.append) as receiver:
        url = await receiver.start()
        async with (
            FakeKieServer(callback_key=KEY, callback_url=url) as server,
            fast_client(server) as kie,
        ):
            handle = await kie.extend_video("src", prompt="go")
            for _ in range(200):
                if events:
                    break
                await asyncio.sleep(0.02)
    assert [(e.task_id, e.signature_valid, e.ok) for e in events] == [(handle.task_id, True, True)]
