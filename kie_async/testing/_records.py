"""A fake task as a raw dict, and how kie.ai talks about it: ``record-info`` data and the
callback body, quirks included.

Pure functions over plain dicts (the caller passes the clock and the server's base URL), never
kie_async's own models, so a serialisation bug in the SDK cannot hide itself here. kie.ai's
quirks are served in rotation, chosen by the task's serial number: timestamps in ISO 8601 and
in zone-less UTC+8, empty values as ``null``, ``""`` or the string ``"null"``, result URLs as
``{"resultUrl": ...}`` objects in ``record-info`` but plain strings in callbacks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ._kinds import Envelope, envelope
from ._scripts import TaskScript

Task = dict[str, Any]

_UTC8 = timezone(timedelta(hours=8))


def new_task(
    task_id: str,
    task_type: str,
    body: Mapping[str, Any],
    script: TaskScript,
    *,
    serial: int,
    now: float,
    finished: bool = False,
) -> Task:
    """The raw state of a task created at monotonic time ``now`` by ``body``, ending as
    ``script`` says (at once when ``finished``)."""
    return {
        "task_id": task_id,
        "task_type": task_type,
        "param_json": json.dumps(body, ensure_ascii=False),
        "script": script,
        "polls_left": 0 if finished else script.polls,
        "ends_at": 0.0 if finished else now + script.seconds,
        "created_wall": datetime.now(timezone.utc),
        "completed_wall": None,
        "serial": serial,
        "videos": script.videos,
    }


def _time(task: Mapping[str, Any], when: datetime | None) -> str | None:
    # kie.ai has answered in ISO 8601 and in zone-less UTC+8; serve both.
    if when is None:
        return None
    if task["serial"] % 2:
        return when.astimezone(_UTC8).strftime("%Y-%m-%d %H:%M:%S")
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _null(task: Mapping[str, Any]) -> Any:
    # Empty values arrive as null, "" or the string "null".
    return (None, "", "null")[task["serial"] % 3]


def result_urls(task: Mapping[str, Any], base_url: str) -> list[str]:
    """The result file URLs of ``task``, served by the fake under ``base_url``."""
    ext = task.get("ext", "mp4")
    return [f"{base_url}/files/{task['task_id']}/{i}.{ext}" for i in range(task["videos"])]


def record_data(task: Task, base_url: str, now: float) -> dict[str, Any]:
    """The ``data`` of a ``record-info`` answer about ``task`` at monotonic time ``now``; a
    poll of an unfinished task counts down its script's ``polls``."""
    if "raw" in task:
        return dict(task["raw"])
    script: TaskScript = task["script"]
    ended = task["polls_left"] <= 0 and now >= task["ends_at"]
    if not ended:
        task["polls_left"] -= 1
    flag = script.flag if ended else 0
    if ended and task["completed_wall"] is None:
        task["completed_wall"] = datetime.now(timezone.utc)
    urls = None
    if flag == 1:
        urls = {"resultUrls": [{"resultUrl": url} for url in result_urls(task, base_url)]}
    failed = flag in (2, 3)
    return {
        "taskId": task["task_id"],
        "taskType": task["task_type"],
        "paramJson": task["param_json"],
        "completeTime": _time(task, task["completed_wall"]),
        "resultInfoJson": urls,
        "successFlag": flag,
        "createTime": _time(task, task["created_wall"]),
        "errorCode": script.error_code if failed and script.error_code else _null(task),
        "errorMessage": (script.error_message if failed and script.error_message else _null(task)),
    }


def callback_body(task: Mapping[str, Any], base_url: str) -> Envelope:
    """What kie.ai POSTs to ``callBackUrl`` when ``task`` ends (see
    :meth:`~kie_async.testing.FakeKieServer.callback_payload`)."""
    script: TaskScript = task["script"]
    ok = script.flag == 1
    return envelope(
        200 if ok else 500,
        "success" if ok else (script.error_message or "generation failed"),
        {
            "taskId": task["task_id"],
            "promptJson": task["param_json"],
            "resultUrls": result_urls(task, base_url) if ok else None,
        },
    )
