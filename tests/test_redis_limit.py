"""The rate limit shared through Redis: one window for every process of an account."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import StopBeforeSending, Stopped, child_env
from redisserver import Mode, RedisProxy, free_port, nonsense_server, redis_server

from kie_async import (
    ConfigurationError,
    ExtendOutcome,
    ExtendRequest,
    KieClient,
    OutcomeKind,
    RedisRateLimit,
    TransportError,
)
from kie_async._cli import run
from kie_async._protocol.envelope import EXTEND_PATH
from kie_async._transport.redis_limiter import redis_limiter
from kie_async.testing import FakeKieServer, fast_client


@pytest.fixture(name="redis_url", scope="module")
def _redis_url() -> Iterator[str]:
    """A real redis-server of our own on a free loopback port (skipped without the binary,
    except under CI, where a missing redis-server fails the run)."""
    with redis_server() as url:
        yield url


_TAKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from kie_async import RedisRateLimit
    from kie_async._transport.redis_limiter import redis_limiter

    async def main(url, name, count, hold, start):
        limiter = redis_limiter(RedisRateLimit(url, 5, per=1.0, name=name, lease=1.0), "unused")
        stamps = []
        await limiter.start()
        await asyncio.sleep(max(0.0, start - time.time()))  # every taker starts together
        try:
            for _ in range(count):
                async with limiter.slot():
                    stamps.append(time.time())
                    print("held", flush=True)
                    await asyncio.sleep(hold)
        finally:
            await limiter.aclose()
        print(json.dumps(stamps), flush=True)

    asyncio.run(main(*sys.argv[1:3], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])))
    """
)


async def start_taker(
    url: str, name: str, count: int, hold: float, start: float
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _TAKER,
        url,
        name,
        str(count),
        str(hold),
        str(start),
        stdout=subprocess.PIPE,
        env=child_env(),
    )


@pytest.mark.slow
async def test_three_processes_share_one_window(redis_url: str) -> None:
    """Three processes taking slots at once never hold more than the limit in any window, and
    keep close to it."""
    name = uuid.uuid4().hex
    start = time.time() + 3.0  # time for each to import and connect
    takers = [await start_taker(redis_url, name, 6, 0.0, start) for _ in range(3)]
    outputs = [await asyncio.wait_for(t.communicate(), 30) for t in takers]
    assert all(t.returncode == 0 for t in takers)
    stamps = sorted(s for out, _ in outputs for s in json.loads(out.decode().splitlines()[-1]))
    assert len(stamps) == 18
    for i in range(len(stamps) - 5):
        assert stamps[i + 5] - stamps[i] >= 1.0 - 0.01, f"6 slots within 1 s at {i}"
    # 18 slots at 5 per second: the last can start after 3 s, and not much later.
    assert stamps[-1] - stamps[0] < 3.0 + 1.0


@pytest.mark.slow
async def test_a_process_killed_holding_a_slot_frees_it_with_its_lease(redis_url: str) -> None:
    """A process SIGKILLed while holding the only slot blocks the others for its lease plus the
    window, then no longer."""
    name = uuid.uuid4().hex
    limit = RedisRateLimit(redis_url, 1, per=0.5, name=name, lease=1.0)
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _TAKER.replace("RedisRateLimit(url, 5, per=1.0,", "RedisRateLimit(url, 1, per=0.5,"),
        redis_url,
        name,
        "1",
        "60",
        "0",
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    assert holder.stdout is not None
    assert (await asyncio.wait_for(holder.stdout.readline(), 30)).strip() == b"held"
    taken_at = time.monotonic()
    os.kill(holder.pid, signal.SIGKILL)
    await holder.wait()
    limiter = redis_limiter(limit, "unused")
    try:
        async with limiter.slot():
            waited = time.monotonic() - taken_at
    finally:
        await limiter.aclose()
    assert 1.5 - 0.2 <= waited < 1.5 + 1.0


async def test_a_429_pause_holds_back_every_process(redis_url: str) -> None:
    """A pause after a 429 in one client holds back the creates of another on the account."""
    limit = RedisRateLimit(redis_url, 100, per=1.0, name=uuid.uuid4().hex)
    first, second = redis_limiter(limit, "k"), redis_limiter(limit, "k")
    try:
        await first.start()
        await second.start()
        first.pause(0.5)
        await asyncio.gather(*first._pauses)
        started = time.monotonic()
        async with second.slot():
            waited = time.monotonic() - started
    finally:
        await first.aclose()
        await second.aclose()
    assert waited >= 0.4


async def test_a_create_stopped_before_sending_leaves_the_shared_window(
    redis_url: str, server: FakeKieServer
) -> None:
    """A create stopped before it went out (a bulk run's stop) takes no share of the shared
    window: with one create a minute, a real create from another client still goes at once."""
    limit = RedisRateLimit(redis_url, 1, per=60, name=uuid.uuid4().hex)
    async with (
        fast_client(server, rate_limit=limit) as stopped,
        fast_client(server, rate_limit=limit) as other,
    ):
        with pytest.raises(Stopped):
            await stopped._transport.create(
                EXTEND_PATH, {"taskId": "src", "index": 0}, StopBeforeSending(), "a create"
            )
        handle = await asyncio.wait_for(other.extend_video("src", prompt="go"), 5)
    assert handle.task_id and server.counts["request:create"] == 1


@pytest.mark.slow
async def test_processes_sharing_the_limit_get_no_429(redis_url: str, tmp_path: Path) -> None:
    """Three bulk processes on one account, against a server enforcing the limit per account,
    with the limit in Redis: not one create is refused with 429."""
    async with FakeKieServer(rate_limit=(5, 1.0)) as server:
        jobs = []
        for n in range(3):
            lines = [
                json.dumps({"task_id": f"src{n}-{i}", "index": 0, "prompt": f"scene {i}"})
                for i in range(5)
            ]
            path = tmp_path / f"jobs{n}.jsonl"
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            jobs.append(path)
        env = child_env(
            KIE_API_KEY=server.api_key, KIE_RATE_LIMIT_REDIS=redis_url, KIE_POLL_ZERO_WAIT="1"
        )
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "kie_async",
                "--base-url",
                server.url,
                "bulk",
                str(path),
                "--rate-limit",
                "5/1",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
            )
            for path in jobs
        ]
        errors = [(await asyncio.wait_for(p.communicate(), 60))[1] for p in processes]
        assert [p.returncode for p in processes] == [0, 0, 0], [e.decode() for e in errors]
        assert server.counts["create"] == 15
        assert server.counts["rejected:429"] == 0


async def test_the_api_key_never_reaches_redis(redis_url: str) -> None:
    """Redis keys name the account by a digest of the API key, never the key itself."""
    key = "kie-sk-DISTINCTIVE-" + uuid.uuid4().hex
    async with FakeKieServer(api_key=key) as server:
        limit = RedisRateLimit(redis_url, 5, per=1.0)
        async with fast_client(server, rate_limit=limit) as kie:
            await kie.extend_video("src", 0, "go")
            assert kie.rate_limit is limit
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        names = [name.decode() for name in await client.keys("*")]
        values = [repr(await client.zrange(n, 0, -1)) for n in names if "window" in n]
    finally:
        await client.aclose()
    assert names and not any(key in name or key in value for name in names for value in values)


# -- configuration and errors (no Redis needed) ---------------------------------------------------


async def test_unreachable_redis_is_a_clear_error_before_anything_is_sent(
    server: FakeKieServer,
) -> None:
    """A Redis nobody answers on fails the client's start with an error naming it (password
    hidden), and no create is sent: never a silent fallback."""
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    with pytest.raises(
        ConfigurationError, match="cannot use the shared rate limit's Redis"
    ) as info:
        async with fast_client(server, rate_limit=RedisRateLimit(url)):
            pass
    assert "hunter2" not in str(info.value) and "***" in str(info.value)
    assert "hunter2" not in repr(RedisRateLimit(url))
    kie = fast_client(server, rate_limit=RedisRateLimit(url))
    try:
        with pytest.raises(ConfigurationError, match="does not fall back"):
            await kie.extend_video("src", 0, "go")
    finally:
        await kie.aclose()
    assert server.counts["request:create"] == 0


async def test_the_environment_variable_and_the_cli_option_choose_redis(
    server: FakeKieServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """KIE_RATE_LIMIT_REDIS gives KieClient() the shared limit; --rate-limit-redis and the
    variable make `bulk` use it (and stop with exit 2 when Redis cannot be reached)."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("KIE_RATE_LIMIT_REDIS", url)
    limit = KieClient("k").rate_limit
    assert isinstance(limit, RedisRateLimit) and limit.url == url
    assert (limit.requests, limit.per) == (20, 10.0)
    assert isinstance(KieClient("k", rate_limit=None).rate_limit, type(None))

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"task_id": "src", "index": 0, "prompt": "go"}\n', encoding="utf-8")
    monkeypatch.setenv("KIE_API_KEY", server.api_key)
    base = ["--base-url", server.url, "bulk", str(jobs)]
    assert await run([*base, "--rate-limit", "7/3"]) == 2
    assert f"Redis at {url}" in capsys.readouterr().err
    monkeypatch.delenv("KIE_RATE_LIMIT_REDIS")
    other = f"redis://127.0.0.1:{free_port()}/1"
    assert await run([*base, "--rate-limit-redis", other]) == 2
    assert f"Redis at {other}" in capsys.readouterr().err
    assert server.counts["request:create"] == 0


async def test_cli_redis_errors_name_where_the_url_came_from(
    server: FakeKieServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unreachable shared Redis is reported under KIE_RATE_LIMIT_REDIS or --rate-limit-redis,
    whichever gave its URL (never --rate-limit), with exit 2 and no create sent."""
    monkeypatch.setenv("KIE_API_KEY", server.api_key)
    monkeypatch.setenv("KIE_RATE_LIMIT_REDIS", f"redis://127.0.0.1:{free_port()}/0")
    base = ["--base-url", server.url]
    assert await run([*base, "extend", "src", "--prompt", "go"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: KIE_RATE_LIMIT_REDIS: cannot use the shared rate limit's Redis")
    monkeypatch.delenv("KIE_RATE_LIMIT_REDIS")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"task_id": "src", "index": 0, "prompt": "go"}\n', encoding="utf-8")
    other = f"redis://127.0.0.1:{free_port()}/1"
    assert await run([*base, "bulk", str(jobs), "--rate-limit-redis", other]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --rate-limit-redis: cannot use the shared rate limit's Redis")
    assert server.counts["request:create"] == 0


async def test_cli_commands_that_create_nothing_do_not_need_the_shared_redis(
    server: FakeKieServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """credits, status and wait work with KIE_RATE_LIMIT_REDIS pointing at an unreachable Redis:
    only creates need the shared limit."""
    async with fast_client(server) as kie:
        handle = await kie.extend_video("src", 0, "go")
        await handle.wait()
    monkeypatch.setenv("KIE_API_KEY", server.api_key)
    monkeypatch.setenv("KIE_RATE_LIMIT_REDIS", f"redis://127.0.0.1:{free_port()}/0")
    base = ["--base-url", server.url]
    assert await run([*base, "credits"]) == 0
    assert await run([*base, "status", handle.task_id]) == 0
    assert await run([*base, "wait", handle.task_id]) == 0
    assert "Redis" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "settings",
    [
        {"url": "http://cache:6379"},
        {"url": "redis://cache", "requests": 0},
        {"url": "redis://cache", "per": 0},
        {"url": "redis://cache", "lease": -1},
        {"url": "redis://cache", "name": " "},
        {"url": "redis://cache", "timeout": 0},
    ],
)
def test_invalid_shared_limits_are_refused(settings: dict[str, object]) -> None:
    """A shared limit that cannot work is a ConfigurationError naming rate_limit."""
    with pytest.raises(ConfigurationError, match="rate_limit"):
        RedisRateLimit(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["stall", "trickle", "nonsense"])
async def test_a_redis_that_stops_answering_fails_the_create_unsent(
    redis_url: str, server: FakeKieServer, mode: Mode
) -> None:
    """A real Redis behind a proxy that, after the client's start, stalls, trickles its answers
    a byte at a time, or answers nonsense (``+OK`` to a script, and to redis-py 8's ``HELLO``
    on a new connection): the create fails within the limit's timeout as not sent, with a
    kie_async error (nothing reaches kie.ai), and the run goes on."""
    async with RedisProxy(redis_url) as proxy:
        limit = RedisRateLimit(proxy.url, name=uuid.uuid4().hex, timeout=0.3)
        started = time.monotonic()
        async with fast_client(server, rate_limit=limit) as kie:
            proxy.mode = mode

            async def run_one() -> list[ExtendOutcome]:
                return [o async for o in kie.extend_many([ExtendRequest("src", 0, "go")])]

            outcomes = await asyncio.wait_for(run_one(), 10)  # a hang fails here
        assert time.monotonic() - started < 5
    assert [o.kind for o in outcomes] == [OutcomeKind.FAILED]
    assert isinstance(outcomes[0].error, TransportError)
    assert not outcomes[0].error.sent
    assert "rate limit's Redis" in str(outcomes[0].error)
    assert server.counts["request:create"] == 0


async def test_the_proxy_passes_a_working_redis_through(
    redis_url: str, server: FakeKieServer
) -> None:
    """The proxy of the test above, left passing, changes nothing: creates go out under the
    shared limit (so what fails there is the misbehaviour, not the proxy)."""
    async with RedisProxy(redis_url) as proxy:
        limit = RedisRateLimit(proxy.url, name=uuid.uuid4().hex, timeout=2)
        async with fast_client(server, rate_limit=limit) as kie:
            outcomes = [o async for o in kie.extend_many([ExtendRequest("src", 0, "go")])]
        assert proxy.connections >= 1
    assert [o.kind for o in outcomes] == [OutcomeKind.SUCCEEDED]
    assert server.counts["request:create"] == 1


#: Answers no Redis gives to HELLO (redis-py 8 sends it first) or to PING (redis-py 5-7):
#: redis-py raises AttributeError on the first two, and its own errors on the rest.
NONSENSE = [
    b"+OK\r\n",
    b":1\r\n",
    b"%1\r\n+proto\r\n:9\r\n",
    b"$5\r\nhello\r\n",
    b"-ERR no such thing\r\n",
    b"\x00\xff\x1b[31mnot redis\r\n",
]


@pytest.mark.parametrize("nonsense", NONSENSE, ids=repr)
async def test_a_server_answering_nonsense_fails_the_start_clearly(
    server: FakeKieServer, nonsense: bytes
) -> None:
    """A server on the Redis URL that answers every command with nonsense fails the client's
    start with the limit's ConfigurationError, never an exception of redis-py's own code (such
    as redis-py 8's AttributeError on a ``+OK`` answer to ``HELLO``), and no create is sent."""

    async with nonsense_server(nonsense) as url:
        limit = RedisRateLimit(url, timeout=0.5)
        with pytest.raises(ConfigurationError) as info:
            async with fast_client(server, rate_limit=limit) as kie:
                await kie.extend_video("src", 0, "go")
    message = str(info.value)
    assert message.startswith("rate_limit: cannot use the shared rate limit's Redis at ")
    assert "\x1b" not in message
    assert server.counts["request:create"] == 0


async def test_creates_that_never_connected_take_no_share_of_the_shared_window(
    redis_url: str,
) -> None:
    """As with the in-process limit, creates against a dead API use no share of the Redis
    window: four creates under a limit of 2 per minute all fail fast instead of queueing."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    limit = RedisRateLimit(redis_url, requests=2, per=60, name=f"dead-{uuid.uuid4().hex}")
    async with KieClient(api_key="k", base_url=dead, rate_limit=limit, max_retries=0) as kie:

        async def run_all() -> list[ExtendOutcome]:
            requests = [ExtendRequest("src", i, "go") for i in range(4)]
            # The creates are under test, not the account check before them.
            run = kie.extend_many(requests, concurrency=4, preflight=False)
            return [o async for o in run]

        outcomes = await asyncio.wait_for(run_all(), 10)
    assert all(isinstance(o.error, TransportError) for o in outcomes)
