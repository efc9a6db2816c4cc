"""ExtendRequest: one video extension (``POST /api/v1/mj/generateVideoExtend``), and its
:class:`ExtendMode`. Pure: no I/O happens here."""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import attrs

from .common import (
    MAX_PROMPT_LENGTH,
    MAX_VIDEO_INDEX,
    TaskKind,
    check_common,
    check_task_id,
    digest,
    invalid,
    wire,
    wire_body,
)

__all__ = ["ExtendMode", "ExtendRequest"]


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
