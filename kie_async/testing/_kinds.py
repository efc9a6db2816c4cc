"""The fake kie.ai's rules for the task kinds: what ``/api/v1/mj/generate``,
``/generateUpscale``, ``/generateVary`` and ``/generateVideoExtend`` accept, which tasks can
be upscaled, varied or extended, and how many results each kind of task holds.

Written from ``kie-api.md`` independently of kie_async's own request classes, so a rule the SDK
gets wrong is not mirrored here. Pure functions over raw dicts: a rejection is kie's error
envelope as a plain dict (``422`` for a bad value, ``500 "...: This field is required"`` for a
missing one, as kie.ai answers), ``None`` means accepted. The server (``_endpoints``) owns
the state and the HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Envelope = dict[str, Any]

GENERATE_TYPES = (
    "mj_txt2img",
    "mj_img2img",
    "mj_style_reference",
    "mj_omni_reference",
    "mj_video",
    "mj_video_hd",
)
VIDEO_TYPES = frozenset({"mj_video", "mj_video_hd"})
IMAGE_TYPES = frozenset(GENERATE_TYPES) - VIDEO_TYPES
EXTEND_TYPES = frozenset({"mj_video_extend_manual", "mj_video_extend_auto"})
# kie.ai does not document the taskType of upscale and variation records [guess].
UPSCALE_TYPE = "mj_upscale"
VARY_TYPE = "mj_vary"

_NEEDS_IMAGES = frozenset({"mj_img2img", "mj_style_reference", "mj_omni_reference"})
_NO_SPEED = VIDEO_TYPES | {"mj_omni_reference"}
_SPEEDS = ("relaxed", "fast", "turbo")
_ASPECT_RATIOS = ("1:2", "9:16", "2:3", "3:4", "5:6", "6:5", "4:3", "3:2", "1:1", "16:9", "2:1")
_VERSIONS = ("7", "6.1", "6", "5.2", "5.1", "niji6")
_MOTIONS = ("high", "low")
_BATCH_SIZES = (1, 2, 4)

#: What an upscale or a variation may start from, by ``taskType``.
UPSCALE_SOURCES = IMAGE_TYPES | {VARY_TYPE}
VARY_SOURCES = IMAGE_TYPES | {VARY_TYPE, UPSCALE_TYPE}


def envelope(code: int, msg: str, data: Any = None) -> Envelope:
    """kie's answer envelope."""
    return {"code": code, "msg": msg, "data": data}


def _missing(body: Mapping[str, Any], *names: str) -> Envelope | None:
    """kie's "This field is required" for the first of ``names`` absent or empty."""
    for name in names:
        if body.get(name) in (None, ""):
            return envelope(500, f"{name}: This field is required")
    return None


def _is_int(value: object) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _bad_int(body: Mapping[str, Any], name: str, low: int, high: int, step: int = 1) -> bool:
    """Whether ``body[name]`` is given and not an int in ``low..high`` on ``step``."""
    value = body.get(name)
    if value is None:
        return False
    return not (_is_int(value) and low <= value <= high and value % step == 0)


def _is_url(value: object) -> bool:
    """An http(s) URL string."""
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def _common(body: Mapping[str, Any]) -> Envelope | None:
    """The fields every create has: ``callBackUrl`` and ``waterMark``."""
    callback = body.get("callBackUrl")
    if callback not in (None, "") and not _is_url(callback):
        return envelope(422, "callBackUrl must be a URL")
    watermark = body.get("waterMark")
    if watermark is not None and not isinstance(watermark, str):
        return envelope(422, "waterMark must be a string")
    return None


def file_urls(body: Mapping[str, Any]) -> Any:
    """The input images: ``fileUrls``, or the legacy single ``fileUrl`` kie.ai still accepts."""
    urls = body.get("fileUrls")
    if urls is None and body.get("fileUrl") not in (None, ""):
        return [body["fileUrl"]]
    return urls


def check_generate(body: Any) -> Envelope | None:
    """Every documented rule of ``POST /api/v1/mj/generate``."""
    if not isinstance(body, dict):
        return envelope(400, "Request body must be JSON")
    problem = _missing(body, "taskType", "prompt")
    if problem is not None:
        return problem
    task_type = body["taskType"]
    if task_type not in GENERATE_TYPES:
        return envelope(422, f"taskType {task_type!r} is not supported")
    prompt = body["prompt"]
    if not isinstance(prompt, str) or len(prompt) > 2000:
        return envelope(422, "prompt must be a string of at most 2000 characters")
    urls = file_urls(body)
    if urls is not None and (not isinstance(urls, list) or not all(_is_url(u) for u in urls)):
        return envelope(422, "fileUrls must be a list of image URLs")
    count = len(urls or ())
    if task_type in _NEEDS_IMAGES and count == 0:
        return envelope(500, "fileUrls: This field is required")
    if task_type in VIDEO_TYPES and count != 1:
        return envelope(422, "video generation needs exactly one image in fileUrls")
    speed = body.get("speed")
    if speed is not None:
        if task_type in _NO_SPEED:
            return envelope(422, f"speed is not supported for {task_type}")
        if speed not in _SPEEDS:
            return envelope(422, "speed must be relaxed, fast or turbo")
    if body.get("aspectRatio") is not None and body["aspectRatio"] not in _ASPECT_RATIOS:
        return envelope(422, "aspectRatio is not supported")
    if body.get("version") is not None and body["version"] not in _VERSIONS:
        return envelope(422, "version is not supported")
    if _bad_int(body, "variety", 0, 100, 5):
        return envelope(422, "variety must be 0-100 in steps of 5")
    if _bad_int(body, "stylization", 0, 1000):
        return envelope(422, "stylization must be 0-1000")
    if _bad_int(body, "weirdness", 0, 3000):
        return envelope(422, "weirdness must be 0-3000")
    if body.get("ow") is not None:
        if task_type != "mj_omni_reference":
            return envelope(422, "ow is only supported for mj_omni_reference")
        if _bad_int(body, "ow", 1, 1000):
            return envelope(422, "ow must be 1-1000")
    for name, allowed in (("videoBatchSize", _BATCH_SIZES), ("motion", _MOTIONS)):
        value = body.get(name)
        if value is None:
            continue
        if task_type not in VIDEO_TYPES:
            return envelope(422, f"{name} is only supported for video")
        if isinstance(value, bool) or value not in allowed:
            return envelope(422, f"{name} must be one of {', '.join(map(str, allowed))}")
    translation = body.get("enableTranslation")
    if translation is not None and not isinstance(translation, bool):
        return envelope(422, "enableTranslation must be a boolean")
    return _common(body)


def generate_results(body: Mapping[str, Any]) -> tuple[int, str]:
    """How many results an accepted generation holds, and their file extension: four images,
    or ``videoBatchSize`` videos (default 1)."""
    if body.get("taskType") in VIDEO_TYPES:
        return int(body.get("videoBatchSize") or 1), "mp4"
    return 4, "jpeg"


def check_image_action(
    body: Any,
    tasks: Mapping[str, Mapping[str, Any]],
    *,
    sources: frozenset[str],
    strict: bool,
) -> Envelope | None:
    """The rules of ``/generateUpscale`` and ``/generateVary``: ``taskId`` and ``imageIndex``
    (0-3) required; with ``strict``, the source must be a known task whose ``taskType`` is in
    ``sources``, holding an image at that index."""
    if not isinstance(body, dict):
        return envelope(400, "Request body must be JSON")
    problem = _missing(body, "taskId", "imageIndex")
    if problem is not None:
        return problem
    index = body["imageIndex"]
    if not _is_int(index) or not 0 <= index <= 3:
        return envelope(422, "imageIndex must be an integer from 0 to 3")
    problem = _common(body)
    if problem is not None:
        return problem
    if strict:
        source = tasks.get(str(body["taskId"]))
        if source is None or source.get("task_type") not in sources:
            return envelope(422, "The original task does not exist or is not an image task")
        if index >= source["videos"]:
            return envelope(422, f"imageIndex {index} is out of range")
    return None


def check_extend(
    body: Any,
    tasks: Mapping[str, Mapping[str, Any]],
    *,
    strict: bool,
    extend_extensions: bool,
    max_extensions: int | None,
) -> Envelope | None:
    """Every documented rule of ``POST /api/v1/mj/generateVideoExtend``, then
    :func:`check_extend_source`."""
    if not isinstance(body, dict):
        return envelope(400, "Request body must be JSON")
    problem = _missing(body, "taskType", "taskId", "index")
    if problem is not None:
        return problem
    task_type = body["taskType"]
    if task_type not in EXTEND_TYPES:
        return envelope(422, f"taskType {task_type!r} is not supported")
    index = body["index"]
    if not _is_int(index) or index < 0:
        return envelope(422, "index must be a non-negative integer")
    prompt = body.get("prompt")
    if task_type == "mj_video_extend_manual" and (
        not isinstance(prompt, str) or not prompt.strip()
    ):
        return envelope(500, "prompt: This field is required")
    if isinstance(prompt, str) and len(prompt) > 2000:
        return envelope(422, "prompt must be at most 2000 characters")
    callback = body.get("callBackUrl")
    if callback is not None and not _is_url(callback):
        return envelope(422, "callBackUrl must be a URL")
    return check_extend_source(
        body,
        tasks,
        strict=strict,
        extend_extensions=extend_extensions,
        max_extensions=max_extensions,
    )


def check_extend_source(
    body: Mapping[str, Any],
    tasks: Mapping[str, Mapping[str, Any]],
    *,
    strict: bool,
    extend_extensions: bool,
    max_extensions: int | None,
) -> Envelope | None:
    """Whether the video named by an extension's ``taskId``/``index`` may be extended.

    kie.ai does not say whether an extension's own result can be extended again, nor how often
    (other resellers: up to 4 times; one says not at all), so both are knobs. They apply to
    sources the server knows; ``strict`` also refuses unknown sources and indexes past a
    record's videos.
    """
    source = tasks.get(str(body["taskId"]))
    known = source is not None and "raw" not in source
    if known:
        assert source is not None
        if source.get("task_type") in EXTEND_TYPES and not extend_extensions:
            return envelope(422, "This video is an extension and cannot be extended again")
        depth = int(source.get("extensions", 0)) + 1
        if max_extensions is not None and depth > max_extensions:
            return envelope(
                422, f"This video has been extended {depth - 1} times; at most {max_extensions}"
            )
    if strict:
        if source is None or source.get("task_type") not in VIDEO_TYPES | EXTEND_TYPES:
            return envelope(422, "The original task does not exist")
        if body["index"] >= source["videos"]:
            return envelope(422, f"index {body['index']} is out of range")
    return None


def extension_depth(body: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]]) -> int:
    """How many extensions deep a new extension of ``body["taskId"]`` is (1 for an extension
    of a generated video, or of a task the server does not know)."""
    source = tasks.get(str(body.get("taskId")))
    if source is None or "raw" in source:
        return 1
    return int(source.get("extensions", 0)) + 1
