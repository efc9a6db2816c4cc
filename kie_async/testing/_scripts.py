"""What a test says about the fake's tasks and reads back: how a task ends, what arrived.

Plain attrs classes; nothing here knows HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

#: The bearer key the fake server accepts unless told otherwise.
DEFAULT_API_KEY = "test-key"


@attrs.define
class TaskScript:
    """How one fake task ends.

    Attributes:
        flag: the final ``successFlag``: 1 success, 2 failed, 3 generation failed (any other value
            is served as is, to test undocumented flags).
        polls: how many ``record-info`` polls answer "generating" (flag 0) before the end.
        seconds: how long after creation the task ends (both conditions must hold).
        videos: how many result URLs an extension's success carries (generations, upscales
            and variations carry their kind's count: 4 images, ``videoBatchSize`` videos,
            1 upscaled image, 4 variations).
        error_code / error_message: what a failure reports.
    """

    flag: int = 1
    polls: int = 0
    seconds: float = 0.0
    videos: int = 1
    error_code: str | None = None
    error_message: str | None = None

    @classmethod
    def failed(cls, message: str = "content policy violation", *, flag: int = 2) -> TaskScript:
        """A task that fails (flag 2, or 3 for "generation failed") with ``message``."""
        return cls(flag=flag, error_code="400", error_message=message)


@attrs.frozen
class RecordedRequest:
    """One request the fake server received, as it arrived.

    Attributes:
        method, path: the HTTP method and path.
        query: the query string's parameters.
        headers: the request headers.
        json: the decoded JSON body, if there was one.
        at: when it arrived (``time.monotonic()``).
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    json: Any
    at: float
