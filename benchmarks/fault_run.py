"""The fault mix: a bulk run of extensions through a fake kie.ai that misbehaves on purpose.

Run from the repository root::

    python benchmarks/fault_run.py                     # 1,000 requests, seed 7
    python benchmarks/fault_run.py --requests 5000 --seed 3

The in-process :class:`~kie_async.testing.FakeKieServer` answers creates and polls with the
mix in :data:`MIX`: 429 bursts (with a ``Retry-After``), 455 maintenance, JSON 500s, HTML 502
pages, connections closed before and after a create is recorded, truncated JSON, answers slower
than the client's read timeout, and connections that are never answered. Tasks end in success,
in failure, or never (so some waits reach their deadline).

It prints: the requests, the faults injected by kind (the server's ``fault:*`` counts), the
retries (the client's DEBUG ``retrying`` log lines), the outcomes by kind, the duplicate creates
on the server (money paid twice; must be 0), the orphans (tasks created by a create whose reply
was lost; reported as uncertain), and the elapsed time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

from kie_async import ExtendRequest, OutcomeKind, PollPolicy, RetryPolicy
from kie_async.testing import FakeKieServer, Faults, TaskScript, fast_client

#: Probabilities of each fault per answer of the create and record-info endpoints.
MIX: dict[str, float] = {
    "rate_limited": 0.04,  # each one starts a burst of BURST refusals
    "maintenance": 0.02,
    "server_error": 0.01,
    "html_502": 0.01,
    "drop_before": 0.01,
    "drop_after": 0.01,
    "truncated": 0.01,
    "slow": 0.004,
    "hang": 0.002,
}
BURST = 3
RETRY_AFTER = 0.02  # seconds, on every 429
CLIENT_TIMEOUT = 0.5  # the client's read timeout
SLOW_SECONDS = 2.0  # how long a "slow" answer takes: longer than the read timeout
WAIT_DEADLINE = 2.0  # each wait's deadline
NEVER_ENDING = 0.01  # share of tasks that never finish
TASK_FAILURES = 0.04  # share of tasks that end in failure (flag 2 or 3)

#: The retry policy of the run: real backoff with jitter, in milliseconds.
RETRY = RetryPolicy(
    max_retries=6, initial_delay=0.005, factor=2, max_delay=0.05, jitter=0.25, max_retry_after=0.05
)
#: Zero-wait polling, with the run's deadline.
POLL = PollPolicy.zero_wait(timeout=WAIT_DEADLINE)

#: The fault kinds after which a create's reply is lost: the client cannot know what happened.
REPLY_LOST = frozenset({"html_502", "drop_before", "drop_after", "truncated", "slow", "hang"})


def make_faults(seed: int) -> Faults:
    """The fault mix, seeded."""
    return Faults(
        **MIX,
        burst=BURST,
        retry_after=RETRY_AFTER,
        slow_seconds=SLOW_SECONDS,
        endpoints=frozenset({"create", "record"}),
        seed=seed,
    )


def script_for(body: Mapping[str, Any]) -> TaskScript:
    """How the task created for ``body`` ends, decided by its prompt (so a run repeats)."""
    rng = random.Random(str(body.get("prompt")))
    roll = rng.random()
    if roll < NEVER_ENDING:
        return TaskScript(polls=10**9)
    if roll < NEVER_ENDING + TASK_FAILURES:
        return TaskScript.failed("content policy violation", flag=rng.choice((2, 3)))
    return TaskScript(polls=rng.randint(0, 3))


def make_requests(count: int) -> list[ExtendRequest]:
    """``count`` distinct requests (each prompt unique, so duplicates are visible)."""
    return [
        ExtendRequest(f"src-{i % 50}", index=i % 4, prompt=f"Clip {i}: the camera pulls back")
        for i in range(count)
    ]


class RetryCounter(logging.Handler):
    """Counts the client's DEBUG "retrying" log lines (one per retry, with its reason)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.creates = 0
        self.polls = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("retrying poll"):
            self.polls += 1
        elif message.startswith("retrying"):
            self.creates += 1


async def run(count: int = 1000, seed: int = 7) -> dict[str, Any]:
    """Run the mix once; return the figures."""
    logger = logging.getLogger("kie_async")
    counter = RetryCounter()
    level = logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    outcomes: collections.Counter[str] = collections.Counter()
    try:
        async with FakeKieServer(record_requests=False, seed=seed) as server:
            server.faults = make_faults(seed)
            server.script_for = script_for
            started = time.monotonic()
            async with fast_client(server, timeout=CLIENT_TIMEOUT, retry=RETRY, poll=POLL) as kie:
                async for outcome in kie.extend_many(make_requests(count), concurrency=50):
                    kind = outcome.kind.value
                    if outcome.kind is OutcomeKind.FAILED:
                        kind += f" ({type(outcome.error).__name__})"
                    outcomes[kind] += 1
            elapsed = time.monotonic() - started
            lost = [f for f in server.injected if f[0] == "create" and f[1] in REPLY_LOST]
            orphans = sum(1 for f in lost if f[1] in ("drop_after", "truncated", "slow"))
    finally:
        logger.removeHandler(counter)
        logger.setLevel(level)
    return {
        "requests": count,
        "faults": {k[6:]: v for k, v in sorted(server.counts.items()) if k.startswith("fault:")},
        "creates accepted": server.counts["create"],
        "polls answered": server.counts["poll"],
        "retries": {"create": counter.creates, "poll": counter.polls},
        "outcomes": dict(sorted(outcomes.items())),
        "duplicate creates": server.duplicate_creates(),
        "orphans (uncertain, created)": orphans,
        "elapsed s": round(elapsed, 2),
    }


def main() -> None:
    """Parse the arguments, run, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    figures = asyncio.run(run(args.requests, args.seed))
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
