"""UpscaleRequest and VaryRequest: one image of an earlier image task, upscaled or varied
(``POST /api/v1/mj/generateUpscale``, ``/generateVary``). Pure: no I/O happens here."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import attrs

from .common import (
    MAX_IMAGE_INDEX,
    TaskKind,
    check_common,
    check_task_id,
    fingerprint_of,
    invalid,
    wire,
    wire_body,
)

__all__ = ["UpscaleRequest", "VaryRequest", "image_action"]


@attrs.frozen
class _ImageActionRequest:
    """The shared shape of upscale and vary: one image of an earlier image task."""

    kind: ClassVar[TaskKind]
    endpoint: ClassVar[str]
    task_types: ClassVar[frozenset[str]]

    task_id: str = attrs.field(metadata=wire("taskId"))
    index: int = attrs.field(metadata=wire("imageIndex"))
    watermark: str | None = attrs.field(default=None, kw_only=True, metadata=wire("waterMark"))
    callback_url: str | None = attrs.field(default=None, kw_only=True, metadata=wire("callBackUrl"))
    key: str | None = attrs.field(default=None, kw_only=True, metadata=wire(None))

    def __attrs_post_init__(self) -> None:
        check_task_id(self.task_id)
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise invalid("index", f"must be an int, not {type(self.index).__name__}")
        if not 0 <= self.index <= MAX_IMAGE_INDEX:
            raise invalid(
                "index",
                f"{self.index} is out of range: an image task holds 4 images, "
                f"so index (imageIndex) is 0..{MAX_IMAGE_INDEX}",
            )
        check_common(self)

    def body(self) -> dict[str, Any]:
        """The JSON body of the create; absent fields are left out."""
        return wire_body(self)

    def describe(self) -> str:
        """A short human description, e.g. ``"upscale 2584469c[2]"``."""
        label = f" key={self.key}" if self.key else ""
        return f"{self.kind.value} {self.task_id}[{self.index}]{label}"

    def fingerprint(self) -> str:
        """A stable digest identifying this request: its ``key`` if given, else its content."""
        return fingerprint_of(self)


@attrs.frozen
class UpscaleRequest(_ImageActionRequest):
    """Upscale one image of an earlier image task (``POST /api/v1/mj/generateUpscale``).

    Args:
        task_id: the id of the image task (a generation, or a variation).
        index: which of its 4 images, 0-3 (sent as ``imageIndex``).
        watermark: a watermark text (``waterMark``).
        callback_url: an absolute http(s) URL kie.ai POSTs the result to when the task ends.
        key: your own identifier for this request, used by bulk journals instead of its content.

    Raises:
        ValidationError: a field is invalid; the error names the field and the reason.

    Example::

        >>> UpscaleRequest("2584469c", 2).body()
        {'taskId': '2584469c', 'imageIndex': 2}
    """

    kind: ClassVar[TaskKind] = TaskKind.UPSCALE
    endpoint: ClassVar[str] = "/api/v1/mj/generateUpscale"
    # kie.ai does not document the taskType of upscale records; this is our guess.
    task_types: ClassVar[frozenset[str]] = frozenset({"mj_upscale"})


@attrs.frozen
class VaryRequest(_ImageActionRequest):
    """Make variations of one image of an earlier image task (``POST /api/v1/mj/generateVary``).

    Args:
        task_id: the id of the image task.
        index: which of its 4 images, 0-3 (sent as ``imageIndex``).
        watermark: a watermark text (``waterMark``).
        callback_url: an absolute http(s) URL kie.ai POSTs the result to when the task ends.
        key: your own identifier for this request, used by bulk journals instead of its content.

    Raises:
        ValidationError: a field is invalid; the error names the field and the reason.

    Example::

        >>> VaryRequest("2584469c", 0, watermark="acme").body()
        {'taskId': '2584469c', 'imageIndex': 0, 'waterMark': 'acme'}
    """

    kind: ClassVar[TaskKind] = TaskKind.VARY
    endpoint: ClassVar[str] = "/api/v1/mj/generateVary"
    # kie.ai does not document the taskType of variation records; this is our guess.
    task_types: ClassVar[frozenset[str]] = frozenset({"mj_vary"})


_ImageAction = TypeVar("_ImageAction", UpscaleRequest, VaryRequest)


def image_action(
    cls: type[_ImageAction],
    task_id: str | _ImageAction,
    index: int | None,
    watermark: str | None,
    callback_url: str | None,
) -> _ImageAction:
    """``task_id`` if it is already a request of ``cls``, else the request built from the
    arguments (an index is required then): how ``KieClient.upscale``/``vary`` take either."""
    if isinstance(task_id, cls):
        if index is not None or watermark is not None or callback_url is not None:
            name = cls.__name__
            article = "an" if name[0] in "AEIOU" else "a"  # an UpscaleRequest, a VaryRequest
            raise TypeError(f"pass either {article} {name} or its fields, not both")
        return task_id
    if index is None:
        raise invalid("index", "which image (0-3) is required")
    return cls(task_id, index, watermark=watermark, callback_url=callback_url)  # type: ignore[arg-type]
