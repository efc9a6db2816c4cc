"""One benchmark run in a process of its own: ``python benchmarks/_variants.py '<json>'``.

``bench_bulk.py`` starts this script once per variant and run, so that each variant's memory is
its own, and reads the one JSON line it prints. The four variants do the same work against the
same fake server: for each request, ``POST /api/v1/mj/generateVideoExtend``, then
``GET /api/v1/mj/record-info?taskId=...`` until ``successFlag`` is final, with the same pool of
connections and the same wait between polls.

* ``extend_many``: kie_async's bulk runner, ``concurrency`` requests in flight (with a
  journal in ``cfg["journal"]`` when given).
* ``sdk_gather``: the naive use of kie_async: ``asyncio.gather`` over every request of
  ``extend_video`` followed by ``handle.wait()``.
* ``aiohttp``: a bare aiohttp loop, ``concurrency`` workers pulling from one iterator.
* ``httpx``: the same loop on httpx, which most peer SDKs are built on.
* ``naive``: the bare loop kie's docs lead to: ``asyncio.gather`` over every request at once
  (in batches of the documented limit with a fixed sleep between them when there is a rate
  limit), sleeping a fixed time before each poll; the baseline of ``sdk_gather``.
* ``canned_*``: the same work with the network replaced by canned answers, to weigh
  kie_async's own code layer by layer (see :func:`with_canned`).

The bare loops have no client-side limiter: a 429 is retried after a fixed ``retry_sleep``.

Every bare loop decodes every answer with ``json.loads`` and reads ``code`` and
``data.successFlag``, as the SDK must; the SDK does more with it (it validates the envelope and
builds a :class:`TaskRecord`), which is the overhead being measured.

CPU: ``cpu`` is this process's user plus system time (``getrusage(RUSAGE_SELF)``) from just
before the work starts to its end: imports and start-up are not counted (``user`` and ``sys``
are its two parts, ``switches`` the context switches meanwhile). With ``profile`` set,
the work runs under cProfile and the stats are dumped to that path. ``gc`` is the number of
collections of each generation of the garbage collector during the work; with ``gc_off`` set,
the collector is off during the work (to weigh what it costs each variant).

Memory: ``rss_base`` is the resident set size (``VmRSS``) after imports and client creation,
``rss_hold`` the resident set size when every task of a ``hold`` run is in flight, and
``peak_rss`` the process's ``ru_maxrss`` (the most it ever held), all in KiB. With ``trace``,
tracemalloc runs from the baseline on and ``traced_hold`` is the bytes of live Python objects
at the hold (after a garbage collection), a figure free of allocator slack.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import json
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

API_KEY = "test-key"
USER_AGENT = "bench/1.0"
PROMPT = "The camera pulls back to reveal a city of glass at dusk"
CREATE_PATH = "/api/v1/mj/generateVideoExtend"
RECORD_PATH = "/api/v1/mj/record-info"
FINAL_FLAGS = frozenset({1, 2, 3})


def rss_kib() -> int:
    """The current resident set size, in KiB (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return peak_rss_kib()


def peak_rss_kib() -> int:
    """The most this process has ever held resident, in KiB (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def cpu_seconds() -> float:
    """User plus system CPU time this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Tally:
    """What one run saw from the client's side."""

    def __init__(self, tasks: int) -> None:
        self.tasks = tasks
        self.creates = 0
        self.polls = 0
        self.got_429 = 0
        self.done = 0
        self.submitted = 0
        self.create_times: list[float] = []
        self.all_in_flight = asyncio.Event()

    def accepted(self) -> None:
        self.submitted += 1
        self.create_times.append(time.monotonic())
        if self.submitted == self.tasks:
            self.all_in_flight.set()


def bodies(tasks: int) -> Iterator[dict[str, Any]]:
    """The create bodies, made lazily (every variant reads its input lazily, but naive)."""
    for i in range(tasks):
        yield {
            "taskId": f"src-{i:06d}",
            "index": 0,
            "prompt": PROMPT,
            "taskType": "mj_video_extend_manual",
        }


# -- the bare loops ----------------------------------------------------------------------------

Post = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Get = Callable[[str], Awaitable[dict[str, Any]]]


async def one_task(
    body: dict[str, Any],
    post: Post,
    get: Get,
    tally: Tally,
    cfg: dict[str, Any],
    *,
    sleep_first: bool,
) -> None:
    """Create one task (a 429 is retried after a fixed sleep), then poll it to the end."""
    while True:
        envelope = await post(body)
        tally.creates += 1
        if envelope["code"] == 200:
            break
        if envelope["code"] != 429:
            raise RuntimeError(f"create refused: {envelope}")
        tally.got_429 += 1
        await asyncio.sleep(cfg["retry_sleep"])
    task_id = envelope["data"]["taskId"]
    tally.accepted()
    while True:
        if sleep_first:
            await asyncio.sleep(cfg["poll_wait"])
        envelope = await get(task_id)
        tally.polls += 1
        if envelope["code"] == 200 and envelope["data"]["successFlag"] in FINAL_FLAGS:
            tally.done += 1
            return
        if not sleep_first:
            await asyncio.sleep(cfg["poll_wait"])


async def pooled(post: Post, get: Get, tally: Tally, cfg: dict[str, Any]) -> None:
    """``concurrency`` workers pulling requests from one lazy iterator."""
    source = bodies(cfg["tasks"])

    async def worker() -> None:
        for body in source:
            await one_task(body, post, get, tally, cfg, sleep_first=False)

    await asyncio.gather(*(worker() for _ in range(cfg["concurrency"])))


async def naive(post: Post, get: Get, tally: Tally, cfg: dict[str, Any]) -> None:
    """Every request gathered at once, or in batches of the documented limit with a fixed
    sleep between batches; a fixed sleep before each poll."""
    everything = list(bodies(cfg["tasks"]))
    batch = cfg["rate"][0] if cfg["rate"] else len(everything)
    pause = cfg["rate"][1] if cfg["rate"] else 0.0
    started: list[asyncio.Future[None]] = []
    for first in range(0, len(everything), batch):
        if first:
            await asyncio.sleep(pause)
        started += [
            asyncio.ensure_future(one_task(body, post, get, tally, cfg, sleep_first=True))
            for body in everything[first : first + batch]
        ]
    await asyncio.gather(*started)


async def with_aiohttp(cfg: dict[str, Any], tally: Tally, measure: Measure) -> None:
    import aiohttp

    url = cfg["url"]
    headers = {"User-Agent": USER_AGENT, "Authorization": f"Bearer {API_KEY}"}
    connector = aiohttp.TCPConnector(limit=cfg["pool"])
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def post(body: dict[str, Any]) -> dict[str, Any]:
            async with session.post(url + CREATE_PATH, json=body) as response:
                return json.loads(await response.read())  # type: ignore[no-any-return]

        async def get(task_id: str) -> dict[str, Any]:
            params = {"taskId": task_id}
            async with session.get(url + RECORD_PATH, params=params) as response:
                return json.loads(await response.read())  # type: ignore[no-any-return]

        loop = naive if cfg["variant"] == "naive" else pooled
        await measure(loop(post, get, tally, cfg))


async def with_httpx(cfg: dict[str, Any], tally: Tally, measure: Measure) -> None:
    import httpx

    headers = {"User-Agent": USER_AGENT, "Authorization": f"Bearer {API_KEY}"}
    # The same pool size as the others, and httpx's default of 20 idle connections kept: with
    # more kept, httpcore checks every idle connection for each request and gets slower still.
    limits = httpx.Limits(max_connections=cfg["pool"], max_keepalive_connections=20)
    timeout = httpx.Timeout(60.0, pool=None)
    # httpcore walks its whole queue of waiting requests each time a connection frees up, so
    # thousands of queued requests cost quadratic time: keep the queue outside it, in a
    # semaphore of the pool's size, as httpx users do (kie_async's client has one too).
    slots = asyncio.Semaphore(cfg["pool"])
    async with httpx.AsyncClient(
        base_url=cfg["url"], headers=headers, limits=limits, timeout=timeout
    ) as client:

        async def post(body: dict[str, Any]) -> dict[str, Any]:
            async with slots:
                response = await client.post(CREATE_PATH, json=body)
            return json.loads(response.content)  # type: ignore[no-any-return]

        async def get(task_id: str) -> dict[str, Any]:
            async with slots:
                response = await client.get(RECORD_PATH, params={"taskId": task_id})
            return json.loads(response.content)  # type: ignore[no-any-return]

        await measure(pooled(post, get, tally, cfg))


async def with_kie_async(cfg: dict[str, Any], tally: Tally, measure: Measure) -> None:
    from contextlib import aclosing

    from kie_async import ExtendRequest, KieClient, OutcomeKind, PollPolicy, Progress, RateLimit

    rate = RateLimit(cfg["rate"][0], per=cfg["rate"][1]) if cfg["rate"] else None
    if cfg["poll_wait"]:
        # The same fixed wait as the bare loops; the default deadline is kept.
        poll = PollPolicy(
            interval=cfg["poll_wait"],
            factor=1,
            max_interval=cfg["poll_wait"],
            jitter=0,
            first_delay=0,
        )
    else:
        # The default deadline, so that the deadline's code path is the one users run.
        poll = PollPolicy.zero_wait(timeout=PollPolicy().timeout)
    requests = (
        ExtendRequest(body["taskId"], body["index"], body["prompt"])
        for body in bodies(cfg["tasks"])
    )
    seen = 0

    def on_progress(progress: Progress) -> None:
        nonlocal seen
        while seen < progress.submitted:
            seen += 1
            tally.accepted()

    # Progress is only followed where a figure needs it (the bare loops count as they go).
    follow = on_progress if cfg["hold"] or cfg["rate"] else None
    gather = cfg["variant"] == "sdk_gather"
    async with KieClient(
        API_KEY,
        base_url=cfg["url"],
        user_agent=USER_AGENT,
        rate_limit=rate,
        max_connections=cfg["pool"],
    ) as kie:

        async def one(request: ExtendRequest) -> None:
            handle = await kie.extend_video(request.task_id, request.index, request.prompt)
            tally.accepted()
            await handle.wait(poll=poll)
            tally.done += 1

        async def run() -> None:
            if gather:
                await asyncio.gather(*(one(request) for request in requests))
                return
            outcomes = kie.extend_many(
                requests,
                concurrency=cfg["concurrency"],
                poll=poll,
                on_progress=follow,
                journal=cfg.get("journal"),
            )
            async with aclosing(outcomes) as stream:
                async for outcome in stream:
                    if outcome.kind is not OutcomeKind.SUCCEEDED:
                        raise RuntimeError(f"task did not succeed: {outcome}")
                    tally.done += 1

        await measure(run())


async def with_canned(cfg: dict[str, Any], tally: Tally, measure: Measure) -> None:
    """The speed workload with the network replaced by canned answers, to weigh kie_async's
    own code: the client's one HTTP exchange (``KieClient._exchange``) answers at once from
    bytes built like the fake server's, and everything above it runs as usual.

    ``canned_bare`` is the bare loop over the same answers; ``canned_call`` adds reading the
    envelope and parsing the record; ``canned_submit_wait`` the public ``submit()`` and
    ``TaskHandle.wait()`` (retries, limiter, deadline); ``canned_extend_many`` the bulk runner.
    """
    from kie_async import ExtendRequest, KieClient, OutcomeKind, PollPolicy

    try:
        from kie_async._protocol import envelope as proto
    except ImportError:  # a commit from before the folders (paired_code.py runs old ones)
        from kie_async import _protocol as proto

    counter = iter(range(1 << 62))
    record_head = json.dumps(
        {
            "code": 200,
            "msg": "success",
            "data": {
                "taskType": "mj_video_extend_manual",
                "paramJson": json.dumps(next(bodies(1))),
                "completeTime": "2026-01-06 08:17:04",
                "resultInfoJson": {"resultUrls": [{"resultUrl": "https://example.com/0.mp4"}]},
                "successFlag": 1,
                "createTime": "2026-01-06T08:17:04Z",
                "errorCode": None,
                "errorMessage": "null",
                "taskId": "",
            },
        }
    ).encode()[: -len(b'""}}')]

    async def canned(
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        before_send: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        if before_send is not None:
            await before_send()
        await asyncio.sleep(0)  # yield to the loop, as an answer from a socket would
        if method == "POST":
            task_id = b"%032x" % next(counter)
            return 200, {}, b'{"code": 200, "msg": "success", "data": {"taskId": "%s"}}' % task_id
        return 200, {}, record_head + b'"' + params["taskId"].encode() + b'"}}'

    variant = cfg["variant"]
    # The default deadline, as in with_kie_async: a short one would arm a timer per poll.
    poll = PollPolicy.zero_wait(timeout=PollPolicy().timeout)
    source = bodies(cfg["tasks"])
    async with KieClient(API_KEY, base_url=cfg["url"], rate_limit=None) as kie:
        kie._transport._exchange = canned  # type: ignore[method-assign]

        async def one(body: dict[str, Any]) -> None:
            if variant == "canned_bare":
                envelope = json.loads((await canned("POST", CREATE_PATH, json=body))[2])
                task_id = envelope["data"]["taskId"]
                while True:
                    raw = (await canned("GET", RECORD_PATH, params={"taskId": task_id}))[2]
                    if json.loads(raw)["data"]["successFlag"] in FINAL_FLAGS:
                        break
                return
            request = ExtendRequest(body["taskId"], body["index"], body["prompt"])
            if variant == "canned_call":
                wire = request.body()
                data = await kie._transport.call("POST", proto.EXTEND_PATH, json=wire)
                await kie.fetch_record(proto.created_task_id(data))
            else:
                handle = await kie.submit(request)
                await handle.wait(poll=poll)

        async def worker() -> None:
            for body in source:
                await one(body)
                tally.done += 1

        async def run() -> None:
            if variant == "canned_extend_many":
                requests = (
                    ExtendRequest(body["taskId"], body["index"], body["prompt"]) for body in source
                )
                async for outcome in kie.extend_many(
                    requests, concurrency=cfg["concurrency"], poll=poll
                ):
                    if outcome.kind is not OutcomeKind.SUCCEEDED:
                        raise RuntimeError(f"task did not succeed: {outcome}")
                    tally.done += 1
                return
            await asyncio.gather(*(worker() for _ in range(cfg["concurrency"])))

        await measure(run())


Measure = Callable[[Awaitable[None]], Awaitable[None]]


async def main(cfg: dict[str, Any]) -> dict[str, Any]:
    tally = Tally(cfg["tasks"])
    result: dict[str, Any] = {"variant": cfg["variant"]}

    async def measure(work: Awaitable[None]) -> None:
        """Time ``work``; for a ``hold`` run, stop it once every task is in flight."""
        result["rss_base"] = rss_kib()
        if cfg.get("trace"):
            tracemalloc.start()  # after the baseline: only what the run allocates is traced
        profiler = cProfile.Profile() if cfg.get("profile") else None
        if profiler is not None:
            profiler.enable()
        gc_before = [generation["collections"] for generation in gc.get_stats()]
        if cfg.get("gc_off"):
            gc.disable()
        usage_before = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before = cpu_seconds()
        started = time.monotonic()
        job = asyncio.ensure_future(work)
        if cfg["hold"]:
            waiting = asyncio.ensure_future(tally.all_in_flight.wait())
            await asyncio.wait({job, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if job.done():
                waiting.cancel()
                job.result()
                raise RuntimeError("the tasks ended before all of them were in flight")
            result["to_hold"] = time.monotonic() - started
            await asyncio.sleep(cfg["settle"])  # let the first polls of the last tasks land
            result["rss_hold"] = rss_kib()
            result["in_flight"] = tally.submitted - tally.done
            if tracemalloc.is_tracing():
                gc.collect()
                result["traced_hold"] = tracemalloc.get_traced_memory()[0]
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
        else:
            await job
        result["wall"] = time.monotonic() - started
        result["cpu"] = cpu_seconds() - cpu_before
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result["user"] = usage.ru_utime - usage_before.ru_utime
        result["sys"] = usage.ru_stime - usage_before.ru_stime
        result["switches"] = (usage.ru_nvcsw - usage_before.ru_nvcsw) + (
            usage.ru_nivcsw - usage_before.ru_nivcsw
        )
        if cfg.get("gc_off"):
            gc.enable()
        gc_after = [generation["collections"] for generation in gc.get_stats()]
        result["gc"] = [after - before for before, after in zip(gc_before, gc_after, strict=True)]
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(cfg["profile"])

    runners = {
        "extend_many": with_kie_async,
        "sdk_gather": with_kie_async,
        "aiohttp": with_aiohttp,
        "naive": with_aiohttp,
        "httpx": with_httpx,
        "canned_bare": with_canned,
        "canned_call": with_canned,
        "canned_submit_wait": with_canned,
        "canned_extend_many": with_canned,
    }
    await runners[cfg["variant"]](cfg, tally, measure)
    result.update(
        peak_rss=peak_rss_kib(),
        done=tally.done,
        submitted=tally.submitted,
        client_creates=tally.creates,
        client_polls=tally.polls,
        client_429=tally.got_429,
        create_times=[t - tally.create_times[0] for t in tally.create_times],
    )
    return result


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    if config.get("cpu") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {config["cpu"]})
    print(json.dumps(asyncio.run(main(config))), flush=True)
