"""Replays of a delivery are dropped: in one process (MemoryReplayStore, the receivers) and
across processes sharing a real redis-server (RedisReplayStore)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from helpers import child_env
from redisserver import free_port, nonsense_server, redis_server

from kie_async import ConfigurationError, TransportError
from kie_async.callbacks import (
    CallbackVerifier,
    MemoryReplayStore,
    RedisReplayStore,
    ReplayStore,
)
from kie_async.testing import sign_callback

KEY = "whsec-replays"


@pytest.fixture(name="redis_url", scope="module")
def _redis_url() -> Iterator[str]:
    """A real redis-server of our own on a free loopback port (skipped without the binary,
    except under CI, where a missing redis-server fails the run)."""
    with redis_server() as url:
        yield url


def delivery(task_id: str, stamp: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {"code": 200, "msg": "success", "data": {"taskId": task_id, "resultUrls": []}}
    ).encode()
    return body, sign_callback(body, KEY, timestamp=stamp)


async def test_memory_store_drops_a_replay_until_its_window_ends() -> None:
    """The same task id and timestamp is new once; another timestamp is new; a key past its
    time is new again; the store stays within max_keys."""
    store = MemoryReplayStore(max_keys=3)
    assert isinstance(store, ReplayStore)
    verifier = CallbackVerifier(KEY, replays=store)
    stamp = int(time.time())
    first = await verifier.check(*delivery("t1", stamp))
    again = await verifier.check(*delivery("t1", stamp))
    later = await verifier.check(*delivery("t1", stamp + 1))
    assert (first.status, first.new) == (200, True)
    assert (again.status, again.new) == (200, False)
    assert later.new
    assert await store.first_seen("short", 0.01)
    await asyncio.sleep(0.02)
    assert await store.first_seen("short", 0.01)
    for i in range(10):
        await store.first_seen(f"k{i}", 60)
    assert len(store) <= 3
    assert verifier.counts == {"accepted": 2, "replayed": 1}
    with pytest.raises(ConfigurationError):
        MemoryReplayStore(max_keys=0)


async def test_redis_store_is_atomic_and_expires(redis_url: str) -> None:
    """Two concurrent first_seen calls for one key: one True; the key ends after its ttl;
    forget drops it; the repr hides a password; a dead Redis is a clear error."""
    store = RedisReplayStore(redis_url, prefix="t-atomic")
    try:
        answers = await asyncio.gather(*(store.first_seen("k", 0.3) for _ in range(20)))
        assert sorted(answers) == [False] * 19 + [True]
        await store.forget("k")
        assert await store.first_seen("k", 0.2)
        await asyncio.sleep(0.4)
        assert await store.first_seen("k", 5)
    finally:
        await store.aclose()
    assert "s3cret" not in repr(RedisReplayStore("redis://u:s3cret@localhost:1/0"))
    dead = RedisReplayStore(f"redis://127.0.0.1:{free_port()}/0", timeout=1)
    with pytest.raises(ConfigurationError, match="cannot use the replay store"):
        await dead.first_seen("k", 1)
    with pytest.raises(ConfigurationError):
        RedisReplayStore("http://localhost")
    assert issubclass(TransportError, Exception)


_CHECKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from kie_async.callbacks import CallbackVerifier, RedisReplayStore
    from kie_async.testing import sign_callback

    async def main(url, stamp, count, start):
        store = RedisReplayStore(url, prefix="two-processes")
        verifier = CallbackVerifier("whsec-replays", replays=store)
        deliveries = []
        for i in range(count):
            body = json.dumps({"code": 200, "msg": "success",
                               "data": {"taskId": f"t{i}", "resultUrls": []}}).encode()
            deliveries.append((body, sign_callback(body, "whsec-replays", timestamp=stamp)))
        await store.first_seen("warm-up", 1)
        await asyncio.sleep(max(0.0, start - time.time()))  # both start together
        answers = await asyncio.gather(*(verifier.check(b, h) for b, h in deliveries))
        await store.aclose()
        print(json.dumps([a.event.task_id for a in answers if a.status == 200 and a.new]))

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
    """
)


async def test_two_processes_share_replays_through_redis(redis_url: str) -> None:
    """Two processes given the same 200 signed deliveries at once accept each exactly once
    between them, and a third one later accepts none (all are replays)."""
    count, stamp = 200, int(time.time())

    async def run(start: float) -> list[str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHECKER, redis_url, str(stamp), str(count), str(start),
            stdout=subprocess.PIPE, env=child_env(),
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0
        accepted: list[str] = json.loads(out.decode().strip().splitlines()[-1])
        return accepted

    start = time.time() + 2.0
    first, second = await asyncio.gather(run(start), run(start))
    assert sorted(first + second) == sorted(f"t{i}" for i in range(count))
    assert not set(first) & set(second)
    assert await run(0) == []


async def test_an_acknowledgment_and_the_result_in_the_same_second_both_get_through() -> None:
    """The replay key holds the claimed outcome: an acknowledgment and the final callback signed
    with the same timestamp are both new; a second success body under that signature is not."""
    verifier = CallbackVerifier(KEY)
    stamp = int(time.time())

    def signed(data: dict[str, object]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"code": 200, "msg": "success", "data": data}).encode()
        return body, sign_callback(body, KEY, timestamp=stamp)

    ack = await verifier.check(*signed({"taskId": "t1", "promptJson": "{}"}))
    done = await verifier.check(*signed({"taskId": "t1", "resultUrls": ["https://c.example/a"]}))
    forged = await verifier.check(
        *signed({"taskId": "t1", "resultUrls": ["https://evil.example/b"]})
    )
    assert ack.new and done.new
    assert not forged.new


@pytest.mark.parametrize(
    "nonsense",
    [b"+OK\r\n", b":1\r\n", b"%1\r\n+proto\r\n:9\r\n", b"\x00\xff\x1b[31mnot redis\r\n"],
    ids=repr,
)
async def test_a_server_answering_nonsense_is_a_clear_error(nonsense: bytes) -> None:
    """A server on the store's URL that answers every command with nonsense is the store's
    ConfigurationError (escaped), never an exception of redis-py's own code such as redis-py
    8's AttributeError on a ``+OK`` answer to ``HELLO``."""

    async with nonsense_server(nonsense) as url:
        store = RedisReplayStore(url, timeout=0.5)
        try:
            with pytest.raises(ConfigurationError) as info:
                await store.first_seen("t1.1", 60)
        finally:
            await store.aclose()
    assert str(info.value).startswith("replays: cannot use the replay store's Redis at ")
    assert "\x1b" not in str(info.value)
