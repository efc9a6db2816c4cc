"""The request kinds: one frozen class per kind of Midjourney task kie.ai creates.

Each kind knows three things and nothing else (no I/O happens here):

* its **endpoint**, the path its create is POSTed to (``endpoint``, a class attribute);
* its **wire body**, kie's camelCase JSON with absent fields left out (``body()``), built from
  each field's ``metadata["wire"]`` name;
* its **validation**: every documented rule is checked when the request is constructed, so a
  bad request raises :class:`ValidationError` before anything is sent.

The kinds share one small protocol (:class:`RequestProtocol`, in ``common``), which is
all a submitter needs. :class:`GenerateRequest` lives in ``generate``; upscale, vary and extend
live here, with the registry of kinds at the bottom. Adding a kind means a class here (its
endpoint, fields, rules and ``task_types``), its name in :data:`TaskRequest` and a
:class:`TaskKind` member; the client, the handle and record reading need no change.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args

import attrs

from .common import (
    MAX_IMAGE_INDEX,
    MAX_PROMPT_LENGTH,
    MAX_VIDEO_INDEX,
    RequestProtocol,
    TaskKind,
    check_common,
    check_http_url,
    check_task_id,
    digest,
    fingerprint_of,
    invalid,
    wire,
    wire_body,
)
from .generate import VIDEO_TYPES, GenerateRequest

__all__ = [
    "MAX_IMAGE_INDEX",
    "MAX_PROMPT_LENGTH",
    "MAX_VIDEO_INDEX",
    "REQUEST_TYPES",
    "ExtendMode",
    "ExtendRequest",
    "GenerateRequest",
    "RequestProtocol",
    "TaskKind",
    "TaskRequest",
    "UpscaleRequest",
    "VaryRequest",
    "check_http_url",
    "check_task_id",
    "image_action",
    "kind_of",
    "media_of",
]


# -- upscale and vary -----------------------------------------------------------------------------


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


# -- extend ---------------------------------------------------------------------------------------


class ExtendMode(str, enum.Enum):
    """How a video is extended: ``MANUAL`` follows your prompt, ``AUTO`` lets the model continue.

    The values are kie's wire values; ``ExtendMode("manual")`` and ``ExtendMode("auto")`` work too.
    """

    MANUAL = "mj_video_extend_manual"
    AUTO = "mj_video_extend_auto"

    @classmethod
    def _missing_(cls, value: object) -> ExtendMode | None:
        if isinstance(value, str):
            return {"manual": cls.MANUAL, "auto": cls.AUTO}.get(value.strip().lower())
        return None


@attrs.frozen(init=False)
class ExtendRequest:
    """One video extension to submit: which video, and how to continue it.

    The mode is manual when a prompt is given and auto otherwise; pass ``mode`` to choose
    explicitly. Everything is checked here, before any request is sent. The source may itself
    be an extension's result: kie.ai does not document whether that works, so the SDK does
    not forbid it.

    Args:
        task_id: the task id of the original Midjourney video record.
        index: which video of that record to extend, 0-based (records hold 1, 2 or 4 videos).
        prompt: what happens next (manual mode); at most 2000 characters.
        mode: ``"manual"``, ``"auto"`` or an :class:`ExtendMode`; by default inferred from
            ``prompt``.
        watermark: a watermark text for the result (sent as ``waterMark``).
        callback_url: an absolute http(s) URL kie.ai POSTs the result to when the task ends.
        key: your own identifier for this request, used by bulk journals instead of its content.

    Raises:
        ValidationError: a field is invalid; the error names the field and the reason.

    Example::

        >>> ExtendRequest("ee603959", index=1, prompt="The camera pulls back").mode
        <ExtendMode.MANUAL: 'mj_video_extend_manual'>
        >>> ExtendRequest("ee603959").mode
        <ExtendMode.AUTO: 'mj_video_extend_auto'>
    """

    kind: ClassVar[TaskKind] = TaskKind.EXTEND
    endpoint: ClassVar[str] = "/api/v1/mj/generateVideoExtend"
    task_types: ClassVar[frozenset[str]] = frozenset(m.value for m in ExtendMode)

    task_id: str = attrs.field(metadata=wire("taskId"))
    index: int = attrs.field(metadata=wire("index"))
    prompt: str | None = attrs.field(metadata=wire("prompt"))
    mode: ExtendMode = attrs.field(metadata=wire("taskType"))
    watermark: str | None = attrs.field(metadata=wire("waterMark"))
    callback_url: str | None = attrs.field(metadata=wire("callBackUrl"))
    key: str | None = attrs.field(metadata=wire(None))

    def __init__(
        self,
        task_id: str,
        index: int = 0,
        prompt: str | None = None,
        *,
        mode: ExtendMode | str | None = None,
        watermark: str | None = None,
        callback_url: str | None = None,
        key: str | None = None,
    ) -> None:
        self.__attrs_init__(
            task_id, index, prompt, _resolve_mode(mode, prompt), watermark, callback_url, key
        )

    def __attrs_post_init__(self) -> None:
        check_task_id(self.task_id)
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise invalid("index", f"must be an int, not {type(self.index).__name__}")
        if not 0 <= self.index <= MAX_VIDEO_INDEX:
            raise invalid(
                "index",
                f"{self.index} is out of range: records hold 1, 2 or 4 videos, "
                f"so index is 0..{MAX_VIDEO_INDEX}",
            )
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise invalid("prompt", f"must be a string, not {type(self.prompt).__name__}")
        if self.mode is ExtendMode.MANUAL:
            if self.prompt is None or not self.prompt.strip():
                raise invalid(
                    "prompt",
                    "manual extension needs a non-blank prompt "
                    "(prompt=None, or no prompt, asks for an automatic extension)",
                )
            if len(self.prompt) > MAX_PROMPT_LENGTH:
                raise invalid(
                    "prompt",
                    f"is {len(self.prompt)} characters; kie.ai accepts at most {MAX_PROMPT_LENGTH}",
                )
        elif self.prompt is not None:
            raise invalid("prompt", "auto extension takes no prompt; use mode='manual'")
        check_common(self)

    def body(self) -> dict[str, Any]:
        """The JSON body of ``POST /api/v1/mj/generateVideoExtend``; absent fields left out."""
        return wire_body(self)

    def describe(self) -> str:
        """A short human description, e.g. ``"extend ee603959[0] (manual)"``."""
        kind = "manual" if self.mode is ExtendMode.MANUAL else "auto"
        label = f" key={self.key}" if self.key else ""
        return f"extend {self.task_id}[{self.index}] ({kind}){label}"

    def fingerprint(self) -> str:
        """A stable digest identifying this request: its ``key`` if given, else its content.

        Two requests with the same fields have the same fingerprint in every process, which is
        how a bulk journal recognises a request it has seen before.
        """
        if self.key is not None:
            return "key:" + self.key
        # Kept exactly as in 0.1.0 (no "kind" in it), so existing journals still match.
        return digest(
            {
                "taskId": self.task_id,
                "index": self.index,
                "taskType": self.mode.value,
                "prompt": self.prompt,
                "waterMark": self.watermark,
                "callBackUrl": self.callback_url,
            }
        )


def _resolve_mode(mode: ExtendMode | str | None, prompt: object) -> ExtendMode:
    if mode is None:
        return ExtendMode.MANUAL if prompt is not None else ExtendMode.AUTO
    if isinstance(mode, ExtendMode):
        return mode
    try:
        return ExtendMode(mode)
    except ValueError:
        raise invalid("mode", f"{mode!r} is not 'manual' or 'auto'") from None


# -- the registry: the one place that lists the kinds ---------------------------------------------


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
