"""Helpers shared by several test modules."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def established(port: int) -> int:
    """How many TCP connections of this process to ``port`` on loopback are established."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``KIE_`` setting, plus ``extra``: what a
    subprocess of the command-line tool gets, so the developer's own settings never leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    env.update(extra)
    return env


def write_jobs(path: Path, count: int) -> Path:
    """A jobs file of ``count`` extensions, four per source video."""
    lines = [
        json.dumps({"task_id": f"src{i // 4}", "index": i % 4, "prompt": f"scene {i}"})
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def tasks_created() -> Iterator[list[str]]:
    """While the block runs, the source file of every asyncio Task the running loop creates is
    appended to the list this yields (``""`` for a task not running a coroutine)."""
    loop = asyncio.get_running_loop()
    created: list[str] = []
    default_factory = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        code = getattr(coro, "cr_code", None)
        created.append(code.co_filename if code is not None else "")
        if default_factory is not None:
            return default_factory(loop, coro, **kwargs)  # type: ignore[no-any-return]
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting)  # type: ignore[arg-type]
    try:
        yield created
    finally:
        loop.set_task_factory(default_factory)


def bulk_argv(url: str, jobs: Path, journal: Path, *extra: str) -> list[str]:
    """The command line of a ``kie-async bulk`` child process against the API at ``url``."""
    return [sys.executable, "-m", "kie_async", "--base-url", url, "bulk", str(jobs),
            "--journal", str(journal), *extra]  # fmt: skip


class Stopped(Exception):
    """What :class:`StopBeforeSending` raises."""


class StopBeforeSending:
    """A SendWatch (as a bulk run's) that stops the create when it is about to go out."""

    async def sending(self) -> None:
        raise Stopped

    def ended(self, exc: BaseException | None) -> None:
        pass
