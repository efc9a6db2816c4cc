"""Bulk benchmark: kie_async's client CPU against bare aiohttp doing the same requests.

Run ``python benchmarks/bench_bulk.py`` (about 15 minutes on two cores; ``--quick`` for
a smaller run of every scenario). Overhead is judged on the **client process's CPU
time** (``getrusage`` in the client process, from the start of the work to its end): wall time
on a shared machine mostly measures the other processes, and the fake server, on the same
machine, costs as much CPU as the client.

How a figure is taken:

* Each variant runs in a fresh client process of its own (``_variants.py``) against a fresh
  fake kie.ai (``python -m kie_async.testing``) started for it. With two or more CPUs the
  server is pinned to one core and the client to another (``os.sched_setaffinity``).
* A *round* runs every variant of a scenario once, in an order that alternates between rounds,
  and gives each SDK variant the ratio of its client CPU to the bare aiohttp baseline's in that
  same round. A scenario reports the min / median / max of those per-round ratios over
  ``--rounds`` rounds (at least 5), with wall time beside them.
* The baseline does the same requests: the same creates and polls (the server counts them,
  and the table shows requests per task for both), through the same 100 connections, decoding
  every answer with ``json.loads`` and reading ``code`` and ``successFlag``.
* Memory: *live objects per task in flight* is ``tracemalloc``'s count of live Python
  allocations (after a garbage collection) with every task in flight, divided by the tasks, in
  a run of its own; *RSS per task* is the growth of the resident set size over the same moment,
  which also counts allocator slack and aiohttp's queue of waiting requests. They are labelled.

Scenarios (``--scenarios``; all by default):

* ``cpu``: instant tasks, 3,000 x 1 poll and 10,000 x 5 polls, concurrency 64 and 500.
* ``journal``: 3,000 x 1 poll at concurrency 64, ``extend_many`` with and without a journal.
* ``gather``: the naive pattern, ``asyncio.gather`` of ``extend_video`` + ``handle.wait()``
  over 3,000 tasks x 1 poll, beside the same gather in bare aiohttp.
* ``inflight``: every task in flight at once, 1,000 and then 50,000 tasks x 1 poll: CPU per
  request must not grow with the number in flight.
* ``memory``: tasks held in flight (each "generating" for minutes, polled every 30 s), then
  measured: live objects and RSS per task, for ``extend_many``, the naive gather and bare
  aiohttp at 10,000, and ``extend_many`` at 1,000 and 50,000 (flat per task?).

Every target of issue 12 is printed as met or MISSED at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VARIANTS_SCRIPT = HERE / "_variants.py"
BASELINE = "aiohttp"

LABELS = {
    "extend_many": "extend_many",
    "extend_many_journal": "extend_many, journal on",
    "sdk_gather": "gather(extend_video + wait)",
    "aiohttp": "bare aiohttp (workers)",
    "naive": "bare aiohttp (gather)",
}


# -- processes -----------------------------------------------------------------------------------


def cpus_for_pinning() -> tuple[int | None, int | None]:
    """(server core, client core), or (None, None) where pinning is unavailable."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[1]


def pin(pid: int, cpu: int | None) -> None:
    """Keep process ``pid`` on one CPU, where the platform allows it."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    with contextlib.suppress(OSError):
        os.sched_setaffinity(pid, {cpu})


def cpu_of(pid: int) -> float | None:
    """User plus system CPU seconds of a live process (Linux ``/proc``), else ``None``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def fake_server(*, polls: int, seconds: float, cpu: int | None) -> Iterator[dict[str, Any]]:
    """A fresh ``python -m kie_async.testing`` process; yields ``{"url": ...}``, which gets the
    server's request ``counts`` and ``cpu`` (seconds spent serving) once the block ends."""
    command = [sys.executable, "-m", "kie_async.testing", "--port", "0"]
    command += ["--polls", str(polls), "--seconds", str(seconds)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    pin(process.pid, cpu)
    info: dict[str, Any] = {}
    try:
        assert process.stdout is not None
        info["url"] = process.stdout.readline().strip()
        if not info["url"].startswith("http"):
            raise RuntimeError(f"the fake server did not start: {info['url']!r}")
        started_cpu = cpu_of(process.pid)
        yield info
        ended_cpu = cpu_of(process.pid)
        if started_cpu is not None and ended_cpu is not None:
            info["cpu"] = ended_cpu - started_cpu
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
        info["counts"] = json.loads(rest.strip().splitlines()[-1])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def run_client(config: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One variant in a fresh client process; its JSON result, or ``{"error": ...}``."""
    try:
        done = subprocess.run(
            [sys.executable, str(VARIANTS_SCRIPT), json.dumps(config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"variant": config["variant"], "error": f"no result within {timeout:g}s"}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        return {"variant": config["variant"], "error": " / ".join(tail)}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def client_config(
    variant: str,
    url: str,
    *,
    tasks: int,
    concurrency: int,
    cpu: int | None,
    poll_wait: float = 0.0,
    hold: bool = False,
    settle: float = 2.0,
    trace: bool = False,
    journal: str | None = None,
    profile: str | None = None,
    gc_off: bool = False,
) -> dict[str, Any]:
    """The settings of one ``_variants.py`` run against the fake server at ``url``: 100
    connections, no rate limit, a fixed 1 s sleep after a 429 in the bare loops."""
    return {
        "variant": variant,
        "url": url,
        "tasks": tasks,
        "concurrency": concurrency,
        "pool": 100,
        "poll_wait": poll_wait,
        "rate": None,
        "hold": hold,
        "settle": settle,
        "retry_sleep": 1.0,
        "cpu": cpu,
        "trace": trace,
        "journal": journal,
        "profile": profile,
        "gc_off": gc_off,
    }


def measure(
    variant: str,
    *,
    tasks: int,
    concurrency: int,
    polls: int = 1,
    poll_wait: float = 0.0,
    task_seconds: float = 0.0,
    hold: bool = False,
    trace: bool = False,
    timeout: float = 900,
    profile: str | None = None,
) -> dict[str, Any]:
    """One run of one variant: a fresh server, a fresh client process, both results merged.
    ``polls`` is how many record-info calls each task takes (the last one sees it finished)."""
    server_cpu, client_cpu = cpus_for_pinning()
    with contextlib.ExitStack() as stack:
        journal = None
        if variant == "extend_many_journal":
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-journal-"))
            journal = str(Path(folder) / "run.journal")
        server = stack.enter_context(
            fake_server(polls=max(polls - 1, 0), seconds=task_seconds, cpu=server_cpu)
        )
        config = client_config(
            "extend_many" if variant == "extend_many_journal" else variant,
            server["url"],
            tasks=tasks,
            concurrency=concurrency,
            cpu=client_cpu,
            poll_wait=poll_wait,
            hold=hold,
            trace=trace,
            journal=journal,
            profile=profile,
        )
        result = run_client(config, timeout)
    result["variant"] = variant
    result["server_counts"] = server.get("counts", {})
    result["server_cpu"] = server.get("cpu")
    result["tasks"] = tasks
    progress(variant, result)
    return result


# -- figures -------------------------------------------------------------------------------------


def requests_of(result: dict[str, Any]) -> int:
    counts = result["server_counts"]
    return int(counts.get("request:create", 0) + counts.get("request:record", 0))


def spread(values: Sequence[float], fmt: str = "{:.2f}x") -> str:
    """min / median / max of ``values``."""
    if not values:
        return "-"
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{fmt.format(low)} / **{fmt.format(mid)}** / {fmt.format(high)}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def progress(variant: str, result: dict[str, Any]) -> None:
    if "error" in result:
        print(f"    {variant:20s} FAILED: {result['error']}", file=sys.stderr, flush=True)
        return
    print(
        f"    {variant:20s} tasks {result['tasks']:>6}  wall {result['wall']:7.2f} s"
        f"  client cpu {result['cpu']:7.2f} s  requests {requests_of(result):>7}"
        f"  load {load()}",
        file=sys.stderr,
        flush=True,
    )


def load() -> str:
    """The 1-minute load average: other work on the machine shows here."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = []
    for name in ("kie_async", "aiohttp"):
        with contextlib.suppress(ImportError):
            module = __import__(name)
            versions.append(f"{name} {module.__version__}")
    pinned = cpus_for_pinning()
    where = (
        f"server on CPU {pinned[0]}, client on CPU {pinned[1]}"
        if pinned[0] is not None
        else "no CPU pinning"
    )
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()} on "
        f"{platform.system()}; {', '.join(versions)};\npinning: {where}"
    )


# -- scenarios -----------------------------------------------------------------------------------


class Rounds:
    """Runs of several variants, round by round, paired with the baseline of each round."""

    def __init__(self, name: str, variants: Sequence[str], baseline: str = BASELINE) -> None:
        self.name = name
        self.variants = list(variants)
        self.baseline = baseline
        self.runs: list[dict[str, dict[str, Any]]] = []

    def run(self, rounds: int, **settings: Any) -> Rounds:
        print(f"  {self.name}: {rounds} rounds", file=sys.stderr, flush=True)
        for number in range(rounds):
            # Alternate: the baseline first in even rounds, last in odd ones, the others rotated.
            others = [v for v in self.variants if v != self.baseline]
            others = others[number % len(others) :] + others[: number % len(others)]
            order = [self.baseline, *others] if number % 2 == 0 else [*others, self.baseline]
            self.runs.append({variant: measure(variant, **settings) for variant in order})
        return self

    def ratios(self, variant: str, key: str = "cpu") -> list[float]:
        """Per-round ratios of ``variant``'s ``key`` to the baseline's in the same round."""
        found = []
        for runs in self.runs:
            a, b = runs.get(variant, {}), runs.get(self.baseline, {})
            if key in a and b.get(key):
                found.append(a[key] / b[key])
        return found

    def per_request_us(self, variant: str) -> list[float]:
        return [
            r[variant]["cpu"] / requests_of(r[variant]) * 1e6
            for r in self.runs
            if "cpu" in r.get(variant, {}) and requests_of(r[variant])
        ]

    def requests_per_task(self, variant: str) -> str:
        seen = {
            f"{requests_of(r[variant]) / r[variant]['tasks']:.2f}"
            for r in self.runs
            if variant in r and "error" not in r[variant]
        }
        return ", ".join(sorted(seen)) or "-"

    def failures(self, variant: str) -> int:
        return sum(1 for r in self.runs if "error" in r.get(variant, {"error": 1}))

    def rows(self) -> list[list[str]]:
        rows = []
        for variant in self.variants:
            walls = [r[variant]["wall"] for r in self.runs if "wall" in r.get(variant, {})]
            cpu_ratio = "1 (baseline)" if variant == self.baseline else spread(self.ratios(variant))
            wall_ratio = (
                "1 (baseline)" if variant == self.baseline else spread(self.ratios(variant, "wall"))
            )
            failed = self.failures(variant)
            rows.append(
                [
                    LABELS[variant],
                    cpu_ratio,
                    spread(self.per_request_us(variant), "{:.0f} us"),
                    wall_ratio,
                    spread(walls, "{:.2f} s"),
                    self.requests_per_task(variant),
                    f"{failed} failed" if failed else "",
                ]
            )
        return rows


HEADERS = [
    "variant",
    "client CPU vs bare aiohttp (min / **median** / max of rounds)",
    "client CPU per request",
    "wall vs bare aiohttp",
    "wall",
    "requests/task",
    "",
]


def scenario_cpu(args: argparse.Namespace, found: dict[str, Any]) -> str:
    parts = []
    for tasks, polls in ((args.small, 1), (args.large, 5)):
        for concurrency in (64, 500):
            name = f"{tasks:,} x {polls} poll{'s' if polls > 1 else ''}, concurrency {concurrency}"
            rounds = Rounds(name, ["extend_many", BASELINE]).run(
                args.rounds, tasks=tasks, concurrency=concurrency, polls=polls
            )
            found[("cpu", tasks, polls, concurrency)] = rounds
            parts.append(f"### {name}\n\n{table(HEADERS, rounds.rows())}")
    return "\n\n".join(parts)


def scenario_journal(args: argparse.Namespace, found: dict[str, Any]) -> str:
    name = f"{args.small:,} x 1 poll, concurrency 64, journal off and on"
    rounds = Rounds(name, ["extend_many", "extend_many_journal", BASELINE]).run(
        args.rounds, tasks=args.small, concurrency=64, polls=1
    )
    found["journal"] = rounds
    return f"### {name}\n\n{table(HEADERS, rounds.rows())}"


def scenario_gather(args: argparse.Namespace, found: dict[str, Any]) -> str:
    name = f"the naive gather, {args.small:,} x 1 poll, every task at once"
    rounds = Rounds(name, ["sdk_gather", "naive"], baseline="naive").run(
        args.rounds, tasks=args.small, concurrency=args.small, polls=1
    )
    found["gather"] = rounds
    headers = [h.replace("bare aiohttp", "bare aiohttp (gather)") for h in HEADERS]
    return f"### {name}\n\n{table(headers, rounds.rows())}"


def scenario_inflight(args: argparse.Namespace, found: dict[str, Any]) -> str:
    parts = []
    for tasks in (args.inflight_small, args.inflight):
        name = f"{tasks:,} tasks in flight at once x 1 poll"
        rounds = Rounds(name, ["extend_many", BASELINE]).run(
            args.rounds, tasks=tasks, concurrency=tasks, polls=1
        )
        found[("inflight", tasks)] = rounds
        parts.append(f"### {name}\n\n{table(HEADERS, rounds.rows())}")
    return "\n\n".join(parts)


def hold(variant: str, tasks: int, *, trace: bool) -> dict[str, Any]:
    return measure(
        variant,
        tasks=tasks,
        concurrency=tasks,
        poll_wait=30.0,
        task_seconds=600.0,
        hold=True,
        trace=trace,
        timeout=900,
    )


def scenario_memory(args: argparse.Namespace, found: dict[str, Any]) -> str:
    print("  memory", file=sys.stderr, flush=True)
    plan = [
        ("extend_many", args.memory),
        ("sdk_gather", args.memory),
        (BASELINE, args.memory),
        ("extend_many", args.inflight_small),
        ("extend_many", args.inflight),
    ]
    rows = []
    for variant, tasks in plan:
        traced = hold(variant, tasks, trace=True)
        plain = hold(variant, tasks, trace=False)
        found[("memory", variant, tasks)] = (traced, plain)
        if "error" in traced or "error" in plain:
            error = traced.get("error") or plain.get("error")
            rows.append([LABELS[variant], f"{tasks:,}", f"failed: {error}", "", "", ""])
            continue
        live = traced["traced_hold"] / traced["in_flight"] / 1024
        rss = (plain["rss_hold"] - plain["rss_base"]) / plain["in_flight"]
        rows.append(
            [
                LABELS[variant],
                f"{plain['in_flight']:,}",
                f"{live:.2f} KiB",
                f"{rss:.2f} KiB",
                f"{plain['peak_rss'] / 1024:.0f} MiB",
                f"{plain['to_hold']:.1f} s",
            ]
        )
    headers = [
        "variant",
        "in flight",
        "live Python objects per task (tracemalloc)",
        "RSS growth per task",
        "peak RSS",
        "time to submit all",
    ]
    return table(headers, rows)


def targets(args: argparse.Namespace, found: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Each target of issue 12: what it asks, what was measured, met or not."""
    checks: list[tuple[str, str, bool | None]] = []

    def median_ratio(rounds: Rounds | None, variant: str) -> float | None:
        values = rounds.ratios(variant) if rounds is not None else []
        return statistics.median(values) if values else None

    for tasks, polls, limit in ((args.small, 1, 1.15), (args.large, 5, 1.20)):
        r = median_ratio(found.get(("cpu", tasks, polls, 64)), "extend_many")
        if r is not None:
            checks.append(
                (
                    f"extend_many, {tasks:,} x {polls} poll(s), concurrency 64: median client CPU "
                    f"<= {limit:.2f}x bare aiohttp",
                    f"{r:.2f}x",
                    r <= limit,
                )
            )
    r = median_ratio(found.get("gather"), "sdk_gather")
    if r is not None:
        checks.append(
            ("naive gather(extend_video + wait): median client CPU <= 1.30x", f"{r:.2f}x", r <= 1.3)
        )
    traced, _ = found.get(("memory", "sdk_gather", args.memory), ({}, {}))
    if "traced_hold" in traced:
        live = traced["traced_hold"] / traced["in_flight"] / 1024
        checks.append(
            ("naive gather: at most 6 KiB live per task in flight", f"{live:.2f} KiB", live <= 6)
        )
    small, large = (
        found.get(("inflight", args.inflight_small)),
        found.get(("inflight", args.inflight)),
    )
    if small is not None and large is not None:
        a, b = small.per_request_us("extend_many"), large.per_request_us("extend_many")
        if a and b:
            growth = statistics.median(b) / statistics.median(a)
            checks.append(
                (
                    f"{args.inflight:,} in flight: CPU per request within 10 % of the "
                    f"{args.inflight_small:,}-task figure",
                    f"{statistics.median(b):.0f} us vs {statistics.median(a):.0f} us "
                    f"({growth - 1:+.0%})",
                    growth <= 1.10,
                )
            )
    few, _ = found.get(("memory", "extend_many", args.inflight_small), ({}, {}))
    many, _ = found.get(("memory", "extend_many", args.inflight), ({}, {}))
    if "traced_hold" in few and "traced_hold" in many:
        per_few = few["traced_hold"] / few["in_flight"] / 1024
        per_many = many["traced_hold"] / many["in_flight"] / 1024
        checks.append(
            (
                f"{args.inflight:,} in flight: live memory per task flat (within 10 % of the "
                f"{args.inflight_small:,}-task figure) and about 3 KiB",
                f"{per_many:.2f} KiB vs {per_few:.2f} KiB",
                per_many <= per_few * 1.10 and per_many <= 3.5,
            )
        )
    return checks


SCENARIOS = {
    "cpu": scenario_cpu,
    "journal": scenario_journal,
    "gather": scenario_gather,
    "inflight": scenario_inflight,
    "memory": scenario_memory,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per scenario (>= 5)")
    parser.add_argument("--small", type=int, default=3000, help="tasks of the 1-poll runs")
    parser.add_argument("--large", type=int, default=10_000, help="tasks of the 5-poll runs")
    parser.add_argument("--inflight", type=int, default=50_000, help="the large in-flight run")
    parser.add_argument("--inflight-small", type=int, default=1000, help="its small reference")
    parser.add_argument("--memory", type=int, default=10_000, help="tasks held for memory")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--json", type=Path, help="also write every raw result here")
    parser.add_argument("--quick", action="store_true", help="every scenario, smaller sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.small, args.large, args.inflight, args.memory = 1000, 2000, 10_000, 2000
    if args.rounds < 5:
        print("note: fewer than 5 rounds: the medians are not to be relied on", file=sys.stderr)
    command = shlex.join(["python", "benchmarks/bench_bulk.py", *(argv or sys.argv[1:])])
    started = time.monotonic()
    print(f"command: {command}\nmachine: {machine()}\nload average at start: {load()}\n")
    found: dict[str, Any] = {}
    for name in args.scenarios.split(","):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        before = load()
        text = SCENARIOS[name](args, found)
        print(f"## {name}\n\n{text}\n\n(load average before/after: {before} / {load()})\n")
        sys.stdout.flush()
    print("## targets\n")
    for what, measured, met in targets(args, found):
        print(f"- {what}: {measured} -> {'met' if met else 'MISSED'}")
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    if args.json:
        raw = {str(k): (v.runs if isinstance(v, Rounds) else v) for k, v in found.items()}
        args.json.write_text(json.dumps({"command": command, "results": raw}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
