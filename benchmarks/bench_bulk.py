"""Bulk extension benchmark: ``extend_many`` against bare loops, each in a process of its own.

Run ``python benchmarks/bench_bulk.py`` (or ``nox -s bench``); ``--quick`` for a smoke run. It
needs the ``bench`` extra (httpx). Each run gets a fake kie.ai (``python -m kie_async.testing``)
started fresh in a process of its own. The scenarios (``--scenarios``, the first three by
default, about three minutes on two cores):

* ``speed``: instant tasks, no rate limit: wall time, tasks/s, CPU per task.
* ``memory``: ``--inflight`` tasks submitted and all waiting at once: the memory that holds them.
* ``rate``: the server rejects creates beyond a limit with 429: how close to the limit each
  variant submits, and how many 429s it provokes.
* ``overhead``: the speed workload with the network replaced by canned answers, layer by layer,
  to show what kie_async's own code costs per task.

Four variants do the same requests (see ``_variants.py``): (a) ``extend_many``, (b) a bare
aiohttp loop, (c) a bare httpx loop, (d) the naive loop (``gather`` + fixed sleeps). Figures are
given as ratios to (b), measured in the same run. With two or more CPUs the server is pinned to
the first and the client to the second, so neither steals the other's core.

Memory is the client process's resident set size: ``peak`` is ``ru_maxrss``; ``held`` is
``VmRSS`` when every task is in flight minus ``VmRSS`` after imports and client creation. A
second run with tracemalloc gives the live Python objects per task, free of allocator slack.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VARIANTS_SCRIPT = HERE / "_variants.py"

VARIANTS = ("extend_many", "aiohttp", "httpx", "naive")
LABELS = {
    "extend_many": "(a) extend_many",
    "aiohttp": "(b) bare aiohttp",
    "httpx": "(c) bare httpx",
    "naive": "(d) naive gather+sleep",
    "canned_bare": "bare loop",
    "canned_call": "+ KieClient: envelope, record parsing",
    "canned_submit_wait": "+ submit() and TaskHandle.wait()",
    "canned_extend_many": "+ extend_many",
}
LAYERS = ("canned_bare", "canned_call", "canned_submit_wait", "canned_extend_many")
BASELINE = "aiohttp"

SPEED_TARGET = 1.15  # extend_many's wall time at most this times the bare aiohttp loop's
MEMORY_TARGET_MB = 50.0  # for 10,000 tasks in flight
MEMORY_TARGET_TASKS = 10_000
RATE_TARGET = 0.95  # of the server's limit, with zero 429s


# -- processes -----------------------------------------------------------------------------------


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
def fake_server(
    *, polls: int, seconds: float, rate: tuple[int, float] | None, cpu: int | None
) -> Iterator[dict[str, Any]]:
    """Run ``python -m kie_async.testing`` in its own process; yields ``{"url": ...}``, which
    gets the server's ``counts`` and ``cpu`` (seconds spent serving) once the block ends."""
    command = [
        sys.executable,
        "-m",
        "kie_async.testing",
        "--port",
        "0",
        "--polls",
        str(polls),
        "--seconds",
        str(seconds),
    ]
    if rate is not None:
        command += ["--rate-limit", f"{rate[0]}/{rate[1]:g}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    pin(process.pid, cpu)
    info: dict[str, Any] = {}
    try:
        assert process.stdout is not None
        info["url"] = process.stdout.readline().strip()
        if not info["url"].startswith("http"):
            raise RuntimeError(f"the fake server did not start: {info['url']!r}")
        started_cpu = cpu_of(process.pid)  # imports and start-up are not the server's work
        yield info
        ended_cpu = cpu_of(process.pid)
        if started_cpu is not None and ended_cpu is not None:
            info["cpu"] = ended_cpu - started_cpu
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        info["counts"] = json.loads(rest.strip().splitlines()[-1])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def run_variant(config: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one variant in a fresh process against a server; its JSON result, or an error."""
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


def measure(
    variant: str,
    *,
    tasks: int,
    concurrency: int,
    poll_wait: float,
    server_polls: int = 0,
    server_seconds: float = 0.0,
    rate: tuple[int, float] | None = None,
    hold: bool = False,
    trace: bool = False,
    pin_cpus: bool,
    timeout: float,
) -> dict[str, Any]:
    """One run of one variant: a fresh server, a fresh client process, both results merged."""
    server_cpu, client_cpu = (0, 1) if pin_cpus else (None, None)
    with fake_server(
        polls=server_polls, seconds=server_seconds, rate=rate, cpu=server_cpu
    ) as server:
        config = {
            "variant": variant,
            "url": server["url"],
            "tasks": tasks,
            "concurrency": concurrency,
            "pool": 100,
            "poll_wait": poll_wait,
            "rate": list(rate) if rate else None,
            "hold": hold,
            "settle": 2.0,
            "retry_sleep": 1.0,
            "cpu": client_cpu,
            "trace": trace,
        }
        result = run_variant(config, timeout)
    result["server_counts"] = server.get("counts", {})
    result["server_cpu"] = server.get("cpu")
    result["tasks"] = tasks
    return result


# -- figures -------------------------------------------------------------------------------------


def mib(kib: float) -> float:
    return kib / 1024


def requests_per_task(result: dict[str, Any]) -> float:
    counts = result["server_counts"]
    return (counts.get("request:create", 0) + counts.get("request:record", 0)) / result["tasks"]


def sustained_rate(result: dict[str, Any], limit: tuple[int, float]) -> float | None:
    """Accepted creates per second after the first window: a client that fills every window
    of the limit exactly, and no more, scores ``requests / per``.

    The first ``requests`` creates may all go at once (the window starts empty); counting from
    the first create to the last, every create after those shows the rate that can be held.
    """
    times = result.get("create_times") or []
    if len(times) <= limit[0] or times[-1] <= times[0]:
        return None
    return (len(times) - limit[0]) / (times[-1] - times[0])


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pick_median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time (the upper middle one for an even count)."""
    good = sorted((r for r in runs if "error" not in r), key=lambda r: r["wall"])
    return good[len(good) // 2] if good else runs[0]


# -- scenarios -----------------------------------------------------------------------------------


def repeated(
    args: argparse.Namespace, variants: list[str] | tuple[str, ...], scenario: str, tasks: int
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """Every variant ``--repeats`` times on instant tasks; all runs, and the median run of each."""
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for round_ in range(args.repeats):
        # Rotate the order each round so that no variant always runs first or last.
        order = [*variants[round_ % len(variants) :], *variants[: round_ % len(variants)]]
        for variant in order:
            result = measure(
                variant,
                tasks=tasks,
                concurrency=args.concurrency,
                poll_wait=0.0,
                server_polls=args.polls,
                pin_cpus=args.pin,
                timeout=300,
            )
            runs[variant].append(result)
            progress(scenario, variant, result)
    return runs, {v: pick_median(r) for v, r in runs.items()}


def speed(args: argparse.Namespace, variants: list[str]) -> tuple[str, dict[str, Any]]:
    runs, chosen = repeated(args, variants, "speed", args.tasks)
    base = chosen.get(BASELINE, {})
    rows = []
    for variant in variants:
        r = chosen[variant]
        if "error" in r:
            rows.append([LABELS[variant], "failed: " + r["error"]] + [""] * 9)
            continue
        walls = sorted(x["wall"] for x in runs[variant] if "error" not in x)
        rows.append(
            [
                LABELS[variant],
                f"{r['wall']:.2f} s",
                f"{min(walls):.2f}-{max(walls):.2f} s",
                f"{args.tasks / r['wall']:,.0f}",
                ratio(r["wall"], base.get("wall")),
                f"{r['cpu'] / args.tasks * 1e6:.0f} us",
                ratio(r["cpu"], base.get("cpu")),
                f"{r['server_cpu'] / args.tasks * 1e6:.0f} us" if r["server_cpu"] else "-",
                f"{requests_per_task(r):.2f}",
                str(r["server_counts"].get("rejected:429", 0)),
                f"{mib(r['peak_rss']):.1f} MiB ({ratio(r['peak_rss'], base.get('peak_rss'))})",
            ]
        )
    text = table(
        [
            "variant",
            "wall (median)",
            "wall (range)",
            "tasks/s",
            "wall vs (b)",
            "client CPU/task",
            "CPU vs (b)",
            "server CPU/task",
            "requests/task",
            "429s",
            "peak RSS",
        ],
        rows,
    )
    return text, {"runs": runs, "chosen": chosen}


def memory(args: argparse.Namespace, variants: list[str]) -> tuple[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    traced: dict[str, dict[str, Any]] = {}
    settings = {
        "tasks": args.inflight,
        "concurrency": args.inflight,
        "poll_wait": args.poll_interval,
        "server_seconds": args.task_seconds,
        "hold": True,
        "pin_cpus": args.pin,
        "timeout": args.task_seconds + 60,
    }
    chosen = [v for v in args.memory_variants.split(",") if v in variants]
    for variant in chosen:
        results[variant] = measure(variant, **settings)
        progress("memory", variant, results[variant])
    if args.trace:
        # A second run with tracemalloc on (it slows the run and its own records take memory,
        # so it is not the run whose RSS is reported): the live Python objects, cycles collected.
        for variant in [v for v in ("extend_many", BASELINE) if v in chosen]:
            traced[variant] = measure(variant, trace=True, **settings)
            progress("traced", variant, traced[variant])
    base = results.get(BASELINE, {})
    base_held = base["rss_hold"] - base["rss_base"] if "rss_hold" in base else None
    rows = []
    for variant in chosen:
        r = results[variant]
        if "error" in r:
            rows.append([LABELS[variant], "failed: " + r["error"]] + [""] * 8)
            continue
        held = r["rss_hold"] - r["rss_base"]
        live = traced.get(variant, {}).get("traced_hold")
        rows.append(
            [
                LABELS[variant],
                f"{r['in_flight']:,}",
                f"{r['to_hold']:.1f} s",
                f"{mib(held):.1f} MiB",
                f"{held / r['in_flight']:.1f} KiB",
                ratio(held, base_held),
                f"{live / 1024 / traced[variant]['in_flight']:.1f} KiB" if live else "-",
                f"{mib(r['peak_rss']):.1f} MiB ({ratio(r['peak_rss'], base.get('peak_rss'))})",
                f"{requests_per_task(r):.2f}",
                str(r["server_counts"].get("rejected:429", 0)),
            ]
        )
    text = table(
        [
            "variant",
            "in flight",
            "time to submit all",
            "held (RSS growth)",
            "RSS per task",
            "held vs (b)",
            "live objects per task",
            "peak RSS",
            "requests/task so far",
            "429s",
        ],
        rows,
    )
    return text, {"results": results, "traced": traced}


def rate(args: argparse.Namespace, variants: list[str]) -> tuple[str, dict[str, Any]]:
    limit = args.rate
    tasks = round(limit[0] * (args.rate_seconds / limit[1] + 1))
    results: dict[str, dict[str, Any]] = {}
    for variant in variants:
        result = measure(
            variant,
            tasks=tasks,
            concurrency=args.concurrency,
            poll_wait=0.0,
            rate=limit,
            pin_cpus=args.pin,
            timeout=args.rate_seconds * 10 + 60,
        )
        results[variant] = result
        progress("rate", variant, result)
    base = results.get(BASELINE, {})
    allowed = limit[0] / limit[1]
    rows = []
    for variant in variants:
        r = results[variant]
        if "error" in r:
            rows.append([LABELS[variant], "failed: " + r["error"]] + [""] * 7)
            continue
        held = sustained_rate(r, limit)
        rows.append(
            [
                LABELS[variant],
                f"{r['wall']:.2f} s",
                f"{tasks / r['wall']:.1f}",
                ratio(tasks / r["wall"], tasks / base["wall"] if "wall" in base else None),
                f"{held:.2f}/s" if held else "-",
                f"{held / allowed:.1%}" if held else "-",
                str(r["server_counts"].get("rejected:429", 0)),
                f"{requests_per_task(r):.2f}",
                f"{mib(r['peak_rss']):.1f} MiB ({ratio(r['peak_rss'], base.get('peak_rss'))})",
            ]
        )
    text = table(
        [
            "variant",
            "wall",
            "tasks/s",
            "tasks/s vs (b)",
            "creates/s held",
            "of the limit",
            "429s provoked",
            "requests/task",
            "peak RSS",
        ],
        rows,
    )
    return text, {"results": results, "tasks": tasks}


def overhead(args: argparse.Namespace, variants: list[str]) -> tuple[str, dict[str, Any]]:
    """kie_async's own CPU per task, layer by layer, with the network replaced by canned
    answers (ten times the speed tasks: without sockets the figures are steadier)."""
    tasks = args.tasks * 10
    runs, chosen = repeated(args, LAYERS, "overhead", tasks)
    rows = []
    previous = None
    for variant in LAYERS:
        r = chosen[variant]
        if "error" in r:
            rows.append([LABELS[variant], "failed: " + r["error"], ""])
            continue
        per_task = r["cpu"] / tasks * 1e6
        step = f"{per_task - previous:+.0f} us" if previous is not None else ""
        rows.append([LABELS[variant], f"{per_task:.0f} us", step])
        previous = per_task
    text = table(["layer (canned answers, no sockets)", "client CPU/task", "added"], rows)
    return text, {"runs": runs, "chosen": chosen, "tasks": tasks}


# -- the run -------------------------------------------------------------------------------------


def progress(scenario: str, variant: str, result: dict[str, Any]) -> None:
    if "error" in result:
        print(f"  {scenario:6s} {variant:12s} FAILED: {result['error']}", file=sys.stderr)
        return
    print(
        f"  {scenario:6s} {variant:12s} wall {result['wall']:6.2f} s  cpu {result['cpu']:6.2f} s"
        f"  peak {mib(result['peak_rss']):6.1f} MiB"
        f"  429s {result['server_counts'].get('rejected:429', 0)}",
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
    for name in ("kie_async", "aiohttp", "httpx"):
        with contextlib.suppress(ImportError):
            module = __import__(name)
            versions.append(f"{name} {module.__version__}")
    try:
        __import__("sniffio")
    except ImportError:
        # httpcore 1.0 retries a failed ``import sniffio`` on every request; anyio 4.11+ no
        # longer installs it, and httpx then runs several times slower than it can.
        versions.append("no sniffio (httpx is slowed by it: pip install sniffio)")
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()} on "
        f"{platform.system()}; {', '.join(versions)}"
    )


def targets(
    args: argparse.Namespace, found: dict[str, dict[str, Any]]
) -> list[tuple[str, str, bool | None]]:
    """Each target of the issue: what it asks, what was measured, met or not (None: not run)."""
    checks: list[tuple[str, str, bool | None]] = []
    chosen = found.get("speed", {}).get("chosen", {})
    a, b = chosen.get("extend_many", {}), chosen.get(BASELINE, {})
    if "wall" in a and "wall" in b:
        r = a["wall"] / b["wall"]
        checks.append(
            (f"speed: wall time within {SPEED_TARGET}x of (b)", f"{r:.2f}x", r <= SPEED_TARGET)
        )
    held = found.get("memory", {}).get("results", {}).get("extend_many", {})
    if "rss_hold" in held:
        mb = (held["rss_hold"] - held["rss_base"]) / 1024
        scaled = mb * MEMORY_TARGET_TASKS / held["in_flight"]
        note = f"{mb:.1f} MiB for {held['in_flight']:,} tasks"
        if held["in_flight"] < MEMORY_TARGET_TASKS:
            note += f" (about {scaled:.0f} MiB per {MEMORY_TARGET_TASKS:,}, scaled)"
        checks.append(
            (
                f"memory: {MEMORY_TARGET_TASKS:,} in flight under {MEMORY_TARGET_MB:g} MB",
                note,
                scaled * 1024 * 1024 < MEMORY_TARGET_MB * 1e6,
            )
        )
    limited = found.get("rate", {}).get("results", {}).get("extend_many", {})
    if "wall" in limited:
        held_rate = sustained_rate(limited, args.rate)
        fraction = held_rate / (args.rate[0] / args.rate[1]) if held_rate else 0.0
        rejected = limited["server_counts"].get("rejected:429", 0)
        checks.append(
            (
                f"rate: >= {RATE_TARGET:.0%} of the limit, zero 429s",
                f"{fraction:.1%}, {rejected} 429s",
                fraction >= RATE_TARGET and rejected == 0,
            )
        )
    return checks


def parse_rate(text: str) -> tuple[int, float]:
    count, _, per = text.partition("/")
    return int(count), float(per or 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000, help="speed: tasks (default 2000)")
    parser.add_argument("--concurrency", type=int, default=100, help="speed, rate (default 100)")
    parser.add_argument("--polls", type=int, default=0, help="speed: polls before a task ends")
    parser.add_argument("--repeats", type=int, default=3, help="speed: runs per variant")
    parser.add_argument(
        "--inflight", type=int, default=MEMORY_TARGET_TASKS, help="memory: tasks held at once"
    )
    parser.add_argument("--poll-interval", type=float, default=30.0, help="memory: poll wait")
    parser.add_argument("--task-seconds", type=float, default=120.0, help="memory: task length")
    parser.add_argument(
        "--memory-variants",
        default="extend_many,aiohttp,naive",
        help="memory: which variants (httpx takes minutes to submit 10,000 here)",
    )
    parser.add_argument(
        "--no-trace", dest="trace", action="store_false", help="memory: skip the traced runs"
    )
    parser.add_argument("--rate", type=parse_rate, default=(50, 2.0), help="rate: N/seconds")
    parser.add_argument("--rate-seconds", type=float, default=10.0, help="rate: run length")
    parser.add_argument(
        "--scenarios", default="speed,memory,rate", help="any of speed,memory,rate,overhead"
    )
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin CPUs")
    parser.add_argument("--json", type=Path, help="also write every raw result here")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.repeats, args.inflight = 500, 1, 2000
        args.rate, args.rate_seconds, args.task_seconds = (20, 1.0), 3.0, 60.0
    if (os.cpu_count() or 1) < 2:
        args.pin = False
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown or BASELINE not in variants:
        parser.error(f"variants must include {BASELINE} and come from {', '.join(VARIANTS)}")
    command = shlex.join(["python", "benchmarks/bench_bulk.py", *sys.argv[1:]])
    started = time.monotonic()
    print(f"command: {command}\nmachine: {machine()}\n", flush=True)
    scenarios = {"speed": speed, "memory": memory, "rate": rate, "overhead": overhead}
    found: dict[str, dict[str, Any]] = {}
    for name in args.scenarios.split(","):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        load_before = load()
        text, found[name] = scenarios[name](args, variants)
        print(f"## {name}\n\n{text}\n", flush=True)
        print(f"(load average before/after: {load_before} / {load()})\n", flush=True)
    print("## targets\n")
    for what, measured, met in targets(args, found):
        print(f"- {what}: {measured} -> {'met' if met else 'MISSED'}")
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"command": command, "results": found}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
