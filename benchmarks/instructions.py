"""Instructions per task of a benchmark variant against a real fake kie.ai, counted by callgrind.

Run ``python benchmarks/instructions.py extend_many aiohttp --polls 1`` (needs ``valgrind``;
about a minute per variant). Each variant runs twice in ``_variants.py`` under
``valgrind --tool=callgrind``, with ``--big`` and with ``--small`` tasks, each against a fresh
``python -m kie_async.testing``; the difference of the two instruction counts divided by the
difference of the tasks is the cost of one task, with start-up and imports cancelled out.

Unlike CPU time on a shared machine, the count hardly moves from run to run (callgrind counts
the instructions the client process executes; the server runs outside it at full speed), so it
tells apart changes of a few per cent that the CPU-time rounds of ``bench_bulk.py`` cannot. It
is not the target's measure: time per instruction differs between the SDK's Python code and
aiohttp's system calls, so the ratio of counts is not the ratio of CPU times.

With ``--gc-off`` the garbage collector is off while the tasks run: the difference from a run
with it on is what the collector costs the variant.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_bulk import VARIANTS_SCRIPT, client_config, cpus_for_pinning, fake_server


def callgrind_count(command: list[str]) -> int:
    """The instructions callgrind counts in one run of ``command`` (a Python command line)."""
    with tempfile.TemporaryDirectory(prefix="callgrind-") as folder:
        out = f"--callgrind-out-file={os.path.join(folder, 'out')}"
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", out, *command],
            capture_output=True,
            text=True,
            check=False,
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        tail = " / ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"the run failed: {tail}")
    return int(found.group(1))


def instructions(
    variant: str, tasks: int, polls: int, concurrency: int, gc_off: bool = False
) -> int:
    """The instructions callgrind counts in one run of ``variant`` over ``tasks`` tasks."""
    server_cpu, client_cpu = cpus_for_pinning()
    with fake_server(polls=polls - 1, seconds=0.0, cpu=server_cpu) as server:
        config = client_config(
            variant,
            server["url"],
            tasks=tasks,
            concurrency=concurrency,
            cpu=client_cpu,
            settle=0.0,
            gc_off=gc_off,
        )
        return callgrind_count([sys.executable, str(VARIANTS_SCRIPT), json.dumps(config)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="e.g. extend_many aiohttp sdk_gather naive")
    parser.add_argument("--polls", type=int, default=1, help="record-info calls per task")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--big", type=int, default=700, help="tasks of the larger run")
    parser.add_argument("--small", type=int, default=100, help="tasks of the smaller run")
    parser.add_argument(
        "--gc-off", action="store_true", help="the garbage collector off while the tasks run"
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    if not 0 < args.small < args.big or args.polls < 1:
        parser.error("need 0 < --small < --big and --polls >= 1")
    for variant in args.variants:
        big = instructions(variant, args.big, args.polls, args.concurrency, args.gc_off)
        small = instructions(variant, args.small, args.polls, args.concurrency, args.gc_off)
        per_task = (big - small) / (args.big - args.small)
        print(
            f"{variant:12s} {args.polls} poll(s), concurrency {args.concurrency}: "
            f"{per_task / 1000:,.0f}k instructions per task" + (", gc off" if args.gc_off else ""),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
