"""The registry of request kinds: the one place that lists them (:data:`TaskRequest`,
:data:`REQUEST_TYPES`), and what a record's ``taskType`` says of its kind and media.

Each kind is one frozen class in a module of its own (``generate``, ``image_actions``,
``extend``) and knows three things and nothing else (no I/O happens here):

* its **endpoint**, the path its create is POSTed to (``endpoint``, a class attribute);
* its **wire body**, kie's camelCase JSON with absent fields left out (``body()``), built from
  each field's ``metadata["wire"]`` name;
* its **validation**: every documented rule is checked when the request is constructed, so a
  bad request raises :class:`ValidationError` before anything is sent.

The kinds share one small protocol (:class:`RequestProtocol`, in ``common``), which is all a
submitter needs. Adding a kind means a module here (its endpoint, fields, rules and
``task_types``), its name in :data:`TaskRequest` and a :class:`TaskKind` member; the client,
the handle and record reading need no change.
"""

from __future__ import annotations

from typing import Literal, Union, get_args

from .common import (
    TaskKind,
)
from .extend import ExtendRequest
from .generate import GenerateRequest
from .generate_rules import VIDEO_TYPES
from .image_actions import UpscaleRequest, VaryRequest

__all__ = ["REQUEST_TYPES", "TaskRequest", "kind_of", "media_of"]


#: Any request kind :meth:`KieClient.submit` accepts.
TaskRequest = Union[GenerateRequest, UpscaleRequest, VaryRequest, ExtendRequest]  # noqa: UP007

#: The request classes, for ``isinstance`` checks.
REQUEST_TYPES: tuple[type[TaskRequest], ...] = get_args(TaskRequest)

_KIND_BY_TASK_TYPE: dict[str, TaskKind] = {
    task_type: cls.kind for cls in REQUEST_TYPES for task_type in cls.task_types
}
_VIDEO_TASK_TYPES = VIDEO_TYPES | ExtendRequest.task_types


def kind_of(task_type: str | None) -> TaskKind:
    """The :class:`TaskKind` of a record's ``taskType``; ``UNKNOWN`` for anything undocumented.

    Names that kie.ai does not document but that say what they are (``..._upscale...``,
    ``..._extend...``) are recognised too.
    """
    if not task_type:
        return TaskKind.UNKNOWN
    known = _KIND_BY_TASK_TYPE.get(task_type)
    if known is not None:
        return known
    lowered = task_type.lower()
    for word, kind in (
        ("extend", TaskKind.EXTEND),
        ("upscale", TaskKind.UPSCALE),
        ("upsample", TaskKind.UPSCALE),
        ("vary", TaskKind.VARY),
        ("variation", TaskKind.VARY),
    ):
        if word in lowered:
            return kind
    return TaskKind.UNKNOWN


def media_of(task_type: str | None) -> Literal["image", "video"] | None:
    """Whether a ``taskType``'s results are images or videos; ``None`` when unknown."""
    if not task_type:
        return None
    if task_type in _VIDEO_TASK_TYPES or "video" in task_type.lower():
        return "video"
    if kind_of(task_type) is not TaskKind.UNKNOWN:
        return "image"
    return None
