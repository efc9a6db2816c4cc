"""A burst of callback deliveries: how many of N POSTs opened at once a CallbackReceiver answers.

Run from the repository root::

    python benchmarks/callback_burst.py                  # 10,000 at once, 5 rounds
    python benchmarks/callback_burst.py --count 2000 --rounds 3

Each round starts a fresh receiver in a process of its own (its backlog: aiohttp's old default
of 128, then kie-async's default), opens ``--count`` loopback connections at once, each sending
one signed delivery, and counts how each ended: ``200``, or the error that ended it (refused,
reset, timed out). Needs ``ulimit -n`` above the count.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from burst import burst, start_receiver, stop_receiver  # noqa: E402


async def one_round(backlog: int, count: int) -> tuple[dict[str, int], float, int]:
    process, url = await start_receiver(backlog)
    try:
        outcomes, seconds = await burst(url, count, timeout=120.0)
    finally:
        counts = await stop_receiver(process)
    return outcomes, seconds, counts.get("accepted", 0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for label, backlog in (("backlog 128 (aiohttp's default)", 128), ("default backlog", 0)):
        answered, times = [], []
        for _ in range(args.rounds):
            outcomes, seconds, accepted = await one_round(backlog, args.count)
            answered.append(outcomes.get("200", 0))
            times.append(seconds)
            others = {k: v for k, v in outcomes.items() if k != "200"}
            print(f"  {label}: {outcomes.get('200', 0)} answered 200, {accepted} accepted, "
                  f"others {others or 'none'}, {seconds:.1f}s", flush=True)  # fmt: skip
        print(
            f"{label}: answered 200 min {min(answered)} / median {statistics.median(answered):g}"
            f" / max {max(answered)} of {args.count}; wall time min {min(times):.1f}s / median "
            f"{statistics.median(times):.1f}s / max {max(times):.1f}s",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
