"""The fake server's tasks and how each one is scripted to end.

Tasks are raw dicts (see :mod:`._records`); a create takes the next :class:`TaskScript` queued
with :meth:`~TaskStore.script_next`, else the one ``script_for`` picks, else
``default_script``. Finished sources to extend, upscale or vary can be added directly.
"""

from __future__ import annotations

import collections
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from . import _records as records
from ._scripts import TaskScript


class TaskStore:
    """The task state of :class:`~kie_async.testing.FakeKieServer` (a base class)."""

    url: str
    default_script: TaskScript
    script_for: Callable[[Mapping[str, Any]], TaskScript | None] | None
    tasks: dict[str, records.Task]
    creates: list[dict[str, Any]]
    _create_kinds: list[str]
    _queued: collections.deque[TaskScript]
    _serial: Iterator[int]

    def _setup_store(self) -> None:
        self.url = ""
        self.default_script = TaskScript()
        self.script_for = None
        self.tasks = {}
        self.creates = []
        self._create_kinds = []
        self._queued = collections.deque()
        self._serial = itertools.count()

    def script_next(self, *scripts: TaskScript) -> None:
        """Queue scripts for the next creates, in order (before :attr:`script_for`)."""
        self._queued.extend(scripts)

    def add_source_video(self, videos: int = 4, task_id: str | None = None) -> str:
        """Add a finished Midjourney video record (the kind you extend); returns its task id."""
        task_id = task_id or uuid.uuid4().hex
        body = {"taskType": "mj_video", "prompt": "a source video", "videoBatchSize": videos}
        self._new_task(task_id, "mj_video", body, TaskScript(videos=videos), finished=True)
        return task_id

    def add_source_image(
        self, images: int = 4, task_id: str | None = None, task_type: str = "mj_txt2img"
    ) -> str:
        """Add a finished Midjourney image record (the kind you upscale or vary); returns its
        task id."""
        task_id = task_id or uuid.uuid4().hex
        body = {"taskType": task_type, "prompt": "a source image"}
        task = self._new_task(task_id, task_type, body, TaskScript(videos=images), finished=True)
        task["ext"] = "jpeg"
        return task_id

    def set_record(self, task_id: str, data: Mapping[str, Any]) -> None:
        """Serve ``data`` verbatim as the ``record-info`` data of ``task_id`` (sample payloads)."""
        self.tasks[task_id] = {"raw": dict(data)}

    def complete(self, task_id: str) -> None:
        """Make a scripted task end now, whatever its script said about polls and seconds."""
        task = self.tasks[task_id]
        task["polls_left"] = 0
        task["ends_at"] = 0.0

    def duplicate_creates(self) -> int:
        """How many accepted creates repeated an earlier one's content (the money lost twice)."""
        seen: set[str] = set()
        dupes = 0
        for kind, body in zip(self._create_kinds, self.creates, strict=False):
            # The content, without what does not change what is made (the watermark text and
            # where the result is reported): for an extension, its taskId, index, taskType
            # and prompt.
            content = {k: v for k, v in body.items() if k not in ("waterMark", "callBackUrl")}
            key = json.dumps([kind, content], sort_keys=True)
            dupes += key in seen
            seen.add(key)
        return dupes

    def _next_script(self, body: Mapping[str, Any]) -> TaskScript:
        if self._queued:
            return self._queued.popleft()
        if self.script_for is not None:
            chosen = self.script_for(body)
            if chosen is not None:
                return chosen
        return self.default_script

    def _new_task(
        self,
        task_id: str,
        task_type: str,
        body: Mapping[str, Any],
        script: TaskScript,
        *,
        finished: bool = False,
    ) -> records.Task:
        task = records.new_task(
            task_id,
            task_type,
            body,
            script,
            serial=next(self._serial),
            now=time.monotonic(),
            finished=finished,
        )
        self.tasks[task_id] = task
        return task
