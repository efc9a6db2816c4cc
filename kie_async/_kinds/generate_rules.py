"""The vocabulary and rules of ``POST /api/v1/mj/generate``: task types, enums, ranges and
which fields fit which task type, as kie.ai documents them.

Pure: no I/O. :class:`~kie_async.GenerateRequest` normalises its inputs with
:func:`file_urls_of` and :func:`version_of` and checks itself with :func:`check_generate`.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from .common import (
    check_choice,
    check_common,
    check_http_url,
    check_int,
    check_prompt,
    invalid,
)

GenerateTaskType = Literal[
    "mj_txt2img",
    "mj_img2img",
    "mj_style_reference",
    "mj_omni_reference",
    "mj_video",
    "mj_video_hd",
]
Speed = Literal["relaxed", "fast", "turbo"]
AspectRatio = Literal["1:2", "9:16", "2:3", "3:4", "5:6", "6:5", "4:3", "3:2", "1:1", "16:9", "2:1"]
Version = Literal["7", "6.1", "6", "5.2", "5.1", "niji6"]
Motion = Literal["high", "low"]

GENERATE_TYPES: tuple[str, ...] = get_args(GenerateTaskType)
VIDEO_TYPES = frozenset({"mj_video", "mj_video_hd"})
_IMAGE_INPUT_TYPES = frozenset({"mj_img2img", "mj_style_reference", "mj_omni_reference"})
_NO_SPEED_TYPES = VIDEO_TYPES | {"mj_omni_reference"}


def file_urls_of(value: object) -> tuple[str, ...]:
    """``file_urls`` as a tuple: ``None`` is none, one string is one URL."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(value)
    raise invalid("file_urls", f"must be a list of URLs, not {type(value).__name__}")


def version_of(value: object) -> Any:
    """Numbers as kie's version text (7 and 6.1 read naturally as numbers); else unchanged."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    return value


def check_generate(request: Any) -> None:
    """Every documented rule, on a :class:`~kie_async.GenerateRequest`'s fields.

    Raises:
        ValidationError: the first field that is invalid or does not fit the task type.
    """
    check_choice("task_type", request.task_type, GENERATE_TYPES)
    kind = request.task_type
    check_prompt(request.prompt)
    for i, url in enumerate(request.file_urls):
        check_http_url(url, f"file_urls[{i}]")
    if kind == "mj_txt2img" and request.file_urls:
        raise invalid("file_urls", "mj_txt2img takes no images; use mj_img2img for an image prompt")
    if kind in _IMAGE_INPUT_TYPES and not request.file_urls:
        raise invalid("file_urls", f"{kind} needs at least one input image URL")
    if kind in VIDEO_TYPES and len(request.file_urls) != 1:
        raise invalid(
            "file_urls", f"{kind} needs exactly one input image, got {len(request.file_urls)}"
        )
    if request.aspect_ratio is not None:
        check_choice("aspect_ratio", request.aspect_ratio, get_args(AspectRatio))
    if request.version is not None:
        check_choice("version", request.version, get_args(Version))
    if request.speed is not None:
        if kind in _NO_SPEED_TYPES:
            raise invalid("speed", f"is not used for {kind}; leave it out")
        check_choice("speed", request.speed, get_args(Speed))
    if request.variety is not None:
        check_int("variety", request.variety, 0, 100, step=5)
    if request.stylization is not None:
        check_int("stylization", request.stylization, 0, 1000)
    if request.weirdness is not None:
        check_int("weirdness", request.weirdness, 0, 3000)
    if request.ow is not None:
        if kind != "mj_omni_reference":
            raise invalid("ow", f"the omni weight is for mj_omni_reference only, not {kind}")
        check_int("ow", request.ow, 1, 1000)
    if request.video_batch_size is not None:
        if kind not in VIDEO_TYPES:
            raise invalid("video_batch_size", f"is for video only, not {kind}")
        if isinstance(request.video_batch_size, bool) or request.video_batch_size not in (1, 2, 4):
            raise invalid("video_batch_size", f"{request.video_batch_size!r} is not 1, 2 or 4")
    if request.motion is not None:
        if kind not in VIDEO_TYPES:
            raise invalid("motion", f"is for video only, not {kind}")
        check_choice("motion", request.motion, get_args(Motion))
    if request.enable_translation is not None and not isinstance(request.enable_translation, bool):
        raise invalid("enable_translation", "must be True or False")
    check_common(request)
