"""Start-up time of a command: ``python benchmarks/startup.py 30 kie-async --help``.

Runs the command the given number of times and prints the min and median wall time and CPU
time (user plus system, from ``getrusage(RUSAGE_CHILDREN)``) of one run, with the load
average: on a shared machine the CPU figure is the steadier one.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    runs, command = int(argv[0]), argv[1:]
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        walls.append((time.perf_counter() - started) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        cpus.append(used * 1000)

    def spread(values: list[float]) -> str:
        return f"min {min(values):.0f} / median {statistics.median(values):.0f} ms"

    print(
        f"{' '.join(command)}: wall {spread(walls)}; cpu {spread(cpus)} over {runs} runs"
        f" (load average {os.getloadavg()[0]:.1f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
